//! Scaled dot-product attention, whole or in slices of queries.
//!
//! The score matrix grows with the square of the token count (a 2048² SDXL image has 16,384 tokens at its first
//! attention level: 2.7 billion scores per step with guidance), so it is what runs a GPU out of memory first.
//! Slicing the queries bounds it: each query's softmax still sees every key, so a sliced result is the full one.
//! On the CPU in f32 it is `gameforge_kernels::attention`, which works a block of queries at a time by itself
//! (no score matrix beyond one block per thread, whatever the slicing) and runs every head's blocks in parallel.
//! On CUDA the scale and the softmax are one kernel (`gameforge_cuda::scaled_softmax`) that reads the scores in
//! their own dtype and computes in f32 registers, unless `GAMEFORGE_GPU_OPS=candle`. With the `flash-attn`
//! feature, half-precision attention on sm_80 and newer is flash attention instead, which holds no score matrix
//! at all, so it is never sliced.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, bail};
use gameforge_kernels::AttentionShape;

use crate::layers::contiguous_f32;
use crate::profile;

/// How many attention scores one computation may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Slicing {
    /// Every query at once: the reference's way, and the fastest when it fits.
    #[default]
    Full,
    /// At most this many scores (batch × heads × queries × keys) per slice; at least one query per slice.
    MaxScores(usize),
}

impl Slicing {
    /// Queries per slice for `rows` independent score matrices (batch × heads) of `queries` × `keys`.
    pub fn queries_per_slice(self, rows: usize, queries: usize, keys: usize) -> usize {
        match self {
            Slicing::Full => queries,
            Slicing::MaxScores(limit) => {
                let per_query = rows.saturating_mul(keys).max(1);
                (limit / per_query).clamp(1, queries.max(1))
            }
        }
    }
}

/// `softmax(q kᵀ · scale) v` over `(batch, heads, tokens, head_dim)` tensors. The softmax runs in f32 whatever
/// the inputs' precision (half-precision scores overflow on long sequences); the result has `v`'s dtype.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, slicing: Slicing) -> candle_core::Result<Tensor> {
    if q.device().is_cpu() && [q, k, v].iter().all(|t| t.dtype() == DType::F32) {
        let name = || format!("{:?}·{:?}", q.dims(), k.dims());
        return profile::time("attention", name, q.device(), || {
            q.contiguous()?.apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &CpuAttention { scale: scale as f32 })
        });
    }
    #[cfg(feature = "flash-attn")]
    if crate::gpu_ops::GpuOps::ours_on(q.device()) && gameforge_cuda::flash::flash_attention_runs(q, k, v)? {
        let name = || format!("{:?}·{:?}", q.dims(), k.dims());
        return profile::time("attention", name, q.device(), || gameforge_cuda::flash::flash_attention(q, k, v, scale));
    }
    attend_sliced(q, k, v, scale, slicing)
}

/// candle's ops, a slice of queries at a time.
fn attend_sliced(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, slicing: Slicing) -> candle_core::Result<Tensor> {
    // candle's matmul wants its operands' matrices contiguous (the heads come in as views).
    let name = || format!("{:?}", q.dims());
    let (q, k, v) =
        profile::time("heads", name, q.device(), || Ok((q.contiguous()?, k.contiguous()?, v.contiguous()?)))?;
    let (q, k, v) = (&q, &k, &v);
    let (batch, heads, queries, _) = q.dims4()?;
    let keys = k.dim(2)?;
    let kt = k.t()?;
    let per_slice = slicing.queries_per_slice(batch * heads, queries, keys);
    if per_slice >= queries {
        return attend_slice(q, &kt, v, scale);
    }
    let mut slices = Vec::with_capacity(queries.div_ceil(per_slice));
    for start in (0..queries).step_by(per_slice) {
        let len = per_slice.min(queries - start);
        slices.push(attend_slice(&q.narrow(2, start, len)?.contiguous()?, &kt, v, scale)?);
    }
    Tensor::cat(&slices, 2)
}

fn attend_slice(q: &Tensor, kt: &Tensor, v: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    // Each intermediate is dropped as soon as the next exists, so a slice never holds more than two score
    // matrices (8 bytes per score); the memory planner counts on that.
    let device = q.device();
    let name = || format!("{:?}·{:?}", q.dims(), kt.dims());
    // The scale goes on q, not on the scores: half-precision scores must be in range when they are written (the
    // VAE's 512-wide dot products can pass f16's 65 504 unscaled), and q is the small operand.
    let scores = profile::time("attn_scores", name, device, || (q * scale)?.matmul(kt))?;
    #[cfg(feature = "cuda")]
    if crate::gpu_ops::GpuOps::ours_on(device) {
        let probs = profile::time("attn_softmax", name, device, || gameforge_cuda::scaled_softmax(&scores, 1.0))?;
        drop(scores);
        let name = || format!("{:?}·{:?}", probs.dims(), v.dims());
        return profile::time("attn_values", name, device, || probs.matmul(v));
    }
    let probs = profile::time("attn_softmax", name, device, || {
        let scores = scores.to_dtype(DType::F32)?;
        candle_nn::ops::softmax_last_dim(&scores)
    })?;
    drop(scores);
    profile::time(
        "attn_values",
        || format!("{:?}·{:?}", probs.dims(), v.dims()),
        device,
        || probs.to_dtype(v.dtype())?.matmul(v),
    )
}

