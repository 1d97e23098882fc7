//! The checkpoint reader on hostile input: random bytes, random mutations of a valid
//! checkpoint (of the whole file, and of its JSON header with the length prefix kept
//! right), and random architectures return `Ok` or `Err`, never panic; a tensor claiming
//! 2^40 elements or a header claiming more bytes than the file holds is refused without
//! allocating them.
//!
//! The same inputs are fuzzed with libFuzzer by `fuzz/fuzz_targets/checkpoint.rs` (see
//! fuzz/README.md); these tests keep the property checked on stable Rust in CI.

use flow_core::Cpu;
use flow_layers::{NormalizingFlow, RealNvpConfig};
use flow_train::checkpoint::{self, load_bytes, TensorFile};
use flow_train::preprocess::Preprocess;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

type B = Cpu<f32>;

// ------------------------------------------------- the largest allocation, per thread

/// The system allocator, recording the largest single request made on each thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: nothing is recorded while the thread's locals are torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// `f()` and the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

// ------------------------------------------------------------------ seeds

fn model() -> NormalizingFlow<B> {
    let spec = RealNvpConfig {
        dim: 2,
        transforms: 1,
        hidden: vec![3],
        ..RealNvpConfig::default()
    }
    .spec()
    .unwrap();
    NormalizingFlow::new(&Cpu::new(), spec, 7).unwrap()
}

/// A small valid checkpoint written by the library, with a standardisation stored.
fn seed() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.safetensors");
    let preprocess = Preprocess::Standardize {
        mean: vec![0.5, -1.0],
        std: vec![2.0, 0.25],
        dequantize: vec![1],
    };
    checkpoint::save_run(
        &model(),
        &preprocess,
        None,
        &path,
        &[("note", "seed".into())],
    )
    .unwrap();
    std::fs::read(&path).unwrap()
}

/// A safetensors file: the length prefix, `header`, then `data`.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The seed split into its JSON header and its data.
fn split(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (bytes[8..8 + n].to_vec(), bytes[8 + n..].to_vec())
}

// ------------------------------------------------------------ the checks

/// Both readers: Ok or Err, never a panic; a tensor read matches its shape.
fn check(bytes: &[u8]) {
    let path = Path::new("fuzz.safetensors");
    let (file, largest) = largest_allocation(|| TensorFile::from_bytes(bytes, path));
    if let Ok(file) = file {
        for (shape, values) in file.tensors.values() {
            let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            assert_eq!(n, Some(values.len()), "shape {shape:?}");
        }
    }
    // f32 data read as f64 doubles in size; beyond that nothing scales past the input.
    assert!(
        largest <= 4096 + 4 * bytes.len(),
        "{largest} bytes allocated for {} bytes of input",
        bytes.len()
    );
    let _ = load_bytes::<B>(&Cpu::new(), bytes, path);
}

// --------------------------------------------------------------- mutations

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<usize>();
    prop_oneof![
        (index, 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (index, any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        index.prop_map(Mutation::Truncate),
        (
            index,
            prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(b"0123456789,.\"-e[]{}:".to_vec())
                ],
                1..12
            )
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (index, 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::Flip(i, bit) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] ^= 1 << bit;
            }
            Mutation::Set(i, v) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] = *v;
            }
            Mutation::Truncate(i) => b.truncate(at(*i, b.len() + 1)),
            Mutation::Insert(i, bytes) => {
                let i = at(*i, b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove(i, n) if !b.is_empty() => {
                let i = at(*i, b.len());
                b.drain(i..(i + n).min(b.len()));
            }
            _ => {}
        }
    }
    b
}

/// A number of features or hidden units: mostly small, sometimes zero or one.
fn small() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..4, 0usize..9]
}

/// An architecture description: small sizes, random permutations (valid or not), layers
/// of either kind.
fn architecture() -> impl Strategy<Value = String> {
    let layer = prop_oneof![
        (
            prop::collection::vec(small(), 0..3),
            prop::sample::select(vec![0.0, 0.01, -1.0, 1e300])
        )
            .prop_map(|(hidden, leaky)| serde_json::json!({
                "type": "affine_coupling", "hidden": hidden, "leaky": leaky, "scale_map": "exp"
            })),
        (
            prop::sample::select(vec!["swap", "shuffle", "reverse", "nonsense"]),
            prop::collection::vec(small(), 0..5)
        )
            .prop_map(|(mode, perm)| serde_json::json!({
                "type": "permute", "mode": mode, "perm": perm
            })),
    ];
    (small(), prop::collection::vec(layer, 0..4)).prop_map(|(dim, layers)| {
        serde_json::json!({"dim": dim, "base": {"type": "diag_gaussian"}, "layers": layers})
            .to_string()
    })
}

