//! 2-D convolution through cuDNN, computed in float for every dtype.
//!
//! candle's own cuDNN path sets the convolution's compute type to the data's, so f16 sums run in half precision
//! (PyTorch's descriptors compute in float), and it asks cuDNN for an algorithm and allocates a zeroed
//! workspace on every call. Here an f16/bf16 convolution is cuDNN's "pseudo-half" configuration (data in half,
//! arithmetic in float) on tensor cores; f32 allows TF32 tensor cores as PyTorch's cuDNN default does. The
//! descriptors and the algorithm (cuDNN's heuristic choice, as PyTorch without `benchmark`) are made once per
//! shape, and one workspace per device grows to the largest any shape needs. When that workspace cannot be
//! allocated (the device is full), the convolution runs with implicit GEMM, which needs none, rather than fail:
//! slower, but the job goes on (PyTorch too falls back to algorithms with smaller workspaces).
// cuDNN's launch is FFI: the descriptors below describe exactly the buffers passed to it.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::{
    ConvDescriptor, ConvForward, Cudnn, CudnnDataType, FilterDescriptor, TensorDescriptor, sys,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr};
use candle_core::cuda_backend::{CudaDType, DeviceId};
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType, bail,
};
use half::{bf16, f16};

/// `conv2d(xs, weight)` with square stride and padding, no dilation or groups, over NCHW `xs` and OIHW `weight`
/// of one dtype (f32, f16 or bf16) on a CUDA device. No bias: add it after.
pub fn conv2d(xs: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    xs.contiguous()?.apply_op2_no_bwd(&weight.contiguous()?, &Conv2dOp { stride, padding, without_workspace: false })
}

/// [`conv2d`] as it runs when its workspace cannot be allocated: implicit GEMM, no workspace. For the GPU tests,
/// which cannot fill a device on purpose.
#[doc(hidden)]
pub fn conv2d_without_workspace(xs: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    xs.contiguous()?.apply_op2_no_bwd(&weight.contiguous()?, &Conv2dOp { stride, padding, without_workspace: true })
}

/// The algorithm that needs no workspace and runs every configuration here.
const NO_WORKSPACE: sys::cudnnConvolutionFwdAlgo_t =
    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConvKey {
    dtype: DType,
    input: [i32; 4],
    filter: [i32; 4],
    stride: i32,
    padding: i32,
}

impl ConvKey {
    fn output(&self) -> [i32; 4] {
        let [batch, _, height, width] = self.input;
        let [out_c, _, kh, kw] = self.filter;
        let out = |size: i32, k: i32| (size + 2 * self.padding - k) / self.stride + 1;
        [batch, out_c, out(height, kh), out(width, kw)]
    }
}

/// One shape's descriptors and algorithm, for data of type `T` computed in f32.
struct Prepared<T: CudnnDataType> {
    conv: ConvDescriptor<f32>,
    input: TensorDescriptor<T>,
    filter: FilterDescriptor<T>,
    output: TensorDescriptor<T>,
    algorithm: sys::cudnnConvolutionFwdAlgo_t,
    workspace: usize,
}

