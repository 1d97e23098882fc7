//! Base distributions and the target-density trait used by `reverse_kld`.
//!
//! A flow's base is a [`Base`]: normflows' [`DiagGaussian`], [`GaussianMixture`] or
//! [`Uniform`], built from a [`BaseSpec`] with normflows' parameter names (`q0.*`).

use crate::error::{Error, Result};
use crate::spec::BaseSpec;
use flow_core::{Axis, Backend, Element, FlowRng, ParamId, ParamStore, Tape, Tensor, Var};
use rand::Rng as _;
use std::f64::consts::PI;

/// A (possibly unnormalised) log-density that can be differentiated, for `reverse_kld`;
/// defined in flow-core so that data crates can provide targets without flow-layers.
pub use flow_core::Target;

/// normflows' `DiagGaussian`: a Gaussian with learnable `loc` and `log_scale` (`1 x d`,
/// named `q0.loc` and `q0.log_scale`), starting as the standard normal.
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape};
/// use flow_layers::DiagGaussian;
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let base = DiagGaussian::new(&mut params, &cpu, 2)?;
/// let tape = Tape::new(&cpu);
/// let (z, log_q) = base.sample(&params, &tape, 4, &mut rng(0))?;
/// let again = base.log_prob(&params, &z)?;
/// assert!(again.value().max_abs_diff(&log_q.value())? < 1e-12);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DiagGaussian {
    dim: usize,
    loc: ParamId,
    log_scale: ParamId,
}

impl DiagGaussian {
    pub fn new<B: Backend>(params: &mut ParamStore<B>, backend: &B, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Config(
                "a distribution needs at least one dimension".into(),
            ));
        }
        let loc = params.add("q0.loc", Tensor::zeros(backend, (1, dim))?)?;
        let log_scale = params.add("q0.log_scale", Tensor::zeros(backend, (1, dim))?)?;
        Ok(DiagGaussian {
            dim,
            loc,
            log_scale,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn constant(&self) -> f64 {
        -0.5 * self.dim as f64 * (2.0 * PI).ln()
    }

    /// log q(z) per row (`rows x 1`).
    pub fn log_prob<B: Backend>(&self, params: &ParamStore<B>, z: &Var<B>) -> Result<Var<B>> {
        let tape = z.tape();
        let loc = tape.param(params, self.loc)?;
        let log_scale = tape.param(params, self.log_scale)?;
        Ok(z.diag_normal_log_prob(&loc, &log_scale)?)
    }

    /// `n` draws on `tape` (differentiable in the parameters, reparametrised) and their
    /// log-density.
    pub fn sample<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &flow_core::Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        let eps = Tensor::randn(tape.backend(), (n, self.dim), rng)?;
        let loc = tape.param(params, self.loc)?;
        let log_scale = tape.param(params, self.log_scale)?;
        let eps = tape.constant(eps);
        let z = eps.mul(&log_scale.exp()?)?.add(&loc)?;
        let quad = eps.square()?.sum(Axis::Cols)?.mul_scalar(0.5)?;
        let log_p = quad
            .add(&log_scale.sum_all()?)?
            .neg()?
            .add_scalar(self.constant())?;
        Ok((z, log_p))
    }
}

/// The ChaCha stream a base draws its random initial values from: apart from the layers'
/// stream of the same seed, so that the layers start the same whatever the base.
const BASE_STREAM: u64 = 0xba5e;

/// A flow's base distribution, one of normflows' bases: built from a [`BaseSpec`] by
/// [`Base::from_spec`], evaluated by [`Base::log_prob`] and drawn from by [`Base::sample`].
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape};
/// use flow_layers::{Base, BaseSpec};
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let spec = BaseSpec::GaussianMixture { components: 3, trainable: true };
/// let base = Base::from_spec(&mut params, &cpu, 2, &spec, 0)?;
/// assert_eq!(params.num_scalars(), 3 * 2 + 3 * 2 + 3); // loc, log_scale, weight_scores
/// let tape = Tape::new(&cpu);
/// let (z, log_q) = base.sample(&params, &tape, 5, &mut rng(1))?;
/// assert!(base.log_prob(&params, &z)?.value().max_abs_diff(&log_q.value())? < 1e-12);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum Base {
    DiagGaussian(DiagGaussian),
    StandardNormal(StandardNormal),
    GaussianMixture(GaussianMixture),
    Uniform(Uniform),
}

