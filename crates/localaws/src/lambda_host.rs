//! A local Lambda runtime API (`/2018-06-01/runtime/...`) and the function process it serves: the same
//! protocol AWS Lambda and `cargo lambda watch` speak, so the function binary runs unchanged.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use crate::Error;
use crate::http_server::LoopbackServer;

const PREFIX: &str = "/2018-06-01/runtime";

/// One completed invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub response: Value,
    /// From handing the event to the function to its answer.
    pub duration: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("the function reported {error_type}: {message}")]
    Function { error_type: String, message: String },
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the function process exited: {0}")]
    Exited(String),
}

type Outcome = Result<Value, InvokeError>;

#[derive(Debug, Default)]
struct Shared {
    function_arn: String,
    queue: Mutex<VecDeque<(String, Value, Duration)>>,
    queued: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: Mutex<Option<Instant>>,
    logs: Mutex<Vec<String>>,
}

/// A function binary running under a local runtime API. Dropping it kills the process and stops the API.
#[derive(Debug)]
pub struct LambdaHost {
    shared: Arc<Shared>,
    child: Mutex<Child>,
    spawned_at: Instant,
    function_arn: String,
    // Held for its drop, which comes after the process is killed, so the function never sees its API vanish.
    _server: LoopbackServer,
}

impl LambdaHost {
    /// Starts the runtime API on an ephemeral port and the function process against it, with `env` added to
    /// the Lambda variables. The function's stdout (its JSON logs and metrics) is kept, line by line.
    pub fn start(binary: &Path, function_name: &str, env: &[(String, String)]) -> Result<Self, Error> {
        let function_arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}");
        let shared = Arc::new(Shared { function_arn: function_arn.clone(), ..Shared::default() });
        let state = shared.clone();
        let server = LoopbackServer::start("lambda-runtime-api", move |request| serve(state.clone(), request))
            .map_err(|e| Error::Lambda(format!("runtime API: {e}")))?;
        let addr = server.addr();

        let spawned_at = Instant::now();
        let mut child = Command::new(binary)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function_name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::Lambda(format!("cannot start {}: {e}", binary.display())))?;
        if let Some(stdout) = child.stdout.take() {
            let state = shared.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                    state.logs.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Ok(Self { shared, child: Mutex::new(child), spawned_at, function_arn, _server: server })
    }

    /// Hands `payload` to the function and waits for its answer.
    pub async fn invoke(&self, payload: &Value, timeout: Duration) -> Result<Invocation, InvokeError> {
        let request_id = request_id();
        let (tx, mut rx) = oneshot::channel();
        self.shared.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(request_id.clone(), tx);
        let started = Instant::now();
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back((
            request_id.clone(),
            payload.clone(),
            timeout,
        ));
        self.shared.queued.notify_waiters();
        self.shared.queued.notify_one();
        let deadline = started + timeout;
        loop {
            match tokio::time::timeout(Duration::from_millis(100), &mut rx).await {
                Ok(Ok(outcome)) => {
                    return outcome.map(|response| Invocation { request_id, response, duration: started.elapsed() });
                }
                Ok(Err(_)) => return Err(InvokeError::Exited("the runtime API stopped".into())),
                Err(_) => {
                    if let Some(status) = self.exit_status() {
                        self.forget(&request_id);
                        return Err(InvokeError::Exited(status));
                    }
                    if Instant::now() >= deadline {
                        self.forget(&request_id);
                        return Err(InvokeError::Timeout(timeout));
                    }
                }
            }
        }
    }

    /// From spawning the process to its first request for work: the function's cold start.
    pub fn cold_start(&self) -> Option<Duration> {
        self.shared.first_poll.lock().unwrap_or_else(|p| p.into_inner()).map(|at| at - self.spawned_at)
    }

    /// Waits until the function has asked for its first event.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration, InvokeError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(cold) = self.cold_start() {
                return Ok(cold);
            }
            if let Some(status) = self.exit_status() {
                return Err(InvokeError::Exited(status));
            }
            if Instant::now() >= deadline {
                return Err(InvokeError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The function's stdout lines from `from` on.
    pub fn logs_since(&self, from: usize) -> Vec<String> {
        let logs = self.shared.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }

    pub fn function_arn(&self) -> &str {
        &self.function_arn
    }

    pub fn exit_status(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten().map(|status| status.to_string())
    }

    fn forget(&self, request_id: &str) {
        self.shared.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(request_id);
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).retain(|(id, _, _)| id != request_id);
    }
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn serve(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let Some(route) = path.strip_prefix(PREFIX) else { return reply(StatusCode::NOT_FOUND, "") };

    if method == Method::GET && route == "/invocation/next" {
        shared.first_poll.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
        loop {
            let notified = shared.queued.notified();
            let next = shared.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            if let Some((request_id, payload, timeout)) = next {
                let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + timeout;
                let response = Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .header("lambda-runtime-aws-request-id", &request_id)
                    .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
                    .header("lambda-runtime-invoked-function-arn", &shared.function_arn)
                    .header("lambda-runtime-trace-id", format!("Root=1-00000000-{request_id}"))
                    .body(Full::new(Bytes::from(payload.to_string())))
                    .unwrap_or_default();
                return response;
            }
            notified.await;
        }
    }
    if method == Method::POST {
        if route == "/init/error" {
            let error = function_error(&body);
            let waiting: Vec<_> = shared.waiting.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
            for (_, tx) in waiting {
                let _ = tx.send(Err(error.clone()));
            }
            return reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#);
        }
        let mut segments = route.trim_start_matches("/invocation/").splitn(2, '/');
        if let (Some(request_id), Some(kind)) = (segments.next(), segments.next()) {
            let outcome = match kind {
                "response" => Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
                "error" => Err(function_error(&body)),
                _ => return reply(StatusCode::NOT_FOUND, ""),
            };
            if let Some(tx) = shared.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(request_id) {
                let _ = tx.send(outcome);
            }
            return reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#);
        }
    }
    reply(StatusCode::NOT_FOUND, "")
}

fn function_error(body: &[u8]) -> InvokeError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    InvokeError::Function {
        error_type: value["errorType"].as_str().unwrap_or("Unknown").to_owned(),
        message: value["errorMessage"].as_str().unwrap_or_default().to_owned(),
    }
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap_or_default()
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
