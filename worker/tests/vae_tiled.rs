//! Tiled VAE decoding against the reference's own tiled decode (32-pixel tiles on the tiny model, partial tiles
//! at the right and bottom edges), and whole decoding against the reference's whole decode.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use sdxl_worker::{LoadOptions, SdxlPipeline, VaeTiling};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a.to_dtype(DType::F32).unwrap() - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn tiled_and_whole_decodes_match_the_reference() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
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
