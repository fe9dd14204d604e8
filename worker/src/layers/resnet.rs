//! diffusers' `ResnetBlock2D` as SDXL's UNet and VAE use it (output scale 1, no up/down sampling inside), on
//! our convolution and fused norm.

use candle_core::{D, Module, Tensor};
use candle_nn::VarBuilder;

use super::{Conv2d, GroupNorm, Linear};

#[derive(Debug, Clone)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    /// The sum is divided by this (diffusers' `output_scale_factor`; 1 everywhere in SDXL).
    output_scale: f64,
}

impl ResnetBlock {
    /// `temb_channels`: the UNet's time embedding width; `None` in the VAE, which has none.
    pub fn new(
        vb: VarBuilder,
        in_c: usize,
        out_c: usize,
        groups: usize,
        eps: f64,
        temb_channels: Option<usize>,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            norm1: GroupNorm::new(vb.pp("norm1"), groups, in_c, eps)?,
            conv1: Conv2d::new(vb.pp("conv1"), in_c, out_c, 3, 1, 1)?,
            time_emb_proj: temb_channels.map(|t| Linear::new(vb.pp("time_emb_proj"), t, out_c)).transpose()?,
            norm2: GroupNorm::new(vb.pp("norm2"), groups, out_c, eps)?,
            conv2: Conv2d::new(vb.pp("conv2"), out_c, out_c, 3, 1, 1)?,
            conv_shortcut: (in_c != out_c)
                .then(|| Conv2d::new(vb.pp("conv_shortcut"), in_c, out_c, 1, 1, 0))
                .transpose()?,
            output_scale: 1.0,
        })
    }

    pub fn with_output_scale(self, output_scale: f64) -> Self {
        Self { output_scale, ..self }
    }

    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let mut hidden = self.conv1.forward(&self.norm1.forward_silu(xs)?)?;
        if let (Some(temb), Some(proj)) = (temb, &self.time_emb_proj) {
            let temb = proj.forward(&candle_nn::ops::silu(temb)?)?.unsqueeze(D::Minus1)?.unsqueeze(D::Minus1)?;
            hidden = hidden.broadcast_add(&temb)?;
        }
        let hidden = self.conv2.forward(&self.norm2.forward_silu(&hidden)?)?;
        let sum = match &self.conv_shortcut {
            Some(shortcut) => (shortcut.forward(xs)? + hidden)?,
            None => (xs + hidden)?,
        };
        if self.output_scale == 1.0 { Ok(sum) } else { sum / self.output_scale }
    }
}
