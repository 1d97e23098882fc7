//! The map from data rows to model inputs that a run fits and stores with its model:
//! dequantisation noise on integer-valued columns, then standardisation (tabular data) or
//! the logit transform (images). Log-densities are reported in the data's units by adding
//! the map's log-determinant.

use crate::error::{Error, Result};
use crate::source::BatchTransform;
use flow_core::FlowRng;
use flow_datasets::images::{bits_per_dim, LogitTransform};
use flow_datasets::tabular::Standardizer;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A stored preprocessing map (JSON in a checkpoint's `preprocess` metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Preprocess {
    /// The model sees the data as they are (the built-in densities).
    #[default]
    Identity,
    /// `x + u` (u ~ U[0, 1)) on the `dequantize` columns, then `(x - mean) / std`.
    Standardize {
        mean: Vec<f64>,
        std: Vec<f64>,
        dequantize: Vec<usize>,
    },
    /// Images of 8-bit pixels: `x + u` on every pixel, then RealNVP's logit transform
    /// ([`LogitTransform`]); log-densities are then of pixel values in `[0, 256)`, and
    /// `NLL / (D ln 2)` is the usual bits per dimension.
    Logit {
        alpha: f64,
        height: usize,
        width: usize,
    },
}

impl Preprocess {
    /// A standardisation fitted elsewhere, with the columns to dequantise.
    pub fn standardize(standardizer: &Standardizer, dequantize: Vec<usize>) -> Self {
        Preprocess::Standardize {
            mean: standardizer.mean().to_vec(),
            std: standardizer.std().to_vec(),
            dequantize,
        }
    }

    /// Checks a stored map against the model's dimension (a corrupted checkpoint).
    pub fn check(&self, dim: usize) -> Result<()> {
        match self {
            Preprocess::Identity => Ok(()),
            Preprocess::Logit {
                alpha,
                height,
                width,
            } => {
                LogitTransform::new(*alpha).map_err(|e| Error::Config(e.to_string()))?;
                if height.checked_mul(*width) != Some(dim) {
                    return Err(Error::Config(format!(
                        "images of {height}x{width} pixels do not fill the model's {dim} features"
                    )));
                }
                Ok(())
            }
            Preprocess::Standardize {
                mean,
                std,
                dequantize,
            } => {
                let s = Standardizer::from_parts(mean.clone(), std.clone())
                    .map_err(|e| Error::Config(e.to_string()))?;
                if s.dim() != dim || dequantize.iter().any(|&j| j >= dim) {
                    return Err(Error::Config(format!(
                        "the standardisation has {} columns (dequantised {dequantize:?}), \
                         the model {dim} features",
                        s.dim()
                    )));
                }
                Ok(())
            }
        }
    }

    /// Maps data rows to model inputs in place, adding dequantisation noise from `rng`, and
    /// returns `log |dy/dx|` of each row.
    pub fn forward_rows(&self, values: &mut [f64], dim: usize, rng: &mut FlowRng) -> Vec<f64> {
        self.dequantize_rows(values, dim, rng);
        self.map_rows(values, dim)
    }

    /// Adds the dequantisation noise, `u ~ U[0, 1)`, to the integer-valued columns.
    pub fn dequantize_rows(&self, values: &mut [f64], dim: usize, rng: &mut FlowRng) {
        if let Preprocess::Logit { .. } = self {
            for v in values.iter_mut() {
                *v += rng.random::<f64>();
            }
            return;
        }
        if let Preprocess::Standardize { dequantize, .. } = self {
            if dequantize.is_empty() {
                return;
            }
            for row in values.chunks_exact_mut(dim) {
                for &j in dequantize {
                    let v = row[j];
                    let x = v + rng.random::<f64>();
                    // For |v| >= 2^52, v + u can round to v + 1; stay in [v, v + 1).
                    row[j] = if x < v + 1.0 { x } else { v };
                }
            }
        }
    }

    /// Maps (already dequantised) rows to model inputs in place; returns `log |dy/dx|` of
    /// each row.
    pub fn map_rows(&self, values: &mut [f64], dim: usize) -> Vec<f64> {
        let rows = values.len() / dim.max(1);
        match self {
            Preprocess::Identity => vec![0.0; rows],
            Preprocess::Standardize { mean, std, .. } => {
                for row in values.chunks_exact_mut(dim) {
                    for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
                        *x = (*x - m) / s;
                    }
                }
                let log_det = -std.iter().map(|s| s.ln()).sum::<f64>();
                vec![log_det; rows]
            }
            Preprocess::Logit { alpha, .. } => {
                let logit = LogitTransform { alpha: *alpha };
                let log_det = logit.log_det_rows(values, dim);
                logit.forward_rows(values);
                log_det
            }
        }
    }

    /// Bits per dimension for an NLL in nats, for images (`None` for other data).
    pub fn bits_per_dim(&self, nll: f64) -> Option<f64> {
        match self {
            Preprocess::Logit { height, width, .. } => Some(bits_per_dim(nll, height * width)),
            _ => None,
        }
    }

    /// The image shape, for images.
    pub fn image(&self) -> Option<(usize, usize)> {
        match self {
            Preprocess::Logit { height, width, .. } => Some((*height, *width)),
            _ => None,
        }
    }

    /// Maps model outputs (samples) back to the data's units in place.
    pub fn inverse_rows(&self, values: &mut [f64], dim: usize) {
        match self {
            Preprocess::Identity => {}
            Preprocess::Standardize { mean, std, .. } => {
                for row in values.chunks_exact_mut(dim) {
                    for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
                        *x = *x * s + m;
                    }
                }
            }
            Preprocess::Logit { alpha, .. } => {
                LogitTransform { alpha: *alpha }.inverse_rows(values)
            }
        }
    }

    /// A short description for the command line.
    pub fn describe(&self) -> String {
        match self {
            Preprocess::Identity => "none".into(),
            Preprocess::Standardize { dequantize, .. } if dequantize.is_empty() => {
                "standardised (fitted on the training split)".into()
            }
            Preprocess::Standardize { dequantize, .. } => format!(
                "standardised (fitted on the training split); integer columns {:?} dequantised",
                dequantize.iter().map(|j| j + 1).collect::<Vec<_>>()
            ),
            Preprocess::Logit { alpha, .. } => {
                format!("pixels dequantised, logit transform with alpha {alpha:e}")
            }
        }
    }
}

impl BatchTransform for Preprocess {
    fn apply(&self, batch: &mut [f64], dim: usize, rng: &mut FlowRng) -> Result<f64> {
        let log_det = self.forward_rows(batch, dim, rng);
        Ok(log_det.iter().sum::<f64>() / log_det.len().max(1) as f64)
    }
}
