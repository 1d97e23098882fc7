//! Compiles every kernel in `flow-cuda/kernels` as host C++ (`-DFLOW_HOST`, where
//! `kernels/host/cuda_host.h` stands in for the CUDA built-ins) together with the entry
//! points in `cpp/`, twice: one static library with `FLOW_T=float` (`*_f32` symbols), one
//! with `FLOW_T=double` (`*_f64`). `src/ffi.rs` declares the entry points.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let kernels = manifest.join("../flow-cuda/kernels");
    let cpp = manifest.join("cpp");
    for dir in [&kernels, &cpp] {
        // A directory: cargo reruns on any change beneath it.
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let mut all = sources(&kernels, "cu");
    all.extend(sources(&cpp, "cu"));
    all.extend(sources(&cpp, "cpp"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    for (ty, suffix) in [("float", "f32"), ("double", "f64")] {
        let dir = out.join(suffix);
        fs::create_dir_all(&dir).expect("creating the object directory");
        cc::Build::new()
            .cpp(true)
            .std("c++20")
            // `.cu` is not a C++ extension to g++: say what the sources are.
            .flag("-x")
            .flag("c++")
            .flag("-pthread")
            // The checks run rows of 100 000: optimised whatever the profile.
            .opt_level(2)
            .define("FLOW_HOST", None)
            .define("FLOW_T", ty)
            .define("FLOW_SUFFIX", suffix)
            .include(&kernels)
            .include(&cpp)
            .files(&all)
            .out_dir(&dir)
            .compile(&format!("flowhost_{suffix}"));
    }
}
