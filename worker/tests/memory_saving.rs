//! What the memory plan trades away, measured on the tiny models: sliced attention (UNet and VAE) gives the full
//! attention's output, tiled decoding stays close to the whole decode, and a generation squeezed into a small
//! budget still makes its image.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sdxl_worker::attention::Slicing;
use sdxl_worker::unet::AddedConditioning;
use sdxl_worker::vae::DecodePlan;
use sdxl_worker::{GenerateRequest, LoadOptions, SdxlPipeline};

/// A tiled decode of these random-weight VAEs differs from the whole one by 1 to 2% on average (their group
/// norms and global attention see one tile at a time); seams would show as jumps in the difference.
const TILED_MEAN_TOLERANCE: f32 = 0.025;
const SEAM_TOLERANCE: f32 = 0.04;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(model: &str, memory_budget: Option<u64>) -> SdxlPipeline {
    SdxlPipeline::load(&fixtures().join(model), LoadOptions { memory_budget, ..LoadOptions::cpu() }).unwrap()
}

fn reference(file: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference").join(file), &Device::Cpu).unwrap()
}

fn differences(a: &Tensor, b: &Tensor) -> (f32, f32) {
    assert_eq!(a.dims(), b.dims());
    let diff = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap().abs().unwrap();
    let max = diff.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let mean = diff.mean_all().unwrap().to_scalar::<f32>().unwrap();
    (max, mean)
}

#[test]
fn sliced_attention_gives_the_unet_output_of_full_attention() {
    let pipeline = load("tiny-sdxl-b", None);
    let r = reference("b-euler-cfg5-96x64.safetensors");
    let context = Tensor::cat(&[&r["negative_prompt_embeds"], &r["prompt_embeds"]], 0).unwrap();
    let text_embeds = Tensor::cat(&[&r["negative_pooled_prompt_embeds"], &r["pooled_prompt_embeds"]], 0).unwrap();
    let added = AddedConditioning { text_embeds, time_ids: r["add_time_ids"].repeat((2, 1)).unwrap() };
    let t0 = r["t_0"].to_vec1::<f32>().unwrap()[0] as f64;
    let full = pipeline.unet_forward(&r["unet_in_0"], t0, &context, &added).unwrap();
    // 24x16 latents: 96 tokens of 2 heads at the first attention level; slices of 1 and of 7 queries there.
    for limit in [1, 2 * 2 * 96 * 7] {
        let sliced =
            pipeline.unet_forward_with(&r["unet_in_0"], t0, &context, &added, Slicing::MaxScores(limit)).unwrap();
        let (max, _) = differences(&sliced, &full);
        assert!(max <= 1e-5, "slices of {limit} scores: the UNet output moved by {max}");
    }
}

#[test]
fn sliced_vae_attention_gives_the_whole_decode() {
    let pipeline = load("tiny-sdxl-a", None);
    let r = reference("vae-tiled-a.safetensors");
    let latents = &r["latents"];
    let whole = pipeline.decode(latents).unwrap();
    let sliced = pipeline.decode_with(latents, DecodePlan { tile: None, attention: Slicing::MaxScores(1000) }).unwrap();
    let (max, _) = differences(&sliced, &whole);
    assert!(max <= 1e-5, "sliced VAE attention moved the image by {max}");
}

/// How much the tiling error jumps between neighbouring columns and rows: seams show as jumps.
fn largest_jump(error: &Tensor) -> f32 {
    let mut largest = 0f32;
    for (dim, across) in [(3, 2), (2, 3)] {
        let n = error.dim(dim).unwrap();
        let step = (error.narrow(dim, 1, n - 1).unwrap() - error.narrow(dim, 0, n - 1).unwrap()).unwrap();
        let per_line = step.abs().unwrap().mean(across).unwrap().mean(1).unwrap().flatten_all().unwrap();
        largest = largest.max(per_line.max(0).unwrap().to_scalar::<f32>().unwrap());
    }
    largest
}

