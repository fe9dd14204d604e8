//! How many bytes of activations one UNet step and one VAE decode hold at their peak, walked layer by layer in
//! the order the model code runs and frees its tensors.
//!
//! candle has no in-place operations: every op allocates its output, and a tensor lives until its last handle
//! is dropped (a shadowed `let` binding lives to the end of its scope). The per-op costs below are read off the
//! code that runs (candle 0.11's group norm, resnet and CUDA conv kernels, our attention and blocks), rounded up
//! where a detail is uncertain, so the estimate is an upper bound rather than a guess from the middle; our CPU
//! convolutions report their own scratch (`gameforge_kernels::scratch_bytes`, checked against a counting
//! allocator).

use gameforge_kernels::{ConvShape, scratch_bytes};

use crate::attention::Slicing;
use crate::config::{UNetBlock, UNetConfig, UNetPlan, VaeConfig};
use crate::error::PipelineError;

/// The text context is always CLIP's 77 tokens.
const CONTEXT_TOKENS: u64 = 77;
/// Bytes per attention score in a slice: two score-sized tensors at most are alive (see `attention.rs`).
const SCORE_BYTES: u64 = 8;
/// f32, the precision of the latents, the scheduler, group-norm internals and the decoded image.
const F32: u64 = 4;

/// How the convolutions of this build and device find their scratch memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernels {
    /// Our CPU kernels (`gameforge_kernels`): the scratch its `scratch_bytes` reports for each shape.
    Cpu,
    /// candle's CUDA kernel without cuDNN: the full im2col matrix (kernel² × the input) plus the product.
    CudaIm2col,
    /// cuDNN: a workspace of the algorithm cuDNN picks, assumed no larger than the input (not measured on the
    /// fleet's cards yet; where the device has no room for it, gameforge-cuda runs the convolution with none).
    Cudnn,
}

/// The bytes per element each part of the model computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    pub unet: u64,
    pub vae: u64,
}

/// The shapes the memory estimate needs, read from the UNet and VAE configs.
#[derive(Debug, Clone)]
pub struct ModelShape {
    unet: UNetPlan,
    unet_in: u64,
    unet_out: u64,
    unet_channels: Vec<u64>,
    conv_in_kernel: u64,
    conv_out_kernel: u64,
    linear_projection: bool,
    upcast_attention: bool,
    vae_channels: Vec<u64>,
    vae_layers: u64,
    latent_channels: u64,
    image_channels: u64,
    downscale: u64,
}

impl ModelShape {
    pub fn new(unet: &UNetConfig, vae: &VaeConfig) -> Result<Self, PipelineError> {
        vae.check()?;
        let widen = |v: &[usize]| v.iter().map(|&c| c as u64).collect::<Vec<_>>();
        Ok(Self {
            unet: unet.plan()?,
            unet_in: unet.in_channels as u64,
            unet_out: unet.out_channels as u64,
            unet_channels: widen(&unet.block_out_channels),
            conv_in_kernel: unet.conv_in_kernel as u64,
            conv_out_kernel: unet.conv_out_kernel as u64,
            linear_projection: unet.use_linear_projection,
            upcast_attention: unet.upcast_attention.unwrap_or(false),
            vae_channels: widen(&vae.block_out_channels),
            vae_layers: vae.layers_per_block as u64,
            latent_channels: vae.latent_channels as u64,
            image_channels: vae.out_channels as u64,
            downscale: vae.downscale() as u64,
        })
    }

    /// Pixels per latent along each side.
    pub fn downscale(&self) -> u64 {
        self.downscale
    }

    /// The largest score matrix any UNet attention computes for this latent and batch, in scores.
    pub fn largest_unet_scores(&self, latent: (u64, u64), batch: u64) -> u64 {
        let mut largest = 0u64;
        let mut size = latent;
        for (i, block) in self.unet.down.iter().enumerate() {
            if let Some(attention) = &block.attention {
                let p = size.0.saturating_mul(size.1);
                largest = largest.max(mul(&[batch, attention.heads as u64, p, p]));
            }
            if i + 1 < self.unet.down.len() {
                size = (size.0.div_ceil(2), size.1.div_ceil(2));
            }
        }
        let p = size.0.saturating_mul(size.1);
        largest.max(mul(&[batch, self.unet.mid_heads as u64, p, p]))
    }
}

