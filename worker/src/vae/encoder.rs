//! The VAE encoder (`encoder.*` and `quant_conv`), laid out as diffusers' `Encoder`: candle's down and mid
//! blocks between our convolutions and norm.
//!
//! Text-to-image never encodes, but a checkpoint is loaded whole (the architecture tests hold every tensor of a
//! file to be used), and image-to-image pipelines share the folder.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    DownEncoderBlock2D, DownEncoderBlock2DConfig, UNetMidBlock2D, UNetMidBlock2DConfig,
};

use super::decoder::{EPS, conv3x3};
use crate::config::VaeConfig;
use crate::layers::{Conv2d, GroupNorm};

#[derive(Debug)]
pub(super) struct Encoder {
    conv_in: Conv2d,
    down: Vec<DownEncoderBlock2D>,
    mid: UNetMidBlock2D,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl Encoder {
    /// `vb` is the VAE's root: the encoder reads `encoder.*` and `quant_conv.*`.
    pub(super) fn new(vb: &VarBuilder, config: &VaeConfig) -> candle_core::Result<Self> {
        let groups = config.norm_num_groups;
        let channels = &config.block_out_channels;
        let deepest = *channels.last().expect("VaeConfig::check refuses a VAE without blocks");
        let moments = 2 * config.latent_channels;
        let quant_conv =
            config.use_quant_conv.then(|| Conv2d::new(vb.pp("quant_conv"), moments, moments, 1, 1, 0)).transpose()?;
        let vb = vb.pp("encoder");
        let down = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let block = DownEncoderBlock2DConfig {
                    num_layers: config.layers_per_block,
                    resnet_eps: EPS,
                    resnet_groups: groups,
                    output_scale_factor: 1.0,
                    add_downsample: i + 1 < channels.len(),
                    downsample_padding: 0,
                };
                let input = if i == 0 { channels[0] } else { channels[i - 1] };
                DownEncoderBlock2D::new(vb.pp("down_blocks").pp(i.to_string()), input, out, block)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mid = UNetMidBlock2DConfig {
            resnet_eps: EPS,
            output_scale_factor: 1.0,
            attn_num_head_channels: None,
            resnet_groups: Some(groups),
            ..Default::default()
        };
        Ok(Self {
            conv_in: conv3x3(vb.pp("conv_in"), config.in_channels, channels[0])?,
            down,
            mid: UNetMidBlock2D::new(vb.pp("mid_block"), deepest, None, mid)?,
            norm_out: GroupNorm::new(vb.pp("conv_norm_out"), groups, deepest, EPS)?,
            conv_out: conv3x3(vb.pp("conv_out"), deepest, moments)?,
            quant_conv,
        })
    }

    /// The latent distribution's mean for an image in [-1, 1] (the reference's `latent_dist.mode()`), before
    /// the config's scaling.
    pub(super) fn forward(&self, image: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = self.conv_in.forward(image)?;
        for block in &self.down {
            xs = block.forward(&xs)?;
        }
        let xs = self.mid.forward(&xs, None)?;
        let xs = self.conv_out.forward(&self.norm_out.forward_silu(&xs)?)?;
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(&xs)?,
            None => xs,
        };
        let latent_channels = moments.dim(1)? / 2;
        moments.narrow(1, 0, latent_channels)
    }
}
