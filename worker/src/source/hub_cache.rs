//! The Hugging Face Hub's own cache, laid out as `huggingface_hub` lays it out, so that what its tools downloaded
//! is used in place and what the worker downloads is theirs to use:
//!
//! ```text
//! <cache>/models--{org}--{name}/blobs/<sha256 of an LFS file, or the git blob id of another>
//!                               snapshots/<commit>/<path in the repo>  → ../../blobs/<id> (a relative symlink)
//!                               refs/<branch or tag>                    holds the commit, without a newline
//! ```

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::PipelineError;

/// The Hub cache as `huggingface_hub` finds it: `HF_HUB_CACHE` (or its former name `HUGGINGFACE_HUB_CACHE`), else
/// `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn default_hub_cache() -> PathBuf {
    hub_cache_from(|name| std::env::var_os(name))
}

/// [`default_hub_cache`] over any environment. An empty variable counts as unset: an empty path would be the
/// working directory, which nobody means.
pub fn hub_cache_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let home = var("HOME").map(PathBuf::from);
    let expand = |value: OsString| expand_home(PathBuf::from(value), home.as_deref());
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return expand(dir);
    }
    let hf_home = var("HF_HOME").map(expand).unwrap_or_else(|| {
        let cache = match var("XDG_CACHE_HOME") {
            Some(dir) => expand(dir),
            None => home.clone().unwrap_or_else(std::env::temp_dir).join(".cache"),
        };
        cache.join("huggingface")
    });
    hf_home.join("hub")
}

/// `~` and `~/x` as Python's `expanduser` reads them (the Hub's tools expand these variables).
fn expand_home(path: PathBuf, home: Option<&Path>) -> PathBuf {
    let Some(home) = home else { return path };
    match path.strip_prefix("~") {
        Ok(rest) => home.join(rest),
        Err(_) => path,
    }
}

/// Whether `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`, which `huggingface_hub` also reads) is on.
pub fn offline_from_env() -> bool {
    ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"].iter().any(|name| std::env::var(name).is_ok_and(|v| is_true(&v)))
}

/// `huggingface_hub`'s reading of a boolean variable: 1, ON, YES or TRUE in any case.
pub fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

