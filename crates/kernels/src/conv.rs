//! 2-D convolution over NCHW f32, with no buffer larger than one tile however large the image. Stride-1 3×3
//! convolutions over enough pixels and channels run Winograd's F(4×4, 3×3) (`winograd.rs`); the rest of them on
//! planes of some width run the direct AVX-512 kernel (`direct_conv.rs`) where the CPU has it; the rest are
//! GEMMs. Stride 1 on planes of some size needs no patch matrix: one GEMM per kernel tap over a
//! shifted view of the padded input. Other strides and small planes gather tiles of patch columns with
//! contiguous copies, and the GEMM writes straight into the NCHW output.

use rayon::prelude::*;

use crate::matmul::matmul_into;

/// Patch columns per GEMM: a tile of `K × columns` f32 stays near 16 MiB however large the image, so a
/// 2048² decode needs no multi-gigabyte column buffer.
const TILE_ELEMENTS: usize = 1 << 22;

/// Stride-1 planes narrower than this many padded columns gather patches instead of shifting: each tap's GEMM
/// would read the whole weight for too few columns (the UNet's 8×8 level at 256²: 80 columns, 2.5× slower).
const SHIFTED_MIN_COLUMNS: usize = 512;

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_c: usize,
    pub height: usize,
    pub width: usize,
    pub out_c: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// The equivalent matmul: `out_c × (out pixels) × (in_c · kernel²)`, per batch item.
    pub fn gemm_mnk(&self) -> (usize, usize, usize) {
        (self.out_c, self.out_height() * self.out_width(), self.in_c * self.kernel * self.kernel)
    }
}

/// `out[b, o] = bias[o] + Σ weight[o, c, i, j] · input[b, c, y·s + i − p, x·s + j − p]`.
pub fn convolve(input: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: ConvShape) -> Vec<f32> {
    let output = || vec![0f32; shape.batch * shape.out_c * shape.out_height() * shape.out_width()];
    match Path::of(&shape) {
        Path::Winograd => {
            let mut out = output();
            crate::winograd::convolve(input, weight, bias, shape, &mut out);
            out
        }
        #[cfg(target_arch = "x86_64")]
        Path::Direct => {
            let mut out = output();
            crate::direct_conv::convolve(input, weight, bias, shape, &mut out);
            out
        }
        Path::Gemm => convolve_gemm(input, weight, bias, shape),
    }
}

/// Bytes [`convolve`] allocates for this shape besides its input and output, with the current thread pool:
/// what a memory estimate adds for the op.
pub fn scratch_bytes(shape: ConvShape) -> usize {
    SMALL_ALLOCATIONS
        + match Path::of(&shape) {
            Path::Winograd => crate::winograd::scratch_bytes(shape),
            #[cfg(target_arch = "x86_64")]
            Path::Direct => crate::direct_conv::scratch_bytes(shape),
            Path::Gemm => gemm_scratch_elements(shape) * size_of::<f32>(),
        }
}

/// Which kernel computes a convolution.
enum Path {
    Winograd,
    #[cfg(target_arch = "x86_64")]
    Direct,
    Gemm,
}

