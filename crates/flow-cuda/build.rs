//! Embeds the kernel sources: every `kernels/*.cu` present when the crate is built, and
//! `kernels/common.cuh`, as string constants in `$OUT_DIR/kernel_sources.rs`. A kernel file
//! that is missing is not a build error: launching one of its kernels reports that it is
//! missing (the kernels are written alongside this crate, file by file).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("kernels");
    println!("cargo:rerun-if-changed=kernels");
    let mut modules: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .filter_map(|p| {
                    let stem = p.file_stem()?.to_str()?.to_string();
                    Some((stem, p.to_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    modules.sort();
    let common = dir.join("common.cuh");
    let mut out = String::new();
    if common.is_file() {
        writeln!(
            out,
            "pub(crate) const COMMON: Option<&str> = Some(include_str!({:?}));",
            common.to_str().expect("a UTF-8 path")
        )
        .unwrap();
    } else {
        writeln!(out, "pub(crate) const COMMON: Option<&str> = None;").unwrap();
    }
    writeln!(out, "pub(crate) const MODULES: &[(&str, &str)] = &[").unwrap();
    for (stem, path) in &modules {
        writeln!(out, "    ({stem:?}, include_str!({path:?})),").unwrap();
    }
    writeln!(out, "];").unwrap();
    let target =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kernel_sources.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
