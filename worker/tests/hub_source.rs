//! Loading a model by Hugging Face Hub repo id, against a local server speaking the Hub's API: the listing,
//! redirects of large files to another host (which never sees the token), the selection of what a pipeline
//! needs, the Hub's own cache layout (shared with its tools, used in place, offline), verification of every
//! download against the listed hashes, and clear errors for a private repo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gameforge_localaws::LoopbackServer;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use sdxl_worker::source::{Hub, HubError, RepoCache, fetch_hub};
use sdxl_worker::{LoadOptions, PipelineError, SdxlPipeline};
use sha1::Digest as _;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const NEXT_COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sdxl-b")
}

fn files(dir: &Path, base: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, base, out);
        } else {
            let relative = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            out.insert(relative, std::fs::read(&path).unwrap());
        }
    }
}

/// The fixture as a Hub repo: with what real repos also hold, which a pipeline never needs.
fn repo_files() -> BTreeMap<String, Vec<u8>> {
    let mut repo = BTreeMap::new();
    files(&tiny(), &tiny(), &mut repo);
    repo.insert("tiny_single_file_checkpoint.safetensors".into(), b"not needed".to_vec());
    repo.insert("unet/diffusion_pytorch_model.bin".into(), b"pickle".to_vec());
    repo.insert("text_encoder/onnx/model.onnx".into(), b"onnx".to_vec());
    repo
}

fn sha256(body: &[u8]) -> String {
    hex(&sha2::Sha256::digest(body))
}

fn git_blob_id(body: &[u8]) -> String {
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", body.len()).as_bytes());
    hasher.update(body);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".bin") || name.ends_with(".onnx")
}

/// The blob id the Hub's tools name a file by: an LFS file's SHA-256, another file's git blob id.
fn blob_id(name: &str, body: &[u8]) -> String {
    if is_lfs(name) { sha256(body) } else { git_blob_id(body) }
}

type Log = Arc<Mutex<Vec<(String, bool)>>>;

fn respond(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
}

/// A Hub and its CDN on loopback ports, serving `repo` at `commit` as `test/tiny-b@main`. `served` is what
/// downloads get (to play a corrupted transfer), `repo` what the listing describes.
struct FakeHub {
    endpoint: String,
    hub_log: Log,
    cdn_log: Log,
    _servers: (LoopbackServer, LoopbackServer),
}

impl FakeHub {
    fn start(repo: BTreeMap<String, Vec<u8>>, served: BTreeMap<String, Vec<u8>>) -> Self {
        Self::at(COMMIT, repo, served)
    }