/// The reference's tiling changes what a tile's group norms and global attention see, so a tiled decode is not
/// the whole one; what it must not have is seams. The same tiles put side by side without blending show them.
#[test]
fn tiled_decoding_stays_close_to_the_whole_decode_without_seams() {
    let latents = reference("vae-tiled-a.safetensors")["latents"].clone();
    let (_, _, h, w) = latents.dims4().unwrap();
    // Each model's own tile size (128 pixels) on tiny-sdxl-b, half of it on tiny-sdxl-a whose image is smaller.
    for (model, tile, factor) in [("tiny-sdxl-a", 64, 2), ("tiny-sdxl-b", 128, 4)] {
        let pipeline = load(model, None);
        let whole = pipeline.decode(&latents).unwrap();
        let tiled = pipeline.decode_with(&latents, DecodePlan { tile: Some(tile), attention: Slicing::Full }).unwrap();
        let error = (&tiled - &whole).unwrap();
        let (_, mean) = differences(&tiled, &whole);
        let jump = largest_jump(&error);

        let keep = tile - tile / 4;
        let spans = |n| sdxl_worker::vae::tiling::spans(n, tile / factor);
        let mut rows = Vec::new();
        for (i, th) in spans(h) {
            let mut row = Vec::new();
            for (j, tw) in spans(w) {
                let part = pipeline.decode(&latents.narrow(2, i, th).unwrap().narrow(3, j, tw).unwrap()).unwrap();
                let (_, _, ph, pw) = part.dims4().unwrap();
                row.push(part.narrow(2, 0, keep.min(ph)).unwrap().narrow(3, 0, keep.min(pw)).unwrap());
            }
            rows.push(Tensor::cat(&row, 3).unwrap());
        }
        let unblended = Tensor::cat(&rows, 2).unwrap();
        let seams = largest_jump(&(&unblended - &whole).unwrap());
        eprintln!("{model}, {tile}-pixel tiles: mean error {mean:.4}, largest jump {jump:.4} (unblended {seams:.4})");

        assert!(mean > 0.0 && mean <= TILED_MEAN_TOLERANCE, "{model}: mean difference {mean}");
        assert!(jump <= SEAM_TOLERANCE, "{model}: the tiling error jumps by {jump} between neighbouring lines");
        assert!(seams > SEAM_TOLERANCE, "{model}: unblended tiles jump by only {seams}: the seam check sees nothing");
    }
}

#[test]
fn a_generation_squeezed_into_a_small_budget_still_makes_its_image() {
    let mut request = GenerateRequest::new("a castle on a hill");
    (request.width, request.height, request.steps, request.guidance, request.seed) = (256, 256, 2, 5.0, 3);
    let roomy = load("tiny-sdxl-b", None);
    let full = roomy.generate(&request, &mut |_| ControlFlow::Continue(())).unwrap();
    assert!(full.memory.is_full(), "{}", full.memory);

    // Just short of the full plan (the VAE slices its attention), then short of the UNet's full attention too.
    let just_short = full.memory.unet_bytes.max(full.memory.vae_bytes) - 1;
    let mut unet_sliced = false;
    for budget in [just_short, 30 << 20] {
        let tight = load("tiny-sdxl-b", Some(budget));
        let squeezed = tight.generate(&request, &mut |_| ControlFlow::Continue(())).unwrap();
        let plan = squeezed.memory;
        assert!(!plan.is_full(), "a {budget}-byte budget left the plan full: {plan}");
        assert!(plan.unet_bytes <= budget && plan.vae_bytes <= budget, "{plan}");
        let (max, mean) = differences(&squeezed.image, &full.image);
        eprintln!("{plan}: max {max:.4}, mean {mean:.5}");
        if plan.vae.tile.is_none() {
            assert!(max <= 1e-5, "sliced attention moved the image by {max} under {plan}");
        } else {
            assert!(mean <= TILED_MEAN_TOLERANCE, "mean difference {mean} under {plan}");
            let jump = largest_jump(&(&squeezed.image - &full.image).unwrap());
            assert!(jump <= SEAM_TOLERANCE, "seams: the difference jumps by {jump} under {plan}");
        }
        unet_sliced |= plan.unet != Slicing::Full;
    }
    assert!(unet_sliced, "no budget made the UNet slice its attention");
}
