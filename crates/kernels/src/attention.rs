//! Scaled dot-product attention, `softmax(q·kᵀ·scale)·v`, a block of queries at a time: each block's scores
//! are computed, turned into probabilities in place and multiplied by the values while they are still in
//! cache, so no score matrix larger than one block exists, the key matrix is read transposed without a copy,
//! and the blocks of every head run in parallel (a VAE's single head too).

use rayon::prelude::*;

use crate::activation::exp;
use crate::matmul::{Operand, gemm_serial};
use crate::simd::vectorised;

/// Scores per block (1 MiB of f32): a block's scores stay in a core's cache between the two products.
const BLOCK_SCORES: usize = 1 << 18;

/// The sizes of one attention: `heads` independent problems (batch × heads), each `queries × head_dim`
/// against `keys × head_dim` keys and `keys × value_dim` values, every one contiguous in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub head_dim: usize,
    pub value_dim: usize,
}

/// `softmax(q · kᵀ · scale) · v` per head, `heads × queries × value_dim` out; the softmax in f32 as the
/// reference computes it.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], shape: AttentionShape, scale: f32) -> Vec<f32> {
    let AttentionShape { heads, queries, keys, head_dim, value_dim } = shape;
    assert!(q.len() == heads * queries * head_dim, "queries are not heads × queries × head_dim");
    assert!(k.len() == heads * keys * head_dim, "keys are not heads × keys × head_dim");
    assert!(v.len() == heads * keys * value_dim, "values are not heads × keys × value_dim");
    let mut out = vec![0f32; heads * queries * value_dim];
    if queries == 0 || value_dim == 0 {
        return out;
    }
    if keys == 0 {
        // No key to attend to: torch's softmax over an empty row gives an empty row, and the product zeros.
        return out;
    }
    let block = (BLOCK_SCORES / keys).clamp(1, queries);
    out.par_chunks_mut(queries * value_dim).enumerate().for_each(|(head, out)| {
        let q = &q[head * queries * head_dim..(head + 1) * queries * head_dim];
        let k = &k[head * keys * head_dim..(head + 1) * keys * head_dim];
        let v = &v[head * keys * value_dim..(head + 1) * keys * value_dim];
        out.par_chunks_mut(block * value_dim).enumerate().for_each_init(
            || vec![0f32; block * keys],
            |scores, (b, out)| {
                let rows = out.len() / value_dim;
                let scores = &mut scores[..rows * keys];
                let q = &q[b * block * head_dim..(b * block + rows) * head_dim];
                // kᵀ: element (d, key) at k[key · head_dim + d].
                let kt = Operand { data: k, row_stride: 1, col_stride: head_dim };
                // SAFETY: `scores` (rows × keys) and `out` (rows × value_dim) are this block's own buffers.
                #[allow(unsafe_code)]
                unsafe {
                    gemm_serial(scores.as_mut_ptr(), keys, q, head_dim, kt, (rows, keys, head_dim), false, scale)
                };
                vectorised!(|| {
                    for row in scores.chunks_exact_mut(keys) {
                        softmax_in_place(row);
                    }
                });
                let v = Operand::rows(v, value_dim);
                #[allow(unsafe_code)]
                unsafe {
                    gemm_serial(out.as_mut_ptr(), value_dim, scores, keys, v, (rows, value_dim, keys), false, 1.0)
                };
            },
        );
    });
    out
}

/// The row's softmax, in place. Maximum and sum are taken in 16 lanes, then across them: a running scalar
/// would keep the compiler from vectorising either.
#[inline(always)]
fn softmax_in_place(row: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(*x);
        }
    }
    let max = chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max);
    let mut lanes = [0f32; 16];
    let mut chunks = row.chunks_exact_mut(16);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *x = exp(*x - max);
            *lane += *x;
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in row {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape, scale: f32) -> Vec<f32> {
        let mut out = vec![0f32; s.heads * s.queries * s.value_dim];
        for h in 0..s.heads {
            for i in 0..s.queries {
                let scores: Vec<f64> = (0..s.keys)
                    .map(|j| {
                        let dot: f64 = (0..s.head_dim)
                            .map(|d| {
                                q[(h * s.queries + i) * s.head_dim + d] as f64
                                    * k[(h * s.keys + j) * s.head_dim + d] as f64
                            })
                            .sum();
                        dot * scale as f64
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for e in 0..s.value_dim {
                    let value: f64 =
                        (0..s.keys).map(|j| weights[j] / sum * v[(h * s.keys + j) * s.value_dim + e] as f64).sum();
                    out[(h * s.queries + i) * s.value_dim + e] = value as f32;
                }
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 31 + seed * 17) % 41) as f32 / 20.0 - 1.0).collect()
    }

    /// One head and many (the UNet's), blocks that divide the queries and blocks with a short last one, keys
    /// fewer and more than the queries (cross- and self-attention).
    #[test]
    fn equals_the_definition() {
        for shape in [
            AttentionShape { heads: 1, queries: 1, keys: 1, head_dim: 1, value_dim: 1 },
            AttentionShape { heads: 3, queries: 37, keys: 11, head_dim: 8, value_dim: 8 },
            AttentionShape { heads: 2, queries: 300, keys: 1000, head_dim: 16, value_dim: 5 },
            AttentionShape { heads: 1, queries: 700, keys: 700, head_dim: 4, value_dim: 4 },
        ] {
            let q = values(shape.heads * shape.queries * shape.head_dim, 1);
            let k = values(shape.heads * shape.keys * shape.head_dim, 2);
            let v = values(shape.heads * shape.keys * shape.value_dim, 3);
            let ours = attention(&q, &k, &v, shape, 0.3);
            let plain = naive(&q, &k, &v, shape, 0.3);
            for (i, (a, b)) in ours.iter().zip(&plain).enumerate() {
                assert!((a - b).abs() < 1e-5, "{shape:?} at {i}: {a} vs {b}");
            }
        }
    }
}
