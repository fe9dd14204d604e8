//! Where a model folder comes from: a local path, or `s3://bucket/prefix` copied once into a local cache that
//! later starts reuse while the bucket's objects are unchanged.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use aws_sdk_s3::Client;
use tokio::io::AsyncWriteExt;

use crate::error::PipelineError;

/// A model argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl ModelLocation {
    pub fn parse(uri: &str) -> Result<Self, PipelineError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            if bucket.is_empty() || prefix.is_empty() {
                return Err(PipelineError::Source {
                    source_uri: uri.into(),
                    reason: "an S3 model is s3://bucket/prefix, the prefix holding model_index.json".into(),
                });
            }
            return Ok(ModelLocation::S3 { bucket: bucket.into(), prefix: prefix.into() });
        }
        if uri.contains("://") {
            return Err(PipelineError::Source {
                source_uri: uri.into(),
                reason: "only local folders and s3:// locations are supported (a Hugging Face Hub repo must be \
                         downloaded first, or copied to S3)"
                    .into(),
            });
        }
        Ok(ModelLocation::Local(PathBuf::from(uri)))
    }

    pub fn is_remote(&self) -> bool {
        !matches!(self, ModelLocation::Local(_))
    }
}

/// The files a pipeline folder needs; other weight formats (`.bin`, `.ckpt`, `.onnx`, …) are never fetched.
fn wanted(relative: &str) -> bool {
    [".json", ".txt", ".safetensors"].iter().any(|ext| relative.ends_with(ext))
}

/// A key's path below the prefix, refused when it would land outside the cache folder.
fn relative_path(key: &str, prefix: &str) -> Option<PathBuf> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let path = PathBuf::from(rest);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !rest.is_empty()).then_some(path)
}

const MANIFEST: &str = ".gameforge-manifest.json";

/// Copies `s3://bucket/prefix/` into `cache/s3/bucket/prefix/`, unless a complete copy of the same objects (by
/// ETag) is already there, and returns the folder. A partial download never replaces a complete one.
pub async fn fetch_s3(client: &Client, bucket: &str, prefix: &str, cache: &Path) -> Result<PathBuf, PipelineError> {
    let uri = format!("s3://{bucket}/{prefix}");
    let fail = |reason: String| PipelineError::Source { source_uri: uri.clone(), reason };
    let mut objects = BTreeMap::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(format!("{prefix}/")).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| fail(format!("listing: {}", aws_sdk_s3::error::DisplayErrorContext(e))))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let Some(relative) = relative_path(key, prefix) else { continue };
            if wanted(key) {
                objects.insert(relative, (key.to_string(), object.e_tag().unwrap_or_default().to_string()));
            }
        }
    }
    if !objects.keys().any(|p| p == Path::new("model_index.json")) {
        return Err(fail("no model_index.json under the prefix".into()));
    }
    let dest = cache.join("s3").join(bucket).join(prefix);
    let manifest: BTreeMap<String, String> =
        objects.iter().map(|(path, (_, etag))| (path.to_string_lossy().into_owned(), etag.clone())).collect();
    let manifest_text = serde_json::to_string_pretty(&manifest).expect("a map of strings serialises");
    if std::fs::read_to_string(dest.join(MANIFEST)).is_ok_and(|text| text == manifest_text) {
        tracing::info!(%uri, folder = %dest.display(), "model cache is current");
        return Ok(dest);
    }
    let parent = dest.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent).map_err(|e| PipelineError::io(parent, e))?;
    let partial = parent.join(format!(
        ".{}.partial-{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| PipelineError::io(&partial, e))?;
    }
    let started = std::time::Instant::now();
    let mut bytes = 0u64;
    for (relative, (key, _)) in &objects {
        let target = partial.join(relative);
        let dir = target.parent().expect("a file path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
        let object = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| fail(format!("{key}: {}", aws_sdk_s3::error::DisplayErrorContext(e))))?;
        let mut file = tokio::fs::File::create(&target).await.map_err(|e| PipelineError::io(&target, e))?;
        let mut body = object.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| fail(format!("{key}: {e}")))? {
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| PipelineError::io(&target, e))?;
        }
        file.flush().await.map_err(|e| PipelineError::io(&target, e))?;
    }
    std::fs::write(partial.join(MANIFEST), &manifest_text).map_err(|e| PipelineError::io(&partial, e))?;
    // Swap the complete copy in; a reader of the old copy keeps its open files (mapped weights stay valid).
    if dest.exists() {
        let old = parent.join(format!(
            ".{}.old-{}",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        std::fs::rename(&dest, &old).map_err(|e| PipelineError::io(&dest, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| PipelineError::io(&old, e))?;
    }
    std::fs::rename(&partial, &dest).map_err(|e| PipelineError::io(&dest, e))?;
    tracing::info!(%uri, folder = %dest.display(), files = objects.len(), bytes, seconds = started.elapsed().as_secs_f64(), "model downloaded");
    Ok(dest)
}

/// The model cache: `GAMEFORGE_MODEL_CACHE`, else `$XDG_CACHE_HOME/gameforge/models`, else
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
        assert_eq!(ModelLocation::parse("/srv/sdxl").unwrap(), ModelLocation::Local("/srv/sdxl".into()));
        assert!(ModelLocation::parse("s3://models").is_err());
        assert!(ModelLocation::parse("hf://stabilityai/sdxl").is_err());
    }

    #[test]
    fn keys_stay_inside_the_cache() {
        assert_eq!(relative_path("p/unet/config.json", "p"), Some(PathBuf::from("unet/config.json")));
        assert_eq!(relative_path("p/../etc/passwd", "p"), None);
        assert_eq!(relative_path("prefix-other/x.json", "prefix"), None);
        assert_eq!(relative_path("p/", "p"), None);
        assert!(wanted("unet/diffusion_pytorch_model.fp16.safetensors"));
        assert!(!wanted("unet/diffusion_pytorch_model.bin"));
    }
}
