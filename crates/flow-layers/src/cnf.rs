//! Continuous normalizing flows (Chen et al. 2018): `dz/dt = f(z, t)` from `t = 0` (latent)
//! to `t = 1` (data), with the instantaneous change of variables
//! `d log|det| / dt = tr(df/dz)`, the trace exact (one vector-Jacobian product per feature)
//! or Hutchinson's estimate (FFJORD, Grathwohl et al. 2019), integrated by [`crate::ode`]'s
//! solvers with gradients through the solver.

use crate::draws::Draws;
use crate::error::{Error, Result};
use crate::flow::{check_width, with_context, Flow, LogDetKind};
use crate::logdet::Probe;
use crate::ode::{integrate, Solver};
use crate::registry::{BuildContext, LayerKind, LayerSpec};
use flow_core::{Backend, ParamId, ParamStore, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One CNF layer's configuration (stored as `"cnf"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnfLayerConfig {
    /// Hidden widths of the vector field's MLP, whose input is `[z, time, context]`.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// The nonlinearity between the MLP's layers (FFJORD: tanh; zuko: ELU; torchcfm: SELU).
    #[serde(default)]
    pub activation: FieldActivation,
    /// How time enters the MLP (`t` itself, or zuko's Fourier features).
    #[serde(default)]
    pub time: TimeInput,
    /// The solver (zuko's default: Dormand-Prince with rtol 1e-5, atol 1e-6).
    #[serde(default = "default_solver")]
    pub solver: Solver,
    /// How `tr(df/dz)` is computed in training.
    #[serde(default)]
    pub trace: Trace,
    /// Evaluation (parameters frozen) uses the exact trace up to this many features.
    #[serde(default = "default_exact_up_to")]
    pub exact_up_to: usize,
    /// Gradients by the adjoint method ([`crate::ode::integrate_adjoint`]: memory
    /// independent of the number of steps) instead of through the solver's operations.
    #[serde(default)]
    pub adjoint: bool,
    /// RNODE (Finlay et al. 2020), in training only: the weight `lambda_K` of the kinetic
    /// energy `integral ||f||^2 dt` of each sample's path ([`Cnf`] explains how it enters
    /// the loss). 0 (the default): no regularisation.
    #[serde(default)]
    pub kinetic_energy: f64,
    /// RNODE, in training only: the weight `lambda_J` of `integral ||df/dz||_F^2 dt`, the
    /// Jacobian's squared Frobenius norm (exact with the exact trace, `||v^T df/dz||^2` with
    /// Hutchinson's probe `v`). 0 (the default): no regularisation.
    #[serde(default)]
    pub jacobian_norm: f64,
}

/// The trace of the field's Jacobian. Serialised as `{"kind": "exact"}` or
/// `{"kind": "hutchinson", "probe": "rademacher"}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trace {
    /// One vector-Jacobian product per feature.
    #[default]
    Exact,
    /// FFJORD: `v^T (df/dz) v` with one probe `v` per sample, fixed for the whole solve
    /// (one product per evaluation, unbiased).
    Hutchinson {
        #[serde(default)]
        probe: Probe,
    },
}

/// The nonlinearity of a CNF's vector field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldActivation {
    /// FFJORD's choice.
    #[default]
    Tanh,
    /// `x` above zero, `exp(x) - 1` below (zuko's CNF).
    Elu,
    /// PyTorch's SELU, `scale * elu(x, alpha)` (torchcfm's MLP).
    Selu,
}

/// PyTorch's SELU constants.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;

impl FieldActivation {
    fn apply<B: Backend>(self, h: &Var<B>) -> flow_core::Result<Var<B>> {
        match self {
            FieldActivation::Tanh => h.tanh(),
            FieldActivation::Elu => h.elu(1.0),
            FieldActivation::Selu => h.elu(SELU_ALPHA)?.mul_scalar(SELU_SCALE),
        }
    }
}

