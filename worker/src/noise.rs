//! Seeded Gaussian noise, drawn on the CPU with a stream cipher RNG whose output is fixed by its algorithm, so a
//! seed gives the same image on any device, build or thread count.

use candle_core::{Device, Shape, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

#[derive(Debug)]
pub struct Noise {
    rng: ChaCha8Rng,
}

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn sample<S: Into<Shape>>(&mut self, shape: S, device: &Device) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        let values: Vec<f32> = (0..shape.elem_count()).map(|_| StandardNormal.sample(&mut self.rng)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(device)
    }

    /// Noise of the shape, device and dtype of `like`.
    pub fn like(&mut self, like: &Tensor) -> candle_core::Result<Tensor> {
        self.sample(like.shape().clone(), like.device())?.to_dtype(like.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_and_the_values_look_gaussian() {
        let a = Noise::new(7).sample(4096, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
        let b = Noise::new(7).sample(4096, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
        let c = Noise::new(8).sample(4096, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.06, "{mean}");
        assert!((var - 1.0).abs() < 0.08, "{var}");
    }
}
