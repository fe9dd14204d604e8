//! The VAE decoder (`decoder.*` and `post_quant_conv`), laid out as diffusers' `Decoder`.
//!
//! Ours rather than candle's because candle's mid-block attention always holds the full score matrix: one
//! `(tokens × tokens)` f32 matrix, 17 GB for a 2048² SDXL latent and terabytes for a tiny VAE that downsamples
//! less. Here the attention takes a [`Slicing`], and the resnets and up blocks run on our layers.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::VarBuilder;

use crate::attention::{Slicing, attend};
use crate::config::VaeConfig;
use crate::layers::{Conv2d, GroupNorm, Linear, ResnetBlock};
use crate::profile;

/// The VAE's norms use this epsilon throughout, as diffusers builds them.
pub(super) const EPS: f64 = 1e-6;

pub(super) fn conv3x3(vb: VarBuilder, in_c: usize, out_c: usize) -> candle_core::Result<Conv2d> {
    Conv2d::new(vb, in_c, out_c, 3, 1, 1)
}

fn resnet(vb: VarBuilder, in_c: usize, out_c: usize, groups: usize) -> candle_core::Result<ResnetBlock> {
    ResnetBlock::new(vb, in_c, out_c, groups, EPS, None)
}

/// diffusers' `UpDecoderBlock2D`: resnets, then (but for the last block) a nearest 2× upsample and a conv.
#[derive(Debug)]
struct UpBlock {
    resnets: Vec<ResnetBlock>,
    upsample: Option<Conv2d>,
}

impl UpBlock {
    fn new(
        vb: VarBuilder,
        in_c: usize,
        out_c: usize,
        layers: usize,
        groups: usize,
        upsample: bool,
    ) -> candle_core::Result<Self> {
        let resnets = (0..layers)
            .map(|i| resnet(vb.pp("resnets").pp(i.to_string()), if i == 0 { in_c } else { out_c }, out_c, groups))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let upsample = upsample.then(|| conv3x3(vb.pp("upsamplers.0.conv"), out_c, out_c)).transpose()?;
        Ok(Self { resnets, upsample })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for resnet in &self.resnets {
            xs = resnet.forward(&xs, None)?;
        }
        if let Some(conv) = &self.upsample {
            let (_, _, h, w) = xs.dims4()?;
            xs = conv.forward(&xs.upsample_nearest2d(2 * h, 2 * w)?)?;
        }
        Ok(xs)
    }
}

/// A projection saved either as a linear layer or (older checkpoints) as a 1×1 convolution.
fn projection(vb: VarBuilder, channels: usize) -> candle_core::Result<Linear> {
    match vb.get((channels, channels), "weight") {
        Ok(_) => Linear::new(vb, channels, channels),
        Err(_) => {
            let weight = vb.get((channels, channels, 1, 1), "weight")?.reshape((channels, channels))?;
            Linear::from_parts(&weight, Some(vb.get(channels, "bias")?))
        }
    }
}

/// The mid block's single-head self-attention over every latent position, in the mid block's dtype (the
/// softmax in f32 whatever it is).
#[derive(Debug)]
struct SpatialAttention {
    norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialAttention {
    fn new(vb: VarBuilder, channels: usize, groups: usize) -> candle_core::Result<Self> {
        // Current diffusers names first; checkpoints from before the rename use query/key/value/proj_attn.
        let names = if vb.contains_tensor("to_q.weight") {
            ["to_q", "to_k", "to_v", "to_out.0"]
        } else {
            ["query", "key", "value", "proj_attn"]
        };
        Ok(Self {
            norm: GroupNorm::new(vb.pp("group_norm"), groups, channels, EPS)?,
            to_q: projection(vb.pp(names[0]), channels)?,
            to_k: projection(vb.pp(names[1]), channels)?,
            to_v: projection(vb.pp(names[2]), channels)?,
            to_out: projection(vb.pp(names[3]), channels)?,
        })
    }

    fn forward(&self, xs: &Tensor, slicing: Slicing) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let tokens = self.norm.forward(xs)?.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()?;
        // One head: (b, 1, tokens, c).
        let head = |linear: &Linear| -> candle_core::Result<Tensor> { linear.forward(&tokens)?.unsqueeze(1) };
        let (q, k, v) = (head(&self.to_q)?, head(&self.to_k)?, head(&self.to_v)?);
        drop(tokens);
        let attended = attend(&q, &k, &v, (c as f64).powf(-0.5), slicing)?.squeeze(1)?;
        drop((q, k, v));
        let out = self.to_out.forward(&attended)?.transpose(D::Minus1, D::Minus2)?.reshape((b, c, h, w))?;
        out + xs
    }
}

