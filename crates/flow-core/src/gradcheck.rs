//! Central finite-difference gradient checks, first and second order, for any function
//! built from tape operations, with respect to its inputs ([`GradCheck::check`]) or to
//! parameters in a [`ParamStore`] ([`GradCheck::check_params`]). Public so that every crate
//! checks its own ops, layers and models the same way.
//!
//! The function's output (any shape) is reduced to a scalar with fixed random weights,
//! `L = sum(f(x) * W)`, so one check covers the whole Jacobian through a random projection.
//! Second order checks the Hessian-vector product `d/dx <dL/dx, V>` recorded by
//! [`Tape::grad`] with `create_graph = true` against central differences of the
//! first-order gradient.
//!
//! ```
//! use flow_core::{gradcheck::GradCheck, Cpu, Tensor};
//! let cpu = Cpu::<f64>::new();
//! let x = Tensor::from_vec(&cpu, (2, 2), vec![0.1, -0.4, 0.7, 1.3])?;
//! GradCheck::default().check(&cpu, &[x.clone()], |v| v[0].tanh()?.exp())?;
//! GradCheck::default().check_second_order(&cpu, &[x], |v| v[0].tanh()?.exp())?;
//! # Ok::<(), flow_core::gradcheck::GradCheckError>(())
//! ```
//!
//! # Element types
//!
//! [`GradCheck<E>`] is generic over the element type `E` of the backend it checks, and its
//! [`Default`] picks tolerances that suit `E` (see [`GradCheck::f64`] and [`GradCheck::f32`]
//! for the numbers and why), so `GradCheck::default()` on a `Cpu<f32>` gets the f32 values
//! by inference. Each entry `x` is moved by `h = eps * max(1, |x|)`; the difference quotient
//! divides by the step actually taken once `x ± h` are rounded to `E`.
//!
//! # Errors of the checked function
//!
//! The function may fail with any error that converts into
//! `Box<dyn std::error::Error + Send + Sync>` (flow-core's [`Error`], a crate's own error
//! type such as `flow_layers::Error`, a `String`...), so `?` works inside it on the calls of
//! any crate. A [`flow_core::Error`](Error) comes back as [`GradCheckError::Op`], anything
//! else as [`GradCheckError::Function`]. Where a closure's body ends in `Ok(..)` rather than
//! in a call whose error type fixes it, name the error type once
//! (`Ok::<_, flow_layers::Error>(..)`), as for any closure using `?`.

use crate::autodiff::{Tape, Var};
use crate::backend::Backend;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::params::{ParamId, ParamStore};
use crate::random::rng;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Tolerances and the seed of the projection weights, for a backend of element type `E`.
///
/// An entry passes when `|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)`.
/// [`Default`] gives [`GradCheck::f64`]'s or [`GradCheck::f32`]'s values, by `E`.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck<E = f64> {
    /// Finite-difference step, relative to entries larger than 1 in magnitude: an entry `x`
    /// moves by `eps * max(1, |x|)` either way.
    pub eps: E,
    /// Relative tolerance (of the larger magnitude).
    pub rtol: E,
    /// Absolute tolerance.
    pub atol: E,
    /// Seed of the random projection weights (and of the second-order directions).
    pub seed: u64,
    /// Further steps (relative, as `eps`) tried for an entry whose central difference at
    /// `eps` disagrees; the entry passes when one of them agrees, and a failure reports the
    /// difference at `eps`. None by default. A wrong derivative disagrees at every step; a
    /// right one may disagree at one through truncation (`h^2 |f'''| / 6`: steep functions
    /// want small steps) or rounding (`u |L| / h`, amplified by ill-conditioned arithmetic:
    /// large steps), and one function may have entries of both kinds.
    pub fallback_steps: &'static [f64],
}

const SEED: u64 = 0x5eed;

impl GradCheck<f64> {
    /// The f64 defaults: step `1e-6`, `rtol = 1e-5`, `atol = 1e-7`.
    ///
    /// A central difference errs by about `h^2 |f'''| / 6` (truncation) plus
    /// `u |L| / h` (rounding, `u = 1.1e-16`); at `h = 1e-6` both are near `1e-12` relative
    /// for functions of curvature of order one, far inside `rtol`, which is thus free to
    /// be tight enough to catch a gradient wrong by one part in `10^4` wherever its
    /// magnitude exceeds about `1e-3`.
    pub fn f64() -> Self {
        GradCheck {
            eps: 1e-6,
            rtol: 1e-5,
            atol: 1e-7,
            seed: SEED,
            fallback_steps: &[],
        }
    }
}

