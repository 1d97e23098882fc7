//! Writing rows of numbers as CSV (reading is `flow_datasets::tabular`'s).

use crate::error::Result;
use std::path::Path;

/// Writes rows of values as CSV with a header.
pub fn write_csv(path: &Path, header: &[&str], values: &[f64]) -> Result<()> {
    let mut out = header.join(",");
    out.push('\n');
    for row in values.chunks(header.len().max(1)) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    crate::checkpoint::write_atomically(path, out.as_bytes())
}
