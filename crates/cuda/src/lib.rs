//! The SDXL worker's own CUDA ops, where candle's are slow or imprecise on a GPU:
//!
//! - [`group_norm`]: group normalisation with an optional SiLU in two kernel launches (candle's is a dozen
//!   tensor ops with f32 copies), statistics in f32 whatever the dtype.
//! - [`scaled_softmax`]: softmax(x · scale) over the last dimension in one launch, in f32 registers, reading and
//!   writing the scores' own dtype (attention's scores no longer round-trip through an f32 copy).
//! - [`conv2d`] (feature `cudnn`): cuDNN's forward convolution with float accumulation for f16/bf16 (PyTorch's
//!   choice; candle's cuDNN path accumulates f16 in half precision), tensor cores allowed (TF32 for f32, as
//!   PyTorch allows for cuDNN by default), the algorithm chosen once per shape and one workspace kept per device.
//! - [`flash::flash_attention`] (feature `flash-attn`): candle-flash-attn's FlashAttention-2 kernels on sm_80 and
//!   newer, where no score matrix is written at all.
//!
//! Without the `cuda` feature only [`launch`] and [`flash::flash_attention_fits`], the ops' launch arithmetic and
//! which attentions flash attention runs, are built.

pub mod flash;
pub mod launch;

#[cfg(feature = "cuda")]
mod kernels;
#[cfg(feature = "cuda")]
pub use kernels::{group_norm, scaled_softmax};

#[cfg(feature = "cudnn")]
mod conv;
#[cfg(feature = "cudnn")]
pub use conv::{conv2d, conv2d_without_workspace};
