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
        crate::compile::tests::require_nvrtc();
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
