//! Reading CSV and NPY files, splits, standardisation and dequantisation.

use flow_datasets::tabular::{
    self, dequantize, integer_columns, read_csv, read_npy, write_npy, ColumnSelector, CsvOptions,
    Error, Header, Split, Standardizer, Table,
};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn csv(dir: &Path, name: &str, text: &str) -> PathBuf {
    write(dir, name, text)
}

fn opts(header: Header, columns: Option<Vec<ColumnSelector>>) -> CsvOptions {
    CsvOptions {
        header,
        columns,
        ..CsvOptions::default()
    }
}

/// The error's message, after checking that it names the file.
fn message(result: tabular::Result<Table>, path: &Path) -> String {
    let err = result.expect_err("expected an error");
    let msg = err.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "`{msg}` does not name {name}");
    msg
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "`{msg}` does not contain `{part}`");
    }
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_header_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "h.csv", "a,b,c\n1,2,3\n4,5.5,-6e-1\n");
    let t = read_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(t.columns(), ["a", "b", "c"]);
    assert_eq!((t.rows(), t.cols()), (2, 3));
    assert_eq!(t.data(), [1.0, 2.0, 3.0, 4.0, 5.5, -0.6]);
    assert_eq!(t.row(1), [4.0, 5.5, -0.6]);
    assert_eq!(t.column(2), [3.0, -0.6]);
    assert_eq!(t.get(0, 1), 2.0);
}

#[test]
fn csv_without_header_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "n.csv", "1,2\n3,4\n");
    let t = read_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(t.columns(), ["x0", "x1"]);
    assert_eq!(t.data(), [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn a_header_with_one_text_cell_is_a_header_but_an_empty_cell_is_not_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "years.csv", "id,1990,2000\n1,2,3\n");
    let t = read_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(t.columns(), ["id", "1990", "2000"]);
    assert_eq!(t.rows(), 1);

    let p = csv(dir.path(), "gap.csv", "1,,3\n4,5,6\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 1, column 2", "an empty cell is not a number"]);
}

#[test]
fn csv_header_can_be_forced_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "numeric_header.csv", "10,20\n1,2\n3,4\n");
    let t = read_csv(&p, &opts(Header::Yes, None)).unwrap();
    assert_eq!(t.columns(), ["10", "20"]);
    assert_eq!(t.data(), [1.0, 2.0, 3.0, 4.0]);
    // Selecting by a numeric-looking name needs `Name`, not `FromStr`.
    let t = read_csv(&p, &opts(Header::Yes, Some(vec!["20".into()]))).unwrap();
    assert_eq!(t.data(), [2.0, 4.0]);

    let t = read_csv(&p, &opts(Header::No, None)).unwrap();
    assert_eq!(t.rows(), 3);
    assert_eq!(t.columns(), ["x0", "x1"]);

    let p = csv(dir.path(), "text_first.csv", "a,b\n1,2\n");
    let msg = message(read_csv(&p, &opts(Header::No, None)), &p);
    assert_contains(&msg, &["row 1, column 1", "`a`", "not a number"]);
}

#[test]
fn csv_columns_are_chosen_by_name_and_index_in_the_given_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(
        dir.path(),
        "mixed.csv",
        "label,x,y,z\ncat,1,2,3\ndog,4,5,6\n",
    );
    let cols = vec![ColumnSelector::from("z"), ColumnSelector::Index(1)];
    let t = read_csv(&p, &opts(Header::Auto, Some(cols))).unwrap();
    assert_eq!(t.columns(), ["z", "x"]);
    assert_eq!(t.data(), [3.0, 1.0, 6.0, 4.0]);

    // The text column is not read, so it may hold text; "2" parses to an index.
    let cols: Vec<ColumnSelector> = ["y", "2"].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(cols[1], ColumnSelector::Index(2));
    let t = read_csv(&p, &opts(Header::Auto, Some(cols))).unwrap();
    assert_eq!(t.columns(), ["y", "y"]);
    assert_eq!(t.data(), [2.0, 2.0, 5.0, 5.0]);

    // Without a header, indices name the columns after their positions.
    let p = csv(dir.path(), "plain.csv", "1,2,3\n4,5,6\n");
    let t = read_csv(&p, &opts(Header::Auto, Some(vec![2.into(), 0.into()]))).unwrap();
    assert_eq!(t.columns(), ["x2", "x0"]);
    assert_eq!(t.data(), [3.0, 1.0, 6.0, 4.0]);
}

