//! Ordinary differential equations on the tape: `dy/dt = f(t, y)` for a state of one or more
//! variables, integrated from `t0` to `t1` (forward or backward in time) by fixed-step
//! Euler, midpoint or classical Runge-Kutta, or by adaptive Dormand-Prince 5(4) with
//! torchdiffeq's `dopri5` error control. Every stage is tape arithmetic, so gradients flow
//! through the solver's operations (backpropagation through the solve); time is f64 on the
//! host, as torchdiffeq keeps it.
//!
//! ```
//! use flow_core::{Cpu, Tape, Tensor};
//! use flow_layers::ode::{integrate, Solver};
//!
//! // dy/dt = -y from y(0) = 1: y(1) = e^-1.
//! let cpu = Cpu::<f64>::new();
//! let tape = Tape::new(&cpu);
//! let y0 = tape.constant(Tensor::from_f64s(&cpu, (1, 1), &[1.0])?);
//! let field = |_t: f64, y: &[flow_core::Var<Cpu<f64>>]| Ok(vec![y[0].neg()?]);
//! let solver = Solver::Dopri5 { rtol: 1e-10, atol: 1e-12, max_steps: 10_000 };
//! let (y1, stats) = integrate(&field, &[y0], 0.0, 1.0, &solver)?;
//! assert!((y1[0].value().to_f64s()?[0] - (-1.0f64).exp()).abs() < 1e-9);
//! assert!(stats.evaluations > 0 && stats.rejected <= stats.steps);
//! # Ok::<(), flow_layers::Error>(())
//! ```

use crate::error::{Error, Result};
use flow_core::{Backend, Var};
use serde::{Deserialize, Serialize};

/// How an ODE is integrated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Solver {
    /// Explicit Euler, `steps` equal steps (order 1).
    Euler { steps: usize },
    /// The explicit midpoint rule, `steps` equal steps (order 2).
    Midpoint { steps: usize },
    /// The classical Runge-Kutta method, `steps` equal steps (order 4).
    Rk4 { steps: usize },
    /// Dormand-Prince 5(4) with adaptive steps, as torchdiffeq's `dopri5`: a step is accepted
    /// when the RMS of `error / (atol + rtol max(|y0|, |y1|))` is at most 1; the next step is
    /// the last times `min(10, max(0.9 ratio^(-1/5), 0.2))` (never smaller after an accepted
    /// step); the first from Hairer's heuristic. At most `max_steps` attempted steps.
    Dopri5 {
        rtol: f64,
        atol: f64,
        max_steps: usize,
    },
}

/// What a solve cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OdeStats {
    /// Evaluations of the vector field.
    pub evaluations: usize,
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps (adaptive solvers).
    pub rejected: usize,
}

/// `y + h sum_i c_i k_i` (terms with a zero coefficient skipped).
fn combine<B: Backend>(y: &[Var<B>], h: f64, terms: &[(f64, &[Var<B>])]) -> Result<Vec<Var<B>>> {
    y.iter()
        .enumerate()
        .map(|(j, yj)| {
            let mut acc = yj.clone();
            for &(c, k) in terms {
                if c != 0.0 {
                    acc = acc.add(&k[j].mul_scalar(h * c)?)?;
                }
            }
            Ok(acc)
        })
        .collect()
}

/// `h sum_i c_i k_i` (terms with a zero coefficient skipped; at least one is not): the
/// error estimate of an embedded pair.
fn weighted_sum<B: Backend>(h: f64, terms: &[(f64, &[Var<B>])]) -> Result<Vec<Var<B>>> {
    let parts = terms.first().map_or(0, |(_, k)| k.len());
    (0..parts)
        .map(|j| {
            let mut acc: Option<Var<B>> = None;
            for &(c, k) in terms.iter().filter(|(c, _)| *c != 0.0) {
                let term = k[j].mul_scalar(h * c)?;
                acc = Some(match acc {
                    None => term,
                    Some(a) => a.add(&term)?,
                });
            }
            acc.ok_or_else(|| Error::Config("a weighted sum of no terms".into()))
        })
        .collect()
}

/// An explicit fixed-step Runge-Kutta method's Butcher tableau: stage `i` evaluates the
/// field at `t + c[i] h` and `y + h sum_j a[i][j] k_j`; the step is `y + h sum_i b[i] k_i`
/// (zero coefficients skipped by [`combine`]).
struct Tableau {
    c: &'static [f64],
    a: &'static [&'static [f64]],
    b: &'static [f64],
}

