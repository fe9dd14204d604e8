//! The VAE with the latent scaling its own config gives (0.13025 for SDXL, not SD 1.5's 0.18215), decoded whole
//! or in tiles and with its attention sliced, as a memory plan says.

mod decoder;
mod encoder;
pub mod tiling;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::attention::Slicing;
use crate::config::VaeConfig;
use crate::error::PipelineError;
use decoder::Decoder;
use encoder::Encoder;

#[derive(Debug)]
pub struct Vae {
    encoder: Encoder,
    decoder: Decoder,
    config: VaeConfig,
    dtype: DType,
    /// Decode in overlapping tiles of at most this many pixels when the image is larger (`--vae-tiling`).
    tile: Option<usize>,
}

/// How one decode spends memory: tiles of at most `tile` pixels (`None`: the whole image at once), and the
/// mid-block attention's slicing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodePlan {
    pub tile: Option<usize>,
    pub attention: Slicing,
}

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
        let encoder = Encoder::new(&vb, config)?;
        let decoder = Decoder::new(&vb, config)?;
        Ok(Self { encoder, decoder, config: config.clone(), dtype, tile: None })
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

    /// The tile size asked for with [`Vae::set_tiling`], if any.
    pub fn tiling(&self) -> Option<usize> {
        self.tile
    }

    pub fn default_tile(&self) -> usize {
        self.config.sample_size.unwrap_or(1024)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The decoder alone, as the reference's `vae.decode`: latents already unscaled in, `[-1, 1]` nominally out.
    pub fn decode_unscaled(&self, latents: &Tensor) -> Result<Tensor, PipelineError> {
        self.decode_unscaled_with(latents, DecodePlan { tile: self.tile, attention: Slicing::Full })
    }

    /// [`Vae::decode_unscaled`] spending memory as `plan` says.
    pub fn decode_unscaled_with(&self, latents: &Tensor, plan: DecodePlan) -> Result<Tensor, PipelineError> {
        let (_, _, h, w) = latents.dims4()?;
        let latents = latents.to_dtype(self.dtype)?;
        let f = self.downscale();
        let whole = |latents: &Tensor| -> Result<Tensor, PipelineError> {
            Ok(self.decoder.forward(latents, plan.attention)?.to_dtype(DType::F32)?)
        };
        match plan.tile {
            Some(tile) if h * f > tile || w * f > tile => tiling::decode_tiled(&latents, tile, f, whole),
            _ => whole(&latents),
        }
    }

    /// The latent distribution's mean for images in [-1, 1], before the config's scaling (image-to-image).
    pub fn encode_unscaled(&self, images: &Tensor) -> Result<Tensor, PipelineError> {
        Ok(self.encoder.forward(&images.to_dtype(self.dtype)?)?.to_dtype(DType::F32)?)
    }

    pub fn latent_channels(&self) -> usize {
        self.config.latent_channels
    }

    pub fn downscale(&self) -> usize {
        self.config.downscale()
    }

    /// Decodes denoised latents into images with values in [0, 1], `(batch, channels, height, width)`, f32.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, PipelineError> {
        self.decode_with(latents, DecodePlan { tile: self.tile, attention: Slicing::Full })
    }

    /// [`Vae::decode`] spending memory as `plan` says.
    pub fn decode_with(&self, latents: &Tensor, plan: DecodePlan) -> Result<Tensor, PipelineError> {
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
            let decoded = self.decode_unscaled_with(&unscaled.narrow(0, i, 1)?, plan)?;
            images.push(((decoded / 2.0)? + 0.5)?.clamp(0f32, 1f32)?);
        }
        Ok(Tensor::cat(&images, 0)?)
    }
}
