//! The job status store in one DynamoDB table keyed by `job_id`, which holds the job's key (`<owner>#<id>`, see
//! [`JobKey`]). Each transition is one conditional write, so a cancellation, a claim and a duplicate delivery
//! racing each other settle on one outcome, and a final result lands only where no other delivery holds the
//! claim. Jobs and results are kept as their contract JSON. `expires_at` (TTL) removes open records after the job
//! queue's longest retention and final ones after `retention`.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Duration, Utc};
use gameforge_aws::PortError;
use gameforge_aws::sdk_error::lost_condition;
use gameforge_contract::{GenerationJob, JobResult, JobState, Message, Placement, Progress};

use crate::record::{cancelled_result, fingerprint};
use crate::store::{CancelOutcome, Claim, Finish, JobStore, ProgressAnswer};
use crate::{JobKey, JobRecord, Owner};

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

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<u32> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn time(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    text(item, name).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

pub(crate) fn parse(item: &Item) -> Result<JobRecord, PortError> {
    let bad = |what: &str| PortError::new("read job record", format!("{what} is missing or invalid"));
    let stored = text(item, "job_id").ok_or_else(|| bad("job_id"))?;
    let owner = text(item, "submitted_by").map(Owner::from_arn).transpose().map_err(|_| bad("submitted_by"))?;
    let key = JobKey::from_stored(stored, owner);
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
    let updated_at = time(item, "updated_at").ok_or_else(|| bad("updated_at"))?;
    let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
    Ok(JobRecord {
        job_id: key.job_id().to_string(),
        state,
        job,
        fingerprint: text(item, "request_fingerprint").map(str::to_string),
        owner: key.owner().cloned(),
        // A record written before creation times were kept: its last update is the best that is known.
        created_at: time(item, "created_at").unwrap_or(updated_at),
        updated_at,
        delivery: text(item, "owner_message").map(str::to_string),
        placement,
        progress,
        cancel_requested: flag("cancel_requested"),
        gpu_only: text(item, "gpu_only").map(str::to_string),
        runs_started: number(item, "runs_started").unwrap_or(0),
        runs_released: number(item, "runs_released").unwrap_or(0),
        result,
        replied: flag("result_replied"),
        announced: flag("result_announced"),
    })
}

/// The condition under which a delivery may claim or answer the job under a key: no other delivery holds the
/// claim, the job is not final, and the message carries the request recorded there (a message that is not a
/// valid job carries none, and may answer only a key where none is recorded). A job with an owner must have
/// been submitted, so its record exists; one without may get its first record from the worker.
fn answerable(key: &JobKey, carries_request: bool) -> String {
    let free = "(job_state IN (:submitted, :queued) OR (job_state = :running AND owner_message = :me))";
    let request = if carries_request {
        "(attribute_not_exists(request_fingerprint) OR request_fingerprint = :fp)"
    } else {
        "attribute_not_exists(job_json)"
    };
    match key.owner() {
        Some(_) => format!("{free} AND {request}"),
        None => format!("attribute_not_exists(job_id) OR ({free} AND {request})"),
    }
}

/// What stands between a delivery and the job under a key, once its claim or answer failed [`answerable`].
enum Standing {
    Final(JobRecord),
    Busy(JobRecord),
    Refused(String),
}

/// Why the condition failed, from the record as it is now; `None` when nothing stands in the way any more (the
/// record changed between the write and this read: try again).
fn standing(key: &JobKey, delivery: &str, record: Option<JobRecord>, request: Option<&str>) -> Option<Standing> {
    let Some(record) = record else {
        return key.owner().is_some().then(|| Standing::Refused(format!("{key} was never submitted")));
    };
    if record.state.is_final() {
        return Some(Standing::Final(record));
    }
    if record.state == JobState::Running && record.delivery.as_deref() != Some(delivery) {
        return Some(Standing::Busy(record));
    }
    let same_request = match request {
        Some(digest) => record.fingerprint.as_deref().is_none_or(|f| f == digest),
        None => record.job.is_none(),
    };
    (!same_request).then(|| Standing::Refused(format!("the message is not the request recorded for {key}")))
}

impl DynamoJobStore {
    /// `retention`: how long a final record is kept (its result stays readable by `status` that long).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, retention: std::time::Duration) -> Self {
        let retention = Duration::from_std(retention).unwrap_or(Duration::days(7));
        Self { client, table: table.into(), retention }
    }

    pub(crate) fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    fn update(&self, key: &JobKey) -> UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("job_id", s(key.stored()))
    }

    /// Sets one of the record's boolean attributes, on a record that exists.
    async fn set_flag(&self, key: &JobKey, attribute: &'static str) -> Result<(), PortError> {
        self.update(key)
            .update_expression("SET #flag = :yes")
            .condition_expression("attribute_exists(job_id)")
            .expression_attribute_names("#flag", attribute)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| PortError::sdk("UpdateItem job flag", &e))?;
        Ok(())
    }

    /// The values [`answerable`] names.
    fn answerable_values(update: UpdateItemFluentBuilder, delivery: &str) -> UpdateItemFluentBuilder {
        update
            .expression_attribute_values(":submitted", s(JobState::Submitted.as_str()))
            .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":me", s(delivery))
    }

    fn expires(&self, now: DateTime<Utc>, final_state: bool) -> AttributeValue {
        let keep = if final_state { self.retention } else { OPEN_RETENTION };
        n(now.checked_add_signed(keep).unwrap_or(DateTime::<Utc>::MAX_UTC).timestamp())
    }

    async fn fetch(&self, key: &JobKey) -> Result<Option<JobRecord>, PortError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job_id", s(key.stored()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::sdk("GetItem job", &e))?;
        answer.item().map(parse).transpose()
    }

    async fn fetch_existing(&self, key: &JobKey, operation: &'static str) -> Result<JobRecord, PortError> {
        self.fetch(key).await?.ok_or_else(|| PortError::new(operation, format!("{key} vanished")))
    }
}

