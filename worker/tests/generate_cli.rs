//! `sdxl-worker generate` end to end on a tiny model: the PNG, its text chunks, its pixels against the
//! reference image, and clear errors (never a panic) for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sdxl-worker"))
}

fn text_chunks(png: &[u8]) -> Vec<(String, String)> {
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    reader.info().utf8_text.iter().map(|c| (c.keyword.clone(), c.get_text().unwrap())).collect()
}

#[test]
fn generate_writes_the_reference_image_with_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let reference =
        candle_core::safetensors::load(fixtures().join("reference/a-euler-cfg5-64x48.safetensors"), &Device::Cpu)
            .unwrap();
    let latents_path = dir.path().join("latents.safetensors");
    save_tensor("latents", reference["latents"].clone(), &latents_path);
    let out = dir.path().join("castle.png");
    let status = worker()
        .args(["generate", "--model"])
        .arg(fixtures().join("tiny-sdxl-a"))
        .args(["--prompt", "a castle on a hill, golden hour, highly detailed"])
        .args(["--negative-prompt", "blurry, low quality"])
        .args(["--width", "64", "--height", "48", "--steps", "4", "--guidance", "5", "--scheduler", "euler"])
        .arg("--latents")
        .arg(&latents_path)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let png = std::fs::read(&out).unwrap();
    let chunks = text_chunks(&png);
    let get = |k: &str| chunks.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("prompt").as_deref(), Some("a castle on a hill, golden hour, highly detailed"));
    assert_eq!(get("scheduler").as_deref(), Some("euler"));
    let parameters: serde_json::Value = serde_json::from_str(&get("parameters").unwrap()).unwrap();
    assert_eq!(parameters["steps"], 4);
    assert_eq!(parameters["width"], 64);

    let mut reader = png::Decoder::new(std::io::Cursor::new(&png)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (64, 48));
    let ours = Tensor::from_vec(pixels[..info.buffer_size()].to_vec(), (48, 64, 3), &Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let expected = (&reference["image"] * 255.0).unwrap();
    let diff =
        (ours - expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    // Within one 8-bit level of the reference's float image.
    assert!(diff <= 1.0, "pixels differ by {diff} levels");
}

fn save_tensor(name: &str, tensor: Tensor, path: &Path) {
    candle_core::safetensors::save(&[(name.to_string(), tensor)].into_iter().collect(), path).unwrap();
}

fn fails_with<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], expected: &str) {
    let output = worker().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("tiny-sdxl-a");
    let model = model.to_str().unwrap();
    let out = dir.path().join("x.png");
    let out = out.to_str().unwrap();
    let base = ["generate", "--model", model, "--prompt", "x", "--steps", "1", "--out", out];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    fails_with(&with(&["--width", "63", "--height", "64"]), "width 63 is not a positive multiple of 2");
    fails_with(&with(&["--width", "0", "--height", "64"]), "width 0");
    fails_with(&with(&["--width", "64", "--height", "64", "--guidance=-1"]), "guidance -1");
    fails_with(&["generate", "--model", "/nonexistent/model", "--prompt", "x", "--out", out], "/nonexistent/model");
    let latents = dir.path().join("wrong.safetensors");
    save_tensor("noise", Tensor::zeros((1, 4, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), &latents);
    fails_with(
        &with(&["--width", "64", "--height", "64", "--latents", latents.to_str().unwrap()]),
        "no tensor named `latents`",
    );
    save_tensor("latents", Tensor::zeros((1, 4, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap(), &latents);
    fails_with(
        &with(&["--width", "64", "--height", "64", "--latents", latents.to_str().unwrap()]),
        "latents have shape",
    );

    // The GPU-ops switch takes two values; a third is refused before anything runs.
    let output = worker().env("GAMEFORGE_GPU_OPS", "Candle").args(with(&["--width", "64", "--height", "64"])).output();
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("GAMEFORGE_GPU_OPS=\"Candle\": expected `gameforge` or `candle`"), "{stderr}");
    assert!(!std::path::Path::new(out).exists(), "nothing was generated");

    // A model folder whose weights hold integers instead of floats.
    let broken = dir.path().join("broken");
    copy_dir(&fixtures().join("tiny-sdxl-a"), &broken);
    let vae = broken.join("vae/diffusion_pytorch_model.safetensors");
    save_tensor("decoder.conv_in.weight", Tensor::zeros(4, candle_core::DType::U32, &Device::Cpu).unwrap(), &vae);
    fails_with(
        &["generate", "--model", broken.to_str().unwrap(), "--prompt", "x", "--out", out],
        "weights must be f16, bf16, f32 or f64",
    );
    // An architecture the code does not implement is named, not run wrongly.
    let config = broken.join("unet/config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace("\"text_time\"", "\"image\"");
    std::fs::write(&config, text).unwrap();
    fails_with(
        &["generate", "--model", broken.to_str().unwrap(), "--prompt", "x", "--out", out],
        "addition_embed_type",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
