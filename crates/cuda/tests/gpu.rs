//! The CUDA ops against f64 references computed on the host from the same (dtype-rounded) inputs, at SDXL's
//! shapes and awkward ones, in f32, f16 and bf16. Built only with the `cuda` feature and run on a GPU by
//! tools/gpu-bench/run.sh ("kernels" phase): there is no GPU in CI (tests/emulated.rs runs the same kernels on
//! the CPU there). Without a GPU every test here fails at `gpu()`.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Tensor};
use common::{GroupNormCase, PRECISIONS, Precision, SOFTMAX_CASES, SOFTMAX_SCALE};

fn gpu() -> Device {
    Device::new_cuda(0).expect("these tests need a CUDA device")
}

fn dtype(precision: Precision) -> DType {
    match precision {
        Precision::F32 => DType::F32,
        Precision::F16 => DType::F16,
        Precision::Bf16 => DType::BF16,
    }
}

/// Values already rounded to `precision`, as a tensor of its dtype on the GPU (the conversion is exact).
fn upload(rounded: &[f32], dims: &[usize], precision: Precision) -> Tensor {
    Tensor::from_slice(rounded, dims, &gpu()).unwrap().to_dtype(dtype(precision)).unwrap()
}

fn download(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

#[test]
fn group_norm_matches_the_f64_reference() {
    // SDXL's UNet levels at 1024² (one image, guided), a VAE plane, a group of several chunks with a mean far
    // from zero, tiny and odd ones.
    let cases = [
        GroupNormCase { dims: &[2, 320, 128, 128], groups: 32, offset: 0.0 },
        GroupNormCase { dims: &[2, 1280, 32, 32], groups: 32, offset: 0.5 },
        GroupNormCase { dims: &[1, 128, 256, 256], groups: 32, offset: 0.0 },
        GroupNormCase { dims: &[1, 64, 181, 97], groups: 32, offset: 300.0 },
        GroupNormCase { dims: &[3, 6, 5, 7], groups: 3, offset: 2.0 },
        GroupNormCase { dims: &[1, 32, 1], groups: 32, offset: -1.0 },
    ];
    for (seed, case) in cases.iter().enumerate() {
        for precision in PRECISIONS {
            let inputs = common::group_norm_inputs(case, seed as u64, precision);
            let channels = [case.dims[1]];
            let x = upload(&inputs[0], case.dims, precision);
            let (w, b) = (upload(&inputs[1], &channels, precision), upload(&inputs[2], &channels, precision));
            for silu in [false, true] {
                let got = download(&gameforge_cuda::group_norm(&x, &w, &b, case.groups, 1e-5, silu).unwrap());
                common::check_group_norm(case, &inputs, precision, silu, &got);
            }
        }
    }
}

#[test]
fn group_norm_refuses_channels_that_do_not_divide_into_groups() {
    let x = upload(&common::values(30 * 4, 1), &[1, 30, 4], Precision::F32);
    let w = upload(&common::values(30, 2), &[30], Precision::F32);
    let err = gameforge_cuda::group_norm(&x, &w, &w, 32, 1e-5, false).unwrap_err();
    assert!(err.to_string().contains("divide"), "{err}");
}

#[test]
fn scaled_softmax_matches_the_f64_reference() {
    for (seed, &(rows, cols, spread)) in SOFTMAX_CASES.iter().enumerate() {
        let data: Vec<f32> = common::values(rows * cols, seed as u64).iter().map(|v| v * spread).collect();
        for precision in PRECISIONS {
            let x = precision.round(&data);
            let got = download(
                &gameforge_cuda::scaled_softmax(&upload(&x, &[rows, cols], precision), SOFTMAX_SCALE as f32).unwrap(),
            );
            common::check_softmax(&x, cols, SOFTMAX_SCALE, precision, &got);
        }
    }
}

#[test]
fn scaled_softmax_gives_minus_infinity_no_weight() {
    let x = [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY, 2.0, 0.5];
    let got = download(&gameforge_cuda::scaled_softmax(&upload(&x, &[1, 5], Precision::F32), 1.0).unwrap());
    assert_eq!((got[0], got[2]), (0.0, 0.0));
    let reference = common::softmax_reference(&common::widen(&x), 5, 1.0);
    assert!(common::worst(&got, &reference, 0.2) < 1e-6, "{got:?}");
}

#[cfg(feature = "cudnn")]
mod conv {
    use super::*;

    type Conv = fn(&Tensor, &Tensor, usize, usize) -> candle_core::Result<Tensor>;

    fn conv_reference(x: &[f64], w: &[f64], xd: [usize; 4], wd: [usize; 4], stride: usize, pad: usize) -> Vec<f64> {
        let ([b, c, h, wi], [o, _, k, _]) = (xd, wd);
        let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wi + 2 * pad - k) / stride + 1);
        let mut out = vec![0.0; b * o * oh * ow];
        for n in 0..b {
            for oc in 0..o {
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut sum = 0.0;
                        for ic in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (
                                        (y * stride + ky) as isize - pad as isize,
                                        (xo * stride + kx) as isize - pad as isize,
                                    );
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wi as isize {
                                        continue;
                                    }
                                    let xv = x[((n * c + ic) * h + iy as usize) * wi + ix as usize];
                                    sum += xv * w[((oc * c + ic) * k + ky) * k + kx];
                                }
                            }
                        }
                        out[((n * o + oc) * oh + y) * ow + xo] = sum;
                    }
                }
            }
        }
        out
    }

    /// The preferred algorithm, and implicit GEMM without a workspace (what runs when the device has no room
    /// for the preferred one's).
    #[test]
    fn conv2d_matches_the_f64_reference() {
        // ([batch, in, h, w], out, kernel, stride, padding): SDXL's 3×3 at a small plane, its stride-2
        // downsampler, a 1×1 projection, odd sizes and no padding.
        let cases = [
            ([2, 64, 20, 18], 96, 3, 1, 1),
            ([1, 32, 17, 15], 32, 3, 2, 1),
            ([2, 40, 9, 11], 24, 1, 1, 0),
            ([1, 3, 8, 8], 5, 3, 1, 0),
        ];
        for (seed, &(xd, o, k, stride, pad)) in cases.iter().enumerate() {
            let wd = [o, xd[1], k, k];
            let (x_len, w_len) = (xd.iter().product(), wd.iter().product());
            for precision in PRECISIONS {
                let xr = precision.round(&common::values(x_len, seed as u64));
                let wr = precision.round(&common::values(w_len, 50 + seed as u64));
                let (x, w) = (upload(&xr, &xd, precision), upload(&wr, &wd, precision));
                let reference = conv_reference(&common::widen(&xr), &common::widen(&wr), xd, wd, stride, pad);
                // Sums of c·k² products of order 1 with random signs: of order √(c·k²); TF32 (10-bit mantissa)
                // for f32 is PyTorch's default for cuDNN, so f32 is held to f16's bound.
                let scale = ((xd[1] * k * k) as f64).sqrt();
                let bound = if precision == Precision::F32 { Precision::F16 } else { precision }.tolerance();
                for (algorithm, conv) in [
                    ("preferred", gameforge_cuda::conv2d as Conv),
                    ("no workspace", gameforge_cuda::conv2d_without_workspace),
                ] {
                    let got = conv(&x, &w, stride, pad).unwrap();
                    let err = common::worst(&download(&got), &reference, scale);
                    let what = format!("{xd:?}→{o} k{k} s{stride} p{pad} {precision:?} {algorithm}");
                    assert!(err < 4.0 * bound, "{what}: worst {err}");
                }
            }
        }
    }

    /// 4 608 ones summed: in half precision the sum stops at 2 048 (2 049 is not an f16), in float it is exact;
    /// with either algorithm.
    #[test]
    fn half_precision_convolutions_accumulate_in_float() {
        let ones = |dims: &[usize]| Tensor::ones(dims, DType::F16, &gpu()).unwrap();
        for conv in [gameforge_cuda::conv2d as Conv, gameforge_cuda::conv2d_without_workspace] {
            let out = conv(&ones(&[1, 512, 5, 5]), &ones(&[2, 512, 3, 3]), 1, 1).unwrap();
            let centre = download(&out.narrow(2, 2, 1).unwrap().narrow(3, 2, 1).unwrap());
            assert_eq!(centre, vec![4608.0, 4608.0]);
        }
    }

    #[test]
    fn the_same_shape_twice_and_a_larger_workspace_after_a_smaller_one_give_the_same_results() {
        let f16 = |len: usize, seed: u64, dims: &[usize]| upload(&common::values(len, seed), dims, Precision::F16);
        let (x, w) = (f16(2 * 64 * 20 * 18, 7, &[2, 64, 20, 18]), f16(96 * 64 * 9, 8, &[96, 64, 3, 3]));
        let first = download(&gameforge_cuda::conv2d(&x, &w, 1, 1).unwrap());
        let (big_x, big_w) = (f16(1 << 20, 9, &[1, 256, 64, 64]), f16(256 * 256 * 9, 10, &[256, 256, 3, 3]));
        gameforge_cuda::conv2d(&big_x, &big_w, 1, 1).unwrap();
        assert_eq!(download(&gameforge_cuda::conv2d(&x, &w, 1, 1).unwrap()), first);
    }
}

