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

/// A bias as the host vector our CPU kernels take when it is f32 on the CPU, read once at construction rather
/// than per call; `None` elsewhere (and without a bias).
pub(crate) fn host_bias(bias: Option<&candle_core::Tensor>) -> candle_core::Result<Option<Vec<f32>>> {
    match bias {
        Some(b) if b.device().is_cpu() && b.dtype() == candle_core::DType::F32 => Ok(Some(b.to_vec1::<f32>()?)),
        _ => Ok(None),
    }
}
