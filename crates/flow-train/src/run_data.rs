//! The data a run trains on: a built-in density (fresh samples every step) or a finite
//! table split into training, validation and test rows, with the preprocessing fitted on
//! the training rows.

use crate::error::{Error, Result};
use crate::preprocess::Preprocess;
use crate::source::{BatchSource, DensitySource, EpochSource, Rows};
use crate::train::{data_rng, test_rng, Validation};
use flow_core::{Backend, Tensor};
use flow_datasets::images::ImageSet;
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

/// An image set: training and validation images (from the official training part) and
/// the official test images, dequantised and logit-transformed for the model.
#[derive(Debug)]
pub struct SplitImages {
    pub name: String,
    pub train: ImageSet,
    pub validation: ImageSet,
    pub test: ImageSet,
    pub preprocess: Preprocess,
    pub fingerprint: String,
}

impl SplitImages {
    /// Holds out the last `validation_fraction` of `train` for validation.
    pub fn new(
        name: impl Into<String>,
        train: ImageSet,
        test: ImageSet,
        validation_fraction: f64,
        alpha: f64,
    ) -> Result<Self> {
        let name = name.into();
        let n = train.count();
        let held = (n as f64 * validation_fraction).round() as usize;
        if !(0.0..1.0).contains(&validation_fraction) || held < 2 || held >= n {
            return Err(Error::Config(format!(
                "{name}: a validation fraction of {validation_fraction} of {n} training images \
                 leaves {held} for validation; at least 2 and fewer than all are needed"
            )));
        }
        if test.count() == 0 || (test.height(), test.width()) != (train.height(), train.width()) {
            return Err(Error::Config(format!(
                "{name}: the test images ({} of {}x{}) do not match the training images ({}x{})",
                test.count(),
                test.height(),
                test.width(),
                train.height(),
                train.width()
            )));
        }
        let preprocess = Preprocess::Logit {
            alpha,
            height: train.height(),
            width: train.width(),
        };
        let mut h = Fnv::new();
        h.eat(&(n as u64).to_le_bytes());
        h.eat(train.pixels());
        Ok(SplitImages {
            name,
            validation: train.slice(n - held..n),
            train: train.slice(0..n - held),
            test,
            preprocess,
            fingerprint: h.hex(),
        })
    }
}

/// What a run learns from.
#[derive(Debug)]
pub enum RunData {
    Density(Box<dyn ToyDensity>),
    Table(Box<SplitTable>),
    Images(Box<SplitImages>),
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
}

/// Rows of `part` mapped to model inputs by `preprocess` (dequantised with a fixed seed),
/// with the map's log-determinant per row.
pub fn held_out<B: Backend>(
    backend: &B,
    part: &dyn Rows,
    preprocess: &Preprocess,
    seed: u64,
) -> Result<Validation<B>> {
    let (rows, dim) = (part.rows(), part.dim());
    let mut values = vec![0.0; rows * dim];
    for (i, row) in values.chunks_exact_mut(dim).enumerate() {
        part.row_into(i, row);
    }
    let log_det = preprocess.forward_rows(&mut values, dim, &mut test_rng(seed));
    Ok(Validation {
        x: Tensor::from_f64s(backend, (rows, dim), &values)?,
        log_det,
    })
}

impl RunData {
    pub fn dim(&self) -> usize {
        match self {
            RunData::Density(d) => d.dim(),
            RunData::Table(t) => t.train.cols(),
            RunData::Images(i) => i.train.dim(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            RunData::Density(d) => d.name(),
            RunData::Table(t) => &t.name,
            RunData::Images(i) => &i.name,
        }
    }

    pub fn preprocess(&self) -> Preprocess {
        match self {
            RunData::Density(_) => Preprocess::Identity,
            RunData::Table(t) => t.preprocess.clone(),
            RunData::Images(i) => i.preprocess.clone(),
        }
    }

    /// The training batches.
    pub fn source(&self, seed: u64) -> Result<Box<dyn BatchSource + '_>> {
        Ok(match self {
            RunData::Density(d) => Box::new(DensitySource::new(d.as_ref(), data_rng(seed))),
            RunData::Table(t) => Box::new(EpochSource::new(&t.train, &t.preprocess, seed)?),
            RunData::Images(i) => Box::new(EpochSource::new(&i.train, &i.preprocess, seed)?),
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
            RunData::Table(t) => held_out(backend, &t.validation, &t.preprocess, seed ^ 4),
            RunData::Images(i) => held_out(backend, &i.validation, &i.preprocess, seed ^ 4),
        }
    }

    /// The test rows (a table's test split, the official test images), mapped like the
    /// validation rows; `None` for a density (which is tested on fresh samples).
    pub fn test<B: Backend>(&self, backend: &B, seed: u64) -> Result<Option<Validation<B>>> {
        match self {
            RunData::Density(_) => Ok(None),
            RunData::Table(t) => held_out(backend, &t.test, &t.preprocess, seed ^ 5).map(Some),
            RunData::Images(i) => held_out(backend, &i.test, &i.preprocess, seed ^ 5).map(Some),
        }
    }

    /// A fingerprint of the data, to check that a resumed run reads what it started with.
    pub fn fingerprint(&self) -> String {
        match self {
            RunData::Density(d) => d.name().to_string(),
            RunData::Table(t) => t.fingerprint.clone(),
            RunData::Images(i) => i.fingerprint.clone(),
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
            RunData::Images(i) => i.train.take(n.min(i.train.count())).to_f64(),
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
    let mut h = Fnv::new();
    h.eat(&(table.rows() as u64).to_le_bytes());
    h.eat(&(table.cols() as u64).to_le_bytes());
    for v in table.data() {
        h.eat(&v.to_bits().to_le_bytes());
    }
    h.hex()
}

/// The 64-bit FNV-1a hash.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn eat(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}
