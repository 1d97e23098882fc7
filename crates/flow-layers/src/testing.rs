//! Property tests of invertibility for any [`Flow`], the crate's own layers and users' alike
//! (feature `testing`, which brings in proptest).
//!
//! [`check_flow`] holds one layer, at one batch, to four properties: `inverse(forward(z)) =
//! z`; the forward log-det equals minus the inverse log-det; the forward log-det equals
//! log|det J| of the autodiff Jacobian of `forward` (and the inverse's of `inverse`); and it
//! equals log|det J| of a central-difference Jacobian, which does not trust the layer's
//! gradients either. [`check_model`] does the same for a whole [`NormalizingFlow`].
//! [`cases`] generates the widths, batches and contexts to run them on, and
//! [`check_layer_kind`] builds a layer of any [`LayerKind`] with random parameters for a case
//! and checks it:
//!
//! ```
//! use flow_layers::testing::{cases, check_layer_kind, Tolerances};
//! use flow_layers::{AffineCouplingBlock, AffineCouplingConfig, ScaleMap};
//! use proptest::prelude::*;
//!
//! proptest!(ProptestConfig::with_cases(8), |(case in cases(2..=4, 1..=5, 0..=2))| {
//!     let config = AffineCouplingConfig { hidden: vec![8], leaky: 0.0, scale_map: ScaleMap::Exp };
//!     check_layer_kind::<AffineCouplingBlock>(&config, &case, &Tolerances::default())?;
//! });
//! ```
//!
//! The invertibility checks run on `Cpu<f64>` ([`TestBackend`]), where the tolerances can
//! be tight.
//!
//! [`check_layer_params`] checks a layer's gradients with respect to its parameters (the
//! ones training follows), forward and inverse, log-dets included, against central
//! differences with [`flow_core::gradcheck::GradCheck`]; [`check_layer_kind_params`] does it
//! for a layer of any [`LayerKind`] built with random parameters for a case:
//!
//! ```
//! use flow_core::gradcheck::GradCheck;
//! use flow_layers::testing::{cases, check_layer_kind_params};
//! use flow_layers::{Radial, NoConfig};
//! use proptest::prelude::*;
//!
//! proptest!(ProptestConfig::with_cases(4), |(case in cases(1..=3, 1..=3, 0..=0))| {
//!     check_layer_kind_params::<Radial>(&NoConfig {}, &case, &GradCheck::default())?;
//! });
//! ```
//!
//! The checker composes with layers directly too, on any backend: its function gets a
//! fresh tape and the parameter store, and `?` works on flow-layers calls inside it. Here,
//! the parameter gradients of a loss of an ActNorm layer's output and log-det, in f32 with
//! the f32 tolerances that `GradCheck::default()` picks for a `Cpu<f32>`:
//!
//! ```
//! use flow_core::{gradcheck::GradCheck, rng, Axis, Cpu, ParamStore, Tensor};
//! use flow_layers::{ActNorm, BuildContext, Flow, Init};
//!
//! let cpu = Cpu::<f32>::new();
//! let mut params = ParamStore::new();
//! let mut r = rng(0);
//! let layer = ActNorm::new(
//!     &mut BuildContext::new(&cpu, &mut params, "act", 2, &mut r).with_init(Init::Random),
//! )?;
//! let z = Tensor::randn(&cpu, (3, 2), &mut r)?;
//! let ids: Vec<_> = params.ids().collect();
//! GradCheck::default().check_params(&cpu, &mut params, &ids, |tape, params| {
//!     let (x, log_det) = layer.forward(params, &tape.constant(z.clone()), None)?;
//!     Ok::<_, flow_layers::Error>(x.square()?.sum(Axis::Cols)?.add(&log_det)?)
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::Error;
use crate::flow::Flow;
use crate::model::NormalizingFlow;
use crate::registry::{BuildContext, Init, LayerKind};
use flow_core::gradcheck::{GradCheck, GradCheckError, GradCheckReport};
use flow_core::{Axis, Backend, Cpu, Direction, ParamStore, Tape, Tensor, Var};
use proptest::prelude::*;
use std::ops::RangeInclusive;

/// The backend the checks run on.
pub type TestBackend = Cpu<f64>;

const CPU: TestBackend = Cpu::new();

