//! Finding a component's safetensors files (plain or fp16 variant, single or sharded) and mapping them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use gameforge_kernels::Stored;
use serde::Deserialize;

use crate::error::PipelineError;

/// The weight files of one component (`unet/`, `vae/`, …), in the order they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightFiles {
    pub files: Vec<PathBuf>,
    pub variant: Option<String>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// Looks for `<stem>[.variant].safetensors` or a sharded `<stem>.safetensors.index[.variant].json`, trying the
/// preferred variant first so an fp16 run reads half the bytes, and the other form when it is all there is.
pub fn find(dir: &Path, stems: &[&str], prefer_variant: Option<&str>) -> Result<WeightFiles, PipelineError> {
    let mut variants: Vec<Option<&str>> = vec![prefer_variant];
    for v in [None, Some("fp16")] {
        if !variants.contains(&v) {
            variants.push(v);
        }
    }
    let mut looked = Vec::new();
    for variant in &variants {
        for stem in stems {
            let single = match variant {
                Some(v) => format!("{stem}.{v}.safetensors"),
                None => format!("{stem}.safetensors"),
            };
            looked.push(single.clone());
            let path = dir.join(&single);
            if path.is_file() {
                return Ok(WeightFiles { files: vec![path], variant: variant.map(str::to_string) });
            }
            let index = match variant {
                Some(v) => format!("{stem}.safetensors.index.{v}.json"),
                None => format!("{stem}.safetensors.index.json"),
            };
            looked.push(index.clone());
            let index_path = dir.join(&index);
            if index_path.is_file() {
                return Ok(WeightFiles { files: shards(dir, &index_path)?, variant: variant.map(str::to_string) });
            }
        }
    }
    Err(PipelineError::MissingWeights(dir.to_path_buf(), looked.join(", ")))
}

fn shards(dir: &Path, index_path: &Path) -> Result<Vec<PathBuf>, PipelineError> {
    let bytes = std::fs::read(index_path).map_err(|e| PipelineError::io(index_path, e))?;
    let index: ShardIndex = serde_json::from_slice(&bytes)
        .map_err(|e| PipelineError::Config { path: index_path.to_path_buf(), reason: e.to_string() })?;
    let names: BTreeSet<&String> = index.weight_map.values().collect();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        // A shard name is a file beside the index, never a path elsewhere.
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(PipelineError::Weights {
                path: index_path.to_path_buf(),
                reason: format!("shard name {name:?} is not a plain file name"),
            });
        }
        let path = dir.join(name);
        if !path.is_file() {
            return Err(PipelineError::Weights {
                path: index_path.to_path_buf(),
                reason: format!("shard {name} is missing"),
            });
        }
        files.push(path);
    }
    Ok(files)
}

/// Maps the files and checks every tensor holds floating-point weights, then hands out a builder that converts
/// them to `dtype` on `device` as each layer asks for them.
pub fn var_builder(weights: &WeightFiles, dtype: DType, device: &Device) -> Result<VarBuilder<'static>, PipelineError> {
    let mapped = map(&weights.files)?;
    for (name, view) in mapped.tensors() {
        match view.dtype() {
            safetensors::Dtype::F16 | safetensors::Dtype::BF16 | safetensors::Dtype::F32 | safetensors::Dtype::F64 => {}
            other => {
                let folder = weights.files[0].parent().unwrap_or(Path::new("")).to_path_buf();
                return Err(PipelineError::Weights {
                    path: folder,
                    reason: format!("tensor {name} has dtype {other:?}; weights must be f16, bf16, f32 or f64"),
                });
            }
        }
    }
    Ok(VarBuilder::from_backend(Box::new(Widening(mapped)), dtype, device.clone()))
}

/// The mapped files as a builder's backend that reads each tensor into f32 on the CPU in one threaded pass
/// (`gameforge_kernels::widen`), where candle copies the file's bytes into a tensor of their own type and then
/// converts it, on one core and through a second buffer. Other devices and types take candle's path.
struct Widening(MmapedSafetensors);

impl Widening {
    fn load(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        if device.is_cpu() && dtype == DType::F32 {
            let view = self.0.get(name)?;
            let stored = match view.dtype() {
                safetensors::Dtype::F16 => Some(Stored::F16),
                safetensors::Dtype::BF16 => Some(Stored::Bf16),
                safetensors::Dtype::F32 => Some(Stored::F32),
                _ => None,
            };
            if let Some(stored) = stored {
                let data = gameforge_kernels::widen(view.data(), stored)
                    .ok_or_else(|| candle_core::Error::Msg(format!("tensor {name}: a partial element in its bytes")))?;
                return Tensor::from_vec(data, view.shape(), device);
            }
        }
        self.0.load(name, device)?.to_dtype(dtype)
    }
}