impl Base {
    /// Builds `spec` over `dim` features, registering its parameters (`q0.*`) in `params`.
    /// Random initial values (a mixture's means) come from `seed`, on a stream of their own.
    pub fn from_spec<B: Backend>(
        params: &mut ParamStore<B>,
        backend: &B,
        dim: usize,
        spec: &BaseSpec,
        seed: u64,
    ) -> Result<Self> {
        Ok(match *spec {
            BaseSpec::DiagGaussian => Base::DiagGaussian(DiagGaussian::new(params, backend, dim)?),
            BaseSpec::StandardNormal => {
                if dim == 0 {
                    return Err(no_dimensions());
                }
                Base::StandardNormal(StandardNormal { dim })
            }
            BaseSpec::GaussianMixture {
                components,
                trainable,
            } => {
                let mut rng = flow_core::rng(seed);
                rng.set_stream(BASE_STREAM);
                Base::GaussianMixture(GaussianMixture::new(
                    params, backend, dim, components, trainable, &mut rng,
                )?)
            }
            BaseSpec::Uniform { low, high } => {
                let base = Uniform::new(dim, low, high)?;
                base.bounds::<B>()?;
                Base::Uniform(base)
            }
        })
    }

    pub fn dim(&self) -> usize {
        match self {
            Base::DiagGaussian(b) => b.dim(),
            Base::StandardNormal(b) => b.dim,
            Base::GaussianMixture(b) => b.dim(),
            Base::Uniform(b) => b.dim(),
        }
    }

    /// log q(z) per row (`rows x 1`).
    pub fn log_prob<B: Backend>(&self, params: &ParamStore<B>, z: &Var<B>) -> Result<Var<B>> {
        match self {
            Base::DiagGaussian(b) => b.log_prob(params, z),
            Base::StandardNormal(b) => b.log_prob(z),
            Base::GaussianMixture(b) => b.log_prob(params, z),
            Base::Uniform(b) => b.log_prob(z),
        }
    }

    /// `n` draws on `tape` and their log-density (`n x d` and `n x 1`).
    pub fn sample<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        match self {
            Base::DiagGaussian(b) => b.sample(params, tape, n, rng),
            Base::StandardNormal(b) => b.sample(tape, n, rng),
            Base::GaussianMixture(b) => b.sample(params, tape, n, rng),
            Base::Uniform(b) => b.sample(tape, n, rng),
        }
    }
}

/// A fixed standard normal, without parameters: zuko's `DiagNormal(0, 1)` base.
#[derive(Clone, Debug)]
pub struct StandardNormal {
    dim: usize,
}

impl StandardNormal {
    /// Zero mean and log-scale, as constants on `like`'s tape.
    fn moments<B: Backend>(&self, tape: &Tape<B>) -> Result<(Var<B>, Var<B>)> {
        let zeros = tape.constant(Tensor::zeros(tape.backend(), (1, self.dim))?);
        Ok((zeros.clone(), zeros))
    }

    /// log N(z; 0, I) per row (`rows x 1`).
    pub fn log_prob<B: Backend>(&self, z: &Var<B>) -> Result<Var<B>> {
        let (loc, log_scale) = self.moments(z.tape())?;
        Ok(z.diag_normal_log_prob(&loc, &log_scale)?)
    }

    /// `n` draws on `tape` and their log-density.
    pub fn sample<B: Backend>(
        &self,
        tape: &Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        let z = tape.constant(Tensor::randn(tape.backend(), (n, self.dim), rng)?);
        let log_p = self.log_prob(&z)?;
        Ok((z, log_p))
    }
}

fn no_dimensions() -> Error {
    Error::Config("a distribution needs at least one dimension".into())
}

