//! Decoding a large latent in overlapping tiles, as the reference's `enable_vae_tiling` does: tiles overlap by a
//! quarter, each blends into the already-blended tile above and to its left, and keeps its top-left part.

use candle_core::Tensor;

use crate::error::PipelineError;

/// Overlap between neighbouring tiles, as a share of the tile, as the reference uses.
pub const OVERLAP: f64 = 0.25;

/// The tile grid for a latent of `latent` positions along one side: each tile's start and length in latents.
pub fn spans(latent: usize, latent_tile: usize) -> Vec<(usize, usize)> {
    let stride = ((latent_tile as f64 * (1.0 - OVERLAP)) as usize).max(1);
    (0..latent).step_by(stride).map(|start| (start, latent_tile.min(latent - start))).collect()
}

/// Decodes `latents` (one image) tile by tile with `decode` and blends the tiles into one image of `tile`-pixel
/// tiles, `factor` pixels per latent.
pub fn decode_tiled(
    latents: &Tensor,
    tile: usize,
    factor: usize,
    decode: impl Fn(&Tensor) -> Result<Tensor, PipelineError>,
) -> Result<Tensor, PipelineError> {
    let (_, _, h, w) = latents.dims4()?;
    let latent_tile = tile / factor;
    let blend = (tile as f64 * OVERLAP) as usize;
    let keep = tile - blend;
    let (rows, columns) = (spans(h, latent_tile), spans(w, latent_tile));
    let mut grid: Vec<Vec<Tensor>> = Vec::with_capacity(rows.len());
    for &(i, th) in &rows {
        let mut row = Vec::with_capacity(columns.len());
        for &(j, tw) in &columns {
            row.push(decode(&latents.narrow(2, i, th)?.narrow(3, j, tw)?)?);
        }
        grid.push(row);
    }
    let mut out_rows = Vec::with_capacity(grid.len());
    for i in 0..grid.len() {
        let mut kept = Vec::with_capacity(grid[i].len());
        for j in 0..grid[i].len() {
            let mut current = grid[i][j].clone();
            if i > 0 {
                current = blend_edge(&grid[i - 1][j], &current, blend, 2)?;
            }
            if j > 0 {
                current = blend_edge(&grid[i][j - 1], &current, blend, 3)?;
            }
            grid[i][j] = current.clone();
            let (_, _, th, tw) = current.dims4()?;
            kept.push(current.narrow(2, 0, keep.min(th))?.narrow(3, 0, keep.min(tw))?);
        }
        out_rows.push(Tensor::cat(&kept, 3)?);
    }
    Ok(Tensor::cat(&out_rows, 2)?)
}

/// Fades the first `extent` rows (`dim` 2) or columns (`dim` 3) of `b` in from the last ones of `a`.
fn blend_edge(a: &Tensor, b: &Tensor, extent: usize, dim: usize) -> Result<Tensor, PipelineError> {
    let extent = extent.min(a.dim(dim)?).min(b.dim(dim)?);
    if extent == 0 {
        return Ok(b.clone());
    }
    let weights: Vec<f32> = (0..extent).map(|y| y as f32 / extent as f32).collect();
    let shape = if dim == 2 { (1, 1, extent, 1) } else { (1, 1, 1, extent) };
    let w = Tensor::from_vec(weights, shape, b.device())?;
    let from_a = a.narrow(dim, a.dim(dim)? - extent, extent)?;
    let head = b.narrow(dim, 0, extent)?;
    let blended = (from_a.broadcast_mul(&(1.0 - &w)?)? + head.broadcast_mul(&w)?)?;
    let rest = b.narrow(dim, extent, b.dim(dim)? - extent)?;
    Ok(Tensor::cat(&[&blended, &rest], dim)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn tiles_overlap_by_a_quarter_and_cover_the_latent() {
        assert_eq!(spans(256, 128), vec![(0, 128), (96, 128), (192, 64)]);
        // As the reference: a start every three quarters of a tile, even when the last tile is all overlap.
        assert_eq!(spans(130, 128), vec![(0, 128), (96, 34)]);
        assert_eq!(spans(10, 4), vec![(0, 4), (3, 4), (6, 4), (9, 1)]);
    }

    #[test]
    fn a_constant_image_stays_constant_across_seams() {
        let latents = Tensor::zeros((1, 4, 20, 12), DType::F32, &Device::Cpu).unwrap();
        // A "decoder" that upsamples by 2 and paints everything 0.5: blending must not show the seams.
        let decode = |l: &Tensor| -> Result<Tensor, PipelineError> {
            let (_, _, h, w) = l.dims4()?;
            Ok((Tensor::ones((1, 3, 2 * h, 2 * w), DType::F32, &Device::Cpu)? * 0.5)?)
        };
        let image = decode_tiled(&latents, 16, 2, decode).unwrap();
        assert_eq!(image.dims(), [1, 3, 40, 24]);
        let values = image.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }
}
