//! Residual flows: invertible ResNets (Behrmann et al. 2019) and Residual Flows (Chen et
//! al. 2019), with normflows' orientation and defaults.
//!
//! A block maps data to latent explicitly, `z = x + g(x)`, with `g` a [`LipschitzMlp`] of
//! Lipschitz constant below 1, so that the block is invertible (Banach). Densities and the
//! forward-KL training loss run that explicit map (normflows' `Residual` does the same: its
//! `inverse` is `iResBlock.forward`); sampling solves `x + g(x) = z` by fixed-point
//! iteration. The log-determinant `log det(I + J_g)` has no closed form: see
//! [`crate::logdet`] for the estimators.

use crate::draws::Draws;
use crate::error::{Error, Result};
use crate::flow::{check_width, with_context, Flow, LogDetKind};
use crate::lipschitz_mlp::LipschitzMlp;
use crate::logdet::{residual_log_det, LogDetEstimator, Neumann, Probe};
use crate::registry::{BuildContext, LayerKind, LayerSpec};
use crate::spec::{BaseSpec, FlowSpec};
use flow_core::{Backend, Element, FlowRng, ParamId, ParamStore, Tape, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The exact terms of the roulette estimator used in evaluation above the exact dimension
/// (normflows evaluates with 20 terms always included).
pub const EVALUATION_EXACT_TERMS: usize = 20;

/// One residual block's configuration (stored as `"residual"`). Absent fields take
/// normflows' example's values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResidualLayerConfig {
    /// Hidden widths of `g` (normflows' example: `[128, 128]`).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// The Lipschitz bound of each linear layer of `g` (normflows' `lipschitz_const`, 0.9 in
    /// the example; must be below 1 for the block to be invertible).
    #[serde(default = "default_lipschitz")]
    pub lipschitz: f64,
    /// The log-determinant estimator in training.
    #[serde(default)]
    pub log_det: LogDetEstimator,
    /// Hutchinson's probes.
    #[serde(default)]
    pub probe: Probe,
    /// The Neumann-series gradient (normflows' `reduce_memory`, on in the example).
    #[serde(default = "yes")]
    pub neumann_gradient: bool,
    /// The memory-saving backward (normflows' `reduce_memory`, with the Neumann gradient):
    /// the log-det's gradients are computed during the forward pass on a scratch tape whose
    /// graph is then dropped, and the training tape keeps only them. It costs a second
    /// evaluation of `g`, and the backward pass then needs the loss to weight every row's
    /// log-det equally (as `forward_kld`'s mean does): otherwise it returns an error.
    #[serde(default)]
    pub memory_saving: bool,
    /// Power iterations per linear layer after each optimizer step (normflows'
    /// `update_lipschitz(model, 50)`).
    #[serde(default = "default_power_iterations")]
    pub power_iterations: usize,
    /// Evaluation (parameters frozen) computes the exact log-determinant up to this many
    /// features, and a roulette estimate with [`EVALUATION_EXACT_TERMS`] exact terms above.
    #[serde(default = "default_exact_up_to")]
    pub exact_up_to: usize,
    /// The fixed-point inverse stops when `max |x + g(x) - z| <= tol (1 + max |z|)` (`tol`
    /// raised to 64 machine epsilons of the element type).
    #[serde(default = "default_inverse_tolerance")]
    pub inverse_tolerance: f64,
    /// The fixed-point inverse's iteration cap (normflows: 1,000).
    #[serde(default = "default_inverse_iterations")]
    pub inverse_max_iterations: usize,
}

fn default_hidden() -> Vec<usize> {
    vec![128, 128]
}
fn default_lipschitz() -> f64 {
    0.9
}
fn yes() -> bool {
    true
}
fn default_power_iterations() -> usize {
    50
}
fn default_exact_up_to() -> usize {
    16
}
fn default_inverse_tolerance() -> f64 {
    1e-6
}
fn default_inverse_iterations() -> usize {
    1000
}

impl Default for ResidualLayerConfig {
    fn default() -> Self {
        ResidualLayerConfig {
            hidden: default_hidden(),
            lipschitz: default_lipschitz(),
            log_det: LogDetEstimator::default(),
            probe: Probe::default(),
            neumann_gradient: true,
            memory_saving: false,
            power_iterations: default_power_iterations(),
            exact_up_to: default_exact_up_to(),
            inverse_tolerance: default_inverse_tolerance(),
            inverse_max_iterations: default_inverse_iterations(),
        }
    }
}

