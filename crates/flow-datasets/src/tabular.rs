//! Real tabular data: CSV and `.npy` files read into a [`Table`], seeded train / validation /
//! test [`Split`]s, a [`Standardizer`] fitted on the training split, and uniform
//! [`dequantize`]-ation of integer-valued columns.
//!
//! Bad input is an [`Error`] whose message names the file and, where one applies, the row and
//! the column (or the shapes): a missing or empty file, a cell that is not a number, NaN or
//! infinity, rows of different lengths, an unknown column, a broken or unsupported `.npy`
//! file.
//!
//! ```no_run
//! use flow_datasets::tabular::{self, CsvOptions, Split, Standardizer};
//! # fn main() -> Result<(), tabular::Error> {
//! let table = tabular::load("power.csv", &CsvOptions {
//!     columns: Some(vec!["voltage".into(), 3.into()]),
//!     ..CsvOptions::default()
//! })?;
//! let split = Split::new(table.rows(), (0.8, 0.1, 0.1), 0)?;
//! let (train, val, _test) = split.apply(&table)?;
//! let standardizer = Standardizer::fit(&train)?;      // the training split only
//! let train = standardizer.apply(&train)?;
//! let val = standardizer.apply(&val)?;
//! # let _ = (train, val);
//! # Ok(())
//! # }
//! ```

mod columns;
mod csv;
mod dequantize;
mod error;
mod npy;
mod split;
mod standardize;
mod table;

pub use columns::ColumnSelector;
pub use csv::{parse_csv, read_csv, CsvOptions, Header};
pub use dequantize::{dequantize, integer_columns};
pub use error::{ColumnRef, Error, NonFinite, Result};
pub use npy::{parse_npy, read_npy, write_npy};
pub use split::Split;
pub use standardize::Standardizer;
pub use table::Table;

use std::path::Path;

/// The file extensions [`load`] reads.
pub const EXTENSIONS: &[&str] = &["csv", "npy"];

/// Reads `path` by its extension (case-insensitive): `.csv` with [`read_csv`], `.npy` with
/// [`read_npy`] (which uses only `options.columns`, by index). Any other extension is an
/// error naming the file and the supported extensions.
pub fn load(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Table> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => read_csv(path, options),
        Some("npy") => read_npy(path, options.columns.as_deref()),
        _ => Err(Error::UnsupportedExtension { path: path.into() }),
    }
}
