//! The `executor` Lambda function: control jobs in, EC2/ECS actions out.
//!
//! The decisions are `gameforge-engine`'s; this crate holds the Lambda handler, its settings, and the AWS
//! implementations of the engine's ports (`aws`).

pub mod aws;
pub mod handler;
pub mod settings;
