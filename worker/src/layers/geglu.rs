//! GEGLU's gate: `value · gelu(gate)` over the two halves of the projection's last dimension, with the exact
//! (erf) GELU the reference uses. On the CPU in f32 it is one pass (`gameforge_kernels::geglu`) instead of
//! candle's copy of the strided half, scalar `erf` and separate product; elsewhere candle's.

use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Shape, Tensor, bail};

use super::contiguous_f32;

pub fn geglu(projected: &Tensor) -> candle_core::Result<Tensor> {
    crate::profile::time(
        "geglu",
        || format!("{:?}", projected.dims()),
        projected.device(),
        || {
            if projected.device().is_cpu() && projected.dtype() == DType::F32 {
                return projected.contiguous()?.apply_op1_no_bwd(&CpuGeglu);
            }
            let halves = projected.chunk(2, D::Minus1)?;
            &halves[0] * halves[1].gelu_erf()?
        },
    )
}

#[derive(Debug)]
struct CpuGeglu;

impl CustomOp1 for CpuGeglu {
    fn name(&self) -> &'static str {
        "gameforge-geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(self.name(), storage, layout)?;
        let mut dims = layout.dims().to_vec();
        let last = dims.last_mut().filter(|d| **d > 0 && **d % 2 == 0);
        let Some(last) = last else { bail!("gameforge-geglu: {:?} has no even last dimension", layout.dims()) };
        *last /= 2;
        let width = *last;
        Ok((CpuStorage::F32(gameforge_kernels::geglu(input, width)), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_candles_chunk_gelu_and_product() {
        let x = (crate::noise::Noise::new(9).sample((2, 5, 12), &Device::Cpu).unwrap() * 2.0).unwrap();
        let halves = x.chunk(2, D::Minus1).unwrap();
        let expected = (&halves[0] * halves[1].gelu_erf().unwrap()).unwrap();
        let ours = geglu(&x).unwrap();
        assert_eq!(ours.dims(), &[2, 5, 6]);
        let diff = (ours - expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        assert!(geglu(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap().narrow(1, 0, 1).unwrap()).is_err());
    }
}
