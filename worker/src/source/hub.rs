//! Model repos on the Hugging Face Hub (or any server speaking its API: `HF_ENDPOINT`): the listing of a revision
//! and the download of one file. Where the files go is `hub_cache`'s and `hub_fetch`'s business.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::PipelineError;

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct Hub {
    client: HttpClient,
    endpoint: String,
    /// Where the token may go: the endpoint's scheme, host and port, and nothing that merely starts like it.
    origin: url::Origin,
    repo: String,
    revision: String,
    token: Option<String>,
    /// `HF_HUB_OFFLINE`: the cache only, never a request.
    offline: bool,
}

/// A revision's files, as the Hub lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The commit the revision stands for now.
    pub commit: String,
    pub files: Vec<HubFile>,
}

/// One file of a listing, with what the Hub says its content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// Path inside the repo, `/`-separated.
    pub path: String,
    /// The git blob id (SHA-1 of `blob <len>\0<content>`); for an LFS file, that of its pointer.
    pub blob_id: Option<String>,
    /// The content's SHA-256, for an LFS file.
    pub sha256: Option<String>,
}

/// A file written by [`Hub::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    /// The SHA-256 of what was written, hex.
    pub sha256: String,
}

/// A Hub repo id: `namespace/name`, each part of ASCII letters, digits, `.`, `_` and `-`, neither starting nor
/// ending with `.` or `-`, without `..`, at most 96 characters (the Hub's own rules).
pub fn valid_repo_id(repo: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with(['.', '-'])
            && !p.ends_with(['.', '-'])
            && !p.contains("..")
    };
    matches!(repo.split_once('/'), Some((namespace, name)) if part(namespace) && part(name))
}

