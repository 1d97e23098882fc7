//! NVRTC compilation of one kernel file for one device and element type, to CUBIN.
//!
//! `common.cuh` is inlined where the file includes it (with `#line` markers, so that
//! NVRTC's messages still name the right file and line). The target is the device's own
//! `sm_XY`, so the driver loads machine code and never JIT-compiles PTX: the driver's PTX
//! version does not matter. No `--use_fast_math`, and no contraction of a product and a sum
//! into one fused multiply-add (`--fmad=false`; NVRTC contracts by default): each operation
//! rounds as the CPU backend's and the host checks' do, so the kernels mean what the CPU
//! computes.

use cudarc::nvrtc::{result, sys};
use std::ffi::{c_char, CString};

/// The line by which every kernel file includes the common header.
const INCLUDE_COMMON: &str = "#include \"common.cuh\"";

/// The text NVRTC compiles for `kernels/<module>.cu`: its `#include "common.cuh"` replaced
/// by the header (without its `#pragma once`), line numbers kept by `#line`.
pub(crate) fn program_text(module: &str, source: &str, common: &str) -> String {
    let mut out = String::with_capacity(source.len() + common.len() + 128);
    for (i, line) in source.lines().enumerate() {
        if line.trim() == INCLUDE_COMMON {
            out.push_str("#line 1 \"common.cuh\"\n");
            for header_line in common.lines() {
                if header_line.trim() == "#pragma once" {
                    out.push('\n'); // keeps the header's line numbers
                } else {
                    out.push_str(header_line);
                    out.push('\n');
                }
            }
            // The line after the include is line i + 2 of the file (1-based).
            out.push_str(&format!("#line {} \"{module}.cu\"\n", i + 2));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// NVRTC's options for compute capability `(major, minor)` and the element type named
/// `suffix` ("f32" or "f64"): CUBIN for `sm_XY`, no fused multiply-adds, `FLOW_T` and
/// `FLOW_SUFFIX` defined.
pub(crate) fn options(capability: (i32, i32), suffix: &str) -> Vec<String> {
    let c_type = match suffix {
        "f32" => "float",
        _ => "double",
    };
    vec![
        format!("--gpu-architecture=sm_{}{}", capability.0, capability.1),
        "--fmad=false".to_string(),
        format!("-DFLOW_T={c_type}"),
        format!("-DFLOW_SUFFIX={suffix}"),
    ]
}

/// Destroys an NVRTC program when dropped.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: self.0 was created by `result::create_program` and is destroyed only here.
        // A failure to free it leaks the program; there is nothing to report it to.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

/// A NUL-terminated buffer from NVRTC as text.
fn text_of(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// Compiles `text` (named `name` in messages) with `options` and returns the CUBIN image.
/// The error says what failed, with NVRTC's log for a compilation error.
pub(crate) fn cubin(name: &str, text: &str, options: &[String]) -> Result<Vec<u8>, String> {
    cubin_with_log(name, text, options).map(|(image, _)| image)
}

/// [`cubin`], and NVRTC's log of the compilation (ptxas's report with `-Xptxas=-v`).
pub(crate) fn cubin_with_log(
    name: &str,
    text: &str,
    options: &[String],
) -> Result<(Vec<u8>, String), String> {
    let program = compiled(name, text, options)?;
    let mut size = 0usize;
    // SAFETY: the program is live and compiled; `size` is a valid place for the size.
    unsafe { sys::nvrtcGetCUBINSize(program.0, &mut size) }
        .result()
        .map_err(|e| format!("NVRTC gave no CUBIN size for {name}: {e:?}"))?;
    if size == 0 {
        return Err(format!(
            "NVRTC produced no CUBIN for {name} (options {}): it compiled to PTX only",
            options.join(" ")
        ));
    }
    let mut image = vec![0u8; size];
    // SAFETY: `image` holds the `size` bytes NVRTC reported for this program's CUBIN.
    unsafe { sys::nvrtcGetCUBIN(program.0, image.as_mut_ptr().cast::<c_char>()) }
        .result()
        .map_err(|e| format!("NVRTC gave no CUBIN for {name}: {e:?}"))?;
    // SAFETY: as above, the program is live.
    let log = unsafe { result::get_program_log(program.0) }
        .map(|log| text_of(&log))
        .map_err(|e| format!("NVRTC gave no log for {name}: {e:?}"))?;
    Ok((image, log))
}

/// The PTX of `text` compiled with `options` (for a virtual architecture, `compute_XY`):
/// what the tests read each kernel's parameter types from.
#[cfg(test)]
pub(crate) fn ptx(name: &str, text: &str, options: &[String]) -> Result<String, String> {
    let program = compiled(name, text, options)?;
    // SAFETY: the program is live and compiled.
    let ptx = unsafe { result::get_ptx(program.0) }
        .map_err(|e| format!("NVRTC gave no PTX for {name}: {e:?}"))?;
    Ok(text_of(&ptx))
}

/// `text` compiled with `options`; the error carries NVRTC's log.
fn compiled(name: &str, text: &str, options: &[String]) -> Result<Program, String> {
    let source = CString::new(text).map_err(|_| format!("{name} contains a NUL byte"))?;
    let c_name = CString::new(name).map_err(|_| format!("{name} contains a NUL byte"))?;
    let program = Program(
        result::create_program(&source, Some(&c_name))
            .map_err(|e| format!("NVRTC could not create a program for {name}: {e:?}"))?,
    );
    // SAFETY: `program.0` is a live program (destroyed only when `program` drops, after
    // this function's last use of it); `source` and `c_name` outlive it too.
    let compiled = unsafe { result::compile_program(program.0, options) };
    if let Err(e) = compiled {
        // SAFETY: as above, the program is live.
        let log = unsafe { result::get_program_log(program.0) }
            .map(|log| text_of(&log))
            .unwrap_or_else(|e| format!("(no log: {e:?})"));
        return Err(format!(
            "NVRTC could not compile {name} ({e:?}) with {}:\n{log}",
            options.join(" ")
        ));
    }
    Ok(program)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Where scripts/test installs NVRTC (keep the version in step with it).
    const NVRTC_CACHE: &str = "flows/nvrtc-13.0.88/nvidia/cu13/lib";

    /// Loads NVRTC from the folder scripts/test installs it into (or `FLOWS_NVRTC_DIR`'s),
    /// when it is there, so that `cargo test -p flow-cuda` finds it without
    /// `LD_LIBRARY_PATH`: cudarc opens NVRTC by name, and when it comes to `libnvrtc.so.13`
    /// the dynamic loader hands back the library already loaded under that name (an
    /// unversioned `libnvrtc.so` on the loader path, which cudarc tries first, wins instead).
    fn preload_cached_nvrtc() {
        let folders = [
            std::env::var_os("FLOWS_NVRTC_DIR")
                .map(|d| std::path::PathBuf::from(d).join("nvidia/cu13/lib")),
            std::env::var_os("XDG_CACHE_HOME")
                .map(|d| std::path::PathBuf::from(d).join(NVRTC_CACHE)),
            std::env::var_os("HOME")
                .map(|d| std::path::PathBuf::from(d).join(".cache").join(NVRTC_CACHE)),
        ];
        for folder in folders.into_iter().flatten() {
            let nvrtc = folder.join("libnvrtc.so.13");
            if !nvrtc.exists() {
                continue;
            }
            // NVRTC opens its builtins by name at run time: load them first, from the same
            // folder.
            for library in [folder.join("libnvrtc-builtins.so.13.0"), nvrtc] {
                // SAFETY: NVRTC's libraries run no initialisation code that could break this
                // process; the handles are kept for the process's lifetime.
                match unsafe {
                    libloading::os::unix::Library::open(
                        Some(&library),
                        libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                    )
                } {
                    Ok(handle) => std::mem::forget(handle),
                    Err(e) => eprintln!("could not load {}: {e}", library.display()),
                }
            }
            return;
        }
    }

    /// Makes NVRTC loadable (from scripts/test's cache folder when it is there) and fails
    /// the test, saying how to install it, when it is not: the kernel tests need it.
    pub(crate) fn require_nvrtc() {
        preload_cached_nvrtc();
        // SAFETY: only asks whether the library can be loaded; cudarc panics when it
        // cannot, so this is checked before any NVRTC call.
        let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
        assert!(
            present,
            "NVRTC is not installed: run scripts/test (it installs nvidia-cuda-nvrtc==13.0.88 \
             from PyPI) or put a folder holding libnvrtc.so.13 on LD_LIBRARY_PATH"
        );
    }

    #[test]
    fn the_header_is_inlined_with_line_markers() {
        let common = "#pragma once\n#define A 1\n";
        let source = "// first\n#include \"common.cuh\"\nint x = A;\n";
        let text = program_text("demo", source, common);
        assert_eq!(
            text,
            "// first\n#line 1 \"common.cuh\"\n\n#define A 1\n#line 3 \"demo.cu\"\nint x = A;\n"
        );
    }

    #[test]
    fn the_real_sources_inline_cleanly() {
        let common = crate::kernels::common_header().expect("common.cuh is embedded");
        let source = crate::kernels::module_source("elementwise").expect("elementwise.cu");
        let text = program_text("elementwise", source, common);
        assert!(!text.contains(INCLUDE_COMMON));
        assert!(!text.contains("#pragma once"));
        assert!(text.contains("typedef FLOW_T T;"));
        assert!(text.contains("FLOW_KERNEL void FLOW_NAME(unary)"));
    }

    #[test]
    fn options_target_the_device_as_cubin_without_fast_math_or_contraction() {
        let o = options((9, 0), "f32");
        assert_eq!(
            o,
            [
                "--gpu-architecture=sm_90",
                "--fmad=false",
                "-DFLOW_T=float",
                "-DFLOW_SUFFIX=f32"
            ]
        );
        let o = options((8, 6), "f64");
        assert_eq!(
            o,
            [
                "--gpu-architecture=sm_86",
                "--fmad=false",
                "-DFLOW_T=double",
                "-DFLOW_SUFFIX=f64"
            ]
        );
        for o in options((12, 0), "f32") {
            assert!(!o.contains("compute_") && !o.contains("fast"), "{o}");
        }
    }

    #[test]
    fn nvrtc_text_stops_at_nul() {
        let buf: Vec<c_char> = b"error: x\n\0junk".iter().map(|&b| b as c_char).collect();
        assert_eq!(text_of(&buf), "error: x");
    }
}
