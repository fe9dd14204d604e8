//! What the end-to-end tests share.

use std::path::PathBuf;

/// The workspace's binaries, built by `./dev test` (`cargo build --workspace --bins`) before the tests run.
pub fn binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let dir = deps.parent().and_then(|d| d.parent()).expect("target profile directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (./dev test does)",
        path.display()
    );
    path
}
