//! Deploys the project's CloudFormation templates to the emulator, as they would be deployed to AWS.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};

use crate::Error;

/// Creates a stack and waits for it; returns its outputs.
pub async fn deploy_stack(
    config: &SdkConfig,
    name: &str,
    template: &str,
    parameters: &[(&str, &str)],
) -> Result<BTreeMap<String, String>, Error> {
    let fail = |reason: String| Error::Stack { stack: name.to_owned(), reason };
    let client = aws_sdk_cloudformation::Client::new(config);
    client
        .create_stack()
        .stack_name(name)
        .template_body(template)
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(key, value)| Parameter::builder().parameter_key(*key).parameter_value(*value).build())
                .collect(),
        ))
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(|e| fail(format!("create: {}", aws_sdk_cloudformation::error::DisplayErrorContext(e))))?;
    for _ in 0..600 {
        let stacks = client
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| fail(format!("describe: {}", aws_sdk_cloudformation::error::DisplayErrorContext(e))))?;
        let stack = stacks.stacks().first().ok_or_else(|| fail("vanished".into()))?;
        match stack.stack_status() {
            Some(StackStatus::CreateComplete) => {
                return Ok(stack
                    .outputs()
                    .iter()
                    .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                    .collect());
            }
            Some(StackStatus::CreateInProgress) | None => tokio::time::sleep(Duration::from_millis(100)).await,
            Some(other) => {
                return Err(fail(format!("{other}: {}", stack.stack_status_reason().unwrap_or("no reason given"))));
            }
        }
    }
    Err(fail("still creating after 60 s".into()))
}

/// A queue's URL as the emulator hands it out. Stack outputs carry real-AWS URLs, so queues are looked up by
/// name.
pub async fn queue_url(config: &SdkConfig, name: &str) -> Result<String, Error> {
    aws_sdk_sqs::Client::new(config)
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| Error::Emulator(format!("queue {name}: {}", aws_sdk_sqs::error::DisplayErrorContext(e))))?
        .queue_url
        .ok_or_else(|| Error::Emulator(format!("queue {name} has no URL")))
}

/// The resources of `infra/gameforge.yaml` as deployed, found by their names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub prefix: String,
    pub signals_queue_url: String,
    pub signals_dead_letter_url: String,
    pub control_queue_url: String,
    pub control_dead_letter_url: String,
    pub control_retry_url: String,
    pub job_queue_url: String,
    pub job_dead_letter_url: String,
    pub dedup_table: String,
    pub ledger_table: String,
    pub jobs_table: String,
    pub submit_rate_table: String,
}

impl Deployment {
    /// Deploys the project's template under `prefix` (the stack is named after it).
    pub async fn deploy(config: &SdkConfig, prefix: &str) -> Result<Self, Error> {
        let path = crate::tools::repo_root().join("infra/gameforge.yaml");
        let template = std::fs::read_to_string(&path)
            .map_err(|e| Error::Stack { stack: prefix.to_owned(), reason: format!("{}: {e}", path.display()) })?;
        deploy_stack(config, prefix, &template, &[("Prefix", prefix)]).await?;
        Ok(Self {
            prefix: prefix.to_owned(),
            signals_queue_url: queue_url(config, &format!("{prefix}-signals")).await?,
            signals_dead_letter_url: queue_url(config, &format!("{prefix}-signals-dlq")).await?,
            control_queue_url: queue_url(config, &format!("{prefix}-control.fifo")).await?,
            control_dead_letter_url: queue_url(config, &format!("{prefix}-control-dlq.fifo")).await?,
            control_retry_url: queue_url(config, &format!("{prefix}-control-retry")).await?,
            job_queue_url: queue_url(config, &format!("{prefix}-jobs")).await?,
            job_dead_letter_url: queue_url(config, &format!("{prefix}-jobs-dlq")).await?,
            dedup_table: format!("{prefix}-signal-dedup"),
            ledger_table: format!("{prefix}-ledger"),
            jobs_table: format!("{prefix}-jobs"),
            submit_rate_table: format!("{prefix}-submit-rate"),
        })
    }

    /// The environment of the `on-signal` function, as the template sets it on AWS.
    pub fn on_signal_env(&self, fleet: &str) -> Vec<(String, String)> {
        vec![
            ("SIGNALS_QUEUE_URL".into(), self.signals_queue_url.clone()),
            ("SIGNALS_DLQ_URL".into(), self.signals_dead_letter_url.clone()),
            ("CONTROL_QUEUE_URL".into(), self.control_queue_url.clone()),
            ("SIGNAL_DEDUP_TABLE".into(), self.dedup_table.clone()),
            ("GAMEFORGE_FLEET".into(), fleet.to_owned()),
        ]
    }

    /// The environment of the `submit` function; jobs write their images under `output` and run `model` unless
    /// they name another.
    pub fn submit_env(&self, output: &str, model: &str) -> Vec<(String, String)> {
        vec![
            ("JOB_QUEUE_URL".into(), self.job_queue_url.clone()),
            ("JOBS_TABLE".into(), self.jobs_table.clone()),
            ("RATE_LIMIT_TABLE".into(), self.submit_rate_table.clone()),
            ("OUTPUT_PREFIX".into(), output.to_owned()),
            ("DEFAULT_MODEL".into(), model.to_owned()),
        ]
    }

    /// The environment of the `executor` function; `fleet_config` is a path to the fleet file or its JSON.
    pub fn executor_env(&self, fleet_config: &str) -> Vec<(String, String)> {
        vec![
            ("GAMEFORGE_FLEET_CONFIG".into(), fleet_config.to_owned()),
            ("LEDGER_TABLE".into(), self.ledger_table.clone()),
            ("JOB_QUEUE_URL".into(), self.job_queue_url.clone()),
            ("RETRY_QUEUE_URL".into(), self.control_retry_url.clone()),
            ("CONTROL_DLQ_URL".into(), self.control_dead_letter_url.clone()),
        ]
    }
}
