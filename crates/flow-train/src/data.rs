//! Reading points from CSV files, with errors that name the file, row and column.

use crate::error::{Error, Result};
use std::path::Path;

/// Reads a CSV file of numbers: one point per line, comma-separated, an optional header line
/// (a first line that does not parse as numbers), blank lines ignored. Returns the row-major
/// values and the number of columns.
pub fn read_csv(path: &Path) -> Result<(Vec<f64>, usize)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut values = Vec::new();
    let mut width = None;
    let mut seen_line = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Vec<std::result::Result<f64, _>> =
            cells.iter().map(|c| c.parse::<f64>()).collect();
        // The first non-empty line, if it holds no number, is a header.
        let first = !seen_line;
        seen_line = true;
        if first && parsed.iter().all(|p| p.is_err()) {
            continue;
        }
        let row = i + 1;
        if let Some(w) = width {
            if cells.len() != w {
                return Err(Error::format(
                    path,
                    format!(
                        "row {row} has {} columns, earlier rows have {w}",
                        cells.len()
                    ),
                ));
            }
        }
        width = Some(cells.len());
        for (j, (cell, p)) in cells.iter().zip(parsed).enumerate() {
            let v = p.map_err(|_| {
                Error::format(
                    path,
                    format!("row {row}, column {}: `{cell}` is not a number", j + 1),
                )
            })?;
            if !v.is_finite() {
                return Err(Error::format(
                    path,
                    format!("row {row}, column {}: `{cell}` is not finite", j + 1),
                ));
            }
            values.push(v);
        }
    }
    let width = width.ok_or_else(|| Error::format(path, "no data rows"))?;
    Ok((values, width))
}

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
