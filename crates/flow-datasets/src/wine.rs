//! The red wine-quality table (Cortez et al. 2009): 1,599 red Vinho Verde wines, 11
//! physico-chemical features each, compiled into the crate (`data/winequality-red.csv.gz`,
//! 23 KB, nothing is read at run time).
//!
//! Data: P. Cortez, A. Cerdeira, F. Almeida, T. Matos and J. Reis, "Modeling wine
//! preferences by data mining from physicochemical properties", Decision Support Systems 47
//! (4), 2009; UCI Machine Learning Repository, <https://doi.org/10.24432/C56S3T>, licensed
//! CC BY 4.0 (attribution above; the values are unchanged). The file is a byte-for-byte copy
//! of the comma-separated version that the `linfa-datasets` crate 0.8.1 ships (MIT OR
//! Apache-2.0), vendored instead of depending on that crate, which would pull in a second
//! `ndarray` (0.16 beside the workspace's 0.17), `rand` 0.8, `sprs`, `csv` and `linfa`:
//! about 40 s of extra CPU time per build profile on this project's 2-core machines.
//!
//! [`wine_quality`] returns the features only, without the quality score (an integer from 3
//! to 8, [`wine_quality_scores`]), with the UCI names as columns: `fixed acidity`,
//! `volatile acidity`, `citric acid`, `residual sugar`, `chlorides`, `free sulfur dioxide`,
//! `total sulfur dioxide`, `density`, `pH`, `sulphates`, `alcohol`.
//!
//! Integer-valued columns: [`crate::tabular::integer_columns`]
//! finds none. `free sulfur dioxide` and `total sulfur dioxide` (mg/dm³) are whole numbers
//! except in 4 rows (40.5, 5.5, 37.5, 37.5 in data rows 355, 777, 1080 and 1082) and 2 rows
//! (77.5, 77.5 in rows 1296 and 1297) respectively, so
//! [`crate::tabular::dequantize`] refuses them; they are strongly
//! discretised (60 and 144 distinct values), like most of the other columns, which are
//! rounded to 2 to 5 decimals.
//!
//! Measured column means (independently, from the CSV with Python): fixed acidity
//! 8.319637, volatile acidity 0.527821, citric acid 0.270976, residual sugar 2.538806,
//! chlorides 0.087467, free sulfur dioxide 15.874922, total sulfur dioxide 46.467792,
//! density 0.996747, pH 3.311113, sulphates 0.658149, alcohol 10.422983.

use crate::tabular::{self, ColumnRef, Table};
use std::io::Read;
use std::path::PathBuf;

/// The number of wines in the red set.
pub const WINE_ROWS: usize = 1599;

/// The 11 feature names, in column order.
pub const WINE_COLUMNS: [&str; 11] = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
];

/// The compiled-in file: a header line of 12 quoted names, then 1,599 lines of 12 numbers
/// (the 11 features and the quality score).
const WINE_CSV_GZ: &[u8] = include_bytes!("../data/winequality-red.csv.gz");

/// The name errors give the compiled-in file.
fn file_name() -> PathBuf {
    PathBuf::from("winequality-red.csv.gz (compiled into flow-datasets)")
}

/// The compiled-in CSV parsed: the header's 12 names and the rows of 12 numbers.
fn parse() -> tabular::Result<(Vec<String>, Vec<[f64; 12]>)> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(WINE_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| tabular::Error::io(file_name(), "decompress", e))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_string())
        .collect();
    if header.len() != 12 {
        return Err(tabular::Error::Ragged {
            path: file_name(),
            row: 1,
            expected: 12,
            got: header.len(),
        });
    }
    let mut rows = Vec::with_capacity(WINE_ROWS);
    for (i, line) in lines.enumerate() {
        let mut row = [0.0; 12];
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != 12 {
            return Err(tabular::Error::Ragged {
                path: file_name(),
                row: i + 2,
                expected: 12,
                got: cells.len(),
            });
        }
        for (j, cell) in cells.iter().enumerate() {
            row[j] = cell
                .trim()
                .parse()
                .map_err(|_| tabular::Error::NotANumber {
                    path: file_name(),
                    row: i + 2,
                    column: ColumnRef {
                        number: j + 1,
                        name: Some(header[j].clone()),
                    },
                    cell: cell.to_string(),
                })?;
        }
        rows.push(row);
    }
    Ok((header, rows))
}

/// The red wine-quality features: 1,599 rows × 11 columns named after the features, in the
/// order of the UCI file, without the quality score. The data is compiled in; the result is
/// an error only if the compiled-in file were broken.
///
/// ```
/// let wine = flow_datasets::wine::wine_quality().unwrap();
/// assert_eq!((wine.rows(), wine.cols()), (1599, 11));
/// assert_eq!(wine.columns()[10], "alcohol");
/// ```
pub fn wine_quality() -> tabular::Result<Table> {
    let (mut header, rows) = parse()?;
    header.truncate(11);
    let data = rows
        .iter()
        .flat_map(|row| row[..11].iter().copied())
        .collect();
    Table::new(header, data)
}

/// The quality scores (3 to 8, the median of at least three sensory assessments) of the
/// rows of [`wine_quality`], in the same order.
pub fn wine_quality_scores() -> tabular::Result<Vec<u8>> {
    let (_, rows) = parse()?;
    Ok(rows.iter().map(|row| row[11] as u8).collect())
}