/// Attention as one candle op over contiguous f32 `(batch, heads, tokens, dim)` queries, keys and values.
#[derive(Debug)]
struct CpuAttention {
    scale: f32,
}

impl CustomOp3 for CpuAttention {
    fn name(&self) -> &'static str {
        "gameforge-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = contiguous_f32(self.name(), s1, l1)?;
        let k = contiguous_f32(self.name(), s2, l2)?;
        let v = contiguous_f32(self.name(), s3, l3)?;
        let (batch, heads, queries, head_dim) = l1.shape().dims4()?;
        let (kb, kh, keys, kd) = l2.shape().dims4()?;
        let (vb, vh, vk, value_dim) = l3.shape().dims4()?;
        if (kb, kh, kd) != (batch, heads, head_dim) || (vb, vh, vk) != (batch, heads, keys) {
            bail!("gameforge-attention: q {:?}, k {:?}, v {:?} do not fit", l1.shape(), l2.shape(), l3.shape());
        }
        let shape = AttentionShape { heads: batch * heads, queries, keys, head_dim, value_dim };
        let out = gameforge_kernels::attention(q, k, v, shape, self.scale);
        Ok((CpuStorage::F32(out), Shape::from((batch, heads, queries, value_dim))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let mut noise = crate::noise::Noise::new(seed);
        noise.sample(shape, &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn sliced_attention_equals_full_attention() {
        let q = random((2, 3, 37, 8), 1);
        let k = random((2, 3, 37, 8), 2);
        let v = random((2, 3, 37, 8), 3);
        let full = attend_sliced(&q, &k, &v, 0.35, Slicing::Full).unwrap();
        // 6 score rows of 37 keys: 1, 2 and 5 queries per slice, the last slice shorter than the others.
        for limit in [1, 6 * 37 * 2, 6 * 37 * 5 + 7] {
            let sliced = attend_sliced(&q, &k, &v, 0.35, Slicing::MaxScores(limit)).unwrap();
            assert_eq!(sliced.dims(), full.dims());
            let diff = max_difference(&sliced, &full);
            assert!(diff < 1e-6, "limit {limit}: differs by {diff}");
        }
    }

    /// The CPU kernel against candle's ops, for self-attention, cross-attention with fewer keys than queries,
    /// and values of another width.
    #[test]
    fn the_cpu_kernel_equals_candles_ops() {
        for (seed, (q_shape, k_shape, v_shape)) in [
            ((2, 3, 37, 8), (2, 3, 37, 8), (2, 3, 37, 8)),
            ((2, 5, 64, 16), (2, 5, 7, 16), (2, 5, 7, 16)),
            ((1, 1, 300, 4), (1, 1, 300, 4), (1, 1, 300, 6)),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 10 * seed as u64;
            let (q, k, v) = (random(q_shape, seed), random(k_shape, seed + 1), random(v_shape, seed + 2));
            let ours = attend(&q, &k, &v, 0.35, Slicing::Full).unwrap();
            let theirs = attend_sliced(&q, &k, &v, 0.35, Slicing::Full).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let diff = max_difference(&ours, &theirs);
            assert!(diff < 1e-5, "{q_shape:?}: differs by {diff}");
        }
    }

    #[test]
    fn half_precision_attention_is_sliced_the_same_way() {
        let q = random((1, 2, 20, 4), 4).to_dtype(DType::F16).unwrap();
        let k = random((1, 2, 11, 4), 5).to_dtype(DType::F16).unwrap();
        let v = random((1, 2, 11, 4), 6).to_dtype(DType::F16).unwrap();
        let full = attend(&q, &k, &v, 0.5, Slicing::Full).unwrap();
        let sliced = attend(&q, &k, &v, 0.5, Slicing::MaxScores(2 * 11 * 3)).unwrap();
        assert_eq!(sliced.dtype(), DType::F16);
        let diff = max_difference(&sliced.to_dtype(DType::F32).unwrap(), &full.to_dtype(DType::F32).unwrap());
        assert!(diff < 1e-3, "differs by {diff}");
    }

    #[test]
    fn a_slice_holds_at_least_one_query_and_at_most_all() {
        assert_eq!(Slicing::Full.queries_per_slice(20, 4096, 4096), 4096);
        assert_eq!(Slicing::MaxScores(1).queries_per_slice(20, 4096, 4096), 1);
        assert_eq!(Slicing::MaxScores(20 * 4096 * 100).queries_per_slice(20, 4096, 4096), 100);
        assert_eq!(Slicing::MaxScores(usize::MAX).queries_per_slice(20, 4096, 4096), 4096);
    }
}
