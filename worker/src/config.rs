//! The diffusers `config.json` files of a pipeline folder, read into the shapes the model code builds from.
//!
//! Every field the code does not implement is still read, so that a model needing it is refused with its name
//! instead of being run wrongly.

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::PipelineError;

/// A config value diffusers accepts either once for all blocks or once per block.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock<T> {
    // `Each` first: a list of depths is one depth per block, not one per-layer list for every block.
    Each(Vec<T>),
    One(T),
}

impl<T: Clone> PerBlock<T> {
    pub fn expand(&self, blocks: usize, field: &str) -> Result<Vec<T>, PipelineError> {
        match self {
            PerBlock::One(v) => Ok(vec![v.clone(); blocks]),
            PerBlock::Each(v) if v.len() == blocks => Ok(v.clone()),
            PerBlock::Each(v) => Err(PipelineError::Unsupported(format!(
                "unet config `{field}` has {} entries for {blocks} blocks",
                v.len()
            ))),
        }
    }
}

/// `transformer_layers_per_block`: a depth per block, or (SSD-1B style) a depth per layer of each block.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum LayerDepth {
    Block(usize),
    Layers(Vec<usize>),
}

/// The most UNet or VAE levels the code builds (SDXL has 3 and 4): each level halves the image, so more would
/// only be a config error, and the size arithmetic stays far from overflowing.
pub const MAX_LEVELS: usize = 8;

fn default_true() -> bool {
    true
}
fn default_one() -> f64 {
    1.0
}
fn default_eps() -> f64 {
    1e-5
}
fn default_groups() -> usize {
    32
}
fn default_padding() -> usize {
    1
}
fn default_kernel() -> usize {
    3
}
fn default_silu() -> String {
    "silu".into()
}
fn default_resnet_shift() -> String {
    "default".into()
}
fn default_positional() -> String {
    "positional".into()
}
fn default_attention_type() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_type: Option<String>,
    #[serde(default = "default_layers_per_block")]
    pub layers_per_block: PerBlock<usize>,
    pub attention_head_dim: PerBlock<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default = "default_depth")]
    pub transformer_layers_per_block: PerBlock<LayerDepth>,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<LayerDepth>>,
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "default_padding")]
    pub downsample_padding: usize,
    #[serde(default = "default_one")]
    pub mid_block_scale_factor: f64,
    #[serde(default)]
    pub upcast_attention: Option<bool>,
    #[serde(default = "default_resnet_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "default_positional")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default = "default_silu")]
    pub act_fn: String,
    #[serde(default)]
    pub only_cross_attention: PerBlockBool,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default = "default_kernel")]
    pub conv_in_kernel: usize,
    #[serde(default = "default_kernel")]
    pub conv_out_kernel: usize,
    #[serde(default = "default_attention_type")]
    pub attention_type: String,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn default_layers_per_block() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn default_depth() -> PerBlock<LayerDepth> {
    PerBlock::One(LayerDepth::Block(1))
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(untagged)]
pub enum PerBlockBool {
    #[default]
    Unset,
    One(bool),
    Each(Vec<bool>),
}

impl PerBlockBool {
    fn any(&self) -> bool {
        match self {
            PerBlockBool::Unset => false,
            PerBlockBool::One(b) => *b,
            PerBlockBool::Each(v) => v.iter().any(|b| *b),
        }
    }
}

/// A UNet block as the model code builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetBlock {
    pub out_channels: usize,
    /// Transformer depth for each layer of the block; `None` for a block without attention.
    pub attention: Option<BlockAttention>,
    pub layers: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlockAttention {
    pub heads: usize,
    pub depths: Vec<usize>,
}

/// The SDXL conditioning the UNet expects next to the text: pooled text embedding and size/crop ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextTimeConditioning {
    pub time_embed_dim: usize,
    pub input_dim: usize,
}

