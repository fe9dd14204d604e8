//! An HTTP proxy in front of the emulator that answers chosen requests with real AWS error bodies, after an
//! optional delay, and forwards everything else untouched (the `Host` header included, so that the URLs the
//! emulator hands out point back through the proxy).

mod protocol;
mod request;
mod rules;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use protocol::AwsError;
pub use request::Protocol;
use rules::RuleSet;
pub use rules::{Answer, Rule, RuleHandle};

use crate::Error;
use crate::http_server::LoopbackServer;

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub service: Option<String>,
    pub action: Option<String>,
    pub region: Option<String>,
    pub status: u16,
    /// Answered by a rule rather than by the emulator.
    pub injected: bool,
}

#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<RuleSet>,
    log: Mutex<Vec<RequestRecord>>,
}

/// The running proxy. Dropping it stops it.
#[derive(Debug)]
pub struct FaultInjector {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

const LOG_LIMIT: usize = 100_000;

impl FaultInjector {
    /// Starts a proxy on an ephemeral loopback port that forwards to `upstream_port`.
    pub fn start(upstream_port: u16) -> Result<Self, Error> {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let server = LoopbackServer::start("fault-injector", move |request| {
            handle(state.clone(), client.clone(), upstream_port, request)
        })
        .map_err(|e| Error::Emulator(format!("fault injector: {e}")))?;
        Ok(Self { server, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Installs a rule after the existing ones; the first matching rule that is not used up decides.
    pub fn add(&self, rule: Rule) -> RuleHandle {
        self.shared.rules.lock().unwrap_or_else(|p| p.into_inner()).add(rule)
    }

    /// Removes every rule and forgets the request log.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Every request so far (the latest 100,000), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests for `service` / `action` arrived, injected or not.
    pub fn count(&self, service: &str, action: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.service.as_deref() == Some(service) && r.action.as_deref() == Some(action))
            .count()
    }
}

async fn handle(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream_port: u16,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let info = request::RequestInfo::read(&parts, body.clone());
    let effect = shared.rules.lock().unwrap_or_else(|p| p.into_inner()).decide(&info);

    if let Some(delay) = effect.as_ref().and_then(|e| e.delay) {
        tokio::time::sleep(delay).await;
    }
    let (response, injected) = match effect.map(|e| e.answer) {
        Some(Answer::Fail(error)) => {
            let (status, headers, text) = error.render(info.protocol, info.service.as_deref());
            let mut builder = Response::builder().status(status);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            (builder.body(Full::new(Bytes::from(text))).unwrap_or_default(), true)
        }
        Some(Answer::Forward) | None => (forward(&client, upstream_port, parts, body).await, false),
    };

    let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
    if log.len() >= LOG_LIMIT {
        log.drain(..LOG_LIMIT / 10);
    }
    log.push(RequestRecord {
        service: info.service,
        action: info.action,
        region: info.region,
        status: response.status().as_u16(),
        injected,
    });
    response
}

async fn forward(
    client: &Client<HttpConnector, Full<Bytes>>,
    upstream_port: u16,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut upstream = Request::builder().method(parts.method).uri(format!("http://127.0.0.1:{upstream_port}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::TRANSFER_ENCODING && name != hyper::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(upstream) = upstream.body(Full::new(body)) else {
        return bad_gateway("could not build the upstream request");
    };
    match client.request(upstream).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            parts.headers.remove(hyper::header::TRANSFER_ENCODING);
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => bad_gateway(&format!("emulator unreachable: {e}")),
    }
}

fn bad_gateway(reason: &str) -> Response<Full<Bytes>> {
    Response::builder().status(502).body(Full::new(Bytes::from(reason.to_owned()))).unwrap_or_default()
}
