//! Weight layouts made at load: widening a file's f16/bf16/f32 bytes to f32, and transposing a matrix. Both run on
//! every rayon thread and write a fresh buffer once: on the CPU worker's first load most of the time is the kernel
//! zeroing the pages a weight is first written to (about 0.5 s per GiB on one core here), so one write per weight,
//! shared between the cores, is what the load costs; candle's own conversion and transpose each take a second
//! buffer and one core.

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};
use rayon::prelude::*;

/// How a tensor's elements are stored in a safetensors file (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    F16,
    Bf16,
    F32,
}

impl Stored {
    fn width(self) -> usize {
        match self {
            Stored::F16 | Stored::Bf16 => 2,
            Stored::F32 => 4,
        }
    }
}

/// Elements per part: large enough that handing a part to a thread is cheap next to converting it, small
/// enough that a stack buffer of them stays in L1.
const PART: usize = 4096;

/// The elements of `bytes`, stored as `stored`, as f32. `None` when `bytes` is not a whole number of elements.
/// The bytes may sit at any alignment (a memory-mapped file's tensor need not start on an element boundary).
pub fn widen(bytes: &[u8], stored: Stored) -> Option<Vec<f32>> {
    let width = stored.width();
    if !bytes.len().is_multiple_of(width) {
        return None;
    }
    let mut out = vec![0f32; bytes.len() / width];
    out.par_chunks_mut(PART).zip(bytes.par_chunks(PART * width)).for_each(|(dst, src)| {
        let mut bits = [0u16; PART];
        let bits = &mut bits[..dst.len()];
        match stored {
            Stored::F32 => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                    *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                }
            }
            Stored::F16 => {
                for (b, s) in bits.iter_mut().zip(src.chunks_exact(2)) {
                    *b = u16::from_le_bytes([s[0], s[1]]);
                }
                // Through aligned bits, so half's vectorised (F16C) conversion can read them.
                bits.reinterpret_cast::<f16>().convert_to_f32_slice(dst);
            }
            Stored::Bf16 => {
                for (b, s) in bits.iter_mut().zip(src.chunks_exact(2)) {
                    *b = u16::from_le_bytes([s[0], s[1]]);
                }
                bits.reinterpret_cast::<bf16>().convert_to_f32_slice(dst);
            }
        }
    });
    Some(out)
}

/// Rows and columns per block: a 64×64 f32 block (16 KiB read, 16 KiB written) stays in L1 while it is turned.
const BLOCK: usize = 64;

/// `src` (`rows × cols`, row-major) transposed to `cols × rows`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(src.len(), rows * cols, "transpose: {} elements for {rows} × {cols}", src.len());
    let mut out = vec![0f32; src.len()];
    if src.is_empty() {
        return out;
    }
    // Each part is a band of output rows (input columns), so parts write disjoint memory.
    out.par_chunks_mut(BLOCK * rows).enumerate().for_each(|(band, dst)| {
        let first_col = band * BLOCK;
        let band_cols = dst.len() / rows;
        for row_block in (0..rows).step_by(BLOCK) {
            let block_rows = BLOCK.min(rows - row_block);
            for c in 0..band_cols {
                let dst_row = &mut dst[c * rows + row_block..][..block_rows];
                for (r, d) in dst_row.iter_mut().enumerate() {
                    *d = src[(row_block + r) * cols + first_col + c];
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_reads_each_format_at_any_alignment() {
        let values: Vec<f32> = (0..3 * PART + 17).map(|i| (i as f32 - 5000.0) / 8.0).collect();
        for stored in [Stored::F16, Stored::Bf16, Stored::F32] {
            let mut bytes = vec![0u8];
            for &v in &values {
                match stored {
                    Stored::F16 => bytes.extend(f16::from_f32(v).to_le_bytes()),
                    Stored::Bf16 => bytes.extend(bf16::from_f32(v).to_le_bytes()),
                    Stored::F32 => bytes.extend(v.to_le_bytes()),
                }
            }
            let widened = widen(&bytes[1..], stored).unwrap();
            assert_eq!(widened.len(), values.len());
            for (i, (&w, &v)) in widened.iter().zip(&values).enumerate() {
                let expected = match stored {
                    Stored::F16 => f16::from_f32(v).to_f32(),
                    Stored::Bf16 => bf16::from_f32(v).to_f32(),
                    Stored::F32 => v,
                };
                assert_eq!(w, expected, "{stored:?} element {i}");
            }
            assert!(widen(&bytes[1..bytes.len() - 1], stored).is_none(), "{stored:?}: a partial element");
        }
    }

    #[test]
    fn transposes_every_shape_including_partial_blocks() {
        for (rows, cols) in [(1, 1), (3, 200), (200, 3), (130, 70), (64, 128), (0, 5)] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let out = transpose(&src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[c * rows + r], src[r * cols + c], "{rows}×{cols} at {r},{c}");
                }
            }
        }
    }
}