/// normflows' `GaussianMixture`: `K` diagonal Gaussians with means `q0.loc` (`K x d`), log
/// standard deviations `q0.log_scale` (`K x d`) and mixture weights `softmax(q0.weight_scores)`
/// (`1 x K`):
///
/// `log q(z) = logsumexp_k [log w_k + log N(z; loc_k, diag(exp(log_scale_k))^2)]`,
///
/// computed through the log-sum-exp, so it stays finite far from every component.
///
/// Initialised as normflows does when given no values: standard normal means (drawn from
/// the seed), unit scales (`log_scale = 0`) and equal weights (`weight_scores = -ln K`).
/// normflows stores `loc` and `log_scale` with a leading axis of 1 (`1 x K x d`); here they
/// are `K x d`. When not `trainable` the three tensors are still registered (normflows keeps
/// them as buffers, in its state_dict), but they enter every tape as constants, so they get
/// no gradient and optimizers leave them alone.
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape, Tensor};
/// use flow_layers::GaussianMixture;
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let mixture = GaussianMixture::new(&mut params, &cpu, 1, 2, true, &mut rng(0))?;
/// let loc = params.id("q0.loc").unwrap();
/// params.set(loc, Tensor::from_vec(&cpu, (2, 1), vec![-3.0, 3.0])?)?;
///
/// // Halfway between two unit Gaussians of equal weight: the density of either.
/// let tape = Tape::new(&cpu);
/// let z = tape.constant(Tensor::from_vec(&cpu, (1, 1), vec![0.0])?);
/// let log_q = mixture.log_prob(&params, &z)?.scalar_value()?;
/// let log_n = -0.5 * (2.0 * std::f64::consts::PI).ln() - 4.5;
/// assert!((log_q - log_n).abs() < 1e-12);
///
/// // Draws pick a component by its weight, then move through its mean and scale.
/// let (z, log_q) = mixture.sample(&params, &tape, 3, &mut rng(1))?;
/// assert_eq!((z.shape().rows, log_q.shape().cols), (3, 1));
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GaussianMixture {
    dim: usize,
    components: usize,
    trainable: bool,
    loc: ParamId,
    log_scale: ParamId,
    weight_scores: ParamId,
}

impl GaussianMixture {
    /// `components` Gaussians over `dim` features, their means drawn from `rng`.
    pub fn new<B: Backend>(
        params: &mut ParamStore<B>,
        backend: &B,
        dim: usize,
        components: usize,
        trainable: bool,
        rng: &mut FlowRng,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(no_dimensions());
        }
        if components == 0 {
            return Err(Error::Config(
                "a Gaussian mixture needs at least one component".into(),
            ));
        }
        let loc = Tensor::randn(backend, (components, dim), rng)?;
        let weight_scores = Tensor::full(
            backend,
            (1, components),
            B::Elem::of(-(components as f64).ln()),
        )?;
        Ok(GaussianMixture {
            dim,
            components,
            trainable,
            loc: params.add("q0.loc", loc)?,
            log_scale: params.add("q0.log_scale", Tensor::zeros(backend, (components, dim))?)?,
            weight_scores: params.add("q0.weight_scores", weight_scores)?,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of components `K`.
    pub fn components(&self) -> usize {
        self.components
    }

    /// Whether the parameters are learnt (bound as parameters) or fixed (bound as constants).
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// The mixture weights `softmax(weight_scores)`, in f64.
    pub fn weights<B: Backend>(&self, params: &ParamStore<B>) -> Result<Vec<f64>> {
        let scores = params.get(self.weight_scores)?.to_f64s()?;
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        Ok(exp.into_iter().map(|e| e / total).collect())
    }

    fn bind<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &Tape<B>,
        id: ParamId,
    ) -> Result<Var<B>> {
        Ok(if self.trainable {
            tape.param(params, id)?
        } else {
            tape.constant(params.get(id)?.clone())
        })
    }

    /// `(loc, log_scale, weight_scores)` bound into `tape`.
    fn bound<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &Tape<B>,
    ) -> Result<(Var<B>, Var<B>, Var<B>)> {
        Ok((
            self.bind(params, tape, self.loc)?,
            self.bind(params, tape, self.log_scale)?,
            self.bind(params, tape, self.weight_scores)?,
        ))
    }

    /// log q(z) per row (`rows x 1`).
    pub fn log_prob<B: Backend>(&self, params: &ParamStore<B>, z: &Var<B>) -> Result<Var<B>> {
        let (loc, log_scale, weight_scores) = self.bound(params, z.tape())?;
        Self::log_density(z, &loc, &log_scale, &weight_scores)
    }