/// How time enters a CNF's vector field. Serialised as `{"kind": "linear"}` or
/// `{"kind": "fourier", "frequencies": 3}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimeInput {
    /// One column holding `t` (FFJORD, torchcfm).
    #[default]
    Linear,
    /// `cos(k pi t)` for `k = 1..=frequencies`, then `sin(k pi t)` likewise (zuko's CNF).
    Fourier { frequencies: usize },
}

impl TimeInput {
    /// The number of input columns time takes.
    pub fn width(self) -> usize {
        match self {
            TimeInput::Linear => 1,
            TimeInput::Fourier { frequencies } => 2 * frequencies,
        }
    }

    /// The time columns of `rows` rows, row-major: `times` holds one time per row, or one
    /// for all.
    fn features(self, times: &[f64], rows: usize) -> Vec<f64> {
        let width = self.width();
        let mut out = Vec::with_capacity(rows * width);
        for r in 0..rows {
            let t = if times.len() == 1 { times[0] } else { times[r] };
            match self {
                TimeInput::Linear => out.push(t),
                TimeInput::Fourier { frequencies } => {
                    let angle = |k: usize| (k + 1) as f64 * std::f64::consts::PI * t;
                    out.extend((0..frequencies).map(|k| angle(k).cos()));
                    out.extend((0..frequencies).map(|k| angle(k).sin()));
                }
            }
        }
        out
    }
}

fn default_exact_up_to() -> usize {
    16
}

fn default_hidden() -> Vec<usize> {
    vec![64, 64, 64]
}

fn default_solver() -> Solver {
    Solver::Dopri5 {
        rtol: 1e-5,
        atol: 1e-6,
        max_steps: 10_000,
    }
}

impl Default for CnfLayerConfig {
    fn default() -> Self {
        CnfLayerConfig {
            hidden: default_hidden(),
            activation: FieldActivation::default(),
            time: TimeInput::default(),
            solver: default_solver(),
            trace: Trace::Exact,
            exact_up_to: default_exact_up_to(),
            adjoint: false,
            kinetic_energy: 0.0,
            jacobian_norm: 0.0,
        }
    }
}

/// A continuous normalizing flow: `x = z(1)` for `dz/dt = f(z, t, c)` from `z(0) = z`, with
/// `f` an MLP on `[z, time, c]` ([`FieldActivation`], [`TimeInput`]), and
/// `log|det dx/dz| = integral_0^1 tr(df/dz) dt` integrated beside the state with the exact
/// trace. `inverse` integrates from `t = 1` back to `t = 0`. Parameters
/// `{prefix}.net.{2k}.weight` / `.bias` as PyTorch's `nn.Linear` (the last layer at zero
/// with [`crate::Init::Identity`], so that the flow starts as the identity).
///
/// With RNODE's regularisation ([`CnfLayerConfig::kinetic_energy`],
/// [`CnfLayerConfig::jacobian_norm`]) the solve also integrates
/// `r = integral lambda_K ||f||^2 + lambda_J ||df/dz||_F^2 dt` along each sample's path, and
/// in training (parameters not frozen) the layer returns `log|det| - r` in either direction:
/// the log-density it gives is then lowered by `r`, so that `forward_kld` and `reverse_kld`
/// minimise the KL divergence plus `r`'s batch mean, as RNODE's objective. Evaluation
/// (frozen parameters: `log_prob` of tensors, validation and test NLLs) is unregularised.
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape, Tensor};
/// use flow_layers::{BuildContext, Cnf, CnfLayerConfig, Flow, Init};
/// use flow_layers::ode::Solver;
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let solver = Solver::Dopri5 { rtol: 1e-9, atol: 1e-9, max_steps: 10_000 };
/// let config = CnfLayerConfig { hidden: vec![8], solver, ..Default::default() };
/// let mut r = rng(0);
/// let layer = Cnf::new(&mut BuildContext::new(&cpu, &mut params, "cnf", 2, &mut r).with_init(Init::Random), config)?;
/// let tape = Tape::inference(&cpu);
/// let z = tape.constant(Tensor::randn(&cpu, (4, 2), &mut rng(1))?);
/// let (x, log_det) = layer.forward(&params, &z, None)?;
/// let (z_back, inverse_log_det) = layer.inverse(&params, &x, None)?;
/// assert!(z_back.value().max_abs_diff(&z.value())? < 1e-6);
/// assert!(log_det.value().max_abs_diff(&inverse_log_det.neg()?.value())? < 1e-6);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Debug)]
pub struct Cnf {
    dim: usize,
    context: usize,
    config: CnfLayerConfig,
    layers: Vec<(ParamId, ParamId)>,
    /// The seed and counter of Hutchinson's probes.
    draws: Draws,
    /// Field evaluations over all solves ([`Flow::field_evaluations`]).
    evaluations: Arc<AtomicU64>,
}

