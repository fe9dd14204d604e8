//! The UNet's down, mid and up blocks, each a run of resnets with optional transformers, as diffusers lays them
//! out (`resnets.N`, `attentions.N`, `downsamplers.0.conv`, `upsamplers.0.conv`).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::transformer::{Transformer2D, Transformer2DConfig};
use crate::attention::Slicing;
use crate::config::BlockAttention;
use crate::layers::{Conv2d, ResnetBlock};

/// What every block shares: the norm settings, the time embedding width and the attention settings.
#[derive(Debug, Clone, Copy)]
pub struct BlockSettings {
    pub groups: usize,
    pub eps: f64,
    pub temb_channels: usize,
    pub context_dim: usize,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

impl BlockSettings {
    fn resnet(
        &self,
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        scale: f64,
    ) -> candle_core::Result<ResnetBlock> {
        let block = ResnetBlock::new(vb, in_channels, out_channels, self.groups, self.eps, Some(self.temb_channels))?;
        Ok(block.with_output_scale(scale))
    }

    fn transformer(
        &self,
        vb: VarBuilder,
        channels: usize,
        heads: usize,
        depth: usize,
    ) -> candle_core::Result<Transformer2D> {
        Transformer2D::new(
            vb,
            Transformer2DConfig {
                channels,
                heads,
                depth,
                context_dim: self.context_dim,
                groups: self.groups,
                linear_projection: self.linear_projection,
                upcast_attention: self.upcast_attention,
            },
        )
    }

    fn transformers(
        &self,
        vb: &VarBuilder,
        channels: usize,
        attention: Option<&BlockAttention>,
    ) -> candle_core::Result<Vec<Option<Transformer2D>>> {
        let Some(attention) = attention else {
            return Ok(Vec::new());
        };
        attention
            .depths
            .iter()
            .enumerate()
            .map(|(i, &depth)| {
                // A depth of 0 (SSD-1B prunes some) means the layer has no transformer at all.
                (depth > 0)
                    .then(|| self.transformer(vb.pp("attentions").pp(i.to_string()), channels, attention.heads, depth))
                    .transpose()
            })
            .collect()
    }
}

fn conv3x3(vb: VarBuilder, in_c: usize, out_c: usize, stride: usize, padding: usize) -> candle_core::Result<Conv2d> {
    Conv2d::new(vb, in_c, out_c, 3, stride, padding)
}

#[derive(Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<Option<Transformer2D>>,
    downsample: Option<(Conv2d, usize)>,
}

impl DownBlock {
    pub fn new(
        vb: VarBuilder,
        settings: &BlockSettings,
        in_channels: usize,
        out_channels: usize,
        layers: usize,
        attention: Option<&BlockAttention>,
        downsample_padding: Option<usize>,
    ) -> candle_core::Result<Self> {
        let resnets = (0..layers)
            .map(|i| {
                let in_c = if i == 0 { in_channels } else { out_channels };
                settings.resnet(vb.pp("resnets").pp(i.to_string()), in_c, out_channels, 1.0)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let attentions = settings.transformers(&vb, out_channels, attention)?;
        let downsample = downsample_padding
            .map(|padding| {
                conv3x3(vb.pp("downsamplers.0.conv"), out_channels, out_channels, 2, padding).map(|c| (c, padding))
            })
            .transpose()?;
        Ok(Self { resnets, attentions, downsample })
    }

    /// Returns the block's output and every intermediate state the up path will concatenate.
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        slicing: Slicing,
    ) -> candle_core::Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(Some(attention)) = self.attentions.get(i) {
                xs = attention.forward(&xs, context, slicing)?;
            }
            states.push(xs.clone());
        }
        if let Some((conv, padding)) = &self.downsample {
            // With no padding diffusers pads right and bottom by one before the strided conv.
            let input = if *padding == 0 { xs.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)? } else { xs };
            xs = conv.forward(&input)?;
            states.push(xs.clone());
        }
        Ok((xs, states))
    }
}

#[derive(Debug)]
pub struct MidBlock {
    first: ResnetBlock,
    layers: Vec<(Transformer2D, ResnetBlock)>,
}

impl MidBlock {
    pub fn new(
        vb: VarBuilder,
        settings: &BlockSettings,
        channels: usize,
        heads: usize,
        depth: usize,
        scale: f64,
    ) -> candle_core::Result<Self> {
        let first = settings.resnet(vb.pp("resnets.0"), channels, channels, scale)?;
        let layers = vec![(
            settings.transformer(vb.pp("attentions.0"), channels, heads, depth)?,
            settings.resnet(vb.pp("resnets.1"), channels, channels, scale)?,
        )];
        Ok(Self { first, layers })
    }

    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        slicing: Slicing,
    ) -> candle_core::Result<Tensor> {
        let mut xs = self.first.forward(xs, Some(temb))?;
        for (attention, resnet) in &self.layers {
            xs = attention.forward(&xs, context, slicing)?;
            xs = resnet.forward(&xs, Some(temb))?;
        }
        Ok(xs)
    }
}

#[derive(Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<Option<Transformer2D>>,
    upsample: Option<Conv2d>,
}

/// The channel widths an up block is wired with.
#[derive(Debug, Clone, Copy)]
pub struct UpChannels {
    /// Width of the skip state of the block's last layer (the next-shallower level's width).
    pub skip_in: usize,
    /// Width of what arrives from the deeper level.
    pub previous: usize,
    pub out: usize,
}

impl UpBlock {
    pub fn new(
        vb: VarBuilder,
        settings: &BlockSettings,
        channels: UpChannels,
        layers: usize,
        attention: Option<&BlockAttention>,
        upsample: bool,
    ) -> candle_core::Result<Self> {
        let resnets = (0..layers)
            .map(|i| {
                let skip = if i == layers - 1 { channels.skip_in } else { channels.out };
                let input = if i == 0 { channels.previous } else { channels.out };
                settings.resnet(vb.pp("resnets").pp(i.to_string()), input + skip, channels.out, 1.0)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let attentions = settings.transformers(&vb, channels.out, attention)?;
        let upsample =
            upsample.then(|| conv3x3(vb.pp("upsamplers.0.conv"), channels.out, channels.out, 1, 1)).transpose()?;
        Ok(Self { resnets, attentions, upsample })
    }

    pub fn layers(&self) -> usize {
        self.resnets.len()
    }

    /// `skips` are this block's skip states in the order the down path produced them.
    pub fn forward(
        &self,
        xs: &Tensor,
        mut skips: Vec<Tensor>,
        temb: &Tensor,
        context: &Tensor,
        upsample_size: Option<(usize, usize)>,
        slicing: Slicing,
    ) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip state per resnet");
            xs = Tensor::cat(&[&xs, &skip], 1)?;
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(Some(attention)) = self.attentions.get(i) {
                xs = attention.forward(&xs, context, slicing)?;
            }
        }
        if let Some(conv) = &self.upsample {
            let (_, _, h, w) = xs.dims4()?;
            let (h, w) = upsample_size.unwrap_or((2 * h, 2 * w));
            xs = conv.forward(&xs.upsample_nearest2d(h, w)?)?;
        }
        Ok(xs)
    }
}
