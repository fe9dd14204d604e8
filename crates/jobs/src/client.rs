//! The game backend's view: submit, ask, wait, cancel, fetch the image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use gameforge_aws::PortError;
use gameforge_aws::env::{EnvReader, SettingsError};
use gameforge_contract::{GenerationJob, JobResult, JobStatusReport, S3Uri};

use gameforge_contract::{ContractError, Violation};

use crate::clients::{BucketClients, dynamodb_for_table};
use crate::listing::{JobFilter, ListError};
use crate::store::CancelOutcome;
use crate::submit_url::{Defaults, SubmitUrl};
use crate::{
    AnyTier, CallerIdentity, DynamoJobStore, FINAL_RETENTION_DAYS, JobKey, JobStore, Owner, SqsJobSender,
    SqsReplyQueues, SubmitError, Submitted, submit,
};

/// Where the deployment's job queue and status store are; the stack's outputs name both.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    /// `GAMEFORGE_JOB_QUEUE_URL`.
    pub job_queue_url: String,
    /// `GAMEFORGE_JOBS_TABLE`: a table name or ARN (an ARN reaches the home region from anywhere).
    pub jobs_table: String,
    /// The CPU tier's routing, where the deployment has one (`GAMEFORGE_CPU_TIER`).
    pub any_tier: Option<AnyTier>,
}

impl ClientSettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new(lookup);
        let job_queue_url = env.required("GAMEFORGE_JOB_QUEUE_URL");
        let jobs_table = env.required("GAMEFORGE_JOBS_TABLE");
        let any_tier = AnyTier::from_env(&mut env);
        env.finish()?;
        Ok(Self { job_queue_url, jobs_table, any_tier })
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

/// A connection to one deployment, as the caller its AWS credentials name: the jobs it submits are that
/// principal's, and it sees and cancels only that principal's jobs.
#[derive(Debug, Clone)]
pub struct Client {
    door: Door,
    identity: CallerIdentity,
    s3: BucketClients,
}

/// How a client reaches the deployment: the queue and the status table themselves, or the submit URL (which
/// does the same on the caller's behalf, so the caller needs only the URL's invoke permission).
#[derive(Debug, Clone)]
enum Door {
    // Boxed, both: a client is cloned and moved about, and each door's clients are hundreds of bytes.
    Direct(Box<Direct>),
    Url(Box<SubmitUrl>),
}

#[derive(Debug, Clone)]
struct Direct {
    store: DynamoJobStore,
    sender: SqsJobSender,
    replies: SqsReplyQueues,
}

impl Client {
    /// Straight to the job queue and the status table (GameBackendPolicy).
    pub fn new(config: &SdkConfig, settings: &ClientSettings) -> Self {
        let (dynamodb, table) = dynamodb_for_table(config, &settings.jobs_table);
        Self {
            door: Door::Direct(Box::new(Direct {
                store: DynamoJobStore::new(dynamodb, table, Duration::from_secs(FINAL_RETENTION_DAYS * 86_400)),
                sender: SqsJobSender::for_deployment(config, &settings.job_queue_url, settings.any_tier.as_ref()),
                replies: SqsReplyQueues::new(config, &settings.job_queue_url),
            })),
            identity: CallerIdentity::new(config),
            s3: BucketClients::new(config),
        }
    }

    /// Through the deployment's submit URL (the stack's `SubmitUrl` output), with requests signed by the
    /// configured credentials (SubmitCallerPolicy). [`Client::list`] is not offered there, and fetching an image
    /// still needs `s3:GetObject` on it.
    pub fn over_url(config: &SdkConfig, submit_url: &str) -> Result<Self, PortError> {
        Ok(Self {
            door: Door::Url(Box::new(SubmitUrl::new(config, submit_url)?)),
            identity: CallerIdentity::new(config),
            s3: BucketClients::new(config),
        })
    }

    /// The principal this client acts as, which owns the jobs it submits.
    pub async fn owner(&self) -> Result<Owner, PortError> {
        self.identity.owner().await
    }

    async fn key(&self, job_id: &str) -> Result<JobKey, PortError> {
        Ok(JobKey::owned(&self.owner().await?, job_id))
    }

    /// Validates and enqueues `job`; resubmitting its id returns the existing job and enqueues nothing.
    pub async fn submit(&self, job: &GenerationJob) -> Result<Submitted, SubmitError> {
        self.submit_with_defaults(job, Defaults::default()).await
    }

