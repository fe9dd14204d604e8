//! The routes of the function URL:
//!
//! - `POST /jobs`: a `GenerationJob` (fields the deployment can fill may be left out: `version`,
//!   `submitted_at`, `model_id`, `output`); 202 for a new job, 200 for an id submitted before with the same
//!   request, 400 listing every violation, 409 for an id taken by a different request.
//! - `GET /jobs/{id}`: the `JobStatusReport`.
//! - `POST /jobs/{id}/cancel`: cancels it.
//!
//! Every route needs an IAM-signed request (403 otherwise) and is rate limited per caller (429 with
//! `Retry-After`). A caller sees only the jobs it submitted through this endpoint, and jobs sent by other means.

use chrono::Utc;
use gameforge_aws::PortError;
use gameforge_contract::{CONTRACT_VERSION, GenerationJob, Message, S3Uri, Violation};
use gameforge_jobs::{CancelOutcome, JobRecord, JobSender, JobStore, SubmitError, Submitted, submit};
use serde_json::{Value, json};

use crate::http::{Request, Response};
use crate::rate_limit::{Admission, RateLimiter};

#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Jobs write their images under this prefix, and only there.
    pub output: S3Uri,
    /// The model of a job that names none.
    pub default_model: Option<String>,
    pub max_body_bytes: usize,
}

#[derive(Debug)]
pub struct Handler<S, Q, R> {
    pub store: S,
    pub queue: Q,
    pub limiter: R,
    pub config: HandlerConfig,
}

fn violations(list: &[Violation]) -> Response {
    let list: Vec<Value> = list.iter().map(|v| json!({"field": v.field, "message": v.message})).collect();
    Response::json(400, &json!({"error": "invalid job", "violations": list}))
}

fn unavailable(e: &PortError) -> Response {
    tracing::warn!(error = %e, "AWS call failed");
    Response::error(503, "the job store or queue is unavailable; retry shortly").with_header("retry-after", "1")
}

impl<S: JobStore, Q: JobSender, R: RateLimiter> Handler<S, Q, R> {
    pub async fn handle(&self, request: &Request) -> Response {
        let Some(caller) = request.caller() else {
            return Response::error(
                403,
                "requests must be signed with AWS credentials (function URL AuthType AWS_IAM)",
            );
        };
        match self.limiter.admit(&caller).await {
            Ok(Admission::Allowed) => {}
            Ok(Admission::Limited { retry_after }) => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                return Response::json(429, &json!({"error": "rate limited", "retry_after_seconds": seconds}))
                    .with_header("retry-after", seconds.to_string());
            }
            // An unavailable limiter must not take the endpoint down with it.
            Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; letting the request through"),
        }
        let segments: Vec<&str> = request.path().trim_matches('/').split('/').collect();
        let method = request.method().to_ascii_uppercase();
        let response = match (method.as_str(), segments.as_slice()) {
            ("POST", ["jobs"]) => self.submit(request, &caller).await,
            ("GET", ["jobs", id]) => self.status(id, &caller).await,
            ("POST", ["jobs", id, "cancel"]) => self.cancel(id, &caller).await,
            (_, ["jobs"]) | (_, ["jobs", _]) | (_, ["jobs", _, "cancel"]) => Response::error(405, "method not allowed"),
            _ => Response::error(404, "no such route; see POST /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel"),
        };
        tracing::info!(%caller, %method, path = request.path(), status = response.status_code, "request");
        response
    }

    async fn submit(&self, request: &Request, caller: &str) -> Response {
        let body = match request.body_bytes() {
            Ok(body) if body.len() > self.config.max_body_bytes => {
                return Response::error(413, format!("the body is larger than {} bytes", self.config.max_body_bytes));
            }
            Ok(body) => body,
            Err(e) => return violations(&[Violation::new("", e)]),
        };
        let job = match self.complete(&body) {
            Ok(job) => job,
            Err(list) => return violations(&list),
        };
        match submit(&self.store, &self.queue, &job, Some(caller)).await {
            Ok(Submitted::New) => Response::json(
                202,
                &json!({"job_id": job.job_id, "state": "queued", "status": format!("/jobs/{}", job.job_id)}),
            ),
            Ok(Submitted::Existing(record)) => Response::json(
                200,
                &json!({"job_id": job.job_id, "state": record.state, "status": format!("/jobs/{}", job.job_id), "duplicate": true}),
            ),
            Err(SubmitError::Invalid(e)) => violations(&e.violations()),
            Err(e @ SubmitError::Conflict { .. }) => Response::error(409, e.to_string()),
            Err(SubmitError::Aws(e)) => unavailable(&e),
        }
    }

    /// The job with the deployment's defaults filled in, or every violation.
    fn complete(&self, body: &[u8]) -> Result<GenerationJob, Vec<Violation>> {
        let mut value: Value =
            serde_json::from_slice(body).map_err(|e| vec![Violation::new("", format!("not valid JSON: {e}"))])?;
        let Some(fields) = value.as_object_mut() else {
            return Err(vec![Violation::new("", "the body must be a JSON object (a GenerationJob)")]);
        };
        fields.entry("version").or_insert(json!(CONTRACT_VERSION));
        fields.entry("submitted_at").or_insert(json!(Utc::now()));
        fields.entry("output").or_insert(json!(self.config.output.as_str()));
        if let Some(model) = &self.config.default_model {
            fields.entry("model_id").or_insert(json!(model));
        }
        let job = GenerationJob::from_value(value).map_err(|e| e.violations())?;
        if !self.within_output(&job.output) {
            return Err(vec![Violation::new("output", format!("must be {} or under it", self.config.output))]);
        }
        Ok(job)
    }

    fn within_output(&self, output: &S3Uri) -> bool {
        let allowed = self.config.output.prefix().trim_end_matches('/');
        let asked = output.prefix().trim_end_matches('/');
        output.bucket() == self.config.output.bucket()
            && (allowed.is_empty() || asked == allowed || asked.starts_with(&format!("{allowed}/")))
            && !asked.split('/').any(|part| part == "..")
    }

    /// The job's record if the caller may see it.
    async fn visible(&self, job_id: &str, caller: &str) -> Result<Option<JobRecord>, Response> {
        match self.store.get(job_id).await {
            Ok(Some(record)) if record.submitted_by.as_deref().is_none_or(|by| by == caller) => Ok(Some(record)),
            Ok(_) => Ok(None),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn status(&self, job_id: &str, caller: &str) -> Response {
        match self.visible(job_id, caller).await {
            Ok(Some(record)) => Response::json(200, &serde_json::to_value(record.report()).unwrap_or_default()),
            Ok(None) => Response::error(404, format!("no job {job_id}")),
            Err(response) => response,
        }
    }

    async fn cancel(&self, job_id: &str, caller: &str) -> Response {
        match self.visible(job_id, caller).await {
            Ok(Some(_)) => {}
            Ok(None) => return Response::error(404, format!("no job {job_id}")),
            Err(response) => return response,
        }
        let (status, outcome, record) = match self.store.cancel(job_id, Utc::now()).await {
            Ok(CancelOutcome::Cancelled(r)) => (200, "cancelled", r),
            Ok(CancelOutcome::Requested(r)) => (202, "requested", r),
            Ok(CancelOutcome::AlreadyFinal(r)) => (409, "already_final", r),
            Ok(CancelOutcome::NotFound) => return Response::error(404, format!("no job {job_id}")),
            Err(e) => return unavailable(&e),
        };
        Response::json(status, &json!({"job_id": job_id, "outcome": outcome, "state": record.state}))
    }
}