impl UNetConfig {
    /// Checks everything the model code does not implement, and resolves the per-block settings.
    pub fn plan(&self) -> Result<UNetPlan, PipelineError> {
        let unsupported = |what: String| Err(PipelineError::Unsupported(format!("unet: {what}")));
        let n = self.block_out_channels.len();
        if n > MAX_LEVELS {
            return unsupported(format!("{n} levels (at most {MAX_LEVELS})"));
        }
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return unsupported(format!(
                "{} down blocks, {} up blocks for {} channel widths",
                self.down_block_types.len(),
                self.up_block_types.len(),
                n
            ));
        }
        if self.resnet_time_scale_shift != "default" {
            return unsupported(format!("resnet_time_scale_shift {:?}", self.resnet_time_scale_shift));
        }
        if self.time_embedding_type != "positional" {
            return unsupported(format!("time_embedding_type {:?}", self.time_embedding_type));
        }
        if self.act_fn != "silu" {
            return unsupported(format!("act_fn {:?}", self.act_fn));
        }
        if self.attention_type != "default" {
            return unsupported(format!("attention_type {:?}", self.attention_type));
        }
        if let Some(class) = &self.class_embed_type {
            return unsupported(format!("class_embed_type {class:?}"));
        }
        if self.encoder_hid_dim.is_some() || self.time_cond_proj_dim.is_some() || self.timestep_post_act.is_some() {
            return unsupported("encoder_hid_dim / time_cond_proj_dim / timestep_post_act".into());
        }
        if self.only_cross_attention.any() || self.dual_cross_attention {
            return unsupported("only_cross_attention / dual_cross_attention".into());
        }
        if self.conv_in_kernel.is_multiple_of(2) || self.conv_out_kernel.is_multiple_of(2) {
            return unsupported("even conv_in/conv_out kernels".into());
        }
        match self.mid_block_type.as_deref() {
            None | Some("UNetMidBlock2DCrossAttn") => {}
            Some(other) => return unsupported(format!("mid_block_type {other:?}")),
        }
        let cross = self.cross_attention_dim.expand(n, "cross_attention_dim")?;
        if cross.windows(2).any(|w| w[0] != w[1]) {
            return unsupported("a different cross_attention_dim per block".into());
        }
        let layers = self.layers_per_block.expand(n, "layers_per_block")?;
        if layers.windows(2).any(|w| w[0] != w[1]) {
            return unsupported("a different layers_per_block per block".into());
        }
        // diffusers' historical naming: `attention_head_dim` holds the number of heads when
        // `num_attention_heads` is absent.
        let heads = match &self.num_attention_heads {
            Some(h) => h.expand(n, "num_attention_heads")?,
            None => self.attention_head_dim.expand(n, "attention_head_dim")?,
        };
        let depth = self.transformer_layers_per_block.expand(n, "transformer_layers_per_block")?;
        let per_layer = |d: &LayerDepth, count: usize| -> Result<Vec<usize>, PipelineError> {
            match d {
                LayerDepth::Block(k) => Ok(vec![*k; count]),
                LayerDepth::Layers(v) if v.len() == count => Ok(v.clone()),
                LayerDepth::Layers(v) => Err(PipelineError::Unsupported(format!(
                    "unet: transformer depths {v:?} for a block of {count} layers"
                ))),
            }
        };
        let mut down = Vec::with_capacity(n);
        for (i, kind) in self.down_block_types.iter().enumerate() {
            let attention = match kind.as_str() {
                "DownBlock2D" => None,
                "CrossAttnDownBlock2D" => {
                    if heads[i] == 0 {
                        return unsupported(format!("block {i} with 0 attention heads"));
                    }
                    if !self.block_out_channels[i].is_multiple_of(heads[i]) {
                        return unsupported(format!("{} channels over {} heads", self.block_out_channels[i], heads[i]));
                    }
                    Some(BlockAttention { heads: heads[i], depths: per_layer(&depth[i], layers[i])? })
                }
                other => return unsupported(format!("down block {other:?}")),
            };
            down.push(UNetBlock { out_channels: self.block_out_channels[i], attention, layers: layers[i] });
        }
        let reversed_heads: Vec<usize> = heads.iter().rev().copied().collect();
        let reversed_channels: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(n);
        for (i, kind) in self.up_block_types.iter().enumerate() {
            let count = layers[n - 1 - i] + 1;
            let attention = match kind.as_str() {
                "UpBlock2D" => None,
                "CrossAttnUpBlock2D" => {
                    if reversed_heads[i] == 0 || !reversed_channels[i].is_multiple_of(reversed_heads[i]) {
                        return unsupported(format!(
                            "up block {i}: {} channels over {} heads",
                            reversed_channels[i], reversed_heads[i]
                        ));
                    }
                    let depths = match &self.reverse_transformer_layers_per_block {
                        Some(rev) => per_layer(
                            rev.get(i).ok_or_else(|| {
                                PipelineError::Unsupported(
                                    "unet: reverse_transformer_layers_per_block too short".into(),
                                )
                            })?,
                            count,
                        )?,
                        None => per_layer(&depth[n - 1 - i], count)?,
                    };
                    Some(BlockAttention { heads: reversed_heads[i], depths })
                }
                other => return unsupported(format!("up block {other:?}")),
            };
            up.push(UNetBlock { out_channels: reversed_channels[i], attention, layers: count });
        }
        let mid_depth = match &depth[n - 1] {
            LayerDepth::Block(k) => *k,
            // diffusers gives the mid block's single layer the first depth of the list.
            LayerDepth::Layers(v) => *v.first().unwrap_or(&1),
        };
        let text_time = match self.addition_embed_type.as_deref() {
            None => None,
            Some("text_time") => match (self.addition_time_embed_dim, self.projection_class_embeddings_input_dim) {
                (Some(time_embed_dim), Some(input_dim)) => Some(TextTimeConditioning { time_embed_dim, input_dim }),
                _ => {
                    return unsupported(
                        "text_time without addition_time_embed_dim or projection_class_embeddings_input_dim".into(),
                    );
                }
            },
            Some(other) => return unsupported(format!("addition_embed_type {other:?}")),
        };
        Ok(UNetPlan { down, up, mid_heads: heads[n - 1], mid_depth, cross_attention_dim: cross[0], text_time })
    }
}