#[test]
fn csv_blank_lines_crlf_bom_quotes_and_delimiters() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(
        dir.path(),
        "messy.csv",
        "\u{feff}\"a, b\",\"c\"\"\"\r\n\r\n 1 , \"2\" \r\n\n  \n3,4\r\n",
    );
    let t = read_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(t.columns(), ["a, b", "c\""]);
    assert_eq!(t.data(), [1.0, 2.0, 3.0, 4.0]);

    let p = csv(dir.path(), "semi.csv", "a;b\n1;2\n");
    let t = read_csv(
        &p,
        &CsvOptions {
            delimiter: b';',
            ..CsvOptions::default()
        },
    )
    .unwrap();
    assert_eq!(t.data(), [1.0, 2.0]);

    let p = csv(dir.path(), "spaces.txt", "1.5   2\t3\n  4 5 6\n");
    let t = read_csv(
        &p,
        &CsvOptions {
            delimiter: b' ',
            ..CsvOptions::default()
        },
    )
    .unwrap();
    assert_eq!(t.data(), [1.5, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn csv_missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file.csv");
    let msg = message(read_csv(&missing, &CsvOptions::default()), &missing);
    assert_contains(&msg, &[&missing.display().to_string(), "cannot read"]);
    let err = read_csv(&missing, &CsvOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));

    for (name, text, note) in [
        ("empty.csv", "", "empty"),
        ("blank.csv", "\n  \n\r\n", "empty"),
        ("header_only.csv", "x0,x1\n\n", "only a header"),
    ] {
        let p = csv(dir.path(), name, text);
        let msg = message(read_csv(&p, &CsvOptions::default()), &p);
        assert_contains(&msg, &["no data rows", note]);
    }
}

#[test]
fn csv_non_numeric_cells_name_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // The existing `flows log-prob` wording: the row counts the header line.
    let p = csv(dir.path(), "word.csv", "x0,x1\n1,2\n3,abc\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 3, column 2 (`x1`)", "`abc`", "not a number"]);

    // Blank lines count as lines.
    let p = csv(dir.path(), "gaps.csv", "1,2\n\n\n3,4\n5,six\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 5, column 2:", "`six`"]);

    // Only the first line can be a header.
    let p = csv(dir.path(), "two_headers.csv", "x0,x1\nfoo,bar\n1,2\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 2, column 1 (`x0`)", "`foo`"]);

    // A column that is selected must hold numbers; one that is not, need not.
    let p = csv(dir.path(), "label.csv", "name,v\nann,1\nbob,2\n");
    let msg = message(read_csv(&p, &opts(Header::Auto, Some(vec![0.into()]))), &p);
    assert_contains(&msg, &["row 2, column 1 (`name`)", "`ann`"]);
    let t = read_csv(&p, &opts(Header::Auto, Some(vec!["v".into()]))).unwrap();
    assert_eq!(t.data(), [1.0, 2.0]);
}

#[test]
fn csv_nan_and_infinities_are_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, place, kind) in [
        (
            "nan.csv",
            "x0,x1\n1,2\nNaN,4\n",
            "row 3, column 1 (`x0`)",
            "(NaN)",
        ),
        ("inf.csv", "1,inf\n", "row 1, column 2:", "(+infinity)"),
        (
            "neg.csv",
            "1,2\n-Infinity,3\n",
            "row 2, column 1:",
            "(-infinity)",
        ),
        (
            "big.csv",
            "a,b\n1,1e999\n",
            "row 2, column 2 (`b`)",
            "(+infinity)",
        ),
    ] {
        let p = csv(dir.path(), name, text);
        let msg = message(read_csv(&p, &CsvOptions::default()), &p);
        assert_contains(&msg, &[place, "not finite", kind]);
    }
}

#[test]
fn csv_ragged_rows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "ragged.csv", "1,2\n3,4,5\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 2 has 3 columns", "earlier rows have 2"]);

    let p = csv(dir.path(), "short.csv", "a,b,c\n1,2,3\n\n4,5\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 4 has 2 columns", "earlier rows have 3"]);
    let err = read_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(matches!(
        err,
        Error::Ragged {
            row: 4,
            expected: 3,
            got: 2,
            ..
        }
    ));

    // A trailing delimiter makes an extra, empty cell.
    let p = csv(dir.path(), "trailing.csv", "1,2\n3,4,\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 2 has 3 columns"]);
}

