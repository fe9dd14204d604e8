//! Stride-1 3×3 convolution by Winograd's minimal filtering F(4×4, 3×3) (Lavin and Gray, 2015): every 4×4 block
//! of output pixels comes from the 6×6 block of input around it through 36 element-wise products in a
//! transformed space, summed over the input channels. The sums are 36 GEMMs (`out_c × in_c` by `in_c × tiles`)
//! of 36 multiply-adds per channel pair and output tile, where the direct sum takes 144: a quarter of the
//! arithmetic, the price being the transforms (additions and small constant multiples, vectorised over whole
//! rows) and rounding several times the direct sum's (the transforms' constants reach 8 and 1/24): at 512 input
//! channels the worst error was 3.5e-5 of the output's rms against the GEMM's 5.2e-6.
//!
//! The image is worked in blocks of tile rows, one per rayon task: the block's transformed input, the 36
//! products and their inverse transform stay near the core, and no buffer grows with the image.

use rayon::prelude::*;

use crate::conv::ConvShape;
use crate::matmul::{Operand, SharedDst, gemm_serial};
use crate::simd::vectorised;

/// Output pixels per tile side.
const TILE: usize = 4;
/// Input pixels per tile side: `TILE + 3 − 1`.
const WINDOW: usize = 6;
/// Points of the transformed space: one GEMM each.
const POINTS: usize = WINDOW * WINDOW;

/// A block's transformed input (or products, whichever has more channels) is kept near this size, so the
/// transforms' writes are still in the cache when the GEMMs read them.
const BLOCK_BYTES: usize = 4 << 20;

/// Tiles per block at least, where the size allows: each block reads all 36 transformed weight matrices, and
/// fewer tiles than this leave the GEMMs waiting on them.
const MIN_TILES: usize = 64;

/// Blocks per thread at least, where the image has the tile rows: threads finish together.
const BLOCKS_PER_THREAD: usize = 4;

/// Pixels per call (batch × output plane) at least: below it the per-call transform of the weights (a fresh
/// buffer four times their size) costs more than the GEMMs save. Probed against the direct kernel at SDXL's
/// shapes: 0.33–0.64× its time over 64² planes and more, 0.55–0.9× at 32² with a batch of two (2048 pixels);
/// against the GEMMs at 16² with a batch of two (512 pixels), 2.3–2.8× slower.
const MIN_PIXELS: usize = 2048;

/// Input and output channels at least: with fewer the 36 GEMMs are too thin to pay for the transforms (the
/// VAE's 128 → 3 output convolution ran 1.6× slower than the direct kernel, the UNet's 4 → 320 input one 1.5×).
const MIN_CHANNELS: usize = 32;

/// Whether the shape is one this computes and gains on: [`computes`], enough pixels and channels.
pub(crate) fn applies(shape: &ConvShape) -> bool {
    computes(shape)
        && shape.batch * shape.out_height() * shape.out_width() >= MIN_PIXELS
        && shape.in_c.min(shape.out_c) >= MIN_CHANNELS
}

/// Whether the shape is one this computes: stride 1, 3×3, an output.
fn computes(shape: &ConvShape) -> bool {
    shape.stride == 1
        && shape.kernel == 3
        && shape.height + 2 * shape.padding >= 3
        && shape.width + 2 * shape.padding >= 3
}

/// `out = conv(input, weight) + bias` for a shape this [`computes`]; `out` is the NCHW output, any contents.
pub(crate) fn convolve(input: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: ConvShape, out: &mut [f32]) {
    assert!(computes(&shape), "Winograd convolution for an unsupported shape");
    let ConvShape { batch, in_c, height, width, out_c, .. } = shape;
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    assert_eq!(input.len(), batch * in_c * height * width, "input is not batch × in_c × height × width");
    assert_eq!(weight.len(), out_c * in_c * 9, "weight is not out_c × in_c × 3 × 3");
    assert!(bias.is_none_or(|b| b.len() == out_c), "bias length is not out_c");
    assert_eq!(out.len(), batch * out_c * out_h * out_w, "output is not batch × out_c × out_h × out_w");
    if out.is_empty() {
        return;
    }
    let filters = transform_weights(weight, out_c, in_c);
    let geometry = Geometry::sized(shape);
    let dst = SharedDst(out.as_mut_ptr());
    let total_rows = batch * geometry.tiles_y;
    (0..total_rows.div_ceil(geometry.tile_rows)).into_par_iter().for_each_init(
        || Scratch::new(&geometry, shape),
        |scratch, block| {
            let first = block * geometry.tile_rows;
            let rows = geometry.tile_rows.min(total_rows - first);
            // This task writes only the output rows of its own tile rows, which no other task writes, and `out`
            // stays mutably borrowed until every task has finished.
            geometry.run(scratch, input, &filters, bias, shape, (first, rows), dst.at(0));
        },
    );
}

