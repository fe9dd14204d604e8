//! The game backend's view: submit, ask, wait, cancel, fetch the image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use gameforge_aws::PortError;
use gameforge_aws::env::{EnvReader, SettingsError};
use gameforge_contract::{GenerationJob, JobResult, JobStatusReport, S3Uri};

use crate::clients::{dynamodb_for_table, s3, sqs_for_queue};
use crate::store::CancelOutcome;
use crate::{DynamoJobStore, FINAL_RETENTION_DAYS, JobStore, SqsJobSender, SubmitError, Submitted, submit};

/// Where the deployment's job queue and status store are; the stack's outputs name both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// `GAMEFORGE_JOB_QUEUE_URL`.
    pub job_queue_url: String,
    /// `GAMEFORGE_JOBS_TABLE`: a table name or ARN (an ARN reaches the home region from anywhere).
    pub jobs_table: String,
}

impl ClientSettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new(lookup);
        let job_queue_url = env.required("GAMEFORGE_JOB_QUEUE_URL");
        let jobs_table = env.required("GAMEFORGE_JOBS_TABLE");
        env.finish()?;
        Ok(Self { job_queue_url, jobs_table })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("job {0} is unknown")]
    NotFound(String),
    #[error("job {} has no result after {:.0?} (last state: {})", .last.job_id, .waited, .last.state.as_str())]
    TimedOut { last: Box<JobStatusReport>, waited: Duration },
    #[error(transparent)]
    Aws(#[from] PortError),
}

/// A connection to one deployment.
#[derive(Debug, Clone)]
pub struct Client {
    store: DynamoJobStore,
    sender: SqsJobSender,
    s3: aws_sdk_s3::Client,
}

impl Client {
    pub fn new(config: &SdkConfig, settings: &ClientSettings) -> Self {
        let (dynamodb, table) = dynamodb_for_table(config, &settings.jobs_table);
        Self {
            store: DynamoJobStore::new(dynamodb, table, Duration::from_secs(FINAL_RETENTION_DAYS * 86_400)),
            sender: SqsJobSender::new(sqs_for_queue(config, &settings.job_queue_url), &settings.job_queue_url),
            s3: s3(config),
        }
    }

    /// Validates and enqueues `job`; resubmitting its id returns the existing job and enqueues nothing.
    pub async fn submit(&self, job: &GenerationJob) -> Result<Submitted, SubmitError> {
        submit(&self.store, &self.sender, job, None).await
    }

    pub async fn status(&self, job_id: &str) -> Result<Option<JobStatusReport>, PortError> {
        Ok(self.store.get(job_id).await?.map(|r| r.report()))
    }

    /// Waits for the job's final result, polling the status store (a read every quarter second at first,
    /// every two seconds after a while); `on_update` sees each new state or step.
    pub async fn wait(
        &self,
        job_id: &str,
        timeout: Duration,
        mut on_update: impl FnMut(&JobStatusReport),
    ) -> Result<JobResult, WaitError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        let mut last: Option<JobStatusReport> = None;
        loop {
            let report = self.status(job_id).await?.ok_or_else(|| WaitError::NotFound(job_id.to_string()))?;
            let changed = last.as_ref().is_none_or(|l| {
                (l.state, l.progress, &l.placement, l.cancel_requested)
                    != (report.state, report.progress, &report.placement, report.cancel_requested)
            });
            if changed {
                on_update(&report);
                delay = Duration::from_millis(250);
            }
            if let Some(result) = report.result.clone() {
                return Ok(result);
            }
            if started.elapsed() >= timeout {
                return Err(WaitError::TimedOut { last: Box::new(report), waited: started.elapsed() });
            }
            last = Some(report);
            tokio::time::sleep(delay.min(timeout.saturating_sub(started.elapsed()))).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
        }
    }

    pub async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, PortError> {
        self.store.cancel(job_id, chrono::Utc::now()).await
    }

    /// A URL that fetches the image without AWS credentials until it expires.
    pub async fn image_url(&self, image: &S3Uri, expires_in: Duration) -> Result<String, PortError> {
        let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
            .map_err(|e| PortError::new("presign image", e))?;
        let request = self
            .s3
            .get_object()
            .bucket(image.bucket())
            .key(image.prefix())
            .presigned(presigning)
            .await
            .map_err(|e| PortError::new("presign image", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(request.uri().to_string())
    }

    /// Downloads the image into `dir` as `<job_id>.png` (the S3 key's file name).
    pub async fn download(&self, image: &S3Uri, dir: &Path) -> Result<PathBuf, PortError> {
        let object = self
            .s3
            .get_object()
            .bucket(image.bucket())
            .key(image.prefix())
            .send()
            .await
            .map_err(|e| PortError::new("GetObject image", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let bytes = object.body.collect().await.map_err(|e| PortError::new("GetObject image", e))?.into_bytes();
        let name = image.prefix().rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("image.png");
        tokio::fs::create_dir_all(dir).await.map_err(|e| PortError::new("write image", e))?;
        let path = dir.join(name);
        tokio::fs::write(&path, &bytes).await.map_err(|e| PortError::new("write image", e))?;
        Ok(path)
    }
}