    /// [`Client::submit`], leaving the fields `defaults` names to the deployment: the submit URL fills them (its
    /// model, the caller's own output folder), and `job`'s values for them are not sent. Only the submit URL knows
    /// the deployment's defaults: directly, leaving one out is a violation.
    pub async fn submit_with_defaults(
        &self,
        job: &GenerationJob,
        defaults: Defaults,
    ) -> Result<Submitted, SubmitError> {
        match &self.door {
            Door::Direct(direct) => {
                let mut missing = Vec::new();
                if defaults.model {
                    missing.push(Violation::new(
                        "model_id",
                        "required: only the submit URL fills in the deployment's model",
                    ));
                }
                if defaults.output {
                    missing
                        .push(Violation::new("output", "required: only the submit URL fills in the caller's folder"));
                }
                if !missing.is_empty() {
                    return Err(SubmitError::Invalid(ContractError::Invalid(missing)));
                }
                submit(&direct.store, &direct.sender, &direct.replies, job, &self.owner().await?).await
            }
            Door::Url(url) => url.submit(job, defaults).await,
        }
    }

    /// The job's status; `None` for an id this caller never submitted (whoever else did).
    pub async fn status(&self, job_id: &str) -> Result<Option<JobStatusReport>, PortError> {
        match &self.door {
            Door::Direct(direct) => Ok(direct.store.get(&self.key(job_id).await?).await?.map(|r| r.report())),
            Door::Url(url) => url.status(job_id).await,
        }
    }

    /// This caller's jobs, newest first, as `filter` narrows them (the status table's owner index; not offered
    /// by the submit URL).
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobStatusReport>, ListError> {
        match &self.door {
            Door::Direct(direct) => Ok(direct.store.list(&self.owner().await?, filter).await?),
            Door::Url(_) => Err(ListError::NotOverHttp),
        }
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

    /// Cancels one of this caller's jobs; another caller's is `NotFound`.
    pub async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, PortError> {
        match &self.door {
            Door::Direct(direct) => direct.store.cancel(&self.key(job_id).await?, chrono::Utc::now()).await,
            Door::Url(url) => url.cancel(job_id).await,
        }
    }

    /// A URL that fetches the image without AWS credentials until it expires. The image is looked up first, so
    /// that the URL is signed for its bucket's region (and a missing image is an error now, not a 404 later).
    pub async fn image_url(&self, image: &S3Uri, expires_in: Duration) -> Result<String, PortError> {
        let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
            .map_err(|e| PortError::new("presign image", e))?;
        self.s3
            .call(image.bucket(), |s3| async move {
                s3.head_object().bucket(image.bucket()).key(image.prefix()).send().await
            })
            .await
            .map_err(|e| self.image_error(PortError::sdk("HeadObject image", &e)))?;
        let request = self
            .s3
            .client(image.bucket())
            .get_object()
            .bucket(image.bucket())
            .key(image.prefix())
            .presigned(presigning)
            .await
            .map_err(|e| PortError::sdk("presign image", &e))?;
        Ok(request.uri().to_string())
    }

    /// `error`, saying what fetching an image needs when the caller came through the submit URL: the URL answers
    /// where the image is, not the image, and a URL caller may hold no S3 permission at all.
    fn image_error(&self, error: PortError) -> PortError {
        match &self.door {
            Door::Direct(_) => error,
            Door::Url(_) => PortError::new(
                error.operation,
                format!(
                    "{}; the submit URL does not serve images: fetching one needs s3:GetObject on it (the \
                     GameBackendPolicy's Images statement), or a URL presigned by a principal that has it",
                    error.reason
                ),
            ),
        }
    }

    /// Downloads the image into `dir` as `<job_id>.png` (the S3 key's file name).
    pub async fn download(&self, image: &S3Uri, dir: &Path) -> Result<PathBuf, PortError> {
        let object = self
            .s3
            .call(image.bucket(), |s3| async move {
                s3.get_object().bucket(image.bucket()).key(image.prefix()).send().await
            })
            .await
            .map_err(|e| self.image_error(PortError::sdk("GetObject image", &e)))?;
        let bytes = object.body.collect().await.map_err(|e| PortError::new("GetObject image", e))?.into_bytes();
        let name = image.prefix().rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("image.png");
        tokio::fs::create_dir_all(dir).await.map_err(|e| PortError::new("write image", e))?;
        let path = dir.join(name);
        tokio::fs::write(&path, &bytes).await.map_err(|e| PortError::new("write image", e))?;
        Ok(path)
    }
}
