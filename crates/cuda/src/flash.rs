//! Flash attention (FlashAttention-2's forward kernels from `candle-flash-attn`, feature `flash-attn`): the
//! scores live in registers and shared memory a tile at a time, so an attention reads q, k and v once and writes
//! its output once, and no score matrix is ever in device memory (sliced or not). Its kernels need tensor-core
//! instructions of sm_80 and newer; elsewhere (the T4's sm_75) attention stays the sliced products with
//! [`crate::scaled_softmax`] between them.
//!
//! Which attentions it can run is pure (tested without a GPU); the call itself is behind the feature, whose
//! build compiles CUTLASS-based kernels for hours on two cores (tools/gpu-bench/prepare.sh keeps them).

/// Why flash attention does not run an attention; the caller falls back to the sliced path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashRefusal {
    #[error("flash attention runs f16 and bf16 only")]
    Precision,
    #[error("flash attention needs a head dimension that is a multiple of 8 up to 512 (got {0})")]
    HeadDim(usize),
    #[error("flash attention needs values as wide as the queries ({value_dim} against {head_dim})")]
    ValueDim { head_dim: usize, value_dim: usize },
    #[error("flash attention needs compute capability 8.0 or newer (this device has {major}.{minor})")]
    Architecture { major: i32, minor: i32 },
}

/// The widest head the kernels are compiled for (candle-flash-attn 0.11 has 32 … 256 and 512; a width between
/// runs in the next compiled one).
pub const MAX_HEAD_DIM: usize = 512;

/// Whether flash attention can run an attention of this precision and these widths on a device of this compute
/// capability. SDXL's UNet attends with 64-wide heads and its VAE with one 512-wide head: both fit.
pub fn flash_attention_fits(
    half_precision: bool,
    head_dim: usize,
    value_dim: usize,
    (major, minor): (i32, i32),
) -> Result<(), FlashRefusal> {
    if !half_precision {
        return Err(FlashRefusal::Precision);
    }
    if head_dim == 0 || !head_dim.is_multiple_of(8) || head_dim > MAX_HEAD_DIM {
        return Err(FlashRefusal::HeadDim(head_dim));
    }
    if value_dim != head_dim {
        return Err(FlashRefusal::ValueDim { head_dim, value_dim });
    }
    if major < 8 {
        return Err(FlashRefusal::Architecture { major, minor });
    }
    Ok(())
}

/// Whether [`flash_attention`] runs this attention: [`flash_attention_fits`] for these tensors on their device
/// (queries and values `(batch, heads, tokens, dim)`; keys as the queries).
#[cfg(feature = "flash-attn")]
pub fn flash_attention_runs(
    q: &candle_core::Tensor,
    k: &candle_core::Tensor,
    v: &candle_core::Tensor,
) -> candle_core::Result<bool> {
    use candle_core::DType;

    let candle_core::Device::Cuda(device) = q.device() else {
        return Ok(false);
    };
    let half = [k, v].iter().all(|t| t.dtype() == q.dtype()) && matches!(q.dtype(), DType::F16 | DType::BF16);
    let capability = device.cuda_stream().context().compute_capability().map_err(candle_core::Error::wrap)?;
    Ok(flash_attention_fits(half, q.dim(3)?, v.dim(3)?, capability).is_ok())
}

/// `softmax(q kᵀ · scale) v` over `(batch, heads, tokens, dim)` tensors, where [`flash_attention_runs`]. The
/// kernels take strides, so heads split as views need no copy; only a tensor whose last dimension is not
/// contiguous is copied. The result is `(batch, heads, queries, dim)`, a transposed view of the kernels' output.
#[cfg(feature = "flash-attn")]
pub fn flash_attention(
    q: &candle_core::Tensor,
    k: &candle_core::Tensor,
    v: &candle_core::Tensor,
    scale: f64,
) -> candle_core::Result<candle_core::Tensor> {
    let tokens_major = |t: &candle_core::Tensor| -> candle_core::Result<candle_core::Tensor> {
        let t = t.transpose(1, 2)?;
        if t.stride().last() == Some(&1) { Ok(t) } else { t.contiguous() }
    };
    let out =
        candle_flash_attn::flash_attn(&tokens_major(q)?, &tokens_major(k)?, &tokens_major(v)?, scale as f32, false)?;
    out.transpose(1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100: (i32, i32) = (9, 0);

    #[test]
    fn sdxl_attentions_fit_on_ampere_and_newer() {
        // UNet (64-wide heads) and VAE (one 512-wide head), on an A10G, an A100 and an H100.
        for capability in [(8, 6), (8, 0), H100] {
            assert_eq!(flash_attention_fits(true, 64, 64, capability), Ok(()));
            assert_eq!(flash_attention_fits(true, 512, 512, capability), Ok(()));
        }
    }

    #[test]
    fn what_the_kernels_cannot_run_is_refused_with_its_reason() {
        assert_eq!(flash_attention_fits(false, 64, 64, H100), Err(FlashRefusal::Precision));
        for head_dim in [0, 4, 60, 520] {
            assert_eq!(flash_attention_fits(true, head_dim, head_dim, H100), Err(FlashRefusal::HeadDim(head_dim)));
        }
        assert_eq!(
            flash_attention_fits(true, 64, 32, H100),
            Err(FlashRefusal::ValueDim { head_dim: 64, value_dim: 32 })
        );
        // A T4.
        let t4 = flash_attention_fits(true, 64, 64, (7, 5));
        assert_eq!(t4, Err(FlashRefusal::Architecture { major: 7, minor: 5 }));
        assert_eq!(
            t4.unwrap_err().to_string(),
            "flash attention needs compute capability 8.0 or newer (this device has 7.5)"
        );
    }
}
