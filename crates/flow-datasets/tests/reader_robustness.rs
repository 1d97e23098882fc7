//! The CSV and `.npy` byte parsers on hostile input: random bytes and random mutations of
//! valid files return `Ok` (a well-formed table) or `Err`, never panic; a header claiming a
//! huge shape is refused before anything is allocated for it; wide rows are linear.
//!
//! The same inputs are fuzzed with libFuzzer by the targets in `fuzz/` (see fuzz/README.md);
//! these tests keep the property checked on stable Rust in CI.

use flow_datasets::tabular::{
    parse_csv, parse_npy, write_npy, ColumnSelector, CsvOptions, Error, Header, Table,
};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

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

const CSV_SEED: &[u8] = b"a,b,\"c, quoted\"\n1,2,3\n4.5,-6e-3,\"7\"\n\n-0,1e2,  8  \n";

/// A version 1.0 `.npy` file: `header` padded to a multiple of 64 bytes, then `data`.
fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.to_string();
    let preamble = 10;
    let total = (preamble + header.len() + 1).div_ceil(64) * 64;
    header.extend(std::iter::repeat_n(
        ' ',
        total - preamble - header.len() - 1,
    ));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A 3 x 2 `<f8` table written by the library.
fn npy_f64_seed() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    let table = Table::from_values(2, vec![1.0, -2.5, 3.25, 0.0, 1e-3, 42.0]).unwrap();
    write_npy(&path, &table).unwrap();
    std::fs::read(&path).unwrap()
}

/// A 4 x 2 `|u1` array in Fortran order.
fn npy_u8_seed() -> Vec<u8> {
    npy_bytes(
        "{'descr': '|u1', 'fortran_order': True, 'shape': (4, 2), }",
        &[0, 1, 2, 255, 7, 8, 9, 10],
    )
}

// ------------------------------------------------------------ the checks

fn check_table(table: &Table) {
    assert!(table.rows() > 0 && table.cols() > 0);
    assert_eq!(table.columns().len(), table.cols());
    assert_eq!(table.data().len(), table.rows() * table.cols());
    assert!(table.data().iter().all(|v| v.is_finite()));
}

fn csv_options() -> Vec<CsvOptions> {
    vec![
        CsvOptions::default(),
        CsvOptions {
            header: Header::No,
            delimiter: b';',
            ..CsvOptions::default()
        },
        CsvOptions {
            header: Header::Yes,
            delimiter: b' ',
            ..CsvOptions::default()
        },
        CsvOptions {
            header: Header::Auto,
            delimiter: b'\t',
            columns: Some(vec![ColumnSelector::Index(1), ColumnSelector::Index(0)]),
        },
        CsvOptions {
            header: Header::Yes,
            delimiter: b',',
            columns: Some(vec!["a".into(), ColumnSelector::Index(0)]),
        },
    ]
}

/// Every option set: Ok with a well-formed table, or Err; a panic fails the test.
fn check_csv(bytes: &[u8]) {
    for options in csv_options() {
        if let Ok(table) = parse_csv(bytes, Path::new("fuzz.csv"), &options) {
            check_table(&table);
        }
    }
}

fn check_npy(bytes: &[u8]) {
    let path = Path::new("fuzz.npy");
    let (result, largest) = largest_allocation(|| parse_npy(bytes, path, None));
    if let Ok(table) = result {
        check_table(&table);
        assert!(table.data().len() <= bytes.len());
    }
    // Nothing is allocated beyond a small multiple of the input (f64 per u8 element).
    assert!(
        largest <= 4096 + 16 * bytes.len(),
        "{largest} bytes allocated for {} bytes of input",
        bytes.len()
    );
    let selection = [ColumnSelector::Index(1), ColumnSelector::Index(0)];
    if let Ok(table) = parse_npy(bytes, path, Some(&selection)) {
        check_table(&table);
    }
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
                    prop::sample::select(b"0123456789,;.\"' \t\n\r-+eE()[]{}:".to_vec())
                ],
                1..16
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn csv_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_csv(&bytes);
    }

    #[test]
    fn csv_random_text_never_panics(
        text in prop::collection::vec(
            prop::sample::select(b"0123456789abe,;.\"' \t\n\r-+".to_vec()),
            0..256,
        )
    ) {
        check_csv(&text);
    }

    #[test]
    fn csv_mutations_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        check_csv(&mutate(CSV_SEED, &mutations));
    }

    #[test]
    fn npy_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_npy(&bytes);
    }

    #[test]
    fn npy_random_bytes_after_the_preamble_never_panic(
        version in prop::sample::select(vec![1u8, 2, 3]),
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend_from_slice(&[version, 0]);
        bytes.extend_from_slice(&rest);
        check_npy(&bytes);
    }

    #[test]
    fn npy_f64_mutations_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        check_npy(&mutate(&npy_f64_seed(), &mutations));
    }

    #[test]
    fn npy_u8_mutations_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        check_npy(&mutate(&npy_u8_seed(), &mutations));
    }

    #[test]
    fn npy_random_headers_never_panic(
        descr in prop::sample::select(vec!["<f8", ">f4", "|u1", "<i8", "|b1", "<u2", "f8", "<c16"]),
        fortran in any::<bool>(),
        shape in prop::collection::vec(prop_oneof![0u64..8, any::<u64>()], 0..4),
        data in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let fortran = if fortran { "True" } else { "False" };
        let header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
        check_npy(&npy_bytes(&header, &data));
    }
}

