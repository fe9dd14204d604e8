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
