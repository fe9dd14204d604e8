//! Bringing a Hub revision into the Hub cache: only the files a pipeline needs, each verified against the hash the
//! Hub lists before the cache names it; or, offline, finding it there.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::hub::{Hub, HubFile, hex};
use super::hub_cache::{RepoCache, is_commit_hash, snapshot_files, temp_beside, valid_blob_id};
use super::{components, safe_relative, select};
use crate::error::PipelineError;

/// Why a Hub revision could not be had from the cache, or a download was refused.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "model source {uri}: offline (HF_HUB_OFFLINE) and {} does not exist: this revision was never fetched into this cache",
        path.display()
    )]
    RevisionNotCached { uri: String, path: PathBuf },
    #[error(
        "model source {uri}: offline (HF_HUB_OFFLINE) and the snapshot {} lacks {}; fetch it once online",
        snapshot.display(),
        missing.join(", ")
    )]
    IncompleteSnapshot { uri: String, snapshot: PathBuf, missing: Vec<String> },
    #[error(
        "model source {uri}: {path} is not what the Hub lists ({algorithm} {expected}, downloaded {actual}); discarded"
    )]
    ChecksumMismatch { uri: String, path: String, algorithm: &'static str, expected: String, actual: String },
}

/// The snapshot folder of the Hub revision, downloading what it lacks (online) or refusing what it lacks
/// (offline). A snapshot already complete for a commit named by its hash is used without a request: a commit's
/// files never change.
pub async fn fetch_hub(hub: &Hub, cache: &Path, prefer_variant: Option<&str>) -> Result<PathBuf, PipelineError> {
    let repo = RepoCache::new(cache, hub.repo());
    if hub.is_offline() {
        let commit = repo
            .commit_of(hub.revision())
            .ok_or_else(|| HubError::RevisionNotCached { uri: hub.uri(), path: repo.ref_file(hub.revision()) })?;
        let snapshot = repo.snapshot(&commit);
        if !snapshot.is_dir() {
            return Err(HubError::RevisionNotCached { uri: hub.uri(), path: snapshot }.into());
        }
        let missing = missing_from(&snapshot, prefer_variant)?;
        if !missing.is_empty() {
            return Err(HubError::IncompleteSnapshot { uri: hub.uri(), snapshot, missing }.into());
        }
        tracing::info!(uri = %hub.uri(), folder = %snapshot.display(), "offline: model from the Hub cache");
        return Ok(snapshot);
    }
    if is_commit_hash(hub.revision()) {
        let snapshot = repo.snapshot(hub.revision());
        if snapshot.is_dir() && missing_from(&snapshot, prefer_variant).is_ok_and(|m| m.is_empty()) {
            tracing::info!(uri = %hub.uri(), folder = %snapshot.display(), "model cache is current");
            return Ok(snapshot);
        }
    }
    download_missing(hub, &repo, prefer_variant).await
}

/// What a snapshot lacks for a pipeline: `model_index.json`, a component it names with nothing to read, a file
/// whose blob is gone (a dangling link). Empty when complete.
fn missing_from(snapshot: &Path, prefer_variant: Option<&str>) -> Result<Vec<String>, PipelineError> {
    let index = snapshot.join("model_index.json");
    if !index.is_file() {
        return Ok(vec!["model_index.json".into()]);
    }
    let components = components(&index)?;
    let wanted = select(&snapshot_files(snapshot)?, &components, prefer_variant);
    let mut missing: Vec<String> = components
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.strip_prefix(c.as_str()).is_some_and(|r| r.starts_with('/'))))
        .map(|c| format!("{c}/ (no configs, tokenizer files or safetensors weights)"))
        .collect();
    missing.extend(wanted.into_iter().filter(|w| !snapshot.join(w).is_file()));
    Ok(missing)
}

#[derive(Debug, Default)]
struct Tally {
    files: usize,
    bytes: u64,
}

async fn download_missing(hub: &Hub, repo: &RepoCache, prefer_variant: Option<&str>) -> Result<PathBuf, PipelineError> {
    let fail = |reason: String| PipelineError::Source { source_uri: hub.uri(), reason };
    let listing = hub.list().await?;
    let commit = listing.commit;
    let files: BTreeMap<String, HubFile> =
        listing.files.into_iter().filter(|f| safe_relative(&f.path).is_some()).map(|f| (f.path.clone(), f)).collect();
    let index = files.get("model_index.json").ok_or_else(|| fail("no model_index.json there".into()))?;
    let snapshot = repo.snapshot(&commit);
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    // The index decides what else is needed; one already in the snapshot is read from there, not fetched.
    ensure(hub, repo, &commit, index, &mut tally).await?;
    let paths: Vec<String> = files.keys().cloned().collect();
    let wanted = select(&paths, &components(&snapshot.join("model_index.json"))?, prefer_variant);
    for path in &wanted {
        ensure(hub, repo, &commit, &files[path], &mut tally).await?;
    }
    // The ref moves only once the snapshot holds all a pipeline needs: offline, a branch never names a commit
    // whose files a failed fetch left half there.
    if hub.revision() != commit {
        repo.write_ref(hub.revision(), &commit)?;
    }
    let (uri, folder) = (hub.uri(), snapshot.display().to_string());
    if tally.files == 0 {
        tracing::info!(%uri, %folder, "model cache is current");
    } else {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(%uri, %folder, files = tally.files, bytes = tally.bytes, seconds, "model downloaded");
    }
    Ok(snapshot)
}

