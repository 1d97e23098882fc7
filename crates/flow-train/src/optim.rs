//! Optimizers over a [`ParamStore`] (Adam, AdamW, SGD with momentum), learning-rate
//! schedules, and gradient clipping, each with PyTorch's semantics (held to
//! `torch.optim` by `tests/optim.rs`).
//!
//! # Non-finite gradients
//!
//! Unlike PyTorch's, these optimizers refuse a gradient holding a NaN or an infinity:
//! [`Optimizer::step`] then returns [`Error::NonFiniteGradient`], naming the parameter and
//! the entry, and changes nothing: every gradient is checked before any parameter is updated,
//! so the parameters, the moments and the step count stay as they were (the next good step is
//! the one a run that never saw the bad one would take). The check is one reduction per
//! gradient on the backend and a single scalar read back per step; the gradients themselves
//! are read back only to name the culprit. The training loop ([`crate::train::train_on`]) skips and
//! counts such a step, as one whose loss is not finite. An optimizer of one's own can call
//! [`check_gradients`] first to follow the same policy.
//!
//! ```
//! use flow_core::{Cpu, ParamStore, Tape, Tensor};
//! use flow_train::optim::{Adam, Optimizer};
//! use flow_train::Error;
//!
//! let cpu = Cpu::<f64>::new();
//! let mut params = ParamStore::new();
//! let w = params.add("w", Tensor::from_vec(&cpu, (1, 2), vec![1.0, 2.0])?)?;
//! let tape = Tape::new(&cpu);
//! let c = tape.constant(Tensor::from_vec(&cpu, (1, 2), vec![0.5, f64::INFINITY])?);
//! let loss = tape.param(&params, w)?.mul(&c)?.sum_all()?;  // d loss / d w = c
//! let grads = tape.backward(&loss)?;
//! drop((loss, tape));
//! let mut adam = Adam::new(1e-3, 0.0);
//! let err = adam.step(&mut params, &grads).unwrap_err();
//! assert!(matches!(&err, Error::NonFiniteGradient { param, row: 0, col: 1, .. } if param == "w"));
//! assert_eq!(params.get(w)?.to_vec()?, vec![1.0, 2.0]); // untouched
//! assert_eq!(adam.steps(), 0);
//! # Ok::<(), flow_train::Error>(())
//! ```

use crate::error::{Error, Result};
use flow_core::{
    AdamStep, Axis, Backend, Element, Gradients, ParamId, ParamStore, Tensor, UnaryOp,
};

/// One update rule over every parameter that has a gradient.
pub trait Optimizer<B: Backend>: std::fmt::Debug {
    /// One update with the current learning rate. The built-in optimizers refuse a
    /// non-finite gradient ([`Error::NonFiniteGradient`]), changing nothing (see the
    /// [module's documentation](self)); an implementation of one's own should do the same,
    /// with [`check_gradients`].
    fn step(&mut self, params: &mut ParamStore<B>, grads: &Gradients<B>) -> Result<()>;
    fn lr(&self) -> f64;
    /// Sets the learning rate for the following steps (schedules call this).
    fn set_lr(&mut self, lr: f64);
    /// Everything a resumed run needs to continue bit for bit: the update count and the
    /// buffers, named after the parameters with PyTorch's state names (`exp_avg.<param>`).
    fn state(&self, params: &ParamStore<B>) -> Result<OptimizerState<B>>;
    /// Restores [`Optimizer::state`]; a buffer whose parameter is unknown or whose shape
    /// differs is an error naming it.
    fn load_state(&mut self, params: &ParamStore<B>, state: OptimizerState<B>) -> Result<()>;
}

/// An optimizer's state: its update count and its buffers by name.
#[derive(Clone, Debug)]
pub struct OptimizerState<B: Backend> {
    pub steps: u64,
    pub buffers: std::collections::BTreeMap<String, Tensor<B>>,
}

/// Collects `slots[i]` (one per parameter) as buffers named `<kind>.<parameter name>`.
fn export_buffers<B: Backend>(
    params: &ParamStore<B>,
    slots: &[Option<Tensor<B>>],
    kind: &str,
    into: &mut std::collections::BTreeMap<String, Tensor<B>>,
) -> Result<()> {
    for (id, name, _) in params.iter() {
        if let Some(Some(t)) = slots.get(id.index()) {
            into.insert(format!("{kind}.{name}"), t.clone());
        }
    }
    Ok(())
}