    fn at(commit: &'static str, repo: BTreeMap<String, Vec<u8>>, served: BTreeMap<String, Vec<u8>>) -> Self {
        let (repo, served) = (Arc::new(repo), Arc::new(served));
        let cdn_log: Log = Arc::default();
        let cdn = {
            let (served, log) = (Arc::clone(&served), Arc::clone(&cdn_log));
            LoopbackServer::start("fake-cdn", move |request| {
                let (served, log) = (Arc::clone(&served), Arc::clone(&log));
                async move {
                    let path = request.uri().path().trim_start_matches("/blobs/").to_string();
                    log.lock().unwrap().push((path.clone(), request.headers().contains_key("authorization")));
                    match served.get(&path) {
                        Some(body) => respond(StatusCode::OK, body.clone()),
                        None => respond(StatusCode::NOT_FOUND, vec![]),
                    }
                }
            })
            .unwrap()
        };
        let cdn_base = format!("http://{}", cdn.addr());
        let hub_log: Log = Arc::default();
        let hub = {
            let log = Arc::clone(&hub_log);
            LoopbackServer::start("fake-hub", move |request| {
                let (repo, served, log, cdn_base) =
                    (Arc::clone(&repo), Arc::clone(&served), Arc::clone(&log), cdn_base.clone());
                async move {
                    let path = request.uri().path().to_string();
                    let authorized =
                        request.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer secret");
                    log.lock().unwrap().push((path.clone(), authorized));
                    if path == "/api/models/test/private/revision/main" {
                        return respond(StatusCode::UNAUTHORIZED, vec![]);
                    }
                    if path == "/api/models/test/tiny-b/revision/main" {
                        assert_eq!(request.uri().query(), Some("blobs=true"));
                        let siblings: Vec<_> = repo
                            .iter()
                            .map(|(name, body)| {
                                // As the Hub lists them: an LFS file's blob id is its pointer's.
                                let pointer = format!("oid sha256:{}\nsize {}\n", sha256(body), body.len());
                                let mut s = serde_json::json!({"rfilename": name, "size": body.len()});
                                if is_lfs(name) {
                                    s["blobId"] = git_blob_id(pointer.as_bytes()).into();
                                    s["lfs"] = serde_json::json!({"sha256": sha256(body), "size": body.len()});
                                } else {
                                    s["blobId"] = git_blob_id(body).into();
                                }
                                s
                            })
                            .collect();
                        let body = serde_json::json!({"id": "test/tiny-b", "sha": commit, "siblings": siblings});
                        return respond(StatusCode::OK, body.to_string().into_bytes());
                    }
                    let Some(file) = path.strip_prefix(&format!("/test/tiny-b/resolve/{commit}/")) else {
                        return respond(StatusCode::NOT_FOUND, vec![]);
                    };
                    if is_lfs(file) {
                        // Large files live on another host, as on the real Hub.
                        return Response::builder()
                            .status(StatusCode::FOUND)
                            .header("location", format!("{cdn_base}/blobs/{file}"))
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                    }
                    match served.get(file) {
                        Some(body) => respond(StatusCode::OK, body.clone()),
                        None => respond(StatusCode::NOT_FOUND, vec![]),
                    }
                }
            })
            .unwrap()
        };
        Self { endpoint: format!("http://{}", hub.addr()), hub_log, cdn_log, _servers: (hub, cdn) }
    }

    fn hub(&self, revision: &str) -> Hub {
        Hub::new(&self.endpoint, "test/tiny-b", revision, Some("secret".into())).unwrap()
    }

    fn requests(&self) -> usize {
        self.hub_log.lock().unwrap().len() + self.cdn_log.lock().unwrap().len()
    }

    /// File requests (listings aside) to the Hub.
    fn downloads(&self) -> usize {
        self.hub_log.lock().unwrap().iter().filter(|(p, _)| !p.starts_with("/api/")).count()
    }
}

async fn load(folder: PathBuf) {
    tokio::task::spawn_blocking(move || SdxlPipeline::load(&folder, LoadOptions::cpu()).map(|_| ()))
        .await
        .unwrap()
        .unwrap();
}

/// Every file below `dir`, relative.
fn everything(dir: &Path) -> Vec<String> {
    let mut all = BTreeMap::new();
    if dir.exists() {
        files(dir, dir, &mut all);
    }
    all.into_keys().collect()
}

