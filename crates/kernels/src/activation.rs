//! SiLU and GEGLU's exact (erf) GELU with an exponential made of arithmetic the compiler vectorises: `f32::exp`
//! and `erf` are calls per element, which made the activations of a VAE decode cost more than its norms.

use rayon::prelude::*;

use crate::simd::vectorised;

/// `eˣ` to within 2 ulp (Cephes' `expf`: `x = n·ln2 + r`, a degree-7 polynomial in `r`, `2ⁿ` from the exponent
/// bits), with no branch and no call, so loops over it vectorise. Saturates below e⁻⁸⁷ and above e⁸⁸.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding then subtracting 1.5·2²³ rounds to the nearest integer without `round` (a call on baseline x86-64).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let rounded = x * LOG2E + ROUND;
    let n = rounded - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_2e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // `n` read from `rounded`'s low mantissa bits, where the rounding put it: `n as i32` (a saturating
    // conversion) stayed scalar, one lane at a time, even in AVX-512 code.
    let n_bits = rounded.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `x · sigmoid(x)`, in place. Inlined, so it is vectorised as wide as its caller is compiled.
#[inline(always)]
pub fn silu_in_place(values: &mut [f32]) {
    for v in values {
        *v /= 1.0 + exp(-*v);
    }
}

/// `erf(x)` to within 1.5·10⁻⁷ (Abramowitz and Stegun 7.1.26), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// GEGLU over rows of `2 · width` values (`[value | gate]`, as the projection before it writes them):
/// `value · gelu(gate)` with the exact GELU `0.5 · g · (1 + erf(g / √2))`, `rows × width` values out.
pub fn geglu(input: &[f32], width: usize) -> Vec<f32> {
    assert!(width > 0 && input.len().is_multiple_of(2 * width), "GEGLU rows of 2 × {width}");
    let mut out = vec![0f32; input.len() / 2];
    out.par_chunks_mut(width).zip(input.par_chunks(2 * width)).for_each(|(dst, row)| {
        let (value, gate) = row.split_at(width);
        vectorised!(|| {
            for ((d, v), g) in dst.iter_mut().zip(value).zip(gate) {
                *d = v * 0.5 * g * (1.0 + erf(g * std::f32::consts::FRAC_1_SQRT_2));
            }
        })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0f32;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let (ours, std) = (exp(x), x.exp());
            worst = worst.max(((ours - std) / std).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert_eq!(exp(1000.0), exp(88.0));
        assert!(exp(88.0).is_finite() && exp(-87.0) > 0.0);
    }

    #[test]
    fn silu_and_gelu_match_their_definitions() {
        let mut values: Vec<f32> = (-2000..2000).map(|i| i as f32 / 100.0).collect();
        let expected: Vec<f32> = values.iter().map(|x| x / (1.0 + (-x).exp())).collect();
        silu_in_place(&mut values);
        for (a, b) in values.iter().zip(&expected) {
            assert!((a - b).abs() <= 2e-6 * b.abs().max(1.0), "silu {a} vs {b}");
        }
        // erf against values from the series (Python's math.erf).
        for (x, e) in
            [(0.0f32, 0.0f32), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (-2.0, -0.995_322_3), (3.5, 0.999_999_3)]
        {
            assert!((erf(x) - e).abs() < 2e-7, "erf({x}) = {} not {e}", erf(x));
        }
        let out = geglu(&[2.0, -1.0, 1.0, 0.5], 2);
        assert!((out[0] - 2.0 * 0.841_344_7).abs() < 1e-6 && (out[1] - -0.345_731_4).abs() < 1e-6, "{out:?}");
    }
}
