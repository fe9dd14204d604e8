//! `--stack NAME`: a deployment's settings read from its home stack's outputs, so that nobody copies queue URLs
//! and table names by hand. A setting given explicitly (flag or environment) always wins over the stack's.

use std::collections::BTreeMap;

use aws_config::SdkConfig;

/// The outputs of stack `name`, by key.
pub async fn outputs(config: &SdkConfig, name: &str) -> Result<BTreeMap<String, String>, String> {
    let client = aws_sdk_cloudformation::Client::new(config);
    let answer = client
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| format!("stack {name}: {}", aws_sdk_cloudformation::error::DisplayErrorContext(e)))?;
    let stack = answer.stacks().first().ok_or_else(|| format!("stack {name} does not exist"))?;
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect())
}

/// `explicit`, else the stack's output `key` when a stack was named.
pub fn setting(explicit: Option<&String>, outputs: Option<&BTreeMap<String, String>>, key: &str) -> Option<String> {
    explicit.cloned().or_else(|| outputs.and_then(|o| o.get(key).cloned()))
}
