//! kernels/gameforge.cu's kernels run on the CPU under tests/emulator (CUDA's execution model on host threads,
//! compiled with the system's C++ compiler), with the launch geometry `gameforge_cuda::launch` chooses, against
//! f64 references. This checks the kernels' arithmetic, indexing and reductions where there is no GPU (CI);
//! tests/gpu.rs checks the same on a GPU.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{GroupNormCase, PRECISIONS, SOFTMAX_CASES, SOFTMAX_SCALE};
use gameforge_cuda::launch::{GROUP_NORM_THREADS, GroupNormGrid, softmax_threads};

/// The emulated kernels' runner, compiled once per test process.
fn runner() -> &'static Path {
    static RUNNER: OnceLock<PathBuf> = OnceLock::new();
    RUNNER.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulator");
        let out =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gameforge-cuda-emulated-{}", std::process::id()));
        let status = Command::new(std::env::var("CXX").unwrap_or_else(|_| "c++".into()))
            .args(["-std=c++20", "-O2", "-pthread", "-Wall", "-Werror"])
            .arg("-I")
            .arg(dir.join("include"))
            .arg("-include")
            .arg(dir.join("emulate.hpp"))
            .arg(dir.join("run.cpp"))
            .arg("-o")
            .arg(&out)
            .status()
            .expect("a C++20 compiler (c++, or CXX) to build the kernel emulator");
        assert!(status.success(), "compiling tests/emulator/run.cpp: {status}");
        out
    })
}

/// Runs the emulated kernel with `args`, `input` on its stdin; its output floats.
fn run(args: &[String], input: &[f32], outputs: usize) -> Vec<f64> {
    let mut child = Command::new(runner())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the emulator runs");
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    // Both pipes are drained while it runs: a full pipe would stop it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            pipe.read_to_end(&mut buf).map(|_| buf)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    // A shuffle that not every lane reaches deadlocks the emulator: fail rather than hang.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting on the emulator") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("{args:?}: no result after 120 s (a deadlocked barrier?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    writer.join().expect("stdin writer").expect("writing the emulator's input");
    let stdout = stdout.join().expect("stdout reader").expect("reading the emulator's output");
    let stderr = stderr.join().expect("stderr reader").expect("reading the emulator's errors");
    assert!(status.success(), "{args:?}: {status}: {}", String::from_utf8_lossy(&stderr));
    assert_eq!(stdout.len(), 4 * outputs, "{args:?}: output length");
    stdout.chunks(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes")))).collect()
}

#[test]
fn group_norm_kernels_match_the_f64_reference() {
    // Groups of one chunk and of three (a partial last one), a mean far from zero, tiny odd ones, a 1×1 plane.
    let cases = [
        GroupNormCase { dims: &[2, 20, 64, 64], groups: 2, offset: 0.5 },
        GroupNormCase { dims: &[1, 64, 45, 45], groups: 32, offset: 300.0 },
        GroupNormCase { dims: &[3, 6, 5, 7], groups: 3, offset: 2.0 },
        GroupNormCase { dims: &[1, 32, 1], groups: 32, offset: -1.0 },
    ];
    for (seed, case) in cases.iter().enumerate() {
        let (batch, channels) = (case.dims[0], case.dims[1]);
        let spatial: usize = case.dims[2..].iter().product();
        let grid = GroupNormGrid::new(batch, channels, spatial, case.groups).unwrap();
        for precision in PRECISIONS {
            let inputs = common::group_norm_inputs(case, seed as u64, precision);
            let input: Vec<f32> = inputs.concat();
            for silu in [false, true] {
                let args = [
                    "group_norm",
                    precision.name(),
                    &batch.to_string(),
                    &channels.to_string(),
                    &spatial.to_string(),
                    &case.groups.to_string(),
                    "1e-5",
                    if silu { "1" } else { "0" },
                    &grid.chunks.to_string(),
                    &grid.chunk_len.to_string(),
                    &GROUP_NORM_THREADS.to_string(),
                ]
                .map(String::from);
                let got = run(&args, &input, inputs[0].len());
                common::check_group_norm(case, &inputs, precision, silu, &got);
            }
        }
    }
}

#[test]
fn the_softmax_kernel_matches_the_f64_reference() {
    for (seed, &(rows, cols, spread)) in SOFTMAX_CASES.iter().enumerate() {
        let data: Vec<f32> = common::values(rows * cols, seed as u64).iter().map(|v| v * spread).collect();
        for precision in PRECISIONS {
            let x = precision.round(&data);
            let threads = softmax_threads(cols).unwrap();
            let args = [
                "softmax",
                precision.name(),
                &rows.to_string(),
                &cols.to_string(),
                &SOFTMAX_SCALE.to_string(),
                &threads.to_string(),
            ]
            .map(String::from);
            let got = run(&args, &x, x.len());
            common::check_softmax(&x, cols, SOFTMAX_SCALE, precision, &got);
        }
    }
}

#[test]
fn the_softmax_kernel_gives_minus_infinity_no_weight() {
    let x = [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY, 2.0, 0.5];
    let args = ["softmax", "f32", "1", "5", "1", "32"].map(String::from);
    let got = run(&args, &x, 5);
    assert_eq!((got[0], got[2]), (0.0, 0.0));
    let reference = common::softmax_reference(&common::widen(&x), 5, 1.0);
    assert!(common::worst(&got, &reference, 0.2) < 1e-6, "{got:?}");
}
