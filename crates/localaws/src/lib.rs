//! Local AWS for gameforge's tests and its local run.
//!
//! [`Emulator`] starts the moto server (installing it into the repository's `.venv` when missing) on an
//! ephemeral loopback port, puts a [`FaultInjector`] in front of it, and hands out SDK configuration that points
//! at the injector. Dropping the emulator stops both; the moto process also exits by itself if this process
//! dies. [`LambdaHost`] runs a function binary under a local Lambda runtime API and [`SqsEventSource`] feeds it
//! from a queue the way a Lambda event source mapping does.

mod emulator;
mod event_source;
mod function_url;
mod http_server;
pub mod iam;
pub mod injector;
mod lambda_host;
mod moto;
mod queues;
mod roles;
pub mod sigv4;
mod stack;
pub mod tools;

pub use emulator::Emulator;
pub use event_source::{EventSourceStats, SqsEventSource};
pub use function_url::{FunctionUrl, FunctionUrlServer, UrlResponse};
pub use http_server::LoopbackServer;
pub use iam::{Denial, Iam, Principal};
pub use injector::{AwsError, FaultInjector, LaunchCall, LaunchLog, RequestRecord, Rule, RuleHandle};
pub use lambda_host::{Invocation, InvokeError, LambdaHost};
pub use queues::{drain_queue, queue_depth};
pub use roles::RoleCredentials;
pub use stack::{
    Deployment, deploy_stack, deploy_standby, deploy_standby_with, family_environment, queue_url, task_environment,
    with_env,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("local tools: {0}")]
    Tools(String),
    #[error("emulator: {0}")]
    Emulator(String),
    #[error("stack {stack}: {reason}")]
    Stack { stack: String, reason: String },
    #[error("lambda host: {0}")]
    Lambda(String),
}
