//! Making a generation fit its device: what it needs ([`estimate`]), what it may use ([`budget`]) and how it
//! runs within that ([`plan`]: attention slicing and VAE tiling chosen per job, or a refusal naming the limit).

pub mod budget;
pub mod estimate;
pub mod plan;

pub use budget::{Budget, Limit};
pub use estimate::{ConvKernels, ModelShape, Precision};
pub use plan::{DoesNotFit, Job, MemoryPlan, Settings, Stage, plan};