impl Cnf {
    pub fn new<B: Backend>(cx: &mut BuildContext<'_, B>, config: CnfLayerConfig) -> Result<Self> {
        let (dim, context) = (cx.dim, cx.context);
        if dim == 0 || config.hidden.contains(&0) || config.time.width() == 0 {
            return Err(Error::Config(format!(
                "a CNF needs at least 1 feature, positive hidden widths and a time input of \
                 at least one column, got {dim}, {:?} and {:?}",
                config.hidden, config.time
            )));
        }
        for (name, weight) in [
            ("kinetic_energy", config.kinetic_energy),
            ("jacobian_norm", config.jacobian_norm),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(Error::Config(format!(
                    "a CNF's RNODE weight {name} must be finite and at least 0, got {weight}"
                )));
            }
        }
        let mut sizes = vec![dim + config.time.width() + context];
        sizes.extend(&config.hidden);
        sizes.push(dim);
        // `{prefix}.net.{2k}.*`, as torchcfm's `MLP.net` and zuko's `ode` Sequential.
        let prefix = cx.prefix.clone();
        let zero_last = cx.init_zeros();
        let mut layers = Vec::new();
        for (k, w) in sizes.windows(2).enumerate() {
            let last = k + 2 == sizes.len();
            layers.push(crate::mlp::add_linear(
                cx,
                &prefix,
                k,
                (w[0], w[1]),
                zero_last && last,
            )?);
        }
        let draws = Draws::new(cx)?;
        Ok(Cnf {
            dim,
            context,
            config,
            layers,
            draws,
            evaluations: Arc::default(),
        })
    }

    pub fn config(&self) -> &CnfLayerConfig {
        &self.config
    }

    /// The layers' weights and biases bound on `tape`, in order.
    fn weights<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &flow_core::Tape<B>,
    ) -> Result<Vec<Var<B>>> {
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for &(w, b) in &self.layers {
            out.push(tape.param(params, w)?);
            out.push(tape.param(params, b)?);
        }
        Ok(out)
    }

    /// The vector field at `(z, t)` given the context, on `z`'s tape: `times` holds one
    /// time per row of `z`, or one for all rows.
    pub fn field<B: Backend>(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        times: &[f64],
        context: Option<&Var<B>>,
    ) -> Result<Var<B>> {
        self.net()
            .field(&self.weights(params, z.tape())?, z, times, context)
    }

    fn net(&self) -> Net {
        Net {
            dim: self.dim,
            context: self.context,
            activation: self.config.activation,
            time: self.config.time,
        }
    }

    /// The trace estimator a call on `v`'s tape uses: exact in evaluation up to
    /// `exact_up_to` features, else the configured one.
    fn uses_probe<B: Backend>(&self, v: &Var<B>) -> bool {
        let evaluation = v.tape().params_frozen();
        matches!(self.config.trace, Trace::Hutchinson { .. })
            && !(evaluation && self.dim <= self.config.exact_up_to)
    }

    /// This solve's Hutchinson probe (`rows x dim`, fixed for the whole solve), or `None`
    /// for the exact trace.
    fn probe<B: Backend>(&self, params: &ParamStore<B>, v: &Var<B>) -> Result<Option<Tensor<B>>> {
        let Trace::Hutchinson { probe } = self.config.trace else {
            return Ok(None);
        };
        if !self.uses_probe(v) {
            return Ok(None);
        }
        let mut rng = self.draws.stream(params, v.tape().params_frozen())?;
        Ok(Some(crate::logdet::probe_tensor(
            v.tape().backend(),
            v.shape(),
            probe,
            &mut rng,
        )?))
    }

    /// RNODE's weights when a solve on `tape` is regularised (training with a weight above 0).
    fn regularisation<B: Backend>(&self, tape: &flow_core::Tape<B>) -> Option<Regularisation> {
        let (kinetic, jacobian) = (self.config.kinetic_energy, self.config.jacobian_norm);
        (!tape.params_frozen() && (kinetic != 0.0 || jacobian != 0.0))
            .then_some(Regularisation { kinetic, jacobian })
    }

    /// Integrates `[v, 0]` (and RNODE's penalty from 0 when regularised) from `t0` to `t1`:
    /// the end state and the integrated trace, less the penalty. Without `log_det`, the
    /// state alone (no trace, no penalty) and no log-det.
    fn flow_between<B: Backend>(
        &self,
        params: &ParamStore<B>,
        v: &Var<B>,
        context: Option<&Var<B>>,
        (t0, t1): (f64, f64),
        log_det: bool,
    ) -> Result<(Var<B>, Option<Var<B>>)> {
        let regularisation = self.regularisation(v.tape()).filter(|_| log_det);
        let mut start = vec![v.clone()];
        if log_det {
            start.push(crate::flow::zero_log_det(v)?);
        }
        if regularisation.is_some() {
            start.push(crate::flow::zero_log_det(v)?);
        }
        let probe = match log_det {
            true => self.probe(params, v)?,
            false => None,
        };
        let net = self.net();
        let tape = v.tape();
        // The field with its inputs passed in: the weights, then the context when given (the
        // adjoint method differentiates in them; a values-only solve rebinds them per step).
        let mut inputs = self.weights(params, tape)?;
        inputs.extend(context.cloned());
        let has_context = context.is_some();
        let evaluations = self.evaluations.clone();
        let field: Arc<crate::ode::ParamField<B>> =
            Arc::new(move |t: f64, s: &[Var<B>], p: &[Var<B>]| {
                evaluations.fetch_add(1, Ordering::Relaxed);
                let (w, c) = match has_context {
                    true => (&p[..p.len() - 1], p.last()),
                    false => (p, None),
                };
                if !log_det {
                    return Ok(vec![net.field(w, &s[0], &[t], c)?]);
                }
                net.augmented(w, t, s, c, probe.as_ref(), regularisation)
            });
        let values_only = tape.params_frozen()
            && !v.requires_grad()
            && context.is_none_or(|c| !c.requires_grad());
        let (end, _) = if values_only {
            // Nothing to differentiate (an evaluation): each step on a fresh tape, so that
            // memory does not grow with the steps of a long solve.
            let values: Vec<Tensor<B>> = inputs.iter().map(|w| w.value()).collect();
            let (end, stats) = crate::ode::integrate_values(
                field.as_ref(),
                &start,
                &values,
                (t0, t1),
                &self.config.solver,
            )?;
            (
                end.iter().map(|e| tape.constant(e.value())).collect(),
                stats,
            )
        } else if self.config.adjoint && !tape.params_frozen() {
            crate::ode::integrate_adjoint(field, &start, &inputs, (t0, t1), &self.config.solver)?
        } else {
            let on_tape = |t: f64, s: &[Var<B>]| field(t, s, &inputs);
            integrate(&on_tape, &start, t0, t1, &self.config.solver)?
        };
        let mut end = end.into_iter();
        match (end.next(), end.next(), end.next()) {
            (Some(y), None, None) if !log_det => Ok((y, None)),
            (Some(y), Some(log_det), None) => Ok((y, Some(log_det))),
            // The penalty's integral runs with time, so backward in time it is negative.
            (Some(y), Some(log_det), Some(penalty)) => {
                let sign = if t1 >= t0 { -1.0 } else { 1.0 };
                Ok((y, Some(log_det.add(&penalty.mul_scalar(sign)?)?)))
            }
            _ => Err(Error::Config("the CNF's solve lost its state".into())),
        }
    }
}