#[derive(Debug)]
pub(super) struct Decoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid_first: ResnetBlock,
    mid_attention: SpatialAttention,
    mid_second: ResnetBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    /// The up blocks' dtype, which the mid block's output is converted to.
    up_dtype: DType,
}

impl Decoder {
    /// `body` and `head` are the VAE's root in two dtypes: `post_quant_conv.*`, `decoder.conv_in.*` and
    /// `decoder.mid_block.*` are read from `head`, the rest of `decoder.*` from `body` (see `VaePrecision`).
    pub(super) fn new(body: &VarBuilder, head: &VarBuilder, config: &VaeConfig) -> candle_core::Result<Self> {
        let groups = config.norm_num_groups;
        let channels = &config.block_out_channels;
        let deepest = *channels.last().expect("VaeConfig::check refuses a VAE without blocks");
        let post_quant_conv = config
            .use_post_quant_conv
            .then(|| {
                let latent = config.latent_channels;
                Conv2d::new(head.pp("post_quant_conv"), latent, latent, 1, 1, 0)
            })
            .transpose()?;
        let (vb, head) = (body.pp("decoder"), head.pp("decoder"));
        let mid = head.pp("mid_block");
        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let up = (0..reversed.len())
            .map(|i| {
                let input = if i == 0 { reversed[0] } else { reversed[i - 1] };
                let layers = config.layers_per_block + 1;
                let upsample = i + 1 < reversed.len();
                UpBlock::new(vb.pp("up_blocks").pp(i.to_string()), input, reversed[i], layers, groups, upsample)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            post_quant_conv,
            conv_in: conv3x3(head.pp("conv_in"), config.latent_channels, deepest)?,
            mid_first: resnet(mid.pp("resnets.0"), deepest, deepest, groups)?,
            mid_attention: SpatialAttention::new(mid.pp("attentions.0"), deepest, groups)?,
            mid_second: resnet(mid.pp("resnets.1"), deepest, deepest, groups)?,
            up,
            norm_out: GroupNorm::new(vb.pp("conv_norm_out"), groups, channels[0], EPS)?,
            conv_out: conv3x3(vb.pp("conv_out"), channels[0], config.out_channels)?,
            up_dtype: vb.dtype(),
        })
    }

    /// Unscaled latents (in the head's dtype) in, the image (nominally in [-1, 1]) out, in the body's dtype.
    pub(super) fn forward(&self, latents: &Tensor, slicing: Slicing) -> candle_core::Result<Tensor> {
        // One binding, reassigned: each stage's input is freed as soon as its output exists (the memory plan
        // counts on it).
        let mut xs = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents)?,
            None => latents.clone(),
        };
        let device = latents.device();
        xs = self.conv_in.forward(&xs)?;
        xs = profile::time(
            "block",
            || "vae.mid".into(),
            device,
            || {
                let xs = self.mid_first.forward(&xs, None)?;
                let xs = self.mid_attention.forward(&xs, slicing)?;
                self.mid_second.forward(&xs, None)?.to_dtype(self.up_dtype)
            },
        )?;
        for (i, block) in self.up.iter().enumerate() {
            xs = profile::time("block", || format!("vae.up.{i}"), device, || block.forward(&xs))?;
        }
        profile::time("block", || "vae.out".into(), device, || self.conv_out.forward(&self.norm_out.forward_silu(&xs)?))
    }
}
