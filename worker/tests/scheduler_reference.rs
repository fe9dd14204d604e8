//! Schedulers against diffusers' own: training alphas, timesteps, sigmas and initial noise scale for every
//! spacing, offset and step count recorded, and single steps for each prediction type.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use sdxl_worker::noise::Noise;
use sdxl_worker::scheduler::{self, Ddim, Euler, Scheduler, SchedulerConfig, SchedulerKind};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Fixture {
    base_config: Value,
    alphas_cumprod: Vec<f32>,
    schedules: Vec<Schedule>,
    step_examples: Vec<StepExample>,
}

#[derive(Deserialize)]
struct Schedule {
    scheduler: String,
    config: Value,
    steps: usize,
    timesteps: Vec<f64>,
    init_noise_sigma: f64,
    #[serde(default)]
    sigmas: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct StepExample {
    scheduler: String,
    config: Value,
    steps: usize,
    shape: Vec<usize>,
    step_records: Vec<StepRecord>,
}

#[derive(Deserialize)]
struct StepRecord {
    index: usize,
    sample: Vec<f32>,
    scaled_model_input: Vec<f32>,
    model_output: Vec<f32>,
    prev_sample: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/schedules.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn config(base: &Value, overrides: &Value) -> SchedulerConfig {
    let mut merged = base.clone();
    for (k, v) in overrides.as_object().unwrap() {
        merged[k] = v.clone();
    }
    serde_json::from_value(merged).unwrap()
}

fn kind(name: &str) -> SchedulerKind {
    match name {
        "euler" => SchedulerKind::Euler,
        "euler_ancestral" => SchedulerKind::EulerAncestral,
        "ddim" => SchedulerKind::Ddim,
        other => panic!("unknown scheduler {other}"),
    }
}

/// Relative for large values, absolute below 1: the reference computes in f32 (about 6e-8 relative per
/// operation), so agreement to 1e-5 means the same formula, not a different one that happens to be close.
fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs().max(1.0)
}

#[test]
fn training_alphas_match() {
    let f = fixture();
    let ours = config(&f.base_config, &Value::Object(Default::default())).alphas_cumprod().unwrap();
    for (i, (a, b)) in ours.iter().zip(&f.alphas_cumprod).enumerate() {
        assert!(close(f64::from(*a), f64::from(*b), 1e-6), "alphas_cumprod[{i}]: {a} vs {b}");
    }
}

#[test]
fn timesteps_sigmas_and_initial_noise_match_for_every_spacing() {
    let f = fixture();
    assert!(f.schedules.len() >= 54);
    for s in &f.schedules {
        let c = config(&f.base_config, &s.config);
        let label = format!("{} {} steps {}", s.scheduler, s.config, s.steps);
        let built = scheduler::build(kind(&s.scheduler), &c, s.steps).unwrap();
        assert_eq!(built.timesteps().len(), s.timesteps.len(), "{label}");
        for (a, b) in built.timesteps().iter().zip(&s.timesteps) {
            assert!((a - b).abs() < 1e-3, "{label}: timesteps {:?} vs {:?}", built.timesteps(), s.timesteps);
        }
        assert!(close(built.init_noise_sigma(), s.init_noise_sigma, 1e-5), "{label}: init_noise_sigma");
        if let Some(sigmas) = &s.sigmas {
            let euler = Euler::new(&c, s.steps, s.scheduler == "euler_ancestral").unwrap();
            for (a, b) in euler.sigmas().iter().zip(sigmas) {
                assert!(close(*a, *b, 1e-5), "{label}: sigmas {:?} vs {sigmas:?}", euler.sigmas());
            }
        }
    }
}

fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
}

fn assert_values(what: &str, ours: &Tensor, reference: &[f32]) {
    let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(close(f64::from(*a), f64::from(*b), 1e-5), "{what}[{i}]: {a} vs {b}");
    }
}

#[test]
fn single_steps_match_for_each_prediction_type() {
    let f = fixture();
    assert_eq!(f.step_examples.len(), 8);
    for example in &f.step_examples {
        let c = config(&f.base_config, &example.config);
        let mut s: Box<dyn Scheduler> = match example.scheduler.as_str() {
            "euler" => Box::new(Euler::new(&c, example.steps, false).unwrap()),
            "ddim" => Box::new(Ddim::new(&c, example.steps).unwrap()),
            other => panic!("unknown scheduler {other}"),
        };
        let mut noise = Noise::new(0);
        for record in &example.step_records {
            let label = format!("{} {} step {}", example.scheduler, example.config, record.index);
            let sample = tensor(&record.sample, &example.shape);
            let scaled = s.scale_model_input(&sample, record.index).unwrap();
            assert_values(&format!("{label}: scaled input"), &scaled, &record.scaled_model_input);
            let output = tensor(&record.model_output, &example.shape);
            let prev = s.step(&output, record.index, &sample, &mut noise).unwrap();
            assert_values(&format!("{label}: prev sample"), &prev, &record.prev_sample);
        }
    }
}
