//! Scaled dot-product attention, whole or in slices of queries.
//!
//! The score matrix grows with the square of the token count (a 2048² SDXL image has 16,384 tokens at its first
//! attention level: 2.7 billion scores per step with guidance), so it is what runs a GPU out of memory first.
//! Slicing the queries bounds it: each query's softmax still sees every key, so a sliced result is the full one.

use candle_core::{DType, Tensor};

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
    let scores = profile::time("attn_scores", name, device, || q.matmul(kt)? * scale)?;
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
        let full = attend(&q, &k, &v, 0.35, Slicing::Full).unwrap();
        // 6 score rows of 37 keys: 1, 2 and 5 queries per slice, the last slice shorter than the others.
        for limit in [1, 6 * 37 * 2, 6 * 37 * 5 + 7] {
            let sliced = attend(&q, &k, &v, 0.35, Slicing::MaxScores(limit)).unwrap();
            assert_eq!(sliced.dims(), full.dims());
            let diff = max_difference(&sliced, &full);
            assert!(diff < 1e-6, "limit {limit}: differs by {diff}");
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
