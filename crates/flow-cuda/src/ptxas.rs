//! Reading ptxas's report (`-Xptxas=-v` through NVRTC's log): per kernel, its registers,
//! stack frame and spills, so that a test can hold every kernel to a budget.

/// What ptxas reported for one kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KernelReport {
    pub name: String,
    pub registers: u32,
    pub stack_frame_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

/// The number just before `unit` in `line` (`"32 bytes stack frame"`).
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let before = &line[..line.find(unit)?];
    before.split_whitespace().last()?.parse().ok()
}

/// The kernels of a ptxas report, in its order. A kernel's section starts at
/// `Compiling entry function 'NAME'` and holds its frame, spill and register lines.
pub(crate) fn parse(log: &str) -> Vec<KernelReport> {
    let mut kernels: Vec<KernelReport> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            kernels.push(KernelReport {
                name,
                ..KernelReport::default()
            });
            continue;
        }
        let Some(current) = kernels.last_mut() else {
            continue;
        };
        if line.contains("stack frame") {
            current.stack_frame_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            current.spill_store_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
            current.spill_load_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
        }
        if let Some(n) = number_before(line, "registers") {
            current.registers = n;
        }
    }
    kernels
}

#[cfg(test)]
mod tests {
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

    /// At most this many registers per thread, so that a block of 256 threads leaves room
    /// for two such blocks on an SM of 65536 registers.
    const REGISTER_CAP: u32 = 96;

    #[test]
    fn a_report_is_read_per_kernel() {
        let log = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'unary_f32' for 'sm_90'\n\
            ptxas info    : Function properties for unary_f32\n\
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
            ptxas info    : Used 26 registers, used 0 barriers\n\
            ptxas info    : Compiling entry function 'randn_f64' for 'sm_90'\n\
            ptxas info    : Function properties for randn_f64\n\
            ptxas         .     40 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
            ptxas info    : Used 38 registers, used 0 barriers, 40 bytes cumulative stack size\n";
        let r = parse(log);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].name.as_str(), r[0].registers), ("unary_f32", 26));
        assert_eq!(
            (
                r[1].stack_frame_bytes,
                r[1].spill_store_bytes,
                r[1].spill_load_bytes
            ),
            (40, 8, 4)
        );
    }

    /// Every kernel of every `.cu`, in f32 and f64, compiles with NVRTC to CUBIN for the
    /// H100/H200's sm_90 (and for sm_80 and sm_120), and ptxas reports no spills, no stack
    /// frame, and at most [`REGISTER_CAP`] registers. NVRTC runs without a GPU; it must be
    /// installed (scripts/test installs the pinned PyPI package): its absence is a failure.
    #[test]
    fn every_kernel_compiles_without_spills_or_stack() {
        preload_cached_nvrtc();
        // SAFETY: only asks whether the library can be loaded; cudarc panics when it
        // cannot, so this is checked before any NVRTC call.
        let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
        assert!(
            present,
            "NVRTC is not installed: run scripts/test (it installs nvidia-cuda-nvrtc==13.0.88 \
             from PyPI) or put a folder holding libnvrtc.so.13 on LD_LIBRARY_PATH"
        );
        let common = crate::kernels::common_header().expect("common.cuh is embedded");
        let modules = crate::kernels::module_names();
        assert_eq!(
            modules,
            [
                "columns",
                "coupling",
                "diag_normal",
                "elementwise",
                "random",
                "reduce",
                "spline"
            ],
            "the kernel files embedded"
        );
        let mut failures = Vec::new();
        let mut checked = 0;
        for module in modules {
            let source = crate::kernels::module_source(module).expect("embedded");
            let text = crate::compile::program_text(module, source, common);
            for suffix in ["f32", "f64"] {
                for capability in [(8, 0), (12, 0)] {
                    let options = crate::compile::options(capability, suffix);
                    if let Err(e) = crate::compile::cubin(module, &text, &options) {
                        failures.push(e);
                    }
                }
                let mut options = crate::compile::options((9, 0), suffix);
                options.push("-Xptxas=-v".into());
                match crate::compile::cubin_with_log(module, &text, &options) {
                    Err(e) => failures.push(e),
                    Ok((_, log)) => {
                        let kernels = parse(&log);
                        if kernels.is_empty() {
                            failures.push(format!("{module}.cu {suffix}: no report in {log}"));
                        }
                        for k in kernels {
                            checked += 1;
                            println!(
                                "{module}.cu {}: {} registers, {} bytes stack",
                                k.name, k.registers, k.stack_frame_bytes
                            );
                            if k.spill_store_bytes + k.spill_load_bytes > 0
                                || k.stack_frame_bytes > 0
                                || k.registers > REGISTER_CAP
                            {
                                failures.push(format!(
                                    "{module}.cu {}: {} registers (cap {REGISTER_CAP}), {} bytes \
                                     stack frame, {} + {} bytes spilled",
                                    k.name,
                                    k.registers,
                                    k.stack_frame_bytes,
                                    k.spill_store_bytes,
                                    k.spill_load_bytes
                                ));
                            }
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(checked >= 40, "only {checked} kernels reported");
    }
}