/// Products saturate here (4 PiB, beyond any device), so an absurd size estimates as "more than any budget";
/// the walk then adds and scales a few dozen of them at most, which cannot overflow.
const PRODUCT_CAP: u64 = 1 << 52;

fn mul(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |acc, &f| acc.saturating_mul(f)).min(PRODUCT_CAP)
}

/// Live bytes as the walk goes: `held` until released, `peak` the most ever held plus an op's transients.
#[derive(Debug, Default)]
struct Tally {
    held: u64,
    peak: u64,
}

impl Tally {
    fn hold(&mut self, bytes: u64) {
        self.held = self.held.saturating_add(bytes);
        self.peak = self.peak.max(self.held);
    }

    fn release(&mut self, bytes: u64) {
        self.held = self.held.saturating_sub(bytes);
    }

    /// An op that needs `transient` bytes beyond what is held, all freed (or handed over) when it returns.
    fn during(&mut self, transient: u64) {
        self.peak = self.peak.max(self.held.saturating_add(transient));
    }
}

/// The per-op costs for one precision and conv kernel, all in bytes beyond the op's (held) input.
#[derive(Debug, Clone, Copy)]
struct Ops {
    s: u64,
    kernels: ConvKernels,
}

impl Ops {
    fn map(&self, batch: u64, channels: u64, pixels: u64) -> u64 {
        mul(&[batch, channels, pixels, self.s])
    }

    /// candle's group norm: an f32 copy (shared when already f32) and the centred values throughout; their
    /// squares, then the normalised values with the cast back (shared when f32), scale and shift.
    fn group_norm(&self, elements: u64) -> u64 {
        let (f32_copy, cast_back) = if self.s == F32 { (0, 0) } else { (F32, self.s) };
        let centred = F32;
        // The squares (f32) are gone by the last line, which holds the normalised values (f32) and three more.
        let last_line = F32 + cast_back + 2 * self.s;
        mul(&[elements, f32_copy + centred + F32.max(last_line)])
    }

    /// A convolution from a `size_in` (height, width) plane to a `size_out` one (half of it: stride 2); every
    /// kernel is padded to keep the size at stride 1.
    fn conv(&self, batch: u64, c_in: u64, size_in: (u64, u64), c_out: u64, size_out: (u64, u64), kernel: u64) -> u64 {
        let (p_in, p_out) = (size_in.0.saturating_mul(size_in.1), size_out.0.saturating_mul(size_out.1));
        let input = self.map(batch, c_in, p_in);
        let output = self.map(batch, c_out, p_out);
        let scratch = match self.kernels {
            // A size at the products' cap saturates here rather than overflowing in the kernels' sums.
            ConvKernels::Cpu if input.max(output) >= PRODUCT_CAP => PRODUCT_CAP,
            ConvKernels::Cpu => {
                let shape = ConvShape {
                    batch: sat(batch),
                    in_c: sat(c_in),
                    height: sat(size_in.0),
                    width: sat(size_in.1),
                    out_c: sat(c_out),
                    kernel: sat(kernel),
                    stride: if p_out < p_in { 2 } else { 1 },
                    padding: sat(kernel / 2),
                };
                u64::try_from(scratch_bytes(shape)).map_or(PRODUCT_CAP, |bytes| bytes.min(PRODUCT_CAP))
            }
            ConvKernels::Cudnn => input,
            ConvKernels::CudaIm2col => mul(&[batch, p_out, c_in, kernel, kernel, self.s]).saturating_add(output),
        };
        output.saturating_add(scratch)
    }

