//! Training on your own rows in a few lines, with the defaults of `flows train --data`: a
//! RealNVP (2 coupling blocks of MLP 64-64, swap permutations, DiagGaussian base), an
//! 80/10/10 split seeded by the run's seed, standardisation fitted on the training rows and
//! uniform dequantisation of integer-valued columns, Adam (lr 5e-4, weight decay 1e-5) on
//! batches of 512 for 3201 iterations, the validation NLL every 200 iterations with the best
//! model kept, and optionally checkpoints in a folder (`checkpoint.safetensors` every 1000
//! iterations, resumable, and `best.safetensors`), exactly as the command writes them.
//!
//! ```
//! use flow_core::Cpu;
//! use flow_train::fit::Fit;
//!
//! # fn main() -> flow_train::Result<()> {
//! // 1000 rows of two correlated features: your data, row-major.
//! let rows: Vec<f64> = (0..1000)
//!     .flat_map(|i| {
//!         let t = i as f64 * 0.37;
//!         [t.sin() * 3.0, t.sin() + 0.5 * t.cos()]
//!     })
//!     .collect();
//! let cpu = Cpu::<f32>::new();
//! let dir = tempfile::tempdir().unwrap();
//! let fitted = Fit { iters: 300, ..Fit::default() }
//!     .checkpoints(dir.path())
//!     .rows(&cpu, &rows, 2)?;
//! let (nll, se) = fitted.test_nll;
//! println!("test NLL {nll:.3} ± {se:.3} nats, best validation at {:?}", fitted.report.best);
//! // log p(x) of new rows in the data's own units (the standardisation accounted for).
//! let log_p = fitted.log_prob(&[0.5, 0.2, -1.0, 0.3])?;
//! assert_eq!(log_p.len(), 2);
//! // The best model as the command writes it; `flows eval --checkpoint` reads it too.
//! let again = flow_train::checkpoint::load_run(&cpu, &dir.path().join("best.safetensors"))?;
//! assert_eq!(again.model.log_prob(&fitted.inputs(&[0.5, 0.2])?, None)?.to_vec()?,
//!            fitted.model.log_prob(&fitted.inputs(&[0.5, 0.2])?, None)?.to_vec()?);
//! # Ok(())
//! # }
//! ```

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::preprocess::Preprocess;
use crate::run_data::{RunData, SplitTable, TableOptions};
use crate::train::{train_on, Progress, TrainConfig, TrainReport};
use flow_core::{Backend, Tensor};
use flow_datasets::tabular::Table;
use flow_layers::{FlowSpec, NormalizingFlow, RealNvpConfig};
use std::path::{Path, PathBuf};

/// How to train on a table of rows. Every field has the command's default; change the ones
/// you care about with struct-update syntax (`Fit { iters: 1000, ..Fit::default() }`).
#[derive(Clone, Debug)]
pub struct Fit {
    /// The model's architecture; `None`: the command's RealNVP for the data's width.
    pub spec: Option<FlowSpec>,
    pub iters: usize,
    pub batch: usize,
    /// The training settings beyond `iters` and `batch` (optimizer, schedule, clipping,
    /// `validate_every` and `patience` for early stopping, the seed).
    pub train: TrainConfig,
    /// The split, standardisation and dequantisation (its seed is set from `train.seed`).
    pub table: TableOptions,
    /// Write `checkpoint.safetensors` (resumable) and `best.safetensors` here.
    pub checkpoint_dir: Option<PathBuf>,
    /// Also write the checkpoint every this many iterations (0: only at the end).
    pub checkpoint_every: usize,
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            spec: None,
            iters: 3201,
            batch: 512,
            train: TrainConfig {
                validate_every: 200,
                ..TrainConfig::default()
            },
            table: TableOptions::default(),
            checkpoint_dir: None,
            checkpoint_every: 1000,
        }
    }
}

/// A trained model with what it needs to score new rows.
#[derive(Debug)]
pub struct Fitted<B: Backend> {
    /// The model of the best validation NLL (the last one when nothing was validated).
    pub model: NormalizingFlow<B>,
    /// The map from the data's units to the model's inputs (fitted on the training rows).
    pub preprocess: Preprocess,
    pub report: TrainReport,
    /// The mean test NLL of `model` over the test rows, in the data's units (nats), and its
    /// standard error.
    pub test_nll: (f64, f64),
    /// The column names the table was given (`x0`, `x1`, ... for plain rows).
    pub columns: Vec<String>,
}

