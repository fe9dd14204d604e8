//! `EulerDiscreteScheduler` (deterministic, `s_churn` 0) and `EulerAncestralDiscreteScheduler`.

use candle_core::{DType, Tensor};

use super::{Prediction, SchedulerConfig, Spacing};
use crate::error::PipelineError;
use crate::noise::Noise;

#[derive(Debug)]
pub struct Euler {
    timesteps: Vec<f64>,
    /// One per step plus the final one, as f32 values like the reference keeps them.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: Prediction,
    ancestral: bool,
}

impl Euler {
    pub fn new(config: &SchedulerConfig, steps: usize, ancestral: bool) -> Result<Self, PipelineError> {
        let unsupported = |what: &str| Err(PipelineError::Unsupported(format!("euler scheduler: {what}")));
        if [config.use_karras_sigmas, config.use_exponential_sigmas, config.use_beta_sigmas].contains(&Some(true)) {
            return unsupported("karras, exponential or beta sigmas");
        }
        if config.interpolation_type != "linear" {
            return unsupported(&format!("interpolation_type {:?}", config.interpolation_type));
        }
        if config.timestep_type != "discrete" {
            return unsupported(&format!("timestep_type {:?}", config.timestep_type));
        }
        let alphas = config.alphas_cumprod()?;
        let train_sigmas: Vec<f32> = alphas.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        let timesteps = config.timesteps(steps)?;
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| f64::from(interpolate(&train_sigmas, t) as f32)).collect();
        let last = if ancestral {
            0.0
        } else {
            match config.final_sigmas_type.as_str() {
                "zero" => 0.0,
                "sigma_min" => f64::from(train_sigmas[0]),
                other => return unsupported(&format!("final_sigmas_type {other:?}")),
            }
        };
        sigmas.push(last);
        let max = sigmas.iter().copied().fold(0.0, f64::max);
        let init_noise_sigma = match config.timestep_spacing {
            Spacing::Linspace | Spacing::Trailing => max,
            Spacing::Leading => (max * max + 1.0).sqrt(),
        };
        Ok(Self { timesteps, sigmas, init_noise_sigma, prediction: config.prediction_type, ancestral })
    }

    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }
}

/// numpy's `interp` of the training sigmas at a (possibly fractional) timestep.
fn interpolate(values: &[f32], t: f64) -> f64 {
    let last = values.len() - 1;
    if t <= 0.0 {
        return f64::from(values[0]);
    }
    if t >= last as f64 {
        return f64::from(values[last]);
    }
    let i = t.floor() as usize;
    let frac = t - i as f64;
    let (a, b) = (f64::from(values[i]), f64::from(values[i + 1]));
    a + (b - a) * frac
}

impl super::Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &Tensor, index: usize) -> Result<Tensor, PipelineError> {
        let sigma = self.sigmas[index];
        Ok((sample / (sigma * sigma + 1.0).sqrt())?)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        noise: &mut Noise,
    ) -> Result<Tensor, PipelineError> {
        let dtype = sample.dtype();
        // The reference steps in f32 whatever the model's dtype, so half precision does not drift.
        let sample = sample.to_dtype(DType::F32)?;
        let output = model_output.to_dtype(DType::F32)?;
        let sigma = self.sigmas[index];
        let next = self.sigmas[index + 1];
        let denoised = match self.prediction {
            Prediction::Epsilon => (&sample - (&output * sigma)?)?,
            Prediction::VPrediction => {
                ((&output * (-sigma / (sigma * sigma + 1.0).sqrt()))? + (&sample / (sigma * sigma + 1.0))?)?
            }
            Prediction::Sample => output.clone(),
        };
        let derivative = ((&sample - &denoised)? / sigma)?;
        let prev = if self.ancestral {
            let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
            let down = (next * next - up * up).sqrt();
            let moved = (&sample + (derivative * (down - sigma))?)?;
            let fresh = noise.like(&moved)?;
            (moved + (fresh * up)?)?
        } else {
            (&sample + (derivative * (next - sigma))?)?
        };
        Ok(prev.to_dtype(dtype)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::sdxl;

    #[test]
    fn sdxl_leading_schedule_starts_at_timestep_958_and_ends_at_zero() {
        let e = Euler::new(&sdxl(), 30, false).unwrap();
        assert_eq!(e.sigmas().len(), 31);
        assert_eq!(e.timesteps[0], 958.0);
        assert!(e.sigmas()[0] > 11.4 && e.sigmas()[0] < 11.6, "{}", e.sigmas()[0]);
        assert_eq!(e.sigmas()[30], 0.0);
        assert!(e.init_noise_sigma > e.sigmas()[0]);
    }

    #[test]
    fn interpolation_is_linear_between_training_steps() {
        let v = [0.0f32, 1.0, 3.0];
        assert_eq!(interpolate(&v, 0.5), 0.5);
        assert_eq!(interpolate(&v, 1.5), 2.0);
        assert_eq!(interpolate(&v, 7.0), 3.0);
    }
}