// ----------------------------------------------------------- targeted cases

#[test]
fn seeds_parse() {
    let t = parse_csv(CSV_SEED, Path::new("s.csv"), &CsvOptions::default()).unwrap();
    assert_eq!(t.columns(), ["a", "b", "c, quoted"]);
    assert_eq!(t.data(), [1.0, 2.0, 3.0, 4.5, -6e-3, 7.0, -0.0, 100.0, 8.0]);
    let t = parse_npy(&npy_f64_seed(), Path::new("s.npy"), None).unwrap();
    assert_eq!((t.rows(), t.cols()), (3, 2));
    let t = parse_npy(&npy_u8_seed(), Path::new("s.npy"), None).unwrap();
    assert_eq!(t.data(), [0.0, 7.0, 1.0, 8.0, 2.0, 9.0, 255.0, 10.0]);
}

#[test]
fn parse_errors_name_the_given_path() {
    let err = parse_csv(
        b"a,b\n1,x\n",
        Path::new("given.csv"),
        &CsvOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("given.csv"), "{err}");
    let err = parse_npy(b"not npy", Path::new("given.npy"), None).unwrap_err();
    assert!(err.to_string().contains("given.npy"), "{err}");
}

/// A header claiming far more data than the file holds is an error, and nothing of the
/// claimed size is allocated first.
#[test]
fn npy_huge_shapes_are_refused_without_allocating() {
    let huge = [
        "(1099511627776, 1048576)", // 2^40 x 2^20 elements: overflows nothing, 8 EiB
        "(1099511627776,)",         // 2^40 rows
        "(4611686018427387904, 4)", // the byte count overflows usize
        "(18446744073709551615, 1)", // u64::MAX rows
        "(3, 6148914691236517206)", // the element count overflows
        "(0, 752651179140525522)",  // no rows, so no bytes needed, but 2^59 columns
    ];
    for shape in huge {
        for descr in ["<f8", "|u1"] {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
            let bytes = npy_bytes(&header, &[0; 64]);
            let (result, largest) =
                largest_allocation(|| parse_npy(&bytes, Path::new("huge.npy"), None));
            let err = result.expect_err(shape);
            assert!(
                matches!(
                    err,
                    Error::Truncated { .. } | Error::NpyHeader { .. } | Error::Empty { .. }
                ),
                "{shape}: {err}"
            );
            assert!(largest < 64 * 1024, "{shape}: allocated {largest} bytes");
        }
    }
    // A header length claiming 4 GiB (version 2.0) in a short file.
    let mut bytes = b"\x93NUMPY\x02\x00\xff\xff\xff\xff{}".to_vec();
    bytes.extend_from_slice(&[b' '; 32]);
    let (result, largest) = largest_allocation(|| parse_npy(&bytes, Path::new("h.npy"), None));
    assert!(matches!(result, Err(Error::NpyHeader { .. })));
    assert!(largest < 64 * 1024, "allocated {largest} bytes");
}