impl Fit {
    /// Checkpoints in `dir` (created if needed).
    pub fn checkpoints(mut self, dir: impl AsRef<Path>) -> Self {
        self.checkpoint_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Trains on `rows`, row-major with `dim` values per row.
    pub fn rows<B: Backend>(&self, backend: &B, rows: &[f64], dim: usize) -> Result<Fitted<B>> {
        if dim == 0 || rows.len() % dim != 0 {
            return Err(Error::Config(format!(
                "{} values are not whole rows of {dim} features",
                rows.len()
            )));
        }
        let columns = (0..dim).map(|j| format!("x{j}")).collect();
        let table = Table::new(columns, rows.to_vec())?;
        self.table(backend, table)
    }

    /// Trains on the rows of `data` (downloaded once to split and standardise them).
    pub fn tensor<B: Backend>(&self, data: &Tensor<B>) -> Result<Fitted<B>> {
        self.rows(data.backend(), &data.to_f64s()?, data.cols())
    }

    /// Trains on a [`Table`] (from `flow_datasets::tabular`'s CSV and `.npy` readers, say).
    pub fn table<B: Backend>(&self, backend: &B, table: Table) -> Result<Fitted<B>> {
        let seed = self.train.seed;
        let columns = table.columns().to_vec();
        let options = TableOptions {
            seed,
            ..self.table.clone()
        };
        let data = RunData::Table(Box::new(SplitTable::new("data", table, &options)?));
        let dim = data.dim();
        let spec = match &self.spec {
            Some(spec) => spec.clone(),
            None => RealNvpConfig {
                dim,
                ..RealNvpConfig::default()
            }
            .spec()?,
        };
        let mut model = NormalizingFlow::new(backend, spec, seed)?;
        let config = TrainConfig {
            iters: self.iters,
            batch: self.batch,
            ..self.train.clone()
        };
        let validation = data.validation(backend, 0, seed)?;
        let preprocess = data.preprocess();
        let extra = [("columns", columns_json(&columns))];
        // The best parameters so far, as tensors (cheap handles: an update copies them).
        let mut best: Option<Vec<Tensor<B>>> = None;
        let mut observe = |p: &Progress<'_, B>| -> Result<()> {
            if p.improved {
                best = Some(p.model.params().iter().map(|(_, _, t)| t.clone()).collect());
                if let Some(dir) = &self.checkpoint_dir {
                    checkpoint::save_run(
                        p.model,
                        &preprocess,
                        None,
                        &dir.join("best.safetensors"),
                        &extra,
                    )?;
                }
            }
            let periodic = self.checkpoint_every > 0 && p.step % self.checkpoint_every == 0;
            if let Some(dir) = &self.checkpoint_dir {
                if p.step > 0 && (periodic || p.finished) {
                    checkpoint::save_run(
                        p.model,
                        &preprocess,
                        Some(&p.resume_state()?),
                        &dir.join("checkpoint.safetensors"),
                        &extra,
                    )?;
                }
            }
            Ok(())
        };
        if let Some(dir) = &self.checkpoint_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Config(format!("cannot create the folder {}: {e}", dir.display()))
            })?;
        }
        let report = train_on(
            &mut model,
            data.source(seed)?,
            &config,
            Some(&validation),
            None,
            &mut observe,
        )?;
        if let Some(values) = best {
            let ids: Vec<_> = model.params().iter().map(|(id, _, _)| id).collect();
            for (id, value) in ids.into_iter().zip(values) {
                model.params_mut().set(id, value)?;
            }
        }
        let test = data.test(backend, seed)?.expect("a table has test rows");
        let test_nll = test.nll(&model)?;
        Ok(Fitted {
            model,
            preprocess,
            report,
            test_nll,
            columns,
        })
    }
}

impl<B: Backend> Fitted<B> {
    /// The model's inputs for `rows` in the data's units (row-major): the preprocessing
    /// applied (no dequantisation noise).
    pub fn inputs(&self, rows: &[f64]) -> Result<Tensor<B>> {
        let dim = self.model.dim();
        if rows.len() % dim != 0 {
            return Err(Error::Config(format!(
                "{} values are not whole rows of {dim} features",
                rows.len()
            )));
        }
        let mut values = rows.to_vec();
        self.preprocess.map_rows(&mut values, dim);
        Ok(Tensor::from_f64s(
            self.model.backend(),
            (rows.len() / dim, dim),
            &values,
        )?)
    }

    /// log p(x) of each row of `rows` (row-major) in the data's units: the model's density
    /// of the preprocessed row plus the preprocessing's log-determinant.
    pub fn log_prob(&self, rows: &[f64]) -> Result<Vec<f64>> {
        let dim = self.model.dim();
        let mut values = rows.to_vec();
        if rows.len() % dim != 0 {
            return Err(Error::Config(format!(
                "{} values are not whole rows of {dim} features",
                rows.len()
            )));
        }
        let log_det = self.preprocess.map_rows(&mut values, dim);
        let x = Tensor::from_f64s(self.model.backend(), (rows.len() / dim, dim), &values)?;
        let log_q = self.model.log_prob(&x, None)?.to_f64s()?;
        Ok(log_q.iter().zip(&log_det).map(|(q, d)| q + d).collect())
    }

    /// Writes the model as the command's checkpoints are written (`flows eval`,
    /// `log-prob` and `sample` read it).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let extra = [("columns", columns_json(&self.columns))];
        checkpoint::save_run(&self.model, &self.preprocess, None, path.as_ref(), &extra)
    }
}

/// The column names as the checkpoint's `columns` entry (JSON; strings always serialise).
fn columns_json(columns: &[String]) -> String {
    serde_json::to_string(columns).expect("a list of strings serialises")
}
