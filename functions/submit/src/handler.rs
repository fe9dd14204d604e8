//! The routes of the function URL:
//!
//! - `POST /jobs`: a `GenerationJob` (fields the deployment can fill may be left out: `version`,
//!   `submitted_at`, `model_id`, `output`); 202 for a new job, 200 for an id submitted before with the same
//!   request, 400 listing every violation, 409 for an id taken by a different request.
//! - `GET /jobs/{id}`: the `JobStatusReport`.
//! - `POST /jobs/{id}/cancel`: cancels it.
//!
//! Every route needs an IAM-signed request (403 otherwise) and is rate limited per caller (429 with
//! `Retry-After`). The caller (its IAM principal; an assumed role's sessions are the role) owns the jobs it
//! submits, and job ids are its own: another caller's job, like a job sent to the queue by other means, is
//! answered 404 exactly as an id nobody used, and submitting the same id makes the caller's own job, so no
//! answer tells a caller that someone else used an id. Images go under the caller's own folder of the
//! deployment's output prefix (`<output>/<account>/<principal>/`), and results only to the deployment's reply
//! queues (see `gameforge_jobs::reply_to`).

use chrono::Utc;
use gameforge_aws::PortError;
use gameforge_contract::{CONTRACT_VERSION, GenerationJob, Message, S3Uri, Violation};
use gameforge_jobs::{
    CancelOutcome, JobKey, JobRecord, JobSender, JobStore, Owner, ReplyQueues, SubmitError, Submitted, submit,
};
use serde_json::{Value, json};

use crate::http::{Answer, LambdaFunctionUrlRequest as Request, LambdaFunctionUrlResponse as Response, RequestExt};
use crate::rate_limit::{Admission, RateLimiter};

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Submit,
    Status,
    Cancel,
}

/// Every route the function serves: `(method, path template, route)`, a `{id}` segment matching any one path
/// segment (the job id). The OpenAPI description of the URL is checked against this table.
pub const ROUTES: [(&str, &str, Route); 3] = [
    ("POST", "/jobs", Route::Submit),
    ("GET", "/jobs/{id}", Route::Status),
    ("POST", "/jobs/{id}/cancel", Route::Cancel),
];

/// Where [`route`] sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed<'a> {
    /// A route of [`ROUTES`], with the job id its path names (empty for `POST /jobs`).
    To(Route, &'a str),
    /// A path of [`ROUTES`] asked with another method.
    MethodNotAllowed,
    NotFound,
}

/// The route of `method` (upper case) on `path`. Leading and trailing slashes are ignored.
pub fn route<'a>(method: &str, path: &'a str) -> Routed<'a> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut path_known = false;
    for (route_method, template, route) in ROUTES {
        let template: Vec<&str> = template.trim_matches('/').split('/').collect();
        if template.len() != segments.len() || !template.iter().zip(&segments).all(|(t, s)| *t == "{id}" || t == s) {
            continue;
        }
        if route_method != method {
            path_known = true;
            continue;
        }
        let id = template.iter().position(|t| *t == "{id}").map_or("", |at| segments[at]);
        return Routed::To(route, id);
    }
    if path_known { Routed::MethodNotAllowed } else { Routed::NotFound }
}

/// The methods [`ROUTES`] serve on `path`, for a 405's `Allow` header (RFC 9110).
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = ROUTES
        .iter()
        .filter(|(method, _, _)| matches!(route(method, path), Routed::To(..)))
        .map(|(method, _, _)| *method)
        .collect();
    methods.dedup();
    methods
}

#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Jobs write their images under their owner's folder of this prefix, and only there.
    pub output: S3Uri,
    /// The model of a job that names none.
    pub default_model: Option<String>,
    pub max_body_bytes: usize,
}

#[derive(Debug)]
pub struct Handler<S, Q, P, R> {
    pub store: S,
    pub queue: Q,
    pub replies: P,
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

impl<S: JobStore, Q: JobSender, P: ReplyQueues, R: RateLimiter> Handler<S, Q, P, R> {
    pub async fn handle(&self, request: &Request) -> Response {
        let Some(signer) = request.caller() else {
            return Response::error(
                403,
                "requests must be signed with AWS credentials (function URL AuthType AWS_IAM)",
            );
        };
        let caller = match Owner::from_arn(signer) {
            Ok(owner) => owner,
            Err(e) => return Response::error(403, format!("the signer cannot own jobs: {e}")),
        };
        match self.limiter.admit(caller.as_str()).await {
            Ok(Admission::Allowed) => {}
            Ok(Admission::Limited { retry_after }) => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                return Response::json(429, &json!({"error": "rate limited", "retry_after_seconds": seconds}))
                    .with_header("retry-after", &seconds.to_string());
            }
            // An unavailable limiter must not take the endpoint down with it.
            Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; letting the request through"),
        }
        let method = request.method().to_ascii_uppercase();
        let response = match route(&method, request.path()) {
            Routed::To(Route::Submit, _) => self.submit(request, &caller).await,
            Routed::To(Route::Status, id) => self.status(id, &caller).await,
            Routed::To(Route::Cancel, id) => self.cancel(id, &caller).await,
            Routed::MethodNotAllowed => Response::error(405, "method not allowed")
                .with_header("allow", &allowed_methods(request.path()).join(", ")),
            Routed::NotFound => {
                Response::error(404, "no such route; see POST /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel")
            }
        };
        tracing::info!(%caller, %method, path = request.path(), status = response.status_code, "request");
        response
    }

