//! Monotonic rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows"), the
//! elementwise transform of neural spline flows, written with the tape's primitives so that
//! every derivative (of any order) comes from the ops' own backward passes.
//!
//! Each feature gets `K` bins on `[-B, B]` whose widths, heights and inner knot derivatives
//! come from unconstrained parameters; outside `[-B, B]` the map is the identity (the
//! "linear tails" of nflows), and the boundary knots have derivative 1 so that the two pieces
//! join with matching slopes.

use crate::error::{Error, Result};
use flow_core::{Axis, Backend, Direction, Tensor, Var};
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
    /// The smallest derivative at an inner knot.
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

    /// The raw derivative parameter that gives derivative exactly 1 (`softplus(c) = 1 -
    /// min_derivative`), so that zero parameters give the identity.
    fn derivative_offset(&self) -> f64 {
        (1.0 - self.min_derivative).exp_m1().ln()
    }
}

/// The spline of every entry of `v` (`n x d`), with entry `(r, i)`'s parameters in columns
/// `i * P .. (i + 1) * P` of `params` (`n x d P`, `P =` [`SplineConfig::params_per_feature`]).
/// Runs in `direction` (`Forward`: the spline, `Inverse`: its inverse) and returns the
/// transformed values and, per row, the sum of log|dy/dv| (`n x 1`).
pub fn rational_quadratic<B: Backend>(
    v: &Var<B>,
    params: &Var<B>,
    config: &SplineConfig,
    direction: Direction,
) -> Result<(Var<B>, Var<B>)> {
    let (n, d) = (v.shape().rows, v.shape().cols);
    let p = config.params_per_feature();
    if params.shape() != flow_core::Shape::new(n, d * p) {
        return Err(Error::Config(format!(
            "spline parameters of shape {} for {n} x {d} values: expected {n} x {}",
            params.shape(),
            d * p
        )));
    }
    // One row per entry: `(n d) x 1` values and `(n d) x P` parameters.
    let x = v.reshape((n * d, 1))?;
    let params = params.reshape((n * d, p))?;
    let (y, log_det) = spline_rows(&x, &params, config, direction)?;
    Ok((y.reshape((n, d))?, log_det.reshape((n, d))?.sum(Axis::Cols)))
}

