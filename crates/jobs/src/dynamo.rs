//! The job status store in one DynamoDB table keyed by `job_id`. Each transition is one conditional write, so
//! a cancellation, a claim and a duplicate delivery racing each other settle on one outcome. Jobs and results
//! are kept as their contract JSON. `expires_at` (TTL) removes open records after the job queue's longest
//! retention and final ones after `retention`.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Duration, Utc};
use gameforge_aws::PortError;
use gameforge_contract::{GenerationJob, JobResult, JobState, Message, Placement, Progress};

use crate::JobRecord;
use crate::record::cancelled_result;
use crate::store::{CancelOutcome, Claim, Finish, JobStore, ProgressAnswer};

type Item = HashMap<String, AttributeValue>;

/// How long a final record (and its result) stays readable unless the deployment says otherwise.
pub const FINAL_RETENTION_DAYS: u64 = 7;

/// SQS keeps a message at most 14 days; a record still open after that belongs to a job that is gone.
const OPEN_RETENTION: Duration = Duration::days(15);
/// A racing writer can make a transition fail its condition; the next read sees the new state.
const RACE_RETRIES: usize = 8;

#[derive(Debug, Clone)]
pub struct DynamoJobStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn describe<E: std::error::Error + 'static>(e: &SdkError<E>) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}

fn is_condition_failure<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<u32> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn parse(item: &Item) -> Result<JobRecord, PortError> {
    let bad = |what: &str| PortError::new("read job record", format!("{what} is missing or invalid"));
    let job_id = text(item, "job_id").ok_or_else(|| bad("job_id"))?.to_string();
    let state = text(item, "job_state").and_then(JobState::parse).ok_or_else(|| bad("job_state"))?;
    let job = text(item, "job_json")
        .map(|j| GenerationJob::from_json(j.as_bytes()))
        .transpose()
        .map_err(|_| bad("job_json"))?;
    let result = text(item, "result_json")
        .map(|r| JobResult::from_json(r.as_bytes()))
        .transpose()
        .map_err(|_| bad("result_json"))?;
    let placement = text(item, "placement_json")
        .map(serde_json::from_str::<Placement>)
        .transpose()
        .map_err(|_| bad("placement_json"))?;
    let progress = match (number(item, "progress_step"), number(item, "progress_total")) {
        (Some(step), Some(total)) if total > 0 => Some(Progress { step, total }),
        _ => None,
    };
    let updated_at = text(item, "updated_at")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad("updated_at"))?;
    let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
    Ok(JobRecord {
        job_id,
        state,
        job,
        fingerprint: text(item, "request_fingerprint").map(str::to_string),
        submitted_by: text(item, "submitted_by").map(str::to_string),
        updated_at,
        owner: text(item, "owner_message").map(str::to_string),
        placement,
        progress,
        cancel_requested: flag("cancel_requested"),
        runs_started: number(item, "runs_started").unwrap_or(0),
        runs_released: number(item, "runs_released").unwrap_or(0),
        result,
        announced: flag("result_announced"),
    })
}

const FINAL_STATES: [JobState; 4] = [JobState::Succeeded, JobState::Failed, JobState::Rejected, JobState::Cancelled];

impl DynamoJobStore {
    /// `retention`: how long a final record is kept (its result stays readable by `status` that long).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, retention: std::time::Duration) -> Self {
        let retention = Duration::from_std(retention).unwrap_or(Duration::days(7));
        Self { client, table: table.into(), retention }
    }

    fn update(&self, job_id: &str) -> UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("job_id", s(job_id))
    }

    fn with_final_states(update: UpdateItemFluentBuilder) -> UpdateItemFluentBuilder {
        FINAL_STATES
            .iter()
            .enumerate()
            .fold(update, |u, (i, state)| u.expression_attribute_values(format!(":final{i}"), s(state.as_str())))
    }

    fn expires(&self, now: DateTime<Utc>, final_state: bool) -> AttributeValue {
        n((now + if final_state { self.retention } else { OPEN_RETENTION }).timestamp())
    }

    async fn fetch(&self, job_id: &str) -> Result<Option<JobRecord>, PortError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job_id", s(job_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::new("GetItem job", describe(&e)))?;
        answer.item().map(parse).transpose()
    }

    async fn fetch_existing(&self, job_id: &str, operation: &'static str) -> Result<JobRecord, PortError> {
        self.fetch(job_id).await?.ok_or_else(|| PortError::new(operation, format!("job {job_id} vanished")))
    }
}

