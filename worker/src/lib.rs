//! SDXL on candle, faithful to the reference diffusers pipeline, and the gameforge GPU worker built on it.
//!
//! The model code is pure: it reads a diffusers-format folder and turns a [`GenerateRequest`] into an image.
//! Where the weights come from ([`source`]) and how jobs arrive live at the edges.

pub mod architecture;
pub mod attention;
pub mod config;
pub mod error;
pub mod gpu_ops;
pub mod image;
pub mod layers;
pub mod memory;
pub mod noise;
pub mod pipeline;
pub mod profile;
pub mod scheduler;
pub mod serve;
pub mod source;
pub mod text_encoder;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod weights;

pub use error::PipelineError;
pub use pipeline::{GenerateRequest, Generated, LoadOptions, Progress, SdxlPipeline, VaeTiling};
pub use scheduler::SchedulerKind;
