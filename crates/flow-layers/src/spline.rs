//! Monotonic rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows"), the
//! elementwise transform of neural spline flows: their configuration, checked, and the map
//! on a layer's values (flow-core's [`Var::rational_quadratic`] op).
//!
//! Each feature gets `K` bins on `[-B, B]` whose widths, heights and inner knot derivatives
//! come from unconstrained parameters; outside `[-B, B]` the map is the identity (the
//! "linear tails" of nflows), and the boundary knots have derivative 1 so that the two pieces
//! join with matching slopes.

use crate::error::{Error, Result};
use flow_core::{Axis, Backend, Direction, RationalQuadratic, Var};
use serde::{Deserialize, Serialize};

/// A spline's shape: bins, tail bound and the minimum bin width, height and derivative.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplineConfig {
    /// The number of bins `K` (at least 1).
    pub bins: usize,
    /// `B`: the spline maps `[-B, B]` onto itself; outside it is the identity.
    pub tail_bound: f64,
    /// The smallest bin width, as a fraction of `2B` (so `bins * min_bin_width < 1`).
    pub min_bin_width: f64,
    /// The smallest bin height, as a fraction of `2B`.
    pub min_bin_height: f64,
    /// The smallest derivative at an inner knot (and the reciprocal of the largest).
    pub min_derivative: f64,
}

impl Default for SplineConfig {
    /// 8 bins on `[-5, 5]` (zuko's NSF), nflows' minimums of `1e-3`.
    fn default() -> Self {
        SplineConfig {
            bins: 8,
            tail_bound: 5.0,
            min_bin_width: 1e-3,
            min_bin_height: 1e-3,
            min_derivative: 1e-3,
        }
    }
}

impl SplineConfig {
    /// Unconstrained parameters per transformed feature: `K` widths, `K` heights and `K - 1`
    /// inner derivatives, in that order.
    pub fn params_per_feature(&self) -> usize {
        3 * self.bins - 1
    }

    /// [`SplineConfig::params_per_feature`] of a configuration not yet validated (a stored
    /// architecture): `None` for no bins or an overflow.
    pub fn checked_params_per_feature(&self) -> Option<usize> {
        self.bins.checked_mul(3)?.checked_sub(1)
    }

    /// Checks the configuration; every constructor of a spline layer calls it.
    pub fn validate(&self) -> Result<()> {
        let ok = self.bins >= 1
            && self.tail_bound.is_finite()
            && self.tail_bound > 0.0
            && self.min_bin_width > 0.0
            && self.min_bin_height > 0.0
            && self.min_bin_width * (self.bins as f64) < 1.0
            && self.min_bin_height * (self.bins as f64) < 1.0
            && self.min_derivative > 0.0
            && self.min_derivative < 1.0;
        if ok {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "spline with {} bins on [-{b}, {b}], minimum width {}, height {} and derivative \
                 {}: need at least one bin, a finite positive bound, positive minimums with \
                 bins x minimum below 1, and a minimum derivative below 1",
                self.bins,
                self.min_bin_width,
                self.min_bin_height,
                self.min_derivative,
                b = self.tail_bound,
            )))
        }
    }

    /// The op's description of this spline.
    pub fn op(&self) -> RationalQuadratic {
        RationalQuadratic {
            bins: self.bins,
            tail_bound: self.tail_bound,
            min_bin_width: self.min_bin_width,
            min_bin_height: self.min_bin_height,
            min_derivative: self.min_derivative,
        }
    }
}

/// The spline of every entry of `v` (`n x d`), with entry `(r, i)`'s parameters in columns
/// `i * P .. (i + 1) * P` of `params` (`n x d P`, `P =` [`SplineConfig::params_per_feature`]).
/// Runs in `direction` (`Forward`: the spline, `Inverse`: its inverse) and returns the
/// transformed values and, per row, the sum of log|dy/dv| (`n x 1`). One fused op
/// ([`Var::rational_quadratic`]); its recorded backward differentiates the same spline
/// composed from primitives, so higher-order gradients are exact too.
pub fn rational_quadratic<B: Backend>(
    v: &Var<B>,
    params: &Var<B>,
    config: &SplineConfig,
    direction: Direction,
) -> Result<(Var<B>, Var<B>)> {
    let (y, log_det) = v.rational_quadratic(params, &config.op(), direction)?;
    Ok((y, log_det.sum(Axis::Cols)?))
}