impl JobStore for DynamoJobStore {
    async fn create(
        &self,
        job: &GenerationJob,
        fingerprint: &str,
        submitted_by: Option<&str>,
    ) -> Result<Result<(), Box<JobRecord>>, PortError> {
        let now = Utc::now();
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("job_id", s(&job.job_id))
            .item("job_state", s(JobState::Submitted.as_str()))
            .item("job_json", s(job.to_json()))
            .item("request_fingerprint", s(fingerprint))
            .item("updated_at", s(now.to_rfc3339()))
            .item("expires_at", self.expires(now, false))
            .condition_expression("attribute_not_exists(job_id)");
        if let Some(caller) = submitted_by {
            put = put.item("submitted_by", s(caller));
        }
        match put.send().await {
            Ok(_) => Ok(Ok(())),
            Err(e) if is_condition_failure(&e) => {
                Ok(Err(Box::new(self.fetch_existing(&job.job_id, "create job").await?)))
            }
            Err(e) => Err(PortError::new("PutItem job", describe(&e))),
        }
    }

    async fn mark_queued(&self, job_id: &str) -> Result<(), PortError> {
        let answer = self
            .update(job_id)
            .update_expression("SET job_state = :queued, updated_at = :now")
            .condition_expression("job_state = :submitted")
            .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .expression_attribute_values(":submitted", s(JobState::Submitted.as_str()))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(PortError::new("UpdateItem job (queued)", describe(&e))),
        }
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, PortError> {
        self.fetch(job_id).await
    }

    async fn cancel(&self, job_id: &str, now: DateTime<Utc>) -> Result<CancelOutcome, PortError> {
        for _ in 0..RACE_RETRIES {
            let Some(record) = self.fetch(job_id).await? else { return Ok(CancelOutcome::NotFound) };
            let (update, cancelled) = match record.state {
                state if state.is_final() => return Ok(CancelOutcome::AlreadyFinal(record)),
                JobState::Running => (
                    self.update(job_id)
                        .update_expression("SET cancel_requested = :yes, updated_at = :now")
                        .condition_expression("job_state = :seen")
                        .expression_attribute_values(":yes", AttributeValue::Bool(true)),
                    false,
                ),
                JobState::Submitted | JobState::Queued => {
                    let result = cancelled_result(job_id, record.job.as_ref(), now);
                    (
                        self.update(job_id)
                            .update_expression(
                                "SET job_state = :cancelled, result_json = :result, result_announced = :no, updated_at = :now, \
                                 expires_at = :expires",
                            )
                            .condition_expression("job_state = :seen")
                                                        .expression_attribute_values(":cancelled", s(JobState::Cancelled.as_str()))
                            .expression_attribute_values(":result", s(result.to_json()))
                            .expression_attribute_values(":no", AttributeValue::Bool(false))
                            .expression_attribute_values(":expires", self.expires(now, true)),
                        true,
                    )
                }
                _ => unreachable!("every open state is handled"),
            };
            let answer = update
                .expression_attribute_values(":seen", s(record.state.as_str()))
                .expression_attribute_values(":now", s(now.to_rfc3339()))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match answer {
                Ok(out) => {
                    let record = parse(out.attributes().ok_or_else(|| PortError::new("cancel job", "no item"))?)?;
                    return Ok(if cancelled {
                        CancelOutcome::Cancelled(record)
                    } else {
                        CancelOutcome::Requested(record)
                    });
                }
                Err(e) if is_condition_failure(&e) => continue,
                Err(e) => return Err(PortError::new("UpdateItem job (cancel)", describe(&e))),
            }
        }
        Err(PortError::new("cancel job", "the job kept changing state"))
    }