/// [`rational_quadratic`] on `N x 1` values with `N x P` parameters; the log-det per entry.
fn spline_rows<B: Backend>(
    x: &Var<B>,
    params: &Var<B>,
    config: &SplineConfig,
    direction: Direction,
) -> Result<(Var<B>, Var<B>)> {
    let tape = x.tape();
    let backend = tape.backend();
    let k = config.bins;
    let rows = x.shape().rows;
    let bound = config.tail_bound;
    let xv = x.value();

    // Entries inside [-B, B] go through the spline; the rest are the identity. Outside
    // entries are moved to 0 before the spline sees them, so that nothing non-finite enters
    // (and no NaN gradient leaves) the branch that `select` discards.
    let values = xv.to_f64s();
    let inside: Vec<f64> = values
        .iter()
        .map(|&t| f64::from(u8::from(t.abs() <= bound)))
        .collect();
    let inside = Tensor::from_f64s(backend, (rows, 1), &inside)?;
    let zero = tape.constant(Tensor::zeros(backend, (rows, 1)));
    let x_in = Var::select(&tape.constant(inside.clone()), x, &zero)?;

    // Knots: cumulative sums of the normalised widths and heights, scaled onto [-B, B].
    let cumulative = tape.constant(cumsum_matrix(backend, k)?);
    let knots = |raw: &Var<B>, min: f64| -> Result<Var<B>> {
        let fractions = raw
            .softmax_cols()
            .mul_scalar(1.0 - min * k as f64)
            .add_scalar(min);
        Ok(fractions
            .matmul(&cumulative)?
            .mul_scalar(2.0 * bound)
            .add_scalar(-bound))
    };
    let knots_x = knots(&params.slice_cols(0, k)?, config.min_bin_width)?;
    let knots_y = knots(&params.slice_cols(k, k)?, config.min_bin_height)?;
    // Derivatives at the K + 1 knots: 1 at both ends (matching the identity tails).
    let ones = tape.constant(Tensor::ones(backend, (rows, 1)));
    let derivatives = if k > 1 {
        let inner = params
            .slice_cols(2 * k, k - 1)?
            .add_scalar(config.derivative_offset())
            .softplus()
            .add_scalar(config.min_derivative);
        Var::concat_cols(&[&ones, &inner, &ones])?
    } else {
        Var::concat_cols(&[&ones, &ones])?
    };

    // The bin of each entry, found among the knots of the side the input lives on.
    let search_knots = match direction {
        Direction::Forward => &knots_x,
        Direction::Inverse => &knots_y,
    };
    // The number of inner knots at or below the input is its bin (0..K).
    let bin: Vec<usize> = if k == 1 {
        vec![0; rows]
    } else {
        search_knots
            .value()
            .slice_cols(1, k - 1)?
            .search_sorted_rows(&x_in.value())?
    };
    let next: Vec<usize> = bin.iter().map(|b| b + 1).collect();
    let x0 = knots_x.take_per_row(&bin)?;
    let x1 = knots_x.take_per_row(&next)?;
    let y0 = knots_y.take_per_row(&bin)?;
    let y1 = knots_y.take_per_row(&next)?;
    let d0 = derivatives.take_per_row(&bin)?;
    let d1 = derivatives.take_per_row(&next)?;
    let width = x1.sub(&x0)?;
    let height = y1.sub(&y0)?;
    let slope = height.div(&width)?;
    // d0 + d1 - 2 s: how far the bin's rational quadratic is from a straight line.
    let curvature = d0.add(&d1)?.sub(&slope.mul_scalar(2.0))?;

    let (theta, y) = match direction {
        Direction::Forward => {
            let theta = x_in.sub(&x0)?.div(&width)?;
            let t1 = theta.mul(&theta.neg().add_scalar(1.0))?;
            let numerator = height.mul(&slope.mul(&theta.square())?.add(&d0.mul(&t1)?)?)?;
            let denominator = slope.add(&curvature.mul(&t1)?)?;
            (theta, y0.add(&numerator.div(&denominator)?)?)
        }
        Direction::Inverse => {
            // theta solves a theta^2 + b theta + c = 0; the root in [0, 1] taken in the form
            // that does not cancel: 2c / (-b - sqrt(b^2 - 4ac)).
            let offset = x_in.sub(&y0)?;
            let a = height
                .mul(&slope.sub(&d0)?)?
                .add(&offset.mul(&curvature)?)?;
            let b = height.mul(&d0)?.sub(&offset.mul(&curvature)?)?;
            let c = slope.mul(&offset)?.neg();
            // b^2 - 4ac >= 0 in exact arithmetic; rounding may take it just below.
            let discriminant = b.square().sub(&a.mul(&c)?.mul_scalar(4.0))?.relu();
            let theta = c.mul_scalar(2.0).div(&b.neg().sub(&discriminant.sqrt())?)?;
            let x = theta.mul(&width)?.add(&x0)?;
            (theta, x)
        }
    };
    // log dy/dx = log(s^2 (d1 t^2 + 2 s t(1-t) + d0 (1-t)^2)) - 2 log(s + (d0+d1-2s) t(1-t)).
    let one_minus = theta.neg().add_scalar(1.0);
    let t1 = theta.mul(&one_minus)?;
    let derivative_numerator = slope.square().mul(
        &d1.mul(&theta.square())?
            .add(&slope.mul(&t1)?.mul_scalar(2.0))?
            .add(&d0.mul(&one_minus.square())?)?,
    )?;
    let denominator = slope.add(&curvature.mul(&t1)?)?;
    let log_derivative = derivative_numerator
        .log()
        .sub(&denominator.log().mul_scalar(2.0))?;
    let log_det = match direction {
        Direction::Forward => log_derivative,
        Direction::Inverse => log_derivative.neg(),
    };
    let inside = tape.constant(inside);
    Ok((
        Var::select(&inside, &y, x)?,
        Var::select(&inside, &log_det, &zero)?,
    ))
}

/// `K x (K + 1)`: `w @ C` is `[0, w_0, w_0 + w_1, ..., sum w]`.
fn cumsum_matrix<B: Backend>(backend: &B, k: usize) -> Result<Tensor<B>> {
    let values: Vec<f64> = (0..k)
        .flat_map(|i| (0..=k).map(move |j| f64::from(u8::from(i < j))))
        .collect();
    Ok(Tensor::from_f64s(backend, (k, k + 1), &values)?)
}
