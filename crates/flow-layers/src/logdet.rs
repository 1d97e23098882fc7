//! Log-determinants of residual maps: `log|det(I + J)|` per sample, where `J` is the
//! Jacobian of `g(x)` in `x`, for a residual block `x + g(x)` with `g` a contraction.
//!
//! Three estimators, as in i-ResNet (Behrmann et al. 2019) and Residual Flows (Chen et al.
//! 2019), all written over the tape's vector-Jacobian products ([`flow_core::Tape::vjp`]):
//!
//! - [`LogDetEstimator::Exact`]: the full Jacobian from `d` products, then `log|det|` by
//!   Gaussian elimination per sample (no pivoting is needed: every leading block of
//!   `I + J` is `I` plus a contraction, so no pivot vanishes). For small `d`.
//! - [`LogDetEstimator::Series`]: the power series `sum_{k=1..n} (-1)^(k+1) tr(J^k) / k`
//!   truncated at `n` terms, each trace by Hutchinson's estimator `v^T J^k v` with one probe
//!   `v` per sample (Gaussian or Rademacher). Biased by the truncation.
//! - [`LogDetEstimator::Roulette`]: unbiased: `exact_terms` terms always, then a random
//!   number `N` of further terms (geometric or Poisson), term `k` weighted by
//!   `1 / P(N >= k - exact_terms)`.
//!
//! With the Neumann gradient ([`Neumann::On`], Chen et al. 2019) the value is the estimate
//! but the gradient is that of the surrogate `(w^T J) v`, `w = sum_{k=0..n} (-1)^k c_k
//! (J^T)^k v` computed without recording: the estimator of `tr((I + J)^-1 dJ)`, which needs
//! one recorded product instead of `n` and is unbiased under the roulette's weights.
//! (normflows' training loss reports the surrogate's value; ours reports the estimate.)

use crate::error::{Error, Result};
use flow_core::{Axis, Backend, FlowRng, Tensor, Var};
use serde::{Deserialize, Serialize};

/// How a residual block's `log|det(I + J)|` is computed. Serialised as
/// `{"kind": "exact"}`, `{"kind": "series", "terms": 8}`, or
/// `{"kind": "roulette", "exact_terms": 2, "distribution": {"law": "geometric", "p": 0.5}}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogDetEstimator {
    /// From the full Jacobian (`d` vector-Jacobian products and an elimination).
    Exact,
    /// The power series truncated at `terms` terms, Hutchinson's trace estimator.
    Series { terms: usize },
    /// The unbiased Russian-roulette series: `exact_terms` terms plus `N ~ distribution`.
    Roulette {
        exact_terms: usize,
        distribution: TermDistribution,
    },
}

impl Default for LogDetEstimator {
    /// normflows' `Residual` default: 2 exact terms plus a geometric(0.5) number of terms.
    fn default() -> Self {
        LogDetEstimator::Roulette {
            exact_terms: 2,
            distribution: TermDistribution::Geometric { p: 0.5 },
        }
    }
}

/// The law of the random number of further terms of a Russian-roulette estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "law", rename_all = "snake_case")]
pub enum TermDistribution {
    /// `N` on `{1, 2, ...}` with `P(N = k) = (1 - p)^(k - 1) p` (numpy's `geometric`).
    Geometric { p: f64 },
    /// `N` on `{0, 1, ...}`, Poisson with mean `lambda`.
    Poisson { lambda: f64 },
}

impl TermDistribution {
    fn check(&self) -> Result<()> {
        match *self {
            TermDistribution::Geometric { p } if p > 0.0 && p <= 1.0 => Ok(()),
            TermDistribution::Poisson { lambda } if lambda >= 0.0 && lambda.is_finite() => Ok(()),
            other => Err(Error::Config(format!(
                "the roulette's term distribution {other:?} is not a distribution: a geometric \
                 p must be in (0, 1], a Poisson mean finite and non-negative"
            ))),
        }
    }