impl ResidualLayerConfig {
    fn check(&self) -> Result<()> {
        if !(self.lipschitz > 0.0 && self.lipschitz < 1.0) {
            return Err(Error::Config(format!(
                "a residual block's Lipschitz bound must be in (0, 1) for the block to be \
                 invertible, got {}",
                self.lipschitz
            )));
        }
        if self.hidden.contains(&0) {
            return Err(Error::Config(format!(
                "a residual block's hidden widths must be positive, got {:?}",
                self.hidden
            )));
        }
        // Negated so that a NaN tolerance is refused too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(self.inverse_tolerance > 0.0) {
            return Err(Error::Config(format!(
                "the fixed-point inverse's tolerance must be positive, got {}",
                self.inverse_tolerance
            )));
        }
        self.log_det.check()
    }
}

/// A residual block `z = x + g(x)` (data to latent) with `g` a [`LipschitzMlp`] of sizes
/// `[dim + context, hidden..., dim]`, as normflows' `Residual(LipschitzMLP(...))`.
///
/// - **Densities** (`inverse`, what `log_prob` and `forward_kld` run): the explicit map and
///   `log det(I + J_g(x))`. With the parameters frozen (an evaluation on a
///   [`Tape::inference`] tape, as `log_prob` of tensors runs) it is exact up to
///   [`ResidualLayerConfig::exact_up_to`] features; otherwise, as in training, the
///   configured estimator gives an unbiased (roulette) or truncated (series) estimate whose
///   gradient is the Neumann-series estimator when enabled.
/// - **Sampling** (`forward`): `x` solving `x + g(x) = z` by fixed-point iteration
///   `x <- z - g(x)` to the tolerance, or [`Error::NotInvertible`] naming the residual
///   reached; its log-det is minus the log-det at the solution. Gradients through the solve
///   (in `z`, the context and the parameters) are those of the implicit function,
///   `dx = (I + J)^-1 (dz - dg)`, solved by the same iteration in the backward pass; second
///   derivatives through the solve are not exact.
/// - **After each optimizer step** ([`Flow::after_step`]): the power iterations of every
///   weight, and the commit of the random draws, kept with the seed in the buffer
///   `{prefix}.draws` (`1 x 3`) so that a resumed run draws the same probes.
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape, Tensor};
/// use flow_layers::{BuildContext, Flow, Residual, ResidualLayerConfig};
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let config = ResidualLayerConfig { hidden: vec![16], ..Default::default() };
/// let mut r = rng(0);
/// let layer = Residual::new(
///     &mut BuildContext::new(&cpu, &mut params, "flows.0", 2, &mut r).with_init(flow_layers::Init::Random),
///     config,
/// )?;
/// let tape = Tape::inference(&cpu); // evaluation: the exact 2-D log-det
/// let x = tape.constant(Tensor::randn(&cpu, (5, 2), &mut rng(1))?);
/// let (z, log_det) = layer.inverse(&params, &x, None)?;
/// let (x_back, forward_log_det) = layer.forward(&params, &z, None)?; // fixed point
/// assert!(x_back.value().max_abs_diff(&x.value())? < 1e-5);
/// assert!(log_det.value().max_abs_diff(&forward_log_det.neg()?.value())? < 1e-5);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Debug)]
pub struct Residual {
    dim: usize,
    context: usize,
    config: ResidualLayerConfig,
    net: LipschitzMlp,
    /// The seed and counter of the estimator's draws.
    draws: Draws,
}

