//! The data a run trains on: a built-in density (fresh samples every step) or a finite
//! table split into training, validation and test rows, with the preprocessing fitted on
//! the training rows.

use crate::error::{Error, Result};
use crate::preprocess::Preprocess;
use crate::source::{BatchSource, DensitySource, EpochSource};
use crate::train::{data_rng, test_rng, Validation};
use flow_core::{Backend, Tensor};
use flow_datasets::tabular::{integer_columns, Split, Standardizer, Table};
use flow_datasets::ToyDensity;

/// How a table becomes training data.
#[derive(Clone, Debug, PartialEq)]
pub struct TableOptions {
    /// Train, validation and test fractions.
    pub split: (f64, f64, f64),
    /// Standardise with the training rows' mean and standard deviation.
    pub standardize: bool,
    /// Which columns get uniform dequantisation noise.
    pub dequantize: Dequantize,
    /// The seed of the split.
    pub seed: u64,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            split: (0.8, 0.1, 0.1),
            standardize: true,
            dequantize: Dequantize::Auto,
            seed: 0,
        }
    }
}

/// Dequantisation of integer-valued columns.
#[derive(Clone, Debug, PartialEq)]
pub enum Dequantize {
    /// Every column whose values are all integers (in the whole table).
    Auto,
    None,
    /// These columns (0-based).
    Columns(Vec<usize>),
}

/// A finite data set, split, with its preprocessing.
#[derive(Debug)]
pub struct SplitTable {
    pub name: String,
    pub columns: Vec<String>,
    pub train: Table,
    pub validation: Table,
    pub test: Table,
    pub preprocess: Preprocess,
    /// A fingerprint of the whole table (to check a resumed run reads the same data).
    pub fingerprint: String,
}

/// What a run learns from.
#[derive(Debug)]
pub enum RunData {
    Density(Box<dyn ToyDensity>),
    Table(Box<SplitTable>),
}

impl SplitTable {
    /// Splits `table` and fits the preprocessing on its training rows.
    pub fn new(name: impl Into<String>, table: Table, options: &TableOptions) -> Result<Self> {
        let name = name.into();
        let split = Split::new(table.rows(), options.split, options.seed).map_err(|e| {
            Error::Config(format!("{name}: cannot split {} rows: {e}", table.rows()))
        })?;
        let fingerprint = fingerprint(&table);
        let (train, validation, test) = split
            .apply(&table)
            .map_err(|e| Error::Config(format!("{name}: {e}")))?;
        if validation.rows() < 2 {
            return Err(Error::Config(format!(
                "{name}: {} rows leave {} for validation; at least 2 are needed (more data or \
                 a larger validation fraction in --split)",
                table.rows(),
                validation.rows()
            )));
        }
        let dequantize = match &options.dequantize {
            Dequantize::Auto => integer_columns(&table),
            Dequantize::None => Vec::new(),
            Dequantize::Columns(c) => {
                if let Some(&j) = c.iter().find(|&&j| j >= table.cols()) {
                    return Err(Error::Config(format!(
                        "{name}: column {} does not exist (the table has {})",
                        j + 1,
                        table.cols()
                    )));
                }
                c.clone()
            }
        };
        let preprocess = if options.standardize {
            // Fitted on dequantised training rows, so the noise's variance is included.
            let mut noisy = train.clone();
            flow_datasets::tabular::dequantize(
                &mut noisy,
                &dequantize,
                &mut data_rng(options.seed ^ 0xde),
            )
            .map_err(|e| Error::Config(format!("{name}: {e}")))?;
            let s = Standardizer::fit(&noisy).map_err(|e| Error::Config(format!("{name}: {e}")))?;
            Preprocess::standardize(&s, dequantize)
        } else {
            Preprocess::Standardize {
                mean: vec![0.0; table.cols()],
                std: vec![1.0; table.cols()],
                dequantize,
            }
        };
        Ok(SplitTable {
            name,
            columns: table.columns().to_vec(),
            train,
            validation,
            test,
            preprocess,
            fingerprint,
        })
    }

    /// Rows of `part` mapped to model inputs (dequantised with a fixed seed), with the map's
    /// log-determinant per row.
    pub fn held_out<B: Backend>(
        &self,
        backend: &B,
        part: &Table,
        seed: u64,
    ) -> Result<Validation<B>> {
        let mut values = part.data().to_vec();
        let dim = part.cols();
        let log_det = self
            .preprocess
            .forward_rows(&mut values, dim, &mut test_rng(seed));
        Ok(Validation {
            x: Tensor::from_f64s(backend, (part.rows(), dim), &values)?,
            log_det,
        })
    }
}

impl RunData {
    pub fn dim(&self) -> usize {
        match self {
            RunData::Density(d) => d.dim(),
            RunData::Table(t) => t.train.cols(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            RunData::Density(d) => d.name(),
            RunData::Table(t) => &t.name,
        }
    }

    pub fn preprocess(&self) -> Preprocess {
        match self {
            RunData::Density(_) => Preprocess::Identity,
            RunData::Table(t) => t.preprocess.clone(),
        }
    }

    /// The training batches.
    pub fn source(&self, seed: u64) -> Result<Box<dyn BatchSource + '_>> {
        Ok(match self {
            RunData::Density(d) => Box::new(DensitySource::new(d.as_ref(), data_rng(seed))),
            RunData::Table(t) => Box::new(EpochSource::new(&t.train, &t.preprocess, seed)?),
        })
    }

    /// The validation rows: `samples` fresh draws of a density, or the validation split.
    pub fn validation<B: Backend>(
        &self,
        backend: &B,
        samples: usize,
        seed: u64,
    ) -> Result<Validation<B>> {
        match self {
            RunData::Density(d) => {
                let x = d.sample(samples, &mut test_rng(seed ^ 4));
                Ok(Validation::new(Tensor::from_f64s(
                    backend,
                    (samples, d.dim()),
                    &x,
                )?))
            }
            RunData::Table(t) => t.held_out(backend, &t.validation, seed ^ 4),
        }
    }

    /// Training rows in the data's units, for plots: a density's fresh samples or the
    /// training split (first `n` rows).
    pub fn reference_rows(&self, n: usize, seed: u64) -> Vec<f64> {
        match self {
            RunData::Density(d) => d.sample(n, &mut test_rng(seed ^ 1)),
            RunData::Table(t) => {
                let rows = n.min(t.train.rows());
                t.train.data()[..rows * t.train.cols()].to_vec()
            }
        }
    }
}

impl<T: BatchSource + ?Sized> BatchSource for Box<T> {
    fn dim(&self) -> usize {
        (**self).dim()
    }

    fn batch(&mut self, step: usize, rows: usize) -> Result<(Vec<f64>, f64)> {
        (**self).batch(step, rows)
    }

    fn position(&self) -> crate::source::SourcePosition {
        (**self).position()
    }

    fn restore(&mut self, position: &crate::source::SourcePosition) -> Result<()> {
        (**self).restore(position)
    }
}

/// FNV-1a over the table's shape and values' bits.
fn fingerprint(table: &Table) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    };
    eat(&(table.rows() as u64).to_le_bytes());
    eat(&(table.cols() as u64).to_le_bytes());
    for v in table.data() {
        eat(&v.to_bits().to_le_bytes());
    }
    format!("{h:016x}")
}