#[test]
fn csv_bad_column_selections() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "named.csv", "a,b\n1,2\n");
    let msg = message(
        read_csv(&p, &opts(Header::Auto, Some(vec!["c".into()]))),
        &p,
    );
    assert_contains(&msg, &["no column is named `c`", "`a`, `b`"]);

    let msg = message(read_csv(&p, &opts(Header::Auto, Some(vec![2.into()]))), &p);
    assert_contains(&msg, &["column index 2 is out of range", "2 columns"]);

    let msg = message(read_csv(&p, &opts(Header::Auto, Some(vec![]))), &p);
    assert_contains(&msg, &["no columns"]);

    let p = csv(dir.path(), "unnamed.csv", "1,2\n");
    let msg = message(
        read_csv(&p, &opts(Header::Auto, Some(vec!["a".into()]))),
        &p,
    );
    assert_contains(&msg, &["`a`", "no header"]);
}

#[test]
fn csv_unclosed_quote_and_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "quote.csv", "a,b\n1,2\n\"3,4\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 3", "quoted cell is not closed"]);

    let p = write(dir.path(), "latin1.csv", b"a,b\n1,2\n3,\xe94\n");
    let msg = message(read_csv(&p, &CsvOptions::default()), &p);
    assert_contains(&msg, &["row 3", "UTF-8"]);
}

// ---------------------------------------------------------------- NPY

/// An NPY file as NumPy writes it: magic, version, header length, the header padded with
/// spaces and a newline to a multiple of 64 bytes, then `data`.
fn npy_bytes(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let len_bytes = if version == 1 { 2 } else { 4 };
    let preamble = 8 + len_bytes;
    let total = (preamble + header.len() + 1).div_ceil(64) * 64;
    let mut h = header.to_string();
    h.push_str(&" ".repeat(total - preamble - header.len() - 1));
    h.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn header(descr: &str, fortran: bool, shape: &str) -> String {
    let f = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}")
}

fn npy(dir: &Path, name: &str, descr: &str, fortran: bool, shape: &str, data: &[u8]) -> PathBuf {
    write(
        dir,
        name,
        npy_bytes(1, &header(descr, fortran, shape), data),
    )
}

#[test]
fn npy_round_trips_through_write_npy() {
    let dir = tempfile::tempdir().unwrap();
    let values = vec![1.0, -2.5, 3.25e10, 0.1, f64::MIN_POSITIVE, -0.0];
    let table = Table::from_values(3, values.clone()).unwrap();
    let p = dir.path().join("t.npy");
    write_npy(&p, &table).unwrap();

    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(bytes.len(), 10 + header_len + 6 * 8);
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"));
    assert!(header.ends_with(" \n"));

    let back = read_npy(&p, None).unwrap();
    assert_eq!(back, table);
    assert_eq!(back.columns(), ["x0", "x1", "x2"]);
    for (a, b) in back.data().iter().zip(&values) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    // And through `load`, by extension.
    assert_eq!(tabular::load(&p, &CsvOptions::default()).unwrap(), table);
}

#[test]
fn npy_f4_i8_u1_written_byte_by_byte() {
    let dir = tempfile::tempdir().unwrap();

    let f4: Vec<u8> = [1.5f32, -2.0, 0.25, 1e30]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = npy(dir.path(), "f4.npy", "<f4", false, "(2, 2)", &f4);
    let t = read_npy(&p, None).unwrap();
    assert_eq!((t.rows(), t.cols()), (2, 2));
    assert_eq!(t.data(), [1.5, -2.0, 0.25, f64::from(1e30f32)]);

    let i8s: Vec<u8> = [-3i64, 0, 1 << 40]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = npy(dir.path(), "i8.npy", "<i8", false, "(3, 1)", &i8s);
    let t = read_npy(&p, None).unwrap();
    assert_eq!(t.data(), [-3.0, 0.0, (1u64 << 40) as f64]);

    let p = npy(
        dir.path(),
        "u1.npy",
        "|u1",
        false,
        "(2, 3)",
        &[0, 1, 2, 253, 254, 255],
    );
    let t = read_npy(&p, None).unwrap();
    assert_eq!(t.data(), [0.0, 1.0, 2.0, 253.0, 254.0, 255.0]);
    assert_eq!(integer_columns(&t), [0, 1, 2]);
}

