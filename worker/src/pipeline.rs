//! The SDXL text-to-image pipeline, step for step as diffusers' `StableDiffusionXLPipeline` runs it.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};

use crate::attention::Slicing;
use crate::config::{ClipTextConfig, ModelIndex, UNetConfig, VaeConfig, read_json};
use crate::error::PipelineError;
use crate::memory::{self, Budget, ConvKernels, MemoryPlan, ModelShape, Precision};
use crate::noise::Noise;
use crate::scheduler::{self, SchedulerConfig, SchedulerKind};
use crate::text_encoder::ClipTextEncoder;
use crate::tokenizer::ClipTokenizer;
use crate::unet::{AddedConditioning, UNet};
use crate::vae::{DecodePlan, Vae, VaePrecision};
use crate::weights;

/// Where and in what precision the model runs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
    pub vae_tiling: VaeTiling,
    /// At most this many bytes of activations per job; the device's own limits always apply as well.
    pub memory_budget: Option<u64>,
}

impl LoadOptions {
    pub fn cpu() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32, vae_tiling: VaeTiling::Off, memory_budget: None }
    }
}

/// Whether the VAE decodes large images in overlapping tiles (less memory, very slightly different pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeTiling {
    Off,
    /// Tiles of the VAE config's `sample_size` (1024 pixels for SDXL), as the reference's `enable_vae_tiling`.
    ModelDefault,
    Pixels(usize),
}

/// One image to make.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: String,
    /// `None` (unlike `Some("")`) lets a model with `force_zeros_for_empty_prompt` use zeros, as the reference.
    pub negative_prompt: Option<String>,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance scale; 1 or less turns guidance off (SDXL-Turbo runs that way).
    pub guidance: f64,
    pub seed: u64,
    /// `None`: the scheduler the model folder names.
    pub scheduler: Option<SchedulerKind>,
    /// Initial noise `(1, latent_channels, height / f, width / f)`, before the scheduler's scaling.
    pub latents: Option<Tensor>,
}

impl GenerateRequest {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            width: 1024,
            height: 1024,
            steps: 30,
            guidance: 5.0,
            seed: 0,
            scheduler: None,
            latents: None,
        }
    }
}

/// Reported after every denoising step; returning `Break` cancels the generation.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    pub elapsed: Duration,
}

/// Text conditioning for one generation, as the UNet consumes it.
#[derive(Debug, Clone)]
pub struct PromptEmbeddings {
    /// `(1, 77, 2048)` for SDXL: both encoders' penultimate states side by side.
    pub prompt: Tensor,
    /// `(1, 1280)` for SDXL: the second encoder's projected pooled output.
    pub pooled: Tensor,
    pub negative: Option<(Tensor, Tensor)>,
    /// Prompt tokens cut off by the 77-token limit (the larger of the two tokenizers' counts).
    pub dropped_tokens: usize,
}

/// The image and what happened on the way.
#[derive(Debug)]
pub struct Generated {
    /// `(1, 3, height, width)`, f32 in [0, 1].
    pub image: Tensor,
    pub scheduler: SchedulerKind,
    pub dropped_tokens: usize,
    pub timings: Timings,
    /// How the generation spent memory (attention slicing, VAE tiles).
    pub memory: MemoryPlan,
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub text: Duration,
    pub steps: Vec<Duration>,
    pub decode: Duration,
}

#[derive(Debug)]
pub struct SdxlPipeline {
    tokenizer: ClipTokenizer,
    tokenizer_2: ClipTokenizer,
    text_encoder: ClipTextEncoder,
    text_encoder_2: ClipTextEncoder,
    unet: UNet,
    vae: Vae,
    scheduler_config: SchedulerConfig,
    default_scheduler: SchedulerKind,
    force_zeros_for_empty_prompt: bool,
    /// The UNet halves the latent this many times minus one; sizes must survive it.
    unet_levels: usize,
    default_size: usize,
    /// What the memory planner needs of the model, fixed at load.
    shape: ModelShape,
    precision: Precision,
    kernels: ConvKernels,
    options: LoadOptions,
}