const EULER: Tableau = Tableau {
    c: &[0.0],
    a: &[&[]],
    b: &[1.0],
};

const MIDPOINT: Tableau = Tableau {
    c: &[0.0, 0.5],
    a: &[&[], &[0.5]],
    b: &[0.0, 1.0],
};

const RK4: Tableau = Tableau {
    c: &[0.0, 0.5, 0.5, 1.0],
    a: &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
};

/// A vector field `f(t, y)` on a state of several variables: their time derivatives, of the
/// same shapes.
pub type Field<'a, B> = dyn Fn(f64, &[Var<B>]) -> Result<Vec<Var<B>>> + 'a;

/// A field that keeps state between calls (an evaluation counter, fixed probes).
type FieldMut<'a, B> = dyn FnMut(f64, &[Var<B>]) -> Result<Vec<Var<B>>> + 'a;

/// `steps` equal steps of an explicit Runge-Kutta method from `y0` at `t0` to `t1` (with
/// `detach`, the state moves to a fresh tape after each step, as [`detached`]).
fn fixed_steps<B: Backend>(
    eval: &mut FieldMut<'_, B>,
    y0: &[Var<B>],
    (t0, t1): (f64, f64),
    steps: usize,
    tableau: &Tableau,
    detach: bool,
) -> Result<Vec<Var<B>>> {
    if steps == 0 {
        return Err(Error::Config(
            "a fixed-step solver needs at least one step".into(),
        ));
    }
    let h = (t1 - t0) / steps as f64;
    let mut y = y0.to_vec();
    for i in 0..steps {
        let t = t0 + i as f64 * h;
        let mut ks: Vec<Vec<Var<B>>> = Vec::with_capacity(tableau.b.len());
        for (&c, a) in tableau.c.iter().zip(tableau.a) {
            let k = if a.is_empty() {
                eval(t + c * h, &y)?
            } else {
                let terms: Vec<(f64, &[Var<B>])> =
                    a.iter().zip(&ks).map(|(&w, k)| (w, k.as_slice())).collect();
                eval(t + c * h, &combine(&y, h, &terms)?)?
            };
            ks.push(k);
        }
        let terms: Vec<(f64, &[Var<B>])> = tableau
            .b
            .iter()
            .zip(&ks)
            .map(|(&w, k)| (w, k.as_slice()))
            .collect();
        y = combine(&y, h, &terms)?;
        if detach {
            y = detached(&y);
        }
    }
    Ok(y)
}

/// Checks that `f` returned one variable of each state's shape.
fn checked<B: Backend>(y: &[Var<B>], k: Vec<Var<B>>) -> Result<Vec<Var<B>>> {
    if k.len() != y.len() || k.iter().zip(y).any(|(a, b)| a.shape() != b.shape()) {
        return Err(Error::Config(format!(
            "the vector field returned {} variables of shapes {:?} for a state of shapes {:?}",
            k.len(),
            k.iter().map(|v| v.shape()).collect::<Vec<_>>(),
            y.iter().map(|v| v.shape()).collect::<Vec<_>>()
        )));
    }
    Ok(k)
}

/// Integrates `dy/dt = f(t, y)` from `y0` at `t0` to `t1` (`t1 < t0` integrates backward in
/// time) with `solver`; returns `y(t1)` and the cost. The state is a list of variables (a
/// sample batch, its log-density, ...) that `f` maps to their derivatives, of the same
/// shapes. A non-finite state, an adaptive step that underflows, or `max_steps` reached is
/// an error naming the time reached.
pub fn integrate<B: Backend>(
    f: &Field<'_, B>,
    y0: &[Var<B>],
    t0: f64,
    t1: f64,
    solver: &Solver,
) -> Result<(Vec<Var<B>>, OdeStats)> {
    solve(f, y0, (t0, t1), solver, false)
}

/// The state moved onto a fresh tape as constants: what a values-only solve does after each
/// step, so that its memory does not grow with the number of steps.
fn detached<B: Backend>(y: &[Var<B>]) -> Vec<Var<B>> {
    match y.first() {
        None => Vec::new(),
        Some(first) => {
            let tape = flow_core::Tape::inference(first.tape().backend());
            y.iter().map(|v| tape.constant(v.value())).collect()
        }
    }
}

