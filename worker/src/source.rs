//! Where a model folder comes from: a local path, `s3://bucket/prefix`, or a Hugging Face Hub repo. Remote
//! folders are copied once into a local cache, only the files a pipeline needs (the components
//! `model_index.json` names, one weight variant each), and reused while the remote files are unchanged. An S3
//! folder goes into the model cache (`GAMEFORGE_MODEL_CACHE`, [`fetch`]); a Hub repo into the Hub's own cache
//! (`HF_HUB_CACHE`, [`fetch_hub`]), shared with the Hub's tools.

mod hub;
pub mod hub_cache;
mod hub_fetch;
mod s3;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub use hub::{Downloaded, Hub, HubFile, Listing};
pub use hub_cache::{RepoCache, default_hub_cache};
pub use hub_fetch::{HubError, fetch_hub, git_blob_id};
pub use s3::S3;

use crate::error::PipelineError;

/// A model argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
    Hub { repo: String, revision: String },
}

impl ModelLocation {
    /// `s3://bucket/prefix`, `hf://owner/name[@revision]`, a bare `owner/name` that is not a local folder, or a
    /// local folder.
    pub fn parse(uri: &str) -> Result<Self, PipelineError> {
        let fail = |reason: &str| PipelineError::Source { source_uri: uri.into(), reason: reason.into() };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            if bucket.is_empty() || prefix.is_empty() {
                return Err(fail("an S3 model is s3://bucket/prefix, the prefix holding model_index.json"));
            }
            return Ok(ModelLocation::S3 { bucket: bucket.into(), prefix: prefix.into() });
        }
        if let Some(rest) = uri.strip_prefix("hf://") {
            let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
            if !hub::valid_repo_id(repo) || !hub::valid_revision(revision) {
                return Err(fail("a Hub model is hf://owner/name or hf://owner/name@revision"));
            }
            return Ok(ModelLocation::Hub { repo: repo.into(), revision: revision.into() });
        }
        if uri.contains("://") {
            return Err(fail("models come from a local folder, s3://bucket/prefix or hf://owner/name"));
        }
        if !Path::new(uri).exists() && hub::valid_repo_id(uri) {
            return Ok(ModelLocation::Hub { repo: uri.into(), revision: "main".into() });
        }
        Ok(ModelLocation::Local(PathBuf::from(uri)))
    }
}

/// One file of a remote model folder kept in the model cache (S3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path inside the folder, `/`-separated.
    pub path: String,
    /// Changes whenever the content does (an S3 ETag).
    pub version: String,
}

/// A remote model folder kept in the model cache's own layout (S3; the Hub has its own, [`fetch_hub`]).
#[allow(async_fn_in_trait)]
pub trait Remote {
    /// For messages: `s3://…`.
    fn uri(&self) -> String;
    /// Where its copy lives inside the cache.
    fn cache_folder(&self, cache: &Path) -> PathBuf;
    async fn list(&self) -> Result<Vec<RemoteFile>, PipelineError>;
    /// Writes the file to `dest`; returns the bytes written.
    async fn download(&self, file: &RemoteFile, dest: &Path) -> Result<u64, PipelineError>;
}

/// A path inside the folder, refused when it would land outside the cache.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.is_empty()).then_some(p)
}

/// The weight variant in a file name: `model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors` → fp16.
fn variant_of(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".safetensors")?;
    strip_shard_suffix(stem).rsplit_once('.').map(|(_, v)| v)
}

/// `name-00001-of-00003` → `name`.
fn strip_shard_suffix(stem: &str) -> &str {
    const LEN: usize = "-00001-of-00003".len();
    let Some(split) = stem.len().checked_sub(LEN) else { return stem };
    let Some(tail) = stem.get(split..) else { return stem };
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    match tail.strip_prefix('-').and_then(|t| t.split_once("-of-")) {
        Some((a, b)) if digits(a) && digits(b) => &stem[..split],
        _ => stem,
    }
}

