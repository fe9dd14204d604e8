//! What every gameforge process that talks to AWS shares, so that each thing is done one way: how the SDK is
//! configured (retries with exponential backoff and full jitter, per-attempt timeouts), how an SQS batch
//! arrives and how partial failures are reported, how a message is backed off, how metrics and logs are
//! written.

pub mod backoff;
#[cfg(feature = "sdk")]
pub mod config;
#[cfg(feature = "sdk")]
pub mod dead_letter;
pub mod env;
pub mod invocation;
pub mod metrics;
pub mod port;
#[cfg(feature = "sdk")]
pub mod sdk_error;
#[cfg(feature = "sdk")]
pub mod sqs_batch;
pub mod telemetry;

pub use port::PortError;