    async fn claim(&self, job: &GenerationJob, owner: &str, placement: Option<&Placement>) -> Result<Claim, PortError> {
        for _ in 0..RACE_RETRIES {
            let now = Utc::now();
            let mut update = self
                .update(&job.job_id)
                .update_expression(format!(
                    "SET job_state = :running, owner_message = :me, updated_at = :now, expires_at = :expires, \
                     runs_started = if_not_exists(runs_started, :zero) + :one, job_json = if_not_exists(job_json, :job){} \
                     REMOVE progress_step, progress_total",
                    if placement.is_some() { ", placement_json = :placement" } else { "" }
                ))
                .condition_expression(
                    "attribute_not_exists(job_id) OR job_state IN (:submitted, :queued) \
                     OR (job_state = :running AND owner_message = :me)",
                )
                                .expression_attribute_values(":running", s(JobState::Running.as_str()))
                .expression_attribute_values(":submitted", s(JobState::Submitted.as_str()))
                .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
                .expression_attribute_values(":me", s(owner))
                .expression_attribute_values(":now", s(now.to_rfc3339()))
                .expression_attribute_values(":expires", self.expires(now, false))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":job", s(job.to_json()))
                .return_values(ReturnValue::AllNew);
            if let Some(placement) = placement {
                let placement = serde_json::to_string(placement).map_err(|e| PortError::new("encode placement", e))?;
                update = update.expression_attribute_values(":placement", s(placement));
            }
            match update.send().await {
                Ok(out) => {
                    return Ok(Claim::Run(parse(
                        out.attributes().ok_or_else(|| PortError::new("claim job", "no item"))?,
                    )?));
                }
                Err(e) if is_condition_failure(&e) => {
                    let Some(record) = self.fetch(&job.job_id).await? else { continue };
                    if record.state.is_final() {
                        return Ok(Claim::Final(record));
                    }
                    if record.state == JobState::Running {
                        return Ok(Claim::Busy(record));
                    }
                }
                Err(e) => return Err(PortError::new("UpdateItem job (claim)", describe(&e))),
            }
        }
        Err(PortError::new("claim job", "the job kept changing state"))
    }

    async fn progress(&self, job_id: &str, owner: &str, step: u32, total: u32) -> Result<ProgressAnswer, PortError> {
        let answer = self
            .update(job_id)
            .update_expression("SET progress_step = :step, progress_total = :total, updated_at = :now")
            .condition_expression("job_state = :running AND owner_message = :me")
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":step", n(i64::from(step)))
            .expression_attribute_values(":total", n(i64::from(total)))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match answer {
            Ok(out) => {
                let cancel = out
                    .attributes()
                    .and_then(|a| a.get("cancel_requested"))
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false);
                Ok(if cancel { ProgressAnswer::Cancel } else { ProgressAnswer::Continue })
            }
            Err(e) if is_condition_failure(&e) => Ok(ProgressAnswer::Lost),
            Err(e) => Err(PortError::new("UpdateItem job (progress)", describe(&e))),
        }
    }

    async fn release(&self, job_id: &str, owner: &str) -> Result<(), PortError> {
        let answer = self
            .update(job_id)
            .update_expression(
                "SET job_state = :queued, updated_at = :now, runs_released = if_not_exists(runs_released, :zero) + :one \
                 REMOVE owner_message, progress_step, progress_total",
            )
            .condition_expression("job_state = :running AND owner_message = :me")
                        .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(PortError::new("UpdateItem job (release)", describe(&e))),
        }
    }

    async fn finish(&self, result: &JobResult, job: Option<&GenerationJob>) -> Result<Finish, PortError> {
        let now = Utc::now();
        let state = JobState::of_result(result);
        let mut update = Self::with_final_states(
            self.update(&result.job_id)
                .update_expression(format!(
                    "SET job_state = :state, result_json = :result, result_announced = :no, updated_at = :now, \
                     expires_at = :expires{} REMOVE progress_step, progress_total",
                    if job.is_some() { ", job_json = if_not_exists(job_json, :job)" } else { "" }
                ))
                .condition_expression(
                    "attribute_not_exists(job_id) OR NOT (job_state IN (:final0, :final1, :final2, :final3))",
                ),
        )
        .expression_attribute_values(":state", s(state.as_str()))
        .expression_attribute_values(":result", s(result.to_json()))
        .expression_attribute_values(":no", AttributeValue::Bool(false))
        .expression_attribute_values(":now", s(now.to_rfc3339()))
        .expression_attribute_values(":expires", self.expires(now, true));
        if let Some(job) = job {
            update = update.expression_attribute_values(":job", s(job.to_json()));
        }
        match update.send().await {
            Ok(_) => Ok(Finish::Recorded),
            Err(e) if is_condition_failure(&e) => {
                Ok(Finish::AlreadyFinal(Box::new(self.fetch_existing(&result.job_id, "finish job").await?)))
            }
            Err(e) => Err(PortError::new("UpdateItem job (finish)", describe(&e))),
        }
    }

    async fn mark_announced(&self, job_id: &str) -> Result<(), PortError> {
        self.update(job_id)
            .update_expression("SET result_announced = :yes")
            .condition_expression("attribute_exists(job_id)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| PortError::new("UpdateItem job (announced)", describe(&e)))?;
        Ok(())
    }
}