impl Path {
    fn of(shape: &ConvShape) -> Self {
        if crate::winograd::applies(shape) {
            return Self::Winograd;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::direct_conv::applies(shape) {
            return Self::Direct;
        }
        Self::Gemm
    }
}

/// Room for the thread pool's and gemm's own small allocations during a call.
const SMALL_ALLOCATIONS: usize = 64 << 10;

/// The f32 elements [`convolve_gemm`] allocates besides its input and output, with gemm's packed copy of the
/// largest right-hand side it is handed (a tile of padded input or of patches, or the whole input).
fn gemm_scratch_elements(shape: ConvShape) -> usize {
    let ConvShape { in_c, height, width, out_c, kernel, padding, .. } = shape;
    if shifts(shape) {
        let padded_plane = (height + 2 * padding) * (width + 2 * padding);
        let tile = shifted_tile_rows(shape) * (width + 2 * padding);
        return kernel * kernel * out_c * in_c + in_c * padded_plane + kernel - 1 + out_c * tile + in_c * tile;
    }
    let k = shape.gemm_mnk().2;
    if pointwise(shape) { k * height * width } else { 2 * k * patch_tile_rows(shape) * shape.out_width() }
}

/// Whether a convolution runs as shifted GEMMs rather than over gathered patches.
fn shifts(shape: ConvShape) -> bool {
    shape.stride == 1
        && shape.kernel > 1
        && shape.out_height() * (shape.width + 2 * shape.padding) >= SHIFTED_MIN_COLUMNS
}

/// Whether a convolution is one GEMM over the input as it lies.
fn pointwise(shape: ConvShape) -> bool {
    shape.kernel == 1 && shape.stride == 1 && shape.padding == 0
}

/// Output rows per tile of gathered patch columns.
fn patch_tile_rows(shape: ConvShape) -> usize {
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    (TILE_ELEMENTS / (shape.gemm_mnk().2 * out_w).max(1)).clamp(1, out_h.max(1))
}

/// Output rows per tile of the shifted GEMMs' accumulator.
fn shifted_tile_rows(shape: ConvShape) -> usize {
    (TILE_ELEMENTS / (shape.out_c * (shape.width + 2 * shape.padding)).max(1)).clamp(1, shape.out_height().max(1))
}

/// The convolution as GEMMs of the weight matrix (`out_c × in_c·k²`, already its memory layout) with tiles
/// of patch columns.
pub(crate) fn convolve_gemm(input: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: ConvShape) -> Vec<f32> {
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    let plane = out_h * out_w;
    let (m, _, k) = shape.gemm_mnk();
    let mut out = vec![0f32; shape.batch * shape.out_c * plane];
    if shifts(shape) {
        convolve_shifted(input, weight, bias, shape, &mut out);
        return out;
    }
    if let Some(bias) = bias {
        out.par_chunks_mut(plane).enumerate().for_each(|(row, dst)| dst.fill(bias[row % shape.out_c]));
    }
    let in_plane = shape.height * shape.width;
    let pointwise = pointwise(shape);
    let rows_per_tile = patch_tile_rows(shape);
    let mut columns = if pointwise { Vec::new() } else { vec![0f32; k * rows_per_tile * out_w] };
    for b in 0..shape.batch {
        let input = &input[b * shape.in_c * in_plane..(b + 1) * shape.in_c * in_plane];
        let out = &mut out[b * m * plane..(b + 1) * m * plane];
        if pointwise {
            matmul_into(out, plane, weight, k, input, plane, (m, plane, k), bias.is_some());
            continue;
        }
        for first_row in (0..out_h).step_by(rows_per_tile) {
            let rows = rows_per_tile.min(out_h - first_row);
            let n = rows * out_w;
            let tile = &mut columns[..k * n];
            tile.par_chunks_mut(n).enumerate().for_each(|(r, dst)| gather_patch_row(input, shape, r, first_row, dst));
            matmul_into(&mut out[first_row * out_w..], plane, weight, k, tile, n, (m, n, k), bias.is_some());
        }
    }
    out
}

/// A stride-1 convolution as `k²` accumulated GEMMs, one per kernel tap `(i, j)`: `weight[:, :, i, j]` times the
/// zero-padded input shifted by `(i, j)`, a view of it with no copy. The product is computed over the padded
/// width (the `k − 1` columns past each row's end are thrown away), in tiles of output rows, and copied into
/// the NCHW output with the bias. No patch matrix is written, which for a 3×3 kernel is nine times the input.
fn convolve_shifted(input: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: ConvShape, out: &mut [f32]) {
    let ConvShape { batch, in_c, height, width, out_c, kernel, padding, .. } = shape;
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    let (padded_h, padded_w) = (height + 2 * padding, width + 2 * padding);
    let padded_plane = padded_h * padded_w;
    let taps = kernel * kernel;
    // weight[o, c, i, j] → tap-major: taps[(i·k + j), o, c].
    let mut tap_weights = vec![0f32; taps * out_c * in_c];
    tap_weights.par_chunks_mut(out_c * in_c).enumerate().for_each(|(t, dst)| {
        for (d, w) in dst.iter_mut().zip(weight.iter().skip(t).step_by(taps)) {
            *d = *w;
        }
    });
    // The last channel's shifted views run up to `k − 1` elements past its padded plane.
    let mut padded = vec![0f32; in_c * padded_plane + kernel - 1];
    let rows_per_tile = shifted_tile_rows(shape);
    let mut wide = vec![0f32; out_c * rows_per_tile * padded_w];
    let (in_plane, plane) = (height * width, out_h * out_w);
    for b in 0..batch {
        let input = &input[b * in_c * in_plane..(b + 1) * in_c * in_plane];
        padded[..in_c * padded_plane].par_chunks_mut(padded_plane).zip(input.par_chunks(in_plane)).for_each(
            |(dst, src)| {
                for (y, row) in src.chunks_exact(width).enumerate() {
                    let start = (y + padding) * padded_w + padding;
                    dst[start..start + width].copy_from_slice(row);
                }
            },
        );
        let out = &mut out[b * out_c * plane..(b + 1) * out_c * plane];
        for first_row in (0..out_h).step_by(rows_per_tile) {
            let rows = rows_per_tile.min(out_h - first_row);
            let n = rows * padded_w;
            let wide = &mut wide[..out_c * n];
            for t in 0..taps {
                let (i, j) = (t / kernel, t % kernel);
                let shifted = &padded[(first_row + i) * padded_w + j..];
                let lhs = &tap_weights[t * out_c * in_c..(t + 1) * out_c * in_c];
                matmul_into(wide, n, lhs, in_c, shifted, padded_plane, (out_c, n, in_c), t > 0);
            }
            out.par_chunks_mut(plane).zip(wide.par_chunks(n)).enumerate().for_each(|(o, (dst, src))| {
                let add = bias.map_or(0.0, |bias| bias[o]);
                for r in 0..rows {
                    let dst = &mut dst[(first_row + r) * out_w..(first_row + r + 1) * out_w];
                    for (d, v) in dst.iter_mut().zip(&src[r * padded_w..r * padded_w + out_w]) {
                        *d = v + add;
                    }
                }
            });
        }
    }
}

/// Row `r = (c, i, j)` of the patch matrix for output rows `first_row..`: the input plane `c` shifted by the
/// kernel offset `(i, j)`, zero where the shift falls into the padding.
fn gather_patch_row(input: &[f32], shape: ConvShape, r: usize, first_row: usize, dst: &mut [f32]) {
    let k2 = shape.kernel * shape.kernel;
    let (c, i, j) = (r / k2, (r % k2) / shape.kernel, r % shape.kernel);
    let out_w = shape.out_width();
    let plane = &input[c * shape.height * shape.width..(c + 1) * shape.height * shape.width];
    for (row, dst) in dst.chunks_exact_mut(out_w).enumerate() {
        let y = ((first_row + row) * shape.stride + i) as isize - shape.padding as isize;
        if y < 0 || y >= shape.height as isize {
            dst.fill(0.0);
            continue;
        }
        let src = &plane[y as usize * shape.width..(y as usize + 1) * shape.width];
        if shape.stride == 1 {
            // x = ox + j − p over the columns whose x lands inside the row; a contiguous copy.
            let first = shape.padding.saturating_sub(j).min(out_w);
            let last = (shape.width + shape.padding).saturating_sub(j).min(out_w).max(first);
            dst[..first].fill(0.0);
            dst[last..].fill(0.0);
            let x0 = first + j - shape.padding;
            dst[first..last].copy_from_slice(&src[x0..x0 + (last - first)]);
        } else {
            for (ox, d) in dst.iter_mut().enumerate() {
                let x = (ox * shape.stride + j) as isize - shape.padding as isize;
                *d = if x >= 0 && x < shape.width as isize { src[x as usize] } else { 0.0 };
            }
        }
    }
}

/// What the tests of the other stride-1 3×3 kernels share: inputs and the comparison with the GEMM path.
#[cfg(test)]
pub(crate) mod testing {
    use super::{ConvShape, convolve_gemm};

