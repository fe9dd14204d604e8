//! Model repos on the Hugging Face Hub (or any server speaking its API: `HF_ENDPOINT`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{Remote, RemoteFile};
use crate::error::PipelineError;

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct Hub {
    client: HttpClient,
    endpoint: String,
    repo: String,
    revision: String,
    token: Option<String>,
}

#[derive(Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
}

impl Hub {
    /// The repo at `revision`, from `HF_ENDPOINT` (default huggingface.co) with `HF_TOKEN` when set.
    pub fn from_env(repo: impl Into<String>, revision: impl Into<String>) -> Result<Self, PipelineError> {
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
        let token = std::env::var("HF_TOKEN").or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN")).ok();
        Self::new(&endpoint, repo, revision, token)
    }

    pub fn new(
        endpoint: &str,
        repo: impl Into<String>,
        revision: impl Into<String>,
        token: Option<String>,
    ) -> Result<Self, PipelineError> {
        let repo = repo.into();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| PipelineError::Source {
                source_uri: format!("hf://{repo}"),
                reason: format!("no TLS root certificates: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            repo,
            revision: revision.into(),
            token,
        })
    }

    fn fail(&self, reason: String) -> PipelineError {
        PipelineError::Source { source_uri: self.uri(), reason }
    }

    /// GET following redirects (the Hub sends large files to a CDN); the token goes only to the Hub itself.
    async fn get(&self, url: &str) -> Result<Response<Incoming>, PipelineError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut request =
                Request::get(&url).header("user-agent", concat!("sdxl-worker/", env!("CARGO_PKG_VERSION")));
            if let Some(token) = &self.token
                && url.starts_with(&self.endpoint)
            {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let request = request.body(Empty::new()).map_err(|e| self.fail(format!("{url}: {e}")))?;
            let response = self.client.request(request).await.map_err(|e| self.fail(format!("{url}: {e}")))?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| self.fail(format!("{url}: redirect without a location")))?;
            let base = url::Url::parse(&url).map_err(|e| self.fail(format!("{url}: {e}")))?;
            url = base.join(location).map_err(|e| self.fail(format!("{url}: {e}")))?.to_string();
        }
        Err(self.fail(format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn status_error(&self, what: &str, status: StatusCode) -> PipelineError {
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ": private or gated; set HF_TOKEN",
            StatusCode::NOT_FOUND => ": no such repo, revision or file",
            StatusCode::TOO_MANY_REQUESTS => ": rate limited; try again later",
            _ => "",
        };
        self.fail(format!("{what}: HTTP {status}{hint}"))
    }
}

impl Remote for Hub {
    fn uri(&self) -> String {
        format!("hf://{}@{}", self.repo, self.revision)
    }

    fn cache_folder(&self, cache: &Path) -> PathBuf {
        cache.join("hub").join(&self.repo).join(&self.revision)
    }

    async fn list(&self) -> Result<Vec<RemoteFile>, PipelineError> {
        let url = format!("{}/api/models/{}/revision/{}?blobs=true", self.endpoint, self.repo, self.revision);
        let response = self.get(&url).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error("listing", response.status()));
        }
        let body = response.into_body().collect().await.map_err(|e| self.fail(format!("listing: {e}")))?.to_bytes();
        let info: RepoInfo = serde_json::from_slice(&body).map_err(|e| self.fail(format!("listing: {e}")))?;
        Ok(info
            .siblings
            .into_iter()
            .map(|s| RemoteFile {
                // The commit pins the download; the content hash tells a changed file from an unchanged one.
                version: format!("{}:{}", info.sha, s.lfs.map(|l| l.sha256).or(s.blob_id).unwrap_or_default()),
                path: s.rfilename,
            })
            .collect())
    }

    async fn download(&self, file: &RemoteFile, dest: &Path) -> Result<u64, PipelineError> {
        let commit = file.version.split(':').next().unwrap_or(&self.revision);
        let url = format!("{}/{}/resolve/{}/{}", self.endpoint, self.repo, commit, file.path);
        let response = self.get(&url).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(&file.path, response.status()));
        }
        let mut out = tokio::fs::File::create(dest).await.map_err(|e| PipelineError::io(dest, e))?;
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.fail(format!("{}: {e}", file.path)))?;
            if let Ok(data) = frame.into_data() {
                bytes += data.len() as u64;
                out.write_all(&data).await.map_err(|e| PipelineError::io(dest, e))?;
            }
        }
        out.flush().await.map_err(|e| PipelineError::io(dest, e))?;
        Ok(bytes)
    }
}