impl Residual {
    /// A residual block over `cx.dim` features reading `cx.context` context features, its
    /// parameters under `cx.prefix` as normflows names them
    /// (`{prefix}.iresblock.nnet.net.{k}...`). With [`crate::Init::Identity`] the last
    /// linear layer starts 1000 times smaller (normflows' `init_zeros`).
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        config: ResidualLayerConfig,
    ) -> Result<Self> {
        config.check()?;
        let (dim, context) = (cx.dim, cx.context);
        if dim == 0 {
            return Err(Error::Config(
                "a residual block needs at least 1 feature".into(),
            ));
        }
        let mut sizes = vec![dim + context];
        sizes.extend(&config.hidden);
        sizes.push(dim);
        let zero_init = cx.init_zeros();
        let net = LipschitzMlp::new(cx, "iresblock.nnet", &sizes, config.lipschitz, zero_init)?;
        let draws = Draws::new(cx)?;
        Ok(Residual {
            dim,
            context,
            config,
            net,
            draws,
        })
    }

    pub fn config(&self) -> &ResidualLayerConfig {
        &self.config
    }

    /// The residual branch `g`.
    pub fn net(&self) -> &LipschitzMlp {
        &self.net
    }

    /// The buffer of the seed and the committed draw count.
    pub fn draws_buffer(&self) -> ParamId {
        self.draws.buffer()
    }

    /// The estimator an evaluation (parameters frozen) uses.
    pub fn evaluation_estimator(&self) -> LogDetEstimator {
        if self.dim <= self.config.exact_up_to {
            return LogDetEstimator::Exact;
        }
        match self.config.log_det {
            LogDetEstimator::Roulette {
                exact_terms,
                distribution,
            } => LogDetEstimator::Roulette {
                exact_terms: exact_terms.max(EVALUATION_EXACT_TERMS),
                distribution,
            },
            LogDetEstimator::Exact => LogDetEstimator::Exact,
            series => series,
        }
    }

    /// `g` on `x` (and the context) on `x`'s tape.
    fn g<B: Backend>(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<Var<B>> {
        let input = with_context("Residual", x, context, self.context)?;
        self.net.forward(params, &input)
    }

    /// `log det(I + J_g(x))` and `x + g(x)`, on `x`'s tape.
    fn explicit<B: Backend>(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let tape = x.tape();
        let evaluation = tape.params_frozen();
        // The estimators differentiate in x: work on a differentiable copy when x is not.
        let xi = if x.requires_grad() {
            x.clone()
        } else {
            tape.input(x.value())
        };
        let gx = self.g(params, &xi, context)?;
        let (estimator, differentiable) = if evaluation {
            (self.evaluation_estimator(), x.requires_grad())
        } else {
            (self.config.log_det, true)
        };
        let mut rng = self.draws.stream(params, evaluation)?;
        if !evaluation && self.config.memory_saving {
            let log_det = self.log_det_in_forward(params, &xi, context, &mut rng)?;
            return Ok((xi.add(&gx)?, log_det));
        }
        let neumann = if self.config.neumann_gradient {
            Neumann::On
        } else {
            Neumann::Off
        };
        let log_det = residual_log_det(
            &xi,
            &gx,
            &estimator,
            self.config.probe,
            neumann,
            differentiable,
            &mut rng,
        )?;
        if evaluation && !x.requires_grad() {
            // Nothing downstream differentiates: hand on constants.
            let z = x.add(&tape.constant(gx.value()))?;
            return Ok((z, tape.constant(log_det.value())));
        }
        Ok((xi.add(&gx)?, log_det))
    }

    /// The memory-saving log-det: the Neumann estimate and its gradients in `x`, the context
    /// and the parameters, computed now on a scratch tape (whose graph is then dropped), and
    /// recorded on `x`'s tape as one op holding just those gradients.
    fn log_det_in_forward<B: Backend>(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
        rng: &mut FlowRng,
    ) -> Result<Var<B>> {
        let tape = x.tape();
        let scratch = Tape::new(tape.backend());
        let xs = scratch.input(x.value());
        let cs = context.map(|c| {
            if c.requires_grad() {
                scratch.input(c.value())
            } else {
                scratch.constant(c.value())
            }
        });
        let gs = self.g(params, &xs, cs.as_ref())?;
        let estimate = residual_log_det(
            &xs,
            &gs,
            &self.config.log_det,
            self.config.probe,
            Neumann::On,
            true,
            rng,
        )?;
        let grads = scratch.backward(&estimate.sum_all()?)?;
        let zeros_like = |v: &Var<B>| Tensor::zeros(tape.backend(), v.shape());
        let mut inputs = vec![x.clone()];
        let mut gradients = vec![grads.get(&xs).cloned().map_or_else(|| zeros_like(x), Ok)?];
        if let (Some(c), Some(cs)) = (context, cs.as_ref()) {
            if c.requires_grad() {
                inputs.push(c.clone());
                gradients.push(grads.get(cs).cloned().map_or_else(|| zeros_like(c), Ok)?);
            }
        }
        for id in self.net.param_ids() {
            let p = tape.param(params, id)?;
            gradients.push(match grads.param(id) {
                Some(g) => g.clone(),
                None => zeros_like(&p)?,
            });
            inputs.push(p);
        }
        let op = PrecomputedLogDet {
            value: estimate.value(),
            gradients,
        };
        let refs: Vec<&Var<B>> = inputs.iter().collect();
        Ok(Var::custom(Arc::new(op), &refs)?)
    }

    /// The fixed-point tolerance for the element type: the configured one, at least 64
    /// machine epsilons.
    fn tolerance<B: Backend>(&self) -> f64 {
        self.config
            .inverse_tolerance
            .max(64.0 * <B::Elem as Element>::EPSILON)
    }

    /// The fixed point `x` of `x = z - g(x)`, iterated on values.
    fn solve<B: Backend>(
        &self,
        params: &ParamStore<B>,
        z: &Tensor<B>,
        context: Option<&Tensor<B>>,
    ) -> Result<Tensor<B>> {
        let backend = z.backend().clone();
        let tol = self.tolerance::<B>();
        let scale = 1.0 + max_abs(z)?;
        // |x_k - x_{k+1}| is x_k's residual |x_k + g(x_k) - z|.
        let iterate = |x: &Tensor<B>| {
            let tape = Tape::inference(&backend);
            let c = context.map(|c| tape.constant(c.clone()));
            let gx = self
                .g(params, &tape.constant(x.clone()), c.as_ref())?
                .value();
            Ok(z.sub(&gx)?)
        };
        let max_iterations = self.config.inverse_max_iterations;
        fixed_point(z.clone(), tol * scale, max_iterations, iterate)?.map_err(|residual| {
            Error::NotInvertible {
                layer: "Residual",
                reason: format!(
                    "the fixed-point inverse reached max |x + g(x) - z| = {residual:.3e} after \
                     {max_iterations} iterations (tolerance {tol:.1e} x (1 + max |z|) = {:.3e})",
                    tol * scale
                ),
            }
        })
    }
}

