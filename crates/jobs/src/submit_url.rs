//! The submit URL as a transport: the same submissions, statuses and cancellations as the direct one, through
//! `functions/submit` behind its `AWS_IAM` function URL, so that a caller needs only the URL's invoke permission
//! (SubmitCallerPolicy) and no access to the queue or the status table. The function's answers are mapped to the
//! library's own results and errors; 429 and 5xx (and a connection that fails) are retried with exponential
//! backoff and full jitter, never sooner than a `Retry-After`.

use std::time::Duration;

use aws_config::SdkConfig;
use bytes::Bytes;
use chrono::Utc;
use gameforge_aws::PortError;
use gameforge_aws::backoff::Backoff;
use gameforge_contract::{ContractError, GenerationJob, JobState, JobStatusReport, Message, Violation};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::signing::Signer;
use crate::{CancelOutcome, JobRecord, SubmitError, Submitted};

/// Attempts of one request: the first and four retries.
const ATTEMPTS: u32 = 5;
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
/// One attempt's limit: the function's own timeout is shorter, so an attempt that takes longer is lost.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a refusal at the door means for the caller.
const FORBIDDEN: &str = "403 Forbidden: the submit URL refused the request. It must be signed (SigV4, service \
                         lambda) by a principal allowed lambda:InvokeFunctionUrl and lambda:InvokeFunction through \
                         the URL (attach the deployment's SubmitCallerPolicy)";

/// Which of a job's fields the deployment fills when the request leaves them out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    /// `model_id`: the deployment's model.
    pub model: bool,
    /// `output`: the caller's own folder of the deployment's output prefix.
    pub output: bool,
}