impl GradCheck<f32> {
    /// The f32 defaults: step `3e-3` (times `max(1, |x|)`), `rtol = 2e-3`, `atol = 1e-3`.
    ///
    /// In f32 (`u = 6e-8`) a central difference errs by its truncation, `h^2 |f'''| / 6`,
    /// plus the rounding of the loss divided by the step, `u |L| / h` times the few ulps a
    /// loss of tens of operations carries; their sum is least near `h = u^(1/3) = 4e-3`,
    /// so `eps = 3e-3` (about `1e-2` for entries of magnitude 3, by the scaling). On the
    /// smooth built-in layers of flow-layers at random initialisations (planar, radial,
    /// ActNorm, LU-linear; losses of order 1 to 10) that step leaves relative errors below
    /// `3e-4` beyond an absolute `1e-3`; a step of `1e-2` left relative errors up to
    /// `1e-2` there (truncation, in planar), and one of `1e-3` absolute errors near `1e-3`
    /// (rounding).
    /// `rtol = 2e-3` keeps a margin over that, and still fails a gradient wrong by 1% (off
    /// by five times `rtol`) wherever its magnitude exceeds `atol / 0.008`, about `0.13`;
    /// `atol` absorbs the rounding noise of entries near zero. Functions with kinks, or
    /// that change on the scale of the step (splines with narrow bins, ReLU networks whose
    /// pre-activations pass near zero, a radial layer whose `alpha` is near 0 or a planar
    /// one whose `w` is: about 2% of random initialisations of those two in 3 dimensions),
    /// want f64.
    pub fn f32() -> Self {
        GradCheck {
            eps: 3e-3,
            rtol: 2e-3,
            atol: 1e-3,
            seed: SEED,
            fallback_steps: &[],
        }
    }
}

impl<E: Element> Default for GradCheck<E> {
    /// [`GradCheck::f32`]'s values for f32, [`GradCheck::f64`]'s for f64.
    fn default() -> Self {
        let c = if E::NAME == f32::NAME {
            let c = GradCheck::<f32>::f32();
            (c.eps as f64, c.rtol as f64, c.atol as f64)
        } else {
            let c = GradCheck::<f64>::f64();
            (c.eps, c.rtol, c.atol)
        };
        GradCheck {
            eps: E::of(c.0),
            rtol: E::of(c.1),
            atol: E::of(c.2),
            seed: SEED,
            fallback_steps: &[],
        }
    }
}

/// A failed check.
#[derive(Debug, thiserror::Error)]
pub enum GradCheckError {
    /// A flow-core operation failed (in the checked function or in the check itself).
    #[error(transparent)]
    Op(#[from] Error),
    /// The checked function failed with an error of another type.
    #[error("the checked function failed: {0}")]
    Function(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A derivative with respect to an input of [`GradCheck::check`] disagreed.
    #[error(
        "{order} gradient of input {input} at row {row}, column {col}: \
         analytic {analytic:e}, finite differences {numeric:e}"
    )]
    Mismatch {
        order: &'static str,
        input: usize,
        row: usize,
        col: usize,
        analytic: f64,
        numeric: f64,
    },
    /// A derivative with respect to a parameter of [`GradCheck::check_params`] disagreed.
    #[error(
        "{order} gradient of parameter `{name}` at row {row}, column {col}: \
         analytic {analytic:e}, finite differences {numeric:e}"
    )]
    ParamMismatch {
        order: &'static str,
        /// The parameter's name in its store.
        name: String,
        id: ParamId,
        row: usize,
        col: usize,
        analytic: f64,
        numeric: f64,
    },
}

impl GradCheckError {
    /// The error of a checked function, as a check's error: flow-core's errors (and a nested
    /// check's) as themselves, anything else as [`GradCheckError::Function`].
    pub fn from_function(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let e = match e.into().downcast::<Error>() {
            Ok(core) => return GradCheckError::Op(*core),
            Err(e) => e,
        };
        match e.downcast::<GradCheckError>() {
            Ok(check) => *check,
            Err(e) => GradCheckError::Function(e),
        }
    }
}

/// What a passing check compared.
#[derive(Clone, Copy, Debug, Default)]
pub struct GradCheckReport {
    /// Number of partial derivatives compared.
    pub checked: usize,
    pub max_abs_error: f64,
}