impl SdxlPipeline {
    /// Loads every part of a diffusers-format SDXL folder; the text encoders stay loaded for every prompt.
    pub fn load(root: &Path, options: LoadOptions) -> Result<Self, PipelineError> {
        if !root.is_dir() {
            return Err(PipelineError::io(
                root,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such model folder"),
            ));
        }
        if options.device.is_cpu() && options.dtype == DType::BF16 {
            // candle has no bf16 matrix multiply on the CPU; fail before reading gigabytes of weights.
            return Err(PipelineError::Unsupported("bf16 runs on CUDA only; use f32 or f16 on the CPU".into()));
        }
        let index: ModelIndex = read_json(&root.join("model_index.json"))?;
        index.check()?;
        let variant = matches!(options.dtype, DType::F16 | DType::BF16).then_some("fp16");
        let component = |name: &str, stems: &[&str], dtype: DType| {
            let dir = root.join(name);
            let files = weights::find(&dir, stems, variant)?;
            weights::var_builder(&files, dtype, &options.device)
        };
        let wrap = |part: &str| {
            let dir = root.join(part);
            move |e: PipelineError| match e {
                PipelineError::Tensor(inner) => PipelineError::Weights { path: dir.clone(), reason: inner.to_string() },
                other => other,
            }
        };
        let dtype = options.dtype;
        let te_config: ClipTextConfig = read_json(&root.join("text_encoder/config.json"))?;
        let te2_config: ClipTextConfig = read_json(&root.join("text_encoder_2/config.json"))?;
        let unet_config: UNetConfig = read_json(&root.join("unet/config.json"))?;
        let vae_config: VaeConfig = read_json(&root.join("vae/config.json"))?;
        let scheduler_config: SchedulerConfig = read_json(&root.join("scheduler/scheduler_config.json"))?;

        let plan = unet_config.plan()?;
        let shape = ModelShape::new(&unet_config, &vae_config)?;
        let pooled_dim = te2_config.projection_dim.unwrap_or(te2_config.hidden_size);
        if plan.cross_attention_dim != te_config.hidden_size + te2_config.hidden_size {
            return Err(PipelineError::Unsupported(format!(
                "unet cross_attention_dim {} is not the two text encoders' widths {} + {}",
                plan.cross_attention_dim, te_config.hidden_size, te2_config.hidden_size
            )));
        }
        match plan.text_time {
            Some(tt) if tt.input_dim == 6 * tt.time_embed_dim + pooled_dim => {}
            Some(tt) => {
                return Err(PipelineError::Unsupported(format!(
                    "unet add_embedding takes {} values, but 6 size ids of {} plus a pooled embedding of {} make {}",
                    tt.input_dim,
                    tt.time_embed_dim,
                    pooled_dim,
                    6 * tt.time_embed_dim + pooled_dim
                )));
            }
            None => return Err(PipelineError::Unsupported("unet without SDXL's text_time conditioning".into())),
        }
        let default_scheduler =
            scheduler_config.class_name.as_deref().and_then(SchedulerKind::from_class).unwrap_or(SchedulerKind::Euler);
        // The stock SDXL VAE overflows in f16 (black images); like the reference, decode its up blocks in f32
        // unless the config says the VAE is safe in half precision.
        let vae_precision = VaePrecision::for_pipeline(dtype, &vae_config);
        // Counted at the body's dtype, the larger: the head's few weights are read again in theirs.
        let vae_dtype = vae_precision.body;
        if options.device.is_cpu() {
            // On the CPU a failed allocation aborts the process: refuse weights that cannot fit before reading them.
            let mut needed = 0u64;
            for (name, stem) in crate::architecture::COMPONENTS {
                let files = weights::find(&root.join(name), &[stem], variant)?;
                let part_dtype = if name == "vae" { vae_dtype } else { dtype };
                needed = needed.saturating_add(weights::bytes(&files, part_dtype)?);
            }
            let room = memory::budget::cpu_headroom(&memory::budget::CpuFacts::read());
            if needed > room.bytes {
                return Err(PipelineError::WeightsDoNotFit { needed, room });
            }
        }

        let tokenizer = ClipTokenizer::from_dir(&root.join("tokenizer"))?;
        let tokenizer_2 = ClipTokenizer::from_dir(&root.join("tokenizer_2"))?;
        let text_encoder = ClipTextEncoder::new(component("text_encoder", &["model"], dtype)?, &te_config, false)
            .map_err(wrap("text_encoder"))?;
        let text_encoder_2 = ClipTextEncoder::new(component("text_encoder_2", &["model"], dtype)?, &te2_config, true)
            .map_err(wrap("text_encoder_2"))?;
        let unet =
            UNet::new(component("unet", &["diffusion_pytorch_model"], dtype)?, &unet_config).map_err(wrap("unet"))?;
        let mut vae = Vae::new(component("vae", &["diffusion_pytorch_model"], vae_dtype)?, &vae_config, vae_precision)
            .map_err(wrap("vae"))?;
        match options.vae_tiling {
            VaeTiling::Off => {}
            VaeTiling::ModelDefault => vae.set_tiling(Some(vae.default_tile()))?,
            VaeTiling::Pixels(p) => vae.set_tiling(Some(p))?,
        }
        let default_size = unet_config.sample_size.unwrap_or(128) * vae.downscale();
        let precision = Precision { unet: dtype.size_in_bytes() as u64, vae: vae_dtype.size_in_bytes() as u64 };
        let kernels = match &options.device {
            Device::Cuda(_) if cfg!(feature = "cudnn") => ConvKernels::Cudnn,
            Device::Cuda(_) => ConvKernels::CudaIm2col,
            _ => ConvKernels::Cpu,
        };
        Ok(Self {
            tokenizer,
            tokenizer_2,
            text_encoder,
            text_encoder_2,
            unet,
            vae,
            scheduler_config,
            default_scheduler,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(true),
            unet_levels: plan.down.len(),
            default_size,
            shape,
            precision,
            kernels,
            options,
        })
    }