/// One answer of the URL.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn text(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }

    fn state(&self) -> Result<JobState, PortError> {
        self.text("state").and_then(JobState::parse).ok_or_else(|| {
            PortError::new("submit URL", format!("answer {} names no job state: {}", self.status, self.body))
        })
    }

    /// The answer as an error: the URL's own or the function's message.
    fn unexpected(&self, operation: &'static str) -> PortError {
        if self.status == StatusCode::FORBIDDEN {
            return PortError::new(operation, FORBIDDEN);
        }
        let message =
            self.text("error").or_else(|| self.text("Message")).map_or_else(|| self.body.to_string(), str::to_owned);
        PortError::new(operation, format!("{}: {message}", self.status))
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The submit URL of one deployment, signed as the configured caller.
#[derive(Debug, Clone)]
pub struct SubmitUrl {
    base: String,
    signer: Signer,
    http: HttpClient<Https, Full<Bytes>>,
}

impl SubmitUrl {
    /// `url`: the deployment's submit URL (the stack's `SubmitUrl` output), `https://` (or `http://` for a local
    /// one).
    pub fn new(config: &SdkConfig, url: &str) -> Result<Self, PortError> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|e| PortError::new("submit URL", format!("{url:?}: {e}")))?;
        let host = match (uri.scheme_str(), uri.host()) {
            (Some("https" | "http"), Some(host)) if !host.is_empty() => host.to_owned(),
            _ => return Err(PortError::new("submit URL", format!("{url:?} is not an http(s) URL"))),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| PortError::new("submit URL", format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base,
            signer: Signer::new(config, &host)?,
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
        })
    }

    pub async fn submit(&self, job: &GenerationJob, defaults: Defaults) -> Result<Submitted, SubmitError> {
        let mut body = serde_json::to_value(job).map_err(|e| PortError::new("encode job", e))?;
        if let Some(fields) = body.as_object_mut() {
            if defaults.model {
                fields.remove("model_id");
            }
            if defaults.output {
                fields.remove("output");
            }
        }
        let answer = self.request(Method::POST, "/jobs", Some(&body)).await?;
        match answer.status.as_u16() {
            202 => Ok(Submitted::New),
            200 => Ok(Submitted::Existing(Box::new(sparse_record(&job.job_id, answer.state()?)))),
            400 | 413 => {
                let listed: Vec<Violation> = answer
                    .body
                    .get("violations")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .map(|v| {
                                let field = v.get("field").and_then(Value::as_str).unwrap_or_default();
                                Violation::new(field, v.get("message").and_then(Value::as_str).unwrap_or_default())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let listed = if listed.is_empty() {
                    vec![Violation::new("", answer.text("error").unwrap_or("refused by the submit URL"))]
                } else {
                    listed
                };
                Err(SubmitError::Invalid(ContractError::Invalid(listed)))
            }
            409 => {
                // The answer says only that the id is taken; the record behind it is the caller's own to read.
                let existing = match self.status(&job.job_id).await? {
                    Some(report) => record_of(&report),
                    None => sparse_record(&job.job_id, JobState::Submitted),
                };
                Err(SubmitError::Conflict { job_id: job.job_id.clone(), existing: Box::new(existing) })
            }
            _ => Err(answer.unexpected("POST /jobs").into()),
        }
    }

    pub async fn status(&self, job_id: &str) -> Result<Option<JobStatusReport>, PortError> {
        let answer = self.request(Method::GET, &format!("/jobs/{}", segment(job_id)), None).await?;
        match answer.status.as_u16() {
            200 => JobStatusReport::from_value(answer.body)
                .map(Some)
                .map_err(|e| PortError::new("GET /jobs/{id}", format!("the answer is not a job status: {e}"))),
            404 => Ok(None),
            _ => Err(answer.unexpected("GET /jobs/{id}")),
        }
    }

    pub async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, PortError> {
        let answer = self.request(Method::POST, &format!("/jobs/{}/cancel", segment(job_id)), None).await?;
        let record = || answer.state().map(|state| sparse_record(job_id, state));
        match answer.status.as_u16() {
            200 => Ok(CancelOutcome::Cancelled(record()?)),
            202 => Ok(CancelOutcome::Requested(record()?)),
            409 => Ok(CancelOutcome::AlreadyFinal(record()?)),
            404 => Ok(CancelOutcome::NotFound),
            _ => Err(answer.unexpected("POST /jobs/{id}/cancel")),
        }
    }

    /// One signed request, retried while the URL answers 429 or 5xx or cannot be reached.
    async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, PortError> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut attempt = 0;
        loop {
            let outcome =
                tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&method, path, &bytes, body.is_some())).await;
            let (retry_after, last) = match outcome {
                Ok(Ok(answer)) if answer.status == StatusCode::TOO_MANY_REQUESTS || answer.status.is_server_error() => {
                    (answer.retry_after, Err(answer.answer.unexpected("submit URL")))
                }
                Ok(Ok(answer)) => return Ok(answer.answer),
                Ok(Err(e)) => (None, Err(e)),
                Err(_) => (None, Err(PortError::new("submit URL", format!("no answer within {ATTEMPT_TIMEOUT:?}")))),
            };
            if attempt + 1 >= ATTEMPTS {
                return last;
            }
            let delay = BACKOFF.delay(attempt, &mut rand::rng()).max(retry_after.unwrap_or_default());
            tracing::debug!(?delay, attempt, error = ?last.as_ref().err(), "submit URL: retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, method: &Method, path: &str, body: &[u8], json: bool) -> Result<Received, PortError> {
        let fail = |e: &dyn std::fmt::Display| PortError::new("submit URL", format!("{method} {path}: {e}"));
        let mut builder = Request::builder().method(method.clone()).uri(format!("{}{path}", self.base));
        if json {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder.body(Full::new(Bytes::copy_from_slice(body))).map_err(|e| fail(&e))?;
        self.signer.sign(&mut request, body).await?;
        let response = self.http.request(request).await.map_err(|e| fail(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.into_body().collect().await.map_err(|e| fail(&e))?.to_bytes();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok(Received { status, retry_after, answer: Answer { status, body } })
    }
}

struct Received {
    status: StatusCode,
    retry_after: Option<Duration>,
    answer: Answer,
}

/// A job id as one path segment: ids are `[A-Za-z0-9._-]`, anything else is escaped so that it cannot name
/// another route.
fn segment(job_id: &str) -> String {
    job_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The record of a job as far as the URL tells it: its id and state (the rest is the worker's and the store's).
fn sparse_record(job_id: &str, state: JobState) -> JobRecord {
    let now = Utc::now();
    JobRecord {
        job_id: job_id.to_owned(),
        state,
        job: None,
        fingerprint: None,
        owner: None,
        created_at: now,
        updated_at: now,
        delivery: None,
        placement: None,
        progress: None,
        cancel_requested: false,
        gpu_only: None,
        runs_started: 0,
        runs_released: 0,
        result: None,
        replied: false,
        announced: false,
    }
}

/// The record of a job as its status report tells it.
fn record_of(report: &JobStatusReport) -> JobRecord {
    JobRecord {
        created_at: report.submitted_at.unwrap_or(report.updated_at),
        updated_at: report.updated_at,
        placement: report.placement.clone(),
        progress: report.progress,
        cancel_requested: report.cancel_requested,
        gpu_only: report.gpu_only.clone(),
        result: report.result.clone(),
        ..sparse_record(&report.job_id, report.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_one_path_segment_whatever_it_holds() {
        assert_eq!(segment("sword-0042.v2_a"), "sword-0042.v2_a");
        assert_eq!(segment("a/b"), "a%2Fb");
        assert_eq!(segment("../cancel"), "..%2Fcancel");
    }

    #[test]
    fn only_http_urls_with_a_host_are_submit_urls() {
        let config = SdkConfig::builder().region(aws_config::Region::new("us-east-1")).build();
        for bad in ["", "ftp://x", "not a url", "/jobs"] {
            assert!(SubmitUrl::new(&config, bad).is_err(), "{bad}");
        }
    }
}
