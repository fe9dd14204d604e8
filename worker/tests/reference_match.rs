//! The candle pipeline against the reference diffusers pipeline (CPU, float32) on the committed tiny models:
//! token ids exact, embeddings and the first UNet output within 1e-4, the final image within 1/255.
//! Fixtures are made by `tools/sdxl-reference/run.sh`; this test needs nothing but the files.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sdxl_worker::unet::AddedConditioning;
use sdxl_worker::{GenerateRequest, LoadOptions, SchedulerKind, SdxlPipeline, VaeTiling};
use serde::Deserialize;

const EMBED_TOLERANCE: f32 = 1e-4;
const IMAGE_TOLERANCE: f32 = 1.0 / 255.0;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    model: String,
    scheduler: String,
    width: usize,
    height: usize,
    steps: usize,
    guidance: f64,
    prompt: String,
    negative_prompt: Option<String>,
    file: String,
    input_ids: Vec<u32>,
    input_ids_2: Vec<u32>,
    negative_input_ids: Option<Vec<u32>>,
    negative_input_ids_2: Option<Vec<u32>>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("reference/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_close(what: &str, case: &str, ours: &Tensor, reference: &Tensor, tolerance: f32) -> f32 {
    let diff = max_abs_diff(ours, reference);
    assert!(diff <= tolerance, "{case}: {what} differs by {diff} (tolerance {tolerance})");
    diff
}

/// The reference run of a case, from its initial latents.
fn request_for(case: &Case, latents: &Tensor) -> GenerateRequest {
    GenerateRequest {
        prompt: case.prompt.clone(),
        negative_prompt: case.negative_prompt.clone(),
        width: case.width,
        height: case.height,
        steps: case.steps,
        guidance: case.guidance,
        seed: 0,
        scheduler: Some(SchedulerKind::parse(&case.scheduler).unwrap()),
        latents: Some(latents.clone()),
    }
}

struct Pipelines(HashMap<String, SdxlPipeline>);

impl Pipelines {
    fn get(&mut self, model: &str) -> &SdxlPipeline {
        self.0
            .entry(model.to_string())
            .or_insert_with(|| SdxlPipeline::load(&fixtures().join(model), LoadOptions::cpu()).unwrap())
    }
}