    /// The resolution the model was trained at (1024 for SDXL base).
    pub fn default_size(&self) -> usize {
        self.default_size
    }

    /// Both tokenizers' ids for a prompt, as the reference pipeline feeds them to the encoders.
    pub fn token_ids(&self, prompt: &str) -> (Vec<u32>, Vec<u32>) {
        (self.tokenizer.encode(prompt).ids, self.tokenizer_2.encode(prompt).ids)
    }

    /// Both encoders over several prompts at once (one batch: the GEMMs run on more rows per weight read), with
    /// how many tokens of the first prompt the tokenizers dropped.
    fn encode_batch(&self, prompts: &[&str]) -> Result<(Tensor, Tensor, usize), PipelineError> {
        let first: Vec<_> = prompts.iter().map(|p| self.tokenizer.encode(p)).collect();
        let second: Vec<_> = prompts.iter().map(|p| self.tokenizer_2.encode(p)).collect();
        let dropped = first.first().zip(second.first()).map_or(0, |(a, b)| a.dropped.max(b.dropped));
        let ids = |tokens: &[crate::tokenizer::Tokens]| tokens.iter().map(|t| t.ids.clone()).collect::<Vec<_>>();
        let a = self.text_encoder.encode(&ids(&first))?;
        let b = self.text_encoder_2.encode(&ids(&second))?;
        let pooled = b.pooled.expect("text_encoder_2 is built with its projection");
        let embeds = Tensor::cat(&[&a.penultimate, &b.penultimate], 2)?;
        Ok((embeds, pooled, dropped))
    }

