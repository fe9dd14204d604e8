//! The EC2 instance metadata service (IMDSv2): the spot interruption notice, polled, and where the worker runs.

use std::time::Duration;

use aws_config::imds::client::Client;
use aws_config::imds::client::error::ImdsError;
use chrono::{DateTime, Utc};
use gameforge_contract::{CapacityType, Placement};
use serde::Deserialize;

use super::ports::PortError;

/// AWS's own IMDSv2 client: one session token reused until it expires, retries, and the endpoint from
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` (or the profile's `ec2_metadata_service_endpoint`) unless given here.
#[derive(Debug, Clone)]
pub struct Imds {
    client: Client,
}

/// `spot/instance-action`: what EC2 will do to the instance, and when.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpotAction {
    pub action: String,
    pub time: DateTime<Utc>,
}

impl Imds {
    /// A client of the metadata service at `endpoint`, or where AWS's settings say (the link-local address by
    /// default). Polled every few seconds for a two-minute notice, so every call is short and retried once.
    pub fn new(endpoint: Option<&str>) -> Result<Self, PortError> {
        let mut builder = Client::builder()
            .max_attempts(2)
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint(endpoint).map_err(|e| PortError::new("IMDS", format!("{endpoint}: {e}")))?;
        }
        Ok(Self { client: builder.build() })
    }

    /// A metadata value, `None` where the service has none (404).
    pub async fn get(&self, path: &str) -> Result<Option<String>, PortError> {
        match self.client.get(format!("/latest/meta-data/{path}")).await {
            Ok(value) => Ok(Some(value.as_ref().to_owned())),
            Err(ImdsError::ErrorResponse(answer)) if answer.response().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(PortError::new("IMDS", format!("{path}: {e}"))),
        }
    }

    /// The pending spot interruption, if EC2 has scheduled one.
    pub async fn spot_action(&self) -> Result<Option<SpotAction>, PortError> {
        match self.get("spot/instance-action").await? {
            None => Ok(None),
            Some(body) => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| PortError::new("IMDS", format!("spot/instance-action {body:?}: {e}"))),
        }
    }

    pub async fn placement(&self) -> Result<Placement, PortError> {
        let need = |v: Option<String>, what: &str| v.ok_or_else(|| PortError::new("IMDS", format!("{what}: absent")));
        let life_cycle = self.get("instance-life-cycle").await?.unwrap_or_default();
        Ok(Placement {
            region: need(self.get("placement/region").await?, "region")?,
            availability_zone: need(self.get("placement/availability-zone").await?, "availability zone")?,
            instance_type: need(self.get("instance-type").await?, "instance type")?,
            capacity_type: if life_cycle == "spot" { CapacityType::Spot } else { CapacityType::OnDemand },
            instance_id: need(self.get("instance-id").await?, "instance id")?,
        })
    }
}
