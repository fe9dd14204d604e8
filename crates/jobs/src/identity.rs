//! Who the library's caller is: its AWS credentials' principal, from STS `GetCallerIdentity`, asked once per
//! client and only when first needed.

use std::sync::Arc;

use aws_config::SdkConfig;
use gameforge_aws::PortError;
use tokio::sync::OnceCell;

use crate::Owner;

#[derive(Debug, Clone)]
pub struct CallerIdentity {
    sts: aws_sdk_sts::Client,
    owner: Arc<OnceCell<Owner>>,
}

impl CallerIdentity {
    pub fn new(config: &SdkConfig) -> Self {
        Self { sts: aws_sdk_sts::Client::new(config), owner: Arc::default() }
    }

    /// The owner of the jobs this caller submits (an assumed role's sessions are the role).
    pub async fn owner(&self) -> Result<Owner, PortError> {
        let owner = self
            .owner
            .get_or_try_init(|| async {
                let identity =
                    self.sts.get_caller_identity().send().await.map_err(|e| PortError::sdk("GetCallerIdentity", &e))?;
                let arn = identity.arn().unwrap_or_default();
                Owner::from_arn(arn).map_err(|e| PortError::new("GetCallerIdentity", e))
            })
            .await?;
        Ok(owner.clone())
    }
}
