//! `NormalizingFlow`: a base distribution pushed through a stack of flows.

use crate::distribution::{Base, Target};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::registry::{BuildContext, Init, LayerKind, LayerSpec, Registry};
use crate::spec::{BaseSpec, FlowSpec};
use flow_core::{Backend, Element, FlowRng, ParamStore, Tape, Tensor, Var};

/// A normalizing flow with normflows' semantics: `forward` maps latent to data,
/// `log_prob(x) = log q0(f^-1(x)) + sum of inverse log-dets`.
///
/// Built from an architecture ([`NormalizingFlow::new`], [`NormalizingFlow::from_spec`]) or
/// layer by layer, built-in and one's own alike ([`NormalizingFlow::builder`]). Parameter
/// names are normflows' state_dict names (`q0.loc`,
/// `flows.{k}.flows.1.param_map.net.{j}.weight`, ...).
///
/// # Non-finite values
///
/// Every call that takes rows of data checks them: [`log_prob`](Self::log_prob),
/// [`forward_kld`](Self::forward_kld), [`inverse`](Self::inverse), [`forward`](Self::forward)
/// and [`init_from_data`](Self::init_from_data) check their input and their context,
/// [`sample`](Self::sample) and [`sample_on`](Self::sample_on) their context, on tensors and
/// tape variables alike. A NaN or an infinity there is an [`Error::NonFinite`] naming the
/// call, the argument, and the row, column and value of the first such entry (row by row),
/// never a NaN or `-inf` log-density. The check is one reduction per argument on the backend,
/// read back with the call's result (the rows themselves are read back only to find the
/// entry). Non-finite results from finite data (an overflow in a layer) are not errors: the
/// training loop skips such steps.
///
/// ```
/// use flow_core::{Cpu, Tensor};
/// use flow_layers::{Error, NormalizingFlow, RealNvpConfig};
///
/// let cpu = Cpu::<f64>::new();
/// let model = NormalizingFlow::new(&cpu, RealNvpConfig::default().spec()?, 0)?;
/// let x = Tensor::from_vec(&cpu, (3, 2), vec![0.0, 1.0, 2.0, 3.0, f64::NAN, 5.0])?;
/// let err = model.log_prob(&x, None).unwrap_err();
/// assert!(matches!(err, Error::NonFinite { call: "log_prob", arg: "x", row: 2, col: 0, .. }));
/// assert_eq!(err.to_string(), "log_prob: x has a non-finite value NaN at row 2, column 0");
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Debug)]
pub struct NormalizingFlow<B: Backend> {
    backend: B,
    spec: FlowSpec,
    base: Base,
    flows: Vec<Box<dyn Flow<B>>>,
    params: ParamStore<B>,
}

/// A layer waiting for [`FlowBuilder::build`]: a spec its registry knows, or a constructor.
enum PendingLayer<B: Backend> {
    Spec(LayerSpec),
    Custom(Box<LayerConstructor<B>>),
}

