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
        Ok(Self { model, config: config.clone(), dtype })
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
            let one = unscaled.narrow(0, i, 1)?.to_dtype(self.dtype)?;
            let decoded = self.model.decode(&one)?.to_dtype(DType::F32)?;
            images.push(((decoded / 2.0)? + 0.5)?.clamp(0f32, 1f32)?);
        }
        Ok(Tensor::cat(&images, 0)?)
    }
}
