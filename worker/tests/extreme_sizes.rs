//! The contract's extreme sizes (64 and 2048 pixels a side) through the real `sdxl-worker generate` on the tiny
//! models, each under an address-space cap: each makes a PNG of its size or exits 1 with an error naming the
//! memory limit, never a signal. Before the memory plan, 2048x2048 (and 512x512 on tiny-sdxl-a, whose VAE
//! downsamples by 2 rather than 8) asked for terabytes of attention scores at once and died with SIGABRT.
//!
//! The budget is set (`--memory-budget`) so that what runs and what is refused does not depend on the machine;
//! the cap is there to turn an estimate that is too low into a failed allocation, which is an abort, which fails
//! the test. One case leaves the budget to the cap itself.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `ulimit -v`, in KiB: far above what any case here is allowed to plan for.
const ADDRESS_SPACE_CAP_KIB: u64 = 2 << 20;
const BUDGET: &str = "128MiB";
/// Under this the extreme aspect ratios' whole-image decode (about 120 MiB at 2048x64 and 64x2048 on
/// tiny-sdxl-b) does not fit, so their plans tile it.
const TILING_BUDGET: &str = "112MiB";

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// One guided step, as a job would run it (guidance doubles the UNet's batch), under the cap.
fn generate(model_name: &str, width: u32, height: u32, budget: Option<&str>, out: &Path) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -v "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(ADDRESS_SPACE_CAP_KIB.to_string())
        .arg(env!("CARGO_BIN_EXE_sdxl-worker"))
        .args(["generate", "--cpu", "--prompt", "a castle on a hill", "--steps", "1", "--guidance", "5"])
        .arg("--model")
        .arg(model(model_name))
        .args(["--width", &width.to_string(), "--height", &height.to_string()])
        .arg("--out")
        .arg(out);
    if let Some(budget) = budget {
        command.args(["--memory-budget", budget]);
    }
    // The plan is logged at info level when it departs from full attention and a whole-image decode.
    command.env_remove("GAMEFORGE_MEMORY_BUDGET").env("RUST_LOG", "sdxl_worker=info").output().expect("sh runs")
}

fn never_a_signal(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.signal(), None, "killed by a signal: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("memory allocation of"), "{stderr}");
    stderr
}

/// Makes the image under `budget`; `plan` names what its memory plan must say (nothing: the full plan).
fn makes_an_image(model_name: &str, width: u32, height: u32, budget: &str, plan: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("image.png");
    let output = generate(model_name, width, height, Some(budget), &out);
    let stderr = never_a_signal(&output);
    assert!(output.status.success(), "{model_name} {width}x{height}: {stderr}");
    if plan.is_empty() {
        assert!(!stderr.contains("memory plan"), "{stderr}");
    }
    for part in plan {
        assert!(stderr.contains(part), "{model_name} {width}x{height}: expected {part:?} in the plan: {stderr}");
    }
    let png = std::fs::read(&out).unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (width, height));
}

fn is_refused(model_name: &str, width: u32, height: u32, budget: Option<&str>, limit: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("image.png");
    let output = generate(model_name, width, height, budget, &out);
    let stderr = never_a_signal(&output);
    assert_eq!(output.status.code(), Some(1), "{model_name} {width}x{height}: {stderr}");
    let expected = format!("a {width}x{height} image does not fit in memory");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("memory budget is") && stderr.contains(limit), "{stderr}");
    assert!(!out.exists(), "a refused job wrote an image");
}

#[test]
fn the_smallest_image_is_made() {
    makes_an_image("tiny-sdxl-b", 64, 64, BUDGET, &[]);
    makes_an_image("tiny-sdxl-a", 64, 64, BUDGET, &[]);
}

#[test]
fn the_widest_image_is_made_with_sliced_attention_and_tiles() {
    makes_an_image("tiny-sdxl-b", 2048, 64, TILING_BUDGET, &["UNet: attention in slices", "-pixel tiles"]);
}

#[test]
fn the_tallest_image_is_made_with_sliced_attention_and_tiles() {
    makes_an_image("tiny-sdxl-b", 64, 2048, TILING_BUDGET, &["UNet: attention in slices", "-pixel tiles"]);
}

#[test]
fn the_largest_image_is_refused_with_the_budget_named() {
    is_refused("tiny-sdxl-b", 2048, 2048, Some(BUDGET), "--memory-budget");
}

#[test]
fn the_largest_image_on_the_vae_that_downsamples_less_is_refused_with_the_cap_named() {
    // No configured budget: the address-space cap sets it, and the refusal says so.
    is_refused("tiny-sdxl-a", 2048, 2048, None, "ulimit -v");
}

#[test]
fn a_512_image_on_the_vae_that_downsamples_less_is_refused_with_the_budget_named() {
    is_refused("tiny-sdxl-a", 512, 512, Some(BUDGET), "--memory-budget");
}