/// The cache `huggingface-cli download` leaves: every file of the repo as a blob, the snapshot's symlinks to them,
/// and `refs/main`.
fn populate_as_the_hubs_tools_do(cache: &Path, repo: &BTreeMap<String, Vec<u8>>) -> RepoCache {
    let cached = RepoCache::new(cache, "test/tiny-b");
    std::fs::create_dir_all(cached.blobs()).unwrap();
    for (name, body) in repo {
        let id = blob_id(name, body);
        std::fs::write(cached.blob(&id), body).unwrap();
        let entry = cached.snapshot(COMMIT).join(name);
        std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
        let up = "../".repeat(name.split('/').count() + 1);
        std::os::unix::fs::symlink(format!("{up}blobs/{id}"), &entry).unwrap();
    }
    std::fs::create_dir_all(cached.root().join("refs")).unwrap();
    std::fs::write(cached.ref_file("main"), COMMIT).unwrap();
    cached
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_repo_is_listed_selected_downloaded_into_the_hubs_layout_and_reused() {
    let repo = repo_files();
    let wanted = repo.len() - 3;
    // tokenizer and tokenizer_2 share files: one blob, downloaded once, for both.
    let blobs = {
        let mut ids: Vec<String> = repo
            .iter()
            .filter(|(k, _)| {
                k.as_str() != "tiny_single_file_checkpoint.safetensors" && !k.ends_with(".bin") && !k.ends_with(".onnx")
            })
            .map(|(k, v)| blob_id(k, v))
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    assert!(blobs < wanted, "the fixture shares files between components");
    let weights = repo.keys().filter(|k| k.contains('/') && k.ends_with(".safetensors")).count();
    let fake = FakeHub::start(repo.clone(), repo.clone());
    let cache = tempfile::tempdir().unwrap();
    let remote = fake.hub("main");

    let folder = fetch_hub(&remote, cache.path(), Some("fp16")).await.unwrap();
    let cached = RepoCache::new(cache.path(), "test/tiny-b");
    assert_eq!(folder, cache.path().join("models--test--tiny-b/snapshots").join(COMMIT));
    for unwanted in
        ["tiny_single_file_checkpoint.safetensors", "unet/diffusion_pytorch_model.bin", "text_encoder/onnx/model.onnx"]
    {
        assert!(!folder.join(unwanted).exists(), "{unwanted} was fetched");
    }
    assert_eq!(fake.cdn_log.lock().unwrap().len(), weights, "every weight file once, from the CDN");
    assert_eq!(fake.downloads(), blobs, "every wanted content resolved once (weights by redirect)");
    assert!(fake.hub_log.lock().unwrap().iter().all(|(_, authorized)| *authorized), "the Hub gets the token");
    assert!(fake.cdn_log.lock().unwrap().iter().all(|(_, authorized)| !authorized), "the CDN never does");

    // The Hub's layout: relative links to blobs named by their hashes, the branch's ref, nothing left over.
    assert_eq!(std::fs::read_to_string(cached.ref_file("main")).unwrap(), COMMIT);
    for name in everything(&folder) {
        let entry = folder.join(&name);
        let id = blob_id(&name, &repo[&name]);
        let up = "../".repeat(name.split('/').count() + 1);
        assert_eq!(std::fs::read_link(&entry).unwrap(), PathBuf::from(format!("{up}blobs/{id}")), "{name}");
        assert_eq!(std::fs::read(&entry).unwrap(), repo[&name], "{name}");
    }
    assert_eq!(everything(&cached.blobs()).len(), blobs, "one blob per content, no temporary left");
    load(folder.clone()).await;

    // The same revision again: the listing is asked for, nothing is downloaded.
    let again = fetch_hub(&remote, cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(again, folder);
    assert_eq!(fake.downloads(), blobs);
    assert_eq!(fake.cdn_log.lock().unwrap().len(), weights);

    // A new commit on the branch that changed one config: only that file is downloaded; the unchanged ones are
    // the same blobs, and the previous snapshot stays for whoever pinned it.
    let mut changed = repo.clone();
    changed.insert("unet/config.json".into(), [&repo["unet/config.json"][..], b"\n"].concat());
    let next = FakeHub::at(NEXT_COMMIT, changed.clone(), changed);
    let folder = fetch_hub(&next.hub("main"), cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(folder, cached.snapshot(NEXT_COMMIT));
    assert_eq!((next.downloads(), next.cdn_log.lock().unwrap().len()), (1, 0));
    assert_eq!(std::fs::read_to_string(cached.ref_file("main")).unwrap(), NEXT_COMMIT);
    assert_eq!(everything(&folder).len(), wanted);
    assert_eq!(everything(&cached.snapshot(COMMIT)).len(), wanted);
    load(folder).await;

    let private = Hub::new(&fake.endpoint, "test/private", "main", None).unwrap();
    let err = fetch_hub(&private, cache.path(), None).await.unwrap_err().to_string();
    assert!(err.contains("hf://test/private@main") && err.contains("401") && err.contains("HF_TOKEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_hubs_tools_downloaded_is_used_in_place() {
    let repo = repo_files();
    let fake = FakeHub::start(repo.clone(), repo.clone());
    let cache = tempfile::tempdir().unwrap();
    let cached = populate_as_the_hubs_tools_do(cache.path(), &repo);
    let snapshot = cached.snapshot(COMMIT);

    // A commit names its files for good: no request at all.
    let folder = fetch_hub(&fake.hub(COMMIT), cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(folder, snapshot);
    assert_eq!(fake.requests(), 0, "{:?}", fake.hub_log.lock().unwrap());
    load(folder).await;

    // Offline, a branch goes through refs/: no request either.
    let folder = fetch_hub(&fake.hub("main").offline(true), cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(folder, snapshot);
    assert_eq!(fake.requests(), 0);

    // Online, a branch is checked for a new commit (the listing), and nothing is downloaded.
    let folder = fetch_hub(&fake.hub("main"), cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(folder, snapshot);
    assert_eq!((fake.requests(), fake.downloads()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_the_cache_alone_answers_and_says_what_it_lacks() {
    let repo = repo_files();
    let fake = FakeHub::start(repo.clone(), repo.clone());
    let cache = tempfile::tempdir().unwrap();
    let offline = fake.hub("main").offline(true);

    let err = fetch_hub(&offline, cache.path(), None).await.unwrap_err();
    match &err {
        PipelineError::Hub(HubError::RevisionNotCached { path, .. }) => {
            assert!(path.ends_with("models--test--tiny-b/refs/main"), "{}", path.display())
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");

    // A snapshot whose UNet weights' blob is gone (a partial download, a pruned cache).
    let cached = populate_as_the_hubs_tools_do(cache.path(), &repo);
    let weights = "vae/diffusion_pytorch_model.fp16.safetensors";
    std::fs::remove_file(cached.blob(&blob_id(weights, &repo[weights]))).unwrap();
    let err = fetch_hub(&offline, cache.path(), None).await.unwrap_err();
    match &err {
        PipelineError::Hub(HubError::IncompleteSnapshot { missing, snapshot, .. }) => {
            assert_eq!(missing, &vec![weights.to_string()]);
            assert_eq!(snapshot, &cached.snapshot(COMMIT));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(weights), "{err}");

    // A ref naming a commit whose snapshot is not there.
    std::fs::remove_dir_all(cached.snapshot(COMMIT)).unwrap();
    let err = fetch_hub(&offline, cache.path(), None).await.unwrap_err();
    assert!(
        matches!(&err, PipelineError::Hub(HubError::RevisionNotCached { path, .. }) if path.ends_with(COMMIT)),
        "{err}"
    );
    assert_eq!(fake.requests(), 0, "offline never asks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_is_not_what_the_hub_lists_is_refused_and_leaves_nothing() {
    let repo = repo_files();
    let cache = tempfile::tempdir().unwrap();
    let cached = RepoCache::new(cache.path(), "test/tiny-b");

    // An LFS file whose content is not its listed SHA-256.
    let weights = "vae/diffusion_pytorch_model.fp16.safetensors";
    let mut served = repo.clone();
    served.get_mut(weights).unwrap()[100] ^= 1;
    let fake = FakeHub::start(repo.clone(), served);
    let err = fetch_hub(&fake.hub("main"), cache.path(), Some("fp16")).await.unwrap_err();
    match &err {
        PipelineError::Hub(HubError::ChecksumMismatch { path, algorithm, expected, actual, .. }) => {
            assert_eq!((path.as_str(), *algorithm), (weights, "sha256"));
            assert_eq!(expected, &sha256(&repo[weights]));
            assert_ne!(expected, actual);
        }
        other => panic!("{other}"),
    }
    assert!(!cached.snapshot(COMMIT).join(weights).exists());
    let blobs = everything(&cached.blobs());
    assert!(!blobs.iter().any(|b| b.contains(&sha256(&repo[weights])) || b.ends_with(".incomplete")), "{blobs:?}");
    assert!(!cached.ref_file("main").exists(), "a branch never names a snapshot a fetch left incomplete");

    // A small file whose content is not its listed git blob id.
    let config = "unet/config.json";
    let mut served = repo.clone();
    served.insert(config.into(), b"{\"tampered\": true}".to_vec());
    let fake = FakeHub::start(repo.clone(), served);
    let other_cache = tempfile::tempdir().unwrap();
    let err = fetch_hub(&fake.hub("main"), other_cache.path(), Some("fp16")).await.unwrap_err();
    assert!(
        matches!(&err, PipelineError::Hub(HubError::ChecksumMismatch { path, algorithm: "git blob id", .. }) if path == config),
        "{err}"
    );
    let other = RepoCache::new(other_cache.path(), "test/tiny-b");
    assert!(!other.snapshot(COMMIT).join(config).exists());
    assert!(!other.blob(&git_blob_id(&repo[config])).exists());
    assert!(!everything(&other.blobs()).iter().any(|b| b.ends_with(".incomplete")));

    // Once the Hub serves what it lists, the fetch completes, reusing what was verified before.
    let fake = FakeHub::start(repo.clone(), repo.clone());
    let folder = fetch_hub(&fake.hub("main"), cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(std::fs::read(folder.join(weights)).unwrap(), repo[weights]);
    assert_eq!(std::fs::read_to_string(cached.ref_file("main")).unwrap(), COMMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_goes_only_to_the_endpoints_origin_and_nothing_is_written_outside_the_cache() {
    let cdn_log: Log = Arc::default();
    let cdn = {
        let log = Arc::clone(&cdn_log);
        LoopbackServer::start("fake-cdn", move |request| {
            let log = Arc::clone(&log);
            async move {
                log.lock()
                    .unwrap()
                    .push((request.uri().path().to_string(), request.headers().contains_key("authorization")));
                respond(StatusCode::OK, br#"{"_class_name": "StableDiffusionXLPipeline"}"#.to_vec())
            }
        })
        .unwrap()
    };
    let cdn_addr = cdn.addr();
    let hub_log: Log = Arc::default();
    let hub_addr: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::default();
    let hub = {
        let (log, hub_addr) = (Arc::clone(&hub_log), Arc::clone(&hub_addr));
        LoopbackServer::start("fake-hub", move |request| {
            let (log, hub_addr) = (Arc::clone(&log), Arc::clone(&hub_addr));
            async move {
                let path = request.uri().path().to_string();
                log.lock().unwrap().push((path.clone(), request.headers().contains_key("authorization")));
                let sha = if path.starts_with("/api/models/test/escaping/") { "../../escape" } else { COMMIT };
                if path.starts_with("/api/models/") {
                    // No blob id listed: the file is kept under the one it turns out to have.
                    let body = serde_json::json!({"sha": sha, "siblings": [{"rfilename": "model_index.json"}]});
                    return respond(StatusCode::OK, body.to_string().into_bytes());
                }
                // A location whose text starts with the endpoint's (`http://<hub>`) but whose server is the CDN.
                let hub = hub_addr.lock().unwrap().expect("set before any request");
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", format!("http://{hub}@{cdn_addr}/blobs/model_index.json"))
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            }
        })
        .unwrap()
    };
    *hub_addr.lock().unwrap() = Some(hub.addr());
    let endpoint = format!("http://{}", hub.addr());
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");

    let remote = Hub::new(&endpoint, "test/tiny-b", "main", Some("secret".into())).unwrap();
    let folder = fetch_hub(&remote, &cache, None).await.unwrap();
    let index = br#"{"_class_name": "StableDiffusionXLPipeline"}"#;
    assert_eq!(std::fs::read(folder.join("model_index.json")).unwrap(), index);
    assert!(RepoCache::new(&cache, "test/tiny-b").blob(&git_blob_id(index)).is_file());
    assert!(!hub_log.lock().unwrap().is_empty() && hub_log.lock().unwrap().iter().all(|(_, token)| *token));
    let cdn_requests = cdn_log.lock().unwrap().clone();
    assert_eq!(cdn_requests.len(), 1, "{cdn_requests:?}");
    assert!(!cdn_requests[0].1, "a URL that only starts like the endpoint got the token");

    // A revision or commit that climbs out of the cache is refused before anything is written or removed.
    let outside = root.path().join("x");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), b"mine").unwrap();
    let err = Hub::new(&endpoint, "test/tiny-b", "../../../x", None).unwrap_err().to_string();
    assert!(err.contains("revision"), "{err}");
    let escaping = Hub::new(&endpoint, "test/escaping", "main", None).unwrap();
    let err = fetch_hub(&escaping, &cache, None).await.unwrap_err().to_string();
    assert!(err.contains("not a commit"), "{err}");
    assert_eq!(std::fs::read(outside.join("keep.txt")).unwrap(), b"mine");
    assert!(!root.path().join("escape").exists());
}
