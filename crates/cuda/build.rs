//! With the `cuda` feature, kernels/*.cu become PTX in OUT_DIR (`ptx.rs` names them), for the compute capability
//! candle's kernels are built for (CUDA_COMPUTE_CAP, else the GPU nvidia-smi sees).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=kernels");
    #[cfg(feature = "cuda")]
    {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let ptx = cudaforge::KernelBuilder::new()
            .source_dir("kernels")
            .arg("-std=c++17")
            .arg("-O3")
            .build_ptx()
            .unwrap_or_else(|e| panic!("compiling kernels/*.cu to PTX: {e}"));
        ptx.write(out.join("ptx.rs")).unwrap_or_else(|e| panic!("writing ptx.rs: {e}"));
    }
}
