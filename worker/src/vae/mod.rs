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

/// The dtypes a VAE runs in. For an f16 pipeline whose VAE config asks for it (`force_upcast`, SDXL's: its up
/// blocks overflow in f16), diffusers' `upcast_vae`: f32, but for `post_quant_conv`, the decoder's `conv_in` and
/// its mid block (attention included), which stay in f16, as the reference runs them with PyTorch 2's attention.
/// Encoding (image-to-image) runs wholly in `body`, as the reference upcasts the whole VAE to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaePrecision {
    /// The encoder, the decoder's up blocks and output stage, and the decoded image before its f32 copy.
    pub body: DType,
    /// `post_quant_conv`, the decoder's `conv_in` and mid block: the dtype latents are decoded from.
    pub head: DType,
}

impl VaePrecision {
    /// As the reference pipeline runs a VAE whose weights are loaded for a pipeline of `dtype`.
    pub fn for_pipeline(dtype: DType, config: &VaeConfig) -> Self {
        if dtype == DType::F16 && config.force_upcast.unwrap_or(true) {
            Self { body: DType::F32, head: DType::F16 }
        } else {
            Self::uniform(dtype)
        }
    }

    /// Every part in `dtype`.
    pub fn uniform(dtype: DType) -> Self {
        Self { body: dtype, head: dtype }
    }
}

#[derive(Debug)]
pub struct Vae {
    encoder: Encoder,
    decoder: Decoder,
    config: VaeConfig,
    precision: VaePrecision,
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
    /// The VAE from `vb` (whatever its dtype: each part reads its weights in `precision`'s).
    pub fn new(vb: VarBuilder, config: &VaeConfig, precision: VaePrecision) -> Result<Self, PipelineError> {
        config.check()?;
        if config.block_out_channels.iter().any(|c| c % config.norm_num_groups != 0) {
            return Err(PipelineError::Unsupported(format!(
                "vae: channels {:?} in {} groups",
                config.block_out_channels, config.norm_num_groups
            )));
        }
        let body = vb.clone().set_dtype(precision.body);
        let encoder = Encoder::new(&body, config)?;
        let decoder = Decoder::new(&body, &vb.set_dtype(precision.head), config)?;
        Ok(Self { encoder, decoder, config: config.clone(), precision, tile: None })
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

    pub fn precision(&self) -> VaePrecision {
        self.precision
    }

    /// The decoder alone, as the reference's `vae.decode`: latents already unscaled in, `[-1, 1]` nominally out.
    pub fn decode_unscaled(&self, latents: &Tensor) -> Result<Tensor, PipelineError> {
        self.decode_unscaled_with(latents, DecodePlan { tile: self.tile, attention: Slicing::Full })
    }

    /// [`Vae::decode_unscaled`] spending memory as `plan` says.
    pub fn decode_unscaled_with(&self, latents: &Tensor, plan: DecodePlan) -> Result<Tensor, PipelineError> {
        let (_, _, h, w) = latents.dims4()?;
        let latents = latents.to_dtype(self.precision.head)?;
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
        Ok(self.encoder.forward(&images.to_dtype(self.precision.body)?)?.to_dtype(DType::F32)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(force_upcast: Option<bool>) -> VaeConfig {
        let mut json: serde_json::Value =
            serde_json::from_str(include_str!("../../architectures/sdxl-base/vae/config.json")).unwrap();
        json["force_upcast"] = serde_json::to_value(force_upcast).unwrap();
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_f16_pipeline_decodes_from_an_f16_mid_block_into_f32_up_blocks_where_the_config_asks() {
        let split = VaePrecision { body: DType::F32, head: DType::F16 };
        assert_eq!(VaePrecision::for_pipeline(DType::F16, &config(Some(true))), split);
        // diffusers reads a missing force_upcast as true.
        assert_eq!(VaePrecision::for_pipeline(DType::F16, &config(None)), split);
        assert_eq!(VaePrecision::for_pipeline(DType::F16, &config(Some(false))), VaePrecision::uniform(DType::F16));
        assert_eq!(VaePrecision::for_pipeline(DType::F32, &config(Some(true))), VaePrecision::uniform(DType::F32));
        assert_eq!(VaePrecision::for_pipeline(DType::BF16, &config(Some(true))), VaePrecision::uniform(DType::BF16));
    }
}