impl GradCheckReport {
    /// Both reports' comparisons as one.
    pub fn merge(self, other: GradCheckReport) -> GradCheckReport {
        GradCheckReport {
            checked: self.checked + other.checked,
            max_abs_error: self.max_abs_error.max(other.max_abs_error),
        }
    }
}

type CheckResult<T> = std::result::Result<T, GradCheckError>;

/// A function of input variables, its errors already converted.
type Func<'a, B> = dyn Fn(&[Var<B>]) -> CheckResult<Var<B>> + 'a;

/// A function of a tape and a store, its errors already converted.
type ParamFunc<'a, B> = dyn Fn(&Tape<B>, &ParamStore<B>) -> CheckResult<Var<B>> + 'a;

/// A tape, its input (or parameter) variables, and a scalar computed from them.
type Recorded<B> = (Tape<B>, Vec<Var<B>>, Var<B>);

/// What [`GradCheck::compare`] reports a mismatch of an entry with.
enum Slot {
    Input(usize),
    Param(ParamId, String),
}

impl<E: Element> GradCheck<E> {
    /// Checks the first derivatives of `f` with respect to `inputs`, at `inputs`.
    ///
    /// Parameters `f` binds with [`Tape::param`] are held fixed (see
    /// [`GradCheck::check_params`] for theirs).
    pub fn check<B, F, Err>(
        &self,
        backend: &B,
        inputs: &[Tensor<B>],
        f: F,
    ) -> Result<GradCheckReport, GradCheckError>
    where
        B: Backend<Elem = E>,
        F: Fn(&[Var<B>]) -> Result<Var<B>, Err>,
        Err: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let f = |v: &[Var<B>]| f(v).map_err(GradCheckError::from_function);
        let weights = self.input_weights(backend, inputs, &f)?;
        let analytic = gradient_values(projected_loss(backend, inputs, &f, &weights)?)?;
        let slots = input_slots(inputs);
        self.compare("first-order", &slots, &analytic, |i, moved| {
            let mut xs = inputs.to_vec();
            xs[i] = moved;
            Ok(projected_loss(backend, &xs, &f, &weights)?
                .2
                .scalar_value()?)
        })
    }

    /// Checks the second derivatives of `f` with respect to `inputs`, at `inputs` (as
    /// Hessian-vector products).
    pub fn check_second_order<B, F, Err>(
        &self,
        backend: &B,
        inputs: &[Tensor<B>],
        f: F,
    ) -> Result<GradCheckReport, GradCheckError>
    where
        B: Backend<Elem = E>,
        F: Fn(&[Var<B>]) -> Result<Var<B>, Err>,
        Err: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let f = |v: &[Var<B>]| f(v).map_err(GradCheckError::from_function);
        let weights = self.input_weights(backend, inputs, &f)?;
        let shapes: Vec<Shape> = inputs.iter().map(Tensor::shape).collect();
        let directions = self.directions(backend, &shapes)?;
        // <dL/dx, V>, with the gradient recorded (create_graph) when `record` is set.
        let directional = |x: &[Tensor<B>], record: bool| -> CheckResult<Recorded<B>> {
            let (tape, vars, loss) = projected_loss(backend, x, &f, &weights)?;
            let refs: Vec<&Var<B>> = vars.iter().collect();
            let grads = tape.grad(&loss, &refs, record)?;
            let total = inner_product(&tape, &grads, &directions)?;
            Ok((tape, vars, total))
        };
        let analytic = gradient_values(directional(inputs, true)?)?;
        let slots = input_slots(inputs);
        self.compare("second-order", &slots, &analytic, |i, moved| {
            let mut xs = inputs.to_vec();
            xs[i] = moved;
            Ok(directional(&xs, false)?.2.scalar_value()?)
        })
    }

    /// Checks the first derivatives of `f` with respect to the parameters `ids` of
    /// `params` (`params.ids().collect::<Vec<_>>()` for all of them): the gradients
    /// [`Tape::backward`] gives through [`crate::Gradients::param`] against central
    /// differences, moving one entry of one parameter at a time.
    ///
    /// `f` gets a fresh tape and the store, binds the parameters it uses with
    /// [`Tape::param`] and holds its inputs as constants. It may fail with any error type
    /// that boxes (see the [module documentation](self)), so `?` works on the calls of
    /// other crates (a layer's `forward`, say). The store is lent mutably only to move
    /// entries: each is restored to its exact value before the next, and before an error
    /// returns.
    ///
    /// ```
    /// use flow_core::{gradcheck::{GradCheck, GradCheckError}, Cpu, ParamStore, Tensor};
    ///
    /// let cpu = Cpu::<f64>::new();
    /// let mut params = ParamStore::new();
    /// let w = params.add("w", Tensor::from_vec(&cpu, (2, 3), vec![0.3, -0.2, 0.5, 0.1, 0.9, -0.7])?)?;
    /// let b = params.add("b", Tensor::from_vec(&cpu, (1, 3), vec![0.1, 0.0, -0.1])?)?;
    /// let x = Tensor::from_vec(&cpu, (4, 2), vec![1.0, -1.0, 0.5, 2.0, -0.3, 0.2, 1.5, 0.4])?;
    /// let layer = |tape: &flow_core::Tape<Cpu<f64>>, params: &ParamStore<Cpu<f64>>| {
    ///     let x = tape.constant(x.clone());
    ///     let h = x.matmul(&tape.param(params, w)?)?.add(&tape.param(params, b)?)?;
    ///     h.tanh()
    /// };
    /// let report = GradCheck::default().check_params(&cpu, &mut params, &[w, b], layer)?;
    /// assert_eq!(report.checked, 6 + 3);
    /// GradCheck::default().check_second_order_params(&cpu, &mut params, &[w, b], layer)?;
    ///
    /// // The same in f32, with the f32 tolerances `GradCheck::default()` infers.
    /// let cpu32 = Cpu::<f32>::new();
    /// let mut params32 = ParamStore::new();
    /// let v = params32.add("v", Tensor::from_vec(&cpu32, (1, 2), vec![0.4f32, -0.8])?)?;
    /// GradCheck::default().check_params(&cpu32, &mut params32, &[v], |tape, params| {
    ///     tape.param(params, v)?.sigmoid()?.square()
    /// })?;
    /// # Ok::<(), GradCheckError>(())
    /// ```
    pub fn check_params<B, F, Err>(
        &self,
        backend: &B,
        params: &mut ParamStore<B>,
        ids: &[ParamId],
        f: F,
    ) -> Result<GradCheckReport, GradCheckError>
    where
        B: Backend<Elem = E>,
        F: Fn(&Tape<B>, &ParamStore<B>) -> Result<Var<B>, Err>,
        Err: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let f = |t: &Tape<B>, p: &ParamStore<B>| f(t, p).map_err(GradCheckError::from_function);
        let weights = self.param_weights(backend, params, &f)?;
        let analytic = {
            let (tape, _, loss) = projected_param_loss(backend, params, ids, &f, &weights)?;
            param_gradient_values(&tape, &loss, params, ids)?
        };
        self.compare_params("first-order", params, ids, &analytic, |params| {
            Ok(projected_param_loss(backend, params, ids, &f, &weights)?
                .2
                .scalar_value()?)
        })
    }

    /// Checks the second derivatives of `f` with respect to the parameters `ids` of
    /// `params`, as Hessian-vector products: `d/dθ <dL/dθ, V>` with the first-order
    /// gradient recorded by [`Tape::grad`] (`create_graph`), against central differences
    /// of the first-order gradient. `f` is as in [`GradCheck::check_params`].
    pub fn check_second_order_params<B, F, Err>(
        &self,
        backend: &B,
        params: &mut ParamStore<B>,
        ids: &[ParamId],
        f: F,
    ) -> Result<GradCheckReport, GradCheckError>
    where
        B: Backend<Elem = E>,
        F: Fn(&Tape<B>, &ParamStore<B>) -> Result<Var<B>, Err>,
        Err: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let f = |t: &Tape<B>, p: &ParamStore<B>| f(t, p).map_err(GradCheckError::from_function);
        let weights = self.param_weights(backend, params, &f)?;
        let shapes = ids
            .iter()
            .map(|&id| Ok(params.get(id)?.shape()))
            .collect::<Result<Vec<Shape>>>()?;
        let directions = self.directions(backend, &shapes)?;
        let directional = |params: &ParamStore<B>, record: bool| -> CheckResult<_> {
            let (tape, vars, loss) = projected_param_loss(backend, params, ids, &f, &weights)?;
            let refs: Vec<&Var<B>> = vars.iter().collect();
            let grads = tape.grad(&loss, &refs, record)?;
            let total = inner_product(&tape, &grads, &directions)?;
            Ok((tape, total))
        };
        let analytic = {
            let (tape, total) = directional(params, true)?;
            param_gradient_values(&tape, &total, params, ids)?
        };
        self.compare_params("second-order", params, ids, &analytic, |params| {
            Ok(directional(params, false)?.1.scalar_value()?)
        })
    }

    /// Projection weights of the shape of `f`'s output at `inputs`.
    fn input_weights<B: Backend<Elem = E>>(
        &self,
        backend: &B,
        inputs: &[Tensor<B>],
        f: &Func<'_, B>,
    ) -> CheckResult<Tensor<B>> {
        let tape = Tape::new(backend);
        let vars: Vec<Var<B>> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
        let shape = f(&vars)?.shape();
        Ok(Tensor::randn(backend, shape, &mut rng(self.seed))?)
    }

    /// Projection weights of the shape of `f`'s output at `params`.
    fn param_weights<B: Backend<Elem = E>>(
        &self,
        backend: &B,
        params: &ParamStore<B>,
        f: &ParamFunc<'_, B>,
    ) -> CheckResult<Tensor<B>> {
        let shape = f(&Tape::new(backend), params)?.shape();
        Ok(Tensor::randn(backend, shape, &mut rng(self.seed))?)
    }

    /// Random directions `V` of the Hessian-vector products, one per shape.
    fn directions<B: Backend<Elem = E>>(
        &self,
        backend: &B,
        shapes: &[Shape],
    ) -> Result<Vec<Tensor<B>>> {
        let mut r = rng(self.seed ^ 0x2ee);
        shapes
            .iter()
            .map(|&s| Tensor::randn(backend, s, &mut r))
            .collect()
    }

    /// Central differences of `loss_at` for each entry of each parameter of `ids`, moved
    /// in `params` and restored, against `analytic`.
    fn compare_params<B: Backend<Elem = E>>(
        &self,
        order: &'static str,
        params: &mut ParamStore<B>,
        ids: &[ParamId],
        analytic: &[Vec<f64>],
        loss_at: impl Fn(&ParamStore<B>) -> CheckResult<E>,
    ) -> Result<GradCheckReport, GradCheckError> {
        let slots = ids
            .iter()
            .map(|&id| {
                let name = params.name(id)?.to_string();
                Ok((Slot::Param(id, name), params.get(id)?.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        self.compare(order, &slots, analytic, |i, moved| {
            let (Slot::Param(id, _), original) = &slots[i] else {
                unreachable!("parameter slots only")
            };
            params.set(*id, moved)?;
            let loss = loss_at(params);
            params.set(*id, original.clone())?;
            loss
        })
    }

    /// Central differences of `loss_at(i, moved)` (the loss with slot `i`'s value replaced
    /// by `moved`) for each entry of each slot, against `analytic` (slot by slot, entry by
    /// entry).
    fn compare<B: Backend<Elem = E>>(
        &self,
        order: &'static str,
        slots: &[(Slot, Tensor<B>)],
        analytic: &[Vec<f64>],
        mut loss_at: impl FnMut(usize, Tensor<B>) -> CheckResult<E>,
    ) -> Result<GradCheckReport, GradCheckError> {
        let (eps, rtol, atol) = (self.eps.as_f64(), self.rtol.as_f64(), self.atol.as_f64());
        let mut report = GradCheckReport::default();
        for (i, (slot, x)) in slots.iter().enumerate() {
            let base = x.to_vec()?;
            for k in 0..base.len() {
                let xk = base[k].as_f64();
                let a = analytic[i][k];
                // The central difference at relative step `eps`, and its error and bound.
                let mut difference = |eps: f64| -> CheckResult<(f64, f64, f64)> {
                    let h = eps * xk.abs().max(1.0);
                    let (up, down) = (E::of(xk + h), E::of(xk - h));
                    let mut at = |value: E| -> CheckResult<f64> {
                        let mut moved = base.clone();
                        moved[k] = value;
                        let moved = Tensor::from_vec(x.backend(), x.shape(), moved)?;
                        Ok(loss_at(i, moved)?.as_f64())
                    };
                    // The step actually taken, once rounded to E.
                    let step = up.as_f64() - down.as_f64();
                    let numeric = (at(up)? - at(down)?) / step;
                    let bound = atol + rtol * a.abs().max(numeric.abs());
                    Ok((numeric, (a - numeric).abs(), bound))
                };
                // The error of the first step that agrees, if one does.
                let agreed = |(_, err, bound): (f64, f64, f64)| (err <= bound).then_some(err);
                let (numeric, err, bound) = difference(eps)?;
                let mut passing = agreed((numeric, err, bound));
                for &step in self.fallback_steps {
                    if passing.is_some() {
                        break;
                    }
                    passing = agreed(difference(step)?);
                }
                let Some(err) = passing else {
                    let (row, col) = (k / x.cols().max(1), k % x.cols().max(1));
                    return Err(match slot {
                        Slot::Input(input) => GradCheckError::Mismatch {
                            order,
                            input: *input,
                            row,
                            col,
                            analytic: a,
                            numeric,
                        },
                        Slot::Param(id, name) => GradCheckError::ParamMismatch {
                            order,
                            name: name.clone(),
                            id: *id,
                            row,
                            col,
                            analytic: a,
                            numeric,
                        },
                    });
                };
                report.checked += 1;
                report.max_abs_error = report.max_abs_error.max(err);
            }
        }
        Ok(report)
    }
}

fn input_slots<B: Backend>(inputs: &[Tensor<B>]) -> Vec<(Slot, Tensor<B>)> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, x)| (Slot::Input(i), x.clone()))
        .collect()
}