/// Takes the buffers named `<kind>.<parameter name>` out of `buffers`, one slot per parameter.
fn import_buffers<B: Backend>(
    params: &ParamStore<B>,
    buffers: &mut std::collections::BTreeMap<String, Tensor<B>>,
    kind: &str,
) -> Result<Vec<Option<Tensor<B>>>> {
    let mut slots = Vec::new();
    grow(&mut slots, params.len());
    for (id, name, value) in params.iter() {
        if let Some(t) = buffers.remove(&format!("{kind}.{name}")) {
            if t.shape() != value.shape() {
                return Err(Error::Config(format!(
                    "optimizer buffer `{kind}.{name}` has shape {}, the parameter {}",
                    t.shape(),
                    value.shape()
                )));
            }
            slots[id.index()] = Some(t);
        }
    }
    Ok(slots)
}

fn no_leftovers<B: Backend>(
    buffers: &std::collections::BTreeMap<String, Tensor<B>>,
    optimizer: &str,
) -> Result<()> {
    match buffers.keys().next() {
        Some(name) => Err(Error::Config(format!(
            "optimizer state holds `{name}`, which is not a buffer of {optimizer} for this model"
        ))),
        None => Ok(()),
    }
}

/// Adam with PyTorch's semantics (`torch.optim.Adam`): L2 weight decay is added to the
/// gradient, bias corrections as in the paper, parameters without a gradient are skipped.
/// [`Adam::adamw`] decouples the weight decay instead (`torch.optim.AdamW`).
#[derive(Debug)]
pub struct Adam<B: Backend> {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: shrink the parameters by `1 - lr * weight_decay` before the update instead of
    /// adding the decay to the gradient.
    pub decoupled: bool,
    step: u64,
    moments: Vec<Option<(Tensor<B>, Tensor<B>)>>,
}

impl<B: Backend> Adam<B> {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: false,
            step: 0,
            moments: Vec::new(),
        }
    }

    /// AdamW (`torch.optim.AdamW`; its default weight decay is 1e-2).
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        Adam {
            decoupled: true,
            ..Adam::new(lr, weight_decay)
        }
    }

    /// Number of updates taken.
    pub fn steps(&self) -> u64 {
        self.step
    }
}

