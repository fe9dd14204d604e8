//! Model folders under an S3 prefix.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use gameforge_aws::sdk_error::describe;
use tokio::io::AsyncWriteExt;

use super::{Remote, RemoteFile};
use crate::error::PipelineError;

#[derive(Debug, Clone)]
pub struct S3 {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3 {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into(), prefix: prefix.into().trim_matches('/').to_string() }
    }

    fn fail(&self, reason: String) -> PipelineError {
        PipelineError::Source { source_uri: self.uri(), reason }
    }
}

impl Remote for S3 {
    fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn cache_folder(&self, cache: &Path) -> PathBuf {
        cache.join("s3").join(&self.bucket).join(&self.prefix)
    }

    async fn list(&self) -> Result<Vec<RemoteFile>, PipelineError> {
        let mut files = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}/", self.prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail(format!("listing: {}", describe(&e))))?;
            for object in page.contents() {
                let Some(path) = object.key().and_then(|k| k.strip_prefix(&self.prefix)?.strip_prefix('/')) else {
                    continue;
                };
                files.push(RemoteFile {
                    path: path.to_string(),
                    version: object.e_tag().unwrap_or_default().to_string(),
                });
            }
        }
        Ok(files)
    }

    async fn download(&self, file: &RemoteFile, dest: &Path) -> Result<u64, PipelineError> {
        let key = format!("{}/{}", self.prefix, file.path);
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.fail(format!("{key}: {}", describe(&e))))?;
        let mut out = tokio::fs::File::create(dest).await.map_err(|e| PipelineError::io(dest, e))?;
        let mut body = object.body;
        let mut bytes = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| self.fail(format!("{key}: {e}")))? {
            bytes += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(|e| PipelineError::io(dest, e))?;
        }
        out.flush().await.map_err(|e| PipelineError::io(dest, e))?;
        Ok(bytes)
    }
}