/// The resolved block layout of a UNet.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetPlan {
    pub down: Vec<UNetBlock>,
    pub up: Vec<UNetBlock>,
    pub mid_heads: usize,
    pub mid_depth: usize,
    pub cross_attention_dim: usize,
    pub text_time: Option<TextTimeConditioning>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_eos() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_vae_layers")]
    pub layers_per_block: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default)]
    pub latents_mean: Option<Vec<f64>>,
    #[serde(default)]
    pub latents_std: Option<Vec<f64>>,
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_add_attention: Option<bool>,
    #[serde(default)]
    pub force_upcast: Option<bool>,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn default_vae_layers() -> usize {
    1
}
fn default_scaling() -> f64 {
    0.18215
}

impl VaeConfig {
    /// How many pixels one latent covers along each side.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len().clamp(1, MAX_LEVELS) - 1)
    }

    pub fn check(&self) -> Result<(), PipelineError> {
        let unsupported = |what: String| Err(PipelineError::Unsupported(format!("vae: {what}")));
        if self.block_out_channels.is_empty() {
            return unsupported("no blocks".into());
        }
        if self.block_out_channels.len() > MAX_LEVELS {
            return unsupported(format!("{} levels (at most {MAX_LEVELS})", self.block_out_channels.len()));
        }
        if let Some(kind) = self.up_block_types.iter().find(|k| k.as_str() != "UpDecoderBlock2D") {
            return unsupported(format!("up block {kind:?}"));
        }
        if let Some(kind) = self.down_block_types.iter().find(|k| k.as_str() != "DownEncoderBlock2D") {
            return unsupported(format!("down block {kind:?}"));
        }
        if self.mid_block_add_attention == Some(false) {
            return unsupported("mid_block_add_attention false".into());
        }
        match (&self.latents_mean, &self.latents_std) {
            (Some(m), Some(s)) if m.len() != self.latent_channels || s.len() != self.latent_channels => {
                unsupported("latents_mean/latents_std do not match latent_channels".into())
            }
            _ => Ok(()),
        }
    }
}

/// `model_index.json`: which class fills each part, and the pipeline's own options.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelIndex {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    #[serde(default)]
    pub force_zeros_for_empty_prompt: Option<bool>,
    #[serde(flatten)]
    pub parts: serde_json::Map<String, serde_json::Value>,
}

impl ModelIndex {
    pub fn check(&self) -> Result<(), PipelineError> {
        match self.class_name.as_str() {
            "StableDiffusionXLPipeline" | "StableDiffusionXLImg2ImgPipeline" => Ok(()),
            other => Err(PipelineError::Unsupported(format!("pipeline class {other:?}"))),
        }
    }
}