/// Bytes [`convolve`] allocates besides its input and output: the transformed weights and, per thread that can
/// run at once, one task's buffers and gemm's packed copy of a point's transformed input.
pub(crate) fn scratch_bytes(shape: ConvShape) -> usize {
    let geometry = Geometry::sized(shape);
    let blocks = (shape.batch * geometry.tiles_y).div_ceil(geometry.tile_rows);
    let tasks = blocks.min(rayon::current_num_threads());
    let packing = shape.in_c * geometry.tile_rows * geometry.tiles_x;
    let per_task = Scratch::lengths(&geometry, shape).iter().sum::<usize>() + packing;
    (shape.out_c * POINTS * shape.in_c + tasks * per_task) * size_of::<f32>()
}

/// `U = G·g·Gᵀ` for every filter `g = weight[o, c]`, laid out `[o][point][c]`: the GEMM of point `p` reads its
/// `out_c × in_c` matrix as rows `POINTS · in_c` apart. Worked a chunk of input channels at a time with the
/// taps laid out `[tap][c]`, so every step runs down contiguous channels.
fn transform_weights(weight: &[f32], out_c: usize, in_c: usize) -> Vec<f32> {
    const CHUNK: usize = 64;
    const G: [[f32; 3]; WINDOW] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    let mut filters = vec![0f32; out_c * POINTS * in_c];
    filters.par_chunks_mut(POINTS * in_c).zip(weight.par_chunks(in_c * 9)).for_each(|(dst, src)| {
        vectorised!(|| {
            for c0 in (0..in_c).step_by(CHUNK) {
                let n = CHUNK.min(in_c - c0);
                let mut taps = [[0f32; CHUNK]; 9];
                for (c, g) in src[c0 * 9..(c0 + n) * 9].chunks_exact(9).enumerate() {
                    for (tap, g) in taps.iter_mut().zip(g) {
                        tap[c] = *g;
                    }
                }
                // G·g (6×3 per channel), then (G·g)·Gᵀ (6×6).
                let mut left = [[[0f32; CHUNK]; 3]; WINDOW];
                for (left, g) in left.iter_mut().zip(&G) {
                    for (l, left) in left.iter_mut().enumerate() {
                        for c in 0..CHUNK {
                            left[c] = g[0] * taps[l][c] + g[1] * taps[3 + l][c] + g[2] * taps[6 + l][c];
                        }
                    }
                }
                for (i, left) in left.iter().enumerate() {
                    for (j, g) in G.iter().enumerate() {
                        let dst = &mut dst[(i * WINDOW + j) * in_c + c0..][..n];
                        for (c, d) in dst.iter_mut().enumerate() {
                            *d = left[0][c] * g[0] + left[1][c] * g[1] + left[2][c] * g[2];
                        }
                    }
                }
            }
        })
    });
    filters
}

/// `Bᵀ·d` for one column (or row) of six input pixels.
#[inline(always)]
fn input_transform(d: [f32; WINDOW]) -> [f32; WINDOW] {
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * (d[1] + d[2]) + d[3] + d[4],
        4.0 * (d[1] - d[2]) - d[3] + d[4],
        2.0 * (d[3] - d[1]) - d[2] + d[4],
        2.0 * (d[1] - d[3]) - d[2] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// `Aᵀ·m` for one column (or row) of six transformed products: four output pixels.
#[inline(always)]
fn output_transform(m: [f32; WINDOW]) -> [f32; TILE] {
    let (sum_12, diff_12, sum_34, diff_34) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
    [m[0] + sum_12 + sum_34, diff_12 + 2.0 * diff_34, sum_12 + 4.0 * sum_34, diff_12 + 8.0 * diff_34 + m[5]]
}

/// `N` disjoint rows of `len` elements, `stride` apart from `start`, of one buffer.
#[inline(always)]
fn rows_mut<const N: usize>(buffer: &mut [f32], start: usize, stride: usize, len: usize) -> [&mut [f32]; N] {
    assert!(len <= stride, "rows overlap");
    let mut rest = &mut buffer[start..];
    std::array::from_fn(|i| {
        let (row, tail) = std::mem::take(&mut rest).split_at_mut(if i + 1 < N { stride } else { len });
        rest = tail;
        &mut row[..len]
    })
}

/// `values[i]` into element `at` of row `i`.
#[inline(always)]
fn store(rows: &mut [&mut [f32]; WINDOW], at: usize, values: [f32; WINDOW]) {
    for (row, value) in rows.iter_mut().zip(values) {
        row[at] = value;
    }
}

/// How an image is cut into tiles and blocks of tile rows.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    tiles_x: usize,
    tiles_y: usize,
    /// Tile rows per block (the image's last block may have fewer).
    tile_rows: usize,
}

