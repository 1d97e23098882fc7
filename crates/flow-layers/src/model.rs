//! `NormalizingFlow`: a base distribution pushed through a stack of flows.

use crate::actnorm::ActNorm;
use crate::autoregressive::{MaskedAutoregressive, Transformer};
use crate::coupling::AffineCouplingBlock;
use crate::distribution::{Base, Target};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::lu_linear::InvertibleLinearLu;
use crate::permute::Permute;
use crate::planar::Planar;
use crate::radial::Radial;
use crate::spec::{FlowSpec, LayerSpec};
use crate::spline_coupling::SplineCoupling;
use flow_core::{Backend, FlowRng, ParamStore, Tape, Tensor, Var};

/// A normalizing flow with normflows' semantics: `forward` maps latent to data,
/// `log_prob(x) = log q0(f^-1(x)) + sum of inverse log-dets`.
///
/// Parameter names are normflows' state_dict names (`q0.loc`, `flows.{k}.flows.1.param_map.net.{j}.weight`, ...).
#[derive(Debug)]
pub struct NormalizingFlow<B: Backend> {
    backend: B,
    spec: FlowSpec,
    base: Base,
    flows: Vec<Box<dyn Flow<B>>>,
    params: ParamStore<B>,
}

impl<B: Backend> NormalizingFlow<B> {
    /// Builds `spec` with freshly initialised parameters (PyTorch's `nn.Linear` init drawn
    /// from `seed`; the last layer of every conditioner zeroed, as normflows' examples do, so
    /// that the flow starts as the identity).
    pub fn new(backend: &B, spec: FlowSpec, seed: u64) -> Result<Self> {
        Self::build(backend, spec, seed, true)
    }

    /// As [`NormalizingFlow::new`], but with every layer at PyTorch's `nn.Linear`
    /// initialisation, the last ones included (zuko's convention): the flow does not start
    /// as the identity. Also what tests of the layers' algebra use.
    pub fn new_random(backend: &B, spec: FlowSpec, seed: u64) -> Result<Self> {
        Self::build(backend, spec, seed, false)
    }