    /// The mixture's log-density at each row of `z` (`n x d`) for explicit `loc` and
    /// `log_scale` (`K x d`) and `weight_scores` (`1 x K`), differentiable in all four.
    pub fn log_density<B: Backend>(
        z: &Var<B>,
        loc: &Var<B>,
        log_scale: &Var<B>,
        weight_scores: &Var<B>,
    ) -> Result<Var<B>> {
        let (k, d) = (loc.shape().rows, loc.shape().cols);
        if k == 0
            || log_scale.shape() != loc.shape()
            || weight_scores.shape() != (1, k).into()
            || z.shape().cols != d
        {
            return Err(Error::Config(format!(
                "Gaussian mixture: z {}, loc {}, log_scale {}, weight_scores {} (need n x d, K x d, K x d, 1 x K)",
                z.shape(),
                loc.shape(),
                log_scale.shape(),
                weight_scores.shape()
            )));
        }
        let tape = z.tape();
        let log_weights = weight_scores.log_softmax_cols()?;
        // Row j of a K x d parameter as e_j^T @ parameter (1 x d), differentiably.
        let components = (0..k)
            .map(|j| {
                let pick = tape.constant(one_hot(tape.backend(), 1, k, &[j])?);
                let loc_j = pick.matmul(loc)?;
                let log_scale_j = pick.matmul(log_scale)?;
                Ok(z.diag_normal_log_prob(&loc_j, &log_scale_j)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Var<B>> = components.iter().collect();
        let joint = Var::concat_cols(&refs)?.add(&log_weights)?;
        Ok(joint.logsumexp_cols()?)
    }

    /// `n` draws on `tape` and their mixture log-density. Each draw's component is picked by
    /// the weights (a categorical draw from `rng`), then `z = loc_k + exp(log_scale_k) * eps`
    /// with `eps` standard normal: differentiable (reparametrised) in `loc` and `log_scale`
    /// given the components; the weights enter the log-density only.
    pub fn sample<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        let weights = self.weights(params)?;
        let picks: Vec<usize> = (0..n).map(|_| categorical(&weights, rng)).collect();
        let eps = Tensor::randn(tape.backend(), (n, self.dim), rng)?;
        let (loc, log_scale, weight_scores) = self.bound(params, tape)?;
        let pick = tape.constant(one_hot(tape.backend(), n, self.components, &picks)?);
        let z = tape
            .constant(eps)
            .mul(&pick.matmul(&log_scale.exp()?)?)?
            .add(&pick.matmul(&loc)?)?;
        let log_q = Self::log_density(&z, &loc, &log_scale, &weight_scores)?;
        Ok((z, log_q))
    }
}

/// A `rows x cols` matrix with a 1 in column `hot[i]` of row `i`.
fn one_hot<B: Backend>(backend: &B, rows: usize, cols: usize, hot: &[usize]) -> Result<Tensor<B>> {
    let mut data = vec![0.0; rows * cols];
    for (i, &j) in hot.iter().enumerate() {
        data[i * cols + j] = 1.0;
    }
    Ok(Tensor::from_f64s(backend, (rows, cols), &data)?)
}

/// An index drawn with probabilities `weights` (which sum to 1), by inverting the CDF at
/// one uniform draw.
fn categorical(weights: &[f64], rng: &mut FlowRng) -> usize {
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    for (k, &w) in weights.iter().enumerate() {
        cumulative += w;
        if u < cumulative {
            return k;
        }
    }
    // Rounding left the total a hair below u: the last component that can be drawn.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// normflows' `Uniform`: the uniform distribution on the box `[low, high]^d`, with no
/// parameters. Inside the (closed) box `log q(z) = -d ln(high - low)`.
///
/// **Outside the box `log q(z)` is `-inf`**, as in normflows (a finite stand-in would be a
/// density the model does not have). The value does not depend on `z` anywhere (it is
/// piecewise constant), so it enters the tape as a constant: no gradient flows through it and
/// no `-inf` or NaN reaches any gradient. A flow's log-density at a point whose latent falls
/// outside is `-inf`, and the forward KL of a batch holding one is `+inf` (with finite
/// gradients from the other terms): a training loop sees a non-finite loss rather than a
/// silently wrong one. A row with a NaN coordinate gets NaN. Bounds are compared at the
/// backend's precision (`low` and `high` rounded to its element type), so every draw is
/// inside.
///
/// ```
/// use flow_core::{rng, Cpu, Tape, Tensor};
/// use flow_layers::Uniform;
///
/// let cpu = Cpu::<f64>::new();
/// let box2 = Uniform::new(2, -1.0, 3.0)?;
/// let tape = Tape::new(&cpu);
/// let z = tape.constant(Tensor::from_vec(&cpu, (2, 2), vec![0.0, 2.5, 0.0, 3.5])?);
/// let log_q = box2.log_prob(&z)?.value().to_vec()?;
/// assert_eq!(log_q, vec![-2.0 * 4f64.ln(), f64::NEG_INFINITY]);
///
/// let (z, log_q) = box2.sample(&tape, 100, &mut rng(0))?;
/// assert!(z.value().to_vec()?.iter().all(|&v| (-1.0..=3.0).contains(&v)));
/// assert!(log_q.value().to_vec()?.iter().all(|&l| l == -2.0 * 4f64.ln()));
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Uniform {
    dim: usize,
    low: f64,
    high: f64,
}

impl Uniform {
    /// The box `[low, high]^dim`; the bounds must be finite with `low < high`.
    pub fn new(dim: usize, low: f64, high: f64) -> Result<Self> {
        if dim == 0 {
            return Err(no_dimensions());
        }
        if !(low.is_finite() && high.is_finite() && low < high && (high - low).is_finite()) {
            return Err(Error::Config(format!(
                "a uniform base needs finite bounds low < high, got [{low}, {high}]"
            )));
        }
        Ok(Uniform { dim, low, high })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn low(&self) -> f64 {
        self.low
    }

    pub fn high(&self) -> f64 {
        self.high
    }

    /// The log-density inside the box, `-d ln(high - low)`.
    pub fn log_density_inside(&self) -> f64 {
        -(self.dim as f64) * (self.high - self.low).ln()
    }

    /// The bounds rounded to `B`'s element type, checked to stay finite and distinct.
    fn bounds<B: Backend>(&self) -> Result<(f64, f64)> {
        let (low, high) = (
            B::Elem::of(self.low).as_f64(),
            B::Elem::of(self.high).as_f64(),
        );
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(Error::Config(format!(
                "uniform base [{}, {}]: the bounds are not finite and distinct in {}",
                self.low,
                self.high,
                <B::Elem as Element>::NAME
            )));
        }
        Ok((low, high))
    }

    /// log q(z) per row (`rows x 1`): `-d ln(high - low)` inside the box, `-inf` outside,
    /// NaN for a row with a NaN. A constant of the tape (see the type's documentation).
    pub fn log_prob<B: Backend>(&self, z: &Var<B>) -> Result<Var<B>> {
        let (rows, cols) = (z.shape().rows, z.shape().cols);
        if cols != self.dim {
            return Err(Error::Width {
                what: "uniform log_prob",
                expected: self.dim,
                got: cols,
            });
        }
        let (low, high) = self.bounds::<B>()?;
        let inside = self.log_density_inside();
        let values = z.value().to_f64s()?;
        let log_q: Vec<f64> = values
            .chunks(cols)
            .map(|row| {
                if row.iter().any(|v| v.is_nan()) {
                    f64::NAN
                } else if row.iter().all(|&v| low <= v && v <= high) {
                    inside
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let tape = z.tape();
        Ok(tape.constant(Tensor::from_f64s(tape.backend(), (rows, 1), &log_q)?))
    }

    /// `n` draws `low + (high - low) * u`, `u` uniform on `[0, 1)`, and their log-density;
    /// constants of the tape.
    pub fn sample<B: Backend>(
        &self,
        tape: &Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        self.bounds::<B>()?;
        let z = Tensor::rand_uniform(tape.backend(), (n, self.dim), self.low, self.high, rng)?;
        let log_q = Tensor::full(
            tape.backend(),
            (n, 1),
            B::Elem::of(self.log_density_inside()),
        )?;
        Ok((tape.constant(z), tape.constant(log_q)))
    }
}