    /// One draw of `N`.
    fn sample(&self, rng: &mut FlowRng) -> usize {
        use rand::Rng;
        match *self {
            TermDistribution::Geometric { p } => {
                if p >= 1.0 {
                    return 1;
                }
                // Inversion: N = 1 + floor(ln U / ln(1 - p)), U in (0, 1].
                let u: f64 = 1.0 - rng.random::<f64>();
                1 + (u.ln() / (1.0 - p).ln()).floor() as usize
            }
            TermDistribution::Poisson { lambda } => {
                // Inversion by sequential search (lambda is small: a few terms).
                let u: f64 = rng.random();
                let (mut k, mut p, mut cdf) = (0usize, (-lambda).exp(), (-lambda).exp());
                while u > cdf && k < 10_000 {
                    k += 1;
                    p *= lambda / k as f64;
                    cdf += p;
                }
                k
            }
        }
    }

    /// `P(N >= n)`.
    pub fn tail(&self, n: usize) -> f64 {
        match *self {
            TermDistribution::Geometric { p } => {
                if n <= 1 {
                    1.0
                } else {
                    (1.0 - p).powi((n - 1) as i32)
                }
            }
            TermDistribution::Poisson { lambda } => {
                // 1 - P(N <= n - 1).
                let mut p = (-lambda).exp();
                let mut cdf = 0.0;
                for k in 0..n {
                    if k > 0 {
                        p *= lambda / k as f64;
                    }
                    cdf += p;
                }
                (1.0 - cdf).max(0.0)
            }
        }
    }
}

/// The probe vectors of Hutchinson's trace estimator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Standard normal entries (normflows' choice).
    #[default]
    Gaussian,
    /// Entries +1 or -1 with equal probability (the smaller-variance choice).
    Rademacher,
}

/// Whether the gradient of a stochastic estimate is the Neumann-series estimator or that
/// of the recorded series itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Neumann {
    /// The Neumann-series gradient: `n` unrecorded products and one recorded one.
    On,
    /// Backpropagation through every recorded term (i-ResNet).
    Off,
}

/// The terms of one stochastic estimate: their number `n` and the weight `c_k` of term `k`
/// (`weights[k]`, `k = 0..=n`, `c_0 = 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Terms {
    pub n: usize,
    pub weights: Vec<f64>,
}

impl LogDetEstimator {
    /// An error unless the settings make an estimator.
    pub fn check(&self) -> Result<()> {
        match self {
            LogDetEstimator::Exact => Ok(()),
            LogDetEstimator::Series { terms: 0 } => Err(Error::Config(
                "a truncated log-det series needs at least 1 term".into(),
            )),
            LogDetEstimator::Series { .. } => Ok(()),
            LogDetEstimator::Roulette { distribution, .. } => distribution.check(),
        }
    }

    /// A short description for reports (`"Russian roulette: 2 exact terms + geometric(0.5)"`).
    pub fn describe(&self) -> String {
        match self {
            LogDetEstimator::Exact => "exact (full Jacobian)".into(),
            LogDetEstimator::Series { terms } => {
                format!("power series truncated at {terms} terms, Hutchinson trace")
            }
            LogDetEstimator::Roulette {
                exact_terms,
                distribution,
            } => {
                let law = match distribution {
                    TermDistribution::Geometric { p } => format!("geometric({p})"),
                    TermDistribution::Poisson { lambda } => format!("Poisson({lambda})"),
                };
                format!("Russian roulette: {exact_terms} exact terms + {law}, Hutchinson trace")
            }
        }
    }

    /// Draws the terms of one estimate (`None` for the exact estimator).
    pub fn draw(&self, rng: &mut FlowRng) -> Option<Terms> {
        match *self {
            LogDetEstimator::Exact => None,
            LogDetEstimator::Series { terms } => Some(Terms {
                n: terms,
                weights: vec![1.0; terms + 1],
            }),
            LogDetEstimator::Roulette {
                exact_terms,
                distribution,
            } => {
                let n = exact_terms + distribution.sample(rng);
                let weights = (0..=n)
                    .map(|k| {
                        if k <= exact_terms {
                            1.0
                        } else {
                            1.0 / distribution.tail(k - exact_terms)
                        }
                    })
                    .collect();
                Some(Terms { n, weights })
            }
        }
    }
}