impl JobStore for DynamoJobStore {
    async fn create(&self, owner: &Owner, job: &GenerationJob) -> Result<Result<(), Box<JobRecord>>, PortError> {
        let now = Utc::now();
        let key = JobKey::owned(owner, &job.job_id);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("job_id", s(key.stored()))
            .item("submitted_by", s(owner.as_str()))
            .item("job_state", s(JobState::Submitted.as_str()))
            .item("job_json", s(job.to_json()))
            .item("request_fingerprint", s(fingerprint(job)))
            .item("created_at", s(now.to_rfc3339()))
            .item("updated_at", s(now.to_rfc3339()))
            .item("expires_at", self.expires(now, false))
            .condition_expression("attribute_not_exists(job_id)");
        match put.send().await {
            Ok(_) => Ok(Ok(())),
            Err(e) if lost_condition(&e) => Ok(Err(Box::new(self.fetch_existing(&key, "create job").await?))),
            Err(e) => Err(PortError::sdk("PutItem job", &e)),
        }
    }

    async fn mark_queued(&self, key: &JobKey, gpu_only: Option<&str>) -> Result<(), PortError> {
        let mut update = self.update(key);
        update = match gpu_only {
            Some(why) => update
                .update_expression("SET job_state = :queued, updated_at = :now, gpu_only = :why")
                .expression_attribute_values(":why", s(why)),
            None => update.update_expression("SET job_state = :queued, updated_at = :now"),
        };
        let answer = update
            .condition_expression("job_state = :submitted")
            .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .expression_attribute_values(":submitted", s(JobState::Submitted.as_str()))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) if lost_condition(&e) => Ok(()),
            Err(e) => Err(PortError::sdk("UpdateItem job (queued)", &e)),
        }
    }

    async fn mark_gpu_only(&self, key: &JobKey, why: &str) -> Result<(), PortError> {
        let answer = self
            .update(key)
            .update_expression("SET gpu_only = :why, updated_at = :now")
            .condition_expression("job_state IN (:submitted, :queued)")
            .expression_attribute_values(":why", s(why))
            .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .expression_attribute_values(":submitted", s(JobState::Submitted.as_str()))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) if lost_condition(&e) => Ok(()),
            Err(e) => Err(PortError::sdk("UpdateItem job (gpu only)", &e)),
        }
    }

    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, PortError> {
        self.fetch(key).await
    }

    async fn cancel(&self, key: &JobKey, now: DateTime<Utc>) -> Result<CancelOutcome, PortError> {
        for _ in 0..RACE_RETRIES {
            let Some(record) = self.fetch(key).await? else { return Ok(CancelOutcome::NotFound) };
            let (update, cancelled) = match record.state {
                state if state.is_final() => return Ok(CancelOutcome::AlreadyFinal(record)),
                JobState::Running => (
                    self.update(key)
                        .update_expression("SET cancel_requested = :yes, updated_at = :now")
                        .condition_expression("job_state = :seen")
                        .expression_attribute_values(":yes", AttributeValue::Bool(true)),
                    false,
                ),
                JobState::Submitted | JobState::Queued => {
                    let result = cancelled_result(key.job_id(), record.job.as_ref(), now);
                    (
                        self.update(key)
                            .update_expression(
                                "SET job_state = :cancelled, result_json = :result, result_replied = :no, \
                                 result_announced = :no, updated_at = :now, expires_at = :expires",
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
                Err(e) if lost_condition(&e) => continue,
                Err(e) => return Err(PortError::sdk("UpdateItem job (cancel)", &e)),
            }
        }
        Err(PortError::new("cancel job", "the job kept changing state"))
    }

    async fn claim(
        &self,
        key: &JobKey,
        job: &GenerationJob,
        delivery: &str,
        placement: Option<&Placement>,
    ) -> Result<Claim, PortError> {
        let digest = fingerprint(job);
        let placement = placement
            .map(|p| serde_json::to_string(p).map_err(|e| PortError::new("encode placement", e)))
            .transpose()?;
        for _ in 0..RACE_RETRIES {
            let now = Utc::now();
            let mut update = Self::answerable_values(
                self.update(key)
                    .update_expression(format!(
                        "SET job_state = :running, owner_message = :me, updated_at = :now, expires_at = :expires, \
                         created_at = if_not_exists(created_at, :now), \
                         runs_started = if_not_exists(runs_started, :zero) + :one, \
                         job_json = if_not_exists(job_json, :job), \
                         request_fingerprint = if_not_exists(request_fingerprint, :fp){} \
                         REMOVE progress_step, progress_total",
                        if placement.is_some() { ", placement_json = :placement" } else { "" }
                    ))
                    .condition_expression(answerable(key, true)),
                delivery,
            )
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":expires", self.expires(now, false))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":job", s(job.to_json()))
            .expression_attribute_values(":fp", s(&digest))
            .return_values(ReturnValue::AllNew);
            if let Some(placement) = &placement {
                update = update.expression_attribute_values(":placement", s(placement));
            }
            match update.send().await {
                Ok(out) => {
                    return Ok(Claim::Run(parse(
                        out.attributes().ok_or_else(|| PortError::new("claim job", "no item"))?,
                    )?));
                }
                Err(e) if lost_condition(&e) => match standing(key, delivery, self.fetch(key).await?, Some(&digest)) {
                    Some(Standing::Final(record)) => return Ok(Claim::Final(record)),
                    Some(Standing::Busy(record)) => return Ok(Claim::Busy(record)),
                    Some(Standing::Refused(why)) => return Ok(Claim::Refused(why)),
                    None => continue,
                },
                Err(e) => return Err(PortError::sdk("UpdateItem job (claim)", &e)),
            }
        }
        Err(PortError::new("claim job", "the job kept changing state"))
    }

    async fn progress(&self, key: &JobKey, delivery: &str, step: u32, total: u32) -> Result<ProgressAnswer, PortError> {
        let answer = self
            .update(key)
            .update_expression("SET progress_step = :step, progress_total = :total, updated_at = :now")
            .condition_expression("job_state = :running AND owner_message = :me")
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":me", s(delivery))
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
            Err(e) if lost_condition(&e) => Ok(ProgressAnswer::Lost),
            Err(e) => Err(PortError::sdk("UpdateItem job (progress)", &e)),
        }
    }

    async fn release(&self, key: &JobKey, delivery: &str) -> Result<(), PortError> {
        let answer = self
            .update(key)
            .update_expression(
                "SET job_state = :queued, updated_at = :now, runs_released = if_not_exists(runs_released, :zero) + :one \
                 REMOVE owner_message, progress_step, progress_total",
            )
            .condition_expression("job_state = :running AND owner_message = :me")
            .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":me", s(delivery))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) if lost_condition(&e) => Ok(()),
            Err(e) => Err(PortError::sdk("UpdateItem job (release)", &e)),
        }
    }

    async fn finish(
        &self,
        key: &JobKey,
        result: &JobResult,
        job: Option<&GenerationJob>,
        delivery: &str,
    ) -> Result<Finish, PortError> {
        let state = JobState::of_result(result);
        let digest = job.map(fingerprint);
        for _ in 0..RACE_RETRIES {
            let now = Utc::now();
            let mut update = Self::answerable_values(
                self.update(key)
                    .update_expression(format!(
                        "SET job_state = :state, result_json = :result, result_replied = :no, \
                         result_announced = :no, updated_at = :now, expires_at = :expires, \
                         created_at = if_not_exists(created_at, :now){} \
                         REMOVE progress_step, progress_total",
                        if job.is_some() {
                            ", job_json = if_not_exists(job_json, :job), \
                             request_fingerprint = if_not_exists(request_fingerprint, :fp)"
                        } else {
                            ""
                        }
                    ))
                    .condition_expression(answerable(key, job.is_some())),
                delivery,
            )
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":result", s(result.to_json()))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":expires", self.expires(now, true));
            if let (Some(job), Some(digest)) = (job, &digest) {
                update = update
                    .expression_attribute_values(":job", s(job.to_json()))
                    .expression_attribute_values(":fp", s(digest));
            }
            match update.send().await {
                Ok(_) => return Ok(Finish::Recorded),
                Err(e) if lost_condition(&e) => {
                    match standing(key, delivery, self.fetch(key).await?, digest.as_deref()) {
                        Some(Standing::Final(record)) => return Ok(Finish::AlreadyFinal(Box::new(record))),
                        Some(Standing::Busy(record)) => return Ok(Finish::Busy(Box::new(record))),
                        Some(Standing::Refused(why)) => return Ok(Finish::Refused(why)),
                        None => continue,
                    }
                }
                Err(e) => return Err(PortError::sdk("UpdateItem job (finish)", &e)),
            }
        }
        Err(PortError::new("finish job", "the job kept changing state"))
    }

    async fn mark_replied(&self, key: &JobKey) -> Result<(), PortError> {
        self.set_flag(key, "result_replied").await
    }

    async fn mark_announced(&self, key: &JobKey) -> Result<(), PortError> {
        self.set_flag(key, "result_announced").await
    }
}
