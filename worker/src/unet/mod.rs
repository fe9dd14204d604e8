//! The SDXL UNet (`UNet2DConditionModel`) with what candle's own version leaves out: the `text_time` addition
//! embedding that feeds the pooled text embedding and the size/crop micro-conditioning into the time embedding.

mod blocks;
mod transformer;

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};

use crate::attention::Slicing;
use crate::config::{UNetConfig, UNetPlan};
use crate::error::PipelineError;
use crate::layers::{Conv2d, GroupNorm};
use crate::profile;
use blocks::{BlockSettings, DownBlock, MidBlock, UpBlock, UpChannels};

/// The SDXL extra conditioning of one batch row: pooled text embedding and the six size/crop ids.
#[derive(Debug, Clone)]
pub struct AddedConditioning {
    /// `(batch, pooled_dim)`.
    pub text_embeds: Tensor,
    /// `(batch, 6)`: original height and width, crop top and left, target height and width.
    pub time_ids: Tensor,
}

#[derive(Debug)]
struct TextTimeEmbedding {
    time_proj: Timesteps,
    embedding: TimestepEmbedding,
}

#[derive(Debug)]
pub struct UNet {
    conv_in: Conv2d,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    add: Option<TextTimeEmbedding>,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    center_input: bool,
    dtype: DType,
}

impl UNet {
    pub fn new(vb: VarBuilder, config: &UNetConfig) -> Result<Self, PipelineError> {
        let plan: UNetPlan = config.plan()?;
        let base = config.block_out_channels[0];
        let temb = base * 4;
        let conv_in = Conv2d::new(
            vb.pp("conv_in"),
            config.in_channels,
            base,
            config.conv_in_kernel,
            1,
            (config.conv_in_kernel - 1) / 2,
        )?;
        let time_proj = Timesteps::new(base, config.flip_sin_to_cos, config.freq_shift);
        let time_embedding = TimestepEmbedding::new(vb.pp("time_embedding"), base, temb)?;
        let add = plan
            .text_time
            .map(|tt| -> candle_core::Result<TextTimeEmbedding> {
                Ok(TextTimeEmbedding {
                    time_proj: Timesteps::new(tt.time_embed_dim, config.flip_sin_to_cos, config.freq_shift),
                    embedding: TimestepEmbedding::new(vb.pp("add_embedding"), tt.input_dim, temb)?,
                })
            })
            .transpose()?;
        let settings = BlockSettings {
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            temb_channels: temb,
            context_dim: plan.cross_attention_dim,
            linear_projection: config.use_linear_projection,
            upcast_attention: config.upcast_attention.unwrap_or(false),
        };
        for (i, &c) in config.block_out_channels.iter().enumerate() {
            if c % config.norm_num_groups != 0 {
                return Err(PipelineError::Unsupported(format!(
                    "unet block {i}: {c} channels in {} groups",
                    config.norm_num_groups
                )));
            }
        }
        let n = plan.down.len();
        let mut down = Vec::with_capacity(n);
        let mut in_c = base;
        for (i, block) in plan.down.iter().enumerate() {
            let last = i + 1 == n;
            down.push(DownBlock::new(
                vb.pp("down_blocks").pp(i.to_string()),
                &settings,
                in_c,
                block.out_channels,
                block.layers,
                block.attention.as_ref(),
                (!last).then_some(config.downsample_padding),
            )?);
            in_c = block.out_channels;
        }
        let deepest = *config.block_out_channels.last().expect("plan checked the blocks");
        let mid = MidBlock::new(
            vb.pp("mid_block"),
            &settings,
            deepest,
            plan.mid_heads,
            plan.mid_depth,
            config.mid_block_scale_factor,
        )?;
        let reversed: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(n);
        for (i, block) in plan.up.iter().enumerate() {
            let channels = UpChannels {
                skip_in: reversed[(i + 1).min(n - 1)],
                previous: if i == 0 { reversed[0] } else { reversed[i - 1] },
                out: reversed[i],
            };
            up.push(UpBlock::new(
                vb.pp("up_blocks").pp(i.to_string()),
                &settings,
                channels,
                block.layers,
                block.attention.as_ref(),
                i + 1 < n,
            )?);
        }
        let norm_out = GroupNorm::new(vb.pp("conv_norm_out"), config.norm_num_groups, base, config.norm_eps)?;
        let conv_out = Conv2d::new(
            vb.pp("conv_out"),
            base,
            config.out_channels,
            config.conv_out_kernel,
            1,
            (config.conv_out_kernel - 1) / 2,
        )?;
        Ok(Self {
            conv_in,
            time_proj,
            time_embedding,
            add,
            down,
            mid,
            up,
            norm_out,
            conv_out,
            center_input: config.center_input_sample,
            dtype: vb.dtype(),
        })
    }

