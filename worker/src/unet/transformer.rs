//! diffusers' `Transformer2DModel` as SDXL uses it: group norm, projection in, a stack of self-attention,
//! cross-attention and GEGLU feed-forward blocks, projection out, residual.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Conv2d, GroupNorm, LayerNorm, Linear, VarBuilder};

use crate::attention::{Slicing, attend};

/// Multi-head attention (`to_q`, `to_k`, `to_v`, `to_out.0`).
#[derive(Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    upcast: bool,
}

impl Attention {
    pub fn new(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        upcast: bool,
    ) -> candle_core::Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: candle_nn::linear_no_bias(query_dim, inner, vb.pp("to_q"))?,
            to_k: candle_nn::linear_no_bias(context_dim, inner, vb.pp("to_k"))?,
            to_v: candle_nn::linear_no_bias(context_dim, inner, vb.pp("to_v"))?,
            to_out: candle_nn::linear(inner, query_dim, vb.pp("to_out.0"))?,
            heads,
            upcast,
        })
    }

    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>, slicing: Slicing) -> candle_core::Result<Tensor> {
        let context = context.unwrap_or(xs);
        let (b, n, _) = xs.dims3()?;
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        let inner = q.dim(D::Minus1)?;
        let d = inner / self.heads;
        let split = |x: Tensor| -> candle_core::Result<Tensor> {
            let m = x.dim(1)?;
            x.reshape((b, m, self.heads, d))?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (split(q)?, split(k)?, split(v)?);
        let scale = (d as f64).powf(-0.5);
        let (q, k) = if self.upcast { (q.to_dtype(DType::F32)?, k.to_dtype(DType::F32)?) } else { (q, k) };
        let out = attend(&q, &k, &v, scale, slicing)?.transpose(1, 2)?.reshape((b, n, inner))?;
        self.to_out.forward(&out)
    }
}

/// GEGLU feed-forward (`net.0.proj`, `net.2`) with the exact GELU the reference uses.
#[derive(Debug)]
struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    fn new(vb: VarBuilder, dim: usize) -> candle_core::Result<Self> {
        let inner = dim * 4;
        Ok(Self {
            proj: candle_nn::linear(dim, inner * 2, vb.pp("net.0.proj"))?,
            out: candle_nn::linear(inner, dim, vb.pp("net.2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let projected = self.proj.forward(xs)?;
        let halves = projected.chunk(2, D::Minus1)?;
        self.out.forward(&(&halves[0] * halves[1].gelu_erf()?)?)
    }
}

#[derive(Debug)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    fn new(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize, upcast: bool) -> candle_core::Result<Self> {
        let head_dim = dim / heads;
        Ok(Self {
            norm1: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(vb.pp("attn1"), dim, dim, heads, head_dim, upcast)?,
            norm2: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(vb.pp("attn2"), dim, context_dim, heads, head_dim, upcast)?,
            norm3: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff: FeedForward::new(vb.pp("ff"), dim)?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor, slicing: Slicing) -> candle_core::Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None, slicing)? + xs)?;
        let xs = (self.attn2.forward(&self.norm2.forward(&xs)?, Some(context), slicing)? + xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + xs
    }
}

#[derive(Debug)]
enum Projection {
    Linear(Linear),
    Conv(Conv2d),
}

#[derive(Debug)]
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    pub channels: usize,
    pub heads: usize,
    pub depth: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

impl Transformer2D {
    pub fn new(vb: VarBuilder, config: Transformer2DConfig) -> candle_core::Result<Self> {
        let c = config.channels;
        let norm = candle_nn::group_norm(config.groups, c, 1e-6, vb.pp("norm"))?;
        let projection = |name: &str| -> candle_core::Result<Projection> {
            if config.linear_projection {
                Ok(Projection::Linear(candle_nn::linear(c, c, vb.pp(name))?))
            } else {
                Ok(Projection::Conv(candle_nn::conv2d(c, c, 1, Default::default(), vb.pp(name))?))
            }
        };
        let proj_in = projection("proj_in")?;
        let proj_out = projection("proj_out")?;
        let blocks = (0..config.depth)
            .map(|i| {
                BasicTransformerBlock::new(
                    vb.pp("transformer_blocks").pp(i.to_string()),
                    c,
                    config.context_dim,
                    config.heads,
                    config.upcast_attention,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { norm, proj_in, blocks, proj_out })
    }

    pub fn forward(&self, xs: &Tensor, context: &Tensor, slicing: Slicing) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let residual = xs;
        let normed = self.norm.forward(xs)?;
        let to_tokens = |x: Tensor| x.permute((0, 2, 3, 1))?.reshape((b, h * w, c));
        let mut tokens = match &self.proj_in {
            Projection::Linear(l) => l.forward(&to_tokens(normed)?)?,
            Projection::Conv(conv) => to_tokens(conv.forward(&normed)?)?,
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context, slicing)?;
        }
        let to_map = |x: Tensor| x.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous();
        let out = match &self.proj_out {
            Projection::Linear(l) => to_map(l.forward(&tokens)?)?,
            Projection::Conv(conv) => conv.forward(&to_map(tokens)?)?,
        };
        out + residual
    }
}