/// How close each property must hold: `|got - expected| <= tol * (1 + |expected|)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// `inverse(forward(z))` against `z`.
    pub round_trip: f64,
    /// The forward log-det against minus the inverse log-det.
    pub log_det: f64,
    /// The log-dets against log|det J| of the autodiff Jacobians.
    pub jacobian: f64,
    /// The forward log-det against log|det J| of the central-difference Jacobian; `None`
    /// leaves that comparison out, for maps with kinks (a leaky ReLU), where a difference
    /// that straddles one measures neither side (the autodiff comparisons still run).
    pub finite_difference: Option<f64>,
    /// The step of the central differences.
    pub step: f64,
}

impl Default for Tolerances {
    /// Tight enough for smooth f64 layers with closed-form inverses: 1e-9, 1e-9, 1e-8 and
    /// 1e-6 (step 1e-6). Layers with iterative inverses may need a looser round trip, layers
    /// with kinks no finite-difference comparison.
    fn default() -> Self {
        Tolerances {
            round_trip: 1e-9,
            log_det: 1e-9,
            jacobian: 1e-8,
            finite_difference: Some(1e-6),
            step: 1e-6,
        }
    }
}

/// A property that did not hold, or a layer that failed to run. Converts into proptest's
/// `TestCaseError` (a failure), so `?` works inside `proptest!`.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{check}: entry {index} is {got}, expected {expected}")]
    Mismatch {
        check: &'static str,
        index: usize,
        got: f64,
        expected: f64,
    },
    #[error("{check}: {got} values, expected {expected}")]
    Length {
        check: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("the layer failed: {0}")]
    Layer(#[from] Error),
    /// A gradient that disagreed with central differences (naming the parameter or input
    /// and its entry), in the `direction` the layer ran.
    #[error("{direction}: {source}")]
    Gradient {
        direction: &'static str,
        source: GradCheckError,
    },
}

impl From<flow_core::Error> for CheckError {
    fn from(e: flow_core::Error) -> Self {
        CheckError::Layer(e.into())
    }
}

/// One generated case: a batch `z` of `rows x dim` values in `[-2.5, 2.5]`, a context of
/// `rows x context` values (`None` when `context` is 0) and a seed for parameters.
#[derive(Clone, Debug)]
pub struct Case {
    pub dim: usize,
    pub context: usize,
    pub z: Tensor<TestBackend>,
    pub c: Option<Tensor<TestBackend>>,
    pub seed: u64,
}

/// A strategy of `rows x dim` batches with entries in `[-2.5, 2.5]`.
pub fn batch(
    rows: RangeInclusive<usize>,
    dim: RangeInclusive<usize>,
) -> impl Strategy<Value = Tensor<TestBackend>> {
    (rows, dim).prop_flat_map(|(rows, d)| {
        prop::collection::vec(-2.5f64..2.5, rows * d)
            .prop_map(move |v| Tensor::from_vec(&CPU, (rows, d), v).expect("sizes agree"))
    })
}

/// A strategy of [`Case`]s: widths in `dims`, batch sizes in `rows`, context widths in
/// `contexts`, any seed.
pub fn cases(
    dims: RangeInclusive<usize>,
    rows: RangeInclusive<usize>,
    contexts: RangeInclusive<usize>,
) -> impl Strategy<Value = Case> {
    (dims, rows, contexts, any::<u64>()).prop_flat_map(|(dim, rows, context, seed)| {
        let z = prop::collection::vec(-2.5f64..2.5, rows * dim);
        let c = prop::collection::vec(-2.5f64..2.5, rows * context);
        (z, c).prop_map(move |(z, c)| Case {
            dim,
            context,
            z: Tensor::from_vec(&CPU, (rows, dim), z).expect("sizes agree"),
            c: (context > 0)
                .then(|| Tensor::from_vec(&CPU, (rows, context), c).expect("sizes agree")),
            seed,
        })
    })
}

