//! The kernels this crate launches, as `kernels/KERNELS.md` declares them: which `.cu` file
//! holds each, and its parameter list. A launch passes exactly these kinds of arguments
//! (checked before every launch, see [`crate::device`]), and a unit test checks this table
//! against `KERNELS.md`.

/// The kernel sources embedded at build time (see `build.rs`).
mod sources {
    include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));
}

/// `kernels/common.cuh`, if it was present at build time.
pub(crate) fn common_header() -> Option<&'static str> {
    sources::COMMON
}

/// The names of the embedded kernel files (`elementwise` for `kernels/elementwise.cu`).
#[cfg(test)]
pub(crate) fn module_names() -> Vec<&'static str> {
    sources::MODULES.iter().map(|(name, _)| *name).collect()
}

/// The source of `kernels/<module>.cu`, if it was present at build time.
pub(crate) fn module_source(module: &str) -> Option<&'static str> {
    sources::MODULES
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, source)| *source)
}

/// The kind of one kernel parameter, as KERNELS.md spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    /// `const T*`
    In,
    /// `T*` (written, or read and written)
    Out,
    /// `const unsigned int*`
    InIndex,
    /// `unsigned int*`
    OutIndex,
    /// `u64`
    U64,
    /// `int`
    I32,
    /// `T`
    Elem,
}

impl Param {
    /// Its size in the kernel's parameter buffer, for an element of `elem_size` bytes.
    pub(crate) fn size(self, elem_size: usize) -> usize {
        match self {
            Param::In | Param::Out | Param::InIndex | Param::OutIndex | Param::U64 => 8,
            Param::I32 => 4,
            Param::Elem => elem_size,
        }
    }

    /// How KERNELS.md writes it.
    pub(crate) fn spelling(self) -> &'static str {
        match self {
            Param::In => "const T*",
            Param::Out => "T*",
            Param::InIndex => "const unsigned int*",
            Param::OutIndex => "unsigned int*",
            Param::U64 => "u64",
            Param::I32 => "int",
            Param::Elem => "T",
        }
    }
}

/// One kernel: the file that defines it (`kernels/<module>.cu`), its name without the
/// element suffix, and its parameters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Kernel {
    pub module: &'static str,
    pub name: &'static str,
    pub params: &'static [Param],
}

use Param::{Elem, In, InIndex, Out, OutIndex, I32, U64};

macro_rules! kernels {
    ($($konst:ident = $module:literal :: $name:literal ($($p:ident),* $(,)?);)*) => {
        $(
            pub(crate) const $konst: Kernel = Kernel {
                module: $module,
                name: $name,
                params: &[$($p),*],
            };
        )*
        /// Every kernel of the table.
        pub(crate) const EVERY: &[&Kernel] = &[$(&$konst),*];
    };
}

kernels! {
    // elementwise.cu
    FILL = "elementwise"::"fill"(Out, U64, Elem);
    UNARY = "elementwise"::"unary"(In, Out, U64, I32, Elem, I32);
    BINARY = "elementwise"::"binary"(In, In, Out, U64, U64, U64, U64, U64, U64, I32);
    SELECT = "elementwise"::"select"(In, In, In, Out, U64);
    BROADCAST_TO = "elementwise"::"broadcast_to"(In, Out, U64, U64, U64, U64);
    LINEAR_EPILOGUE = "elementwise"::"linear_epilogue"(Out, In, U64, U64, I32, Elem);
    ACTIVATION_BACKWARD = "elementwise"::"activation_backward"(Out, In, U64, I32, Elem);
    ADAM = "elementwise"::"adam"(
        Out, In, Out, Out, U64, Elem, Elem, Elem, Elem, Elem, Elem, Elem
    );
    // random.cu
    RANDN = "random"::"randn"(Out, U64, U64, U64, U64);
    RAND_UNIFORM = "random"::"rand_uniform"(Out, U64, U64, U64, U64, Elem, Elem);
    // reduce.cu
    REDUCE_ROWS = "reduce"::"reduce_rows"(In, Out, U64, U64, I32);
    REDUCE_COLS = "reduce"::"reduce_cols"(In, Out, U64, U64, I32);
    REDUCE_ALL = "reduce"::"reduce_all"(In, Out, U64, I32);
    ARGMAX_MASK = "reduce"::"argmax_mask"(In, Out, U64, U64, I32);
    LOGSUMEXP_COLS = "reduce"::"logsumexp_cols"(In, Out, U64, U64);
    SOFTMAX_COLS = "reduce"::"softmax_cols"(In, Out, U64, U64);
    // columns.cu
    SLICE_COLS = "columns"::"slice_cols"(In, Out, U64, U64, U64, U64);
    COPY_COLS = "columns"::"copy_cols"(In, Out, U64, U64, U64, U64);
    GATHER_COLS = "columns"::"gather_cols"(In, InIndex, Out, U64, U64, U64);
    SCATTER_ADD_COLS = "columns"::"scatter_add_cols"(In, InIndex, Out, U64, U64, U64);
    TAKE_PER_ROW = "columns"::"take_per_row"(In, InIndex, Out, U64, U64);
    PUT_PER_ROW = "columns"::"put_per_row"(In, InIndex, Out, U64, U64);
    SEARCH_SORTED_ROWS = "columns"::"search_sorted_rows"(In, In, OutIndex, U64, U64);
    // coupling.cu
    AFFINE_COUPLING = "coupling"::"affine_coupling"(
        In, In, Out, Out, U64, U64, U64, I32, I32, I32
    );
    AFFINE_COUPLING_BACKWARD = "coupling"::"affine_coupling_backward"(
        In, In, In, Out, Out, U64, U64, U64, I32, I32
    );
    // diag_normal.cu
    DIAG_NORMAL_LOG_PROB = "diag_normal"::"diag_normal_log_prob"(In, In, In, Out, U64, U64, I32);
    DIAG_NORMAL_BACKWARD = "diag_normal"::"diag_normal_backward"(
        In, In, In, In, Out, Out, U64, U64
    );
    // spline.cu
    RATIONAL_QUADRATIC = "spline"::"rational_quadratic"(
        In, In, Out, Out, U64, U64, I32, Elem, Elem, Elem, Elem, I32
    );
    RATIONAL_QUADRATIC_BACKWARD = "spline"::"rational_quadratic_backward"(
        In, In, In, Out, Out, U64, U64, I32, Elem, Elem, Elem, I32
    );
}

