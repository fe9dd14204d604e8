//! 2-D convolution over NCHW f32 as GEMMs of the weight matrix with tiles of patch columns. Each patch row is
//! gathered with contiguous copies and the GEMM writes straight into the NCHW output, so a convolution costs
//! about what a matmul of the same M/N/K costs, with no column buffer larger than one tile.

use rayon::prelude::*;

use crate::matmul::matmul_into;

/// Patch columns per GEMM: a tile of `K × columns` f32 stays near 16 MiB however large the image, so a
/// 2048² decode needs no multi-gigabyte column buffer.
const TILE_ELEMENTS: usize = 1 << 22;

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

/// `out[b, o] = bias[o] + Σ weight[o, c, i, j] · input[b, c, y·s + i − p, x·s + j − p]`, as GEMMs of the
/// weight matrix (`out_c × in_c·k²`, already its memory layout) with tiles of patch columns.
pub fn convolve(input: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: ConvShape) -> Vec<f32> {
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    let plane = out_h * out_w;
    let (m, _, k) = shape.gemm_mnk();
    let mut out = vec![0f32; shape.batch * shape.out_c * plane];
    if let Some(bias) = bias {
        out.par_chunks_mut(plane).enumerate().for_each(|(row, dst)| dst.fill(bias[row % shape.out_c]));
    }
    let in_plane = shape.height * shape.width;
    let pointwise = shape.kernel == 1 && shape.stride == 1 && shape.padding == 0;
    let rows_per_tile = (TILE_ELEMENTS / (k * out_w).max(1)).clamp(1, out_h.max(1));
    let mut columns = if pointwise { Vec::new() } else { vec![0f32; k * rows_per_tile * out_w] };
    for b in 0..shape.batch {
        let input = &input[b * shape.in_c * in_plane..(b + 1) * shape.in_c * in_plane];
        let out = &mut out[b * m * plane..(b + 1) * m * plane];
        if pointwise {
            matmul_into(out, plane, weight, k, input, (m, plane, k), bias.is_some());
            continue;
        }
        for first_row in (0..out_h).step_by(rows_per_tile) {
            let rows = rows_per_tile.min(out_h - first_row);
            let n = rows * out_w;
            let tile = &mut columns[..k * n];
            tile.par_chunks_mut(n).enumerate().for_each(|(r, dst)| gather_patch_row(input, shape, r, first_row, dst));
            matmul_into(&mut out[first_row * out_w..], plane, weight, k, tile, (m, n, k), bias.is_some());
        }
    }
    out
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
        // 2700 patch rows × 2000 columns exceed a tile: one output row per GEMM, 20 GEMMs.
        let shape = ConvShape { kernel: 3, padding: 1, in_c: 300, height: 20, width: 2000, ..shape };
        let input = vec![1.0f32; 300 * 20 * 2000];
        let weight = vec![1.0f32; 300 * 9];
        let out = convolve(&input, &weight, None, shape);
        // An interior pixel sees all 9 taps of all 300 channels; a corner 4.
        assert_eq!(out[2000 + 1], 2700.0);
        assert_eq!(out[0], 1200.0);
    }
}