/// Builds one layer for `case` (width, context width, seed) with [`Init::Random`], its
/// parameters in a store of its own under the prefix `layer`.
pub fn build_layer(
    case: &Case,
    make: impl FnOnce(&mut BuildContext<'_, TestBackend>) -> crate::Result<Box<dyn Flow<TestBackend>>>,
) -> crate::Result<(Box<dyn Flow<TestBackend>>, ParamStore<TestBackend>)> {
    let mut params = ParamStore::new();
    let mut rng = flow_core::rng(case.seed);
    let mut cx = BuildContext::new(&CPU, &mut params, "layer", case.dim, &mut rng)
        .with_context(case.context)
        .with_init(Init::Random);
    let layer = make(&mut cx)?;
    Ok((layer, params))
}

/// Builds a layer of kind `K` with `config` for `case` ([`build_layer`]) and runs
/// [`check_flow`] on it.
pub fn check_layer_kind<K: LayerKind>(
    config: &K::Config,
    case: &Case,
    tol: &Tolerances,
) -> Result<(), CheckError> {
    let (layer, params) = build_layer(case, |cx| K::build(config, cx))?;
    check_flow(layer.as_ref(), &params, &case.z, case.c.as_ref(), tol)
}

/// The four properties of one layer at `z` (`rows x dim`), given a context held fixed.
pub fn check_flow(
    layer: &dyn Flow<TestBackend>,
    params: &ParamStore<TestBackend>,
    z: &Tensor<TestBackend>,
    context: Option<&Tensor<TestBackend>>,
    tol: &Tolerances,
) -> Result<(), CheckError> {
    let ctx = |v: &Var<TestBackend>| context.map(|c| v.tape().constant(c.clone()));
    let tape = Tape::inference(&CPU);
    let zv = tape.constant(z.clone());
    let (x, fwd_ld) = layer.forward(params, &zv, ctx(&zv).as_ref())?;
    let (z_back, inv_ld) = layer.inverse(params, &x, ctx(&x).as_ref())?;
    let rows = z.rows();
    let (fwd_ld, inv_ld) = (fwd_ld.value().to_f64s()?, inv_ld.value().to_f64s()?);
    expect_len("forward log-det rows", fwd_ld.len(), rows)?;
    expect_len("inverse log-det rows", inv_ld.len(), rows)?;
    check_inverse_pair(z, &z_back.value(), &fwd_ld, &inv_ld, tol)?;
    let d = z.cols();
    // Each direction's log-det against its own autodiff Jacobian, at its own input.
    let x = x.value();
    for (check, direction, at, log_dets) in [
        (
            "forward log-det = log|det J| (autodiff)",
            Direction::Forward,
            z,
            &fwd_ld,
        ),
        (
            "inverse log-det = log|det J| (autodiff)",
            Direction::Inverse,
            &x,
            &inv_ld,
        ),
    ] {
        let map = |v: &Var<TestBackend>| -> crate::Result<Var<TestBackend>> {
            let c = ctx(v);
            Ok(match direction {
                Direction::Forward => layer.forward(params, v, c.as_ref())?.0,
                Direction::Inverse => layer.inverse(params, v, c.as_ref())?.0,
            })
        };
        let from_jac = log_abs_dets(jacobians(&map, at)?, d);
        assert_close(check, log_dets, &from_jac, tol.jacobian)?;
    }
    let forward_values = |t: &Tensor<TestBackend>| -> crate::Result<Tensor<TestBackend>> {
        let tape = Tape::inference(&CPU);
        let v = tape.constant(t.clone());
        Ok(layer.forward(params, &v, ctx(&v).as_ref())?.0.value())
    };
    check_finite_differences(&forward_values, z, &fwd_ld, tol)
}

/// The properties for a whole model at `z` (latent side) and a context: `inverse(forward(z))
/// = z`, forward log-det = -inverse log-det, and the forward log-det against log|det J| of
/// a central-difference Jacobian. Returns the forward log-dets, for further checks.
pub fn check_model(
    model: &NormalizingFlow<TestBackend>,
    z: &Tensor<TestBackend>,
    context: Option<&Tensor<TestBackend>>,
    tol: &Tolerances,
) -> Result<Vec<f64>, CheckError> {
    let (x, fwd_ld) = model.forward(z, context)?;
    let (z_back, inv_ld) = model.inverse(&x, context)?;
    let fwd_ld = fwd_ld.to_f64s()?;
    check_inverse_pair(z, &z_back, &fwd_ld, &inv_ld.to_f64s()?, tol)?;
    let forward = |t: &Tensor<TestBackend>| Ok(model.forward(t, context)?.0);
    check_finite_differences(&forward, z, &fwd_ld, tol)?;
    Ok(fwd_ld)
}

/// `inverse(forward(z)) = z` and forward log-det = -inverse log-det.
fn check_inverse_pair(
    z: &Tensor<TestBackend>,
    z_back: &Tensor<TestBackend>,
    fwd_ld: &[f64],
    inv_ld: &[f64],
    tol: &Tolerances,
) -> Result<(), CheckError> {
    assert_close(
        "inverse(forward(z)) = z",
        &z_back.to_f64s()?,
        &z.to_f64s()?,
        tol.round_trip,
    )?;
    let minus_inv: Vec<f64> = inv_ld.iter().map(|v| -v).collect();
    assert_close(
        "forward log-det = -inverse log-det",
        fwd_ld,
        &minus_inv,
        tol.log_det,
    )
}

/// The forward log-dets at `z` against log|det J| of a central-difference Jacobian of
/// `forward`, unless the tolerances leave that comparison out.
fn check_finite_differences(
    forward: &dyn Fn(&Tensor<TestBackend>) -> crate::Result<Tensor<TestBackend>>,
    z: &Tensor<TestBackend>,
    fwd_ld: &[f64],
    tol: &Tolerances,
) -> Result<(), CheckError> {
    let Some(fd_tol) = tol.finite_difference else {
        return Ok(());
    };
    let from_fd = log_abs_dets(jacobians_fd(forward, z, tol.step)?, z.cols());
    assert_close(
        "forward log-det = log|det J| (central differences)",
        fwd_ld,
        &from_fd,
        fd_tol,
    )
}

fn expect_len(check: &'static str, got: usize, expected: usize) -> Result<(), CheckError> {
    if got != expected {
        return Err(CheckError::Length {
            check,
            got,
            expected,
        });
    }
    Ok(())
}

/// `|got - expected| <= tol * (1 + |expected|)` entry by entry (NaN never passes).
pub fn assert_close(
    check: &'static str,
    got: &[f64],
    expected: &[f64],
    tol: f64,
) -> Result<(), CheckError> {
    expect_len(check, got.len(), expected.len())?;
    for (index, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let close = (g - e).abs() <= tol * (1.0 + e.abs()); // NaN is never close
        if !close {
            return Err(CheckError::Mismatch {
                check,
                index,
                got: g,
                expected: e,
            });
        }
    }
    Ok(())
}

/// log|det| of each square `n x n` matrix (row-major), by LU with partial pivoting.
pub fn log_abs_dets(matrices: Vec<Vec<f64>>, n: usize) -> Vec<f64> {
    matrices.into_iter().map(|m| log_abs_det(m, n)).collect()
}

/// log|det| of a square `n x n` matrix (row-major), by LU with partial pivoting.
pub fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut total = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
            .expect("a non-empty range");
        if p != c {
            for k in 0..n {
                a.swap(c * n + k, p * n + k);
            }
        }
        let pivot = a[c * n + c];
        total += pivot.abs().ln();
        for r in c + 1..n {
            let f = a[r * n + c] / pivot;
            for k in c..n {
                a[r * n + k] -= f * a[c * n + k];
            }
        }
    }
    total
}