/// `log|det(I + J)|` per row (`rows x 1`), `J` the Jacobian of `gx = g(x)` (`rows x d`, row
/// `i` a function of row `i` of `x` alone) in `x`, which must require a gradient on its
/// tape. `differentiable`: whether the result must carry gradients (in `x` and whatever `g`
/// depends on); the stochastic estimators draw their terms and probes from `rng`.
pub fn residual_log_det<B: Backend>(
    x: &Var<B>,
    gx: &Var<B>,
    estimator: &LogDetEstimator,
    probe: Probe,
    neumann: Neumann,
    differentiable: bool,
    rng: &mut FlowRng,
) -> Result<Var<B>> {
    if !x.requires_grad() {
        return Err(Error::Config(
            "residual_log_det needs an input that requires a gradient on its tape".into(),
        ));
    }
    match estimator.draw(rng) {
        None => exact(x, gx, differentiable),
        Some(terms) => {
            let v = draw_probe(x, probe, rng)?;
            match (differentiable, neumann) {
                (true, Neumann::On) => neumann_series(x, gx, &v, &terms),
                (d, _) => series(x, gx, &v, &terms, d),
            }
        }
    }
}

/// A `rows x d` probe on `x`'s tape, as a constant.
fn draw_probe<B: Backend>(x: &Var<B>, probe: Probe, rng: &mut FlowRng) -> Result<Var<B>> {
    let tape = x.tape();
    Ok(tape.constant(probe_tensor(tape.backend(), x.shape(), probe, rng)?))
}

/// Hutchinson's probe of `shape`: standard normal or Rademacher entries.
pub fn probe_tensor<B: Backend>(
    backend: &B,
    shape: flow_core::Shape,
    probe: Probe,
    rng: &mut FlowRng,
) -> Result<Tensor<B>> {
    Ok(match probe {
        Probe::Gaussian => Tensor::randn(backend, shape, rng)?,
        Probe::Rademacher => {
            use rand::Rng;
            let signs: Vec<f64> = (0..shape.rows * shape.cols)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect();
            Tensor::from_f64s(backend, shape, &signs)?
        }
    })
}

/// `u^T J` per row, recorded when `record`.
fn vjp<B: Backend>(x: &Var<B>, gx: &Var<B>, u: &Var<B>, record: bool) -> Result<Var<B>> {
    Ok(x.tape().vjp(gx, u, &[x], record)?.remove(0))
}

/// The per-row dot product of two `rows x d` variables (`rows x 1`).
fn row_dot<B: Backend>(a: &Var<B>, b: &Var<B>) -> Result<Var<B>> {
    Ok(a.mul(b)?.sum(Axis::Cols)?)
}

/// `sum_{k=1..n} (-1)^(k+1) c_k (v^T J^k v) / k`, every product recorded when
/// `differentiable` (i-ResNet's backpropagation through the series).
fn series<B: Backend>(
    x: &Var<B>,
    gx: &Var<B>,
    v: &Var<B>,
    terms: &Terms,
    differentiable: bool,
) -> Result<Var<B>> {
    let mut w = v.clone();
    let mut total: Option<Var<B>> = None;
    for k in 1..=terms.n {
        w = vjp(x, gx, &w, differentiable)?;
        let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
        let term = row_dot(&w, v)?.mul_scalar(sign * terms.weights[k] / k as f64)?;
        total = Some(match total {
            None => term,
            Some(t) => t.add(&term)?,
        });
    }
    match total {
        Some(t) => Ok(t),
        None => Ok(crate::flow::zero_log_det(x)?),
    }
}

/// The estimate's value with the Neumann-series gradient: `value + s - detach(s)` where
/// `s = (w^T J) v` is recorded with `w = sum_{k=0..n} (-1)^k c_k v^T J^k` held constant.
fn neumann_series<B: Backend>(
    x: &Var<B>,
    gx: &Var<B>,
    v: &Var<B>,
    terms: &Terms,
) -> Result<Var<B>> {
    let (rows, d) = (x.shape().rows, x.shape().cols);
    if d <= terms.n {
        // Fewer products for the whole Jacobian than for the series' terms: take those and
        // run the series on the host (the same estimate, to rounding).
        let jacobians = jacobian_rows(x, gx)?;
        let (value, neumann) = series_on_host(&jacobians, &v.value().to_f64s()?, rows, d, terms);
        let tape = x.tape();
        let neumann = tape.constant(Tensor::from_f64s(tape.backend(), (rows, d), &neumann)?);
        let value = tape.constant(Tensor::from_f64s(tape.backend(), (rows, 1), &value)?);
        let surrogate = row_dot(&vjp(x, gx, &neumann, true)?, v)?;
        return Ok(surrogate.sub(&surrogate.detach())?.add(&value)?);
    }
    neumann_series_by_products(x, gx, v, terms)
}