/// The values the spline's forward caches per entry for its backward (KERNELS.md): bin,
/// theta, w, h, d0, d1 and the two knot derivatives' slopes; the backward recomputes the
/// softmaxes from the parameters.
pub(crate) const SPLINE_CACHE_WIDTH: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = include_str!("../kernels/KERNELS.md");

    /// Kernels whose parameter list KERNELS.md does not spell out.
    const ASSUMED: &[&str] = &[];

    fn param_of(spelling: &str) -> Param {
        let words: Vec<&str> = spelling.split_whitespace().collect();
        let ty = words[..words.len() - 1].join(" ").replace(" *", "*");
        // `T* out` splits as ["T*", "out"]; `const T* x` as ["const", "T*", "x"].
        match ty.as_str() {
            "const T*" => In,
            "T*" => Out,
            "const unsigned int*" => InIndex,
            "unsigned int*" => OutIndex,
            "u64" => U64,
            "int" => I32,
            "T" => Elem,
            other => panic!("unknown parameter type `{other}` in `{spelling}`"),
        }
    }

    /// `(module, name, params)` of every signature in KERNELS.md's `### <file>.cu` sections;
    /// `None` params where it writes `(...)`.
    fn contract() -> Vec<(String, String, Option<Vec<Param>>)> {
        let mut found = Vec::new();
        for section in CONTRACT.split("\n### ").skip(1) {
            let (heading, body) = section.split_once('\n').unwrap();
            let Some(module) = heading.trim().strip_suffix(".cu") else {
                continue;
            };
            // Code spans are the odd pieces between backticks.
            for span in body.split('`').skip(1).step_by(2) {
                let span = span.split_whitespace().collect::<Vec<_>>().join(" ");
                let Some((name, rest)) = span.split_once('(') else {
                    continue;
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let Some(args) = rest.strip_suffix(')') else {
                    continue;
                };
                let params = if args.trim() == "..." {
                    None
                } else {
                    Some(args.split(',').map(|a| param_of(a.trim())).collect())
                };
                found.push((module.to_string(), name.to_string(), params));
            }
        }
        found
    }

    #[test]
    fn the_table_matches_kernels_md() {
        let contract = contract();
        assert!(
            contract.len() >= 25,
            "parsed too few signatures: {contract:?}"
        );
        for (module, name, params) in &contract {
            let kernel = EVERY
                .iter()
                .find(|k| k.name == name)
                .unwrap_or_else(|| panic!("{module}.cu's `{name}` is not in the table"));
            assert_eq!(kernel.module, module, "`{name}` is in {module}.cu");
            match params {
                Some(params) => assert_eq!(
                    kernel.params,
                    params.as_slice(),
                    "`{name}`'s parameters differ from KERNELS.md"
                ),
                None => assert!(
                    ASSUMED.contains(&name.as_str()),
                    "KERNELS.md gives no parameters for `{name}`"
                ),
            }
        }
        for kernel in EVERY {
            assert!(
                contract.iter().any(|(_, name, _)| name == kernel.name),
                "`{}` is not in KERNELS.md",
                kernel.name
            );
        }
    }

    #[test]
    fn names_are_unique_and_spellings_round_trip() {
        for (i, a) in EVERY.iter().enumerate() {
            for b in &EVERY[i + 1..] {
                assert_ne!(a.name, b.name);
            }
            for p in a.params {
                let spelled = format!("{} x", p.spelling());
                assert_eq!(param_of(&spelled), *p);
            }
        }
    }

    #[test]
    fn sizes_follow_the_element() {
        assert_eq!(Elem.size(4), 4);
        assert_eq!(Elem.size(8), 8);
        assert_eq!(I32.size(8), 4);
        assert_eq!(In.size(4), 8);
        assert_eq!(U64.size(4), 8);
    }

    /// The kernels of a PTX text: each `.entry`'s name and its parameters' PTX types
    /// (`u64`, `u32`, `f32`, ..), in order.
    fn ptx_entries(ptx: &str) -> Vec<(String, Vec<String>)> {
        let mut entries = Vec::new();
        for piece in ptx.split(".entry ").skip(1) {
            let (name, rest) = piece.split_once('(').expect("an entry's parameter list");
            let list = rest.split(')').next().unwrap_or_default();
            let types = list
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1))
                .map(|t| t.trim_start_matches('.').to_string())
                .collect();
            entries.push((name.trim().to_string(), types));
        }
        entries
    }

    /// How PTX declares a parameter of `kind` for elements of `elem` (`f32` or `f64`).
    fn ptx_type(kind: Param, elem: &str) -> &str {
        match kind {
            In | Out | InIndex | OutIndex | U64 => "u64",
            I32 => "u32",
            Elem => elem,
        }
    }

    #[test]
    fn ptx_parameter_types_follow_the_example() {
        let ptx = "// x\n.visible .entry fill_f32(\n\t.param .u64 fill_f32_param_0,\n\t\
            .param .u64 fill_f32_param_1,\n\t.param .f32 fill_f32_param_2\n)\n{\n}\n";
        assert_eq!(
            ptx_entries(ptx),
            [(
                "fill_f32".to_string(),
                vec!["u64".into(), "u64".into(), "f32".into()]
            )]
        );
    }

    /// Every kernel of every `.cu`, compiled by NVRTC in f32 and f64, takes exactly the
    /// parameters this table (and KERNELS.md) declares, by PTX type: a scalar of the element
    /// type where the table says `T`, a 32-bit integer for `int`, 64 bits for sizes and
    /// pointers. On a GPU the driver only reports sizes (and `T` and `int` are both 4 bytes
    /// in f32); here a `.cu` that drifted from the table fails in CI.
    #[test]
    fn every_compiled_kernel_takes_the_table_parameters() {
        crate::compile::tests::require_nvrtc();
        let common = common_header().expect("common.cuh is embedded");
        let mut failures = Vec::new();
        let mut checked = 0;
        for module in module_names() {
            let source = module_source(module).expect("embedded");
            let text = crate::compile::program_text(module, source, common);
            for elem in ["f32", "f64"] {
                let mut options = crate::compile::options((9, 0), elem);
                options[0] = "--gpu-architecture=compute_90".into();
                let ptx =
                    crate::compile::ptx(module, &text, &options).unwrap_or_else(|e| panic!("{e}"));
                let entries = ptx_entries(&ptx);
                for kernel in EVERY.iter().filter(|k| k.module == module) {
                    let symbol = format!("{}_{elem}", kernel.name);
                    let want: Vec<&str> =
                        kernel.params.iter().map(|&p| ptx_type(p, elem)).collect();
                    match entries.iter().find(|(name, _)| *name == symbol) {
                        None => failures.push(format!("{module}.cu compiles no kernel {symbol}")),
                        Some((_, got)) if *got != want => failures.push(format!(
                            "{module}.cu's {symbol} takes ({}); the table declares ({})",
                            got.join(", "),
                            want.join(", ")
                        )),
                        Some(_) => checked += 1,
                    }
                }
                for (name, _) in &entries {
                    if !EVERY.iter().any(|k| format!("{}_{elem}", k.name) == *name) {
                        failures.push(format!("{module}.cu's kernel {name} is not in the table"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(checked, 2 * EVERY.len());
    }

    #[test]
    fn the_sources_present_are_embedded() {
        assert!(common_header().is_some_and(|h| h.contains("FLOW_KERNEL")));
        assert!(module_source("elementwise").is_some_and(|s| s.contains("FLOW_NAME(unary)")));
        assert!(module_source("no_such_module").is_none());
    }
}
