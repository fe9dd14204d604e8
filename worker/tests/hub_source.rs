//! Loading a model by Hugging Face Hub repo id, against a local server speaking the Hub's API: the listing,
//! redirects of large files to another host (which never sees the token), the selection of what a pipeline
//! needs, reuse of the cache, and clear errors for a private repo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gameforge_localaws::LoopbackServer;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use sdxl_worker::source::{Hub, fetch};
use sdxl_worker::{LoadOptions, SdxlPipeline};

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

type Log = Arc<Mutex<Vec<(String, bool)>>>;

fn respond(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_repo_is_listed_selected_downloaded_and_cached() {
    let mut repo = BTreeMap::new();
    files(&tiny(), &tiny(), &mut repo);
    let wanted = repo.len();
    // What real repos also hold, which a pipeline never needs.
    repo.insert("tiny_single_file_checkpoint.safetensors".into(), b"not needed".to_vec());
    repo.insert("unet/diffusion_pytorch_model.bin".into(), b"pickle".to_vec());
    repo.insert("text_encoder/onnx/model.onnx".into(), b"onnx".to_vec());
    let repo = Arc::new(repo);

    let cdn_log: Log = Arc::default();
    let cdn = {
        let (repo, log) = (Arc::clone(&repo), Arc::clone(&cdn_log));
        LoopbackServer::start("fake-cdn", move |request| {
            let (repo, log) = (Arc::clone(&repo), Arc::clone(&log));
            async move {
                let path = request.uri().path().trim_start_matches("/blobs/").to_string();
                log.lock().unwrap().push((path.clone(), request.headers().contains_key("authorization")));
                match repo.get(&path) {
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
        let (repo, log) = (Arc::clone(&repo), Arc::clone(&hub_log));
        LoopbackServer::start("fake-hub", move |request| {
            let (repo, log, cdn_base) = (Arc::clone(&repo), Arc::clone(&log), cdn_base.clone());
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
                        .keys()
                        .map(|name| {
                            let mut s = serde_json::json!({"rfilename": name, "blobId": format!("blob-{name}")});
                            if name.ends_with(".safetensors") {
                                s["lfs"] =
                                    serde_json::json!({"sha256": format!("sha-{name}"), "size": repo[name].len()});
                            }
                            s
                        })
                        .collect();
                    let body = serde_json::json!({"id": "test/tiny-b", "sha": "c0ffee", "siblings": siblings});
                    return respond(StatusCode::OK, body.to_string().into_bytes());
                }
                let Some(file) = path.strip_prefix("/test/tiny-b/resolve/c0ffee/") else {
                    return respond(StatusCode::NOT_FOUND, vec![]);
                };
                if file.ends_with(".safetensors") {
                    // Large files live on another host, as on the real Hub.
                    return Response::builder()
                        .status(StatusCode::FOUND)
                        .header("location", format!("{cdn_base}/blobs/{file}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                }
                match repo.get(file) {
                    Some(body) => respond(StatusCode::OK, body.clone()),
                    None => respond(StatusCode::NOT_FOUND, vec![]),
                }
            }
        })
        .unwrap()
    };
    let endpoint = format!("http://{}", hub.addr());
    let cache = tempfile::tempdir().unwrap();
    let remote = Hub::new(&endpoint, "test/tiny-b", "main", Some("secret".into())).unwrap();

    let folder = fetch(&remote, cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(folder, cache.path().join("hub/test/tiny-b/main"));
    for unwanted in
        ["tiny_single_file_checkpoint.safetensors", "unet/diffusion_pytorch_model.bin", "text_encoder/onnx/model.onnx"]
    {
        assert!(!folder.join(unwanted).exists(), "{unwanted} was fetched");
    }
    let downloads = |log: &Log| log.lock().unwrap().iter().filter(|(p, _)| !p.starts_with("/api/")).count();
    let weights = repo.keys().filter(|k| k.contains('/') && k.ends_with(".safetensors")).count();
    assert_eq!(downloads(&cdn_log), weights, "every weight file once, from the CDN");
    assert_eq!(downloads(&hub_log), wanted, "every wanted file resolved once (weights by redirect)");
    assert!(hub_log.lock().unwrap().iter().all(|(_, authorized)| *authorized), "the Hub gets the token");
    assert!(cdn_log.lock().unwrap().iter().all(|(_, authorized)| !authorized), "the CDN never does");
    let loaded =
        tokio::task::spawn_blocking(move || SdxlPipeline::load(&folder, LoadOptions::cpu()).map(|_| ())).await.unwrap();
    loaded.unwrap();

    // Unchanged: only the listing is asked for.
    fetch(&remote, cache.path(), Some("fp16")).await.unwrap();
    assert_eq!(downloads(&hub_log), wanted);
    assert_eq!(downloads(&cdn_log), weights);

    let private = Hub::new(&endpoint, "test/private", "main", None).unwrap();
    let err = fetch(&private, cache.path(), None).await.unwrap_err().to_string();
    assert!(err.contains("hf://test/private@main") && err.contains("401") && err.contains("HF_TOKEN"), "{err}");
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
                let sha = if path.starts_with("/api/models/test/escaping/") { "../../escape" } else { "c0ffee" };
                if path.starts_with("/api/models/") {
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
    let folder = fetch(&remote, &cache, None).await.unwrap();
    assert!(folder.join("model_index.json").exists());
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
    let err = fetch(&escaping, &cache, None).await.unwrap_err().to_string();
    assert!(err.contains("not a commit"), "{err}");
    assert_eq!(std::fs::read(outside.join("keep.txt")).unwrap(), b"mine");
    assert!(!root.path().join("escape").exists());
}