/// Per-row Jacobians `dy/dz` (`d x d`, row-major: entry `(j, i)` is `dy_j/dz_i`) of a
/// row-wise map `f`, by one reverse pass per output column.
pub fn jacobians(
    f: &dyn Fn(&Var<TestBackend>) -> crate::Result<Var<TestBackend>>,
    z: &Tensor<TestBackend>,
) -> crate::Result<Vec<Vec<f64>>> {
    let (rows, d) = (z.rows(), z.cols());
    let tape = Tape::inference(&CPU);
    let zv = tape.input(z.clone());
    let y = f(&zv)?;
    let mut jac = vec![vec![0.0; d * d]; rows];
    for j in 0..d {
        let yj = y.slice_cols(j, 1)?.sum(Axis::All)?;
        let g = tape.grad(&yj, &[&zv], false)?.remove(0).value().to_f64s()?;
        for (r, jr) in jac.iter_mut().enumerate() {
            for i in 0..d {
                jr[j * d + i] = g[r * d + i];
            }
        }
    }
    Ok(jac)
}

/// Per-row Jacobians of a row-wise map `f` by central differences of step `eps`, in the
/// layout of [`jacobians`].
pub fn jacobians_fd(
    f: &dyn Fn(&Tensor<TestBackend>) -> crate::Result<Tensor<TestBackend>>,
    z: &Tensor<TestBackend>,
    eps: f64,
) -> crate::Result<Vec<Vec<f64>>> {
    let (rows, d) = (z.rows(), z.cols());
    let mut jac = vec![vec![0.0; d * d]; rows];
    for i in 0..d {
        let shifted = |delta: f64| -> crate::Result<Vec<f64>> {
            let mut v = z.to_f64s()?;
            for r in 0..rows {
                v[r * d + i] += delta;
            }
            Ok(f(&Tensor::from_f64s(&CPU, (rows, d), &v)?)?.to_f64s()?)
        };
        let (up, down) = (shifted(eps)?, shifted(-eps)?);
        for (r, jr) in jac.iter_mut().enumerate() {
            for j in 0..d {
                jr[j * d + i] = (up[r * d + j] - down[r * d + j]) / (2.0 * eps);
            }
        }
    }
    Ok(jac)
}