    /// candle's `ResnetBlock2D`: the shortcut, the first norm's output (a shadowed binding, alive to the end),
    /// the first conv's output and its time-embedding sum, the second norm and conv, the residual sum.
    fn resnet(&self, batch: u64, c_in: u64, c_out: u64, size: (u64, u64), with_time: bool) -> u64 {
        let pixels = size.0.saturating_mul(size.1);
        let input = self.map(batch, c_in, pixels);
        let output = self.map(batch, c_out, pixels);
        let shortcut = if c_in == c_out { 0 } else { self.conv(batch, c_in, size, c_out, size, 1) };
        let time_sum = if with_time { output } else { 0 };
        let norm1 = self.group_norm(mul(&[batch, c_in, pixels]));
        let conv1 = input.saturating_add(self.conv(batch, c_in, size, c_out, size, 3));
        let after1 = input + output + time_sum;
        let norm2 = after1 + self.group_norm(mul(&[batch, c_out, pixels]));
        let conv2 = after1 + 2 * output + self.conv(batch, c_out, size, c_out, size, 3);
        let sum = after1 + 3 * output;
        shortcut + norm1.max(conv1).max(norm2).max(conv2).max(sum)
    }

    /// Our attention (`attention.rs`) after the projections: queries, keys and values with their per-head
    /// copies, f32 copies when upcast, one slice's scores, the slices and their concatenation.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        batch: u64,
        heads: u64,
        queries: u64,
        keys: u64,
        channels: u64,
        upcast: bool,
        slicing: Slicing,
    ) -> u64 {
        let q = mul(&[batch, queries, channels, self.s]);
        let kv = 2 * mul(&[batch, keys, channels, self.s]);
        let upcast =
            if upcast && self.s < F32 { mul(&[batch, queries.saturating_add(keys), channels, F32]) } else { 0 };
        let rows = batch.saturating_mul(heads);
        let per_slice = slicing.queries_per_slice(sat(rows), sat(queries), sat(keys)) as u64;
        let scores = mul(&[rows, per_slice, keys, SCORE_BYTES]);
        2 * (q + kv) + upcast + scores + 2 * q
    }

    /// `Transformer2D` on an input of `batch × channels × pixels` (held by the caller).
    #[allow(clippy::too_many_arguments)]
    fn transformer(
        &self,
        shape: &ModelShape,
        batch: u64,
        channels: u64,
        size: (u64, u64),
        heads: u64,
        depth: u64,
        slicing: Slicing,
    ) -> u64 {
        let pixels = size.0.saturating_mul(size.1);
        let x = self.map(batch, channels, pixels);
        let project_in =
            if shape.linear_projection { 3 * x } else { 2 * x + self.conv(batch, channels, size, channels, size, 1) };
        let norm = self.group_norm(mul(&[batch, channels, pixels]));
        let context_dim = shape.unet.cross_attention_dim as u64;
        let context_keys = mul(&[batch, CONTEXT_TOKENS, context_dim, self.s]);
        let upcast = shape.upcast_attention;
        let attn1 = 3 * x + self.attention(batch, heads, pixels, pixels, channels, upcast, slicing);
        let attn2 =
            4 * x + context_keys + self.attention(batch, heads, pixels, CONTEXT_TOKENS, channels, upcast, slicing);
        // GEGLU: the doubled projection (8×), the GELU and the product (4× each), the output; the block's two
        // earlier residual sums are still bound.
        let feed_forward = 2 * x + 18 * x;
        let block = if depth == 0 { 0 } else { x + attn1.max(attn2).max(feed_forward) };
        // The tokens being transformed, then the map back, its projection and the residual sum.
        let project_out = x + if shape.linear_projection {
            3 * x
        } else {
            2 * x + self.conv(batch, channels, size, channels, size, 1)
        };
        norm.max(project_in).max(block).max(project_out)
    }
}

