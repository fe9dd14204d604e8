//! Stride-1 3×3 convolution computed directly on AVX-512: each vector of 16 output pixels is summed in a
//! register over all nine taps of 64 input channels at a time, reading the input where it lies. The
//! shifted-view GEMMs (`conv.rs`) instead read and write their whole accumulator once per tap and re-pack the
//! input for each; measured at SDXL's shapes from 32 columns up, the direct kernel was 1.06–1.4× faster.
//!
//! The input is read through a band of padded rows laid out row, then channel, then column: read straight from
//! NCHW, the same pixel of every channel lies a power of two apart at SDXL's sizes (a 512² plane is 1 MiB), and
//! the 3·C rows one output row needs all fall into the same cache sets.

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps,
    _mm512_setzero_ps,
};

use rayon::prelude::*;

use crate::conv::ConvShape;
use crate::matmul::SharedDst;

/// Output channels per register tile: each gets `VECTORS` accumulators.
const CHANNELS: usize = 6;
/// Vectors of 16 output pixels per register tile; `CHANNELS × VECTORS` = 24 of the 32 registers accumulate,
/// the rest hold the loaded input vectors and the broadcast weight.
const VECTORS: usize = 4;
const LANES: usize = 16;
const KERNEL: usize = 3;
const TAPS: usize = KERNEL * KERNEL;

/// Input channels summed per pass: one chunk's weights for every output channel (up to 1.2 MiB at 512 output
/// channels) stay in the L2 while the band's tiles pass over them, and one tile's input rows for the chunk
/// (3 rows × 64 channels × 66 columns, about the L1's 48 KiB) near the core while every block of output
/// channels passes over them. 16, 32, 64
/// and 128 measured within this machine's noise of each other; 64 keeps the partial sums' round trips few.
const CHUNK_CHANNELS: usize = 64;

/// A band's padded input rows are kept near this size: the more output rows a band holds, the more tiles each
/// chunk of weights serves while it is in the L2, and only the current chunk's rows of the band need to be near
/// the core. In one sweep 1 MiB ran the 64² and 128² planes at about 140 GFLOP/s against 190–260 with 4 MiB;
/// 16 MiB was no faster than 4.
const BAND_BYTES: usize = 4 << 20;

/// Bands per thread at least, where the image has the rows: threads finish together.
const BANDS_PER_THREAD: usize = 4;

/// Planes narrower than this stay with the GEMMs: a 16-wide plane fills one vector per row, and the direct
/// kernel then streams every weight per four rows (0.54–0.65× the GEMMs at the UNet's 16² level, 0.4× at 8²);
/// from 32 columns on it was 1.06–1.4× faster.
const MIN_WIDTH: usize = 32;

/// Whether this CPU runs the direct convolution and the shape is one it computes: stride 1, 3×3, output rows
/// of at least [`MIN_WIDTH`] pixels.
pub(crate) fn applies(shape: &ConvShape) -> bool {
    shape.stride == 1
        && shape.kernel == KERNEL
        && shape.height + 2 * shape.padding >= KERNEL
        && shape.width + 2 * shape.padding >= KERNEL + MIN_WIDTH - 1
        && std::arch::is_x86_feature_detected!("avx512f")
}

