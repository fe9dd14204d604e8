//! CLIP text transformers built from their `config.json`: `CLIPTextModel` (SDXL's `text_encoder`) and
//! `CLIPTextModelWithProjection` (`text_encoder_2`), returning what SDXL conditions on.

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::config::ClipTextConfig;
use crate::error::PipelineError;
use crate::layers::Linear;

/// What one encoder contributes to SDXL's conditioning.
#[derive(Debug, Clone)]
pub struct TextEncoding {
    /// Hidden states of the second-to-last layer, `(batch, tokens, hidden)`.
    pub penultimate: Tensor,
    /// The final-layer-normed state at the end token, through `text_projection` when the model has one.
    pub pooled: Option<Tensor>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activation {
    QuickGelu,
    Gelu,
}

impl Activation {
    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            // The reference uses the exact (erf) GELU, not the tanh approximation.
            Activation::Gelu => xs.gelu_erf(),
        }
    }
}

#[derive(Debug)]
struct EncoderLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    activation: Activation,
}

impl EncoderLayer {
    fn new(vb: VarBuilder, config: &ClipTextConfig, activation: Activation) -> candle_core::Result<Self> {
        let h = config.hidden_size;
        let attn = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Self {
            q: Linear::new(attn.pp("q_proj"), h, h)?,
            k: Linear::new(attn.pp("k_proj"), h, h)?,
            v: Linear::new(attn.pp("v_proj"), h, h)?,
            out: Linear::new(attn.pp("out_proj"), h, h)?,
            norm1: candle_nn::layer_norm(h, config.layer_norm_eps, vb.pp("layer_norm1"))?,
            norm2: candle_nn::layer_norm(h, config.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: Linear::new(mlp.pp("fc1"), h, config.intermediate_size)?,
            fc2: Linear::new(mlp.pp("fc2"), config.intermediate_size, h)?,
            heads: config.num_attention_heads,
            activation,
        })
    }

    fn forward(&self, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = xs.dims3()?;
        let d = h / self.heads;
        let normed = self.norm1.forward(xs)?;
        let split = |x: Tensor| x.reshape((b, t, self.heads, d))?.transpose(1, 2)?.contiguous();
        let q = split((self.q.forward(&normed)? * (d as f64).powf(-0.5))?)?;
        let k = split(self.k.forward(&normed)?)?;
        let v = split(self.v.forward(&normed)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let attended = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        let xs = (xs + self.out.forward(&attended)?)?;
        let mlp = self.fc2.forward(&self.activation.apply(&self.fc1.forward(&self.norm2.forward(&xs)?)?)?)?;
        xs + mlp
    }
}

#[derive(Debug)]
pub struct ClipTextEncoder {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
    projection: Option<Linear>,
    legacy_eos: bool,
    eos_token_id: u32,
    device: Device,
    dtype: DType,
}

impl ClipTextEncoder {
    /// `with_projection` asks for `text_projection` (SDXL's second encoder); its absence is then an error.
    pub fn new(vb: VarBuilder, config: &ClipTextConfig, with_projection: bool) -> Result<Self, PipelineError> {
        let activation = match config.hidden_act.as_str() {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            other => return Err(PipelineError::Unsupported(format!("text encoder hidden_act {other:?}"))),
        };
        if config.num_hidden_layers < 2 {
            return Err(PipelineError::Unsupported(
                "text encoder with fewer than 2 layers (SDXL reads the penultimate layer)".into(),
            ));
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(PipelineError::Unsupported(format!(
                "text encoder hidden size {} over {} heads",
                config.hidden_size, config.num_attention_heads
            )));
        }
        let text = vb.pp("text_model");
        let emb = text.pp("embeddings");
        let h = config.hidden_size;
        let token_embedding = candle_nn::embedding(config.vocab_size, h, emb.pp("token_embedding"))?;
        let position_embedding = candle_nn::embedding(config.max_position_embeddings, h, emb.pp("position_embedding"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::new(text.pp("encoder.layers").pp(i.to_string()), config, activation))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = candle_nn::layer_norm(h, config.layer_norm_eps, text.pp("final_layer_norm"))?;
        let projection = if with_projection {
            let dim = config
                .projection_dim
                .ok_or_else(|| PipelineError::Unsupported("text_encoder_2 config has no projection_dim".into()))?;
            Some(Linear::no_bias(vb.pp("text_projection"), h, dim)?)
        } else {
            None
        };
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_norm,
            projection,
            // transformers keeps an old behaviour for configs still carrying eos_token_id 2: the end token is
            // found as the largest id in the row (CLIP's end token is its last id).
            legacy_eos: config.eos_token_id == 2,
            eos_token_id: config.eos_token_id,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn encode(&self, ids: &[Vec<u32>]) -> Result<TextEncoding, PipelineError> {
        let b = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        if b == 0 || t == 0 || ids.iter().any(|row| row.len() != t) {
            return Err(PipelineError::InvalidRequest("text encoder needs rows of equal, non-zero length".into()));
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, (b, t), &self.device)?;
        let positions = Tensor::arange(0u32, t as u32, &self.device)?;
        let mut xs =
            self.token_embedding.forward(&input)?.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = causal_mask(t, self.dtype, &self.device)?;
        let needs_last = self.projection.is_some();
        let keep = if needs_last { self.layers.len() } else { self.layers.len() - 1 };
        let mut penultimate = None;
        for (i, layer) in self.layers.iter().take(keep).enumerate() {
            xs = layer.forward(&xs, &mask)?;
            if i + 2 == self.layers.len() {
                penultimate = Some(xs.clone());
            }
        }
        let penultimate = penultimate.expect("at least two layers were checked at load");
        let pooled = match &self.projection {
            None => None,
            Some(projection) => {
                let last = self.final_norm.forward(&xs)?;
                let rows = ids
                    .iter()
                    .enumerate()
                    .map(|(row, tokens)| last.i((row, self.end_position(tokens)))?.unsqueeze(0))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Some(projection.forward(&Tensor::cat(&rows, 0)?)?)
            }
        };
        Ok(TextEncoding { penultimate, pooled })
    }

    fn end_position(&self, tokens: &[u32]) -> usize {
        if self.legacy_eos {
            // First occurrence of the maximum, as torch.argmax.
            let max = tokens.iter().copied().max().unwrap_or(0);
            tokens.iter().position(|&id| id == max).unwrap_or(0)
        } else {
            tokens.iter().position(|&id| id == self.eos_token_id).unwrap_or(0)
        }
    }
}

fn causal_mask(t: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> =
        (0..t).flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (t, t), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_causal_mask_hides_later_tokens_only() {
        let m = causal_mask(3, DType::F32, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(m[0][0], 0.0);
        assert!(m[0][1].is_infinite());
        assert_eq!(m[2][1], 0.0);
    }
}
