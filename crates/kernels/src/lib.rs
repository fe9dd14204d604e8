//! CPU kernels for the SDXL worker's hottest layers (convolution, dense layers, attention, group norm, the
//! activations), on plain f32 slices in NCHW order: what candle's CPU backend does in many strided passes, done in
//! few, with the threading split over the output rather than left to gemm; and the weight layouts made once at load
//! (widening a file's f16/bf16 to f32, transposing the dense layers' weights) on every core. Built with
//! optimisation even in debug builds (the workspace's dev profile), because tests and `./dev local` run diffusion
//! on the CPU.

mod activation;
mod attention;
mod conv;
#[cfg(target_arch = "x86_64")]
mod direct_conv;
mod group_norm;
mod layout;
mod matmul;
mod simd;
mod winograd;

pub use activation::geglu;
pub use attention::{AttentionShape, attention};
pub use conv::{ConvShape, convolve, scratch_bytes};
pub use group_norm::{GroupNormShape, group_norm};
pub use layout::{Stored, transpose, widen};
pub use matmul::linear;