#[test]
fn npy_other_integer_and_bool_types() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<f64>)> = vec![
        ("|i1", vec![0x80, 0x7f], vec![-128.0, 127.0]),
        (
            "<i2",
            [-300i16, 7].iter().flat_map(|v| v.to_le_bytes()).collect(),
            vec![-300.0, 7.0],
        ),
        (
            "<i4",
            [-70000i32, 9]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![-70000.0, 9.0],
        ),
        (
            "<u2",
            [65535u16, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
            vec![65535.0, 1.0],
        ),
        (
            "<u4",
            [4e9 as u32, 2]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![4e9, 2.0],
        ),
        (
            "<u8",
            [1u64 << 50, 3]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![(1u64 << 50) as f64, 3.0],
        ),
        ("|b1", vec![1, 0], vec![1.0, 0.0]),
        (
            ">i2",
            [-2i16, 300].iter().flat_map(|v| v.to_be_bytes()).collect(),
            vec![-2.0, 300.0],
        ),
        (
            ">u4",
            [5u32, 6].iter().flat_map(|v| v.to_be_bytes()).collect(),
            vec![5.0, 6.0],
        ),
        (
            ">f4",
            [0.5f32, -8.0]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
            vec![0.5, -8.0],
        ),
    ];
    for (descr, bytes, expected) in cases {
        let p = npy(dir.path(), "typed.npy", descr, false, "(2,)", &bytes);
        let t = read_npy(&p, None).unwrap_or_else(|e| panic!("{descr}: {e}"));
        assert_eq!(t.data(), expected, "{descr}");
    }
}