    /// The prompt's conditioning, and the negative prompt's when guidance is on (encoded with the prompt).
    pub fn encode_prompt(
        &self,
        prompt: &str,
        negative: Option<&str>,
        guided: bool,
    ) -> Result<PromptEmbeddings, PipelineError> {
        let zero_negative = negative.is_none() && self.force_zeros_for_empty_prompt;
        if !guided || zero_negative {
            let (prompt_embeds, pooled, dropped) = self.encode_batch(&[prompt])?;
            let negative = match guided {
                true => Some((prompt_embeds.zeros_like()?, pooled.zeros_like()?)),
                false => None,
            };
            return Ok(PromptEmbeddings { prompt: prompt_embeds, pooled, negative, dropped_tokens: dropped });
        }
        let (embeds, pooled, dropped) = self.encode_batch(&[prompt, negative.unwrap_or("")])?;
        Ok(PromptEmbeddings {
            prompt: embeds.narrow(0, 0, 1)?,
            pooled: pooled.narrow(0, 0, 1)?,
            negative: Some((embeds.narrow(0, 1, 1)?, pooled.narrow(0, 1, 1)?)),
            dropped_tokens: dropped,
        })
    }

    fn check(&self, request: &GenerateRequest) -> Result<(), PipelineError> {
        let multiple = self.vae.downscale();
        // Config checks bound the levels, so the shift cannot overflow.
        let smallest = multiple << self.unet_levels.saturating_sub(1);
        for (name, side) in [("width", request.width), ("height", request.height)] {
            if side == 0 || side % multiple != 0 {
                return Err(PipelineError::InvalidRequest(format!(
                    "{name} {side} is not a positive multiple of {multiple}"
                )));
            }
            if side < smallest {
                return Err(PipelineError::InvalidRequest(format!(
                    "{name} {side} is below this model's minimum of {smallest}"
                )));
            }
            if side > 4096 {
                return Err(PipelineError::InvalidRequest(format!("{name} {side} is above 4096")));
            }
        }
        if !request.guidance.is_finite() || request.guidance < 0.0 {
            return Err(PipelineError::InvalidRequest(format!(
                "guidance {} must be a finite number ≥ 0",
                request.guidance
            )));
        }
        if request.steps == 0 || request.steps > 1000 {
            return Err(PipelineError::InvalidRequest(format!("steps {} must be between 1 and 1000", request.steps)));
        }
        Ok(())
    }

    /// The noise the generation starts from, before the scheduler's scaling.
    fn initial_latents(&self, request: &GenerateRequest) -> Result<Tensor, PipelineError> {
        let f = self.vae.downscale();
        let shape = (1, self.vae.latent_channels(), request.height / f, request.width / f);
        match &request.latents {
            Some(latents) => {
                if latents.dims() != [shape.0, shape.1, shape.2, shape.3] {
                    return Err(PipelineError::InvalidRequest(format!(
                        "latents have shape {:?}, this size needs {:?}",
                        latents.dims(),
                        [shape.0, shape.1, shape.2, shape.3]
                    )));
                }
                Ok(latents.to_dtype(DType::F32)?.to_device(&self.options.device)?)
            }
            None => Ok(Noise::new(request.seed).sample(shape, &self.options.device)?),
        }
    }

    /// Runs text encoding, the denoising loop and the VAE decode. `progress` is told of every step and may
    /// cancel between steps.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Generated, PipelineError> {
        self.check(request)?;
        let guided = request.guidance > 1.0;
        // Before anything large is allocated: a job that cannot fit is refused here, never aborted later.
        let plan = self.memory_plan(request.width, request.height, guided)?;
        if plan.is_full() {
            tracing::debug!(%plan, width = request.width, height = request.height, "memory plan");
        } else {
            tracing::info!(%plan, width = request.width, height = request.height, "memory plan");
        }
        let kind = request.scheduler.unwrap_or(self.default_scheduler);
        let mut scheduler = scheduler::build(kind, &self.scheduler_config, request.steps)?;
        let mut timings = Timings::default();

        let started = Instant::now();
        let embeds = self.encode_prompt(&request.prompt, request.negative_prompt.as_deref(), guided)?;
        let (context, text_embeds) = match &embeds.negative {
            Some((negative, negative_pooled)) => {
                (Tensor::cat(&[negative, &embeds.prompt], 0)?, Tensor::cat(&[negative_pooled, &embeds.pooled], 0)?)
            }
            None => (embeds.prompt.clone(), embeds.pooled.clone()),
        };
        let batch = context.dim(0)?;
        let time_ids = self.time_ids(request, batch)?;
        let added = AddedConditioning { text_embeds, time_ids };
        self.options.device.synchronize()?;
        timings.text = started.elapsed();

