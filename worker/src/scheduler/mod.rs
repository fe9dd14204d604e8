//! Noise schedulers, honouring the pipeline's `scheduler_config.json` the way diffusers does (beta schedule,
//! timestep spacing, steps offset, prediction type), so the same model config gives the same timesteps.

mod ddim;
mod euler;

use candle_core::Tensor;
use serde::Deserialize;

pub use ddim::Ddim;
pub use euler::Euler;

use crate::error::PipelineError;
use crate::noise::Noise;

/// The scheduler a generation runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// `EulerDiscreteScheduler`, SDXL's default.
    Euler,
    /// `EulerAncestralDiscreteScheduler`: adds fresh noise every step, so it needs the seed.
    EulerAncestral,
    /// `DDIMScheduler` with eta 0.
    Ddim,
}

impl SchedulerKind {
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Euler => "euler",
            SchedulerKind::EulerAncestral => "euler_a",
            SchedulerKind::Ddim => "ddim",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "euler" => Some(SchedulerKind::Euler),
            "euler_a" => Some(SchedulerKind::EulerAncestral),
            "ddim" => Some(SchedulerKind::Ddim),
            _ => None,
        }
    }

    /// The kind a pipeline's `scheduler_config.json` names, when the code has it.
    pub fn from_class(class: &str) -> Option<Self> {
        match class {
            "EulerDiscreteScheduler" => Some(SchedulerKind::Euler),
            "EulerAncestralDiscreteScheduler" => Some(SchedulerKind::EulerAncestral),
            "DDIMScheduler" => Some(SchedulerKind::Ddim),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    Epsilon,
    VPrediction,
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    Leading,
    Linspace,
    Trailing,
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_beta_schedule() -> String {
    "linear".into()
}
fn default_prediction() -> Prediction {
    Prediction::Epsilon
}
fn default_spacing() -> Spacing {
    Spacing::Linspace
}
fn default_clip_range() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_interpolation() -> String {
    "linear".into()
}
fn default_final_sigmas() -> String {
    "zero".into()
}
fn default_timestep_type() -> String {
    "discrete".into()
}

/// `scheduler/scheduler_config.json`, whichever scheduler class wrote it.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: String,
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(default = "default_prediction")]
    pub prediction_type: Prediction,
    #[serde(default = "default_spacing")]
    pub timestep_spacing: Spacing,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub clip_sample: bool,
    #[serde(default = "default_clip_range")]
    pub clip_sample_range: f64,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default = "default_interpolation")]
    pub interpolation_type: String,
    #[serde(default)]
    pub use_karras_sigmas: Option<bool>,
    #[serde(default)]
    pub use_exponential_sigmas: Option<bool>,
    #[serde(default)]
    pub use_beta_sigmas: Option<bool>,
    #[serde(default = "default_final_sigmas")]
    pub final_sigmas_type: String,
    #[serde(default = "default_timestep_type")]
    pub timestep_type: String,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
}

impl SchedulerConfig {
    /// Cumulative products of `1 - beta`, kept in f32 as the reference computes them.
    pub fn alphas_cumprod(&self) -> Result<Vec<f32>, PipelineError> {
        let n = self.num_train_timesteps;
        if n == 0 {
            return Err(PipelineError::Unsupported("scheduler with 0 training timesteps".into()));
        }
        if self.rescale_betas_zero_snr {
            return Err(PipelineError::Unsupported("scheduler rescale_betas_zero_snr".into()));
        }
        let betas: Vec<f32> = match (&self.trained_betas, self.beta_schedule.as_str()) {
            (Some(betas), _) if betas.len() == n => betas.iter().map(|b| *b as f32).collect(),
            (Some(betas), _) => {
                return Err(PipelineError::Unsupported(format!(
                    "scheduler trained_betas has {} values for {n} timesteps",
                    betas.len()
                )));
            }
            (None, "linear") => linspace(self.beta_start, self.beta_end, n).into_iter().map(|b| b as f32).collect(),
            (None, "scaled_linear") => linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n)
                .into_iter()
                .map(|b| (b as f32) * (b as f32))
                .collect(),
            (None, "squaredcos_cap_v2") => {
                let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                    })
                    .collect()
            }
            (None, other) => return Err(PipelineError::Unsupported(format!("beta_schedule {other:?}"))),
        };
        let mut product = 1.0f32;
        Ok(betas
            .into_iter()
            .map(|beta| {
                product *= 1.0 - beta;
                product
            })
            .collect())
    }

    /// The training timesteps visited for `steps` inference steps, from noisiest to cleanest.
    pub fn timesteps(&self, steps: usize) -> Result<Vec<f64>, PipelineError> {
        let n = self.num_train_timesteps;
        if steps == 0 || steps > n {
            return Err(PipelineError::InvalidRequest(format!("steps must be between 1 and {n}, not {steps}")));
        }
        Ok(match self.timestep_spacing {
            Spacing::Linspace => linspace(0.0, (n - 1) as f64, steps).into_iter().rev().collect(),
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps).rev().map(|i| (i * ratio) as f64 + self.steps_offset as f64).collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                // numpy's arange(n, 0, -ratio): n, n - ratio, … one per step.
                (0..steps).map(|k| round_half_even(n as f64 - k as f64 * ratio) - 1.0).collect()
            }
        })
    }
}