/// A solve's end state and log-det, which a solve asked for one returns.
fn with_log_det<B: Backend>((y, log_det): (Var<B>, Option<Var<B>>)) -> Result<(Var<B>, Var<B>)> {
    let log_det =
        log_det.ok_or_else(|| Error::Config("the CNF's solve lost its log-det".into()))?;
    Ok((y, log_det))
}

/// RNODE's weights, for a regularised solve.
#[derive(Clone, Copy, Debug)]
struct Regularisation {
    kinetic: f64,
    jacobian: f64,
}

/// The shape of a CNF's vector field, its weights passed in (so that the adjoint method can
/// hold it without the layer).
#[derive(Clone, Copy, Debug)]
struct Net {
    dim: usize,
    context: usize,
    activation: FieldActivation,
    time: TimeInput,
}

impl Net {
    /// The MLP on `[z, time, c]` with `weights` `[w0, b0, w1, b1, ...]`, at one time per
    /// row or one for all.
    fn field<B: Backend>(
        &self,
        weights: &[Var<B>],
        z: &Var<B>,
        times: &[f64],
        context: Option<&Var<B>>,
    ) -> Result<Var<B>> {
        let tape = z.tape();
        let rows = z.shape().rows;
        if times.len() != 1 && times.len() != rows {
            return Err(Error::Config(format!(
                "a CNF's field at {rows} rows needs 1 time or {rows}, got {}",
                times.len()
            )));
        }
        let time = tape.constant(if times.len() == 1 {
            // One time for every row (an ODE solver's evaluation): each feature column is
            // filled on the backend, nothing is uploaded.
            let runs: Vec<(usize, f64)> = self
                .time
                .features(times, 1)
                .into_iter()
                .map(|f| (1, f))
                .collect();
            crate::flow::constant_columns(tape.backend(), rows, &runs)?
        } else {
            Tensor::from_f64s(
                tape.backend(),
                (rows, self.time.width()),
                &self.time.features(times, rows),
            )?
        });
        let zt = Var::concat_cols(&[z, &time])?;
        let mut h = with_context("Cnf", &zt, context, self.context)?;
        let layers = weights.len() / 2;
        for (k, wb) in weights.chunks_exact(2).enumerate() {
            h = h.linear(&wb[0], &wb[1])?;
            if k + 1 < layers {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }

    /// `[dz/dt, tr(df/dz)]` at `t` for the state `[z, log-det]`: the exact trace, or
    /// Hutchinson's with `probe`; regularised, also RNODE's penalty rate
    /// `lambda_K ||f||^2 + lambda_J ||df/dz||_F^2` (the norm estimated with the same
    /// products as the trace).
    fn augmented<B: Backend>(
        &self,
        weights: &[Var<B>],
        t: f64,
        state: &[Var<B>],
        context: Option<&Var<B>>,
        probe: Option<&Tensor<B>>,
        regularisation: Option<Regularisation>,
    ) -> Result<Vec<Var<B>>> {
        let z = &state[0];
        let tape = z.tape();
        // The trace differentiates in z: on a differentiable copy when z is not.
        let zi = if z.requires_grad() {
            z.clone()
        } else {
            tape.input(z.value())
        };
        let f = self.field(weights, &zi, &[t], context)?;
        let record = !tape.params_frozen() || z.requires_grad();
        let (rows, d) = (zi.shape().rows, self.dim);
        let mut trace: Option<Var<B>> = None;
        // `sum ||v^T df/dz||^2` over the products taken (RNODE's Jacobian norm).
        let mut frobenius: Option<Var<B>> = None;
        let wants_norm = regularisation.is_some_and(|r| r.jacobian != 0.0);
        let mut add_norm = |product: &Var<B>| -> Result<()> {
            if wants_norm {
                let squares = product.square()?.sum(flow_core::Axis::Cols)?;
                frobenius = Some(match frobenius.take() {
                    None => squares,
                    Some(acc) => acc.add(&squares)?,
                });
            }
            Ok(())
        };
        if let Some(v) = probe {
            let v = tape.constant(v.clone());
            let vj = tape.vjp(&f, &v, &[&zi], record)?.remove(0);
            add_norm(&vj)?;
            trace = Some(vj.mul(&v)?.sum(flow_core::Axis::Cols)?);
        }
        for j in (0..d).filter(|_| probe.is_none()) {
            let e = crate::logdet::unit_cotangent(tape, (rows, d).into(), j)?;
            let row = tape.vjp(&f, &e, &[&zi], record)?.remove(0);
            add_norm(&row)?;
            let diag = row.slice_cols(j, 1)?;
            trace = Some(match trace {
                None => diag,
                Some(acc) => acc.add(&diag)?,
            });
        }
        let trace = trace.ok_or_else(|| Error::Config("a CNF of 0 features".into()))?;
        let mut out = vec![f, trace];
        if let Some(r) = regularisation {
            // Only the terms with a weight: a regularised solve has at least one.
            let kinetic = match r.kinetic {
                0.0 => None,
                weight => Some(
                    out[0]
                        .square()?
                        .sum(flow_core::Axis::Cols)?
                        .mul_scalar(weight)?,
                ),
            };
            let jacobian = frobenius.map(|n| n.mul_scalar(r.jacobian)).transpose()?;
            let rate = match (kinetic, jacobian) {
                (Some(k), Some(j)) => k.add(&j)?,
                (Some(term), None) | (None, Some(term)) => term,
                (None, None) => unreachable!("a regularised solve has a weight above 0"),
            };
            out.push(rate);
        }
        if !record {
            // Nothing downstream differentiates (parameters frozen, a constant state): hand
            // on constants, so that the solve records no gradient work.
            return Ok(out.iter().map(|v| tape.constant(v.value())).collect());
        }
        Ok(out)
    }
}

impl<B: Backend> Flow<B> for Cnf {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.context
    }

    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Cnf forward", self.dim, z)?;
        with_log_det(self.flow_between(params, z, context, (0.0, 1.0), true)?)
    }