/// The largest absolute entry of `t` (0 when empty).
fn max_abs<B: Backend>(t: &Tensor<B>) -> Result<f64> {
    Ok(t.to_f64s()?.iter().fold(0.0f64, |m, v| m.max(v.abs())))
}

/// Banach iteration `x <- step(x)` from `start` until two iterates differ by at most
/// `bound` (largest absolute difference): `Ok(x)`, or `Err(last difference)` after
/// `max_iterations`, or as soon as the difference is not finite.
fn fixed_point<B: Backend>(
    start: Tensor<B>,
    bound: f64,
    max_iterations: usize,
    mut step: impl FnMut(&Tensor<B>) -> Result<Tensor<B>>,
) -> Result<std::result::Result<Tensor<B>, f64>> {
    let mut x = start;
    let mut change = f64::INFINITY;
    for _ in 0..max_iterations {
        let next = step(&x)?;
        change = next.max_abs_diff(&x)?;
        x = next;
        if change <= bound {
            return Ok(Ok(x));
        }
        if !change.is_finite() {
            break;
        }
    }
    Ok(Err(change))
}

/// The backward pass of the fixed-point inverse: zero in value, and `(I + J_g(x*))^-T` on
/// the gradient, solved by the fixed-point iteration `y <- grad - J^T y` (a contraction, as
/// the forward's) with vector-Jacobian products of `g` at the solution `x*`. Its own
/// gradient is not recorded: second derivatives through the solve are not exact.
struct ImplicitInverse<B: Backend> {
    net: LipschitzMlp,
    context: usize,
    /// The parameters as the forward pass used them.
    params: ParamStore<B>,
    at: Tensor<B>,
    given: Option<Tensor<B>>,
    tolerance: f64,
    max_iterations: usize,
}

