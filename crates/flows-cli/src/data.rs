//! Turning the data flags into a run's data, and reading data files under a checkpoint.

use super::DataArgs;
use flow_datasets::images::{ImageSet, Part, MNIST_ALPHA};
use flow_datasets::tabular::{self, ColumnSelector, CsvOptions, Table};
use flow_datasets::RealData;
use flow_train::preprocess::Preprocess;
use flow_train::run_data::{Dequantize, RunData, SplitImages, SplitTable, TableOptions};
use flow_train::{Error, Result};
use std::path::Path;

/// The default built-in data set.
pub const DEFAULT_DATASET: &str = "two-moons";

impl DataArgs {
    /// The name of the data: the built-in data set's, or the file's stem.
    pub fn name(&self) -> String {
        match &self.data {
            Some(path) => path
                .file_stem()
                .map_or_else(|| "data".into(), |s| s.to_string_lossy().into_owned()),
            None => self
                .dataset
                .clone()
                .unwrap_or_else(|| DEFAULT_DATASET.into()),
        }
    }

    /// Reads (or names) the data and splits a finite table with `seed`.
    pub fn load(&self, seed: u64) -> Result<RunData> {
        if let Some(path) = &self.data {
            let table = read_table(path, &self.columns)?;
            return self.split(path.display().to_string(), table, seed);
        }
        let name = self.name();
        match flow_datasets::load_real(&name, Part::Train) {
            Ok(RealData::Table(table)) => {
                let table = select_columns(&table, &self.columns)?;
                return self.split(name, table, seed);
            }
            Ok(RealData::Images(train)) => return self.images(name, train),
            Err(flow_datasets::real::Error::UnknownName { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if !self.columns.is_empty() {
            return Err(Error::Config(
                "--columns applies to tables (--data files, wine-quality) only".into(),
            ));
        }
        if let Some(density) = flow_datasets::by_name(&name) {
            // Fresh samples every step: nothing to split, limit or preprocess.
            let finite_only = [
                ("--limit", self.limit.is_some()),
                ("--no-standardize", self.no_standardize),
                ("--dequantize", self.dequantize != "auto"),
                ("--split", self.split != [0.8, 0.1, 0.1]),
            ];
            if let Some((flag, _)) = finite_only.iter().find(|(_, given)| *given) {
                return Err(Error::Config(format!(
                    "{flag} applies to finite data sets (--data, wine-quality, fashion-mnist, \
                     mnist), not to the density `{name}`"
                )));
            }
            return Ok(RunData::Density(density));
        }
        Err(Error::Config(format!(
            "unknown dataset `{name}`; built-in: {}, {}",
            flow_datasets::NAMES.join(", "),
            flow_datasets::REAL_NAMES.join(", ")
        )))
    }

    /// An image set's official training part (its last share, by the validation fraction
    /// of --split, held out for validation) and its official test part, each cut to --limit.
    fn images(&self, name: String, train: ImageSet) -> Result<RunData> {
        if !self.columns.is_empty() {
            return Err(Error::Config("--columns does not apply to images".into()));
        }
        let test = match flow_datasets::load_real(&name, Part::Test)? {
            RealData::Images(test) => test,
            RealData::Table(_) => unreachable!("an image set's test part holds images"),
        };
        let (train, test) = match self.limit {
            Some(0) => return Err(Error::Config("--limit must be at least 1".into())),
            Some(n) => (
                train.take(n.min(train.count())),
                test.take(n.min(test.count())),
            ),
            None => (train, test),
        };
        let (tr, va) = match self.split.as_slice() {
            &[a, b, _] if a > 0.0 && b > 0.0 => (a, b),
            other => {
                return Err(Error::Config(format!(
                    "--split takes three fractions (train,validation,test) with positive train \
                     and validation shares, got {other:?}"
                )))
            }
        };
        Ok(RunData::Images(Box::new(SplitImages::new(
            name,
            train,
            test,
            va / (tr + va),
            MNIST_ALPHA,
        )?)))
    }

    fn split(&self, name: String, table: Table, seed: u64) -> Result<RunData> {
        let table = match self.limit {
            Some(0) => return Err(Error::Config("--limit must be at least 1".into())),
            Some(n) if n < table.rows() => table.select_rows(&(0..n).collect::<Vec<_>>()),
            _ => table,
        };
        let split = match self.split.as_slice() {
            &[a, b, c] => (a, b, c),
            other => {
                return Err(Error::Config(format!(
                    "--split takes three fractions (train,validation,test), got {other:?}"
                )))
            }
        };
        let dequantize = match self.dequantize.as_str() {
            "auto" => Dequantize::Auto,
            "none" => Dequantize::None,
            list => Dequantize::Columns(
                list.split(',')
                    .map(|c| column_index(&table, c, "--dequantize"))
                    .collect::<Result<_>>()?,
            ),
        };
        let options = TableOptions {
            split,
            standardize: !self.no_standardize,
            dequantize,
            seed,
        };
        Ok(RunData::Table(Box::new(SplitTable::new(
            name, table, &options,
        )?)))
    }
}

/// The `columns` of `table` (by name or 0-based index; all when empty).
fn select_columns(table: &Table, columns: &[String]) -> Result<Table> {
    if columns.is_empty() {
        return Ok(table.clone());
    }
    let picked = columns
        .iter()
        .map(|c| column_index(table, c, "--columns"))
        .collect::<Result<Vec<_>>>()?;
    Ok(table.select_columns(&picked))
}

/// A column of `table` by name or 0-based index.
fn column_index(table: &Table, cell: &str, flag: &str) -> Result<usize> {
    let cell = cell.trim();
    let found = match cell.parse::<usize>() {
        Ok(i) => (i < table.cols()).then_some(i),
        Err(_) => table.columns().iter().position(|c| c == cell),
    };
    found.ok_or_else(|| {
        Error::Config(format!(
            "{flag}: no column `{cell}` (columns: {})",
            table.columns().join(", ")
        ))
    })
}

/// Whether `path` names a CSV or .npy file (by its extension).
fn is_table_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| tabular::EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads a CSV or .npy file, `columns` by name or 0-based index (all when empty).
pub fn read_table(path: &Path, columns: &[String]) -> Result<Table> {
    let options = CsvOptions {
        columns: (!columns.is_empty()).then(|| {
            columns
                .iter()
                .map(|c| c.parse::<ColumnSelector>().expect("infallible"))
                .collect()
        }),
        ..CsvOptions::default()
    };
    Ok(tabular::load(path, &options)?)
}

/// Reads a data file for a checkpoint's model: the columns it was trained on, when the
/// file names them in a header, else all columns, which must match the model's width.
/// Returns the rows mapped to model inputs (dequantised with `seed`) and the map's
/// log-determinant per row.
pub fn read_for_model(
    path: &Path,
    dim: usize,
    trained_columns: Option<&[String]>,
    preprocess: &Preprocess,
    checkpoint: &Path,
    seed: u64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let table = match preprocess.image() {
        // Images: IDX files (gzip or not), or CSV/.npy rows of pixels.
        Some((height, width)) if !is_table_file(path) => {
            let images = flow_datasets::images::read_idx_images(path)?;
            if (images.height(), images.width()) != (height, width) {
                return Err(Error::format(
                    path,
                    format!(
                        "images of {}x{} pixels; the model in {} was trained on {height}x{width}",
                        images.height(),
                        images.width(),
                        checkpoint.display()
                    ),
                ));
            }
            Table::from_values(height * width, images.to_f64())?
        }
        // By the trained columns' names where the file has them (other columns, text ones
        // included, are then left out), else all columns.
        _ => match trained_columns {
            Some(names) => read_table(path, names).or_else(|_| read_table(path, &[]))?,
            None => read_table(path, &[])?,
        },
    };
    if table.cols() != dim {
        return Err(Error::format(
            path,
            format!(
                "rows have {} columns, the model in {} has {dim} features",
                table.cols(),
                checkpoint.display()
            ),
        ));
    }
    let mut values = table.into_data();
    let log_det = preprocess.forward_rows(&mut values, dim, &mut flow_train::train::test_rng(seed));
    Ok((values, log_det))
}
