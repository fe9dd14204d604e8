//! `sdxl-worker serve`: the SQS job loop around the pipeline, built to lose no job when its spot instance is
//! taken away.

pub mod aws;
pub mod decide;
pub mod health;
pub mod imds;
pub mod lanes;
pub mod model;
pub mod ports;
pub mod runner;
pub mod stop;
