//! The EC2 instance metadata service (IMDSv2): the spot interruption notice, polled, and where the worker runs.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gameforge_contract::{CapacityType, Placement};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::ports::PortError;

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

#[derive(Debug, Clone)]
pub struct Imds {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

/// `spot/instance-action`: what EC2 will do to the instance, and when.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpotAction {
    pub action: String,
    pub time: DateTime<Utc>,
}

impl Imds {
    pub fn new(base: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        Self { client: Client::builder(TokioExecutor::new()).build(connector), base: base.trim_end_matches('/').into() }
    }

    async fn call(&self, method: Method, path: &str, header: (&str, &str)) -> Result<(StatusCode, String), PortError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header.0, header.1)
            .body(Full::new(Bytes::new()))
            .map_err(|e| PortError::new("IMDS", e))?;
        let response = tokio::time::timeout(Duration::from_secs(2), self.client.request(request))
            .await
            .map_err(|_| PortError::new("IMDS", format!("{path}: timed out")))?
            .map_err(|e| PortError::new("IMDS", format!("{path}: {e}")))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| PortError::new("IMDS", e))?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn token(&self) -> Result<String, PortError> {
        match self.call(Method::PUT, "/latest/api/token", ("x-aws-ec2-metadata-token-ttl-seconds", "300")).await? {
            (StatusCode::OK, token) => Ok(token),
            (status, _) => Err(PortError::new("IMDS", format!("token: HTTP {status}"))),
        }
    }

    /// A metadata value, `None` where the service has none (404).
    pub async fn get(&self, path: &str) -> Result<Option<String>, PortError> {
        let token = self.token().await?;
        match self.call(Method::GET, &format!("/latest/meta-data/{path}"), ("x-aws-ec2-metadata-token", &token)).await?
        {
            (StatusCode::OK, body) => Ok(Some(body)),
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (status, _) => Err(PortError::new("IMDS", format!("{path}: HTTP {status}"))),
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