        let mut noise = Noise::new(request.seed.wrapping_add(1));
        let mut latents = (self.initial_latents(request)? * scheduler.init_noise_sigma())?;
        let timesteps = scheduler.timesteps().to_vec();
        let loop_start = Instant::now();
        for (i, &t) in timesteps.iter().enumerate() {
            let step_start = Instant::now();
            let input = if guided { Tensor::cat(&[&latents, &latents], 0)? } else { latents.clone() };
            let input = scheduler.scale_model_input(&input, i)?;
            let output = self.unet.forward(&input, t, &context, Some(&added), plan.unet)?;
            let prediction = if guided {
                let uncond = output.narrow(0, 0, 1)?;
                let cond = output.narrow(0, 1, 1)?;
                (&uncond + ((cond - &uncond)? * request.guidance)?)?
            } else {
                output
            };
            latents = scheduler.step(&prediction, i, &latents, &mut noise)?;
            // GPU work is asynchronous: wait for the step so its time and the progress report are true.
            self.options.device.synchronize()?;
            timings.steps.push(step_start.elapsed());
            let report = Progress { step: i + 1, total: timesteps.len(), elapsed: loop_start.elapsed() };
            if progress(report).is_break() {
                return Err(PipelineError::Cancelled { completed_steps: i + 1, total_steps: timesteps.len() });
            }
        }
        let decode_start = Instant::now();
        let image = self.vae.decode_with(&latents, plan.vae)?;
        self.options.device.synchronize()?;
        timings.decode = decode_start.elapsed();
        Ok(Generated { image, scheduler: kind, dropped_tokens: embeds.dropped_tokens, timings, memory: plan })
    }

    /// How a `width` × `height` generation would spend memory on this device now, or why it cannot run.
    pub fn memory_plan(&self, width: usize, height: usize, guided: bool) -> Result<MemoryPlan, PipelineError> {
        let budget = Budget::measure(&self.options.device, self.options.memory_budget)?;
        let job = memory::Job { width: width as u64, height: height as u64, batch: if guided { 2 } else { 1 } };
        let settings = memory::Settings {
            precision: self.precision,
            kernels: self.kernels,
            default_tile: self.vae.default_tile() as u64,
            max_tile: self.vae.tiling().map(|t| t as u64),
        };
        Ok(memory::plan(&self.shape, job, settings, &budget)?)
    }

    /// SDXL's micro-conditioning: original size, crop top-left, target size (no crop, both the request's size).
    fn time_ids(&self, request: &GenerateRequest, batch: usize) -> Result<Tensor, PipelineError> {
        let (h, w) = (request.height as f32, request.width as f32);
        let row = [h, w, 0.0, 0.0, h, w];
        let ids: Vec<f32> = (0..batch).flat_map(|_| row).collect();
        Ok(Tensor::from_vec(ids, (batch, 6), &self.options.device)?)
    }

    /// One UNet evaluation, for tests and benchmarks that compare single forwards.
    pub fn unet_forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: &AddedConditioning,
    ) -> Result<Tensor, PipelineError> {
        self.unet_forward_with(sample, timestep, context, added, Slicing::Full)
    }

    /// [`SdxlPipeline::unet_forward`] with the attention sliced.
    pub fn unet_forward_with(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: &AddedConditioning,
        slicing: Slicing,
    ) -> Result<Tensor, PipelineError> {
        self.unet.forward(sample, timestep, context, Some(added), slicing)
    }

    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, PipelineError> {
        self.vae.decode(latents)
    }

    /// [`SdxlPipeline::decode`] in tiles or with sliced attention, as a memory plan says.
    pub fn decode_with(&self, latents: &Tensor, plan: DecodePlan) -> Result<Tensor, PipelineError> {
        self.vae.decode_with(latents, plan)
    }

    /// The VAE decoder alone, as the reference's `vae.decode(latents)`.
    pub fn decode_unscaled(&self, latents: &Tensor) -> Result<Tensor, PipelineError> {
        self.vae.decode_unscaled(latents)
    }
}