#[test]
fn npy_fortran_order_1d_big_endian_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    // The 2 x 3 array [[1, 2, 3], [4, 5, 6]] stored column by column.
    let fortran: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = npy(dir.path(), "f.npy", "<f8", true, "(2, 3)", &fortran);
    let t = read_npy(&p, None).unwrap();
    assert_eq!(t.data(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let cols = [ColumnSelector::Index(2), ColumnSelector::Index(0)];
    let t = read_npy(&p, Some(&cols)).unwrap();
    assert_eq!(t.columns(), ["x2", "x0"]);
    assert_eq!(t.data(), [3.0, 1.0, 6.0, 4.0]);

    // 1-D: n rows of one column.
    let one_d: Vec<u8> = [7.0f64, 8.0, 9.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = npy(dir.path(), "1d.npy", "<f8", false, "(3,)", &one_d);
    let t = read_npy(&p, None).unwrap();
    assert_eq!((t.rows(), t.cols()), (3, 1));
    assert_eq!(t.data(), [7.0, 8.0, 9.0]);

    // Big-endian f8 and i8.
    let be: Vec<u8> = [1.25f64, -3.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let p = npy(dir.path(), "be.npy", ">f8", false, "(1, 2)", &be);
    assert_eq!(read_npy(&p, None).unwrap().data(), [1.25, -3.0]);
    let be: Vec<u8> = [-5i64, 1 << 33]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let p = npy(dir.path(), "be_i8.npy", ">i8", false, "(2,)", &be);
    assert_eq!(
        read_npy(&p, None).unwrap().data(),
        [-5.0, (1u64 << 33) as f64]
    );

    // Versions 2.0 and 3.0 (4-byte header length), double quotes, Python 2 long integers.
    for version in [2, 3] {
        let h = "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3L,)}";
        let p = write(dir.path(), "v.npy", npy_bytes(version, h, &one_d));
        assert_eq!(
            read_npy(&p, None).unwrap().data(),
            [7.0, 8.0, 9.0],
            "v{version}"
        );
    }
}

#[test]
fn npy_truncated_files_give_expected_and_actual_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("full.npy");
    write_npy(&p, &Table::from_values(3, vec![1.0; 6]).unwrap()).unwrap();
    let bytes = std::fs::read(&p).unwrap();

    let cut = write(dir.path(), "cut.npy", &bytes[..bytes.len() - 5]);
    let msg = message(read_npy(&cut, None), &cut);
    assert_contains(
        &msg,
        &["truncated", "(2, 3)", "`<f8`", "needs 48 bytes", "holds 43"],
    );
    let err = read_npy(&cut, None).unwrap_err();
    assert!(matches!(
        err,
        Error::Truncated {
            expected: 48,
            actual: 43,
            ..
        }
    ));

    // Cut inside the header, and inside the preamble.
    let cut = write(dir.path(), "cut_header.npy", &bytes[..30]);
    let msg = message(read_npy(&cut, None), &cut);
    assert_contains(&msg, &["NPY header", "ends"]);
    let cut = write(dir.path(), "cut_preamble.npy", &bytes[..7]);
    let msg = message(read_npy(&cut, None), &cut);
    assert_contains(&msg, &["NPY header"]);
}

#[test]
fn npy_bad_magic_version_shape_dtype_and_header() {
    let dir = tempfile::tempdir().unwrap();
    let data = [0u8; 64];

    let mut bytes = npy_bytes(1, &header("<f8", false, "(2,)"), &data[..16]);
    bytes[1] = b'M';
    let p = write(dir.path(), "magic.npy", &bytes);
    let msg = message(read_npy(&p, None), &p);
    assert_contains(&msg, &["not an NPY file", "magic"]);
    let p = write(dir.path(), "csv_named.npy", "1,2\n3,4\n");
    assert!(matches!(read_npy(&p, None), Err(Error::NpyMagic { .. })));
    let p = write(dir.path(), "zero.npy", "");
    assert!(matches!(read_npy(&p, None), Err(Error::NpyMagic { .. })));

    let mut bytes = npy_bytes(1, &header("<f8", false, "(2,)"), &data[..16]);
    bytes[6] = 4;
    let p = write(dir.path(), "version.npy", &bytes);
    assert_contains(&message(read_npy(&p, None), &p), &["version 4.0"]);

    let p = npy(dir.path(), "3d.npy", "<f8", false, "(2, 2, 2)", &data);
    assert_contains(
        &message(read_npy(&p, None), &p),
        &["shape (2, 2, 2)", "3 dimensions", "1-D and 2-D"],
    );
    let p = npy(dir.path(), "0d.npy", "<f8", false, "()", &data[..8]);
    assert_contains(
        &message(read_npy(&p, None), &p),
        &["shape ()", "0 dimensions"],
    );

    for descr in ["<c16", "<f2", "|O", "<U5", "|i8", "<b2"] {
        let p = npy(dir.path(), "dtype.npy", descr, false, "(2,)", &data);
        let msg = message(read_npy(&p, None), &p);
        assert_contains(&msg, &[&format!("unsupported dtype `{descr}`")]);
    }
    let structured =
        "{'descr': [('a', '<f8'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }";
    let p = write(dir.path(), "struct.npy", npy_bytes(1, structured, &data));
    assert_contains(
        &message(read_npy(&p, None), &p),
        &["unsupported dtype", "('a', '<f8')"],
    );

    for (h, says) in [
        ("{'descr': '<f8', 'shape': (2,), }", "'fortran_order'"),
        (
            "{'descr': '<f8', 'fortran_order': 0, 'shape': (2,), }",
            "not True or False",
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': [2], }",
            "not a tuple",
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
            "ends early",
        ),
        ("not a dict", "unexpected"),
    ] {
        let p = write(dir.path(), "header.npy", npy_bytes(1, h, &data));
        let msg = message(read_npy(&p, None), &p);
        assert_contains(&msg, &["bad NPY header", says]);
    }
}

#[test]
fn npy_non_finite_values_name_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // [[1, 2, 3], [4, 5, NaN]] in Fortran order: the NaN is row 2, column 3.
    let f: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, f64::NAN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = npy(dir.path(), "nan.npy", "<f8", true, "(2, 3)", &f);
    let msg = message(read_npy(&p, None), &p);
    assert_contains(&msg, &["row 2, column 3", "not finite", "NaN"]);
    // Not read when not selected.
    let t = read_npy(&p, Some(&[0.into(), 1.into()])).unwrap();
    assert_eq!(t.data(), [1.0, 2.0, 4.0, 5.0]);

    let f: Vec<u8> = [1.0f32, f32::NEG_INFINITY]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = npy(dir.path(), "inf.npy", "<f4", false, "(2,)", &f);
    let msg = message(read_npy(&p, None), &p);
    assert_contains(&msg, &["row 2, column 1", "not finite", "-infinity"]);
}

#[test]
fn npy_empty_missing_and_bad_columns() {
    let dir = tempfile::tempdir().unwrap();
    let p = npy(dir.path(), "empty.npy", "<f8", false, "(0, 3)", &[]);
    assert_contains(&message(read_npy(&p, None), &p), &["no data rows"]);
    let p = npy(dir.path(), "nocols.npy", "<f8", false, "(4, 0)", &[]);
    assert_contains(&message(read_npy(&p, None), &p), &["no columns"]);

    let missing = dir.path().join("missing.npy");
    assert_contains(
        &message(read_npy(&missing, None), &missing),
        &["cannot read"],
    );

    let p = npy(dir.path(), "two.npy", "<f8", false, "(1, 2)", &[0; 16]);
    assert_contains(
        &message(read_npy(&p, Some(&[5.into()])), &p),
        &["column index 5 is out of range", "2 columns"],
    );
    assert_contains(
        &message(read_npy(&p, Some(&["a".into()])), &p),
        &["`a`", "no header"],
    );
}

#[test]
fn load_dispatches_on_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv(dir.path(), "upper.CSV", "a\n1\n2\n");
    let t = tabular::load(&p, &CsvOptions::default()).unwrap();
    assert_eq!(t.columns(), ["a"]);
    assert_eq!(t.data(), [1.0, 2.0]);

    for name in ["data.txt", "data", "data.npz"] {
        let p = csv(dir.path(), name, "1\n");
        let msg = message(tabular::load(&p, &CsvOptions::default()), &p);
        assert_contains(&msg, &[".csv", ".npy", "unsupported file type"]);
    }
    let missing = dir.path().join("gone.csv");
    assert_contains(
        &message(tabular::load(&missing, &CsvOptions::default()), &missing),
        &["cannot read"],
    );
}

