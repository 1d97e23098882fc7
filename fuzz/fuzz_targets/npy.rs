//! Arbitrary bytes to `parse_npy`, all columns and a selection: it returns Ok or Err, never
//! panics (nor allocates what the bytes cannot back), and an Ok table is well formed.
#![no_main]

use flow_datasets::tabular::{parse_npy, ColumnSelector, Table};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn check(table: &Table) {
    assert!(table.rows() > 0 && table.cols() > 0);
    assert_eq!(table.columns().len(), table.cols());
    assert_eq!(table.data().len(), table.rows() * table.cols());
    assert!(table.data().iter().all(|v| v.is_finite()));
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.npy");
    if let Ok(table) = parse_npy(data, path, None) {
        check(&table);
        // Every element is at least one byte, so the bytes bound the table.
        assert!(table.data().len() <= data.len());
    }
    let selection = [ColumnSelector::Index(1), ColumnSelector::Index(0)];
    if let Ok(table) = parse_npy(data, path, Some(&selection)) {
        check(&table);
        assert_eq!(table.cols(), 2);
    }
});