/// The files of a listing a pipeline needs: `model_index.json`, and in each component folder it names, the
/// configs, tokenizer files and one weight variant (the preferred one where present, else the plain files,
/// else whatever variant exists). Root checkpoints, other formats and nested folders are left behind.
pub fn select(paths: &[String], components: &[String], prefer_variant: Option<&str>) -> Vec<String> {
    let mut out = vec![];
    if paths.iter().any(|p| p == "model_index.json") {
        out.push("model_index.json".to_string());
    }
    for component in components {
        let inside: Vec<&str> = paths
            .iter()
            .filter_map(|p| p.strip_prefix(component.as_str())?.strip_prefix('/'))
            .filter(|rest| !rest.contains('/'))
            .collect();
        for name in &inside {
            if name.ends_with(".json") || name.ends_with(".txt") {
                out.push(format!("{component}/{name}"));
            }
        }
        let weights: Vec<&str> = inside.iter().copied().filter(|n| n.ends_with(".safetensors")).collect();
        let with = |v: Option<&str>| weights.iter().copied().filter(|n| variant_of(n) == v).collect::<Vec<_>>();
        let mut chosen = with(prefer_variant);
        if chosen.is_empty() {
            chosen = with(None);
        }
        if chosen.is_empty() {
            chosen = weights.clone();
        }
        out.extend(chosen.into_iter().map(|n| format!("{component}/{n}")));
    }
    out.sort();
    out.dedup();
    out
}

/// The component folders `model_index.json` names (`"unet": ["diffusers", "UNet2DConditionModel"]`).
fn components(model_index: &Path) -> Result<Vec<String>, PipelineError> {
    let bytes = std::fs::read(model_index).map_err(|e| PipelineError::io(model_index, e))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| PipelineError::Config { path: model_index.to_path_buf(), reason: e.to_string() })?;
    let map = value
        .as_object()
        .ok_or_else(|| PipelineError::Config { path: model_index.to_path_buf(), reason: "not a JSON object".into() })?;
    Ok(map
        .iter()
        .filter(|(k, v)| {
            !k.starts_with('_') && v.as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|x| x.is_string()))
        })
        .map(|(k, _)| k.clone())
        .filter(|k| safe_relative(k).is_some())
        .collect())
}

const MANIFEST: &str = ".gameforge-manifest.json";