type LayerConstructor<B> = dyn FnOnce(&mut BuildContext<'_, B>) -> Result<Box<dyn Flow<B>>>;

/// Assembles a [`NormalizingFlow`] from a base and any layers, in `forward` (latent to data)
/// order, as normflows' `NormalizingFlow(q0, flows)`: built-in layers by their config,
/// one's own by their [`LayerKind`] or by any constructor of a [`Flow`] trait object.
/// Parameters are created when [`FlowBuilder::build`] runs: the base's first (`q0.*`), then
/// each layer's under `flows.{k}`, from one random stream.
///
/// ```
/// use flow_core::{rng, Cpu};
/// use flow_layers::{ActNorm, AffineCouplingBlock, AffineCouplingConfig, BaseSpec, NoConfig, NormalizingFlow, ScaleMap};
///
/// let coupling = AffineCouplingConfig { hidden: vec![16, 16], leaky: 0.0, scale_map: ScaleMap::Exp };
/// let model = NormalizingFlow::builder(2)
///     .base(BaseSpec::StandardNormal)
///     .layer::<AffineCouplingBlock>(coupling.clone())
///     .layer::<ActNorm>(NoConfig {})
///     .push(move |cx| Ok(Box::new(AffineCouplingBlock::new(cx, &coupling)?)))
///     .build(&Cpu::<f64>::new(), 0)?;
/// assert_eq!(model.flows().len(), 3);
/// let (x, log_q) = model.sample(4, None, &mut rng(1))?;
/// assert!(model.log_prob(&x, None)?.max_abs_diff(&log_q)? < 1e-9);
/// # Ok::<(), flow_layers::Error>(())
/// ```
pub struct FlowBuilder<B: Backend> {
    dim: usize,
    context: usize,
    base: BaseSpec,
    init: Init,
    registry: Registry<B>,
    layers: Vec<PendingLayer<B>>,
    error: Option<Error>,
}

impl<B: Backend> std::fmt::Debug for FlowBuilder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowBuilder")
            .field("dim", &self.dim)
            .field("context", &self.context)
            .field("base", &self.base)
            .field("init", &self.init)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl<B: Backend> FlowBuilder<B> {
    /// A flow over `dim` features, unconditional, over normflows' learnable `DiagGaussian`,
    /// with the built-in layer kinds and [`Init::Identity`].
    pub fn new(dim: usize) -> Self {
        Self::with_registry(dim, Registry::builtin())
    }

    /// As [`FlowBuilder::new`], its layer kinds from `registry`.
    pub fn with_registry(dim: usize, registry: Registry<B>) -> Self {
        FlowBuilder {
            dim,
            context: 0,
            base: BaseSpec::DiagGaussian,
            init: Init::Identity,
            registry,
            layers: Vec::new(),
            error: None,
        }
    }

    /// Conditional on `context` features, which every conditioner reads.
    pub fn context(mut self, context: usize) -> Self {
        self.context = context;
        self
    }

    pub fn base(mut self, base: BaseSpec) -> Self {
        self.base = base;
        self
    }

    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Appends a layer of kind `K` with `config` (registering `K` with the builder if its
    /// registry does not hold it).
    pub fn layer<K: LayerKind>(mut self, config: K::Config) -> Self {
        if !self.registry.contains(K::NAME) {
            if let Err(e) = self.registry.register::<K>() {
                self.error.get_or_insert(e);
            }
        }
        self.layers
            .push(PendingLayer::Spec(LayerSpec::of::<K>(&config)));
        self
    }

    /// Appends the layer `spec` describes (its kind must be in the registry).
    pub fn spec_layer(mut self, spec: LayerSpec) -> Self {
        self.layers.push(PendingLayer::Spec(spec));
        self
    }

    /// Appends the layer `make` constructs: any [`Flow`], given the [`BuildContext`] (its
    /// parameter prefix, width, context, initialisation and random stream). To reload a
    /// checkpoint of the model, the layer's kind ([`Flow::spec`]) must be in the registry
    /// the loader is given.
    pub fn push(
        mut self,
        make: impl FnOnce(&mut BuildContext<'_, B>) -> Result<Box<dyn Flow<B>>> + 'static,
    ) -> Self {
        self.layers.push(PendingLayer::Custom(Box::new(make)));
        self
    }

    /// Builds the base and the layers on `backend`, random values drawn from `seed`.
    pub fn build(self, backend: &B, seed: u64) -> Result<NormalizingFlow<B>> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (dim, context) = (self.dim, self.context);
        let mut params = ParamStore::new();
        let mut rng = flow_core::rng(seed);
        let base = Base::from_spec(&mut params, backend, dim, &self.base, seed)?;
        let mut flows: Vec<Box<dyn Flow<B>>> = Vec::with_capacity(self.layers.len());
        for (k, layer) in self.layers.into_iter().enumerate() {
            let mut cx = BuildContext {
                backend,
                params: &mut params,
                prefix: format!("flows.{k}"),
                dim,
                context,
                init: self.init,
                rng: &mut rng,
            };
            let flow = match layer {
                PendingLayer::Spec(spec) => self.registry.build(&spec, &mut cx)?,
                PendingLayer::Custom(make) => make(&mut cx)?,
            };
            if flow.dim() != dim {
                return Err(Error::Config(format!(
                    "layer {k} maps {} features in a flow of {dim}",
                    flow.dim()
                )));
            }
            if flow.context_dim() != 0 && flow.context_dim() != context {
                return Err(Error::Config(format!(
                    "layer {k} reads {} context features in a flow of {context}",
                    flow.context_dim()
                )));
            }
            flows.push(flow);
        }
        let spec = FlowSpec {
            dim,
            context,
            base: self.base,
            layers: flows.iter().map(|f| f.spec()).collect(),
        };
        Ok(NormalizingFlow {
            backend: backend.clone(),
            spec,
            base,
            flows,
            params,
        })
    }
}

impl<B: Backend> NormalizingFlow<B> {
    /// Builds `spec` of built-in layers with freshly initialised parameters (PyTorch's
    /// `nn.Linear` init drawn from `seed`; the last layer of every conditioner zeroed, as
    /// normflows' examples do, so that the flow starts as the identity).
    pub fn new(backend: &B, spec: FlowSpec, seed: u64) -> Result<Self> {
        Self::from_spec(&Registry::builtin(), backend, spec, seed)
    }

    /// As [`NormalizingFlow::new`], but with every layer at PyTorch's `nn.Linear`
    /// initialisation, the last ones included (zuko's convention; [`Init::Random`]): the
    /// flow does not start as the identity. Also what tests of the layers' algebra use.
    pub fn new_random(backend: &B, spec: FlowSpec, seed: u64) -> Result<Self> {
        Self::builder_from(Registry::builtin(), spec)
            .init(Init::Random)
            .build(backend, seed)
    }

    /// Builds `spec`, whose layer kinds `registry` holds (the built-in ones and one's own),
    /// with [`Init::Identity`].
    pub fn from_spec(
        registry: &Registry<B>,
        backend: &B,
        spec: FlowSpec,
        seed: u64,
    ) -> Result<Self> {
        Self::builder_from(registry.clone(), spec).build(backend, seed)
    }

    /// The same model under another `spec` of the same parameters: every parameter and
    /// buffer is copied by name, and one that is missing from this model or has another
    /// shape is an error. What changes a setting that owns no parameters, as a continuous
    /// layer's solver ([`crate::cnf::with_solver`]).
    pub fn with_spec(&self, registry: &Registry<B>, spec: FlowSpec) -> Result<Self> {
        let mut model = Self::from_spec(registry, &self.backend, spec, 0)?;
        let ids: Vec<_> = model.params.ids().collect();
        for id in ids {
            let name = model.params.name(id)?.to_string();
            let value = self
                .params
                .id(&name)
                .map(|own| self.params.get(own))
                .transpose()?
                .ok_or_else(|| {
                    Error::Config(format!(
                        "the new spec has a parameter `{name}` this model lacks"
                    ))
                })?;
            model.params.set(id, value.clone())?;
        }
        Ok(model)
    }

    /// A builder for a flow over `dim` features, to which layers are added one by one.
    pub fn builder(dim: usize) -> FlowBuilder<B> {
        FlowBuilder::new(dim)
    }

    /// A builder holding `spec`'s base and layers, built with `registry`.
    pub fn builder_from(registry: Registry<B>, spec: FlowSpec) -> FlowBuilder<B> {
        let builder = FlowBuilder::with_registry(spec.dim, registry)
            .context(spec.context)
            .base(spec.base);
        spec.layers
            .into_iter()
            .fold(builder, |b, layer| b.spec_layer(layer))
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

    /// Whether a layer of the flow initialises itself from data ([`Flow::wants_data_init`],
    /// Glow's ActNorm), so that [`NormalizingFlow::init_from_data`] should run before
    /// training.
    pub fn wants_data_init(&self) -> bool {
        self.flows.iter().any(|f| f.wants_data_init())
    }

    /// Data-dependent initialisation (Glow's ActNorm) of every layer that wants it, from a
    /// batch `x` (data side, `rows x dim`, at least 2 rows) and its context (`rows x
    /// context_dim`; `None` for an unconditional flow).
    ///
    /// The batch runs through the flow's inverse (data to latent) one layer at a time, and
    /// each layer that wants it is initialised ([`Flow::init_from_data`]) from the values
    /// that reach it, before they pass through it: so, in order from the data side, every
    /// ActNorm maps the batch to zero mean and unit variance per feature (given the layers
    /// before it, initialised the same way). Layers beyond the last such layer are not
    /// evaluated. Call it once, on a first batch of training data, before the first update;
    /// the parameters it sets are ordinary parameters (checkpointed, then trained).
    ///
    /// Returns the number of layers initialised (0 for a flow without such layers, whose
    /// parameters it leaves alone). Fails, leaving every parameter as it was, on a batch of
    /// the wrong width, a context that does not fit the flow, a NaN or an infinity in either
    /// ([`Error::NonFinite`]), fewer than 2 rows (no spread to standardise), or an error of a
    /// layer's initialisation (an ActNorm reached by values that are not all finite).
    pub fn init_from_data(&mut self, x: &Tensor<B>, context: Option<&Tensor<B>>) -> Result<usize> {
        let Some(last) = self.flows.iter().position(|f| f.wants_data_init()) else {
            return Ok(0);
        };
        let tape = Tape::new(&self.backend);
        let xv = tape.constant(x.clone());
        let cv = context.map(|c| tape.constant(c.clone()));
        self.check_width("init_from_data", &xv)?;
        self.check_context(cv.as_ref(), x.rows())?;
        checked_finite(
            "init_from_data",
            &[("x", Some(&xv)), ("context", cv.as_ref())],
            || Ok(()),
        )?;
        if x.rows() < 2 {
            return Err(Error::Config(format!(
                "data-dependent initialisation needs a batch of at least 2 rows, got {}",
                x.rows()
            )));
        }
        let saved: Vec<Tensor<B>> = self.params.iter().map(|(_, _, t)| t.clone()).collect();
        let result = self.init_from_data_down_to(x, context, last);
        if result.is_err() {
            // Back to the values before the call.
            let ids: Vec<_> = self.params.ids().collect();
            for (id, value) in ids.into_iter().zip(saved) {
                self.params.set(id, value)?;
            }
        }
        result
    }

    /// The pass behind [`NormalizingFlow::init_from_data`], down to layer `last`.
    fn init_from_data_down_to(
        &mut self,
        x: &Tensor<B>,
        context: Option<&Tensor<B>>,
        last: usize,
    ) -> Result<usize> {
        let mut v = x.clone();
        let mut initialised = 0;
        for k in (last..self.flows.len()).rev() {
            let flow = &self.flows[k];
            if flow.wants_data_init() {
                flow.init_from_data(&mut self.params, &v, context)
                    .map_err(|e| match e {
                        Error::Config(m) => Error::Config(format!("layer {k}: {m}")),
                        e => e,
                    })?;
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
        crate::flow::check_width(what, self.dim(), v)
    }

    /// The width of `v` and the shape of `context`, before anything runs (`what`: the pass,
    /// `inverse` for the densities too, as their errors have always said).
    fn check_shapes(&self, what: &'static str, v: &Var<B>, context: Option<&Var<B>>) -> Result<()> {
        self.check_width(what, v)?;
        self.check_context(context, v.shape().rows)
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

    /// Runs every layer's [`Flow::after_step`] (power iterations of spectrally normalised
    /// weights, the commit of a stochastic layer's draws): call it after each optimizer
    /// step, as the trainer does.
    pub fn after_step(&mut self) -> Result<()> {
        for flow in &self.flows {
            flow.after_step(&mut self.params)?;
        }
        Ok(())
    }

    /// The vector field of a model of one continuous layer ([`Flow::velocity`]) at `x` and
    /// `times` (one per row or one for all; `t = 0` the base side, `t = 1` the data side),
    /// on `x`'s tape: what flow matching regresses. An error for any other model.
    pub fn velocity(&self, x: &Var<B>, times: &[f64], context: Option<&Var<B>>) -> Result<Var<B>> {
        self.check_width("velocity", x)?;
        self.check_context(context, x.shape().rows)?;
        let not_continuous = || {
            Error::Config(format!(
                "a vector field needs a model of one continuous layer (a CNF), this one has \
                 layers {:?}",
                self.spec
                    .layers
                    .iter()
                    .map(|l| l.kind())
                    .collect::<Vec<_>>()
            ))
        };
        match self.flows.as_slice() {
            [flow] => flow
                .velocity(&self.params, x, times, context)?
                .ok_or_else(not_continuous),
            _ => Err(not_continuous()),
        }
    }

    /// The vector-field evaluations of the model's continuous layers so far, summed
    /// ([`Flow::field_evaluations`]); `None` for a model with no continuous layer.
    pub fn field_evaluations(&self) -> Option<u64> {
        self.flows
            .iter()
            .filter_map(|f| f.field_evaluations())
            .reduce(|a, b| a + b)
    }

    /// The log-determinant estimators of the layers that do not compute theirs exactly in
    /// evaluation ([`Flow::evaluation_log_det`]), one description each, in layer order;
    /// empty when every log-density the model evaluates is exact.
    pub fn stochastic_log_dets(&self) -> Vec<String> {
        self.flows
            .iter()
            .filter_map(|f| match f.evaluation_log_det() {
                crate::flow::LogDetKind::Exact => None,
                crate::flow::LogDetKind::Stochastic(what) => Some(what),
            })
            .collect()
    }

    /// Latent to data given a context (`rows x context_dim`; `None` for an unconditional
    /// flow), with the summed forward log-dets per sample (`rows x 1`). `z` is a tape
    /// variable (the result stays on its tape, for gradients) or a tensor (evaluated on a
    /// tape of its own; the result is a tensor). A NaN or an infinity in `z` or the context
    /// is an [`Error::NonFinite`] naming its row and column.
    pub fn forward<X: FlowValue<B>>(&self, z: &X, context: Option<&X>) -> Result<(X, X)> {
        let (z, context) = self.onto_tape(z, context);
        let context = context.as_ref();
        self.check_shapes("forward", &z, context)?;
        let (x, log_det) =
            checked_finite("forward", &[("z", Some(&z)), ("context", context)], || {
                self.forward_var(&z, context)
            })?;
        Ok((X::from_var(x), X::from_var(log_det)))
    }

    /// Latent to data given a context, without the log-dets: [`NormalizingFlow::forward`]'s
    /// `x` at less cost where layers can skip their log-determinant ([`Flow::forward_map`]:
    /// continuous layers integrate their field alone). A tape variable or a tensor.
    ///
    /// ```
    /// use flow_core::{rng, Cpu, Tensor};
    /// use flow_layers::cnf::{CnfConfig, CnfLayerConfig};
    /// use flow_layers::ode::Solver;
    /// use flow_layers::NormalizingFlow;
    ///
    /// let cpu = Cpu::<f64>::new();
    /// let layer = CnfLayerConfig { hidden: vec![8], solver: Solver::Rk4 { steps: 10 }, ..Default::default() };
    /// let model = NormalizingFlow::new_random(&cpu, CnfConfig { dim: 2, transforms: 1, layer }.spec()?, 0)?;
    /// let z = Tensor::randn(&cpu, (5, 2), &mut rng(1))?;
    /// let (x, _) = model.forward(&z, None)?;
    /// assert!(model.forward_map(&z, None)?.max_abs_diff(&x)? < 1e-12);
    /// # Ok::<(), flow_layers::Error>(())
    /// ```
    pub fn forward_map<X: FlowValue<B>>(&self, z: &X, context: Option<&X>) -> Result<X> {
        let (z, context) = self.onto_tape(z, context);
        let context = context.as_ref();
        self.check_shapes("forward", &z, context)?;
        let x = checked_finite(
            "forward_map",
            &[("z", Some(&z)), ("context", context)],
            || {
                self.flows.iter().try_fold(z.clone(), |v, flow| {
                    flow.forward_map(&self.params, &v, context)
                })
            },
        )?;
        Ok(X::from_var(x))
    }

    /// Data to latent given a context, with the summed inverse log-dets per sample; a tape
    /// variable or a tensor, as [`NormalizingFlow::forward`]. A NaN or an infinity in `x` or
    /// the context is an [`Error::NonFinite`].
    pub fn inverse<X: FlowValue<B>>(&self, x: &X, context: Option<&X>) -> Result<(X, X)> {
        let (x, context) = self.onto_tape(x, context);
        let context = context.as_ref();
        self.check_shapes("inverse", &x, context)?;
        let (z, log_det) =
            checked_finite("inverse", &[("x", Some(&x)), ("context", context)], || {
                self.inverse_var(&x, context)
            })?;
        Ok((X::from_var(z), X::from_var(log_det)))
    }

    /// log q(x | c) per row (`rows x 1`): `context` has a row per row of `x` (`None` for an
    /// unconditional flow). A tape variable or a tensor, as [`NormalizingFlow::forward`]. A
    /// NaN or an infinity in `x` or the context is an [`Error::NonFinite`] naming its row and
    /// column, not a NaN log-density.
    pub fn log_prob<X: FlowValue<B>>(&self, x: &X, context: Option<&X>) -> Result<X> {
        let (x, context) = self.onto_tape(x, context);
        let context = context.as_ref();
        self.check_shapes("inverse", &x, context)?;
        let log_q = checked_finite("log_prob", &[("x", Some(&x)), ("context", context)], || {
            self.log_prob_var(&x, context)
        })?;
        Ok(X::from_var(log_q))
    }

    /// The forward KL divergence estimate from target samples `x` (and their contexts):
    /// `-mean(log q(x | c))`, `1 x 1`. On a tape variable it is the training loss. A NaN or
    /// an infinity in `x` or the context is an [`Error::NonFinite`] naming its row and column.
    pub fn forward_kld<X: FlowValue<B>>(&self, x: &X, context: Option<&X>) -> Result<X> {
        let (x, context) = self.onto_tape(x, context);
        let context = context.as_ref();
        self.check_shapes("inverse", &x, context)?;
        let loss = checked_finite(
            "forward_kld",
            &[("x", Some(&x)), ("context", context)],
            || {
                self.log_prob_var(&x, context)?
                    .mean_all()?
                    .neg()
                    .map_err(Error::from)
            },
        )?;
        Ok(X::from_var(loss))
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
        let (x, log_q) = self.sample_on(tape, n, None, rng)?;
        let log_p = target.log_prob(&x)?;
        Ok(log_q
            .mean_all()?
            .sub(&log_p.mean_all()?.mul_scalar(beta)?)?)
    }

    /// `n` samples on `tape` given a context (one row shared by all samples, or `n` rows;
    /// `None` for an unconditional flow), and their log-density `log q(x | c)`. A NaN or an
    /// infinity in the context is an [`Error::NonFinite`].
    pub fn sample_on(
        &self,
        tape: &Tape<B>,
        n: usize,
        context: Option<&Var<B>>,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        checked_finite("sample", &[("context", context)], || {
            self.sample_unchecked(tape, n, context, rng)
        })
    }

    /// [`NormalizingFlow::sample_on`] without the check of the context.
    fn sample_unchecked(
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
        let (x, log_det) = self.forward_var(&z, context.as_ref())?;
        Ok((x, log_q0.sub(&log_det)?))
    }

    /// `n` samples given a context (as [`NormalizingFlow::sample_on`]) and their
    /// log-density, as tensors.
    pub fn sample(
        &self,
        n: usize,
        context: Option<&Tensor<B>>,
        rng: &mut FlowRng,
    ) -> Result<(Tensor<B>, Tensor<B>)> {
        let tape = Tape::inference(&self.backend);
        let context = context.map(|c| tape.constant(c.clone()));
        let (x, log_q) = self.sample_on(&tape, n, context.as_ref(), rng)?;
        Ok((x.value(), log_q.value()))
    }

    /// `value` and `context` as variables on one tape (a new one for tensors).
    fn onto_tape<X: FlowValue<B>>(
        &self,
        value: &X,
        context: Option<&X>,
    ) -> (Var<B>, Option<Var<B>>) {
        let v = value.to_var(None, &self.backend);
        let c = context.map(|c| c.to_var(Some(v.tape()), &self.backend));
        (v, c)
    }

    fn forward_var(&self, z: &Var<B>, context: Option<&Var<B>>) -> Result<(Var<B>, Var<B>)> {
        self.check_width("forward", z)?;
        self.check_context(context, z.shape().rows)?;
        self.chain(z, self.flows.iter(), |flow, v| {
            flow.forward(&self.params, v, context)
        })
    }

    fn inverse_var(&self, x: &Var<B>, context: Option<&Var<B>>) -> Result<(Var<B>, Var<B>)> {
        self.check_width("inverse", x)?;
        self.check_context(context, x.shape().rows)?;
        self.chain(x, self.flows.iter().rev(), |flow, v| {
            flow.inverse(&self.params, v, context)
        })
    }

    fn log_prob_var(&self, x: &Var<B>, context: Option<&Var<B>>) -> Result<Var<B>> {
        let (z, log_det) = self.inverse_var(x, context)?;
        Ok(self.base.log_prob(&self.params, &z)?.add(&log_det)?)
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
        let log_det = match log_det {
            Some(log_det) => log_det,
            None => crate::flow::zero_log_det(&v)?,
        };
        Ok((v, log_det))
    }
}

/// Runs `call`'s work (`run`) on `inputs` (argument names and values, `None` where absent),
/// refusing NaN and infinities in them: the model's policy on non-finite values.
///
/// Each input is probed on its backend ([`Tensor::finite_probe`]: a sum on a device, a
/// vectorised pass on the CPU) and the probes added into one scalar, queued before `run` and
/// read back after it, so that on a device the check waits for nothing the call would not
/// (one scalar comes back). A probe that is not finite means a NaN or an infinity somewhere
/// (or, on a device, finite values whose sum overflows): only then are the inputs read back,
/// to name the first non-finite entry ([`Error::NonFinite`]), which wins over `run`'s own
/// result, error or not.
fn checked_finite<B: Backend, T>(
    call: &'static str,
    inputs: &[(&'static str, Option<&Var<B>>)],
    run: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut total: Option<Tensor<B>> = None;
    for v in inputs.iter().filter_map(|(_, v)| *v) {
        let probe = v.value().finite_probe()?;
        total = Some(match total {
            None => probe,
            Some(t) => t.add(&probe)?,
        });
    }
    let result = run();
    if let Some(total) = total {
        if !total.scalar_value()?.as_f64().is_finite() {
            for &(arg, v) in inputs {
                if let Some(v) = v {
                    v.value()
                        .check_finite(arg)
                        .map_err(|e| Error::non_finite(call, arg, e))?;
                }
            }
        }
    }
    result
}

/// What the model's calls take and give: a [`Var`] (the call records on its tape, so that
/// gradients flow) or a [`Tensor`] (the call runs on a tape of its own and gives tensors).
pub trait FlowValue<B: Backend>: Sized {
    /// The value as a variable: on `tape` when given (a tensor becomes a constant there),
    /// else on its own tape.
    fn to_var(&self, tape: Option<&Tape<B>>, backend: &B) -> Var<B>;
    /// A result variable in this form.
    fn from_var(v: Var<B>) -> Self;
}

impl<B: Backend> FlowValue<B> for Var<B> {
    fn to_var(&self, _: Option<&Tape<B>>, _: &B) -> Var<B> {
        self.clone()
    }

    fn from_var(v: Var<B>) -> Self {
        v
    }
}

impl<B: Backend> FlowValue<B> for Tensor<B> {
    fn to_var(&self, tape: Option<&Tape<B>>, backend: &B) -> Var<B> {
        match tape {
            Some(tape) => tape.constant(self.clone()),
            None => Tape::inference(backend).constant(self.clone()),
        }
    }

    fn from_var(v: Var<B>) -> Self {
        v.value()
    }
}
