//! Capacity decisions for a GPU worker fleet, with no I/O and time as a parameter, so that the executor and the
//! simulator make the same decisions from the same facts.
//!
//! - [`config`]: the fleet configuration file and its validation.
//! - [`ledger`]: what an entry in the ledger of unavailable capacity says, and for how long.
//! - [`ladder`]: the next launch call within a region (zones and types in one call, capacity types in order,
//!   on-demand within its guardrails).
//! - [`placement`]: when to leave a region, where to go, when to come home.
//! - [`scaling`]: how many workers the backlog asks for.
//! - [`cpu_tier`]: which jobs a CPU may serve, and when CPU workers stand in for GPUs nowhere to be had.

pub mod config;
pub mod cpu_tier;
pub mod duration;
pub mod fleet;
pub mod ladder;
pub mod launch_errors;
pub mod ledger;
pub mod offering;
pub mod placement;
pub mod scaling;

pub use config::FleetConfig;
pub use duration::Span;
pub use offering::Offering;
