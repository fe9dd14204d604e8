//! The executor's decision engine: a control job in, the fleet's decisions and actions out.
//!
//! [`engine::Executor`] holds the logic, generic over the narrow traits of [`ports`]; [`journal`] records what it
//! decided and did, [`state`] what it remembers between invocations, [`memory`] the ledger as plain data for
//! in-memory worlds. The choices themselves are pure functions of
//! `gameforge-planner`. No Lambda runtime and no AWS SDK here: the `executor` function brings the AWS
//! implementations of the ports, the simulator (`gameforge simulate`) and the tests bring their own.

pub mod engine;
pub mod journal;
pub mod memory;
pub mod ports;
pub mod state;
pub mod status;

pub use engine::{Executor, Handled};