/// Makes `file` present in the commit's snapshot: already there, linked to a blob another commit brought, or
/// downloaded, verified and renamed into `blobs/`.
async fn ensure(
    hub: &Hub,
    repo: &RepoCache,
    commit: &str,
    file: &HubFile,
    tally: &mut Tally,
) -> Result<(), PipelineError> {
    let path = &file.path;
    if repo.snapshot(commit).join(path).is_file() {
        return Ok(());
    }
    let fail = |reason: String| PipelineError::Source { source_uri: hub.uri(), reason };
    // These name files of `blobs/`: nothing but the Hub's hex ids may.
    for id in [&file.sha256, &file.blob_id].into_iter().flatten() {
        if !valid_blob_id(id) {
            return Err(fail(format!("listing: {path} has the id {id:?}, which is not a hash")));
        }
    }
    let listed = file.sha256.as_ref().or(file.blob_id.as_ref());
    if let Some(id) = listed
        && repo.blob(id).is_file()
    {
        repo.link(commit, path, id)?;
        return Ok(());
    }
    let blobs = repo.blobs();
    std::fs::create_dir_all(&blobs).map_err(|e| PipelineError::io(&blobs, e))?;
    let mut temp = Discard { path: temp_beside(&repo.blob(listed.map_or("download", String::as_str))), armed: true };
    let downloaded = hub.download(commit, path, &temp.path).await?;
    let id = verified_id(hub, file, &temp.path, &downloaded.sha256)?;
    let blob = repo.blob(&id);
    std::fs::rename(&temp.path, &blob).map_err(|e| PipelineError::io(&blob, e))?;
    temp.armed = false;
    repo.link(commit, path, &id)?;
    tally.files += 1;
    tally.bytes += downloaded.bytes;
    Ok(())
}

/// The blob id a downloaded file is kept under, once it matches what the Hub listed: an LFS file's SHA-256, or
/// another file's git blob id (what the Hub's tools name them by: the ETags the Hub sends).
fn verified_id(hub: &Hub, file: &HubFile, downloaded: &Path, sha256: &str) -> Result<String, PipelineError> {
    let mismatch = |algorithm, expected: &str, actual: String| HubError::ChecksumMismatch {
        uri: hub.uri(),
        path: file.path.clone(),
        algorithm,
        expected: expected.into(),
        actual,
    };
    if let Some(expected) = &file.sha256 {
        if !expected.eq_ignore_ascii_case(sha256) {
            return Err(mismatch("sha256", expected, sha256.into()).into());
        }
        return Ok(expected.to_ascii_lowercase());
    }
    // Only small files are outside LFS: reading one again is cheap.
    let actual = git_blob_id(downloaded)?;
    match &file.blob_id {
        Some(expected) if !expected.eq_ignore_ascii_case(&actual) => {
            Err(mismatch("git blob id", expected, actual).into())
        }
        _ => Ok(actual),
    }
}

/// Git's id of a file's content: the SHA-1 of `blob <length>\0<content>`.
pub fn git_blob_id(path: &Path) -> Result<String, PipelineError> {
    let mut file = std::fs::File::open(path).map_err(|e| PipelineError::io(path, e))?;
    let length = file.metadata().map_err(|e| PipelineError::io(path, e))?.len();
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {length}\0").as_bytes());
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(|e| PipelineError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// A download in progress, removed unless renamed into the cache: a failed or refused download (or a cancelled
/// fetch) leaves nothing behind.
struct Discard {
    path: PathBuf,
    armed: bool,
}

impl Drop for Discard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_ids_are_gits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // `printf 'hello\n' | git hash-object --stdin`, and the empty blob.
        std::fs::write(&path, b"hello\n").unwrap();
        assert_eq!(git_blob_id(&path).unwrap(), "ce013625030ba8dba906f756967f9e9ca394464a");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(git_blob_id(&path).unwrap(), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    fn snapshot_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let body: &[u8] =
                if *f == "model_index.json" { br#"{"unet": ["diffusers", "UNet2DConditionModel"]}"# } else { b"x" };
            std::fs::write(path, body).unwrap();
        }
        dir
    }

    #[test]
    fn a_snapshot_lacks_what_a_pipeline_cannot_do_without() {
        let complete = snapshot_with(&["model_index.json", "unet/config.json", "unet/model.safetensors"]);
        assert!(missing_from(complete.path(), None).unwrap().is_empty());
        assert!(missing_from(complete.path(), Some("fp16")).unwrap().is_empty(), "any variant there will do");

        assert_eq!(missing_from(snapshot_with(&["unet/config.json"]).path(), None).unwrap(), vec!["model_index.json"]);
        let without_unet = snapshot_with(&["model_index.json", "unet/model.bin"]);
        let missing = missing_from(without_unet.path(), None).unwrap();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].starts_with("unet/ "), "{missing:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_is_missing() {
        let snapshot = snapshot_with(&["model_index.json", "unet/config.json"]);
        std::os::unix::fs::symlink("../../../blobs/gone", snapshot.path().join("unet/model.safetensors")).unwrap();
        assert_eq!(missing_from(snapshot.path(), None).unwrap(), vec!["unet/model.safetensors"]);
    }
}