impl Geometry {
    fn sized(shape: ConvShape) -> Self {
        let (tiles_y, tiles_x) = (shape.out_height().div_ceil(TILE), shape.out_width().div_ceil(TILE));
        let total_rows = shape.batch * tiles_y;
        let by_size = BLOCK_BYTES / (POINTS * shape.in_c.max(shape.out_c) * tiles_x * size_of::<f32>());
        let spread = total_rows.div_ceil(BLOCKS_PER_THREAD * rayon::current_num_threads());
        let tile_rows = by_size.min(spread).max(MIN_TILES.div_ceil(tiles_x)).clamp(1, total_rows);
        Self { tiles_x, tiles_y, tile_rows }
    }

    /// Columns of the padded input rows a tile row reads (`TILE · tiles_x + 2`), rounded up to whole tiles so
    /// the columns can be split four ways.
    fn window_width(&self) -> usize {
        TILE * (self.tiles_x + 1)
    }

    /// Tile rows `first .. first + rows`, counted through the batch (row `g` is tile row `g % tiles_y` of item
    /// `g / tiles_y`): transform the input, the 36 GEMMs, the inverse transform into `out`, the NCHW output,
    /// whose rows in this range no one else touches meanwhile.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        scratch: &mut Scratch,
        input: &[f32],
        filters: &[f32],
        bias: Option<&[f32]>,
        shape: ConvShape,
        (first, rows): (usize, usize),
        out: *mut f32,
    ) {
        let (in_c, out_c) = (shape.in_c, shape.out_c);
        let tiles = rows * self.tiles_x;
        let stride = self.tile_rows * self.tiles_x;
        vectorised!(|| {
            let item_len = in_c * shape.height * shape.width;
            for c in 0..in_c {
                for r in 0..rows {
                    let (b, ty) = ((first + r) / self.tiles_y, (first + r) % self.tiles_y);
                    scratch.fill_window(self, &input[b * item_len..(b + 1) * item_len], c, shape, TILE * ty);
                    scratch.transform_window(self, c * stride + r * self.tiles_x, in_c * stride);
                }
            }
        });
        for p in 0..POINTS {
            let products = &mut scratch.products[p * out_c * stride..(p + 1) * out_c * stride];
            let transformed = &scratch.transformed[p * in_c * stride..(p + 1) * in_c * stride];
            // SAFETY: `products` is this point's `out_c × stride` block of the task's own scratch, held mutably;
            // `tiles ≤ stride` columns of `out_c` rows `stride` apart lie inside it.
            #[allow(unsafe_code)]
            unsafe {
                gemm_serial(
                    products.as_mut_ptr(),
                    stride,
                    &filters[p * in_c..],
                    POINTS * in_c,
                    Operand::rows(transformed, stride),
                    (out_c, tiles, in_c),
                    false,
                    1.0,
                )
            };
        }
        let (out_h, out_w) = (shape.out_height(), shape.out_width());
        vectorised!(|| {
            for o in 0..out_c {
                let add = bias.map_or(0.0, |bias| bias[o]);
                for r in 0..rows {
                    let (b, ty) = ((first + r) / self.tiles_y, (first + r) % self.tiles_y);
                    let y = TILE * ty;
                    let out_rows = TILE.min(out_h - y);
                    scratch.inverse_window(self, o * stride + r * self.tiles_x, out_c * stride);
                    for a in 0..out_rows {
                        // SAFETY: row `y + a` (< out_h) of plane `o` of item `b` lies inside the output, and only
                        // this task writes it (see the function's contract).
                        #[allow(unsafe_code)]
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(out.add(((b * out_c + o) * out_h + y + a) * out_w), out_w)
                        };
                        scratch.write_row(self, a, add, dst);
                    }
                }
            }
        });
    }
}

/// One task's buffers: the window of six padded input rows (then their column transform), the same rows split
/// four ways by column, the transformed input `[point][c][tile]`, the products `[point][o][tile]`, and one tile
/// row's products transformed along the rows.
struct Scratch {
    window: Vec<f32>,
    split: Vec<f32>,
    transformed: Vec<f32>,
    products: Vec<f32>,
    rows: Vec<f32>,
}