/// `sum_i <g_i, v_i>` on `tape`.
fn inner_product<B: Backend>(
    tape: &Tape<B>,
    grads: &[Var<B>],
    directions: &[Tensor<B>],
) -> Result<Var<B>> {
    let mut total = tape.constant(Tensor::zeros(tape.backend(), Shape::SCALAR)?);
    for (g, v) in grads.iter().zip(directions) {
        total = total.add(&g.mul(&tape.constant(v.clone()))?.sum_all()?)?;
    }
    Ok(total)
}

/// The gradient of a recorded scalar with respect to each recorded input, as values.
fn gradient_values<B: Backend>((tape, vars, scalar): Recorded<B>) -> Result<Vec<Vec<f64>>> {
    let refs: Vec<&Var<B>> = vars.iter().collect();
    tape.grad(&scalar, &refs, false)?
        .iter()
        .map(|g| g.value().to_f64s())
        .collect::<Result<_>>()
}

/// The gradient of `scalar` with respect to each parameter of `ids` by [`Tape::backward`]
/// (zeros for one it does not depend on), as values.
fn param_gradient_values<B: Backend>(
    tape: &Tape<B>,
    scalar: &Var<B>,
    params: &ParamStore<B>,
    ids: &[ParamId],
) -> Result<Vec<Vec<f64>>> {
    let grads = tape.backward(scalar)?;
    ids.iter()
        .map(|&id| match grads.param(id) {
            Some(g) => g.to_f64s(),
            None => Ok(vec![0.0; params.get(id)?.shape().len()]),
        })
        .collect()
}