    /// `(batch, in_c, height, width, out_c, padding)` of 3×3 stride-1 convolutions that stress a kernel's edges:
    /// a last vector or tile only part full, channel counts that leave partial blocks of output and input
    /// channels, every padding SDXL could use, several bands or blocks and batch items.
    pub(crate) const EDGE_CASES: &[(usize, usize, usize, usize, usize, usize)] = &[
        (1, 3, 5, 32, 6, 1),
        (2, 5, 9, 40, 7, 1),
        (1, 70, 4, 33, 13, 1),
        (1, 3, 6, 35, 8, 0),
        (1, 2, 5, 31, 5, 2),
        (2, 130, 3, 47, 1, 1),
        (1, 4, 67, 64, 12, 1),
    ];

    /// Values in [-0.5, 0.5) from a seed, without a random-number crate.
    pub(crate) fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect()
    }

    /// `kernel` against the GEMM path over `(batch, in_c, height, width, out_c, padding)` cases of 3×3 stride-1
    /// convolutions, with a bias on every other case; `kernel` writes the whole NCHW output it is handed.
    pub(crate) fn equals_the_gemms(
        cases: &[(usize, usize, usize, usize, usize, usize)],
        kernel: impl Fn(&[f32], &[f32], Option<&[f32]>, ConvShape, &mut [f32]),
    ) {
        for (seed, &(batch, in_c, height, width, out_c, padding)) in cases.iter().enumerate() {
            let shape = ConvShape { batch, in_c, height, width, out_c, kernel: 3, stride: 1, padding };
            let input = values(batch * in_c * height * width, seed);
            let weight = values(out_c * in_c * 9, seed + 50);
            let bias = values(out_c, seed + 100);
            let bias = (seed % 2 == 0).then_some(bias.as_slice());
            let expected = convolve_gemm(&input, &weight, bias, shape);
            let mut out = vec![f32::NAN; expected.len()];
            kernel(&input, &weight, bias, shape, &mut out);
            for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "case {seed}, element {i}: {a} against {b}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_boundary_inside_the_image_changes_nothing() {
        // A pointwise convolution is one GEMM over the whole plane.
        let shape = ConvShape { batch: 1, in_c: 1, height: 7000, width: 2, out_c: 1, kernel: 1, stride: 1, padding: 0 };
        let input: Vec<f32> = (0..14000).map(|v| v as f32).collect();
        let out = convolve(&input, &[2.0], Some(&[1.0]), shape);
        assert!(out.iter().enumerate().all(|(i, v)| *v == 2.0 * i as f32 + 1.0));
        // Stride 2 gathers patches: 1350 patch rows × 1000 columns leave room for 3 output rows per tile, so
        // 20 rows are 7 GEMMs, the last of 2 rows.
        let shape = ConvShape { kernel: 3, stride: 2, padding: 1, in_c: 150, height: 40, width: 2000, ..shape };
        let input = vec![1.0f32; 150 * 40 * 2000];
        let out = convolve(&input, &vec![1.0f32; 150 * 9], None, shape);
        // An interior pixel sees all 9 taps of all 150 channels; a corner 4.
        assert_eq!(out.len(), 20 * 1000);
        assert_eq!(out[19 * 1000 + 1], 1350.0);
        assert_eq!(out[0], 600.0);
        // Stride 1 on a wide plane shifts the padded input: 110 output channels × 2002 padded columns leave
        // room for 19 rows per tile, so 20 rows are two tiles of 19 and 1. The direct kernel, where this CPU
        // has it, must agree.
        let shape = ConvShape { stride: 1, in_c: 2, out_c: 110, height: 20, ..shape };
        let input = vec![1.0f32; 2 * 20 * 2000];
        let bias: Vec<f32> = (0..110).map(|o| o as f32).collect();
        let weight = vec![1.0f32; 110 * 2 * 9];
        for out in [convolve_gemm(&input, &weight, Some(&bias), shape), convolve(&input, &weight, Some(&bias), shape)] {
            for (o, plane) in out.chunks_exact(20 * 2000).enumerate() {
                let o = o as f32;
                assert_eq!(plane[19 * 2000 + 5], 12.0 + o, "bottom edge, second tile");
                assert_eq!(plane[18 * 2000 + 1999], 12.0 + o, "right edge, first tile");
                assert_eq!(plane[10 * 2000 + 7], 18.0 + o, "interior");
                assert_eq!(plane[0], 8.0 + o, "corner");
                assert_eq!(plane[19 * 2000 + 1999], 8.0 + o, "last corner");
            }
        }
    }
}