/// numpy's `linspace` in f64.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| if i + 1 == n { end } else { start + step * i as f64 }).collect()
}

/// numpy rounds halves to even.
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - x.signum() } else { r }
}

/// One denoising run's scheduler state.
pub trait Scheduler: std::fmt::Debug + Send {
    /// Training timesteps, one per step, as the UNet receives them.
    fn timesteps(&self) -> &[f64];
    /// What the initial unit-variance noise is multiplied by.
    fn init_noise_sigma(&self) -> f64;
    /// The UNet's input for step `index`.
    fn scale_model_input(&self, sample: &Tensor, index: usize) -> Result<Tensor, PipelineError>;
    /// The sample after step `index`, given the model output for it.
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        noise: &mut Noise,
    ) -> Result<Tensor, PipelineError>;
}

/// Builds `kind` over the pipeline's config for `steps` steps.
pub fn build(kind: SchedulerKind, config: &SchedulerConfig, steps: usize) -> Result<Box<dyn Scheduler>, PipelineError> {
    if config.thresholding {
        return Err(PipelineError::Unsupported("scheduler thresholding".into()));
    }
    Ok(match kind {
        SchedulerKind::Euler => Box::new(Euler::new(config, steps, false)?),
        SchedulerKind::EulerAncestral => Box::new(Euler::new(config, steps, true)?),
        SchedulerKind::Ddim => Box::new(Ddim::new(config, steps)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sdxl() -> SchedulerConfig {
        serde_json::from_value(serde_json::json!({
            "_class_name": "EulerDiscreteScheduler",
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "clip_sample": false, "interpolation_type": "linear", "num_train_timesteps": 1000,
            "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": false,
            "skip_prk_steps": true, "steps_offset": 1, "timestep_spacing": "leading",
            "trained_betas": null, "use_karras_sigmas": false
        }))
        .unwrap()
    }

    #[test]
    fn spacings_match_diffusers() {
        let mut c = sdxl();
        assert_eq!(c.timesteps(4).unwrap(), vec![751.0, 501.0, 251.0, 1.0]);
        c.timestep_spacing = Spacing::Trailing;
        assert_eq!(c.timesteps(4).unwrap(), vec![999.0, 749.0, 499.0, 249.0]);
        assert_eq!(c.timesteps(3).unwrap(), vec![999.0, 666.0, 332.0]);
        c.timestep_spacing = Spacing::Linspace;
        assert_eq!(c.timesteps(1).unwrap(), vec![0.0]);
        assert!(c.timesteps(0).is_err());
    }

    #[test]
    fn scaled_linear_alphas_fall_from_near_one() {
        let a = sdxl().alphas_cumprod().unwrap();
        assert_eq!(a.len(), 1000);
        assert!((a[0] - (1.0 - 0.00085)).abs() < 1e-6);
        assert!(a[999] > 0.0 && a[999] < 0.01);
    }

    #[test]
    fn round_half_even_matches_numpy() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(333.3), 333.0);
    }
}