/// `out = conv(input, weight) + bias` for a shape [`applies`] accepts; `out` is the NCHW output, any contents.
pub(crate) fn convolve(input: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: ConvShape, out: &mut [f32]) {
    assert!(applies(&shape), "direct convolution for an unsupported shape or CPU");
    let ConvShape { batch, in_c, height, width, out_c, padding, .. } = shape;
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    assert_eq!(input.len(), batch * in_c * height * width, "input is not batch × in_c × height × width");
    assert_eq!(weight.len(), out_c * in_c * TAPS, "weight is not out_c × in_c × 3 × 3");
    assert!(bias.is_none_or(|b| b.len() == out_c), "bias length is not out_c");
    assert_eq!(out.len(), batch * out_c * out_h * out_w, "output is not batch × out_c × out_h × out_w");
    if out.is_empty() {
        return;
    }
    let packed = pack(weight, out_c, in_c);
    let padded_w = width + 2 * padding;
    let band = Band::sized(in_c, padded_w, (batch, out_h, out_w));
    let bands_per_item = out_h.div_ceil(band.rows);
    let plane = out_h * out_w;
    let dst = SharedDst(out.as_mut_ptr());
    (0..batch * bands_per_item).into_par_iter().for_each_init(
        || vec![0f32; band.len()],
        |rows, task| {
            let (b, first_row) = (task / bands_per_item, (task % bands_per_item) * band.rows);
            let item = &input[b * in_c * height * width..(b + 1) * in_c * height * width];
            band.fill(rows, item, shape, first_row);
            let out_rows = band.rows.min(out_h - first_row);
            // This task writes only rows `first_row..first_row + out_rows` of every output plane of item `b`, which
            // no other task writes, and `out` stays mutably borrowed until every task has finished.
            band.run(rows, &packed, bias, shape, (first_row, out_rows), dst.at(b * out_c * plane));
        },
    );
}

/// Bytes [`convolve`] allocates besides its input and output: the packed weights and, per thread that can run
/// at once, a band with its tiles' offsets and bias.
pub(crate) fn scratch_bytes(shape: ConvShape) -> usize {
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    let band = Band::sized(shape.in_c, shape.width + 2 * shape.padding, (shape.batch, out_h, out_w));
    let tasks = (shape.batch * out_h.div_ceil(band.rows)).min(rayon::current_num_threads());
    let packed = shape.out_c.div_ceil(CHANNELS) * shape.in_c * TAPS * CHANNELS * size_of::<f32>();
    let tiles = (band.rows * out_w.div_ceil(LANES)).div_ceil(VECTORS) * size_of::<Tile>();
    let per_task = (band.len() + shape.out_c.next_multiple_of(CHANNELS)) * size_of::<f32>() + tiles;
    packed + tasks * per_task
}

/// `weight[o, c, i, j]` → `packed[o / CHANNELS, c, i·3 + j, o % CHANNELS]`, the last block padded with zero
/// channels: one tile's weights for a tap are `CHANNELS` consecutive scalars.
fn pack(weight: &[f32], out_c: usize, in_c: usize) -> Vec<f32> {
    let block = in_c * TAPS * CHANNELS;
    let mut packed = vec![0f32; out_c.div_ceil(CHANNELS) * block];
    packed.par_chunks_mut(block).enumerate().for_each(|(ob, dst)| {
        for o in 0..CHANNELS.min(out_c - ob * CHANNELS) {
            let src = &weight[(ob * CHANNELS + o) * in_c * TAPS..][..in_c * TAPS];
            for (ct, w) in src.iter().enumerate() {
                dst[ct * CHANNELS + o] = *w;
            }
        }
    });
    packed
}

/// The geometry of one task's input rows: `rows` output rows need `rows + 2` padded input rows, each holding
/// every channel's row of `padded_w` columns.
#[derive(Debug, Clone, Copy)]
struct Band {
    rows: usize,
    in_c: usize,
    padded_w: usize,
}

impl Band {
    fn sized(in_c: usize, padded_w: usize, (batch, out_h, out_w): (usize, usize, usize)) -> Self {
        let row_bytes = in_c * padded_w * size_of::<f32>();
        let by_size = (BAND_BYTES / row_bytes).saturating_sub(KERNEL - 1);
        let bands = (BANDS_PER_THREAD * rayon::current_num_threads()).div_ceil(batch);
        let mut rows = by_size.min(out_h.div_ceil(bands)).max(1);
        // Where a row is less than a tile, a multiple of the tile's vectors in rows: every band's tiles are full
        // (but the image's last band's).
        if out_w.div_ceil(LANES) < VECTORS {
            rows = rows.next_multiple_of(VECTORS);
        }
        Self { rows: rows.min(out_h), in_c, padded_w }
    }