    /// How many times the down path halves the latent, so sizes that are not multiples still come back whole.
    fn up_factor(&self) -> usize {
        1 << self.down.len().saturating_sub(1)
    }

    /// Predicts the noise (or v, or x0: whatever the model was trained for) for `sample` at `timestep`, with
    /// attention scores bounded by `slicing`.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<&AddedConditioning>,
        slicing: Slicing,
    ) -> Result<Tensor, PipelineError> {
        let (b, _, h, w) = sample.dims4()?;
        let device = sample.device();
        let sample = if self.center_input { ((sample * 2.0)? - 1.0)? } else { sample.clone() };
        // The sinusoidal projections run in f32 like the reference, then meet the weights' dtype.
        let t = Tensor::full(timestep as f32, b, device)?;
        let mut emb = self.time_embedding.forward(&self.time_proj.forward(&t)?.to_dtype(self.dtype)?)?;
        match (&self.add, added) {
            (Some(add), Some(added)) => {
                let ids = added.time_ids.to_dtype(DType::F32)?.flatten_all()?;
                let time = add.time_proj.forward(&ids)?.reshape((b, ()))?.to_dtype(self.dtype)?;
                let joined = Tensor::cat(&[&added.text_embeds.to_dtype(self.dtype)?, &time], 1)?;
                emb = (emb + add.embedding.forward(&joined)?)?;
            }
            (Some(_), None) => {
                return Err(PipelineError::InvalidRequest(
                    "this UNet needs the pooled text embedding and size conditioning".into(),
                ));
            }
            (None, _) => {}
        }
        let context = context.to_dtype(self.dtype)?;
        let mut xs = self.conv_in.forward(&sample.to_dtype(self.dtype)?)?;
        let mut skips = vec![xs.clone()];
        for (i, block) in self.down.iter().enumerate() {
            let (out, states) = profile::time(
                "block",
                || format!("unet.down.{i}"),
                device,
                || block.forward(&xs, &emb, &context, slicing),
            )?;
            skips.extend(states);
            xs = out;
        }
        xs = profile::time("block", || "unet.mid".into(), device, || self.mid.forward(&xs, &emb, &context, slicing))?;
        let factor = self.up_factor();
        let odd_size = h % factor != 0 || w % factor != 0;
        let last = self.up.len() - 1;
        for (i, block) in self.up.iter().enumerate() {
            let block_skips = skips.split_off(skips.len() - block.layers());
            let upsample_size = if i < last && odd_size {
                let (_, _, sh, sw) = skips.last().expect("skip states remain for deeper levels").dims4()?;
                Some((sh, sw))
            } else {
                None
            };
            xs = profile::time(
                "block",
                || format!("unet.up.{i}"),
                device,
                || block.forward(&xs, block_skips, &emb, &context, upsample_size, slicing),
            )?;
        }
        let xs = self.norm_out.forward_silu(&xs)?;
        Ok(self.conv_out.forward(&xs)?)
    }
}
