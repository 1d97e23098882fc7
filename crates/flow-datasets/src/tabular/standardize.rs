//! Standardisation: per-column `(x - mean) / std`, fitted on the training split only.

use super::error::{Error, Result};
use super::table::Table;

/// Per-column mean and standard deviation, to map data to mean 0 and standard deviation 1
/// (`apply`) and model samples back to the data's units (`invert`).
///
/// Fit it on the training split only, so nothing of the validation and test rows leaks into
/// training, and store it with the model ([`Standardizer::mean`] and [`Standardizer::std`]
/// are plain vectors; [`Standardizer::from_parts`] rebuilds it).
///
/// The standard deviation is the population one (divided by `n`, as NumPy's `std` and
/// scikit-learn's `StandardScaler`). A column with zero variance (constant, or with a
/// standard deviation below `10 ε |mean|`, rounding noise) gets std 1: `apply` then only
/// centres it, instead of dividing by zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Standardizer {
    /// Fits the mean and standard deviation of each column of `table` (at least one row).
    pub fn fit(table: &Table) -> Result<Self> {
        let n = table.rows();
        if n == 0 {
            return Err(Error::Invalid(
                "cannot fit a standardizer on a table of no rows".into(),
            ));
        }
        let (mean, std) = (0..table.cols())
            .map(|j| {
                let col = table.column(j);
                let first = col[0];
                if col.iter().all(|&v| v == first) {
                    return (first, 1.0);
                }
                let mean = col.iter().sum::<f64>() / n as f64;
                // A second pass corrects the rounding of the first.
                let mean = mean + col.iter().map(|v| v - mean).sum::<f64>() / n as f64;
                let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
                let std = var.sqrt();
                let std = if std > 10.0 * f64::EPSILON * mean.abs() && std > 0.0 {
                    std
                } else {
                    1.0
                };
                (mean, std)
            })
            .unzip();
        Ok(Self { mean, std })
    }

    /// A standardizer from stored means and standard deviations: equal lengths (at least one),
    /// finite means, finite positive standard deviations.
    pub fn from_parts(mean: Vec<f64>, std: Vec<f64>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::Invalid(format!(
                "a standardizer needs as many means as standard deviations, at least one \
                 (got {} and {})",
                mean.len(),
                std.len()
            )));
        }
        if let Some(j) =
            (0..mean.len()).find(|&j| !mean[j].is_finite() || !std[j].is_finite() || std[j] <= 0.0)
        {
            return Err(Error::Invalid(format!(
                "standardizer column {j}: mean {} and std {} must be finite, the std positive",
                mean[j], std[j]
            )));
        }
        Ok(Self { mean, std })
    }

    /// The means and standard deviations, to store.
    pub fn into_parts(self) -> (Vec<f64>, Vec<f64>) {
        (self.mean, self.std)
    }

    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The standard deviations (1 for zero-variance columns).
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    /// The number of columns.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// `log |det|` of the Jacobian of `apply`: `-Σ ln std`. The log-density of a data point
    /// is the model's log-density of its standardised version plus this.
    pub fn log_det(&self) -> f64 {
        -self.std.iter().map(|s| s.ln()).sum::<f64>()
    }

    /// `table` standardised: `(x - mean) / std` per column.
    pub fn apply(&self, table: &Table) -> Result<Table> {
        let mut out = table.clone();
        self.apply_rows(out.data_mut())?;
        Ok(out)
    }

    /// `table` mapped back: `x * std + mean` per column.
    pub fn invert(&self, table: &Table) -> Result<Table> {
        let mut out = table.clone();
        self.invert_rows(out.data_mut())?;
        Ok(out)
    }

    /// Standardises row-major `values` of [`Standardizer::dim`] columns in place.
    pub fn apply_rows(&self, values: &mut [f64]) -> Result<()> {
        self.check(values)?;
        for row in values.chunks_exact_mut(self.dim()) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
        Ok(())
    }

    /// Maps row-major standardised `values` back to the data's units in place.
    pub fn invert_rows(&self, values: &mut [f64]) -> Result<()> {
        self.check(values)?;
        for row in values.chunks_exact_mut(self.dim()) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = *x * s + m;
            }
        }
        Ok(())
    }

    fn check(&self, values: &[f64]) -> Result<()> {
        if values.len() % self.dim() != 0 {
            return Err(Error::Invalid(format!(
                "{} values are not rows of the standardizer's {} columns",
                values.len(),
                self.dim()
            )));
        }
        Ok(())
    }
}
