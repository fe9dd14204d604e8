//! The contract's extreme jobs (up to 2048x2048, guided) on every GPU the fleet file allows, the T4 included, with SDXL
//! base's real architecture (`architectures/sdxl-base`) in the fleet's precision: the memory planner must find
//! a plan within what the card has left after the weights. No GPU is needed: the figures are the planner's.

use std::path::{Path, PathBuf};

use sdxl_worker::architecture::{COMPONENTS, parameter_shapes};
use sdxl_worker::config::{UNetConfig, VaeConfig, read_json};
use sdxl_worker::memory::budget::from_device_memory;
use sdxl_worker::memory::plan::bytes;
use sdxl_worker::memory::{ConvKernels, Job, ModelShape, Precision, Settings, plan};

const MIB: u64 = 1 << 20;

/// GPU memory as the driver reports it (nvidia-smi's total) for each instance type the fleet may launch. An
/// instance type missing here fails the test: its card must be added before the fleet can use it.
const GPU_MEMORY: [(&str, &str, u64); 2] = [("g4dn.xlarge", "T4", 15_360 * MIB), ("g5.xlarge", "A10G", 23_028 * MIB)];

/// What the CUDA context, candle's kernel modules and the cuBLAS/cuDNN handles hold before any weight: about
/// 300-500 MiB on these cards; a whole GiB is assumed.
const CUDA_CONTEXT: u64 = 1024 * MIB;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fleet_instance_types() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("infra/fleet.json")).unwrap();
    let fleet: serde_json::Value = serde_json::from_str(&text).unwrap();
    fleet["instance_types"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

/// The container's build decides how convolutions find scratch memory (the T4's build and the others' both
/// start from `cudnn`). Flash attention, in the sm_80 builds, is not counted: the estimate keeps the sliced
/// attention's scores, an upper bound for it.
fn fleet_kernels() -> ConvKernels {
    let dockerfile = std::fs::read_to_string(repo().join("worker/Dockerfile")).unwrap();
    if dockerfile.contains("features=cudnn") { ConvKernels::Cudnn } else { ConvKernels::CudaIm2col }
}

/// SDXL base's weights as a GPU run holds them: f16, except the VAE, upcast to f32 as its config asks.
fn sdxl_weights(root: &Path, vae: &VaeConfig) -> u64 {
    COMPONENTS
        .iter()
        .map(|(component, _)| {
            let count: usize =
                parameter_shapes(root, component).unwrap().values().map(|s| s.iter().product::<usize>()).sum();
            let size = if *component == "vae" && vae.force_upcast.unwrap_or(true) { 4 } else { 2 };
            count as u64 * size
        })
        .sum()
}

#[test]
fn the_largest_job_fits_every_gpu_of_the_fleet_the_t4_included() {
    let root = repo().join("worker/architectures/sdxl-base");
    let unet: UNetConfig = read_json(&root.join("unet/config.json")).unwrap();
    let vae: VaeConfig = read_json(&root.join("vae/config.json")).unwrap();
    let shape = ModelShape::new(&unet, &vae).unwrap();
    let weights = sdxl_weights(&root, &vae);
    let kernels = fleet_kernels();
    let settings = Settings {
        precision: Precision { unet: 2, vae: 4 },
        kernels,
        default_tile: vae.sample_size.unwrap() as u64,
        max_tile: None,
    };

    let cards: Vec<(&str, &str, u64)> = fleet_instance_types()
        .iter()
        .map(|name| {
            *GPU_MEMORY
                .iter()
                .find(|(instance, _, _)| instance == name)
                .unwrap_or_else(|| panic!("the fleet launches {name}: add its GPU memory to this test"))
        })
        .collect();
    assert!(cards.iter().any(|&(_, card, _)| card == "T4"), "the fleet no longer allows the T4 (16 GB)");
    for (instance, card, total) in cards {
        let free = total - CUDA_CONTEXT - weights;
        let budget = from_device_memory(free, total);
        eprintln!(
            "{instance} ({card}, {}): weights {}, free after loading {}, budget {} ({kernels:?})",
            bytes(total),
            bytes(weights),
            bytes(free),
            bytes(budget.bytes)
        );
        for (width, height) in [(2048, 2048), (2048, 64), (64, 2048), (1024, 1024), (64, 64)] {
            let job = Job { width, height, batch: 2 };
            let plan = plan(&shape, job, settings, &budget).unwrap_or_else(|e| panic!("{instance}: {e}"));
            eprintln!("  {width}x{height} guided: {plan}");
            assert!(plan.unet_bytes <= budget.bytes && plan.vae_bytes <= budget.bytes);
            if (width, height) == (64, 64) {
                assert!(plan.is_full(), "{instance}: the smallest job no longer runs as the reference does: {plan}");
            }
        }
    }
}