impl<B: Backend> ImplicitInverse<B> {
    /// `(I + J)^-T grad` at the solution.
    fn solve(&self, grad: &Tensor<B>) -> Result<Tensor<B>> {
        let tape = Tape::inference(grad.backend());
        let x = tape.input(self.at.clone());
        let c = self.given.as_ref().map(|c| tape.constant(c.clone()));
        let input = with_context("Residual", &x, c.as_ref(), self.context)?;
        let gx = self.net.forward(&self.params, &input)?;
        let scale = 1.0 + max_abs(grad)?;
        let iterate = |y: &Tensor<B>| {
            let jt_y = tape.vjp(&gx, &tape.constant(y.clone()), &[&x], false)?;
            Ok(grad.sub(&jt_y[0].value())?)
        };
        let bound = self.tolerance * scale;
        fixed_point(grad.clone(), bound, self.max_iterations, iterate)?.map_err(|change| {
            Error::NotInvertible {
                layer: "Residual",
                reason: format!(
                    "the gradient of the fixed-point inverse did not converge: last change \
                     {change:.3e} after {} iterations",
                    self.max_iterations
                ),
            }
        })
    }
}

impl<B: Backend> flow_core::CustomOp<B> for ImplicitInverse<B> {
    fn name(&self) -> &str {
        "residual fixed-point inverse"
    }

    fn forward(&self, inputs: &[&Tensor<B>]) -> flow_core::Result<Tensor<B>> {
        Tensor::zeros(inputs[0].backend(), inputs[0].shape())
    }

    fn backward(
        &self,
        _inputs: &[&Var<B>],
        _output: &Var<B>,
        grad: &Var<B>,
    ) -> flow_core::Result<Vec<Option<Var<B>>>> {
        let y = self
            .solve(&grad.value())
            .map_err(|e| e.in_op("residual fixed-point inverse"))?;
        Ok(vec![Some(grad.tape().constant(y))])
    }
}

/// A log-det whose gradients were computed in the forward pass (the memory-saving
/// backward): its inputs are `x`, the context when it is differentiated, and the branch's
/// parameters; `gradients` holds the gradient of the sum of the rows' log-dets in each.
struct PrecomputedLogDet<B: Backend> {
    value: Tensor<B>,
    gradients: Vec<Tensor<B>>,
}

impl<B: Backend> flow_core::CustomOp<B> for PrecomputedLogDet<B> {
    fn name(&self) -> &str {
        "residual log-det (memory-saving)"
    }

    fn forward(&self, _inputs: &[&Tensor<B>]) -> flow_core::Result<Tensor<B>> {
        Ok(self.value.clone())
    }

    fn backward(
        &self,
        inputs: &[&Var<B>],
        _output: &Var<B>,
        grad: &Var<B>,
    ) -> flow_core::Result<Vec<Option<Var<B>>>> {
        // Per-row gradients in x and the context scale row by row; the parameters' were
        // summed over the rows in the forward pass, so they need one weight for all rows.
        let g = grad.value().to_f64s()?;
        let first = g.first().copied().unwrap_or(0.0);
        let spread = g.iter().fold(0.0f64, |m, v| m.max((v - first).abs()));
        if spread > 1e-6 * first.abs().max(f64::MIN_POSITIVE) {
            return Err(flow_core::Error::InvalidArgument {
                op: "residual log-det (memory-saving)",
                message: format!(
                    "the loss weights the rows' log-dets unequally (from {first} by up to \
                     {spread}); the memory-saving backward needs equal weights, as \
                     forward_kld's mean gives: turn memory_saving off for this loss"
                ),
            });
        }
        // Every row weighs the same: each stored gradient (of the sum over rows) scales by
        // that weight.
        let tape = grad.tape();
        self.gradients
            .iter()
            .zip(inputs)
            .map(|(stored, _)| Ok(Some(tape.constant(stored.clone()).mul_scalar(first)?)))
            .collect()
    }
}