    fn row_stride(&self) -> usize {
        self.in_c * self.padded_w
    }

    /// Elements, with slack past the last row: a tile loads whole vectors from its last column onward, into
    /// lanes it never stores.
    fn len(&self) -> usize {
        (self.rows + KERNEL - 1) * self.row_stride() + LANES + KERNEL
    }

    /// Copies the input rows `first_row − padding ..` into `rows`, zero outside the image. The padding columns
    /// are never written, so they stay as the buffer was made: zero.
    fn fill(&self, rows: &mut [f32], item: &[f32], shape: ConvShape, first_row: usize) {
        let (height, width, padding) = (shape.height, shape.width, shape.padding);
        for (r, dst) in rows.chunks_exact_mut(self.row_stride()).take(self.rows + KERNEL - 1).enumerate() {
            let y = (first_row + r).checked_sub(padding).filter(|y| *y < height);
            for (c, dst) in dst.chunks_exact_mut(self.padded_w).enumerate() {
                let dst = &mut dst[padding..padding + width];
                match y {
                    Some(y) => dst.copy_from_slice(&item[(c * height + y) * width..][..width]),
                    None => dst.fill(0.0),
                }
            }
        }
    }

    /// Output rows `first_row .. first_row + out_rows` of one batch item, every channel, from the filled band.
    /// `out` is that item's NCHW output, whose rows in this range no one else touches while this runs.
    fn run(
        &self,
        rows: &[f32],
        packed: &[f32],
        bias: Option<&[f32]>,
        shape: ConvShape,
        (first_row, out_rows): (usize, usize),
        out: *mut f32,
    ) {
        let (out_w, out_c, in_c) = (shape.out_width(), shape.out_c, shape.in_c);
        let plane = shape.out_height() * out_w;
        let per_row = out_w.div_ceil(LANES);
        let tail = out_w - (per_row - 1) * LANES;
        let tail_mask = if tail == LANES { u16::MAX } else { (1u16 << tail) - 1 };
        let vectors = out_rows * per_row;
        let tiles: Vec<Tile> = (0..vectors)
            .step_by(VECTORS)
            .map(|first| {
                let mut tile = Tile { input: [0; VECTORS], output: [0; VECTORS], masks: [0; VECTORS] };
                for v in 0..VECTORS.min(vectors - first) {
                    let (r, x) = ((first + v) / per_row, (first + v) % per_row * LANES);
                    tile.input[v] = r * self.row_stride() + x;
                    tile.output[v] = (first_row + r) * out_w + x;
                    tile.masks[v] = if x + LANES > out_w { tail_mask } else { u16::MAX };
                }
                tile
            })
            .collect();
        let mut tile_bias = vec![0f32; out_c.next_multiple_of(CHANNELS)];
        if let Some(bias) = bias {
            tile_bias[..out_c].copy_from_slice(bias);
        }
        // Chunk outermost: one chunk's weights for every output channel stay in the L2 while each tile's input
        // rows for the chunk stay in the L1.
        for c0 in (0..in_c).step_by(CHUNK_CHANNELS) {
            let channels_in = CHUNK_CHANNELS.min(in_c - c0);
            for tile in &tiles {
                for ob in 0..out_c.div_ceil(CHANNELS) {
                    let channels = CHANNELS.min(out_c - ob * CHANNELS);
                    let weights = &packed[ob * in_c * TAPS * CHANNELS..(ob + 1) * in_c * TAPS * CHANNELS];
                    let bias = tile_bias[ob * CHANNELS..(ob + 1) * CHANNELS].try_into().expect("CHANNELS long");
                    // SAFETY: every load is inside `rows` (an input offset is at most the last band row's start
                    // plus `out_w − 1`; a tap adds at most two rows and two columns, a vector 15 lanes, and
                    // `Band::len` leaves that slack), every store is inside output plane `ob·CHANNELS + o` of this
                    // item for `o < channels`, under a mask that keeps it within the row's `out_w` columns, in rows
                    // this task owns. The CPU has AVX-512F (`applies`).
                    #[allow(unsafe_code)]
                    unsafe {
                        tile.run(
                            rows.as_ptr(),
                            self,
                            (c0, channels_in),
                            weights.as_ptr(),
                            bias,
                            out.add(ob * CHANNELS * plane),
                            plane,
                            channels,
                        )
                    };
                }
            }
        }
    }
}

