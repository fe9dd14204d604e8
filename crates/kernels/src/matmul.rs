//! Row-major f32 matrix products, threaded by splitting the output between rayon's threads and running one
//! single-threaded gemm call per part. gemm 0.19's own threading (`Parallelism::Rayon`) scales badly on few
//! cores: on a 2-vCPU Xeon it reached 48–207 GFLOP/s at SDXL's dense-layer shapes where the split reaches
//! 109–257, and at 77 rows (the text encoders) two threads were slower than one.

use rayon::prelude::*;

/// Below this many multiply-adds a product runs on the calling thread: handing it out costs more.
const SERIAL_BELOW: usize = 1 << 16;

/// Columns per part are a multiple of this (one AVX-512 register of f32), so parts start on whole vectors.
const COLUMN_ALIGN: usize = 16;

/// `input (rows × in_dim) · weight_t (in_dim × out_dim) + bias`, the dense layer with its weight stored
/// transposed.
pub fn linear(input: &[f32], weight_t: &[f32], bias: Option<&[f32]>, rows: usize, in_dim: usize) -> Vec<f32> {
    assert!(in_dim > 0 && weight_t.len().is_multiple_of(in_dim), "weight is not in_dim × out_dim");
    let out_dim = weight_t.len() / in_dim;
    assert!(bias.is_none_or(|b| b.len() == out_dim), "bias length is not out_dim");
    let mut out = match bias {
        Some(bias) => bias.repeat(rows),
        None => vec![0f32; rows * out_dim],
    };
    matmul_into(&mut out, out_dim, input, in_dim, weight_t, out_dim, (rows, out_dim, in_dim), bias.is_some());
    out
}

/// `dst[m × n] (+)= lhs[m × k] · rhs[k × n]`: `lhs` rows `lhs_stride` apart, `rhs` rows `rhs_stride` apart,
/// `dst` rows `dst_stride` apart; adds to what `dst` holds when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: &[f32],
    lhs_stride: usize,
    rhs: &[f32],
    rhs_stride: usize,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_stride >= n && lhs_stride >= k && rhs_stride >= n, "strides shorter than rows");
    assert!(dst.len() >= (m - 1) * dst_stride + n, "matmul destination too short");
    assert!(k == 0 || lhs.len() >= (m - 1) * lhs_stride + k, "matmul lhs too short");
    assert!(k == 0 || rhs.len() >= (k - 1) * rhs_stride + n, "matmul rhs too short");
    let threads = rayon::current_num_threads();
    if threads == 1 || m * n * k < SERIAL_BELOW {
        // SAFETY: `dst` is held mutably here and the asserts above keep the product inside it.
        #[allow(unsafe_code)]
        return unsafe {
            gemm_serial(
                dst.as_mut_ptr(),
                dst_stride,
                lhs,
                lhs_stride,
                Operand::rows(rhs, rhs_stride),
                (m, n, k),
                accumulate,
                1.0,
            )
        };
    }
    if n >= 2 * COLUMN_ALIGN * threads {
        // Columns: every part reads all of `lhs` (small next to the weight) and its own block of `rhs`.
        let width = n.div_ceil(threads).next_multiple_of(COLUMN_ALIGN);
        let dst = SharedDst(dst.as_mut_ptr());
        (0..n.div_ceil(width)).into_par_iter().for_each(|part| {
            let first = part * width;
            let cols = width.min(n - first);
            let dst = dst.at(first);
            // SAFETY: parts write disjoint column ranges `first..first + cols` of rows the asserts above keep
            // inside `dst`, which stays mutably borrowed until every part has finished.
            #[allow(unsafe_code)]
            unsafe {
                gemm_serial(
                    dst,
                    dst_stride,
                    lhs,
                    lhs_stride,
                    Operand::rows(&rhs[first..], rhs_stride),
                    (m, cols, k),
                    accumulate,
                    1.0,
                )
            };
        });
    } else {
        let rows = m.div_ceil(threads);
        // Only the rows written: a caller's destination may run on past them (a convolution's tile).
        dst[..(m - 1) * dst_stride + n].par_chunks_mut(rows * dst_stride).enumerate().for_each(|(part, dst)| {
            let first = part * rows;
            let count = rows.min(m - first);
            // SAFETY: `dst` is this part's own rows, held mutably; `count` rows of `n` at `dst_stride` fit in it.
            #[allow(unsafe_code)]
            unsafe {
                gemm_serial(
                    dst.as_mut_ptr(),
                    dst_stride,
                    &lhs[first * lhs_stride..],
                    lhs_stride,
                    Operand::rows(rhs, rhs_stride),
                    (count, n, k),
                    accumulate,
                    1.0,
                )
            };
        });
    }
}