impl<B: Backend> Flow<B> for Residual {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.context
    }

    /// Latent to data: the fixed-point solve (see [`Residual`]).
    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Residual forward", self.dim, z)?;
        let tape = z.tape();
        let c = context.map(|c| c.value());
        let solution = self.solve(params, &z.value(), c.as_ref())?;
        let fixed = tape.constant(solution.clone());
        let needs_gradient = !tape.params_frozen()
            || z.requires_grad()
            || context.is_some_and(|c| c.requires_grad());
        let x = if needs_gradient {
            // x = x* - S(r), r = x* + g(x*) - z (about 0, a function of z, the context and
            // the parameters), where S is 0 in value and (I + J)^-1 in its derivative: the
            // implicit function's gradient, dx = (I + J)^-1 (dz - dg).
            let r = fixed.add(&self.g(params, &fixed, context)?)?.sub(z)?;
            let solve = ImplicitInverse {
                net: self.net.clone(),
                context: self.context,
                params: params.snapshot(),
                at: solution,
                given: c,
                tolerance: self.tolerance::<B>(),
                max_iterations: self.config.inverse_max_iterations,
            };
            fixed.sub(&Var::custom(Arc::new(solve), &[&r])?)?
        } else {
            fixed
        };
        let (_, log_det) = self.explicit(params, &x, context)?;
        Ok((x, log_det.neg()?))
    }

    /// Data to latent: `z = x + g(x)` and its log-determinant (see [`Residual`]).
    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Residual inverse", self.dim, x)?;
        let (z, log_det) = self.explicit(params, x, context)?;
        Ok((z, log_det))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&self.config)
    }

    fn after_step(&self, params: &mut ParamStore<B>) -> Result<()> {
        self.net
            .power_iterate(params, self.config.power_iterations)?;
        self.draws.commit(params)
    }

    fn evaluation_log_det(&self) -> LogDetKind {
        match self.evaluation_estimator() {
            LogDetEstimator::Exact => LogDetKind::Exact,
            other => LogDetKind::Stochastic(other.describe()),
        }
    }
}

impl LayerKind for Residual {
    const NAME: &'static str = "residual";
    type Config = ResidualLayerConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(Self::new(cx, config.clone())?))
    }

    /// Per linear layer `in x out` weights, `out` biases, `out + in` power-iteration
    /// vectors; a `beta` per activation; the 3 draw counters.
    fn num_scalars(config: &Self::Config, dim: usize, context: usize) -> Option<usize> {
        let mut sizes = vec![dim.checked_add(context)?];
        sizes.extend(&config.hidden);
        sizes.push(dim);
        let mut total = 3usize;
        for w in sizes.windows(2) {
            let layer = w[0]
                .checked_mul(w[1])?
                .checked_add(w[1].checked_mul(2)?)?
                .checked_add(w[0])?
                .checked_add(1)?;
            total = total.checked_add(layer)?;
        }
        Some(total)
    }
}

/// normflows' residual-flow example as a model: `transforms` residual blocks, each followed
/// by an [`crate::ActNorm`] when `actnorm`, over a fixed standard normal (normflows'
/// `DiagGaussian(2, trainable=False)`).
///
/// ```
/// use flow_core::{rng, Cpu};
/// use flow_layers::{NormalizingFlow, ResidualConfig, ResidualLayerConfig};
///
/// let spec = ResidualConfig {
///     transforms: 2,
///     layer: ResidualLayerConfig { hidden: vec![8], ..Default::default() },
///     ..Default::default()
/// }
/// .spec()?;
/// let model = NormalizingFlow::new(&Cpu::<f64>::new(), spec, 0)?;
/// let (x, log_q) = model.sample(4, None, &mut rng(1))?; // fixed-point inverses
/// assert!(model.log_prob(&x, None)?.max_abs_diff(&log_q)? < 1e-5); // exact 2-D log-dets
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualConfig {
    pub dim: usize,
    pub transforms: usize,
    pub actnorm: bool,
    pub layer: ResidualLayerConfig,
}

impl Default for ResidualConfig {
    /// normflows' example: 16 blocks of `LipschitzMLP([2, 128, 128, 2], 0.9)` with ActNorm.
    fn default() -> Self {
        ResidualConfig {
            dim: 2,
            transforms: 16,
            actnorm: true,
            layer: ResidualLayerConfig::default(),
        }
    }
}

impl ResidualConfig {
    pub fn spec(&self) -> Result<FlowSpec> {
        if self.dim == 0 {
            return Err(Error::Config(
                "a residual flow needs at least 1 feature".into(),
            ));
        }
        self.layer.check()?;
        let mut layers = Vec::new();
        for _ in 0..self.transforms {
            layers.push(LayerSpec::of::<Residual>(&self.layer));
            if self.actnorm {
                layers.push(LayerSpec::of::<crate::ActNorm>(&crate::NoConfig {}));
            }
        }
        Ok(FlowSpec {
            dim: self.dim,
            context: 0,
            base: BaseSpec::StandardNormal,
            layers,
        })
    }
}