/// [`integrate`]; with `detach`, the state moves to a fresh tape after every step (values
/// only, memory independent of the number of steps: the adjoint method's passes).
fn solve<B: Backend>(
    f: &Field<'_, B>,
    y0: &[Var<B>],
    (t0, t1): (f64, f64),
    solver: &Solver,
    detach: bool,
) -> Result<(Vec<Var<B>>, OdeStats)> {
    if !(t0.is_finite() && t1.is_finite()) {
        return Err(Error::Config(format!(
            "an ODE needs finite end times, got {t0} to {t1}"
        )));
    }
    let mut stats = OdeStats::default();
    let mut eval = |t: f64, y: &[Var<B>]| -> Result<Vec<Var<B>>> {
        stats.evaluations += 1;
        checked(y, f(t, y)?)
    };
    let mut fixed = |steps: usize, tableau: &Tableau| -> Result<Vec<Var<B>>> {
        fixed_steps(&mut eval, y0, (t0, t1), steps, tableau, detach)
    };
    let (y, steps) = match *solver {
        Solver::Euler { steps } => (fixed(steps, &EULER)?, steps),
        Solver::Midpoint { steps } => (fixed(steps, &MIDPOINT)?, steps),
        Solver::Rk4 { steps } => (fixed(steps, &RK4)?, steps),
        Solver::Dopri5 {
            rtol,
            atol,
            max_steps,
        } => {
            if !(rtol >= 0.0 && atol >= 0.0 && rtol + atol > 0.0) {
                return Err(Error::Config(format!(
                    "dopri5 needs non-negative tolerances, not both zero: rtol {rtol}, atol {atol}"
                )));
            }
            let control = StepControl {
                rtol,
                atol,
                max_steps,
            };
            let (y1, accepted, rejected) =
                dopri5(&mut eval, y0.to_vec(), (t0, t1), &control, detach)?;
            stats.rejected = rejected;
            (y1, accepted)
        }
    };
    stats.steps = steps;
    Ok((y, stats))
}

/// `y(t1)` for `dy/dt = f(t, y, params)` from `y0` at `t0`, values only: nothing is
/// recorded for gradients, and the state moves to a fresh tape after every step, so memory
/// does not grow with the number of steps (an evaluation, or the adjoint method's forward
/// pass). `params` are bound as constants on each step's tape; the result is on a tape of
/// its own (take its values).
pub fn integrate_values<B: Backend>(
    f: &ParamField<B>,
    y0: &[Var<B>],
    params: &[flow_core::Tensor<B>],
    (t0, t1): (f64, f64),
    solver: &Solver,
) -> Result<(Vec<Var<B>>, OdeStats)> {
    let field = |t: f64, y: &[Var<B>]| {
        let on = y[0].tape();
        let p: Vec<Var<B>> = params.iter().map(|v| on.constant(v.clone())).collect();
        f(t, y, &p)
    };
    solve(&field, &detached(y0), (t0, t1), solver, true)
}

/// A vector field with its parameters passed explicitly, `f(t, y, params)` (every variable
/// on one tape): what the adjoint method differentiates.
pub type ParamField<B> = dyn Fn(f64, &[Var<B>], &[Var<B>]) -> Result<Vec<Var<B>>> + Send + Sync;