/// Where one register tile's vectors read and write: offsets into the band and into an output plane, and
/// which lanes are stored (zero for vectors past the band's end).
struct Tile {
    input: [usize; VECTORS],
    output: [usize; VECTORS],
    masks: [u16; VECTORS],
}

impl Tile {
    /// # Safety
    /// The CPU has AVX-512F; `rows` holds every element the tile loads and `out` every element it stores
    /// (see [`Band::run`]).
    #[allow(unsafe_code, clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn run(
        &self,
        rows: *const f32,
        band: &Band,
        (c0, count): (usize, usize),
        weights: *const f32,
        bias: &[f32; CHANNELS],
        out: *mut f32,
        plane: usize,
        channels: usize,
    ) {
        let mut acc: [[__m512; VECTORS]; CHANNELS] = [[_mm512_setzero_ps(); VECTORS]; CHANNELS];
        if c0 == 0 {
            for (acc, bias) in acc.iter_mut().zip(bias) {
                *acc = [_mm512_set1_ps(*bias); VECTORS];
            }
        } else {
            for (o, acc) in acc.iter_mut().enumerate().take(channels) {
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc = unsafe { _mm512_maskz_loadu_ps(self.masks[v], out.add(o * plane + self.output[v])) };
                }
            }
        }
        for c in c0..c0 + count {
            for i in 0..KERNEL {
                // SAFETY (all the `add`s and loads below): see the function's contract.
                let row = unsafe { rows.add(i * band.row_stride() + c * band.padded_w) };
                for j in 0..KERNEL {
                    let x: [__m512; VECTORS] =
                        std::array::from_fn(|v| unsafe { _mm512_loadu_ps(row.add(self.input[v] + j)) });
                    let w = unsafe { weights.add((c * TAPS + i * KERNEL + j) * CHANNELS) };
                    for (o, acc) in acc.iter_mut().enumerate() {
                        let w = _mm512_set1_ps(unsafe { *w.add(o) });
                        for (acc, x) in acc.iter_mut().zip(&x) {
                            *acc = _mm512_fmadd_ps(w, *x, *acc);
                        }
                    }
                }
            }
        }
        for (o, acc) in acc.iter().enumerate().take(channels) {
            for (v, acc) in acc.iter().enumerate() {
                unsafe { _mm512_mask_storeu_ps(out.add(o * plane + self.output[v]), self.masks[v], *acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct kernel against the GEMM path over the shapes that stress its edges: a last vector only part
    /// full, channel counts that leave a partial output block and a partial input chunk, every padding SDXL
    /// could use, several bands and batch items, bias or none.
    #[test]
    fn equals_the_gemm_convolution() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512 on this CPU: the direct kernel never runs here");
            return;
        }
        // A partial last band of rows, a row of one pixel.
        let cases = [crate::conv::testing::EDGE_CASES, &[(1, 3, 37, 40, 5, 1), (1, 1, 1, 100, 2, 1)]].concat();
        crate::conv::testing::equals_the_gemms(&cases, |input, weight, bias, shape, out| {
            assert!(applies(&shape), "{shape:?} does not reach the direct kernel");
            convolve(input, weight, bias, shape, out);
        });
    }

    #[test]
    fn narrow_planes_and_other_kernels_stay_with_the_gemms() {
        let shape = ConvShape { batch: 1, in_c: 8, height: 64, width: 16, out_c: 8, kernel: 3, stride: 1, padding: 1 };
        assert!(!applies(&shape));
        assert!(!applies(&ConvShape { width: 64, stride: 2, ..shape }));
        assert!(!applies(&ConvShape { width: 64, kernel: 1, padding: 0, ..shape }));
    }
}