/// `sum(f(x) * W)` on a fresh tape whose inputs ask for gradients.
fn projected_loss<B: Backend>(
    backend: &B,
    inputs: &[Tensor<B>],
    f: &Func<'_, B>,
    weights: &Tensor<B>,
) -> CheckResult<Recorded<B>> {
    let tape = Tape::new(backend);
    let vars: Vec<Var<B>> = inputs.iter().map(|x| tape.input(x.clone())).collect();
    let out = f(&vars)?;
    let loss = out.mul(&tape.constant(weights.clone()))?.sum_all()?;
    Ok((tape, vars, loss))
}

/// `sum(f(θ) * W)` on a fresh tape, with the variables of the parameters `ids`: bound
/// before `f` runs (binding is idempotent, so `f` gets the same variables), so that a
/// parameter `f` does not use is a leaf older than the loss, with a zero gradient.
fn projected_param_loss<B: Backend>(
    backend: &B,
    params: &ParamStore<B>,
    ids: &[ParamId],
    f: &ParamFunc<'_, B>,
    weights: &Tensor<B>,
) -> CheckResult<Recorded<B>> {
    let tape = Tape::new(backend);
    let vars = ids
        .iter()
        .map(|&id| tape.param(params, id))
        .collect::<Result<Vec<_>>>()?;
    let out = f(&tape, params)?;
    let loss = out.mul(&tape.constant(weights.clone()))?.sum_all()?;
    Ok((tape, vars, loss))
}