/// Brings the remote folder into the cache (or finds it there, unchanged) and returns the local folder. A
/// partial download never replaces a complete copy.
pub async fn fetch<R: Remote>(
    remote: &R,
    cache: &Path,
    prefer_variant: Option<&str>,
) -> Result<PathBuf, PipelineError> {
    let uri = remote.uri();
    let fail = |reason: String| PipelineError::Source { source_uri: uri.clone(), reason };
    let listing: BTreeMap<String, RemoteFile> = remote
        .list()
        .await?
        .into_iter()
        .filter(|f| safe_relative(&f.path).is_some())
        .map(|f| (f.path.clone(), f))
        .collect();
    let index = listing.get("model_index.json").ok_or_else(|| fail("no model_index.json there".into()))?.clone();
    let dest = remote.cache_folder(cache);
    let previous: BTreeMap<String, String> = std::fs::read(dest.join(MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let parent = dest.parent().expect("the cache folder has a parent").to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| PipelineError::io(&parent, e))?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| PipelineError::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| PipelineError::io(&partial, e))?;
    // The index decides what else is needed; an unchanged one is read from the cache, not fetched.
    let index_path = if previous.get("model_index.json") == Some(&index.version) {
        dest.join("model_index.json")
    } else {
        let path = partial.join("model_index.json");
        remote.download(&index, &path).await?;
        path
    };
    let paths: Vec<String> = listing.keys().cloned().collect();
    let wanted = select(&paths, &components(&index_path)?, prefer_variant);
    let manifest: BTreeMap<String, String> = wanted.iter().map(|p| (p.clone(), listing[p].version.clone())).collect();
    if manifest == previous {
        std::fs::remove_dir_all(&partial).map_err(|e| PipelineError::io(&partial, e))?;
        tracing::info!(%uri, folder = %dest.display(), "model cache is current");
        return Ok(dest);
    }
    let started = std::time::Instant::now();
    let mut bytes = 0u64;
    for path in &wanted {
        let target = partial.join(safe_relative(path).expect("listing was filtered"));
        if target.exists() {
            continue;
        }
        let dir = target.parent().expect("a file path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
        // An unchanged file is linked from the previous copy: a changed config does not cost 7 GB of weights.
        let cached = dest.join(safe_relative(path).expect("listing was filtered"));
        if previous.get(path) == Some(&manifest[path]) && std::fs::hard_link(&cached, &target).is_ok() {
            continue;
        }
        bytes += remote.download(&listing[path], &target).await?;
    }
    let text = serde_json::to_string_pretty(&manifest).expect("a map of strings serialises");
    std::fs::write(partial.join(MANIFEST), text).map_err(|e| PipelineError::io(&partial, e))?;
    // Swap the complete copy in; a reader of the old copy keeps its open files (mapped weights stay valid).
    if dest.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(&dest, &old).map_err(|e| PipelineError::io(&dest, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| PipelineError::io(&old, e))?;
    }
    std::fs::rename(&partial, &dest).map_err(|e| PipelineError::io(&dest, e))?;
    tracing::info!(%uri, folder = %dest.display(), files = wanted.len(), bytes, seconds = started.elapsed().as_secs_f64(), "model downloaded");
    Ok(dest)
}

/// The model cache for S3 folders (a Hub repo goes into [`default_hub_cache`]): `GAMEFORGE_MODEL_CACHE`, else `$XDG_CACHE_HOME/gameforge/models`, else
/// `~/.cache/gameforge/models`.
pub fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("GAMEFORGE_MODEL_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("gameforge").join("models")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            ModelLocation::parse("s3://models/sdxl/base/").unwrap(),
            ModelLocation::S3 { bucket: "models".into(), prefix: "sdxl/base".into() }
        );
        assert_eq!(
            ModelLocation::parse("hf://stabilityai/sdxl-turbo@v1.0").unwrap(),
            ModelLocation::Hub { repo: "stabilityai/sdxl-turbo".into(), revision: "v1.0".into() }
        );
        assert_eq!(
            ModelLocation::parse("stabilityai/stable-diffusion-xl-base-1.0").unwrap(),
            ModelLocation::Hub { repo: "stabilityai/stable-diffusion-xl-base-1.0".into(), revision: "main".into() }
        );
        assert_eq!(ModelLocation::parse("/srv/sdxl").unwrap(), ModelLocation::Local("/srv/sdxl".into()));
        assert!(ModelLocation::parse("s3://models").is_err());
        assert!(ModelLocation::parse("hf://just-a-name").is_err());
        assert!(ModelLocation::parse("hf://owner/name@../../x").is_err());
        assert!(ModelLocation::parse("hf://owner/na..me").is_err());
        assert!(ModelLocation::parse("gs://bucket/x").is_err());
    }

    #[test]
    fn variants_are_read_from_file_names() {
        assert_eq!(variant_of("model.fp16.safetensors"), Some("fp16"));
        assert_eq!(variant_of("diffusion_pytorch_model.fp16-00001-of-00003.safetensors"), Some("fp16"));
        assert_eq!(variant_of("diffusion_pytorch_model-00001-of-00003.safetensors"), None);
        assert_eq!(variant_of("model.safetensors"), None);
        assert_eq!(variant_of("config.json"), None);
    }

    #[test]
    fn selection_keeps_one_variant_of_the_named_components() {
        let listing: Vec<String> = [
            "model_index.json",
            "sd_xl_base_1.0.safetensors",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.bin",
            "unet/openvino_model.xml",
            "vae/config.json",
            "vae/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
            "vae/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            "vae/diffusion_pytorch_model.safetensors.index.fp16.json",
            "vae_1_0/diffusion_pytorch_model.safetensors",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "text_encoder/onnx/model.onnx",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let components: Vec<String> =
            ["unet", "vae", "tokenizer", "text_encoder"].iter().map(|s| s.to_string()).collect();
        let plain = select(&listing, &components, None);
        assert_eq!(
            plain,
            vec![
                "model_index.json",
                "tokenizer/merges.txt",
                "tokenizer/vocab.json",
                "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                // No plain VAE weights: the fp16 shards are all there is.
                "vae/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                "vae/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
                "vae/diffusion_pytorch_model.safetensors.index.fp16.json",
            ]
        );
        let half = select(&listing, &components, Some("fp16"));
        assert!(half.contains(&"unet/diffusion_pytorch_model.fp16.safetensors".to_string()));
        assert!(!half.contains(&"unet/diffusion_pytorch_model.safetensors".to_string()));
    }

    #[test]
    fn paths_stay_inside_the_cache() {
        assert!(safe_relative("unet/config.json").is_some());
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("").is_none());
    }
}
