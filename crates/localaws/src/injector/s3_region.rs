//! S3's answer to a request sent to the wrong region: a bucket lives in one region, and a path-style request
//! signed for another is refused with `301 PermanentRedirect` and the bucket's region in
//! `x-amz-bucket-region` (the SDK does not follow it). moto serves every bucket from every region, so without
//! this a client of the wrong region works locally and fails on AWS.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::SdkConfig;

use super::protocol::AwsError;

#[derive(Debug)]
pub struct BucketRegions {
    moto: SdkConfig,
    known: Mutex<HashMap<String, String>>,
}

impl BucketRegions {
    pub fn new(moto_port: u16) -> Self {
        Self { moto: crate::moto::direct_config(moto_port), known: Mutex::default() }
    }

    pub fn forget(&self) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The bucket's region, if the bucket exists.
    async fn region(&self, bucket: &str) -> Option<String> {
        if let Some(region) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(bucket) {
            return Some(region.clone());
        }
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&self.moto).force_path_style(true).build());
        let location = s3.get_bucket_location().bucket(bucket).send().await.ok()?;
        // No constraint is us-east-1 (and `EU` the old name of eu-west-1).
        let region = match location.location_constraint().map(|c| c.as_str()) {
            None | Some("") => "us-east-1".to_owned(),
            Some("EU") => "eu-west-1".to_owned(),
            Some(other) => other.to_owned(),
        };
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(bucket.to_owned(), region.clone());
        Some(region)
    }

    /// S3's refusal of a request for `bucket` signed for `signed_region`, if the bucket lives elsewhere:
    /// the error and the bucket's region.
    pub async fn misdirected(&self, bucket: &str, signed_region: &str) -> Option<(AwsError, String)> {
        let region = self.region(bucket).await?;
        (region != signed_region).then(|| {
            let error = AwsError::new(
                301,
                "PermanentRedirect",
                format!(
                    "The bucket you are attempting to access must be addressed using the specified endpoint. \
                     Please send all future requests to this endpoint. (Bucket {bucket} is in {region}; the \
                     request was signed for {signed_region}.)"
                ),
            );
            (error, region)
        })
    }
}