// ---------------------------------------------------------------- splits

fn fractions() -> impl Strategy<Value = (f64, f64, f64)> {
    (0u32..=20, 0u32..=20, 0u32..=20)
        .prop_filter("not all zero", |(a, b, c)| a + b + c > 0)
        .prop_map(|(a, b, c)| {
            let s = f64::from(a + b + c);
            (f64::from(a) / s, f64::from(b) / s, f64::from(c) / s)
        })
}

proptest! {
    #[test]
    fn split_is_a_seeded_partition(rows in 0usize..400, f in fractions(), seed in any::<u64>()) {
        let split = Split::new(rows, f, seed).unwrap();
        let mut seen = vec![0u8; rows];
        for part in [split.train(), split.validation(), split.test()] {
            prop_assert!(part.windows(2).all(|w| w[0] < w[1]), "sorted");
            for &i in part {
                prop_assert!(i < rows);
                seen[i] += 1;
            }
        }
        prop_assert!(seen.iter().all(|&n| n == 1), "every row exactly once");
        prop_assert_eq!(split.rows(), rows);
        let sizes = [split.train().len(), split.validation().len(), split.test().len()];
        prop_assert_eq!(sizes, Split::sizes(rows, f).unwrap());
        for (size, frac) in sizes.iter().zip([f.0, f.1, f.2]) {
            let exact = frac * rows as f64;
            prop_assert!((*size as f64 - exact).abs() < 1.0, "{size} rows for {exact}");
        }
        prop_assert_eq!(&split, &Split::new(rows, f, seed).unwrap());
    }
}

#[test]
fn splits_depend_on_the_seed_and_apply_to_tables() {
    let a = Split::new(100, (0.8, 0.1, 0.1), 1).unwrap();
    let b = Split::new(100, (0.8, 0.1, 0.1), 2).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        (a.train().len(), a.validation().len(), a.test().len()),
        (80, 10, 10)
    );

    let table = Table::from_values(2, (0..200).map(f64::from).collect()).unwrap();
    let (train, val, test) = a.apply(&table).unwrap();
    assert_eq!((train.rows(), val.rows(), test.rows()), (80, 10, 10));
    assert_eq!(test.row(0), table.row(a.test()[0]));
    assert_eq!(train.columns(), table.columns());
    assert!(Split::new(99, (0.8, 0.1, 0.1), 1)
        .unwrap()
        .apply(&table)
        .is_err());

    assert_eq!(Split::sizes(1, (0.5, 0.5, 0.0)).unwrap(), [1, 0, 0]);
    assert_eq!(Split::sizes(7, (1.0, 0.0, 0.0)).unwrap(), [7, 0, 0]);
    for bad in [(0.8, 0.1, 0.2), (1.1, -0.1, 0.0), (f64::NAN, 0.5, 0.5)] {
        assert!(Split::new(10, bad, 0).is_err(), "{bad:?}");
    }
}