impl SimpleBackend for Widening {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.load(name, dtype, device)?;
        if tensor.shape() != &shape {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: shape,
                got: tensor.shape().clone(),
            });
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.get(name).is_ok()
    }
}

/// The bytes the files' tensors take once loaded as `dtype` (read from the headers; nothing is loaded).
pub fn bytes(weights: &WeightFiles, dtype: DType) -> Result<u64, PipelineError> {
    let mapped = map(&weights.files)?;
    let size = dtype.size_in_bytes() as u64;
    Ok(mapped
        .tensors()
        .iter()
        .map(|(_, view)| view.shape().iter().fold(size, |acc, &d| acc.saturating_mul(d as u64)))
        .fold(0u64, u64::saturating_add))
}

#[allow(unsafe_code)]
fn map(files: &[PathBuf]) -> Result<MmapedSafetensors, PipelineError> {
    // SAFETY: the mapping is only sound while nobody truncates or rewrites the files; weight folders are written
    // once (by the model cache, atomically by rename) and then only read.
    unsafe { MmapedSafetensors::multi(files) }
        .map_err(|e| PipelineError::Weights { path: files.first().cloned().unwrap_or_default(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"").unwrap();
    }

    #[test]
    fn prefers_the_requested_variant_and_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "diffusion_pytorch_model.safetensors");
        touch(dir.path(), "diffusion_pytorch_model.fp16.safetensors");
        let stems = ["diffusion_pytorch_model"];
        assert_eq!(find(dir.path(), &stems, Some("fp16")).unwrap().variant.as_deref(), Some("fp16"));
        assert_eq!(find(dir.path(), &stems, None).unwrap().variant, None);
        std::fs::remove_file(dir.path().join("diffusion_pytorch_model.safetensors")).unwrap();
        assert_eq!(find(dir.path(), &stems, None).unwrap().variant.as_deref(), Some("fp16"));
    }

    #[test]
    fn sharded_weights_are_read_from_their_index() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "model-00001-of-00002.safetensors");
        touch(dir.path(), "model-00002-of-00002.safetensors");
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        let found = find(dir.path(), &["model"], None).unwrap();
        assert_eq!(found.files.len(), 2);
        assert!(found.files[0].ends_with("model-00001-of-00002.safetensors"));
    }

    #[test]
    fn a_missing_shard_or_escaping_name_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "../elsewhere.safetensors"}}"#,
        )
        .unwrap();
        let err = find(dir.path(), &["model"], None).unwrap_err().to_string();
        assert!(err.contains("not a plain file name"), "{err}");
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "model-00001-of-00001.safetensors"}}"#,
        )
        .unwrap();
        let err = find(dir.path(), &["model"], None).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    /// Each stored type reads as candle's own load-and-convert would read it, on the CPU in f32 (our threaded
    /// path) and in f16 (candle's); a wrong shape is an error naming the tensor.
    #[test]
    fn every_stored_type_reads_as_candles_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let values = Tensor::arange(-301f32, 301., &Device::Cpu).unwrap().affine(1.0 / 7.0, 0.0).unwrap();
        let values = values.reshape((7, 86)).unwrap();
        let mut tensors = std::collections::HashMap::new();
        for (name, dtype) in [("f16", DType::F16), ("bf16", DType::BF16), ("f32", DType::F32)] {
            tensors.insert(name.to_string(), values.to_dtype(dtype).unwrap());
        }
        let path = dir.path().join("model.safetensors");
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let files = WeightFiles { files: vec![path.clone()], variant: None };
        let theirs = map(&files.files).unwrap();
        for dtype in [DType::F32, DType::F16] {
            let vb = var_builder(&files, dtype, &Device::Cpu).unwrap();
            for name in ["f16", "bf16", "f32"] {
                let ours = vb.get((7, 86), name).unwrap();
                let expected = theirs.load(name, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                assert_eq!(ours.dtype(), dtype);
                let (ours, expected) = (ours.to_dtype(DType::F32).unwrap(), expected.to_dtype(DType::F32).unwrap());
                let same =
                    ours.eq(&expected).unwrap().flatten_all().unwrap().min(0).unwrap().to_scalar::<u8>().unwrap();
                assert_eq!(same, 1, "{name} read as {dtype:?} differs from candle's");
            }
            let err = vb.get((86, 7), "f16").unwrap_err().to_string();
            assert!(err.contains("shape mismatch for f16"), "{err}");
            assert!(!vb.contains_tensor("missing") && vb.contains_tensor("bf16"));
        }
    }

    #[test]
    fn no_weights_lists_what_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = find(dir.path(), &["model"], None).unwrap_err().to_string();
        assert!(err.contains("model.safetensors") && err.contains("model.fp16.safetensors"), "{err}");
    }
}