/// The tokenizer's settings that change its output.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizerConfig {
    #[serde(default = "default_max_length")]
    pub model_max_length: usize,
    #[serde(default)]
    pub pad_token: Option<TokenSpec>,
    #[serde(default)]
    pub do_lower_case: Option<bool>,
}

fn default_max_length() -> usize {
    77
}

/// A special token, written either as its text or as an `AddedToken` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenSpec {
    Text(String),
    Added { content: String },
}

impl TokenSpec {
    pub fn text(&self) -> &str {
        match self {
            TokenSpec::Text(t) => t,
            TokenSpec::Added { content } => content,
        }
    }
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, PipelineError> {
    let bytes = std::fs::read(path).map_err(|e| PipelineError::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| PipelineError::Config { path: path.to_path_buf(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdxl_base() -> UNetConfig {
        serde_json::from_value(serde_json::json!({
            "in_channels": 4, "out_channels": 4,
            "block_out_channels": [320, 640, 1280],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "attention_head_dim": [5, 10, 20],
            "transformer_layers_per_block": [1, 2, 10],
            "cross_attention_dim": 2048,
            "use_linear_projection": true,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
            "layers_per_block": 2,
            "num_attention_heads": null,
            "upcast_attention": null,
            "class_embed_type": null
        }))
        .unwrap()
    }

    #[test]
    fn sdxl_base_plan_reverses_up_blocks_and_reads_heads_from_attention_head_dim() {
        let plan = sdxl_base().plan().unwrap();
        assert_eq!(plan.down[0].attention, None);
        assert_eq!(plan.down[2].attention, Some(BlockAttention { heads: 20, depths: vec![10, 10] }));
        assert_eq!(plan.up[0].out_channels, 1280);
        assert_eq!(plan.up[0].layers, 3);
        assert_eq!(plan.up[0].attention.as_ref().unwrap().depths, vec![10, 10, 10]);
        assert_eq!(plan.up[2].attention, None);
        assert_eq!((plan.mid_heads, plan.mid_depth), (20, 10));
        assert_eq!(plan.text_time, Some(TextTimeConditioning { time_embed_dim: 256, input_dim: 2816 }));
    }

    #[test]
    fn unsupported_settings_are_named() {
        let mut config = sdxl_base();
        config.class_embed_type = Some("timestep".into());
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("class_embed_type"), "{err}");

        let mut config = sdxl_base();
        config.down_block_types[0] = "SimpleCrossAttnDownBlock2D".into();
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("SimpleCrossAttnDownBlock2D"), "{err}");

        let mut config = sdxl_base();
        config.attention_head_dim = PerBlock::Each(vec![5, 10]);
        assert!(config.plan().is_err());
    }

    #[test]
    fn more_levels_than_the_code_builds_are_refused_by_name() {
        let mut config = sdxl_base();
        let n = MAX_LEVELS + 1;
        config.block_out_channels = vec![320; n];
        config.down_block_types = vec!["DownBlock2D".into(); n];
        config.up_block_types = vec!["UpBlock2D".into(); n];
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("9 levels"), "{err}");

        let vae: VaeConfig = serde_json::from_value(serde_json::json!({
            "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": vec![32; 70]
        }))
        .unwrap();
        let err = vae.check().unwrap_err().to_string();
        assert!(err.contains("70 levels"), "{err}");
        assert_eq!(vae.downscale(), 1 << (MAX_LEVELS - 1));
    }

    #[test]
    fn per_layer_depths_are_kept() {
        let mut config = sdxl_base();
        config.transformer_layers_per_block =
            PerBlock::Each(vec![LayerDepth::Block(0), LayerDepth::Layers(vec![2, 2]), LayerDepth::Layers(vec![4, 4])]);
        config.reverse_transformer_layers_per_block =
            Some(vec![LayerDepth::Layers(vec![4, 4, 10]), LayerDepth::Layers(vec![2, 1, 1]), LayerDepth::Block(0)]);
        let plan = config.plan().unwrap();
        assert_eq!(plan.up[0].attention.as_ref().unwrap().depths, vec![4, 4, 10]);
        assert_eq!(plan.up[1].attention.as_ref().unwrap().depths, vec![2, 1, 1]);
        assert_eq!(plan.mid_depth, 4);
        assert_eq!(plan.down[1].attention.as_ref().unwrap().depths, vec![2, 2]);
    }
}
