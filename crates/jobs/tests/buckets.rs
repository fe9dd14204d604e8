//! A bucket is reached in its own region, whatever region the client is configured for: S3 refuses a request
//! signed for another region (the emulator answers as S3 does), and `BucketClients` learns the bucket's region
//! from that answer.

use gameforge_jobs::clients::{BucketClients, s3};
use gameforge_localaws::Emulator;

#[tokio::test]
async fn a_bucket_in_another_region_is_reached_in_its_own() {
    let emulator = Emulator::start().unwrap();
    let home = emulator.sdk_config().await;
    s3(&home).create_bucket().bucket("home-images").send().await.unwrap();
    s3(&home).put_object().bucket("home-images").key("a.png").body(b"png".to_vec().into()).send().await.unwrap();

    let standby = emulator.sdk_config_with("us-west-2", &Emulator::settings()).await;
    let plain = s3(&standby).get_object().bucket("home-images").key("a.png").send().await;
    assert_eq!(plain.unwrap_err().raw_response().map(|r| r.status().as_u16()), Some(301), "S3 refuses it");

    let buckets = BucketClients::new(&standby);
    let object = buckets
        .call("home-images", |s3| async move { s3.get_object().bucket("home-images").key("a.png").send().await })
        .await
        .unwrap();
    assert_eq!(object.body.collect().await.unwrap().into_bytes().as_ref(), b"png");
    assert_eq!(buckets.client("home-images").config().region().map(|r| r.as_ref()), Some("us-east-1"));
    let written = buckets
        .call("home-images", |s3| async move {
            s3.put_object().bucket("home-images").key("b.png").body(b"b".to_vec().into()).send().await
        })
        .await;
    assert!(written.is_ok(), "the learned region serves the next call at once");
}