#[test]
fn select_rows_and_columns() {
    let t = Table::new(
        vec!["a".into(), "b".into()],
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    )
    .unwrap();
    let r = t.select_rows(&[2, 0, 2]);
    assert_eq!(r.data(), [5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
    assert_eq!(r.rows(), 3);
    let c = t.select_columns(&[1]);
    assert_eq!(c.columns(), ["b"]);
    assert_eq!(c.data(), [2.0, 4.0, 6.0]);
    assert_eq!(t.select_rows(&[]).rows(), 0);
    assert!(Table::new(vec!["a".into(), "b".into()], vec![1.0; 3]).is_err());
    assert!(Table::new(vec![], vec![]).is_err());
}

// ---------------------------------------------------------------- standardisation

fn mean_std(col: &[f64]) -> (f64, f64) {
    let n = col.len() as f64;
    let mean = col.iter().sum::<f64>() / n;
    let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn standardizer_fitted_on_the_training_split() {
    let mut rng = flow_core::rng(3);
    use rand::Rng;
    let data: Vec<f64> = (0..300)
        .flat_map(|_| {
            [
                rng.random::<f64>() * 50.0 - 7.0,
                rng.random::<f64>() * 10.0 + 1e3,
                4.5,
            ]
        })
        .collect();
    let table = Table::from_values(3, data).unwrap();
    let split = Split::new(table.rows(), (0.7, 0.15, 0.15), 9).unwrap();
    let (train, val, _) = split.apply(&table).unwrap();
    let s = Standardizer::fit(&train).unwrap();

    let z = s.apply(&train).unwrap();
    for j in 0..2 {
        let (m, sd) = mean_std(&z.column(j));
        assert!(m.abs() < 1e-12, "column {j}: mean {m}");
        assert!((sd - 1.0).abs() < 1e-12, "column {j}: std {sd}");
    }
    // The zero-variance column: std 1, centred to exactly 0.
    assert_eq!(s.std()[2], 1.0);
    assert_eq!(s.mean()[2], 4.5);
    assert!(z.column(2).iter().all(|&v| v == 0.0));

    // Fitted on the training rows only: not the whole table's statistics.
    let (full_mean, _) = mean_std(&table.column(0));
    assert_ne!(s.mean()[0], full_mean);
    assert!((s.mean()[0] - mean_std(&train.column(0)).0).abs() < 1e-12);

    for t in [&train, &val] {
        let back = s.invert(&s.apply(t).unwrap()).unwrap();
        for (a, b) in back.data().iter().zip(t.data()) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    // Stored as plain vectors and rebuilt.
    let (mean, std) = s.clone().into_parts();
    let rebuilt = Standardizer::from_parts(mean, std).unwrap();
    assert_eq!(rebuilt, s);
    let expected = -(s.std().iter().map(|v| v.ln()).sum::<f64>());
    assert_eq!(s.log_det(), expected);
}

#[test]
fn standardizer_guards_and_errors() {
    // A constant column whose mean rounds: 0.1 three times.
    let t = Table::from_values(2, vec![0.1, 1.0, 0.1, 2.0, 0.1, 3.0]).unwrap();
    let s = Standardizer::fit(&t).unwrap();
    assert_eq!(s.std()[0], 1.0);
    assert!(s.apply(&t).unwrap().column(0).iter().all(|&v| v == 0.0));

    // A nearly constant column (rounding noise around a large mean) is treated the same.
    let t = Table::from_values(1, vec![1e6, 1e6 + 1e-10, 1e6]).unwrap();
    assert_eq!(Standardizer::fit(&t).unwrap().std(), [1.0]);

    let empty = Table::from_values(2, vec![]).unwrap();
    assert!(Standardizer::fit(&empty).is_err());
    assert!(s
        .apply(&Table::from_values(3, vec![0.0; 3]).unwrap())
        .is_err());
    let mut odd = vec![0.0; 3];
    assert!(s.apply_rows(&mut odd).is_err());
    assert!(Standardizer::from_parts(vec![0.0], vec![0.0]).is_err());
    assert!(Standardizer::from_parts(vec![0.0, 1.0], vec![1.0]).is_err());
    assert!(Standardizer::from_parts(vec![], vec![]).is_err());
    assert!(Standardizer::from_parts(vec![f64::NAN], vec![1.0]).is_err());
}

proptest! {
    #[test]
    fn standardizer_invert_undoes_apply(
        values in prop::collection::vec(-1e3f64..1e3, 2..60),
        probe in prop::collection::vec(-1e4f64..1e4, 2),
    ) {
        let rows = values.len() / 2;
        let t = Table::from_values(2, values[..rows * 2].to_vec()).unwrap();
        let s = Standardizer::fit(&t).unwrap();
        for x in [t.data().to_vec(), probe] {
            let mut y = x.clone();
            s.apply_rows(&mut y).unwrap();
            s.invert_rows(&mut y).unwrap();
            for (a, b) in y.iter().zip(&x) {
                prop_assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{} vs {}", a, b);
            }
        }
    }
}

// ---------------------------------------------------------------- dequantisation

#[test]
fn integer_columns_are_detected() {
    let t = Table::from_values(4, vec![1.0, 0.5, -3.0, 2e15, 2.0, 1.0, 0.0, -7.0]).unwrap();
    assert_eq!(integer_columns(&t), [0, 2, 3]);
    assert_eq!(
        integer_columns(&Table::from_values(2, vec![]).unwrap()),
        [0, 1]
    );
}

#[test]
fn dequantize_adds_unit_uniform_noise_to_integer_columns() {
    let n = 2000;
    let data: Vec<f64> = (0..n)
        .flat_map(|i| [(i % 7) as f64 - 3.0, 0.25 + i as f64, (i % 2) as f64])
        .collect();
    let original = Table::from_values(3, data).unwrap();
    let cols = [0, 2];
    let mut t = original.clone();
    dequantize(&mut t, &cols, &mut flow_core::rng(5)).unwrap();

    let mut noise_sum = 0.0;
    for i in 0..n {
        for &j in &cols {
            let (v, x) = (original.get(i, j), t.get(i, j));
            assert!(v <= x && x < v + 1.0, "row {i} column {j}: {v} became {x}");
            noise_sum += x - v;
        }
        assert_eq!(t.get(i, 1), original.get(i, 1), "untouched column");
    }
    let mean_noise = noise_sum / (2 * n) as f64;
    assert!((mean_noise - 0.5).abs() < 0.03, "mean noise {mean_noise}");
    assert!(integer_columns(&t).is_empty());

    // Deterministic for a seed, different for another.
    let mut again = original.clone();
    dequantize(&mut again, &cols, &mut flow_core::rng(5)).unwrap();
    assert_eq!(again, t);
    let mut other = original.clone();
    dequantize(&mut other, &cols, &mut flow_core::rng(6)).unwrap();
    assert_ne!(other, t);

    // Huge integers stay in [v, v + 1).
    let mut big = Table::from_values(1, vec![2f64.powi(53), -(2f64.powi(52))]).unwrap();
    let before = big.clone();
    dequantize(&mut big, &[0], &mut flow_core::rng(0)).unwrap();
    for (x, v) in big.data().iter().zip(before.data()) {
        assert!(*v <= *x && *x < *v + 1.0 || x == v);
    }
}

#[test]
fn dequantize_refuses_non_integer_and_missing_columns() {
    let mut t = Table::new(vec!["k".into(), "w".into()], vec![1.0, 2.0, 3.0, 4.5]).unwrap();
    let err = dequantize(&mut t, &[0, 1], &mut flow_core::rng(0)).unwrap_err();
    assert_contains(&err.to_string(), &["column 2 (`w`)", "row 2", "4.5"]);
    assert_eq!(t.data(), [1.0, 2.0, 3.0, 4.5], "unchanged on error");
    assert!(dequantize(&mut t, &[2], &mut flow_core::rng(0)).is_err());
}