/// Checks the gradients of `layer` with respect to every parameter in `params`, at `z`
/// (`rows x dim`) given a context held fixed, against central differences with `checker`
/// ([`GradCheck::check_params`]): those of a random projection of `(x, log-det)` from
/// `forward(z)`, then of `(z, log-det)` from `inverse(x)` at that `x`. Errors name the
/// direction, the parameter and the entry. The store is lent mutably only to move entries
/// (each is restored exactly).
///
/// `checker` sets the step and tolerances: `GradCheck::default()` for f64 layers without
/// kinks, `GradCheck::<f32>::default()` ([`GradCheck::f32`]) for smooth f32 layers.
///
/// ```
/// use flow_core::{gradcheck::GradCheck, rng, Cpu, ParamStore, Tensor};
/// use flow_layers::testing::check_layer_params;
/// use flow_layers::{ActNorm, BuildContext, Init};
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let mut r = rng(3);
/// let layer = ActNorm::new(&mut BuildContext::new(&cpu, &mut params, "act", 3, &mut r).with_init(Init::Random))?;
/// let z = Tensor::randn(&cpu, (4, 3), &mut r)?;
/// let report = check_layer_params(&layer, &mut params, &z, None, &GradCheck::default())?;
/// assert_eq!(report.checked, 2 * (3 + 3)); // loc and log_scale, forward and inverse
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_layer_params<B: Backend>(
    layer: &dyn Flow<B>,
    params: &mut ParamStore<B>,
    z: &Tensor<B>,
    context: Option<&Tensor<B>>,
    checker: &GradCheck<B::Elem>,
) -> Result<GradCheckReport, CheckError> {
    let backend = z.backend();
    let ids: Vec<_> = params.trainable_ids().collect();
    let x = {
        let tape = Tape::new(backend);
        let c = context.map(|c| tape.constant(c.clone()));
        layer
            .forward(params, &tape.constant(z.clone()), c.as_ref())?
            .0
            .value()
    };
    let mut report = GradCheckReport::default();
    for (direction, at) in [(Direction::Forward, z), (Direction::Inverse, &x)] {
        let f = |tape: &Tape<B>, params: &ParamStore<B>| {
            let v = tape.constant(at.clone());
            let c = context.map(|c| tape.constant(c.clone()));
            let (y, log_det) = match direction {
                Direction::Forward => layer.forward(params, &v, c.as_ref())?,
                Direction::Inverse => layer.inverse(params, &v, c.as_ref())?,
            };
            Ok::<_, Error>(Var::concat_cols(&[&y, &log_det])?)
        };
        let name = match direction {
            Direction::Forward => "forward",
            Direction::Inverse => "inverse",
        };
        let checked = checker
            .check_params(backend, params, &ids, f)
            .map_err(|source| CheckError::Gradient {
                direction: name,
                source,
            })?;
        report = report.merge(checked);
    }
    Ok(report)
}

/// Builds a layer of kind `K` with `config` for `case` ([`build_layer`], random parameters)
/// and runs [`check_layer_params`] on it.
pub fn check_layer_kind_params<K: LayerKind>(
    config: &K::Config,
    case: &Case,
    checker: &GradCheck,
) -> Result<GradCheckReport, CheckError> {
    let (layer, mut params) = build_layer(case, |cx| K::build(config, cx))?;
    check_layer_params(
        layer.as_ref(),
        &mut params,
        &case.z,
        case.c.as_ref(),
        checker,
    )
}
