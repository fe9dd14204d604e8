//! The readiness endpoint (`GET /health`: 200 once the model is loaded and warmed up, 503 while starting or
//! draining) and the client side of it for a container health-check command.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::runner::{Health, HealthState};

/// Serves `/health` on `addr` until the process ends; returns the address actually bound.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let health = Arc::clone(&health);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let state = health.get();
                    let (status, text) = match state {
                        HealthState::Ready => (StatusCode::OK, "ready"),
                        HealthState::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
                        HealthState::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
                    };
                    let body = format!("{{\"state\":\"{text}\"}}");
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .expect("a static response is valid"),
                        )
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(bound)
}

/// Asks a running worker whether it is ready.
pub async fn probe(url: &str) -> Result<bool, String> {
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(hyper_util::client::legacy::connect::HttpConnector::new());
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(3), client.get(uri))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let ok = response.status() == StatusCode::OK;
    let _ = response.into_body().collect().await;
    Ok(ok)
}
