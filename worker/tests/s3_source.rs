//! Loading a model from `s3://bucket/prefix` against the emulator: copied once into the cache, reused while the
//! objects are unchanged, refreshed when one changes, throttling absorbed, and a bad prefix a clear error.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use gameforge_localaws::{AwsError, Emulator, Rule};
use sdxl_worker::source::{S3, fetch};
use sdxl_worker::{LoadOptions, SdxlPipeline};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sdxl-b")
}

fn files(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, base, out);
        } else {
            out.push((path.strip_prefix(base).unwrap().to_string_lossy().into_owned(), path));
        }
    }
}

async fn upload(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> usize {
    let mut all = Vec::new();
    files(&tiny(), &tiny(), &mut all);
    for (relative, path) in &all {
        client
            .put_object()
            .bucket(bucket)
            .key(format!("{prefix}/{relative}"))
            .body(ByteStream::from_path(path).await.unwrap())
            .send()
            .await
            .unwrap();
    }
    // Something a pipeline folder never needs, which must not be fetched.
    client
        .put_object()
        .bucket(bucket)
        .key(format!("{prefix}/unet/diffusion_pytorch_model.bin"))
        .body(ByteStream::from_static(b"pickle"))
        .send()
        .await
        .unwrap();
    all.len()
}

fn gets(emulator: &Emulator) -> usize {
    emulator.faults().requests().iter().filter(|r| r.action.as_deref() == Some("GetObject") && !r.injected).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_model_is_cached_reused_refreshed_and_loads() {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let client =
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    client.create_bucket().bucket("models").send().await.unwrap();
    let count = upload(&client, "models", "sdxl/tiny-b").await;
    let cache = tempfile::tempdir().unwrap();

    // One throttled download on the way: the SDK's retries absorb it.
    let slow = emulator.faults().add(Rule::for_service("s3").action("GetObject").times(1).throttle());
    let folder = fetch(&S3::new(client.clone(), "models", "sdxl/tiny-b"), cache.path(), None).await.unwrap();
    assert_eq!(slow.hits(), 1);
    assert_eq!(folder, cache.path().join("s3/models/sdxl/tiny-b"));
    assert_eq!(gets(&emulator), count, "every wanted file once");
    assert!(!folder.join("unet/diffusion_pytorch_model.bin").exists());
    let pipeline =
        tokio::task::spawn_blocking(move || SdxlPipeline::load(&folder, LoadOptions::cpu()).map(|_| ())).await.unwrap();
    pipeline.unwrap();

    // Unchanged objects: nothing downloaded again (a 500 on the listing is retried).
    let broken = emulator
        .faults()
        .add(Rule::for_service("s3").action("ListObjectsV2").times(1).fail(AwsError::internal_error()));
    let again = fetch(&S3::new(client.clone(), "models", "sdxl/tiny-b"), cache.path(), None).await.unwrap();
    assert_eq!(gets(&emulator), count);
    assert_eq!(broken.hits(), 1);

    // One object changed: a fresh complete copy replaces the old one, fetching only what changed.
    client
        .put_object()
        .bucket("models")
        .key("sdxl/tiny-b/scheduler/scheduler_config.json")
        .body(ByteStream::from_static(br#"{"_class_name": "DDIMScheduler"}"#))
        .send()
        .await
        .unwrap();
    let refreshed = fetch(&S3::new(client.clone(), "models", "sdxl/tiny-b"), cache.path(), None).await.unwrap();
    assert_eq!(refreshed, again);
    assert_eq!(gets(&emulator), count + 1);
    let text = std::fs::read_to_string(refreshed.join("scheduler/scheduler_config.json")).unwrap();
    assert!(text.contains("DDIMScheduler"));
    let leftovers: Vec<_> = std::fs::read_dir(refreshed.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, vec!["tiny-b".to_string()], "no partial or old copies left behind");

    // A prefix without a model, and a bucket that does not exist.
    let err =
        fetch(&S3::new(client.clone(), "models", "sdxl/nothing"), cache.path(), None).await.unwrap_err().to_string();
    assert!(err.contains("no model_index.json"), "{err}");
    let err = fetch(&S3::new(client.clone(), "absent-bucket", "sdxl/tiny-b"), cache.path(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3://absent-bucket/sdxl/tiny-b") && err.contains("NoSuchBucket"), "{err}");
}
