//! The layers the UNet, the VAE and the text encoders are built from where candle's are slow on the CPU:
//! convolution, group norm (with its SiLU), the resnet block made of them, the dense layer and GEGLU's gate. Each runs our kernel on the CPU in f32 and candle's ops
//! elsewhere, so CUDA and half precision are unchanged.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, bail};

mod conv;
mod geglu;
mod linear;
mod norm;
mod resnet;

pub use conv::Conv2d;
pub use geglu::geglu;
pub use linear::Linear;
pub use norm::GroupNorm;
pub use resnet::ResnetBlock;

/// A custom op's CPU operand as the contiguous f32 slice our kernels take, or an error naming the op.
pub(crate) fn contiguous_f32<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { bail!("{op}: f32 only, got {:?}", storage.dtype()) };
    let Some((start, end)) = layout.contiguous_offsets() else { bail!("{op}: contiguous operands only") };
    Ok(&data[start..end])
}
