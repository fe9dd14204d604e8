//! The `executor` Lambda function: control jobs in, EC2/ECS actions out.
//!
//! [`engine::Executor`] holds the logic, generic over the narrow traits of [`ports`]; the AWS implementations
//! live in `aws`, and the simulator (`gameforge simulate`) brings its own.

pub mod aws;
pub mod engine;
pub mod handler;
pub mod journal;
pub mod ports;
pub mod settings;
pub mod state;

pub use engine::{Executor, Handled};