/// `y(t1)` for `dy/dt = f(t, y, params)` from `y0` at `t0`, differentiable in `y0` and
/// `params` by the adjoint method (Chen et al. 2018, as torchdiffeq's `odeint_adjoint`): the
/// forward solve keeps no graph, and the backward pass integrates the augmented system
/// `y' = f`, `a' = -a^T df/dy`, `a_theta' = -a^T df/dtheta` from `t1` back to `t0` with the
/// same solver (the adaptive error control over all of it), one vector-Jacobian product
/// of `f` per evaluation. Memory does not grow with the number of steps. The returned
/// variables' own gradients are first order only (not recorded).
///
/// ```
/// use std::sync::Arc;
/// use flow_core::{Cpu, Tape, Tensor, Var};
/// use flow_layers::ode::{integrate_adjoint, ParamField, Solver};
///
/// // y' = a y: y(1) = y0 e^a, dy(1)/da = y0 e^a.
/// let cpu = Cpu::<f64>::new();
/// let tape = Tape::new(&cpu);
/// let a = tape.input(Tensor::from_f64s(&cpu, (1, 1), &[0.5])?);
/// let y0 = tape.input(Tensor::from_f64s(&cpu, (1, 1), &[2.0])?);
/// let field: Arc<ParamField<Cpu<f64>>> =
///     Arc::new(|_t: f64, y: &[Var<Cpu<f64>>], p: &[Var<Cpu<f64>>]| Ok(vec![y[0].mul(&p[0])?]));
/// let solver = Solver::Dopri5 { rtol: 1e-10, atol: 1e-10, max_steps: 10_000 };
/// let (y1, _) = integrate_adjoint(field, &[y0], &[a.clone()], (0.0, 1.0), &solver)?;
/// let grads = tape.backward(&y1[0].sum_all()?)?;
/// assert!((grads.get(&a).unwrap().to_f64s()?[0] - 2.0 * 0.5f64.exp()).abs() < 1e-7);
/// # Ok::<(), flow_layers::Error>(())
/// ```
pub fn integrate_adjoint<B: Backend>(
    f: std::sync::Arc<ParamField<B>>,
    y0: &[Var<B>],
    params: &[Var<B>],
    (t0, t1): (f64, f64),
    solver: &Solver,
) -> Result<(Vec<Var<B>>, OdeStats)> {
    let Some(first) = y0.first() else {
        return Err(Error::Config("an ODE needs a state".into()));
    };
    let tape = first.tape().clone();
    let param_values: Vec<flow_core::Tensor<B>> = params.iter().map(|p| p.value()).collect();
    let (y1, stats) = integrate_values(f.as_ref(), y0, &param_values, (t0, t1), solver)?;
    let shapes: Vec<flow_core::Shape> = y0.iter().map(|v| v.shape()).collect();
    let mut packed = Vec::new();
    for v in &y1 {
        packed.extend(v.value().to_f64s()?);
    }
    let out = flow_core::Tensor::from_f64s(tape.backend(), (1, packed.len()), &packed)?;
    let op = AdjointSolve {
        f,
        params: param_values,
        end: y1.iter().map(|v| v.value()).collect(),
        count: y0.len(),
        times: (t0, t1),
        solver: *solver,
        packed: out,
    };
    let mut inputs: Vec<&Var<B>> = y0.iter().collect();
    inputs.extend(params.iter());
    let joined = Var::custom(std::sync::Arc::new(op), &inputs)?;
    let mut parts = Vec::with_capacity(shapes.len());
    let mut offset = 0;
    for shape in shapes {
        let n = shape.len();
        parts.push(joined.slice_cols(offset, n)?.reshape(shape)?);
        offset += n;
    }
    Ok((parts, stats))
}

/// The adjoint method's recorded op: its output is the packed `y(t1)` (`1 x total`), its
/// inputs the initial state and the parameters.
struct AdjointSolve<B: Backend> {
    f: std::sync::Arc<ParamField<B>>,
    params: Vec<flow_core::Tensor<B>>,
    end: Vec<flow_core::Tensor<B>>,
    count: usize,
    times: (f64, f64),
    solver: Solver,
    packed: flow_core::Tensor<B>,
}

impl<B: Backend> AdjointSolve<B> {
    /// The gradients of the initial state and the parameters, given the packed gradient of
    /// `y(t1)`.
    fn adjoint(&self, grad: &flow_core::Tensor<B>) -> Result<Vec<flow_core::Tensor<B>>> {
        let backend = grad.backend().clone();
        let g = grad.to_f64s()?;
        let tape = flow_core::Tape::inference(&backend);
        // The augmented state at t1: y(t1), a(t1) = the gradient, a_theta(t1) = 0.
        let mut state: Vec<Var<B>> = self.end.iter().map(|v| tape.constant(v.clone())).collect();
        let mut offset = 0;
        for v in &self.end {
            let n = v.shape().len();
            let part = flow_core::Tensor::from_f64s(&backend, v.shape(), &g[offset..offset + n])?;
            state.push(tape.constant(part));
            offset += n;
        }
        for p in &self.params {
            state.push(tape.constant(flow_core::Tensor::zeros(&backend, p.shape())?));
        }
        let (count, n_params) = (self.count, self.params.len());
        let f = &self.f;
        let augmented = |t: f64, s: &[Var<B>]| -> Result<Vec<Var<B>>> {
            let on = s[0].tape();
            let scratch = flow_core::Tape::new(on.backend());
            let y: Vec<Var<B>> = s[..count]
                .iter()
                .map(|v| scratch.input(v.value()))
                .collect();
            let p: Vec<Var<B>> = self
                .params
                .iter()
                .map(|v| scratch.input(v.clone()))
                .collect();
            let dy = f(t, &y, &p)?;
            let mut inner: Option<Var<B>> = None;
            for (d, a) in dy.iter().zip(&s[count..2 * count]) {
                let term = d.mul(&scratch.constant(a.value()))?.sum_all()?;
                inner = Some(match inner {
                    None => term,
                    Some(acc) => acc.add(&term)?,
                });
            }
            let inner = inner.ok_or_else(|| Error::Config("an empty ODE state".into()))?;
            let wrt: Vec<&Var<B>> = y.iter().chain(p.iter()).collect();
            let grads = scratch.grad(&inner, &wrt, false)?;
            let mut out: Vec<Var<B>> = dy.iter().map(|d| on.constant(d.value())).collect();
            for g in grads.iter().take(count + n_params) {
                out.push(on.constant(g.value().unary(flow_core::UnaryOp::Neg)?));
            }
            Ok(out)
        };
        let (t0, t1) = self.times;
        let (at_start, _) = solve(&augmented, &state, (t1, t0), &self.solver, true)?;
        Ok(at_start[count..].iter().map(|v| v.value()).collect())
    }
}