#[test]
fn every_reference_case_matches() {
    let mut pipelines = Pipelines(HashMap::new());
    let cases = cases();
    assert!(cases.len() >= 16, "expected the full case matrix, found {}", cases.len());
    let mut worst = [0f32; 4];
    for case in &cases {
        let pipeline = pipelines.get(&case.model);
        let reference =
            candle_core::safetensors::load(fixtures().join("reference").join(&case.file), &Device::Cpu).unwrap();
        let r = |name: &str| reference.get(name).unwrap_or_else(|| panic!("{}: no tensor {name}", case.name));

        // Token ids, exactly.
        let (ids, ids_2) = pipeline.token_ids(&case.prompt);
        assert_eq!(ids, case.input_ids, "{}: tokenizer ids", case.name);
        assert_eq!(ids_2, case.input_ids_2, "{}: tokenizer_2 ids", case.name);
        if let (Some(neg), Some(neg_2)) = (&case.negative_input_ids, &case.negative_input_ids_2) {
            let (ours, ours_2) = pipeline.token_ids(case.negative_prompt.as_deref().unwrap_or(""));
            assert_eq!(&ours, neg, "{}: negative tokenizer ids", case.name);
            assert_eq!(&ours_2, neg_2, "{}: negative tokenizer_2 ids", case.name);
        }

        // Text conditioning.
        let guided = case.guidance > 1.0;
        let embeds = pipeline.encode_prompt(&case.prompt, case.negative_prompt.as_deref(), guided).unwrap();
        worst[0] = worst[0].max(assert_close(
            "prompt_embeds",
            &case.name,
            &embeds.prompt,
            r("prompt_embeds"),
            EMBED_TOLERANCE,
        ));
        worst[1] = worst[1].max(assert_close(
            "pooled_prompt_embeds",
            &case.name,
            &embeds.pooled,
            r("pooled_prompt_embeds"),
            EMBED_TOLERANCE,
        ));
        if guided {
            let (neg, neg_pooled) = embeds.negative.as_ref().expect("guided runs have a negative");
            assert_close("negative_prompt_embeds", &case.name, neg, r("negative_prompt_embeds"), EMBED_TOLERANCE);
            assert_close(
                "negative_pooled_prompt_embeds",
                &case.name,
                neg_pooled,
                r("negative_pooled_prompt_embeds"),
                EMBED_TOLERANCE,
            );
        }

        // The first UNet evaluation, on the reference's own inputs.
        let (context, pooled) = if guided {
            (
                Tensor::cat(&[r("negative_prompt_embeds"), r("prompt_embeds")], 0).unwrap(),
                Tensor::cat(&[r("negative_pooled_prompt_embeds"), r("pooled_prompt_embeds")], 0).unwrap(),
            )
        } else {
            (r("prompt_embeds").clone(), r("pooled_prompt_embeds").clone())
        };
        let batch = context.dim(0).unwrap();
        let time_ids = r("add_time_ids").repeat((batch, 1)).unwrap();
        let t0 = r("t_0").to_vec1::<f32>().unwrap()[0] as f64;
        let added = AddedConditioning { text_embeds: pooled, time_ids };
        let out = pipeline.unet_forward(r("unet_in_0"), t0, &context, &added).unwrap();
        worst[2] = worst[2].max(assert_close("unet_out_0", &case.name, &out, r("unet_out_0"), EMBED_TOLERANCE));

        // The whole pipeline from the same initial latents.
        let request = request_for(case, r("latents"));
        let generated = pipeline.generate(&request, &mut |_| ControlFlow::Continue(())).unwrap();
        let image = generated.image.squeeze(0).unwrap().permute((1, 2, 0)).unwrap();
        worst[3] = worst[3].max(assert_close("image", &case.name, &image, r("image"), IMAGE_TOLERANCE));
    }
    eprintln!(
        "worst differences over {} cases: prompt_embeds {:.2e}, pooled {:.2e}, unet_out_0 {:.2e}, image {:.2e}",
        cases.len(),
        worst[0],
        worst[1],
        worst[2],
        worst[3]
    );
}

#[test]
fn the_case_matrix_covers_both_models_schedulers_guidance_and_shapes() {
    let cases = cases();
    for model in ["tiny-sdxl-a", "tiny-sdxl-b"] {
        for scheduler in ["euler", "ddim"] {
            for guided in [false, true] {
                let shapes: std::collections::BTreeSet<bool> = cases
                    .iter()
                    .filter(|c| c.model == model && c.scheduler == scheduler && (c.guidance > 1.0) == guided)
                    .map(|c| c.width == c.height)
                    .collect();
                assert_eq!(shapes.len(), 2, "{model} {scheduler} guided={guided}: square and non-square");
            }
        }
    }
}