#[cfg(feature = "flash-attn")]
mod flash {
    use super::*;
    use gameforge_cuda::flash::{flash_attention, flash_attention_runs};

    /// softmax(q kᵀ · scale) v per (batch · head), all `(rows, tokens, dim)` row-major.
    fn attention_reference(
        q: &[f64],
        k: &[f64],
        v: &[f64],
        rows: usize,
        queries: usize,
        keys: usize,
        dim: usize,
    ) -> Vec<f64> {
        let scale = (dim as f64).powf(-0.5);
        let mut out = vec![0.0; rows * queries * dim];
        for r in 0..rows {
            let (k, v) = (&k[r * keys * dim..][..keys * dim], &v[r * keys * dim..][..keys * dim]);
            for i in 0..queries {
                let q = &q[(r * queries + i) * dim..][..dim];
                let scores: Vec<f64> =
                    k.chunks(dim).map(|k| q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale).collect();
                let probs = common::softmax_reference(&scores, keys, 1.0);
                let o = &mut out[(r * queries + i) * dim..][..dim];
                for (p, v) in probs.iter().zip(v.chunks(dim)) {
                    o.iter_mut().zip(v).for_each(|(o, v)| *o += p * v);
                }
            }
        }
        out
    }

    /// Flash attention against the f64 reference, with the heads as views of `(batch, tokens, heads · dim)`
    /// activations (as the UNet passes them), and the reference's `(batch, heads, tokens, dim)` order out.
    #[test]
    fn flash_attention_matches_the_f64_reference() {
        // (batch, heads, queries, keys, dim): UNet self-attention at a 32² latent, cross-attention on 77 tokens,
        // the VAE's one 512-wide head, odd token counts, a head width between the compiled ones.
        let cases = [
            (2, 4, 1024, 1024, 64),
            (2, 10, 256, 77, 64),
            (1, 1, 1024, 1024, 512),
            (1, 3, 333, 191, 64),
            (2, 2, 100, 100, 40),
        ];
        for (seed, &(batch, heads, queries, keys, dim)) in cases.iter().enumerate() {
            for precision in [Precision::F16, Precision::Bf16] {
                let tokens_major = |tokens: usize, s: u64| {
                    let x = precision.round(&common::values(batch * tokens * heads * dim, s));
                    let t = upload(&x, &[batch, tokens, heads, dim], precision).transpose(1, 2).unwrap();
                    // The reference's order, (batch, heads, tokens, dim), on the host.
                    let host = t.to_dtype(DType::F64).unwrap().contiguous().unwrap();
                    (t, host.flatten_all().unwrap().to_vec1::<f64>().unwrap())
                };
                let seed = 10 * seed as u64;
                let ((q, qh), (k, kh), (v, vh)) =
                    (tokens_major(queries, seed), tokens_major(keys, seed + 1), tokens_major(keys, seed + 2));
                assert!(flash_attention_runs(&q, &k, &v).unwrap(), "a {dim}-wide {precision:?} head");
                let got = flash_attention(&q, &k, &v, (dim as f64).powf(-0.5)).unwrap();
                assert_eq!(got.dims(), &[batch, heads, queries, dim]);
                let reference = attention_reference(&qh, &kh, &vh, batch * heads, queries, keys, dim);
                // Weighted means of values in [-1, 1): of order 1/√keys; the probabilities are rounded to the
                // dtype before the second product, as PyTorch's flash attention does.
                let err = common::worst(&download(&got.contiguous().unwrap()), &reference, 0.1);
                let what = format!("{batch}×{heads}×{queries}·{keys}×{dim} {precision:?}");
                assert!(err < 4.0 * precision.tolerance(), "{what}: worst {err}");
            }
        }
    }

    #[test]
    fn flash_attention_leaves_f32_to_the_sliced_path() {
        let x = Tensor::zeros((1, 2, 16, 64), DType::F32, &gpu()).unwrap();
        assert!(!flash_attention_runs(&x, &x, &x).unwrap());
        let h = x.to_dtype(DType::F16).unwrap();
        assert!(flash_attention_runs(&h, &h, &h).unwrap());
        assert!(!flash_attention_runs(&h, &h, &x).unwrap());
    }
}