impl<B: Backend> flow_core::CustomOp<B> for AdjointSolve<B> {
    fn name(&self) -> &str {
        "ODE solve (adjoint)"
    }

    fn forward(
        &self,
        _inputs: &[&flow_core::Tensor<B>],
    ) -> flow_core::Result<flow_core::Tensor<B>> {
        Ok(self.packed.clone())
    }

    fn backward(
        &self,
        inputs: &[&Var<B>],
        _output: &Var<B>,
        grad: &Var<B>,
    ) -> flow_core::Result<Vec<Option<Var<B>>>> {
        let grads = self
            .adjoint(&grad.value())
            .map_err(|e| e.in_op("ODE solve (adjoint)"))?;
        let tape = grad.tape();
        Ok(grads
            .into_iter()
            .take(inputs.len())
            .map(|g| Some(tape.constant(g)))
            .collect())
    }
}

// Dormand-Prince 5(4): nodes, stages, the 5th-order weights and the error weights (5th
// minus 4th order).
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// The 5th-order weights: the last row of `A` (tested below).
#[cfg(test)]
const B5: [f64; 7] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
    0.0,
];
const E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

/// torchdiffeq's mixed norm: the largest over the state's variables of each one's RMS.
fn rms_norm(parts: &[Vec<f64>]) -> f64 {
    parts
        .iter()
        .map(|p| {
            if p.is_empty() {
                0.0
            } else {
                (p.iter().map(|v| v * v).sum::<f64>() / p.len() as f64).sqrt()
            }
        })
        .fold(0.0, f64::max)
}

fn values<B: Backend>(y: &[Var<B>]) -> Result<Vec<Vec<f64>>> {
    Ok(y.iter()
        .map(|v| v.value().to_f64s())
        .collect::<flow_core::Result<_>>()?)
}

/// An adaptive solver's tolerances and step limit.
#[derive(Clone, Copy)]
struct StepControl {
    rtol: f64,
    atol: f64,
    max_steps: usize,
}

