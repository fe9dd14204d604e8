//! Inputs and f64 references shared by the GPU tests (gpu.rs) and the emulated kernels' tests (emulated.rs).
#![allow(dead_code)] // each test file uses its own share

/// The dtypes the kernels are instantiated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

pub const PRECISIONS: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// `values` rounded to this precision (round to nearest even), as the f32 values they become.
    pub fn round(self, values: &[f32]) -> Vec<f32> {
        match self {
            Precision::F32 => values.to_vec(),
            Precision::F16 => values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
            Precision::Bf16 => values.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect(),
        }
    }

    /// A bound on the relative error of one result: half a unit in the last place of the output's dtype plus
    /// the f32 arithmetic's share.
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::F32 => 2e-5,
            Precision::F16 => 2e-3,
            Precision::Bf16 => 1.6e-2,
        }
    }
}

/// Deterministic values in [-1, 1) (a small LCG: the tests need spread, not statistical quality).
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let step = |s: u64| s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut state = step(seed);
    (0..len)
        .map(|_| {
            state = step(state);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// The largest difference against `reference`, relative to `scale` plus the reference's own magnitude.
pub fn worst(got: &[f64], reference: &[f64], scale: f64) -> f64 {
    assert_eq!(got.len(), reference.len());
    got.iter()
        .zip(reference)
        .map(|(g, r)| (g - r).abs() / (scale + r.abs()))
        .fold(0.0, |w, e| if e.is_nan() { f64::INFINITY } else { w.max(e) })
}

/// A group-norm case: dims `(batch, channels, …)`, groups, and an offset added to the values (a mean far from
/// zero against a spread of ±3 is the case a one-pass sum of squares gets wrong).
pub struct GroupNormCase {
    pub dims: &'static [usize],
    pub groups: usize,
    pub offset: f32,
}

pub fn group_norm_reference(x: &[f64], w: &[f64], b: &[f64], dims: &[usize], groups: usize, silu: bool) -> Vec<f64> {
    let (batch, channels) = (dims[0], dims[1]);
    let spatial: usize = dims[2..].iter().product();
    let group_len = channels / groups * spatial;
    let mut out = vec![0.0; x.len()];
    for g in 0..batch * groups {
        let run = &x[g * group_len..(g + 1) * group_len];
        let mean = run.iter().sum::<f64>() / group_len as f64;
        let var = run.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / group_len as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for (i, v) in run.iter().enumerate() {
            let c = (g % groups) * (channels / groups) + i / spatial;
            let y = (v - mean) * rstd * w[c] + b[c];
            out[g * group_len + i] = if silu { y / (1.0 + (-y).exp()) } else { y };
        }
    }
    out
}

/// The inputs of one group-norm case at one precision: x, weight, bias, already rounded to it.
pub fn group_norm_inputs(case: &GroupNormCase, seed: u64, precision: Precision) -> [Vec<f32>; 3] {
    let len: usize = case.dims.iter().product();
    let x: Vec<f32> = values(len, seed).iter().map(|v| v * 3.0 + case.offset).collect();
    let channels = case.dims[1];
    [
        precision.round(&x),
        precision.round(&values(channels, 100 + seed)),
        precision.round(&values(channels, 200 + seed)),
    ]
}

/// Checks one group-norm result against the f64 reference of its (rounded) inputs.
pub fn check_group_norm(case: &GroupNormCase, inputs: &[Vec<f32>; 3], precision: Precision, silu: bool, got: &[f64]) {
    let [x, w, b] = inputs;
    let reference = group_norm_reference(&widen(x), &widen(w), &widen(b), case.dims, case.groups, silu);
    // Normalised outputs are of order 1: relative to 1 plus their magnitude.
    let err = worst(got, &reference, 1.0);
    assert!(err < 4.0 * precision.tolerance(), "{:?} {precision:?} silu={silu}: worst {err}", case.dims);
}

pub fn softmax_reference(x: &[f64], cols: usize, scale: f64) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().map(|v| v * scale).fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = row.iter().map(|v| (v * scale - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| e / sum)
        })
        .collect()
}

/// Checks one softmax result (rows of `cols`) against the f64 reference of its (rounded) input.
pub fn check_softmax(x: &[f32], cols: usize, scale: f64, precision: Precision, got: &[f64]) {
    let reference = softmax_reference(&widen(x), cols, scale);
    // Probabilities: relative to their magnitude plus 1/cols.
    let err = worst(got, &reference, 1.0 / cols as f64);
    assert!(err < 4.0 * precision.tolerance(), "rows of {cols} {precision:?}: worst {err}");
    for row in got.chunks(cols) {
        let sum: f64 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-2, "a row of {cols} {precision:?} sums to {sum}");
    }
}

/// Softmax cases (rows, cols, spread): cross-attention's 77 keys, self-attention rows at 32², 64² and 128²
/// latents, an odd row, one column; a spread of 480 scaled by 1/8 reaches ±60, where exp overflows f32 unless
/// the row's maximum is subtracted first.
pub const SOFTMAX_CASES: [(usize, usize, f32); 6] =
    [(40, 77, 8.0), (8, 1024, 8.0), (4, 4096, 480.0), (2, 16_384, 8.0), (5, 333, 8.0), (7, 1, 8.0)];

pub const SOFTMAX_SCALE: f64 = 0.125;
