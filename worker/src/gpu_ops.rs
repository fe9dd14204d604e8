//! Which implementation runs the GPU path's hot ops (group norm, attention's softmax and, with the `cudnn`
//! feature, convolutions): the worker's own (`gameforge_cuda`, the default) or candle's. candle's stay
//! selectable, with `GAMEFORGE_GPU_OPS=candle`, so that one run on a lent GPU can profile both side by side
//! (tools/gpu-bench/run.sh does).

use std::str::FromStr;
use std::sync::OnceLock;

/// The environment variable that selects [`GpuOps`].
pub const ENV: &str = "GAMEFORGE_GPU_OPS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuOps {
    /// `gameforge_cuda`'s fused kernels and cuDNN at float accumulation.
    #[default]
    Gameforge,
    /// candle 0.11's own ops: unfused, im2col convolutions (or candle's cuDNN path with the `cudnn` feature).
    Candle,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ENV}={0:?}: expected `gameforge` or `candle`")]
pub struct UnknownGpuOps(String);

impl FromStr for GpuOps {
    type Err = UnknownGpuOps;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gameforge" => Ok(Self::Gameforge),
            "candle" => Ok(Self::Candle),
            other => Err(UnknownGpuOps(other.to_owned())),
        }
    }
}

impl GpuOps {
    /// The selection for this process, read once from [`ENV`]; a value it does not know is refused where the
    /// process starts ([`GpuOps::from_env`] in `main` and the benches), so this reads only known ones.
    pub fn selected() -> Self {
        static SELECTED: OnceLock<GpuOps> = OnceLock::new();
        *SELECTED.get_or_init(|| Self::from_env().unwrap_or_default())
    }

    /// [`ENV`]'s value: the default when it is unset or empty.
    pub fn from_env() -> Result<Self, UnknownGpuOps> {
        match std::env::var(ENV) {
            Ok(value) if !value.is_empty() => value.parse(),
            _ => Ok(Self::default()),
        }
    }

    /// Whether the worker's own kernels run the op on a CUDA device.
    pub fn ours_on(device: &candle_core::Device) -> bool {
        device.is_cuda() && Self::selected() == Self::Gameforge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_implementations_are_named_and_nothing_else_is() {
        assert_eq!("gameforge".parse(), Ok(GpuOps::Gameforge));
        assert_eq!("candle".parse(), Ok(GpuOps::Candle));
        let err = "Candle".parse::<GpuOps>().unwrap_err();
        assert_eq!(err.to_string(), "GAMEFORGE_GPU_OPS=\"Candle\": expected `gameforge` or `candle`");
        assert_eq!(GpuOps::default(), GpuOps::Gameforge);
    }

    #[test]
    fn the_cpu_never_runs_the_cuda_ops() {
        assert!(!GpuOps::ours_on(&candle_core::Device::Cpu));
    }
}
