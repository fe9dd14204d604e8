//! No Docker engine runs here, so the worker's Dockerfile is checked by reading it: the rules a reviewer
//! (or hadolint) would apply, and the wiring the service relies on.

use std::path::Path;

/// Instructions with their continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        current.push_str(trimmed.trim_end_matches('\\'));
        current.push(' ');
        if !trimmed.ends_with('\\') {
            let joined = current.split_whitespace().collect::<Vec<_>>().join(" ");
            let (keyword, rest) = joined.split_once(' ').unwrap_or((joined.as_str(), ""));
            out.push((keyword.to_uppercase(), rest.to_string()));
            current.clear();
        }
    }
    out
}

#[test]
fn the_worker_image_is_built_as_the_service_expects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let all = instructions(&text);
    let stages: Vec<&String> = all.iter().filter(|(k, _)| k == "FROM").map(|(_, v)| v).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[0].contains("cudnn-devel") && stages[0].ends_with("AS build"), "{}", stages[0]);
    assert!(stages[1].contains("cudnn-runtime") && stages[1].ends_with("AS runtime"), "{}", stages[1]);
    assert!(all.iter().any(|(k, v)| k == "ARG" && v == "CUDA_COMPUTE_CAP=86"));
    let runtime_start = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let runtime = &all[runtime_start..];

    // Build: locked, the worker only, with cuDNN, and flash attention where the card has it (sm_80 and newer);
    // cudaforge fetches flash attention's CUTLASS with git.
    let build = all
        .iter()
        .find(|(k, v)| k == "RUN" && v.contains("cargo build"))
        .map(|(_, v)| v.as_str())
        .expect("a cargo build");
    assert!(build.contains(r#"cargo build --release --locked -p sdxl-worker --features "${features}""#), "{build}");
    assert!(build.contains("features=cudnn &&"), "{build}");
    assert!(build.contains(r#"if [ "${CUDA_COMPUTE_CAP}" -ge 80 ]; then features=cudnn,flash-attn; fi"#), "{build}");
    assert!(all.iter().any(|(k, v)| k == "RUN" && v.contains("apt-get install") && v.contains(" git ")));
    // Apt: no recommends, lists removed in the same layer.
    for (_, run) in all.iter().filter(|(k, v)| k == "RUN" && v.contains("apt-get install")) {
        assert!(run.contains("--no-install-recommends") && run.contains("rm -rf /var/lib/apt/lists/*"), "{run}");
        assert!(run.contains("apt-get update &&"), "update and install in one layer: {run}");
    }
    // Runtime: only the binary comes over, and it runs as a non-root user.
    assert!(runtime.iter().any(|(k, v)| k == "COPY" && v.starts_with("--from=build /usr/local/bin/sdxl-worker")));
    let user = runtime.iter().rev().find(|(k, _)| k == "USER").map(|(_, v)| v.as_str()).expect("a USER");
    assert!(!["root", "0"].contains(&user), "runs as {user}");
    // Baked weights are written by that user, into the cache it owns.
    let last_user = runtime.iter().rposition(|(k, _)| k == "USER").unwrap();
    for (_, run) in runtime[last_user..].iter().filter(|(k, _)| k == "RUN") {
        assert!(run.contains("sdxl-worker fetch"), "only the optional bake runs as the worker user: {run}");
    }
    // What the service reads and answers.
    assert!(runtime.iter().any(|(k, v)| k == "ENV" && v.contains("GAMEFORGE_MODEL_CACHE=/models")));
    assert!(runtime.iter().any(|(k, v)| k == "ENV" && v.contains("HF_HUB_CACHE=/models/huggingface/hub")));
    assert!(runtime.iter().any(|(k, v)| k == "HEALTHCHECK" && v.contains(r#"CMD ["sdxl-worker", "health"]"#)));
    assert!(runtime.iter().any(|(k, v)| k == "STOPSIGNAL" && v == "SIGTERM"));
    assert_eq!(runtime.last().unwrap(), &("ENTRYPOINT".to_string(), r#"["sdxl-worker", "serve"]"#.to_string()));

    let ignore = std::fs::read_to_string(root.join("../.dockerignore")).unwrap();
    for path in ["target/", ".venv/", "worker/tests/fixtures/"] {
        assert!(ignore.lines().any(|l| l.trim() == path), ".dockerignore lacks {path}");
    }
}

#[test]
fn the_health_command_fails_when_nothing_answers() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sdxl-worker"))
        .args(["health", "--url", "http://127.0.0.1:9/health"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}