    fn forward_map(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<Var<B>> {
        check_width("Cnf forward", self.dim, z)?;
        Ok(self.flow_between(params, z, context, (0.0, 1.0), false)?.0)
    }

    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Cnf inverse", self.dim, x)?;
        // Backward in time the integrated trace is minus log|det dx/dz|: log|det dz/dx|.
        with_log_det(self.flow_between(params, x, context, (1.0, 0.0), true)?)
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&self.config)
    }

    fn after_step(&self, params: &mut ParamStore<B>) -> Result<()> {
        self.draws.commit(params)
    }

    fn velocity(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        times: &[f64],
        context: Option<&Var<B>>,
    ) -> Result<Option<Var<B>>> {
        check_width("Cnf velocity", self.dim, x)?;
        self.field(params, x, times, context).map(Some)
    }

    fn field_evaluations(&self) -> Option<u64> {
        Some(self.evaluations.load(Ordering::Relaxed))
    }

    fn evaluation_log_det(&self) -> LogDetKind {
        match self.config.trace {
            Trace::Hutchinson { probe } if self.dim > self.config.exact_up_to => {
                LogDetKind::Stochastic(format!(
                    "Hutchinson trace ({probe:?} probes fixed per solve), integrated by {:?}",
                    self.config.solver
                ))
            }
            _ => LogDetKind::Exact,
        }
    }
}