/// Adaptive Dormand-Prince from `y` at `t0` to `t1` (see [`Solver::Dopri5`]): the state at
/// `t1`, and the accepted and rejected steps.
fn dopri5<B: Backend>(
    eval: &mut FieldMut<'_, B>,
    mut y: Vec<Var<B>>,
    (t0, t1): (f64, f64),
    control: &StepControl,
    detach: bool,
) -> Result<(Vec<Var<B>>, usize, usize)> {
    let StepControl {
        rtol,
        atol,
        max_steps,
    } = *control;
    let (mut accepted, mut rejected) = (0usize, 0usize);
    if t0 == t1 {
        return Ok((y, 0, 0));
    }
    let direction = (t1 - t0).signum();
    let mut k1 = eval(t0, &y)?;
    // Hairer's initial step (torchdiffeq's `_select_initial_step`, order 4).
    let y_vals = values(&y)?;
    let f_vals = values(&k1)?;
    let scaled = |v: &[Vec<f64>], by: &[Vec<f64>]| -> Vec<Vec<f64>> {
        v.iter()
            .zip(by)
            .map(|(a, yb)| {
                a.iter()
                    .zip(yb)
                    .map(|(x, y0)| x / (atol + y0.abs() * rtol))
                    .collect()
            })
            .collect()
    };
    let d0 = rms_norm(&scaled(&y_vals, &y_vals));
    let d1 = rms_norm(&scaled(&f_vals, &y_vals));
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let probe = combine(&y, direction * h0, &[(1.0, &k1)])?;
    let f1 = values(&eval(t0 + direction * h0, &probe)?)?;
    let diff: Vec<Vec<f64>> = f1
        .iter()
        .zip(&f_vals)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
        .collect();
    let d2 = rms_norm(&scaled(&diff, &y_vals)) / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / 5.0)
    };
    let mut h = (100.0 * h0).min(h1);
    let mut t = t0;
    let span = (t1 - t0).abs();
    let mut attempts = 0usize;
    while direction * (t1 - t) > 0.0 {
        if attempts >= max_steps {
            return Err(Error::Config(format!(
                "dopri5 reached its limit of {max_steps} steps at t = {t} on the way from {t0} \
                 to {t1} (rtol {rtol}, atol {atol}): the field is stiff there, or the \
                 tolerances too tight"
            )));
        }
        attempts += 1;
        // The last step lands on t1.
        let step = h.min((t1 - t).abs());
        // Negated so that a NaN step is an underflow too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(step > 16.0 * f64::EPSILON * t.abs().max(span)) {
            return Err(Error::Config(format!(
                "dopri5's step size underflowed ({step:e}) at t = {t} on the way from {t0} to \
                 {t1} (rtol {rtol}, atol {atol})"
            )));
        }
        let hs = direction * step;
        let mut ks: Vec<Vec<Var<B>>> = vec![k1.clone()];
        let mut y_new = Vec::new();
        for (i, row) in A.iter().enumerate() {
            let terms: Vec<(f64, &[Var<B>])> = row
                .iter()
                .zip(&ks)
                .map(|(&a, k)| (a, k.as_slice()))
                .collect();
            let yi = combine(&y, hs, &terms)?;
            let ki = eval(t + C[i + 1] * hs, &yi)?;
            ks.push(ki);
            // The last stage's state is the 5th-order solution (its weights are B5), and its
            // field the next step's first stage (FSAL).
            y_new = yi;
        }
        let err_terms: Vec<(f64, &[Var<B>])> =
            E.iter().zip(&ks).map(|(&e, k)| (e, k.as_slice())).collect();
        let err = values(&weighted_sum(hs, &err_terms)?)?;
        let (old, new) = (values(&y)?, values(&y_new)?);
        let ratio_parts: Vec<Vec<f64>> = err
            .iter()
            .zip(old.iter().zip(&new))
            .map(|(e, (a, b))| {
                e.iter()
                    .zip(a.iter().zip(b))
                    .map(|(e, (a, b))| e / (atol + rtol * a.abs().max(b.abs())))
                    .collect()
            })
            .collect();
        let ratio = rms_norm(&ratio_parts);
        if !ratio.is_finite() {
            return Err(Error::Config(format!(
                "dopri5 met a non-finite state or error at t = {t} on the way from {t0} to {t1}"
            )));
        }
        let accept = ratio <= 1.0;
        let factor = if ratio == 0.0 {
            10.0
        } else {
            let lower = if accept { 1.0 } else { 0.2 };
            (0.9 * ratio.powf(-1.0 / 5.0)).clamp(lower, 10.0)
        };
        if accept {
            t = if step == (t1 - t).abs() { t1 } else { t + hs };
            k1 = ks.pop().expect("seven stages");
            if detach {
                // The state and the reused stage together onto a fresh tape.
                let mut both = y_new;
                both.extend(k1);
                let moved = detached(&both);
                let n = moved.len() / 2;
                y = moved[..n].to_vec();
                k1 = moved[n..].to_vec();
            } else {
                y = y_new;
            }
            accepted += 1;
        } else {
            rejected += 1;
        }
        h = step * factor;
    }
    Ok((y, accepted, rejected))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_stage_is_the_fifth_order_solution() {
        let last = super::A[5];
        assert_eq!(&super::B5[..6], last);
        assert_eq!(super::B5[6], 0.0);
        // Each stage's weights sum to its node, the weights of both orders to 1.
        for (i, row) in super::A.iter().enumerate() {
            assert!((row.iter().sum::<f64>() - super::C[i + 1]).abs() < 1e-14);
        }
        assert!(super::E.iter().sum::<f64>().abs() < 1e-14);
    }
}