impl Scratch {
    fn new(geometry: &Geometry, shape: ConvShape) -> Self {
        let [window, split, transformed, products, rows] = Self::lengths(geometry, shape);
        Self {
            window: vec![0f32; window],
            split: vec![0f32; split],
            transformed: vec![0f32; transformed],
            products: vec![0f32; products],
            rows: vec![0f32; rows],
        }
    }

    /// The buffers' lengths, in the order of the fields.
    fn lengths(geometry: &Geometry, shape: ConvShape) -> [usize; 5] {
        let stride = geometry.tile_rows * geometry.tiles_x;
        let width = geometry.window_width();
        [
            WINDOW * width,
            WINDOW * width,
            POINTS * shape.in_c * stride,
            POINTS * shape.out_c * stride,
            WINDOW * TILE * geometry.tiles_x,
        ]
    }

    /// The six padded input rows of channel `c` from output row `y` on (input rows `y − padding ..`), zero
    /// outside the image.
    #[inline(always)]
    fn fill_window(&mut self, geometry: &Geometry, item: &[f32], c: usize, shape: ConvShape, y: usize) {
        let (height, columns, padding) = (shape.height, shape.width, shape.padding);
        let width = geometry.window_width();
        let inside = padding.min(width)..(padding + columns).min(width);
        for (k, dst) in self.window.chunks_exact_mut(width).enumerate() {
            match (y + k).checked_sub(padding).filter(|y| *y < height) {
                Some(y) => {
                    dst[..inside.start].fill(0.0);
                    let src = &item[(c * height + y) * columns..][..inside.len()];
                    dst[inside.clone()].copy_from_slice(src);
                    dst[inside.end..].fill(0.0);
                }
                None => dst.fill(0.0),
            }
        }
    }