/// [`neumann_series`] with one vector-Jacobian product per term.
fn neumann_series_by_products<B: Backend>(
    x: &Var<B>,
    gx: &Var<B>,
    v: &Var<B>,
    terms: &Terms,
) -> Result<Var<B>> {
    let mut w = v.clone();
    let mut neumann = v.clone();
    let mut value: Option<Var<B>> = None;
    for k in 1..=terms.n {
        w = vjp(x, gx, &w, false)?;
        let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
        let term = row_dot(&w, v)?.mul_scalar(sign * terms.weights[k] / k as f64)?;
        value = Some(match value {
            None => term,
            Some(t) => t.add(&term)?,
        });
        neumann = neumann.add(&w.mul_scalar(-sign * terms.weights[k])?)?;
    }
    let surrogate = row_dot(&vjp(x, gx, &neumann, true)?, v)?;
    let value = match value {
        Some(v) => v,
        None => crate::flow::zero_log_det(x)?,
    };
    Ok(surrogate.sub(&surrogate.detach())?.add(&value)?)
}

/// The cotangent that picks output feature `j` of every row (`shape`, ones in column `j`):
/// its vector-Jacobian product is row `j` of each sample's Jacobian.
pub(crate) fn unit_cotangent<B: Backend>(
    tape: &flow_core::Tape<B>,
    shape: flow_core::Shape,
    j: usize,
) -> Result<Var<B>> {
    let (rows, d) = (shape.rows, shape.cols);
    Ok(tape.constant(crate::flow::constant_columns(
        tape.backend(),
        rows,
        &[(j, 0.0), (1, 1.0), (d - j - 1, 0.0)],
    )?))
}

/// Every sample's Jacobian of `gx` in `x`, row-major per sample (`rows x d x d`, entry
/// `(j, i)` is `dg_j / dx_i`), from `d` unrecorded vector-Jacobian products.
fn jacobian_rows<B: Backend>(x: &Var<B>, gx: &Var<B>) -> Result<Vec<f64>> {
    let tape = x.tape();
    let shape = x.shape();
    let (rows, d) = (shape.rows, shape.cols);
    let mut jac = vec![0.0; rows * d * d];
    for j in 0..d {
        let e = unit_cotangent(tape, shape, j)?;
        let row = vjp(x, gx, &e, false)?.value().to_f64s()?;
        for r in 0..rows {
            jac[(r * d + j) * d..(r * d + j + 1) * d].copy_from_slice(&row[r * d..(r + 1) * d]);
        }
    }
    Ok(jac)
}

/// The series of [`neumann_series`] from explicit Jacobians: per row, the estimate
/// `sum_k (-1)^(k+1) c_k (v^T J^k v) / k` and the Neumann vector
/// `sum_{k=0..n} (-1)^k c_k v^T J^k`.
fn series_on_host(
    jac: &[f64],
    v: &[f64],
    rows: usize,
    d: usize,
    terms: &Terms,
) -> (Vec<f64>, Vec<f64>) {
    let mut values = vec![0.0; rows];
    let mut neumann = v.to_vec();
    let mut w = vec![0.0; d];
    let mut next = vec![0.0; d];
    for r in 0..rows {
        let vr = &v[r * d..(r + 1) * d];
        let jr = &jac[r * d * d..(r + 1) * d * d];
        w.copy_from_slice(vr);
        for k in 1..=terms.n {
            // next = w^T J: next_i = sum_j w_j J_ji.
            for (i, n) in next.iter_mut().enumerate() {
                *n = (0..d).map(|j| w[j] * jr[j * d + i]).sum();
            }
            std::mem::swap(&mut w, &mut next);
            let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
            let wv: f64 = w.iter().zip(vr).map(|(a, b)| a * b).sum();
            values[r] += sign * terms.weights[k] / k as f64 * wv;
            for (n, wi) in neumann[r * d..(r + 1) * d].iter_mut().zip(&w) {
                *n += -sign * terms.weights[k] * wi;
            }
        }
    }
    (values, neumann)
}