/// A revision: a branch, tag or commit (`main`, `v1.0`, `refs/pr/1`, a commit hash). Slash-separated parts of
/// ASCII letters, digits, `.`, `_` and `-`, none empty or starting with `.`: it names a folder of the model cache
/// and a path of the Hub's URLs, so it must not climb out of either.
pub fn valid_revision(revision: &str) -> bool {
    revision.len() <= 255
        && revision.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
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
    /// The repo at `revision`, from `HF_ENDPOINT` (default huggingface.co) with `HF_TOKEN` when set, offline when
    /// `HF_HUB_OFFLINE` says so.
    pub fn from_env(repo: impl Into<String>, revision: impl Into<String>) -> Result<Self, PipelineError> {
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
        let token = std::env::var("HF_TOKEN").or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN")).ok();
        Ok(Self::new(&endpoint, repo, revision, token)?.offline(super::hub_cache::offline_from_env()))
    }

    pub fn new(
        endpoint: &str,
        repo: impl Into<String>,
        revision: impl Into<String>,
        token: Option<String>,
    ) -> Result<Self, PipelineError> {
        let (repo, revision) = (repo.into(), revision.into());
        let fail = |reason: String| PipelineError::Source { source_uri: format!("hf://{repo}@{revision}"), reason };
        if !valid_repo_id(&repo) {
            return Err(fail(
                "a Hub repo id is namespace/name: letters, digits, '.', '_' and '-', not starting or ending with '.' \
                 or '-', without '..'"
                    .into(),
            ));
        }
        if !valid_revision(&revision) {
            return Err(fail(
                "a Hub revision is a branch, tag or commit: letters, digits, '.', '_', '-' and '/', no empty part \
                 and no part starting with '.'"
                    .into(),
            ));
        }
        let parsed = url::Url::parse(endpoint).map_err(|e| fail(format!("the Hub endpoint {endpoint:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(fail(format!("the Hub endpoint {endpoint:?} is not an http(s) URL")));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| fail(format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            origin: parsed.origin(),
            repo,
            revision,
            token,
            offline: false,
        })
    }

    /// Never touch the network: the revision is resolved through the cache alone.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// For messages: `hf://owner/name@revision`.
    pub fn uri(&self) -> String {
        format!("hf://{}@{}", self.repo, self.revision)
    }

    fn fail(&self, reason: String) -> PipelineError {
        PipelineError::Source { source_uri: self.uri(), reason }
    }

    /// GET following redirects (the Hub sends large files to a CDN); the token goes only to the Hub itself.
    async fn get(&self, url: &str) -> Result<Response<Incoming>, PipelineError> {
        if self.offline {
            return Err(self.fail(format!("{url}: offline (HF_HUB_OFFLINE), no request is made")));
        }
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let parsed = url::Url::parse(&url).map_err(|e| self.fail(format!("{url}: {e}")))?;
            let mut request =
                Request::get(&url).header("user-agent", concat!("sdxl-worker/", env!("CARGO_PKG_VERSION")));
            if let Some(token) = &self.token
                && self.sends_token_to(&parsed)
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
            url = parsed.join(location).map_err(|e| self.fail(format!("{url}: {e}")))?.to_string();
        }
        Err(self.fail(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// Only the endpoint's own origin gets the token: a URL that merely starts with the endpoint's text (another
    /// port, `endpoint@elsewhere`) is another server.
    fn sends_token_to(&self, url: &url::Url) -> bool {
        url.origin() == self.origin
    }

    /// The revision as one path segment (`refs/pr/1` → `refs%2Fpr%2F1`), as the Hub's API takes it.
    fn revision_segment(&self) -> String {
        self.revision.replace('/', "%2F")
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

impl Hub {
    /// The revision's commit and files. A refusal here is an answer (HTTP status), never a panic.
    pub async fn list(&self) -> Result<Listing, PipelineError> {
        let url = format!("{}/api/models/{}/revision/{}?blobs=true", self.endpoint, self.repo, self.revision_segment());
        let response = self.get(&url).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error("listing", response.status()));
        }
        let body = response.into_body().collect().await.map_err(|e| self.fail(format!("listing: {e}")))?.to_bytes();
        let info: RepoInfo = serde_json::from_slice(&body).map_err(|e| self.fail(format!("listing: {e}")))?;
        // The commit goes into every download's URL path and names a folder of the cache.
        if !super::hub_cache::is_commit_hash(&info.sha) {
            return Err(self.fail(format!("listing: {:?} is not a commit", info.sha)));
        }
        Ok(Listing {
            commit: info.sha,
            files: info
                .siblings
                .into_iter()
                .map(|s| HubFile { path: s.rfilename, blob_id: s.blob_id, sha256: s.lfs.map(|l| l.sha256) })
                .collect(),
        })
    }

    /// Writes `path` at `commit` into `dest` (created), hashing it on the way.
    pub async fn download(&self, commit: &str, path: &str, dest: &Path) -> Result<Downloaded, PipelineError> {
        let url = format!("{}/{}/resolve/{}/{}", self.endpoint, self.repo, commit, path);
        let response = self.get(&url).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(path, response.status()));
        }
        let mut out = tokio::fs::File::create(dest).await.map_err(|e| PipelineError::io(dest, e))?;
        let mut body = response.into_body();
        let mut bytes = 0u64;
        let mut hasher = Sha256::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.fail(format!("{path}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                bytes += data.len() as u64;
                hasher.update(&data);
                out.write_all(&data).await.map_err(|e| PipelineError::io(dest, e))?;
            }
        }
        // Synced before the rename that publishes it: a blob the cache names by its hash must hold that content.
        out.sync_all().await.map_err(|e| PipelineError::io(dest, e))?;
        Ok(Downloaded { bytes, sha256: hex(&hasher.finalize()) })
    }
}

/// Lower-case hex, as the Hub writes hashes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_follow_the_hubs_rules() {
        for good in ["stabilityai/sdxl-turbo", "a/b", "test/tiny-b", "org_1/model.v2", "A-1/b_c.d"] {
            assert!(valid_repo_id(good), "{good}");
        }
        for bad in [
            "just-a-name",
            "a/b/c",
            "../x",
            "a/..",
            "a/b..c",
            "-a/b",
            "a/b-",
            ".a/b",
            "a/b.",
            "a /b",
            "a/b?x",
            "",
            "/b",
            "a/",
        ] {
            assert!(!valid_repo_id(bad), "{bad}");
        }
        assert!(!valid_repo_id(&format!("a/{}", "x".repeat(97))));
    }

    #[test]
    fn revisions_are_branches_tags_or_commits_that_climb_nowhere() {
        for good in ["main", "v1.0", "refs/pr/1", "c0ffee", "0123456789abcdef0123456789abcdef01234567", "fp16_2-x"] {
            assert!(valid_revision(good), "{good}");
        }
        for bad in ["", "../../x", "..", ".", "main/..", "/main", "main/", "a//b", ".hidden", "a b", "a\\b", "a%2Fb"] {
            assert!(!valid_revision(bad), "{bad}");
        }
    }

    #[test]
    fn a_hub_refuses_a_bad_repo_id_or_revision_before_any_request() {
        let err = Hub::new("http://127.0.0.1:9", "test/tiny-b", "../../x", None).unwrap_err().to_string();
        assert!(err.contains("revision"), "{err}");
        let err = Hub::new("http://127.0.0.1:9", "../tiny", "main", None).unwrap_err().to_string();
        assert!(err.contains("repo id"), "{err}");
        let err = Hub::new("not a url", "test/tiny-b", "main", None).unwrap_err().to_string();
        assert!(err.contains("endpoint"), "{err}");
    }

    #[test]
    fn the_token_goes_to_the_endpoints_origin_only() {
        let hub = Hub::new("http://127.0.0.1:900", "test/tiny-b", "main", Some("secret".into())).unwrap();
        let to = |url: &str| hub.sends_token_to(&url::Url::parse(url).unwrap());
        assert!(to("http://127.0.0.1:900/api/models/test/tiny-b/revision/main"));
        assert!(to("http://127.0.0.1:900/test/tiny-b/resolve/c0ffee/model_index.json"));
        assert!(!to("http://127.0.0.1:9000/api/models/test/tiny-b/revision/main"));
        assert!(!to("http://127.0.0.1:900@127.0.0.1:9000/x"));
        assert!(!to("https://127.0.0.1:900/x"));
        assert!(!to("http://localhost:900/x"));
        let default_port = Hub::new("https://huggingface.co", "a/b", "main", Some("t".into())).unwrap();
        assert!(default_port.sends_token_to(&url::Url::parse("https://huggingface.co:443/a/b").unwrap()));
        assert!(!default_port.sends_token_to(&url::Url::parse("https://huggingface.co.evil.example/a/b").unwrap()));
    }
}