    /// `Bᵀ·d·B` of every tile of the window into `transformed`, tile `t` of point `p` at
    /// `p · point_stride + offset + t`. The window's rows are first split four ways by column modulo 4 (tile
    /// `t` reads columns `4t .. 4t + 6`: the four splits at `t` and the first two at `t + 1`), so both passes,
    /// down the columns and then along each tile's six, run over contiguous elements.
    #[inline(always)]
    fn transform_window(&mut self, geometry: &Geometry, offset: usize, point_stride: usize) {
        let (width, tiles_x) = (geometry.window_width(), geometry.tiles_x);
        let quarter = width / TILE;
        for (row, split) in self.window.chunks_exact(width).zip(self.split.chunks_exact_mut(width)) {
            for (t, pixels) in row.chunks_exact(TILE).enumerate() {
                for (m, pixel) in pixels.iter().enumerate() {
                    split[m * quarter + t] = *pixel;
                }
            }
        }
        {
            let d: [&[f32]; WINDOW] = std::array::from_fn(|k| &self.split[k * width..(k + 1) * width]);
            let mut columns = rows_mut::<WINDOW>(&mut self.window, 0, width, width);
            // Six rows indexed alike: an iterator over one of them would not make it simpler.
            #[allow(clippy::needless_range_loop)]
            for x in 0..width {
                store(&mut columns, x, input_transform([d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x]]));
            }
        }
        for (i, column) in self.window.chunks_exact(width).enumerate() {
            let s: [&[f32]; TILE] = std::array::from_fn(|m| &column[m * quarter..(m + 1) * quarter]);
            let mut points =
                rows_mut::<WINDOW>(&mut self.transformed, i * WINDOW * point_stride + offset, point_stride, tiles_x);
            for t in 0..tiles_x {
                store(&mut points, t, input_transform([s[0][t], s[1][t], s[2][t], s[3][t], s[0][t + 1], s[1][t + 1]]));
            }
        }
    }

    /// `m·A` of one tile row of one output channel's products (tile `t` of point `p` at
    /// `p · point_stride + offset + t`) into `rows`: each tile's six products along a row become its four
    /// columns.
    #[inline(always)]
    fn inverse_window(&mut self, geometry: &Geometry, offset: usize, point_stride: usize) {
        let tiles_x = geometry.tiles_x;
        for (i, row) in self.rows.chunks_exact_mut(TILE * tiles_x).enumerate() {
            let base = i * WINDOW * point_stride + offset;
            let m: [&[f32]; WINDOW] = std::array::from_fn(|j| &self.products[base + j * point_stride..][..tiles_x]);
            for (t, row) in row.chunks_exact_mut(TILE).enumerate() {
                let v = output_transform([m[0][t], m[1][t], m[2][t], m[3][t], m[4][t], m[5][t]]);
                row.copy_from_slice(&v);
            }
        }
    }

    /// Output row `a` of the tile row [`Self::inverse_window`] left in `rows` (`Aᵀ` down the columns), plus `add`.
    #[inline(always)]
    fn write_row(&self, geometry: &Geometry, a: usize, add: f32, dst: &mut [f32]) {
        let n = dst.len();
        let r: [&[f32]; WINDOW] = std::array::from_fn(|i| &self.rows[i * TILE * geometry.tiles_x..][..n]);
        let (diff_12, sum_12) = (|x: usize| r[1][x] - r[2][x], |x: usize| r[1][x] + r[2][x]);
        let (diff_34, sum_34) = (|x: usize| r[3][x] - r[4][x], |x: usize| r[3][x] + r[4][x]);
        // One plain loop per row, not a match inside one loop: nothing left for the compiler to unswitch.
        match a {
            0 => {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = r[0][x] + sum_12(x) + sum_34(x) + add;
                }
            }
            1 => {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = diff_12(x) + 2.0 * diff_34(x) + add;
                }
            }
            2 => {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = sum_12(x) + 4.0 * sum_34(x) + add;
                }
            }
            _ => {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = diff_12(x) + 8.0 * diff_34(x) + r[5][x] + add;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::conv::testing::values;

    /// Against the GEMM path over the shapes that stress the edges: planes that are not a whole number of
    /// tiles either way, every padding SDXL could use, one pixel, several blocks and batch items, bias or none.
    #[test]
    fn equals_the_gemm_convolution() {
        // One pixel, planes of whole tiles with a batch of three, no padding on the smallest plane.
        let cases = [crate::conv::testing::EDGE_CASES, &[(1, 1, 1, 1, 2, 1), (3, 16, 8, 8, 16, 1), (1, 2, 3, 3, 1, 0)]]
            .concat();
        crate::conv::testing::equals_the_gemms(&cases, |input, weight, bias, shape, out| {
            assert!(computes(&shape), "{shape:?} is not a Winograd shape");
            convolve(input, weight, bias, shape, out);
        });
    }

    /// Rounding against sums in f64 at a deep layer's width (512 channels in, SDXL-like unit-variance values
    /// and weights scaled as trained ones are): Winograd's transforms multiply by up to 8 and 1/24, so its
    /// error is several times the direct sum's, but it must stay a small fraction of the output's magnitude.
    #[test]
    fn rounding_stays_small_against_f64_sums() {
        let (in_c, out_c, side) = (512, 40, 14);
        let shape = ConvShape { batch: 1, in_c, height: side, width: side, out_c, kernel: 3, stride: 1, padding: 1 };
        let input: Vec<f32> = values(in_c * side * side, 1).iter().map(|v| v * 3.4).collect();
        let scale = 3.4 / (9.0 * in_c as f32).sqrt();
        let weight: Vec<f32> = values(out_c * in_c * 9, 2).iter().map(|v| v * scale).collect();
        let mut exact = vec![0f64; out_c * side * side];
        for o in 0..out_c {
            for y in 0..side {
                for x in 0..side {
                    let mut sum = 0f64;
                    for c in 0..in_c {
                        for (i, j) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
                            let (yy, xx) = ((y + i) as isize - 1, (x + j) as isize - 1);
                            if (0..side as isize).contains(&yy) && (0..side as isize).contains(&xx) {
                                let v = input[(c * side + yy as usize) * side + xx as usize] as f64;
                                sum += v * weight[((o * in_c + c) * 3 + i) * 3 + j] as f64;
                            }
                        }
                    }
                    exact[(o * side + y) * side + x] = sum;
                }
            }
        }
        let mut ours = vec![0f32; exact.len()];
        convolve(&input, &weight, None, shape, &mut ours);
        let gemm = crate::conv::convolve_gemm(&input, &weight, None, shape);
        let rms = (exact.iter().map(|v| v * v).sum::<f64>() / exact.len() as f64).sqrt();
        let worst = |got: &[f32]| got.iter().zip(&exact).map(|(g, e)| (*g as f64 - e).abs()).fold(0.0, f64::max) / rms;
        let (winograd, direct) = (worst(&ours), worst(&gemm));
        eprintln!("output rms {rms:.3}; worst error / rms: Winograd {winograd:.2e}, GEMM {direct:.2e}");
        // Measured 3.5e-5 against the GEMM's 5.2e-6.
        assert!(winograd < 1e-4, "Winograd's worst error is {winograd:.2e} of the output's rms");
    }
}
