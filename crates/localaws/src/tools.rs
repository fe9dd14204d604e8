//! Where the repository and its Python tools are.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The repository root: `GAMEFORGE_ROOT` when set, else where this crate was built from.
pub fn repo_root() -> PathBuf {
    std::env::var_os("GAMEFORGE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The virtual environment's Python, after making sure the pinned tools are installed in it.
pub fn venv_python() -> Result<PathBuf, Error> {
    let root = repo_root();
    let status = Command::new(root.join("tools/ensure-venv.sh"))
        .status()
        .map_err(|e| Error::Tools(format!("cannot run tools/ensure-venv.sh: {e}")))?;
    if !status.success() {
        return Err(Error::Tools(format!("tools/ensure-venv.sh failed ({status})")));
    }
    Ok(root.join(".venv/bin/python"))
}

/// A directory for logs and scratch files of local runs, under the build's target directory.
pub fn scratch_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("localaws");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Every EventBridge event sample under `events/` (the SQS batches, the function URL requests and the
/// expectations left out), sorted.
pub fn event_samples() -> Vec<PathBuf> {
    let root = repo_root().join("events");
    json_files(&root)
        .into_iter()
        .filter(|p| ["sqs", "function-url", "expected"].iter().all(|dir| !p.starts_with(root.join(dir))))
        .collect()
}

/// The SQS batches under `events/sqs/`, sorted.
pub fn event_batches() -> Vec<PathBuf> {
    json_files(&repo_root().join("events/sqs"))
}

/// Every `.json` file under `dir`, recursively, sorted.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            out.extend(json_files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    out
}
