//! Group norm and scaled softmax as candle ops over the PTX of kernels/gameforge.cu.
// Launching a kernel is FFI: each launch below passes the arguments its kernel's signature declares.
#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use half::{bf16, f16};

use crate::launch::{GROUP_NORM_THREADS, GroupNormGrid, softmax_threads};

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// The name the PTX module is cached under in candle's device.
const MODULE: &str = "gameforge";

/// `silu(group_norm(xs))` when `silu`, else `group_norm(xs)`, over `(batch, channels, …)` in `groups` groups,
/// with the per-channel `weight` and `bias` (converted to `xs`'s dtype). f32, f16 or bf16 on a CUDA device.
pub fn group_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, groups: usize, eps: f64, silu: bool) -> Result<Tensor> {
    let (weight, bias) = (weight.to_dtype(xs.dtype())?.contiguous()?, bias.to_dtype(xs.dtype())?.contiguous()?);
    xs.contiguous()?.apply_op3_no_bwd(&weight, &bias, &GroupNormOp { groups, eps: eps as f32, silu })
}

/// `softmax(xs · scale)` over the last dimension, in `xs`'s dtype (f32, f16 or bf16) on a CUDA device.
pub fn scaled_softmax(xs: &Tensor, scale: f32) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&SoftmaxOp { scale })
}

fn suffix(op: &str, dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        other => bail!("{op}: no kernel for {other:?}"),
    })
}

fn contiguous<'a, T: CudaDType>(op: &str, storage: &'a CudaStorage, layout: &Layout) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(storage.as_cuda_slice::<T>()?.slice(start..end)),
        None => bail!("{op}: the input is not contiguous"),
    }
}

#[derive(Debug)]
struct GroupNormOp {
    groups: usize,
    eps: f32,
    silu: bool,
}

impl GroupNormOp {
    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        grid: GroupNormGrid,
        spatial: u32,
        (x, x_layout): (&CudaStorage, &Layout),
        (weight, w_layout): (&CudaStorage, &Layout),
        (bias, b_layout): (&CudaStorage, &Layout),
    ) -> Result<CudaStorage> {
        let name = self.name();
        let dtype = suffix(name, x.dtype())?;
        let device = x.device();
        let xs = contiguous::<T>(name, x, x_layout)?;
        let weight = contiguous::<T>(name, weight, w_layout)?;
        let bias = contiguous::<T>(name, bias, b_layout)?;
        // SAFETY: the stats launch writes every partial before the apply launch reads it (same stream), and the
        // apply launch writes every output element.
        let partial = unsafe { device.alloc::<f32>(grid.partial_len())? };
        let out = unsafe { device.alloc::<T>(x_layout.shape().elem_count())? };
        let cfg = LaunchConfig {
            grid_dim: (grid.chunks, grid.groups_total, 1),
            block_dim: (GROUP_NORM_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };

        let stats = device.get_or_load_custom_func(&format!("group_norm_stats_{dtype}"), MODULE, ptx::GAMEFORGE)?;
        let mut args = stats.builder();
        args.arg(&xs).arg(&partial).arg(&grid.group_len).arg(&grid.chunk_len);
        // SAFETY: group_norm_stats_T(const T*, float*, uint32_t, uint32_t); the grid covers the buffers' lengths.
        unsafe { args.launch(cfg) }.w()?;

        let apply = device.get_or_load_custom_func(&format!("group_norm_apply_{dtype}"), MODULE, ptx::GAMEFORGE)?;
        let (groups, silu) = (self.groups as u32, i32::from(self.silu));
        let mut args = apply.builder();
        args.arg(&xs).arg(&partial).arg(&weight).arg(&bias).arg(&out);
        args.arg(&grid.group_len).arg(&grid.chunk_len).arg(&spatial).arg(&groups).arg(&self.eps).arg(&silu);
        // SAFETY: group_norm_apply_T(const T*, const float*, const T*, const T*, T*, uint32_t ×4, float, int).
        unsafe { args.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "gameforge-cuda-group-norm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("{}: a CUDA op, given CPU tensors", self.name())
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        weight: &CudaStorage,
        w_layout: &Layout,
        bias: &CudaStorage,
        b_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dims = x_layout.dims();
        if dims.len() < 2 {
            bail!("{}: input {dims:?} has no channel dimension", self.name());
        }
        let (batch, channels, spatial) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
        if w_layout.dims() != [channels] || b_layout.dims() != [channels] {
            bail!(
                "{}: weight {:?} and bias {:?} for {channels} channels",
                self.name(),
                w_layout.dims(),
                b_layout.dims()
            );
        }
        if weight.dtype() != x.dtype() || bias.dtype() != x.dtype() {
            bail!("{}: weight and bias must have the input's dtype {:?}", self.name(), x.dtype());
        }
        let grid = GroupNormGrid::new(batch, channels, spatial, self.groups).map_err(candle_core::Error::wrap)?;
        // group_len = channels / groups × spatial fits u32 (the grid checked), so spatial does.
        let spatial = spatial as u32;
        let args = ((x, x_layout), (weight, w_layout), (bias, b_layout));
        let out = match x.dtype() {
            DType::F32 => self.launch::<f32>(grid, spatial, args.0, args.1, args.2)?,
            DType::F16 => self.launch::<f16>(grid, spatial, args.0, args.1, args.2)?,
            DType::BF16 => self.launch::<bf16>(grid, spatial, args.0, args.1, args.2)?,
            other => bail!("{}: no kernel for {other:?}", self.name()),
        };
        Ok((out, x_layout.shape().clone()))
    }
}

#[derive(Debug)]
struct SoftmaxOp {
    scale: f32,
}

impl SoftmaxOp {
    fn launch<T: CudaDType + DeviceRepr>(&self, storage: &CudaStorage, layout: &Layout) -> Result<CudaStorage> {
        let name = self.name();
        let dtype = suffix(name, storage.dtype())?;
        let device = storage.device();
        let xs = contiguous::<T>(name, storage, layout)?;
        let count = layout.shape().elem_count();
        let cols = layout.dims().last().copied().unwrap_or(1);
        let threads = softmax_threads(cols).map_err(candle_core::Error::wrap)?;
        let rows = count / cols;
        let Some(rows) = u32::try_from(rows).ok().filter(|&r| r <= i32::MAX as u32) else {
            bail!("{name}: {rows} rows are too many for one launch");
        };
        let cols = cols as u32;
        // SAFETY: one block per row writes every element of its row.
        let out = unsafe { device.alloc::<T>(count)? };
        let cfg = LaunchConfig { grid_dim: (rows, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
        let func = device.get_or_load_custom_func(&format!("scaled_softmax_{dtype}"), MODULE, ptx::GAMEFORGE)?;
        let mut args = func.builder();
        args.arg(&xs).arg(&out).arg(&cols).arg(&self.scale);
        // SAFETY: scaled_softmax_T(const T*, T*, uint32_t, float); rows × cols is the buffers' length.
        unsafe { args.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
    }
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "gameforge-cuda-scaled-softmax"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("{}: a CUDA op, given CPU tensors", self.name())
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let out = match storage.dtype() {
            DType::F32 => self.launch::<f32>(storage, layout)?,
            DType::F16 => self.launch::<f16>(storage, layout)?,
            DType::BF16 => self.launch::<bf16>(storage, layout)?,
            other => bail!("{}: no kernel for {other:?}", self.name()),
        };
        Ok((out, layout.shape().clone()))
    }
}
