//! Group normalisation, optionally followed by SiLU as every resnet and output stage applies it. candle's
//! `GroupNorm` is eleven tensor ops (six full passes over the activations, each allocating); on the CPU in f32
//! it is one op, `gameforge_kernels::group_norm`, of three passes; on CUDA it is `gameforge_cuda::group_norm`,
//! two launches (unless `GAMEFORGE_GPU_OPS=candle`). Elsewhere it is candle's.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use gameforge_kernels::{GroupNormShape, group_norm};

use super::contiguous_f32;

#[derive(Debug, Clone)]
pub struct GroupNorm {
    inner: candle_nn::GroupNorm,
    /// The scale and shift, for the CUDA kernel.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    affine: (Tensor, Tensor),
    groups: usize,
    eps: f64,
    /// The scale and shift as host vectors, when they are f32 on the CPU (our kernel's case).
    host: Option<(Vec<f32>, Vec<f32>)>,
}

impl GroupNorm {
    pub fn new(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> candle_core::Result<Self> {
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        Self::from_parts(weight, bias, groups, eps)
    }

    pub fn from_parts(weight: Tensor, bias: Tensor, groups: usize, eps: f64) -> candle_core::Result<Self> {
        let host = (weight.device().is_cpu() && weight.dtype() == DType::F32)
            .then(|| Ok::<_, candle_core::Error>((weight.to_vec1::<f32>()?, bias.to_vec1::<f32>()?)))
            .transpose()?;
        let channels = weight.dim(0)?;
        let affine = (weight.clone(), bias.clone());
        Ok(Self { inner: candle_nn::GroupNorm::new(weight, bias, channels, groups, eps)?, affine, groups, eps, host })
    }

    /// `silu(norm(xs))`, the pairing resnets and output stages use.
    pub fn forward_silu(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.run(xs, true)
    }

    fn run(&self, xs: &Tensor, silu: bool) -> candle_core::Result<Tensor> {
        let kind = if silu { "group_norm_silu" } else { "group_norm" };
        crate::profile::time(
            kind,
            || format!("{:?}/{}", xs.dims(), self.groups),
            xs.device(),
            || self.compute(xs, silu),
        )
    }

    fn compute(&self, xs: &Tensor, silu: bool) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if crate::gpu_ops::GpuOps::ours_on(xs.device()) {
            let (weight, bias) = &self.affine;
            return gameforge_cuda::group_norm(xs, weight, bias, self.groups, self.eps, silu);
        }
        match &self.host {
            Some((weight, bias)) if xs.device().is_cpu() && xs.dtype() == DType::F32 => {
                let op = CpuGroupNorm { groups: self.groups, eps: self.eps, weight, bias, silu };
                xs.contiguous()?.apply_op1_no_bwd(&op)
            }
            _ => {
                let xs = self.inner.forward(xs)?;
                if silu { candle_nn::ops::silu(&xs) } else { Ok(xs) }
            }
        }
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.run(xs, false)
    }
}

#[derive(Debug)]
struct CpuGroupNorm<'a> {
    groups: usize,
    eps: f64,
    weight: &'a [f32],
    bias: &'a [f32],
    silu: bool,
}

impl CustomOp1 for CpuGroupNorm<'_> {
    fn name(&self) -> &'static str {
        "gameforge-group-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(self.name(), storage, layout)?;
        let dims = layout.dims();
        if dims.len() < 3 || self.groups == 0 || dims[1] != self.weight.len() || !dims[1].is_multiple_of(self.groups) {
            bail!("gameforge-group-norm: {dims:?} for {} channels in {} groups", self.weight.len(), self.groups);
        }
        let shape = GroupNormShape {
            batch: dims[0],
            channels: dims[1],
            spatial: dims[2..].iter().product(),
            groups: self.groups,
            eps: self.eps,
        };
        let out = group_norm(input, self.weight, self.bias, shape, self.silu);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        crate::noise::Noise::new(seed).sample(shape, &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn equals_candles_group_norm_with_and_without_silu() {
        for (seed, dims) in [vec![2, 8, 5, 3], vec![1, 6, 7], vec![1, 32, 16, 16]].into_iter().enumerate() {
            let seed = seed as u64;
            // Shifted and scaled, as activations are: the mean must not swamp the variance.
            let x = ((random(&dims, seed) * 3.0).unwrap() + 5.0).unwrap();
            let weight = random(&[dims[1]], 10 + seed);
            let bias = random(&[dims[1]], 20 + seed);
            let groups = dims[1] / 2;
            let ours = GroupNorm::from_parts(weight.clone(), bias.clone(), groups, 1e-6).unwrap();
            let theirs = candle_nn::GroupNorm::new(weight, bias, dims[1], groups, 1e-6).unwrap();
            let expected = theirs.forward(&x).unwrap();
            assert!(max_difference(&ours.forward(&x).unwrap(), &expected) < 1e-5, "{dims:?}");
            let expected = candle_nn::ops::silu(&expected).unwrap();
            assert!(max_difference(&ours.forward_silu(&x).unwrap(), &expected) < 1e-5, "{dims:?} with silu");
        }
    }
}