/// A header of deeply nested brackets is an error, not a stack overflow.
#[test]
fn npy_deeply_nested_header_is_refused() {
    for open in ["(", "[", "{'a': ", "[(", "{0: ["] {
        let header = open.repeat(50_000);
        let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
        bytes.extend_from_slice(&u32::try_from(header.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        let err = parse_npy(&bytes, Path::new("deep.npy"), None).unwrap_err();
        assert!(matches!(err, Error::NpyHeader { .. }), "{err}");
        assert!(err.to_string().contains("deep.npy"), "{err}");
    }
}

/// Zero columns and a huge row count: no data bytes are needed, and the reader must not
/// loop over the rows.
#[test]
fn npy_zero_columns_with_huge_row_count_is_quick() {
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 0), }";
    let bytes = npy_bytes(header, &[]);
    let start = Instant::now();
    assert!(parse_npy(&bytes, Path::new("z.npy"), None).is_err());
    assert!(parse_npy(
        &bytes,
        Path::new("z.npy"),
        Some(&[ColumnSelector::Index(0)])
    )
    .is_err());
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// One row of 10^6 cells (with and without quotes, header or not): read in linear time.
#[test]
fn csv_a_million_columns_is_linear() {
    const N: usize = 1_000_000;
    let row = vec!["1.5"; N].join(",");
    let quoted = vec!["\"2\""; N].join(",");
    let names: Vec<String> = (0..N).map(|j| format!("c{j}")).collect();
    let header = names.join(",");
    let start = Instant::now();

    let t = parse_csv(
        row.as_bytes(),
        Path::new("wide.csv"),
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!((t.rows(), t.cols()), (1, N));
    let t = parse_csv(
        quoted.as_bytes(),
        Path::new("wide.csv"),
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!((t.rows(), t.cols()), (1, N));
    assert!(t.data().iter().all(|&v| v == 2.0));
    let text = format!("{header}\n{row}\n{row}\n");
    let t = parse_csv(
        text.as_bytes(),
        Path::new("wide.csv"),
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!((t.rows(), t.cols()), (2, N));
    assert_eq!(t.columns()[N - 1], format!("c{}", N - 1));
    // The last column by name, and a ragged second row found at its end.
    let options = CsvOptions {
        columns: Some(vec![format!("c{}", N - 1).into()]),
        ..CsvOptions::default()
    };
    let t = parse_csv(text.as_bytes(), Path::new("wide.csv"), &options).unwrap();
    assert_eq!((t.rows(), t.cols()), (2, 1));
    let ragged = format!("{row}\n{row},1\n");
    let err = parse_csv(
        ragged.as_bytes(),
        Path::new("wide.csv"),
        &CsvOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Ragged { row: 2, .. }), "{err}");
    let spaced = vec!["3"; N].join(" \t ");
    let options = CsvOptions {
        header: Header::No,
        delimiter: b' ',
        ..CsvOptions::default()
    };
    let t = parse_csv(spaced.as_bytes(), Path::new("wide.csv"), &options).unwrap();
    assert_eq!((t.rows(), t.cols()), (1, N));

    // Quadratic work on 10^6 cells would take minutes; linear takes well under a second.
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

/// Many short lines and one long quoted cell: linear too.
#[test]
fn csv_long_inputs_are_linear() {
    let start = Instant::now();
    let lines = "1,2\n".repeat(200_000);
    let t = parse_csv(
        lines.as_bytes(),
        Path::new("long.csv"),
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(t.rows(), 200_000);
    let cell = format!("\"0.{}\"\n", "9".repeat(1_000_000));
    let t = parse_csv(
        cell.as_bytes(),
        Path::new("long.csv"),
        &CsvOptions::default(),
    );
    assert_eq!(t.map(|t| t.data().to_vec()).ok(), Some(vec![1.0]));
    let unclosed = format!("\"{}\n", "x".repeat(1_000_000));
    assert!(parse_csv(
        unclosed.as_bytes(),
        Path::new("long.csv"),
        &CsvOptions::default()
    )
    .is_err());
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Writes the seed files of the fuzz targets to `fuzz/seeds/` (run by hand:
/// `cargo test -p flow-datasets --test reader_robustness -- --ignored write_fuzz_seeds`).
#[test]
#[ignore = "writes the fuzz seeds into the source tree"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let write = |dir: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    write("csv", "header.csv", CSV_SEED);
    write("csv", "no_header.csv", b"1;2;3\n4;5;6\n");
    write("csv", "spaces.txt", b"x y\n 1.0e0   2\n3 4\n");
    write("npy", "f64_3x2.npy", &npy_f64_seed());
    write("npy", "u8_4x2_fortran.npy", &npy_u8_seed());
    write(
        "npy",
        "i2_be_1d.npy",
        &npy_bytes(
            "{'descr': '>i2', 'fortran_order': False, 'shape': (3,), }",
            &[0, 1, 255, 254, 1, 0],
        ),
    );
}
