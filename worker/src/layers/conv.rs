//! 2-D convolution. On the CPU in f32 it runs `gameforge_kernels::convolve`: candle 0.11's CPU convolution
//! transposes the input to NHWC, gathers each tile of patches with a scattered write, and scatters the product
//! back to NCHW (three strided passes around every GEMM). On CUDA with the `cudnn` feature it is
//! `gameforge_cuda::conv2d`, cuDNN at float accumulation (unless `GAMEFORGE_GPU_OPS=candle`). Elsewhere it is
//! candle's.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use gameforge_kernels::{ConvShape, convolve};

use super::{contiguous_f32, host_bias};

#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    /// The bias as a host vector when it is f32 on the CPU (our kernel's case), read once rather than per call.
    host_bias: Option<Vec<f32>>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// A square `kernel`×`kernel` convolution with a bias, as diffusers saves it (`weight`, `bias`).
    pub fn new(
        vb: VarBuilder,
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        let weight = vb.get((out_c, in_c, kernel, kernel), "weight")?;
        Self::from_parts(weight, Some(vb.get(out_c, "bias")?), stride, padding)
    }

    pub fn from_parts(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        let host_bias = host_bias(bias.as_ref())?;
        Ok(Self { weight, bias, host_bias, stride, padding })
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let name = || format!("{:?}→{:?} s{} p{}", xs.dims(), self.weight.dims(), self.stride, self.padding);
        crate::profile::time("conv", name, xs.device(), || self.run(xs))
    }
}

impl Conv2d {
    fn run(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let ours = xs.device().is_cpu() && xs.dtype() == DType::F32 && self.weight.dtype() == DType::F32;
        if ours && self.bias.is_some() == self.host_bias.is_some() {
            let kernel = CpuConv { stride: self.stride, padding: self.padding, bias: self.host_bias.as_deref() };
            return xs.contiguous()?.apply_op2_no_bwd(&self.weight.contiguous()?, &kernel);
        }
        let xs = self.library_conv(xs)?;
        match &self.bias {
            Some(bias) => xs.broadcast_add(&bias.reshape((1, bias.dim(0)?, 1, 1))?),
            None => Ok(xs),
        }
    }

    /// The convolution without its bias, where our CPU kernel does not run it.
    fn library_conv(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cudnn")]
        if crate::gpu_ops::GpuOps::ours_on(xs.device()) {
            return gameforge_cuda::conv2d(xs, &self.weight, self.stride, self.padding);
        }
        xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)
    }
}

/// The convolution as one candle op over contiguous NCHW f32 input and OIHW weights.
#[derive(Debug)]
struct CpuConv<'a> {
    stride: usize,
    padding: usize,
    bias: Option<&'a [f32]>,
}

impl CustomOp2 for CpuConv<'_> {
    fn name(&self) -> &'static str {
        "gameforge-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (input, weight) = (contiguous_f32(self.name(), s1, l1)?, contiguous_f32(self.name(), s2, l2)?);
        let (batch, in_c, height, width) = l1.shape().dims4()?;
        let (out_c, w_in, kh, kw) = l2.shape().dims4()?;
        if w_in != in_c || kh != kw {
            bail!("gameforge-conv2d: weight {:?} for input {:?}", l2.shape(), l1.shape());
        }
        if height + 2 * self.padding < kh || width + 2 * self.padding < kw {
            bail!("gameforge-conv2d: a {kh}×{kw} kernel on a {height}×{width} input padded by {}", self.padding);
        }
        if self.bias.as_ref().is_some_and(|b| b.len() != out_c) {
            bail!("gameforge-conv2d: bias of the wrong length");
        }
        let shape =
            ConvShape { batch, in_c, height, width, out_c, kernel: kh, stride: self.stride, padding: self.padding };
        let out = convolve(input, weight, self.bias, shape);
        Ok((CpuStorage::F32(out), Shape::from((batch, out_c, shape.out_height(), shape.out_width()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        crate::noise::Noise::new(seed).sample(shape, &Device::Cpu).unwrap()
    }

    /// Ours against candle's own convolution, over the shapes SDXL uses and the awkward ones.
    #[test]
    fn equals_candles_convolution() {
        let cases = [
            // (batch, in, h, w, out, kernel, stride, padding)
            (2, 8, 9, 7, 5, 3, 1, 1),
            (1, 4, 16, 16, 6, 3, 2, 1),
            (1, 4, 17, 15, 6, 3, 2, 0),
            (2, 6, 5, 5, 3, 1, 1, 0),
            (1, 3, 4, 4, 2, 3, 1, 2),
            (1, 3, 3, 3, 2, 3, 1, 0),
            (1, 1, 1, 1, 2, 1, 1, 0),
            // Planes wide enough for the shifted-view path, padded by 1, 0 and 2.
            (2, 3, 20, 30, 4, 3, 1, 1),
            (1, 2, 30, 30, 3, 3, 1, 0),
            (1, 2, 25, 25, 2, 3, 1, 2),
            // Rows of 32 pixels and more: the direct kernel where the CPU has AVX-512 (a partial last vector,
            // a partial block of output channels, more input channels than one pass sums).
            (2, 5, 6, 40, 7, 3, 1, 1),
            (1, 70, 3, 33, 13, 3, 1, 1),
            (1, 3, 4, 36, 6, 3, 1, 0),
        ];
        for (seed, &(b, c, h, w, o, k, s, p)) in cases.iter().enumerate() {
            let x = random(&[b, c, h, w], seed as u64);
            let weight = random(&[o, c, k, k], 100 + seed as u64);
            let bias = random(&[o], 200 + seed as u64);
            let ours = Conv2d::from_parts(weight.clone(), Some(bias.clone()), s, p).unwrap().forward(&x).unwrap();
            let theirs =
                x.conv2d(&weight, p, s, 1, 1).unwrap().broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap()).unwrap();
            assert_eq!(ours.dims(), theirs.dims(), "case {seed}");
            let diff = (ours - theirs).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let diff = diff.to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "case {seed}: differs by {diff}");
        }
    }

    /// Shapes with enough pixels and channels for Winograd's F(4×4, 3×3) (planes that are not whole tiles, a
    /// batch of two, padding 1 and 0): its rounding is several times the direct sum's, so the bound is relative
    /// to the output's magnitude, as the kernel's own test against f64 sums sets it.
    #[test]
    fn winograd_sized_convolutions_equal_candles() {
        for (seed, &(b, c, h, w, o, p)) in
            [(1, 33, 45, 50, 40, 1), (2, 32, 30, 37, 34, 1), (1, 40, 50, 49, 32, 0)].iter().enumerate()
        {
            let x = random(&[b, c, h, w], 300 + seed as u64);
            let weight = random(&[o, c, 3, 3], 400 + seed as u64);
            let bias = random(&[o], 500 + seed as u64);
            let ours = Conv2d::from_parts(weight.clone(), Some(bias.clone()), 1, p).unwrap().forward(&x).unwrap();
            let theirs =
                x.conv2d(&weight, p, 1, 1, 1).unwrap().broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap()).unwrap();
            assert_eq!(ours.dims(), theirs.dims(), "case {seed}");
            let rms = theirs.sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
            let diff = (ours - theirs).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let diff = diff.to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4 * rms, "case {seed}: differs by {diff}, output rms {rms}");
        }
    }
}
