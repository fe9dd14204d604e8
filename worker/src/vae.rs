//! The VAE decoder with the latent scaling its own config gives (0.13025 for SDXL, not SD 1.5's 0.18215).

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};

use crate::config::VaeConfig;
use crate::error::PipelineError;

#[derive(Debug)]
pub struct Vae {
    model: AutoEncoderKL,
    config: VaeConfig,
    dtype: DType,
    /// Decode in overlapping tiles of this many pixels when the image is larger, so a large image's
    /// activations never have to fit at once.
    tile: Option<usize>,
}

/// Overlap between neighbouring tiles, as a share of the tile, as the reference uses.
const TILE_OVERLAP: f64 = 0.25;

impl Vae {
    pub fn new(vb: VarBuilder, config: &VaeConfig) -> Result<Self, PipelineError> {
        config.check()?;
        if config.block_out_channels.iter().any(|c| c % config.norm_num_groups != 0) {
            return Err(PipelineError::Unsupported(format!(
                "vae: channels {:?} in {} groups",
                config.block_out_channels, config.norm_num_groups
            )));
        }
        let dtype = vb.dtype();
        let model = AutoEncoderKL::new(
            vb,
            config.in_channels,
            config.out_channels,
            AutoEncoderKLConfig {
                block_out_channels: config.block_out_channels.clone(),
                layers_per_block: config.layers_per_block,
                latent_channels: config.latent_channels,
                norm_num_groups: config.norm_num_groups,
                use_quant_conv: config.use_quant_conv,
                use_post_quant_conv: config.use_post_quant_conv,
            },
        )?;
        Ok(Self { model, config: config.clone(), dtype, tile: None })
    }

    /// Turns tiled decoding on with tiles of `pixels` (the reference's default is the config's `sample_size`,
    /// 1024 for SDXL), or off with `None`.
    pub fn set_tiling(&mut self, pixels: Option<usize>) -> Result<(), PipelineError> {
        if let Some(p) = pixels {
            let f = self.downscale();
            if p < 4 * f || !p.is_multiple_of(f) {
                return Err(PipelineError::InvalidRequest(format!(
                    "a VAE tile of {p} pixels must be a multiple of {f} and at least {}",
                    4 * f
                )));
            }
        }
        self.tile = pixels;
        Ok(())
    }

    pub fn default_tile(&self) -> usize {
        self.config.sample_size.unwrap_or(1024)
    }

    /// The decoder alone, as the reference's `vae.decode`: latents already unscaled in, `[-1, 1]` nominally out.
    pub fn decode_unscaled(&self, latents: &Tensor) -> Result<Tensor, PipelineError> {
        let (_, _, h, w) = latents.dims4()?;
        let latents = latents.to_dtype(self.dtype)?;
        match self.tile {
            Some(tile) if h * self.downscale() > tile || w * self.downscale() > tile => {
                self.decode_tiled(&latents, tile)
            }
            _ => Ok(self.model.decode(&latents)?.to_dtype(DType::F32)?),
        }
    }

    /// The reference's tiled decode: tiles overlap by a quarter, each blends into the already-blended tile
    /// above and to its left, and keeps its top-left part.
    fn decode_tiled(&self, latents: &Tensor, tile: usize) -> Result<Tensor, PipelineError> {
        let (_, _, h, w) = latents.dims4()?;
        let latent_tile = tile / self.downscale();
        let stride = (latent_tile as f64 * (1.0 - TILE_OVERLAP)) as usize;
        let blend = (tile as f64 * TILE_OVERLAP) as usize;
        let keep = tile - blend;
        let mut grid: Vec<Vec<Tensor>> = Vec::new();
        for i in (0..h).step_by(stride) {
            let mut row = Vec::new();
            for j in (0..w).step_by(stride) {
                let part = latents.narrow(2, i, latent_tile.min(h - i))?.narrow(3, j, latent_tile.min(w - j))?;
                row.push(self.model.decode(&part)?.to_dtype(DType::F32)?);
            }
            grid.push(row);
        }
        let mut rows = Vec::with_capacity(grid.len());
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
            rows.push(Tensor::cat(&kept, 3)?);
        }
        Ok(Tensor::cat(&rows, 2)?)
    }

    pub fn latent_channels(&self) -> usize {
        self.config.latent_channels
    }

    pub fn downscale(&self) -> usize {
        self.config.downscale()
    }

    /// Decodes denoised latents into images with values in [0, 1], `(batch, channels, height, width)`, f32.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, PipelineError> {
        let latents = latents.to_dtype(DType::F32)?;
        let unscaled = match (&self.config.latents_mean, &self.config.latents_std) {
            (Some(mean), Some(std)) => {
                let c = mean.len();
                let device = latents.device();
                let to =
                    |v: &[f64]| Tensor::from_vec(v.iter().map(|x| *x as f32).collect::<Vec<_>>(), (1, c, 1, 1), device);
                latents.broadcast_mul(&(to(std)? / self.config.scaling_factor)?)?.broadcast_add(&to(mean)?)?
            }
            _ => (latents / self.config.scaling_factor)?,
        };
        // One image at a time: a batch's activations never have to fit at once (sliced decoding).
        let batch = unscaled.dim(0)?;
        let mut images = Vec::with_capacity(batch);
        for i in 0..batch {
            let decoded = self.decode_unscaled(&unscaled.narrow(0, i, 1)?)?;
            images.push(((decoded / 2.0)? + 0.5)?.clamp(0f32, 1f32)?);
        }
        Ok(Tensor::cat(&images, 0)?)
    }
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
