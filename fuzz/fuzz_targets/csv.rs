//! Arbitrary bytes to `parse_csv` under several option sets: it returns Ok or Err, never
//! panics, and an Ok table is well formed.
#![no_main]

use flow_datasets::tabular::{parse_csv, ColumnSelector, CsvOptions, Header, Table};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn check(table: &Table) {
    assert!(table.rows() > 0 && table.cols() > 0);
    assert_eq!(table.columns().len(), table.cols());
    assert_eq!(table.data().len(), table.rows() * table.cols());
    assert!(table.data().iter().all(|v| v.is_finite()));
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.csv");
    let options = [
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
    ];
    for options in &options {
        if let Ok(table) = parse_csv(data, path, options) {
            check(&table);
            if let Some(columns) = &options.columns {
                assert_eq!(table.cols(), columns.len());
            }
        }
    }
});
