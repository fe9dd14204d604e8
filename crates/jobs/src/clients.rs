//! SDK clients that reach a resource wherever its region: the job queue and the status store live in the
//! home region, while workers and clients may run in another.

use aws_config::SdkConfig;

/// The region of `https://sqs.<region>.amazonaws.com/...`; `None` for any other URL (an emulator, a VPC
/// endpoint), which the configured client serves.
pub fn queue_region(queue_url: &str) -> Option<String> {
    queue_url
        .strip_prefix("https://sqs.")
        .and_then(|rest| rest.split_once(".amazonaws.com"))
        .map(|(region, _)| region.to_string())
}

/// An SQS client for the queue's region.
pub fn sqs_for_queue(config: &SdkConfig, queue_url: &str) -> aws_sdk_sqs::Client {
    match queue_region(queue_url) {
        Some(region) => aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(config).region(aws_sdk_sqs::config::Region::new(region)).build(),
        ),
        None => aws_sdk_sqs::Client::new(config),
    }
}

/// A DynamoDB client and table name for `table`: a plain name (the configured region) or a table ARN
/// (`arn:aws:dynamodb:<region>:<account>:table/<name>`, its own region).
pub fn dynamodb_for_table(config: &SdkConfig, table: &str) -> (aws_sdk_dynamodb::Client, String) {
    let parts: Vec<&str> = table.splitn(6, ':').collect();
    if let [_, _, "dynamodb", region, _, resource] = parts.as_slice()
        && let Some(name) = resource.strip_prefix("table/")
    {
        let conf = aws_sdk_dynamodb::config::Builder::from(config)
            .region(aws_sdk_dynamodb::config::Region::new(region.to_string()))
            .build();
        return (aws_sdk_dynamodb::Client::from_conf(conf), name.to_string());
    }
    (aws_sdk_dynamodb::Client::new(config), table.to_string())
}

/// An S3 client with path-style addressing, which every endpoint (AWS, the emulator) answers.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// S3 clients by bucket. A bucket lives in one region, and S3 refuses a path-style request signed for another
/// (`301 PermanentRedirect`, the bucket's region in `x-amz-bucket-region`), which the SDK does not follow: a
/// standby's worker writing to the home region's bucket, or a backend elsewhere downloading an image. The first
/// such answer teaches the bucket's region, and the call is made again there.
#[derive(Debug, Clone)]
pub struct BucketClients {
    base: SdkConfig,
    default: aws_sdk_s3::Client,
    learned: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, aws_sdk_s3::Client>>>,
}

/// An SDK error from S3, whatever the operation.
pub type S3Error<E> = aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>;

impl BucketClients {
    pub fn new(config: &SdkConfig) -> Self {
        Self { base: config.clone(), default: s3(config), learned: Default::default() }
    }

    /// The client for `bucket`: of its region once known, else of the configured one.
    pub fn client(&self, bucket: &str) -> aws_sdk_s3::Client {
        let learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned.get(bucket).cloned().unwrap_or_else(|| self.default.clone())
    }

    /// Runs `call` with the bucket's client; when S3 answers that the bucket is in another region, runs it once
    /// more with a client of that region (and keeps that client for the bucket).
    pub async fn call<T, E, F, Fut>(&self, bucket: &str, call: F) -> Result<T, S3Error<E>>
    where
        F: Fn(aws_sdk_s3::Client) -> Fut,
        Fut: Future<Output = Result<T, S3Error<E>>>,
    {
        let client = self.client(bucket);
        match call(client.clone()).await {
            Err(error) => match redirected_to(&error)
                .filter(|r| Some(r.as_str()) != client.config().region().map(|r| r.as_ref()))
            {
                Some(region) => {
                    let regional = s3(&self.base.to_builder().region(aws_config::Region::new(region)).build());
                    self.learned.lock().unwrap_or_else(|p| p.into_inner()).insert(bucket.to_owned(), regional.clone());
                    call(regional).await
                }
                None => Err(error),
            },
            ok => ok,
        }
    }
}

/// The region S3 names for a bucket asked for in the wrong one.
fn redirected_to<E>(error: &S3Error<E>) -> Option<String> {
    let response = error.raw_response()?;
    let status = response.status().as_u16();
    if !(status == 301 || status == 400 || status == 403) {
        return None;
    }
    response.headers().get("x-amz-bucket-region").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_come_from_queue_urls_and_table_arns() {
        assert_eq!(queue_region("https://sqs.eu-west-1.amazonaws.com/123/jobs").as_deref(), Some("eu-west-1"));
        assert_eq!(queue_region("http://127.0.0.1:4566/123/jobs"), None);
        let config = SdkConfig::builder().region(aws_config::Region::new("us-east-1")).build();
        let (client, name) = dynamodb_for_table(&config, "arn:aws:dynamodb:us-west-2:123456789012:table/gf-jobs");
        assert_eq!(name, "gf-jobs");
        assert_eq!(client.config().region().map(|r| r.as_ref()), Some("us-west-2"));
        let (client, name) = dynamodb_for_table(&config, "gf-jobs");
        assert_eq!(name, "gf-jobs");
        assert_eq!(client.config().region().map(|r| r.as_ref()), Some("us-east-1"));
    }
}