impl<T: CudnnDataType> Prepared<T> {
    fn new(handle: &Arc<Cudnn>, key: &ConvKey) -> Result<Self> {
        use sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW as NCHW;
        let mut conv = handle
            .create_conv2d::<f32>(
                [key.padding; 2],
                [key.stride; 2],
                [1, 1],
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(candle_core::Error::wrap)?;
        // Tensor cores: for half data PyTorch asks for them; for f32, DEFAULT_MATH lets cuDNN use TF32 as
        // PyTorch's `allow_tf32` (true for cuDNN) does.
        let math = if T::DATA_TYPE == sys::cudnnDataType_t::CUDNN_DATA_FLOAT {
            sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
        } else {
            sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH
        };
        conv.set_math_type(math).map_err(candle_core::Error::wrap)?;
        let input = handle.create_4d_tensor::<T>(NCHW, key.input).map_err(candle_core::Error::wrap)?;
        let filter = handle.create_4d_filter::<T>(NCHW, key.filter).map_err(candle_core::Error::wrap)?;
        let output = handle.create_4d_tensor::<T>(NCHW, key.output()).map_err(candle_core::Error::wrap)?;
        let forward = ConvForward { conv: &conv, x: &input, w: &filter, y: &output };
        let algorithm = forward.pick_algorithm().map_err(candle_core::Error::wrap)?;
        let workspace = forward.get_workspace_size(algorithm).map_err(candle_core::Error::wrap)?;
        Ok(Self { conv, input, filter, output, algorithm, workspace })
    }
}

/// Each dtype's prepared shapes.
#[derive(Default)]
struct Shapes {
    f32: HashMap<ConvKey, Prepared<f32>>,
    f16: HashMap<ConvKey, Prepared<f16>>,
    bf16: HashMap<ConvKey, Prepared<bf16>>,
}

trait Cached: CudnnDataType + CudaDType + DeviceRepr + WithDType + Sized {
    fn shapes(shapes: &mut Shapes) -> &mut HashMap<ConvKey, Prepared<Self>>;
}

impl Cached for f32 {
    fn shapes(shapes: &mut Shapes) -> &mut HashMap<ConvKey, Prepared<Self>> {
        &mut shapes.f32
    }
}

impl Cached for f16 {
    fn shapes(shapes: &mut Shapes) -> &mut HashMap<ConvKey, Prepared<Self>> {
        &mut shapes.f16
    }
}

impl Cached for bf16 {
    fn shapes(shapes: &mut Shapes) -> &mut HashMap<ConvKey, Prepared<Self>> {
        &mut shapes.bf16
    }
}

/// A device's cuDNN handle (bound to candle's stream for it), prepared shapes and workspace.
struct PerDevice {
    handle: Arc<Cudnn>,
    shapes: Shapes,
    workspace: Option<CudaSlice<u8>>,
}

thread_local! {
    // cuDNN handles are neither Send nor Sync; candle keeps its own per thread for the same reason.
    static DEVICES: RefCell<HashMap<DeviceId, PerDevice>> = RefCell::new(HashMap::new());
}

#[derive(Debug)]
struct Conv2dOp {
    stride: usize,
    padding: usize,
    /// Skip the preferred algorithm (tests of the fallback).
    without_workspace: bool,
}

impl Conv2dOp {
    fn launch<T: Cached>(
        &self,
        key: ConvKey,
        device: &CudaDevice,
        input: CudaView<'_, T>,
        filter: CudaView<'_, T>,
        out_len: usize,
    ) -> Result<CudaStorage> {
        // SAFETY: the convolution writes every output element (beta is 0, so nothing is read from it).
        let mut out = unsafe { device.alloc::<T>(out_len)? };
        DEVICES.with(|devices| -> Result<()> {
            let mut devices = devices.borrow_mut();
            let per_device = match devices.entry(device.id()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let handle = Cudnn::new(device.cuda_stream()).map_err(candle_core::Error::wrap)?;
                    entry.insert(PerDevice { handle, shapes: Shapes::default(), workspace: None })
                }
            };
            let prepared = match T::shapes(&mut per_device.shapes).entry(key) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(Prepared::new(&per_device.handle, &key)?),
            };
            let mut algorithm = if self.without_workspace { NO_WORKSPACE } else { prepared.algorithm };
            if algorithm != NO_WORKSPACE && per_device.workspace.as_ref().is_none_or(|w| w.len() < prepared.workspace) {
                // The old one goes first: the two need not both fit. Stream order keeps earlier convolutions'
                // use of it before the free.
                per_device.workspace = None;
                // SAFETY: cuDNN's scratch; it is written before it is read.
                match unsafe { device.alloc::<u8>(prepared.workspace.max(1)) } {
                    Ok(workspace) => per_device.workspace = Some(workspace),
                    // No room: this call goes without; the next one tries again.
                    Err(_) => algorithm = NO_WORKSPACE,
                }
            }
            let workspace = if algorithm == NO_WORKSPACE { None } else { per_device.workspace.as_mut() };
            let forward =
                ConvForward { conv: &prepared.conv, x: &prepared.input, w: &prepared.filter, y: &prepared.output };
            // SAFETY: `input`, `filter` and `out` are contiguous NCHW/OIHW buffers of exactly the descriptors'
            // shapes and dtype (checked by the caller and by `key`), on the stream the handle is bound to; the
            // workspace is at least what `algorithm` asked for (implicit GEMM asks for none).
            unsafe {
                forward.launch(algorithm, workspace, (T::from_f64(1.0), T::from_f64(0.0)), &input, &filter, &mut out)
            }
            .map_err(candle_core::Error::wrap)
        })?;
        Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "gameforge-cudnn-conv2d"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("{}: a CUDA op, given CPU tensors", self.name())
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        w: &CudaStorage,
        w_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let name = self.name();
        let (batch, in_c, height, width) = x_layout.shape().dims4()?;
        let (out_c, w_in, kh, kw) = w_layout.shape().dims4()?;
        if w_in != in_c || x.dtype() != w.dtype() || self.stride == 0 {
            bail!(
                "{name}: weight {:?} {:?} for input {:?} {:?}",
                w_layout.dims(),
                w.dtype(),
                x_layout.dims(),
                x.dtype()
            );
        }
        if height + 2 * self.padding < kh || width + 2 * self.padding < kw {
            bail!("{name}: a {kh}×{kw} kernel on a {height}×{width} input padded by {}", self.padding);
        }
        let int = |v: usize| i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("{name}: {v} overflows")));
        let key = ConvKey {
            dtype: x.dtype(),
            input: [int(batch)?, int(in_c)?, int(height)?, int(width)?],
            filter: [int(out_c)?, int(in_c)?, int(kh)?, int(kw)?],
            stride: int(self.stride)?,
            padding: int(self.padding)?,
        };
        let out_dims = key.output().map(|d| d as usize);
        let out_len = out_dims.iter().product();
        let (Some((x0, x1)), Some((w0, w1))) = (x_layout.contiguous_offsets(), w_layout.contiguous_offsets()) else {
            bail!("{name}: the input and weight must be contiguous");
        };
        let device = x.device();
        let out = match x.dtype() {
            DType::F32 => {
                let (input, filter) = (x.as_cuda_slice::<f32>()?, w.as_cuda_slice::<f32>()?);
                self.launch(key, device, input.slice(x0..x1), filter.slice(w0..w1), out_len)?
            }
            DType::F16 => {
                let (input, filter) = (x.as_cuda_slice::<f16>()?, w.as_cuda_slice::<f16>()?);
                self.launch(key, device, input.slice(x0..x1), filter.slice(w0..w1), out_len)?
            }
            DType::BF16 => {
                let (input, filter) = (x.as_cuda_slice::<bf16>()?, w.as_cuda_slice::<bf16>()?);
                self.launch(key, device, input.slice(x0..x1), filter.slice(w0..w1), out_len)?
            }
            other => bail!("{name}: no convolution for {other:?}"),
        };
        Ok((out, Shape::from(out_dims.to_vec())))
    }
}
