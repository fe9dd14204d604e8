//! Group normalisation (optionally followed by SiLU) over `(batch, channels, spatial…)` f32 in three passes per
//! group: the mean, the variance about it, and the normalised, scaled (and activated) output, each compiled for
//! the CPU's widest vectors.

use rayon::prelude::*;

use crate::activation::silu_in_place;
use crate::simd::vectorised;

/// How one group norm is laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormShape {
    pub batch: usize,
    pub channels: usize,
    /// Elements per channel (height × width).
    pub spatial: usize,
    pub groups: usize,
    pub eps: f64,
}

/// `silu?((x − mean_g) / sqrt(var_g + eps) · weight[c] + bias[c])` with the statistics of each (batch, group),
/// accumulated in f64. `input` holds `batch × channels × spatial` values; `channels` is a multiple of `groups`.
pub fn group_norm(input: &[f32], weight: &[f32], bias: &[f32], shape: GroupNormShape, silu: bool) -> Vec<f32> {
    assert_eq!(input.len(), shape.batch * shape.channels * shape.spatial, "group norm input length");
    assert!(weight.len() == shape.channels && bias.len() == shape.channels, "one scale and shift per channel");
    assert!(shape.groups > 0 && shape.channels.is_multiple_of(shape.groups), "channels in whole groups");
    let per_group = shape.channels / shape.groups;
    let spatial = shape.spatial;
    let mut out = vec![0f32; input.len()];
    let group_len = per_group * spatial;
    if group_len == 0 {
        return out;
    }
    out.par_chunks_mut(group_len).zip(input.par_chunks(group_len)).enumerate().for_each(|(index, (dst, src))| {
        vectorised!(|| {
            let first_channel = (index % shape.groups) * per_group;
            let n = src.len() as f64;
            let mean = sum(src, |v| v) / n;
            // Each deviation and its square is rounded once in f32 (6e-8 relative) before the f64 total; the
            // mean's own rounding to f32 moves the variance by that error's square, far below `eps`.
            let mean_f32 = mean as f32;
            let variance = sum(src, |v| (v - mean_f32) * (v - mean_f32)) / n;
            let inv_std = 1.0 / (variance + shape.eps).sqrt();
            for (c, (dst, src)) in dst.chunks_exact_mut(spatial).zip(src.chunks_exact(spatial)).enumerate() {
                let w = weight[first_channel + c] as f64;
                let scale = (inv_std * w) as f32;
                let shift = (bias[first_channel + c] as f64 - mean * inv_std * w) as f32;
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s * scale + shift;
                }
                if silu {
                    silu_in_place(dst);
                }
            }
        })
    });
    out
}

/// `Σ f(v)` in f64, accumulated in 16 f32 lanes over short runs so it vectorises without losing the f64 total's
/// accuracy over millions of values.
#[inline(always)]
fn sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for run in values.chunks(256) {
        let mut lanes = [0f32; 16];
        let mut chunks = run.chunks_exact(16);
        for chunk in &mut chunks {
            for (lane, v) in lanes.iter_mut().zip(chunk) {
                *lane += f(*v);
            }
        }
        for v in chunks.remainder() {
            total += f(*v) as f64;
        }
        for lane in lanes {
            total += lane as f64;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_group_normalises_to_its_shift() {
        let shape = GroupNormShape { batch: 1, channels: 4, spatial: 9, groups: 2, eps: 1e-6 };
        let values = group_norm(&[7.0; 36], &[2.0; 4], &[0.5, 0.5, -1.0, -1.0], shape, false);
        assert!(values[..18].iter().all(|v| *v == 0.5) && values[18..].iter().all(|v| *v == -1.0), "{values:?}");
    }
}