impl<B: Backend> Optimizer<B> for Adam<B> {
    fn step(&mut self, params: &mut ParamStore<B>, grads: &Gradients<B>) -> Result<()> {
        // Before any change: a refused step leaves the parameters and the state alone.
        check_gradients(params, grads)?;
        self.step += 1;
        let t = self.step as i32;
        let e = |x: f64| <B::Elem as Element>::of(x);
        let h = AdamStep {
            lr: e(self.lr),
            beta1: e(self.beta1),
            beta2: e(self.beta2),
            eps: e(self.eps),
            weight_decay: e(if self.decoupled {
                0.0
            } else {
                self.weight_decay
            }),
            bias_correction1: e(1.0 - self.beta1.powi(t)),
            bias_correction2: e(1.0 - self.beta2.powi(t)),
        };
        let shrink = (self.decoupled && self.weight_decay != 0.0)
            .then(|| UnaryOp::MulScalar(e(1.0 - self.lr * self.weight_decay)));
        grow(&mut self.moments, params.len());
        for id in ids(params) {
            let Some(grad) = grads.param(id) else {
                continue;
            };
            let param = params.get(id)?;
            let (mut m, mut v) = match self.moments[id.index()].take() {
                Some(mv) => mv,
                None => (zeros_like(param)?, zeros_like(param)?),
            };
            // In place unless a tape still holds the parameter (then it is copied first).
            params.update(id, |p| {
                if let Some(shrink) = shrink {
                    *p = p.unary(shrink)?;
                }
                p.adam_update(grad, &mut m, &mut v, &h)
            })?;
            self.moments[id.index()] = Some((m, v));
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn state(&self, params: &ParamStore<B>) -> Result<OptimizerState<B>> {
        let mut buffers = std::collections::BTreeMap::new();
        let (m, v): (Vec<_>, Vec<_>) = self
            .moments
            .iter()
            .map(|mv| match mv {
                Some((m, v)) => (Some(m.clone()), Some(v.clone())),
                None => (None, None),
            })
            .unzip();
        export_buffers(params, &m, "exp_avg", &mut buffers)?;
        export_buffers(params, &v, "exp_avg_sq", &mut buffers)?;
        Ok(OptimizerState {
            steps: self.step,
            buffers,
        })
    }

    fn load_state(&mut self, params: &ParamStore<B>, state: OptimizerState<B>) -> Result<()> {
        let mut buffers = state.buffers;
        let m = import_buffers(params, &mut buffers, "exp_avg")?;
        let v = import_buffers(params, &mut buffers, "exp_avg_sq")?;
        no_leftovers(&buffers, "Adam")?;
        self.moments = m
            .into_iter()
            .zip(v)
            .map(|mv| match mv {
                (Some(m), Some(v)) => Ok(Some((m, v))),
                (None, None) => Ok(None),
                _ => Err(Error::Config(
                    "optimizer state has `exp_avg` without `exp_avg_sq` (or the reverse)".into(),
                )),
            })
            .collect::<Result<_>>()?;
        self.step = state.steps;
        Ok(())
    }
}

/// Stochastic gradient descent with momentum (`torch.optim.SGD`, dampening 0): `g = grad +
/// weight_decay * p`; `buf = g` on the first step, then `momentum * buf + g`; `p -= lr *
/// buf`, or `lr * (g + momentum * buf)` with Nesterov momentum.
#[derive(Debug)]
pub struct Sgd<B: Backend> {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    steps: u64,
    buffers: Vec<Option<Tensor<B>>>,
}

impl<B: Backend> Sgd<B> {
    pub fn new(lr: f64, momentum: f64, weight_decay: f64, nesterov: bool) -> Result<Self> {
        if nesterov && momentum <= 0.0 {
            return Err(Error::Config(
                "Nesterov momentum needs a positive momentum".into(),
            ));
        }
        Ok(Sgd {
            lr,
            momentum,
            weight_decay,
            nesterov,
            steps: 0,
            buffers: Vec::new(),
        })
    }
}

impl<B: Backend> Optimizer<B> for Sgd<B> {
    fn step(&mut self, params: &mut ParamStore<B>, grads: &Gradients<B>) -> Result<()> {
        // Before any change: a refused step leaves the parameters and the state alone.
        check_gradients(params, grads)?;
        let e = |x: f64| <B::Elem as Element>::of(x);
        self.steps += 1;
        grow(&mut self.buffers, params.len());
        for id in ids(params) {
            let Some(grad) = grads.param(id) else {
                continue;
            };
            let param = params.get(id)?;
            let mut g = grad.clone();
            if self.weight_decay != 0.0 {
                g = g.add(&param.unary(UnaryOp::MulScalar(e(self.weight_decay)))?)?;
            }
            if self.momentum != 0.0 {
                let buf = match self.buffers[id.index()].take() {
                    None => g.clone(),
                    Some(b) => b.unary(UnaryOp::MulScalar(e(self.momentum)))?.add(&g)?,
                };
                g = if self.nesterov {
                    g.add(&buf.unary(UnaryOp::MulScalar(e(self.momentum)))?)?
                } else {
                    buf.clone()
                };
                self.buffers[id.index()] = Some(buf);
            }
            let update = g.unary(UnaryOp::MulScalar(e(self.lr)))?;
            params.update(id, |p| {
                *p = p.sub(&update)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn state(&self, params: &ParamStore<B>) -> Result<OptimizerState<B>> {
        let mut buffers = std::collections::BTreeMap::new();
        export_buffers(params, &self.buffers, "momentum_buffer", &mut buffers)?;
        Ok(OptimizerState {
            steps: self.steps,
            buffers,
        })
    }

    fn load_state(&mut self, params: &ParamStore<B>, state: OptimizerState<B>) -> Result<()> {
        let mut buffers = state.buffers;
        self.buffers = import_buffers(params, &mut buffers, "momentum_buffer")?;
        no_leftovers(&buffers, "SGD")?;
        self.steps = state.steps;
        Ok(())
    }
}

/// Which optimizer a training run uses.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum OptimizerKind {
    /// Adam, weight decay added to the gradient (normflows' examples).
    #[default]
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
}

impl OptimizerKind {
    /// A fresh optimizer of this kind.
    pub fn build<B: Backend>(self, lr: f64, weight_decay: f64) -> Result<Box<dyn Optimizer<B>>> {
        Ok(match self {
            OptimizerKind::Adam => Box::new(Adam::new(lr, weight_decay)),
            OptimizerKind::AdamW => Box::new(Adam::adamw(lr, weight_decay)),
            OptimizerKind::Sgd { momentum, nesterov } => {
                Box::new(Sgd::new(lr, momentum, weight_decay, nesterov)?)
            }
        })
    }
}

/// A learning-rate schedule: an optional linear warm-up (PyTorch's `LinearLR` from
/// `warmup_start_factor` to 1 over `warmup_steps`), then a decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub warmup_steps: usize,
    pub warmup_start_factor: f64,
    pub decay: Decay,
}

/// What follows the warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    Constant,
    /// `CosineAnnealingLR`: `min_lr + (base - min_lr) (1 + cos(pi t / steps)) / 2`, `t`
    /// counted from the end of the warm-up (periodic past `steps`, as PyTorch's).
    Cosine {
        steps: usize,
        min_lr: f64,
    },
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule {
            warmup_steps: 0,
            warmup_start_factor: 1.0,
            decay: Decay::Constant,
        }
    }
}

impl LrSchedule {
    /// The learning rate of update `step` (0-based) for base rate `base`.
    pub fn lr(&self, base: f64, step: usize) -> f64 {
        if step < self.warmup_steps {
            let f = self.warmup_start_factor;
            return base * (f + (1.0 - f) * step as f64 / self.warmup_steps as f64);
        }
        let t = (step - self.warmup_steps) as f64;
        match self.decay {
            Decay::Constant => base,
            Decay::Cosine { steps, min_lr } => {
                let phase = std::f64::consts::PI * t / steps.max(1) as f64;
                min_lr + (base - min_lr) * (1.0 + phase.cos()) / 2.0
            }
        }
    }
}

/// Scales every parameter gradient so that their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`: by `max_norm / (norm + 1e-6)` when that is below 1).
/// Returns the norm before clipping.
pub fn clip_grad_norm<B: Backend>(grads: &mut Gradients<B>, max_norm: f64) -> Result<f64> {
    if max_norm.is_nan() || max_norm <= 0.0 {
        return Err(Error::Config(format!(
            "the gradient-norm bound must be positive, got {max_norm}"
        )));
    }
    // Summed on the backend; only the total leaves it. In the parameters' order (the
    // gradients' own is a hash map's, which differs from run to run and would change the
    // rounding of the total, so that a run with clipping would not repeat bit for bit).
    let mut in_order: Vec<_> = grads.params().collect();
    in_order.sort_by_key(|(id, _)| id.index());
    let mut squares: Option<Tensor<B>> = None;
    for (_, g) in in_order {
        let s = g.unary(UnaryOp::Square)?.sum(Axis::All)?;
        squares = Some(match squares {
            None => s,
            Some(acc) => acc.add(&s)?,
        });
    }
    let total = match squares {
        Some(s) => s.to_f64s()?[0].sqrt(),
        None => 0.0,
    };
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        grads.scale_params(<B::Elem as Element>::of(coef))?;
    }
    Ok(total)
}

/// `Err(`[`Error::NonFiniteGradient`]`)` when the gradient of a parameter of `params` holds a
/// NaN or an infinity, naming the first such parameter (in the store's order) and its first
/// such entry; what every built-in [`Optimizer::step`] checks before it changes anything.
///
/// Each gradient is probed on its backend ([`Tensor::finite_probe`]: a sum on a device, a
/// vectorised pass on the CPU) and the probes added there into one scalar, the only value
/// read back when all is well: a probe that is not finite means a NaN or an infinity somewhere
/// (or, on a device, finite values whose sum overflows), and only then are the gradients read
/// back one by one to find it.
pub fn check_gradients<B: Backend>(params: &ParamStore<B>, grads: &Gradients<B>) -> Result<()> {
    let mut total: Option<Tensor<B>> = None;
    for id in params.ids() {
        if let Some(g) = grads.param(id) {
            let probe = g.finite_probe()?;
            total = Some(match total {
                None => probe,
                Some(t) => t.add(&probe)?,
            });
        }
    }
    let Some(total) = total else {
        return Ok(());
    };
    if total.scalar_value()?.as_f64().is_finite() {
        return Ok(());
    }
    for (id, name, _) in params.iter() {
        let Some(g) = grads.param(id) else {
            continue;
        };
        match g.check_finite(name) {
            Ok(()) => {}
            Err(flow_core::Error::NonFinite {
                row, col, value, ..
            }) => {
                return Err(Error::NonFiniteGradient {
                    param: name.to_string(),
                    row,
                    col,
                    value,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Finite values whose sum overflowed.
    Ok(())
}

fn ids<B: Backend>(params: &ParamStore<B>) -> Vec<ParamId> {
    params.ids().collect()
}

fn grow<T>(state: &mut Vec<Option<T>>, len: usize) {
    if state.len() < len {
        state.resize_with(len, || None);
    }
}

fn zeros_like<B: Backend>(t: &Tensor<B>) -> Result<Tensor<B>> {
    Ok(Tensor::zeros(t.backend(), t.shape())?)
}