/// The destination pointer handed to the parallel parts of one output (each writes only its own elements).
#[derive(Clone, Copy)]
pub(crate) struct SharedDst(pub(crate) *mut f32);

impl SharedDst {
    /// The element `offset` past the start (a method, so closures capture the whole `Send` wrapper).
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}
// SAFETY: each part writes only its own elements (its columns in `matmul_into`, its rows in the direct
// convolution).
#[allow(unsafe_code)]
unsafe impl Send for SharedDst {}
#[allow(unsafe_code)]
unsafe impl Sync for SharedDst {}

/// A right-hand operand: element `(row, col)` at `data[row · row_stride + col · col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Operand<'a> {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a [f32], row_stride: usize) -> Self {
        Self { data, row_stride, col_stride: 1 }
    }
}

/// One gemm call on this thread: `dst (+)= scale · lhs · rhs`, `dst` rows `dst_stride` apart, `lhs` rows
/// `lhs_stride` apart, `m × n × k`.
///
/// # Safety
/// `m` rows of `n` elements, `dst_stride` apart from `dst`, must lie inside one allocation the caller may write
/// and that nothing else reads or writes during the call. The operands' extents are checked here.
#[allow(clippy::too_many_arguments)]
#[allow(unsafe_code)]
pub(crate) unsafe fn gemm_serial(
    dst: *mut f32,
    dst_stride: usize,
    lhs: &[f32],
    lhs_stride: usize,
    rhs: Operand,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, row_stride: usize, cols: usize, col_stride: usize| {
        (rows - 1) * row_stride + (cols - 1) * col_stride
    };
    assert!(k == 0 || lhs.len() > last(m, lhs_stride, k, 1), "matmul lhs too short");
    assert!(k == 0 || rhs.data.len() > last(k, rhs.row_stride, n, rhs.col_stride), "matmul rhs too short");
    // SAFETY: the operands' extents were checked above; the destination is the caller's promise (see `# Safety`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_stride as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            lhs_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize)) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7 + seed * 13) % 23) as f32 / 11.0 - 1.0).collect()
    }

    /// Serial, split by columns (with a short last part) and split by rows all give the plain product.
    #[test]
    fn every_split_gives_the_plain_product() {
        // Three threads whatever the machine, so both splits and the short last part are taken.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (m, n, k) in [(3, 5, 4), (77, 1000, 33), (200, 40, 50), (1, 300, 300), (64, 64, 17), (301, 7, 90)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let bias = values(n, 3);
            let ours = pool.install(|| linear(&a, &b, Some(&bias), m, k));
            let plain = naive(&a, &b, (m, n, k));
            for (i, (o, p)) in ours.iter().zip(&plain).enumerate() {
                let expected = p + bias[i % n];
                assert!(
                    (o - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                    "{m}×{n}×{k} at {i}: {o} vs {expected}"
                );
            }
        }
    }

    /// A destination longer than the rows written (a convolution's tile inside its output plane) keeps the
    /// rest, whichever way the product is split.
    #[test]
    fn rows_past_the_product_are_left_alone() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (m, n, k) in [(40, 8, 300), (4, 200, 300)] {
            let (a, b) = (values(m * k, 4), values(k * n, 5));
            let stride = n + 3;
            let mut dst = vec![7f32; (m + 2) * stride];
            pool.install(|| matmul_into(&mut dst, stride, &a, k, &b, n, (m, n, k), false));
            let plain = naive(&a, &b, (m, n, k));
            for (i, v) in dst.iter().enumerate() {
                let (row, col) = (i / stride, i % stride);
                let expected = if row < m && col < n { plain[row * n + col] } else { 7.0 };
                assert!((v - expected).abs() <= 1e-4 * expected.abs().max(1.0), "{m}×{n}×{k} at {row},{col}");
            }
        }
    }
}
