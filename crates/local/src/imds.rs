//! An instance's metadata service (IMDSv2) as the worker on it reads it: where it runs, and the spot
//! interruption notice once EC2 has scheduled one.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use gameforge_localaws::LoopbackServer;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::timeline::InstanceInfo;

pub struct InstanceMetadata {
    server: LoopbackServer,
    notice: Arc<Mutex<Option<DateTime<Utc>>>>,
}

impl InstanceMetadata {
    pub fn start(instance: &InstanceInfo) -> std::io::Result<Self> {
        let notice: Arc<Mutex<Option<DateTime<Utc>>>> = Arc::default();
        let (info, scheduled) = (instance.clone(), Arc::clone(&notice));
        let server = LoopbackServer::start("instance-metadata", move |request| {
            let (info, scheduled) = (info.clone(), Arc::clone(&scheduled));
            async move {
                let respond = |status: StatusCode, body: String| {
                    Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap_or_default()
                };
                let path = request.uri().path().to_owned();
                if path == "/latest/api/token" {
                    // IMDS answers a token with its lifetime, which AWS's clients require to cache it.
                    let ttl = request.headers().get("x-aws-ec2-metadata-token-ttl-seconds").cloned();
                    return match (request.method() == hyper::Method::PUT, ttl) {
                        (true, Some(ttl)) => Response::builder()
                            .status(StatusCode::OK)
                            .header("x-aws-ec2-metadata-token-ttl-seconds", ttl)
                            .body(Full::new(Bytes::from("local-imds-token")))
                            .unwrap_or_default(),
                        (true, None) => respond(StatusCode::BAD_REQUEST, String::new()),
                        (false, _) => respond(StatusCode::METHOD_NOT_ALLOWED, String::new()),
                    };
                }
                if request.headers().get("x-aws-ec2-metadata-token").is_none() {
                    return respond(StatusCode::UNAUTHORIZED, String::new());
                }
                let notice = *scheduled.lock().unwrap_or_else(|p| p.into_inner());
                match (path.trim_start_matches("/latest/meta-data/"), notice) {
                    ("spot/instance-action", Some(time)) => respond(
                        StatusCode::OK,
                        serde_json::json!({
                            "action": "terminate",
                            "time": time.to_rfc3339_opts(SecondsFormat::Secs, true),
                        })
                        .to_string(),
                    ),
                    ("placement/region", _) => respond(StatusCode::OK, info.region.clone()),
                    ("placement/availability-zone", _) => respond(StatusCode::OK, info.zone.clone()),
                    ("instance-type", _) => respond(StatusCode::OK, info.instance_type.clone()),
                    ("instance-id", _) => respond(StatusCode::OK, info.instance_id.clone()),
                    // IMDS says `on-demand` as `normal`.
                    ("instance-life-cycle", _) => {
                        respond(StatusCode::OK, if info.lifecycle == "spot" { "spot".into() } else { "normal".into() })
                    }
                    _ => respond(StatusCode::NOT_FOUND, String::new()),
                }
            }
        })?;
        Ok(Self { server, notice })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// EC2 has scheduled the instance's termination at `at`.
    pub fn interrupt(&self, at: DateTime<Utc>) {
        *self.notice.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }
}