/// A full commit hash, which names a snapshot by itself (a branch or tag goes through `refs/`).
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `org/name` → `models--org--name`.
pub fn repo_folder_name(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// What a snapshot entry at `path` (`/`-separated, inside the snapshot) points at, relative to the entry's own
/// folder, as `huggingface_hub` writes it: relative, so the cache can be moved or mounted elsewhere.
pub fn blob_link_target(path: &str, blob: &str) -> PathBuf {
    let depth = path.split('/').count();
    let mut target: PathBuf = std::iter::repeat_n("..", depth + 1).collect();
    target.push("blobs");
    target.push(blob);
    target
}

/// A blob name the cache can hold: the Hub's ids are hex, and nothing else may name a file in `blobs/`.
pub fn valid_blob_id(id: &str) -> bool {
    (40..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One repo's folder in the Hub cache.
#[derive(Debug, Clone)]
pub struct RepoCache {
    root: PathBuf,
}

impl RepoCache {
    pub fn new(cache: &Path, repo: &str) -> Self {
        Self { root: cache.join(repo_folder_name(repo)) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn blob(&self, id: &str) -> PathBuf {
        self.blobs().join(id)
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// `refs/<revision>`; a revision with slashes (`refs/pr/1`) is nested, as the Hub's tools nest it.
    pub fn ref_file(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    /// The commit a revision stands for here: itself when it is a commit, else what `refs/` says.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.ref_file(revision)).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// Points `refs/<revision>` at `commit`, replacing the file whole so a reader never sees half of it.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), PipelineError> {
        let path = self.ref_file(revision);
        if std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == commit) {
            return Ok(());
        }
        let dir = path.parent().expect("a ref file has a folder");
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
        let temp = temp_beside(&path);
        std::fs::write(&temp, commit).map_err(|e| PipelineError::io(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            PipelineError::io(&path, e)
        })
    }

    /// Makes `snapshots/<commit>/<path>` the blob `id`: a relative symlink where the file system has them, else
    /// a hard link, else a copy (what `huggingface_hub` falls back to). Swapped in by a rename, so a reader sees
    /// the old entry or the new one.
    pub fn link(&self, commit: &str, path: &str, id: &str) -> Result<PathBuf, PipelineError> {
        let relative = plain_relative(path).ok_or_else(|| PipelineError::Source {
            source_uri: self.root.display().to_string(),
            reason: format!("{path:?} is not a plain relative path"),
        })?;
        let entry = self.snapshot(commit).join(relative);
        let dir = entry.parent().expect("a snapshot entry has a folder");
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
        let blob = self.blob(id);
        let temp = temp_beside(&entry);
        let made = symlink(&blob_link_target(path, id), &temp)
            .or_else(|_| std::fs::hard_link(&blob, &temp))
            .or_else(|_| std::fs::copy(&blob, &temp).map(|_| ()));
        made.map_err(|e| PipelineError::io(&entry, e))?;
        std::fs::rename(&temp, &entry).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            PipelineError::io(&entry, e)
        })?;
        Ok(entry)
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// A path inside a snapshot, refused when it would land outside it.
pub fn plain_relative(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.is_empty()).then_some(p)
}

/// A name beside `path` that no other process or task writes: two workers sharing a host's cache may fetch the
/// same file at once, and each renames its own complete copy into place.
pub fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}-{n}.incomplete", std::process::id()))
}

/// The files of a snapshot (symlinks included, even dangling ones: a missing blob is reported, not skipped), as
/// `/`-separated paths.
pub fn snapshot_files(snapshot: &Path) -> Result<Vec<String>, PipelineError> {
    let mut out = vec![];
    let mut pending = vec![(snapshot.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| PipelineError::io(&dir, e))? {
            let entry = entry.map_err(|e| PipelineError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(|e| PipelineError::io(&entry.path(), e))?;
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            if kind.is_dir() {
                pending.push((entry.path(), path));
            } else if !name.ends_with(".incomplete") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cache_with(vars: &[(&str, &str)]) -> PathBuf {
        let vars: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        hub_cache_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_cache_is_found_as_huggingface_hub_finds_it() {
        let home = ("HOME", "/home/w");
        assert_eq!(cache_with(&[home]), Path::new("/home/w/.cache/huggingface/hub"));
        assert_eq!(cache_with(&[home, ("XDG_CACHE_HOME", "/xdg")]), Path::new("/xdg/huggingface/hub"));
        assert_eq!(cache_with(&[home, ("XDG_CACHE_HOME", "/xdg"), ("HF_HOME", "/hf")]), Path::new("/hf/hub"));
        assert_eq!(cache_with(&[home, ("HF_HOME", "~/hf")]), Path::new("/home/w/hf/hub"));
        assert_eq!(cache_with(&[home, ("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]), Path::new("/legacy"));
        assert_eq!(
            cache_with(&[home, ("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy"), ("HF_HUB_CACHE", "/models")]),
            Path::new("/models")
        );
        assert_eq!(cache_with(&[home, ("HF_HUB_CACHE", ""), ("HF_HOME", "/hf")]), Path::new("/hf/hub"));
        assert_eq!(cache_with(&[("HF_HUB_CACHE", "~/x")]), Path::new("~/x"), "no home to expand into");
    }

    #[test]
    fn offline_values_are_read_as_huggingface_hub_reads_them() {
        for on in ["1", "true", "TRUE", "yes", "Yes", "on", "ON"] {
            assert!(is_true(on), "{on}");
        }
        for off in ["", "0", "false", "no", "off", "2", "y"] {
            assert!(!is_true(off), "{off}");
        }
    }

    #[test]
    fn only_a_full_lowercase_hash_is_a_commit() {
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("main"));
        assert!(!is_commit_hash("c0ffee"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789ABCDEF01234567"));
        assert!(!is_commit_hash("0123456789abcdef0123456789abcdef012345678"));
    }

    #[test]
    fn the_layout_is_the_hubs() {
        let repo = RepoCache::new(Path::new("/c"), "stabilityai/sdxl-turbo");
        assert_eq!(repo.root(), Path::new("/c/models--stabilityai--sdxl-turbo"));
        assert_eq!(repo.blob("abc"), Path::new("/c/models--stabilityai--sdxl-turbo/blobs/abc"));
        assert_eq!(repo.snapshot("c0ffee"), Path::new("/c/models--stabilityai--sdxl-turbo/snapshots/c0ffee"));
        assert_eq!(repo.ref_file("main"), Path::new("/c/models--stabilityai--sdxl-turbo/refs/main"));
        assert_eq!(repo.ref_file("refs/pr/1"), Path::new("/c/models--stabilityai--sdxl-turbo/refs/refs/pr/1"));
        assert_eq!(blob_link_target("model_index.json", "b1"), Path::new("../../blobs/b1"));
        assert_eq!(blob_link_target("unet/config.json", "b2"), Path::new("../../../blobs/b2"));
    }

    #[test]
    fn blob_ids_are_hex() {
        assert!(valid_blob_id(&"a".repeat(64)));
        assert!(valid_blob_id(&"0".repeat(40)));
        assert!(!valid_blob_id("../../etc/passwd"));
        assert!(!valid_blob_id(&"g".repeat(64)));
        assert!(!valid_blob_id("abc"));
    }

    #[test]
    fn links_resolve_to_their_blob_and_refs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(dir.path(), "a/b");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo.blobs()).unwrap();
        std::fs::write(repo.blob("b2"), b"{}").unwrap();
        let entry = repo.link(commit, "unet/config.json", "b2").unwrap();
        assert_eq!(std::fs::read(&entry).unwrap(), b"{}");
        assert_eq!(std::fs::read_link(&entry).unwrap(), Path::new("../../../blobs/b2"));
        assert_eq!(snapshot_files(&repo.snapshot(commit)).unwrap(), vec!["unet/config.json"]);
        assert!(repo.link(commit, "../x", "b2").is_err());

        assert_eq!(repo.commit_of("main"), None);
        repo.write_ref("main", commit).unwrap();
        assert_eq!(std::fs::read_to_string(repo.ref_file("main")).unwrap(), commit, "no newline, as the Hub writes");
        assert_eq!(repo.commit_of("main").as_deref(), Some(commit));
        assert_eq!(repo.commit_of(commit).as_deref(), Some(commit));
        std::fs::write(repo.ref_file("main"), "not a commit").unwrap();
        assert_eq!(repo.commit_of("main"), None);
    }
}
