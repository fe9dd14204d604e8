//! `DDIMScheduler` with eta 0 (the deterministic sampler diffusers pipelines use by default).

use candle_core::{DType, Tensor};

use super::{Prediction, SchedulerConfig, round_half_even};
use crate::error::PipelineError;
use crate::noise::Noise;

#[derive(Debug)]
pub struct Ddim {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    final_alpha: f64,
    stride: usize,
    prediction: Prediction,
    clip: Option<f64>,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, PipelineError> {
        let alphas_cumprod = config.alphas_cumprod()?;
        // DDIM visits whole training timesteps; linspace spacing is rounded like the reference.
        let timesteps = config.timesteps(steps)?.into_iter().map(round_half_even).collect();
        let final_alpha = if config.set_alpha_to_one { 1.0 } else { f64::from(alphas_cumprod[0]) };
        Ok(Self {
            timesteps,
            alphas_cumprod,
            final_alpha,
            stride: config.num_train_timesteps / steps,
            prediction: config.prediction_type,
            clip: config.clip_sample.then_some(config.clip_sample_range),
        })
    }

    fn alpha(&self, t: i64) -> f64 {
        if t >= 0 {
            f64::from(self.alphas_cumprod[(t as usize).min(self.alphas_cumprod.len() - 1)])
        } else {
            self.final_alpha
        }
    }
}

impl super::Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: &Tensor, _index: usize) -> Result<Tensor, PipelineError> {
        Ok(sample.clone())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        _noise: &mut Noise,
    ) -> Result<Tensor, PipelineError> {
        let dtype = sample.dtype();
        let sample = sample.to_dtype(DType::F32)?;
        let output = model_output.to_dtype(DType::F32)?;
        let t = self.timesteps[index] as i64;
        let prev_t = t - self.stride as i64;
        let alpha = self.alpha(t);
        let alpha_prev = self.alpha(prev_t);
        let beta = 1.0 - alpha;
        let (original, epsilon) = match self.prediction {
            Prediction::Epsilon => {
                let original = ((&sample - (&output * beta.sqrt())?)? / alpha.sqrt())?;
                (original, output)
            }
            Prediction::Sample => {
                let epsilon = ((&sample - (&output * alpha.sqrt())?)? / beta.sqrt())?;
                (output, epsilon)
            }
            Prediction::VPrediction => {
                let original = ((&sample * alpha.sqrt())? - (&output * beta.sqrt())?)?;
                let epsilon = ((&output * alpha.sqrt())? + (&sample * beta.sqrt())?)?;
                (original, epsilon)
            }
        };
        let original = match self.clip {
            Some(range) => original.clamp(-range, range)?,
            None => original,
        };
        let prev = ((original * alpha_prev.sqrt())? + (epsilon * (1.0 - alpha_prev).sqrt())?)?;
        Ok(prev.to_dtype(dtype)?)
    }
}
