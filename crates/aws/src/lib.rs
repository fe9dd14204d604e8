//! What every gameforge process that talks to AWS shares, so that each thing is done one way: how the SDK is
//! configured (retries with exponential backoff and full jitter, per-attempt timeouts), how an SQS batch
//! arrives and how partial failures are reported, how a message is backed off, how metrics and logs are
//! written.

pub mod backoff;
pub mod config;
pub mod dead_letter;
pub mod env;
pub mod invocation;
pub mod metrics;
pub mod port;
pub mod sdk_error;
pub mod sqs_batch;
pub mod telemetry;

pub use port::PortError;