    async fn submit(&self, request: &Request, caller: &Owner) -> Response {
        let body = match request.body_bytes() {
            Ok(body) if body.len() > self.config.max_body_bytes => {
                return Response::error(413, format!("the body is larger than {} bytes", self.config.max_body_bytes));
            }
            Ok(body) => body,
            Err(e) => return violations(&[Violation::new("", e)]),
        };
        let job = match self.complete(&body, caller) {
            Ok(job) => job,
            Err(list) => return violations(&list),
        };
        match submit(&self.store, &self.queue, &self.replies, &job, caller).await {
            Ok(Submitted::New) => Response::json(
                202,
                &json!({"job_id": job.job_id, "state": "queued", "status": format!("/jobs/{}", job.job_id)}),
            ),
            Ok(Submitted::Existing(record)) => Response::json(
                200,
                &json!({"job_id": job.job_id, "state": record.state, "status": format!("/jobs/{}", job.job_id), "duplicate": true}),
            ),
            Err(e @ (SubmitError::Invalid(_) | SubmitError::ReplyTo(_))) => violations(&e.violations()),
            Err(e @ SubmitError::Conflict { .. }) => Response::error(409, e.to_string()),
            Err(SubmitError::Aws(e)) => unavailable(&e),
        }
    }

    /// The job with the deployment's defaults filled in, or every violation.
    fn complete(&self, body: &[u8], caller: &Owner) -> Result<GenerationJob, Vec<Violation>> {
        let own_output = self.config.output.join(&caller.folder());
        let mut value: Value =
            serde_json::from_slice(body).map_err(|e| vec![Violation::new("", format!("not valid JSON: {e}"))])?;
        let Some(fields) = value.as_object_mut() else {
            return Err(vec![Violation::new("", "the body must be a JSON object (a GenerationJob)")]);
        };
        fields.entry("version").or_insert(json!(CONTRACT_VERSION));
        fields.entry("submitted_at").or_insert(json!(Utc::now()));
        fields.entry("output").or_insert(json!(own_output.as_str()));
        if let Some(model) = &self.config.default_model {
            fields.entry("model_id").or_insert(json!(model));
        }
        let job = GenerationJob::from_value(value).map_err(|e| e.violations())?;
        if !within(&own_output, &job.output) {
            return Err(vec![Violation::new(
                "output",
                format!("must be {own_output} or under it (each caller's images are kept in its own folder)"),
            )]);
        }
        Ok(job)
    }

    /// The caller's own job: a job id is looked up among the caller's jobs only.
    async fn visible(&self, job_id: &str, caller: &Owner) -> Result<Option<JobRecord>, Response> {
        self.store.get(&JobKey::owned(caller, job_id)).await.map_err(|e| unavailable(&e))
    }

    async fn status(&self, job_id: &str, caller: &Owner) -> Response {
        match self.visible(job_id, caller).await {
            Ok(Some(record)) => Response::json(200, &serde_json::to_value(record.report()).unwrap_or_default()),
            Ok(None) => Response::error(404, format!("no job {job_id}")),
            Err(response) => response,
        }
    }

    async fn cancel(&self, job_id: &str, caller: &Owner) -> Response {
        match self.visible(job_id, caller).await {
            Ok(Some(_)) => {}
            Ok(None) => return Response::error(404, format!("no job {job_id}")),
            Err(response) => return response,
        }
        let (status, outcome, record) = match self.store.cancel(&JobKey::owned(caller, job_id), Utc::now()).await {
            Ok(CancelOutcome::Cancelled(r)) => (200, "cancelled", r),
            Ok(CancelOutcome::Requested(r)) => (202, "requested", r),
            Ok(CancelOutcome::AlreadyFinal(r)) => (409, "already_final", r),
            Ok(CancelOutcome::NotFound) => return Response::error(404, format!("no job {job_id}")),
            Err(e) => return unavailable(&e),
        };
        Response::json(status, &json!({"job_id": job_id, "outcome": outcome, "state": record.state}))
    }
}

/// Whether `asked` is `allowed` or a location under it.
fn within(allowed: &S3Uri, asked: &S3Uri) -> bool {
    let base = allowed.prefix().trim_end_matches('/');
    let prefix = asked.prefix().trim_end_matches('/');
    asked.bucket() == allowed.bucket()
        && (base.is_empty() || prefix == base || prefix.starts_with(&format!("{base}/")))
        && !prefix.split('/').any(|part| part == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table routes exactly as the function always has.
    #[test]
    fn routes() {
        assert_eq!(route("POST", "/jobs"), Routed::To(Route::Submit, ""));
        assert_eq!(route("POST", "/jobs/"), Routed::To(Route::Submit, ""));
        assert_eq!(route("GET", "/jobs/a-1"), Routed::To(Route::Status, "a-1"));
        assert_eq!(route("POST", "/jobs/a-1/cancel"), Routed::To(Route::Cancel, "a-1"));
        assert_eq!(route("POST", "/jobs//cancel"), Routed::To(Route::Cancel, ""));
        assert_eq!(route("GET", "/jobs/a%2Fb"), Routed::To(Route::Status, "a%2Fb"));
        for (method, path) in
            [("GET", "/jobs"), ("DELETE", "/jobs/a-1"), ("POST", "/jobs/a-1"), ("GET", "/jobs/a/cancel")]
        {
            assert_eq!(route(method, path), Routed::MethodNotAllowed, "{method} {path}");
        }
        assert_eq!(allowed_methods("/jobs"), ["POST"]);
        assert_eq!(allowed_methods("/jobs/a-1"), ["GET"]);
        assert_eq!(allowed_methods("/jobs/a-1/cancel/"), ["POST"]);
        for path in ["/", "/elsewhere", "/jobs/a/b", "/jobs/a/cancel/now", "/job"] {
            assert_eq!(route("GET", path), Routed::NotFound, "{path}");
        }
    }
}
