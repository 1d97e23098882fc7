//! Uniform dequantisation of integer-valued columns.

use super::error::{ColumnRef, Error, Result};
use super::table::Table;
use rand::Rng;

/// The columns (0-based) whose values are all integers: the candidates for [`dequantize`].
/// Every column of a table without rows qualifies.
pub fn integer_columns(table: &Table) -> Vec<usize> {
    (0..table.cols())
        .filter(|&j| table.column(j).iter().all(|v| v.fract() == 0.0))
        .collect()
}

/// Adds uniform noise on `[0, 1)` to every value of the integer-valued `columns` (0-based), so
/// a continuous density can be fitted to discrete data: a value `v` becomes `v + u`,
/// `u ~ U[0, 1)`, which stays in `[v, v + 1)`. The model's log-density of the dequantised
/// data then bounds the discrete data's log-probability from below (Theis et al., 2016).
///
/// Dequantise before standardising, with fresh noise for each pass over the data. Noise is
/// drawn row by row, column by column in the order given. Errors when a column is out of
/// range or holds a non-integer (naming its row and value).
pub fn dequantize<R: Rng + ?Sized>(
    table: &mut Table,
    columns: &[usize],
    rng: &mut R,
) -> Result<()> {
    let cols = table.cols();
    for &j in columns {
        if j >= cols {
            return Err(Error::Invalid(format!(
                "dequantize: column index {j} is out of range for a table of {cols} columns"
            )));
        }
        if let Some(i) = (0..table.rows()).find(|&i| table.get(i, j).fract() != 0.0) {
            return Err(Error::NotInteger {
                column: ColumnRef {
                    number: j + 1,
                    name: Some(table.columns()[j].clone()),
                },
                row: i + 1,
                value: table.get(i, j),
            });
        }
    }
    for row in table.data_mut().chunks_exact_mut(cols) {
        for &j in columns {
            let v = row[j];
            let x = v + rng.random::<f64>();
            // For |v| ≥ 2^52, v + u can round up to v + 1; keep the value in [v, v + 1).
            row[j] = if x < v + 1.0 { x } else { v };
        }
    }
    Ok(())
}