/// The tolerances above are tight enough to catch the two faults candle's own SDXL code has.
#[test]
fn the_tolerances_catch_a_wrong_vae_scale_and_missing_pooled_conditioning() {
    let mut pipelines = Pipelines(HashMap::new());
    let case = cases().into_iter().find(|c| c.model == "tiny-sdxl-a" && c.guidance > 1.0).unwrap();
    let pipeline = pipelines.get(&case.model);
    let reference =
        candle_core::safetensors::load(fixtures().join("reference").join(&case.file), &Device::Cpu).unwrap();
    let r = |name: &str| reference.get(name).unwrap();

    // Decoding with SD 1.5's 0.18215 instead of the config's 0.13025.
    let final_latents = r("latents_final");
    let right = pipeline.decode(final_latents).unwrap().squeeze(0).unwrap().permute((1, 2, 0)).unwrap();
    assert!(max_abs_diff(&right, r("image")) <= IMAGE_TOLERANCE);
    let wrong = pipeline
        .decode(&(final_latents * (0.13025 / 0.18215)).unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap()
        .permute((1, 2, 0))
        .unwrap();
    let diff = max_abs_diff(&wrong, r("image"));
    assert!(diff > 10.0 * IMAGE_TOLERANCE, "a wrong VAE scale moved the image by only {diff}");

    // The UNet without the pooled text embedding (what candle's SDXL UNet ignores).
    let context = Tensor::cat(&[r("negative_prompt_embeds"), r("prompt_embeds")], 0).unwrap();
    let pooled = Tensor::cat(&[r("negative_pooled_prompt_embeds"), r("pooled_prompt_embeds")], 0).unwrap();
    let time_ids = r("add_time_ids").repeat((2, 1)).unwrap();
    let t0 = r("t_0").to_vec1::<f32>().unwrap()[0] as f64;
    let without = AddedConditioning { text_embeds: pooled.zeros_like().unwrap(), time_ids };
    let out = pipeline.unet_forward(r("unet_in_0"), t0, &context, &without).unwrap();
    let diff = max_abs_diff(&out, r("unet_out_0"));
    assert!(diff > 100.0 * EMBED_TOLERANCE, "dropping the pooled embedding moved the UNet output by only {diff}");
}

/// Tiled decoding against the reference's own tiled decode (32-pixel tiles, partial tiles at the right and
/// bottom edges), and whole decoding against the reference's whole decode.
#[test]
fn tiled_and_whole_decodes_match_the_reference() {
    let fixtures = fixtures();
    let reference =
        candle_core::safetensors::load(fixtures.join("reference/vae-tiled-a.safetensors"), &Device::Cpu).unwrap();
    let latents = &reference["latents"];

    let whole = SdxlPipeline::load(&fixtures.join("tiny-sdxl-a"), LoadOptions::cpu()).unwrap();
    let ours = whole.decode_unscaled(latents).unwrap();
    assert!(max_abs_diff(&ours, &reference["whole"]) < 1e-4);

    let options = LoadOptions { vae_tiling: VaeTiling::Pixels(32), ..LoadOptions::cpu() };
    let tiled = SdxlPipeline::load(&fixtures.join("tiny-sdxl-a"), options).unwrap();
    let ours = tiled.decode_unscaled(latents).unwrap();
    let diff = max_abs_diff(&ours, &reference["tiled"]);
    assert!(diff < 1e-4, "tiled decode differs from the reference's by {diff}");
    // Tiling really happened: the seams make it differ from the whole decode.
    assert!(max_abs_diff(&ours, &reference["whole"]) > 1e-2);

    let bad = LoadOptions { vae_tiling: VaeTiling::Pixels(5), ..LoadOptions::cpu() };
    let err = SdxlPipeline::load(&fixtures.join("tiny-sdxl-a"), bad).unwrap_err().to_string();
    assert!(err.contains("VAE tile"), "{err}");
}

/// Half precision (the GPU default) runs the same pipeline: text encoders and UNet in f16, scheduler
/// steps in f32, the VAE upcast to f32 where its config asks. Its image stays near the f32 reference.
#[test]
fn half_precision_stays_near_the_reference() {
    let case = cases().into_iter().find(|c| c.name == "a-euler-cfg5-64x64").unwrap();
    let reference =
        candle_core::safetensors::load(fixtures().join("reference").join(&case.file), &Device::Cpu).unwrap();
    let bf16 = LoadOptions { dtype: DType::BF16, ..LoadOptions::cpu() };
    let err = SdxlPipeline::load(&fixtures().join(&case.model), bf16).unwrap_err().to_string();
    assert!(err.contains("bf16"), "{err}");
    {
        let dtype = DType::F16;
        let options = LoadOptions { dtype, ..LoadOptions::cpu() };
        let pipeline = SdxlPipeline::load(&fixtures().join(&case.model), options).unwrap();
        let request = request_for(&case, &reference["latents"]);
        let generated = pipeline.generate(&request, &mut |_| ControlFlow::Continue(())).unwrap();
        let image = generated.image.squeeze(0).unwrap().permute((1, 2, 0)).unwrap();
        let diff = max_abs_diff(&image, &reference["image"]);
        let mean = (image.to_dtype(DType::F32).unwrap() - &reference["image"])
            .unwrap()
            .abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        eprintln!("{dtype:?}: max {diff:.4}, mean {mean:.5}");
        assert!(mean < 4.0 / 255.0, "{dtype:?}: mean difference {mean}");
        assert!(diff < 0.15, "{dtype:?}: max difference {diff}");
    }
}