/// `log|det(I + J)|` from the full Jacobian: row `j` of `J` for every sample is
/// `e_j^T J`, one vector-Jacobian product; then Gaussian elimination on the columns.
fn exact<B: Backend>(x: &Var<B>, gx: &Var<B>, differentiable: bool) -> Result<Var<B>> {
    let tape = x.tape();
    let shape = x.shape();
    let d = shape.cols;
    // a[j][i] = delta_ji + dg_j / dx_i, each rows x 1.
    let mut a: Vec<Vec<Var<B>>> = Vec::with_capacity(d);
    for j in 0..d {
        let e = unit_cotangent(tape, shape, j)?;
        let row = vjp(x, gx, &e, differentiable)?;
        let mut entries = Vec::with_capacity(d);
        for i in 0..d {
            let entry = row.slice_cols(i, 1)?;
            entries.push(if i == j {
                entry.add_scalar(1.0)?
            } else {
                entry
            });
        }
        a.push(entries);
    }
    log_abs_det_columns(a)
}

/// `log|det A|` per sample of a batch of `d x d` matrices given as columns of per-sample
/// entries (`a[j][i]`, each `rows x 1`), by elimination without pivoting.
fn log_abs_det_columns<B: Backend>(mut a: Vec<Vec<Var<B>>>) -> Result<Var<B>> {
    let d = a.len();
    let mut total: Option<Var<B>> = None;
    for k in 0..d {
        let pivot = a[k][k].clone();
        let log_pivot = pivot.abs()?.log()?;
        total = Some(match total {
            None => log_pivot,
            Some(t) => t.add(&log_pivot)?,
        });
        for i in k + 1..d {
            let factor = a[i][k].div(&pivot)?;
            // Row i is written while row k is read: indices, not iterators.
            #[allow(clippy::needless_range_loop)]
            for j in k + 1..d {
                let updated = a[i][j].sub(&factor.mul(&a[k][j])?)?;
                a[i][j] = updated;
            }
        }
    }
    total.ok_or_else(|| Error::Config("a log-determinant of a 0 x 0 matrix".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::{rng, Cpu, Tape};

    #[test]
    fn the_series_from_explicit_jacobians_is_the_series_by_products() {
        let cpu = Cpu::<f64>::new();
        let w = Tensor::randn(&cpu, (3, 3), &mut rng(1)).unwrap();
        let w = w.unary(flow_core::UnaryOp::MulScalar(0.3)).unwrap();
        let x0 = Tensor::randn(&cpu, (5, 3), &mut rng(2)).unwrap();
        let v0 = Tensor::randn(&cpu, (5, 3), &mut rng(3)).unwrap();
        let terms = Terms {
            n: 6,
            weights: vec![1.0, 1.0, 1.0, 2.0, 4.0, 8.0, 16.0],
        };
        let run = |explicit: bool| {
            let tape = Tape::new(&cpu);
            let wv = tape.input(w.clone());
            let x = tape.input(x0.clone());
            let gx = x.matmul_t(false, &wv, true).unwrap().swish().unwrap();
            let v = tape.constant(v0.clone());
            let ld = if explicit {
                neumann_series(&x, &gx, &v, &terms).unwrap()
            } else {
                neumann_series_by_products(&x, &gx, &v, &terms).unwrap()
            };
            let grads = tape.backward(&ld.sum_all().unwrap()).unwrap();
            let mut all = ld.value().to_f64s().unwrap();
            all.extend(grads.get(&wv).unwrap().to_f64s().unwrap());
            all.extend(grads.get(&x).unwrap().to_f64s().unwrap());
            all
        };
        let (a, b) = (run(true), run(false));
        for (k, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(
                (p - q).abs() < 1e-12 * (1.0 + q.abs()),
                "entry {k}: {p} against {q}"
            );
        }
    }
}
