//! A pipeline folder's architecture without its weights: every parameter the model code asks for, by
//! component, and random weights of that architecture for benchmarks (no real weights can be downloaded there).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;

use crate::config::{ClipTextConfig, UNetConfig, VaeConfig, read_json};
use crate::error::PipelineError;
use crate::memory::Budget;
use crate::memory::plan::bytes;
use crate::text_encoder::ClipTextEncoder;
use crate::unet::UNet;
use crate::vae::{Vae, VaePrecision};

/// The components with weights, their weight-file stems and the folder they live in.
pub const COMPONENTS: [(&str, &str); 4] = [
    ("text_encoder", "model"),
    ("text_encoder_2", "model"),
    ("unet", "diffusion_pytorch_model"),
    ("vae", "diffusion_pytorch_model"),
];

/// Hands every requested parameter out, either as a free zero view (to learn shapes) or as random values
/// drawn with the layer's own initialiser (norm weights 1, biases as the layer wants, weights scaled to width).
struct Recorder {
    random: bool,
    seen: Arc<Mutex<BTreeMap<String, Tensor>>>,
}

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, h: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        // A config can ask for any shape; one whose size does not even fit a machine word is refused here, before
        // anything multiplies its dimensions unchecked.
        let fits = s.dims().iter().try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d)).is_some();
        if !fits {
            candle_core::bail!("{name}: a parameter of shape {s:?} is too large for any machine");
        }
        let tensor = if self.random {
            h.var(s.clone(), DType::F32, dev)?.as_tensor().to_dtype(dtype)?
        } else {
            Tensor::zeros((), dtype, dev)?.broadcast_as(s.clone())?
        };
        self.seen.lock().expect("the recorder lock is never poisoned").insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: the architecture recorder needs the expected shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        // Answering yes selects the current diffusers names (`to_q` rather than `query`) where the code asks.
        true
    }
}

fn build(root: &Path, component: &str, vb: VarBuilder) -> Result<(), PipelineError> {
    let dir = root.join(component);
    match component {
        "text_encoder" | "text_encoder_2" => {
            let config: ClipTextConfig = read_json(&dir.join("config.json"))?;
            ClipTextEncoder::new(vb, &config, component == "text_encoder_2")?;
        }
        "unet" => {
            let config: UNetConfig = read_json(&dir.join("config.json"))?;
            UNet::new(vb, &config)?;
        }
        "vae" => {
            let config: VaeConfig = read_json(&dir.join("config.json"))?;
            let precision = VaePrecision::uniform(vb.dtype());
            Vae::new(vb, &config, precision)?;
        }
        other => return Err(PipelineError::Unsupported(format!("component {other}"))),
    }
    Ok(())
}

fn record(root: &Path, component: &str, random: bool, dtype: DType) -> Result<BTreeMap<String, Tensor>, PipelineError> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let backend = Recorder { random, seen: Arc::clone(&seen) };
    build(root, component, VarBuilder::from_backend(Box::new(backend), dtype, Device::Cpu))?;
    let map = std::mem::take(&mut *seen.lock().expect("the recorder lock is never poisoned"));
    Ok(map)
}

/// The bytes of one component's parameters in `dtype`, saturating for absurd configs.
pub fn component_bytes(root: &Path, component: &str, dtype: DType) -> Result<u64, PipelineError> {
    let shapes = parameter_shapes(root, component)?;
    Ok(shapes
        .values()
        .map(|s| s.iter().fold(dtype.size_in_bytes() as u64, |acc, &d| acc.saturating_mul(d as u64)))
        .fold(0u64, u64::saturating_add))
}

/// Every parameter of one component: name and shape.
pub fn parameter_shapes(root: &Path, component: &str) -> Result<BTreeMap<String, Vec<usize>>, PipelineError> {
    Ok(record(root, component, false, DType::F32)?.into_iter().map(|(name, t)| (name, t.dims().to_vec())).collect())
}

/// Writes a pipeline folder of `from`'s architecture with random weights: every config, scheduler and tokenizer
/// file is copied (`.gz` files decompressed), and each component gets a `<stem>[.fp16].safetensors`.
pub fn write_random_pipeline(from: &Path, out: &Path, dtype: DType) -> Result<(), PipelineError> {
    // Each component's weights are drawn in memory and then serialised, so about twice its size is needed at once;
    // a config that asks for more than the machine has is refused before anything is drawn.
    let budget = Budget::measure(&Device::Cpu, None)?;
    for (component, _) in COMPONENTS {
        let needed = component_bytes(from, component, dtype)?.saturating_mul(2);
        if needed > budget.bytes {
            return Err(PipelineError::Unsupported(format!(
                "{component}: random weights of this architecture need about {} in memory, and the memory budget \
                 is {} ({budget})",
                bytes(needed),
                bytes(budget.bytes)
            )));
        }
    }
    copy_tree(from, out)?;
    for (component, stem) in COMPONENTS {
        let tensors = record(from, component, true, dtype)?;
        let name = match dtype {
            DType::F16 | DType::BF16 => format!("{stem}.fp16.safetensors"),
            _ => format!("{stem}.safetensors"),
        };
        let path = out.join(component).join(name);
        let tensors: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        candle_core::safetensors::save(&tensors, &path)
            .map_err(|e| PipelineError::Weights { path: path.clone(), reason: e.to_string() })?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), PipelineError> {
    std::fs::create_dir_all(to).map_err(|e| PipelineError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| PipelineError::io(from, e))? {
        let entry = entry.map_err(|e| PipelineError::io(from, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            copy_tree(&path, &to.join(&*name))?;
        } else if name.ends_with(".safetensors") {
            continue;
        } else if let Some(plain) = name.strip_suffix(".gz") {
            let file = std::fs::File::open(&path).map_err(|e| PipelineError::io(&path, e))?;
            let mut reader = flate2::read::GzDecoder::new(file);
            let target = to.join(plain);
            let mut writer = std::fs::File::create(&target).map_err(|e| PipelineError::io(&target, e))?;
            std::io::copy(&mut reader, &mut writer).map_err(|e| PipelineError::io(&path, e))?;
        } else {
            let target = to.join(&*name);
            std::fs::copy(&path, &target).map_err(|e| PipelineError::io(&path, e))?;
        }
    }
    Ok(())
}
