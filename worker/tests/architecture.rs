//! The model code against the architectures it claims: parameter counts of the full-size SDXL base, and the
//! tiny fixtures' weight files used completely (no tensor ignored, none missing, every shape equal).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sdxl_worker::architecture::{COMPONENTS, parameter_shapes};
use sdxl_worker::weights;

fn worker_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn full_size_sdxl_base_has_the_reference_parameter_counts() {
    let root = worker_dir().join("architectures/sdxl-base");
    // Counted with diffusers / transformers on the same configs (tools/sdxl-reference/README.md).
    let expected = [
        ("text_encoder", 123_060_480usize),
        ("text_encoder_2", 694_659_840),
        ("unet", 2_567_463_684),
        ("vae", 83_653_863),
    ];
    for (component, count) in expected {
        let shapes = parameter_shapes(&root, component).unwrap();
        let total: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
        assert_eq!(total, count, "{component}");
    }
    let unet = parameter_shapes(&root, "unet").unwrap();
    // The part candle's own SDXL UNet leaves out: pooled text and size conditioning.
    assert_eq!(unet["add_embedding.linear_1.weight"], vec![1280, 2816]);
    assert_eq!(unet["add_embedding.linear_2.weight"], vec![1280, 1280]);
}

fn file_shapes(dir: &Path, stem: &str) -> BTreeMap<String, Vec<usize>> {
    let files = weights::find(dir, &[stem], None).unwrap();
    let mut out = BTreeMap::new();
    for path in files.files {
        let bytes = std::fs::read(&path).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in tensors.tensors() {
            out.insert(name, view.shape().to_vec());
        }
    }
    out
}

#[test]
fn the_tiny_models_weights_are_used_exactly() {
    for model in ["tiny-sdxl-a", "tiny-sdxl-b"] {
        let root = worker_dir().join("tests/fixtures").join(model);
        for (component, stem) in COMPONENTS {
            let wanted = parameter_shapes(&root, component).unwrap();
            let mut present = file_shapes(&root.join(component), stem);
            // Buffers transformers saves beside the parameters.
            present.retain(|name, _| !name.ends_with("position_ids"));
            let unused: Vec<_> = present.keys().filter(|k| !wanted.contains_key(*k)).collect();
            let missing: Vec<_> = wanted.keys().filter(|k| !present.contains_key(*k)).collect();
            assert!(unused.is_empty(), "{model}/{component}: weights the code ignores: {unused:?}");
            assert!(missing.is_empty(), "{model}/{component}: weights the code wants but the files lack: {missing:?}");
            for (name, shape) in &wanted {
                assert_eq!(&present[name], shape, "{model}/{component}: {name}");
            }
        }
    }
}