fn sat(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A level's latent size, halved (rounding up, as the strided convs do) once per level.
fn halve(size: (u64, u64)) -> (u64, u64) {
    (size.0.div_ceil(2), size.1.div_ceil(2))
}

impl ModelShape {
    /// Peak bytes of activations in one UNet step on a `latent` (height, width) of `batch` rows, plus the
    /// pipeline's own latent-sized tensors (latents, their guided pair, scaled input, output, prediction).
    pub fn unet_step_bytes(
        &self,
        latent: (u64, u64),
        batch: u64,
        precision: Precision,
        kernels: ConvKernels,
        slicing: Slicing,
    ) -> u64 {
        let ops = Ops { s: precision.unet, kernels };
        let mut tally = Tally::default();
        let p0 = latent.0.saturating_mul(latent.1);
        tally.hold(8 * mul(&[batch, self.unet_in, p0, F32]));
        let context_dim = self.unet.cross_attention_dim as u64;
        tally.hold(mul(&[batch, CONTEXT_TOKENS, context_dim, F32 + ops.s]));

        let c0 = self.unet_channels[0];
        tally.hold(ops.map(batch, self.unet_in, p0));
        tally.during(ops.conv(batch, self.unet_in, latent, c0, latent, self.conv_in_kernel));
        // Every state the down path keeps for the up path, as (channels, bytes); all stay held until used.
        let mut skips = vec![(c0, ops.map(batch, c0, p0))];
        tally.hold(skips[0].1);

        let levels = self.unet.down.len();
        let mut sizes = vec![latent];
        for _ in 1..levels {
            let last = *sizes.last().expect("starts with the latent");
            sizes.push(halve(last));
        }
        let pixels = |level: usize| sizes[level].0.saturating_mul(sizes[level].1);
        let mut channels = c0;
        for (i, block) in self.unet.down.iter().enumerate() {
            let out = block.out_channels as u64;
            for layer in 0..block.layers {
                let state = self.layer(&ops, &mut tally, block, layer, batch, channels, out, sizes[i], slicing);
                skips.push((out, state));
                channels = out;
            }
            if i + 1 < levels {
                tally.during(ops.conv(batch, out, sizes[i], out, sizes[i + 1], 3));
                let state = ops.map(batch, out, pixels(i + 1));
                tally.hold(state);
                skips.push((out, state));
            }
        }

        // The mid block: resnet, transformer, resnet, each output replacing the one before.
        let deepest = sizes[levels - 1];
        let heads = self.unet.mid_heads as u64;
        let depth = self.unet.mid_depth as u64;
        let mut current = ops.map(batch, channels, pixels(levels - 1));
        tally.during(ops.resnet(batch, channels, channels, deepest, true));
        tally.hold(current);
        tally.during(ops.transformer(self, batch, channels, deepest, heads, depth, slicing));
        tally.during(ops.resnet(batch, channels, channels, deepest, true));

        for (i, block) in self.unet.up.iter().enumerate() {
            let level = levels - 1 - i;
            let out = block.out_channels as u64;
            for layer in 0..block.layers {
                let (skip_channels, skip) = skips.pop().unwrap_or((0, 0));
                // The concatenation replaces the running state; the skip is dropped after the resnet.
                let joined = current.saturating_add(skip);
                tally.hold(joined);
                tally.release(current);
                let joined_channels = channels.saturating_add(skip_channels);
                let state =
                    self.layer(&ops, &mut tally, block, layer, batch, joined_channels, out, sizes[level], slicing);
                tally.release(joined);
                tally.release(skip);
                current = state;
                channels = out;
            }
            if level > 0 {
                let up = sizes[level - 1];
                let upsampled = ops.map(batch, out, pixels(level - 1));
                tally.during(upsampled + ops.conv(batch, out, up, out, up, 3));
                tally.release(current);
                current = upsampled;
                tally.hold(current);
            }
        }
        let out_elements = mul(&[batch, c0, p0]);
        tally.during(ops.group_norm(out_elements) + ops.map(batch, c0, p0));
        tally.during(
            2 * ops.map(batch, c0, p0) + ops.conv(batch, c0, latent, self.unet_out, latent, self.conv_out_kernel),
        );
        tally.peak
    }

    /// One resnet (and its transformer, if the block has attention) of a down or up block; returns the size of
    /// the state it leaves held.
    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        ops: &Ops,
        tally: &mut Tally,
        block: &UNetBlock,
        layer: usize,
        batch: u64,
        in_channels: u64,
        out: u64,
        size: (u64, u64),
        slicing: Slicing,
    ) -> u64 {
        tally.during(ops.resnet(batch, in_channels, out, size, true));
        let state = ops.map(batch, out, size.0.saturating_mul(size.1));
        tally.hold(state);
        let depth = block.attention.as_ref().and_then(|a| a.depths.get(layer)).copied().unwrap_or(0) as u64;
        if depth > 0 {
            let heads = block.attention.as_ref().map_or(1, |a| a.heads) as u64;
            tally.during(ops.transformer(self, batch, out, size, heads, depth, slicing));
            // The transformer's output replaces the resnet's, which is dropped once the output exists.
            tally.during(state);
        }
        state
    }

    /// Peak bytes of one VAE decode of a `latent` (height, width) region of one image, in the VAE's precision.
    pub fn vae_decode_bytes(
        &self,
        latent: (u64, u64),
        precision: Precision,
        kernels: ConvKernels,
        slicing: Slicing,
    ) -> u64 {
        let ops = Ops { s: precision.vae, kernels };
        let mut tally = Tally::default();
        let p0 = latent.0.saturating_mul(latent.1);
        let l = self.latent_channels;
        tally.hold(mul(&[l, p0, F32]) + ops.map(1, l, p0));
        tally.during(ops.conv(1, l, latent, l, latent, 1));
        let deepest = *self.vae_channels.last().unwrap_or(&1);
        tally.during(ops.conv(1, l, latent, deepest, latent, 3));
        let mut current = ops.map(1, deepest, p0);
        tally.hold(current);
        // The mid block's resnet, attention and resnet, each output replacing the one before.
        tally.during(ops.resnet(1, deepest, deepest, latent, false));
        tally.during(self.spatial_attention(&ops, deepest, p0, slicing));
        tally.during(ops.resnet(1, deepest, deepest, latent, false));

        let reversed: Vec<u64> = self.vae_channels.iter().rev().copied().collect();
        let mut size = latent;
        for (i, &out) in reversed.iter().enumerate() {
            let p = size.0.saturating_mul(size.1);
            let input = if i == 0 { reversed[0] } else { reversed[i - 1] };
            // The block's input stays bound by the caller while the block runs.
            for layer in 0..=self.vae_layers {
                let c_in = if layer == 0 { input } else { out };
                tally.during(ops.map(1, c_in, p) + ops.resnet(1, c_in, out, size, false));
            }
            let block_out = ops.map(1, out, p);
            if i + 1 < reversed.len() {
                size = (size.0.saturating_mul(2), size.1.saturating_mul(2));
                let pu = size.0.saturating_mul(size.1);
                let upsampled = ops.map(1, out, pu);
                tally.during(block_out + upsampled + ops.conv(1, out, size, out, size, 3));
                tally.release(current);
                current = ops.map(1, out, pu);
            } else {
                tally.release(current);
                current = block_out;
            }
            tally.hold(current);
        }
        let p = size.0.saturating_mul(size.1);
        let c0 = reversed.last().copied().unwrap_or(1);
        tally.during(ops.group_norm(mul(&[c0, p])) + ops.map(1, c0, p));
        tally.during(2 * ops.map(1, c0, p) + ops.conv(1, c0, size, self.image_channels, size, 3));
        // The image in f32, then the [0, 1] rescaling's three temporaries.
        tally.during(4 * mul(&[self.image_channels, p, F32]));
        tally.peak
    }

    /// The decoder's mid-block attention (`vae/decoder.rs`) on a held input: the normalised tokens, q/k/v with
    /// their f32 copies, one slice's scores, the slices and their concatenation, then the projection back.
    fn spatial_attention(&self, ops: &Ops, channels: u64, pixels: u64, slicing: Slicing) -> u64 {
        let x = ops.map(1, channels, pixels);
        let f32_map = mul(&[channels, pixels, F32]);
        let norm = ops.group_norm(mul(&[channels, pixels])) + x;
        let qkv = 3 * (x + f32_map);
        let per_slice = slicing.queries_per_slice(1, sat(pixels), sat(pixels)) as u64;
        let scores = mul(&[per_slice, pixels, SCORE_BYTES]);
        let attend = x + qkv + scores + 2 * f32_map;
        let out = qkv + f32_map + 4 * x;
        norm.max(attend).max(out)
    }

    /// The largest score matrix of the VAE's mid-block attention for a latent region, in scores.
    pub fn vae_scores(&self, latent: (u64, u64)) -> u64 {
        let p = latent.0.saturating_mul(latent.1);
        p.saturating_mul(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelShape {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sdxl-a");
        let unet: UNetConfig = crate::config::read_json(&dir.join("unet/config.json")).unwrap();
        let vae: VaeConfig = crate::config::read_json(&dir.join("vae/config.json")).unwrap();
        ModelShape::new(&unet, &vae).unwrap()
    }

    const F32_RUN: Precision = Precision { unet: 4, vae: 4 };

    #[test]
    fn the_peak_grows_with_the_image_and_the_batch() {
        let shape = tiny();
        let small = shape.unet_step_bytes((32, 32), 1, F32_RUN, ConvKernels::Cpu, Slicing::Full);
        let large = shape.unet_step_bytes((64, 64), 1, F32_RUN, ConvKernels::Cpu, Slicing::Full);
        let guided = shape.unet_step_bytes((64, 64), 2, F32_RUN, ConvKernels::Cpu, Slicing::Full);
        assert!(small < large && large < guided, "{small} {large} {guided}");
    }

    #[test]
    fn full_attention_dominates_a_large_latent_and_slicing_removes_it() {
        let shape = tiny();
        // 512x512 on tiny-sdxl-a: 256x256 latents, 16,384 tokens at the attention level, 4 heads, guided.
        let full = shape.unet_step_bytes((256, 256), 2, F32_RUN, ConvKernels::Cpu, Slicing::Full);
        let scores = shape.largest_unet_scores((256, 256), 2);
        assert_eq!(scores, 2 * 4 * 16_384 * 16_384);
        assert!(full > scores * SCORE_BYTES, "{full}");
        let sliced = shape.unet_step_bytes((256, 256), 2, F32_RUN, ConvKernels::Cpu, Slicing::MaxScores(1 << 24));
        assert!(sliced < full / 10, "{sliced} vs {full}");
        assert!(sliced > (1 << 24) * SCORE_BYTES, "{sliced}");
    }

    #[test]
    fn the_vae_estimate_counts_im2col_scratch_on_cuda_without_cudnn() {
        let shape = tiny();
        let cpu = shape.vae_decode_bytes((128, 128), F32_RUN, ConvKernels::Cpu, Slicing::MaxScores(1 << 20));
        let im2col = shape.vae_decode_bytes((128, 128), F32_RUN, ConvKernels::CudaIm2col, Slicing::MaxScores(1 << 20));
        assert!(im2col > cpu, "{im2col} vs {cpu}");
    }

    #[test]
    fn absurd_sizes_saturate_instead_of_overflowing() {
        let shape = tiny();
        let bytes = shape.unet_step_bytes((u64::MAX / 3, 1 << 40), 2, F32_RUN, ConvKernels::Cpu, Slicing::Full);
        assert!(bytes >= PRODUCT_CAP, "{bytes}");
        let bytes = shape.vae_decode_bytes((u64::MAX, u64::MAX), F32_RUN, ConvKernels::CudaIm2col, Slicing::Full);
        assert!(bytes >= PRODUCT_CAP, "{bytes}");
    }
}