/// The seed's tensors and metadata with `architecture` (and, when given, `preprocess`)
/// replaced, as the bytes of a checkpoint.
fn with_metadata(seed: &[u8], architecture: &str, preprocess: Option<&str>) -> Vec<u8> {
    let path = Path::new("seed.safetensors");
    let mut file = TensorFile::from_bytes(seed, path).unwrap();
    file.metadata
        .insert("architecture".into(), architecture.into());
    if let Some(p) = preprocess {
        file.metadata.insert("preprocess".into(), p.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.safetensors");
    file.write(&out, "f32").unwrap();
    std::fs::read(&out).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes);
    }

    #[test]
    fn random_headers_never_panic(
        header in prop::collection::vec(
            prop_oneof![any::<u8>(), prop::sample::select(b"{}[]:,\"0123456789FIUdtypeshapdaof_s".to_vec())],
            0..128,
        ),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        check(&safetensors(&String::from_utf8_lossy(&header), &data));
    }

    #[test]
    fn mutations_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        check(&mutate(&seed(), &mutations));
    }

    /// Mutations of the JSON header alone, with the length prefix fixed up, so that they
    /// reach past the framing into the tensors' descriptions and the metadata.
    #[test]
    fn header_mutations_never_panic(mutations in prop::collection::vec(mutation(), 1..6)) {
        let (header, data) = split(&seed());
        let header = mutate(&header, &mutations);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&data);
        check(&bytes);
    }

    /// Random small architectures over the seed's tensors: refused by an error (or loaded),
    /// never a panic in building the model.
    #[test]
    fn random_architectures_never_panic(
        architecture in architecture(),
        preprocess in prop::option::of(prop::sample::select(vec![
            r#"{"kind":"identity"}"#,
            r#"{"kind":"standardize","mean":[0.0],"std":[1.0],"dequantize":[]}"#,
            r#"{"kind":"standardize","mean":[0.0,1.0],"std":[0.0,1.0],"dequantize":[5]}"#,
            r#"{"kind":"standardize","mean":[0.5,1.0],"std":[1.0,2.0],"dequantize":[1]}"#,
        ])),
    ) {
        check(&with_metadata(&seed(), &architecture, preprocess));
    }
}

// ----------------------------------------------------------- targeted cases

#[test]
fn seed_loads() {
    let bytes = seed();
    assert!(bytes.len() < 20_000);
    let run = load_bytes::<B>(&Cpu::new(), &bytes, Path::new("seed.safetensors")).unwrap();
    assert_eq!(run.model.dim(), 2);
    assert_eq!(run.metadata.get("note").map(String::as_str), Some("seed"));
}

/// A tensor claiming 2^40 elements (in a file of a few bytes) is an error, and nothing of
/// that size is allocated.
#[test]
fn tensor_claiming_2_to_the_40_elements_is_refused() {
    let shapes = [
        "[1048576,1048576]",            // 2^40 elements
        "[1099511627776]",              // 2^40, 1-D
        "[4294967296,4294967296,4096]", // overflows u64
        "[18446744073709551615,2]",     // overflows
        "[0,1099511627776]",            // zero elements, huge dimension
    ];
    for shape in shapes {
        for (end, data_len) in [(16u64, 16usize), (1 << 42, 64), (u64::MAX, 64)] {
            let header = format!(
                r#"{{"__metadata__":{{"format":"flows-checkpoint","architecture":"{{}}"}},"flows.0.w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,{end}]}}}}"#
            );
            let bytes = safetensors(&header, &vec![0; data_len]);
            let path = Path::new("huge.safetensors");
            let (result, largest) = largest_allocation(|| TensorFile::from_bytes(&bytes, path));
            let err = result.expect_err(shape).to_string();
            assert!(err.contains("huge.safetensors"), "{err}");
            assert!(largest < 64 * 1024, "{shape}: allocated {largest} bytes");
            let (result, largest) =
                largest_allocation(|| load_bytes::<B>(&Cpu::new(), &bytes, path));
            assert!(result.is_err(), "{shape}");
            assert!(largest < 64 * 1024, "{shape}: allocated {largest} bytes");
        }
    }
}

/// A length prefix claiming a header far longer than the file is refused, unallocated.
#[test]
fn header_length_beyond_the_file_is_refused() {
    for n in [1u64 << 40, u64::MAX, 1 << 20, 200] {
        let mut bytes = n.to_le_bytes().to_vec();
        bytes.extend_from_slice(br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
        let (result, largest) =
            largest_allocation(|| TensorFile::from_bytes(&bytes, Path::new("h.safetensors")));
        assert!(result.is_err(), "{n}");
        assert!(largest < 64 * 1024, "{n}: allocated {largest} bytes");
    }
}

/// An architecture claiming enormous layers over a small file is refused before the model
/// is built (a file of a few hundred bytes once asked for terabytes and aborted the process).
#[test]
fn architecture_claiming_huge_layers_is_refused_without_allocating() {
    let seed = seed();
    for architecture in [
        r#"{"dim":1099511627776,"base":{"type":"diag_gaussian"},"layers":[]}"#,
        r#"{"dim":2,"base":{"type":"diag_gaussian"},"layers":[{"type":"affine_coupling","hidden":[1099511627776],"leaky":0.0,"scale_map":"exp"}]}"#,
    ] {
        let bytes = with_metadata(&seed, architecture, None);
        let (result, largest) =
            largest_allocation(|| load_bytes::<B>(&Cpu::new(), &bytes, Path::new("a.safetensors")));
        assert!(result.is_err());
        assert!(largest < 1 << 20, "allocated {largest} bytes");
    }
}

/// Writes the seed of the checkpoint fuzz target to `fuzz/seeds/checkpoint/` (run by hand:
/// `cargo test -p flow-train --test checkpoint_robustness -- --ignored write_fuzz_seed`).
#[test]
#[ignore = "writes the fuzz seed into the source tree"]
fn write_fuzz_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("realnvp_2d.safetensors"), seed()).unwrap();
    let path = dir.join("plain_2d.safetensors");
    checkpoint::save(&model(), &path, &[]).unwrap();
}