impl LayerKind for Cnf {
    const NAME: &'static str = "cnf";
    type Config = CnfLayerConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(Self::new(cx, config.clone())?))
    }

    /// The MLP's weights and biases, `[dim + time columns + context, hidden..., dim]`, and
    /// the 3 draw counters.
    fn num_scalars(config: &Self::Config, dim: usize, context: usize) -> Option<usize> {
        let mut sizes = vec![dim.checked_add(config.time.width())?.checked_add(context)?];
        sizes.extend(&config.hidden);
        sizes.push(dim);
        sizes.windows(2).try_fold(3usize, |acc, w| {
            acc.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?)
        })
    }
}

/// A model of `transforms` CNF layers over a fixed standard normal (zuko's `CNF` is one
/// layer over a standard normal, with 3 hidden layers of 64).
///
/// ```
/// use flow_core::{rng, Cpu};
/// use flow_layers::ode::Solver;
/// use flow_layers::{CnfConfig, CnfLayerConfig, NormalizingFlow};
///
/// let layer = CnfLayerConfig { hidden: vec![8], solver: Solver::Rk4 { steps: 10 }, ..Default::default() };
/// let spec = CnfConfig { dim: 2, transforms: 1, layer }.spec()?;
/// let model = NormalizingFlow::new_random(&Cpu::<f64>::new(), spec, 0)?;
/// let (x, log_q) = model.sample(5, None, &mut rng(1))?;
/// assert!(model.log_prob(&x, None)?.max_abs_diff(&log_q)? < 1e-3); // RK4's error, both ways
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CnfConfig {
    pub dim: usize,
    pub transforms: usize,
    pub layer: CnfLayerConfig,
}

