//! A dense layer whose weight is stored transposed, `(in, out)`, once at load. The GEMM then reads its right-hand
//! side row by row, which on the CPU runs 1.3–1.6× faster than reading diffusers' `(out, in)` layout across, as
//! candle's `Linear` does (gemm 0.19 with AVX-512 at SDXL's transformer shapes: 150–200 against 96–140
//! GFLOP/s); a GPU's GEMM takes either layout. On the CPU in f32 the product is `gameforge_kernels::linear`
//! (threaded by splitting the output, with the bias written first): candle's matmul leaves threading to gemm,
//! which scales badly on few cores.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Shape, Tensor, bail};
use candle_nn::VarBuilder;

use super::{contiguous_f32, host_bias};

#[derive(Debug, Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Option<Tensor>,
    /// The bias as a host vector when it is f32 on the CPU (our kernel's case), read once rather than per call.
    host_bias: Option<Vec<f32>>,
}

impl Linear {
    /// `weight` `(out, in)` and `bias` `(out)`, as diffusers and transformers save them.
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize) -> candle_core::Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        Self::from_parts(&weight, Some(vb.get(out_dim, "bias")?))
    }

    pub fn no_bias(vb: VarBuilder, in_dim: usize, out_dim: usize) -> candle_core::Result<Self> {
        Self::from_parts(&vb.get((out_dim, in_dim), "weight")?, None)
    }

    /// From a `(out, in)` weight.
    pub fn from_parts(weight: &Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let host_bias = host_bias(bias.as_ref())?;
        Ok(Self { weight_t: transposed(weight)?, bias, host_bias })
    }

    fn run(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let ours = xs.device().is_cpu() && xs.dtype() == DType::F32 && self.weight_t.dtype() == DType::F32;
        if ours && self.bias.is_some() == self.host_bias.is_some() {
            return xs.contiguous()?.apply_op2_no_bwd(&self.weight_t, &CpuLinear { bias: self.host_bias.as_deref() });
        }
        let ys = xs.broadcast_matmul(&self.weight_t)?;
        match &self.bias {
            Some(bias) => ys.broadcast_add(bias),
            None => Ok(ys),
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let name = || format!("{:?}·{:?}", xs.dims(), self.weight_t.dims());
        crate::profile::time("linear", name, xs.device(), || self.run(xs))
    }
}

/// `(out, in)` → `(in, out)`: on the CPU in f32 by our threaded kernel (candle's copy is single-threaded and, at
/// load, most of the full-size model's load time), elsewhere by candle.
fn transposed(weight: &Tensor) -> candle_core::Result<Tensor> {
    let (out_dim, in_dim) = weight.dims2()?;
    let (storage, layout) = weight.storage_and_layout();
    if let (candle_core::Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    {
        let data = gameforge_kernels::transpose(&data[start..end], out_dim, in_dim);
        return Tensor::from_vec(data, (in_dim, out_dim), weight.device());
    }
    drop(storage);
    weight.t()?.contiguous()
}

/// The dense layer as one candle op over a contiguous f32 input `(…, in)` and the `(in, out)` weight.
#[derive(Debug)]
struct CpuLinear<'a> {
    bias: Option<&'a [f32]>,
}

impl CustomOp2 for CpuLinear<'_> {
    fn name(&self) -> &'static str {
        "gameforge-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (input, weight) = (contiguous_f32(self.name(), s1, l1)?, contiguous_f32(self.name(), s2, l2)?);
        let (in_dim, out_dim) = l2.shape().dims2()?;
        let dims = l1.shape().dims();
        if in_dim == 0 || dims.last() != Some(&in_dim) {
            bail!("gameforge-linear: input {:?} for a {in_dim}→{out_dim} layer", l1.shape());
        }
        if self.bias.is_some_and(|b| b.len() != out_dim) {
            bail!("gameforge-linear: bias of the wrong length");
        }
        let rows = l1.shape().elem_count() / in_dim;
        let out = gameforge_kernels::linear(input, weight, self.bias, rows, in_dim);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("the input has a last dimension") = out_dim;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_candles_linear_for_every_input_rank_with_and_without_bias() {
        let mut noise = crate::noise::Noise::new(3);
        let weight = noise.sample((5, 7), &Device::Cpu).unwrap();
        let bias = noise.sample(5, &Device::Cpu).unwrap();
        for bias in [Some(bias), None] {
            let ours = Linear::from_parts(&weight, bias.clone()).unwrap();
            let theirs = candle_nn::Linear::new(weight.clone(), bias);
            for shape in [vec![3, 7], vec![2, 3, 7], vec![2, 2, 3, 7]] {
                let x = noise.sample(&shape[..], &Device::Cpu).unwrap();
                let diff = (ours.forward(&x).unwrap() - theirs.forward(&x).unwrap()).unwrap();
                let diff = diff.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(diff < 1e-5, "{shape:?}: differs by {diff}");
            }
        }
    }
}