    fn build(backend: &B, spec: FlowSpec, seed: u64, init_zeros: bool) -> Result<Self> {
        let mut params = ParamStore::new();
        let mut rng = flow_core::rng(seed);
        let base = Base::from_spec(&mut params, backend, spec.dim, &spec.base, seed)?;
        let mut flows: Vec<Box<dyn Flow<B>>> = Vec::with_capacity(spec.layers.len());
        for (k, layer) in spec.layers.iter().enumerate() {
            let flow: Box<dyn Flow<B>> = match layer {
                LayerSpec::AffineCoupling {
                    hidden,
                    leaky,
                    scale_map,
                } => Box::new(AffineCouplingBlock::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    spec.context,
                    hidden,
                    *leaky,
                    *scale_map,
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::MaskedAffineAutoregressive {
                    hidden,
                    degrees,
                    leaky,
                    iaf,
                } => Box::new(MaskedAutoregressive::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    spec.context,
                    hidden,
                    degrees.clone(),
                    *leaky,
                    *iaf,
                    Transformer::Affine,
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::MaskedSplineAutoregressive {
                    hidden,
                    degrees,
                    leaky,
                    iaf,
                    spline,
                } => Box::new(MaskedAutoregressive::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    spec.context,
                    hidden,
                    degrees.clone(),
                    *leaky,
                    *iaf,
                    Transformer::RationalQuadratic(*spline),
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::SplineCoupling {
                    hidden,
                    leaky,
                    spline,
                } => Box::new(SplineCoupling::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    spec.context,
                    hidden,
                    *leaky,
                    *spline,
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::Permute { mode, perm } => {
                    if perm.len() != spec.dim {
                        return Err(Error::Config(format!(
                            "layer {k}: permutation of {} features in a flow of {}",
                            perm.len(),
                            spec.dim
                        )));
                    }
                    Box::new(Permute::from_perm(perm.clone(), *mode)?)
                }
                LayerSpec::ActNorm => Box::new(ActNorm::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::InvertibleLinearLu { perm, sign } => {
                    Box::new(InvertibleLinearLu::from_spec(
                        &mut params,
                        backend,
                        &format!("flows.{k}"),
                        spec.dim,
                        perm.clone(),
                        sign.clone(),
                        init_zeros,
                        &mut rng,
                    )?)
                }
                // normflows initialises these randomly in either mode.
                LayerSpec::Planar { activation } => Box::new(Planar::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    *activation,
                    &mut rng,
                )?),
                LayerSpec::Radial => Box::new(Radial::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    &mut rng,
                )?),
            };
            flows.push(flow);
        }
        Ok(NormalizingFlow {
            backend: backend.clone(),
            spec,
            base,
            flows,
            params,
        })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }

    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    pub fn params(&self) -> &ParamStore<B> {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut ParamStore<B> {
        &mut self.params
    }

    pub fn flows(&self) -> &[Box<dyn Flow<B>>] {
        &self.flows
    }

    /// The base distribution.
    pub fn base(&self) -> &Base {
        &self.base
    }

    /// Whether the flow has [`ActNorm`] layers, which want a data-dependent initialisation
    /// ([`NormalizingFlow::initialize_actnorm`]) before training.
    pub fn has_actnorm(&self) -> bool {
        self.flows.iter().any(|f| f.as_actnorm().is_some())
    }

    /// Glow's data-dependent initialisation of every [`ActNorm`] layer from a batch `x` (data
    /// side, `rows x dim`, at least 2 rows) and its context (`rows x context_dim`; `None` for
    /// an unconditional flow).
    ///
    /// The batch runs through the flow's inverse (data to latent) one layer at a time, and
    /// each ActNorm it meets is initialised ([`ActNorm::initialize`]) from the values that
    /// reach it, before they pass through it: so, in order from the data side, every ActNorm
    /// maps the batch to zero mean and unit variance per feature (given the layers before
    /// it, initialised the same way). Layers beyond the last ActNorm are not evaluated. Call
    /// it once, on a first batch of training data, before the first update; the parameters
    /// it sets are ordinary parameters (checkpointed, then trained).
    ///
    /// Returns the number of layers initialised (0 for a flow without ActNorm, whose
    /// parameters it leaves alone). Fails, leaving every parameter as it was, on a batch of
    /// the wrong width, a context that does not fit the flow, fewer than 2 rows (no spread to
    /// standardise), or values reaching an ActNorm that are not all finite.
    pub fn initialize_actnorm(
        &mut self,
        x: &Tensor<B>,
        context: Option<&Tensor<B>>,
    ) -> Result<usize> {
        let Some(last) = self.flows.iter().position(|f| f.as_actnorm().is_some()) else {
            return Ok(0);
        };
        let tape = Tape::new(&self.backend);
        let xv = tape.constant(x.clone());
        self.check_width("initialize_actnorm", &xv)?;
        self.check_context(context.map(|c| tape.constant(c.clone())).as_ref(), x.rows())?;
        if x.rows() < 2 {
            return Err(Error::Config(format!(
                "ActNorm initialisation needs a batch of at least 2 rows, got {}",
                x.rows()
            )));
        }
        let mut saved = Vec::new();
        let result = self.initialize_actnorm_from(x, context, last, &mut saved);
        if result.is_err() {
            // Back to the values before the call.
            for (id, value) in saved.into_iter().rev() {
                self.params.set(id, value)?;
            }
        }
        result
    }

    /// The pass behind [`NormalizingFlow::initialize_actnorm`], down to layer `last`; the
    /// previous values of the parameters it sets go to `saved`.
    fn initialize_actnorm_from(
        &mut self,
        x: &Tensor<B>,
        context: Option<&Tensor<B>>,
        last: usize,
        saved: &mut Vec<(flow_core::ParamId, Tensor<B>)>,
    ) -> Result<usize> {
        let mut v = x.clone();
        let mut initialised = 0;
        for k in (last..self.flows.len()).rev() {
            let flow = &self.flows[k];
            if let Some(actnorm) = flow.as_actnorm() {
                if !v.to_f64s().iter().all(|e| e.is_finite()) {
                    return Err(Error::Config(format!(
                        "ActNorm initialisation: the batch reaches layer {k} with values that \
                         are not all finite"
                    )));
                }
                for id in [actnorm.loc(), actnorm.log_scale()] {
                    saved.push((id, self.params.get(id)?.clone()));
                }
                actnorm.initialize(&mut self.params, &v)?;
                initialised += 1;
            }
            if k > last {
                // A tape per layer: a tape binds each parameter once, and this one's
                // parameters were just set.
                let tape = Tape::new(&self.backend);
                let c = context.map(|c| tape.constant(c.clone()));
                v = flow
                    .inverse(&self.params, &tape.constant(v), c.as_ref())?
                    .0
                    .value();
            }
        }
        Ok(initialised)
    }

    fn check_width(&self, what: &'static str, v: &Var<B>) -> Result<()> {
        let got = v.shape().cols;
        if got != self.dim() {
            return Err(Error::Width {
                what,
                expected: self.dim(),
                got,
            });
        }
        Ok(())
    }

    /// The number of context features a conditional flow reads (0: unconditional).
    pub fn context_dim(&self) -> usize {
        self.spec.context
    }

    /// Checks `context` against the flow: present exactly when the flow is conditional, with
    /// its width and `rows` rows.
    fn check_context(&self, context: Option<&Var<B>>, rows: usize) -> Result<()> {
        let got = context.map(|c| (c.shape().rows, c.shape().cols));
        match (got, self.context_dim()) {
            (None, 0) => Ok(()),
            (Some((r, c)), n) if n > 0 && r == rows && c == n => Ok(()),
            (got, expected) => Err(Error::Context {
                what: if expected == 0 {
                    "an unconditional flow takes no context"
                } else {
                    "a conditional flow"
                },
                expected,
                got,
                rows,
            }),
        }
    }

    /// Latent to data, with the summed forward log-dets per sample.
    pub fn forward_and_log_det(&self, z: &Var<B>) -> Result<(Var<B>, Var<B>)> {
        self.forward_and_log_det_given(z, None)
    }

    /// Latent to data given a context (`rows x context_dim`, `None` for an unconditional
    /// flow), with the summed forward log-dets per sample.
    pub fn forward_and_log_det_given(
        &self,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        self.check_width("forward", z)?;
        self.check_context(context, z.shape().rows)?;
        self.chain(z, self.flows.iter(), |flow, v| {
            flow.forward(&self.params, v, context)
        })
    }

    /// Data to latent, with the summed inverse log-dets per sample.
    pub fn inverse_and_log_det(&self, x: &Var<B>) -> Result<(Var<B>, Var<B>)> {
        self.inverse_and_log_det_given(x, None)
    }

    /// Data to latent given a context, with the summed inverse log-dets per sample.
    pub fn inverse_and_log_det_given(
        &self,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        self.check_width("inverse", x)?;
        self.check_context(context, x.shape().rows)?;
        self.chain(x, self.flows.iter().rev(), |flow, v| {
            flow.inverse(&self.params, v, context)
        })
    }

    /// Applies `step` through `flows` in order, summing the log-dets.
    fn chain<'a>(
        &'a self,
        input: &Var<B>,
        flows: impl Iterator<Item = &'a Box<dyn Flow<B>>>,
        step: impl Fn(&dyn Flow<B>, &Var<B>) -> Result<(Var<B>, Var<B>)>,
    ) -> Result<(Var<B>, Var<B>)> {
        let mut v = input.clone();
        let mut log_det: Option<Var<B>> = None;
        for flow in flows {
            let (y, ld) = step(flow.as_ref(), &v)?;
            log_det = Some(match log_det {
                None => ld,
                Some(acc) => acc.add(&ld)?,
            });
            v = y;
        }
        let log_det = log_det.unwrap_or_else(|| zeros_like_rows(&v));
        Ok((v, log_det))
    }

    /// log q(x) per row (`rows x 1`).
    pub fn log_prob(&self, x: &Var<B>) -> Result<Var<B>> {
        self.log_prob_given(x, None)
    }

    /// log q(x | c) per row (`rows x 1`) of a conditional flow; `context` has a row per row of
    /// `x` (`None` for an unconditional flow).
    pub fn log_prob_given(&self, x: &Var<B>, context: Option<&Var<B>>) -> Result<Var<B>> {
        let (z, log_det) = self.inverse_and_log_det_given(x, context)?;
        Ok(self.base.log_prob(&self.params, &z)?.add(&log_det)?)
    }

    /// The forward KL divergence estimate from target samples `x`: `-mean(log q(x))`.
    pub fn forward_kld(&self, x: &Var<B>) -> Result<Var<B>> {
        self.forward_kld_given(x, None)
    }

    /// `-mean(log q(x | c))` over rows of samples `x` and their contexts.
    pub fn forward_kld_given(&self, x: &Var<B>, context: Option<&Var<B>>) -> Result<Var<B>> {
        Ok(self.log_prob_given(x, context)?.mean_all().neg())
    }

    /// The reverse KL divergence estimate from `n` model samples:
    /// `mean(log q(x)) - beta * mean(log p(x))`, reparametrised (score function included).
    pub fn reverse_kld(
        &self,
        tape: &Tape<B>,
        target: &dyn Target<B>,
        n: usize,
        beta: f64,
        rng: &mut FlowRng,
    ) -> Result<Var<B>> {
        let (x, log_q) = self.sample_on(tape, n, rng)?;
        let log_p = target.log_prob(&x)?;
        Ok(log_q.mean_all().sub(&log_p.mean_all().mul_scalar(beta))?)
    }

    /// `n` samples on `tape` and their log-density under the model.
    pub fn sample_on(
        &self,
        tape: &Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        self.sample_given_on(tape, n, None, rng)
    }

    /// `n` samples on `tape` given a context, and their log-density `log q(x | c)`. The
    /// context has one row (shared by all samples) or `n` rows (one per sample).
    pub fn sample_given_on(
        &self,
        tape: &Tape<B>,
        n: usize,
        context: Option<&Var<B>>,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        let context = match context {
            Some(c) if c.shape().rows == 1 && n != 1 => Some(c.broadcast_to((n, c.shape().cols))?),
            Some(c) => Some(c.clone()),
            None => None,
        };
        let (z, log_q0) = self.base.sample(&self.params, tape, n, rng)?;
        let (x, log_det) = self.forward_and_log_det_given(&z, context.as_ref())?;
        Ok((x, log_q0.sub(&log_det)?))
    }

    /// `n` samples and their log-density, as tensors.
    pub fn sample(&self, n: usize, rng: &mut FlowRng) -> Result<(Tensor<B>, Tensor<B>)> {
        self.sample_given(n, None, rng)
    }

    /// `n` samples of a conditional flow given `context` (one row shared by all samples, or
    /// `n` rows), and their log-density, as tensors.
    pub fn sample_given(
        &self,
        n: usize,
        context: Option<&Tensor<B>>,
        rng: &mut FlowRng,
    ) -> Result<(Tensor<B>, Tensor<B>)> {
        let tape = Tape::new(&self.backend);
        let context = context.map(|c| tape.constant(c.clone()));
        let (x, log_q) = self.sample_given_on(&tape, n, context.as_ref(), rng)?;
        Ok((x.value(), log_q.value()))
    }

    /// log q(x) per row of a data tensor.
    pub fn log_prob_of(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        self.log_prob_given_of(x, None)
    }

    /// log q(x | c) per row of a data tensor and its contexts.
    pub fn log_prob_given_of(
        &self,
        x: &Tensor<B>,
        context: Option<&Tensor<B>>,
    ) -> Result<Tensor<B>> {
        let tape = Tape::new(&self.backend);
        let context = context.map(|c| tape.constant(c.clone()));
        Ok(self
            .log_prob_given(&tape.constant(x.clone()), context.as_ref())?
            .value())
    }
}

fn zeros_like_rows<B: Backend>(v: &Var<B>) -> Var<B> {
    v.tape()
        .constant(Tensor::zeros(v.tape().backend(), (v.shape().rows, 1)))
}