impl Default for CnfConfig {
    fn default() -> Self {
        CnfConfig {
            dim: 2,
            transforms: 1,
            layer: CnfLayerConfig::default(),
        }
    }
}

impl CnfConfig {
    pub fn spec(&self) -> Result<crate::spec::FlowSpec> {
        if self.dim == 0 {
            return Err(Error::Config("a CNF needs at least 1 feature".into()));
        }
        Ok(crate::spec::FlowSpec {
            dim: self.dim,
            context: 0,
            base: crate::spec::BaseSpec::StandardNormal,
            layers: vec![LayerSpec::of::<Cnf>(&self.layer); self.transforms],
        })
    }
}

/// `spec` with every CNF layer integrated by `solver` (the layers' parameters unchanged), and
/// the number of CNF layers changed: with [`crate::NormalizingFlow::with_spec`], how
/// `flows eval --solver` overrides a checkpoint's stored solver.
///
/// ```
/// use flow_core::Cpu;
/// use flow_layers::cnf::{with_solver, CnfConfig};
/// use flow_layers::ode::Solver;
/// use flow_layers::{NormalizingFlow, Registry};
///
/// let model = NormalizingFlow::new(&Cpu::<f64>::new(), CnfConfig::default().spec()?, 0)?;
/// let (spec, changed) = with_solver(model.spec(), Solver::Rk4 { steps: 50 })?;
/// let model = model.with_spec(&Registry::builtin(), spec)?;
/// assert_eq!(changed, 1);
/// # Ok::<(), flow_layers::Error>(())
/// ```
pub fn with_solver(
    spec: &crate::spec::FlowSpec,
    solver: Solver,
) -> Result<(crate::spec::FlowSpec, usize)> {
    let mut spec = spec.clone();
    let mut changed = 0;
    for layer in &mut spec.layers {
        if layer.kind() == Cnf::NAME {
            let mut config = layer.config::<Cnf>()?;
            config.solver = solver;
            *layer = LayerSpec::of::<Cnf>(&config);
            changed += 1;
        }
    }
    Ok((spec, changed))
}
