//! Radial flows (Rezende & Mohamed 2015, arXiv:1505.05770) with normflows' semantics:
//! `f(z) = z + beta_hat (z - z_0) / (alpha + |z - z_0|)`, contracting or expanding space
//! around `z_0`, with `beta_hat >= -alpha` so that the map stays invertible.

use crate::error::{Error, Result};
use crate::flow::{check_width, Flow};
use crate::planar::check_finite_input;
use crate::registry::{BuildContext, LayerKind, LayerSpec, NoConfig};
use crate::spec::{BaseSpec, FlowSpec};
use flow_core::{Axis, Backend, ParamId, ParamStore, Tape, Tensor, UnaryOp, Var};

/// A radial flow, `x = f(z) = z + beta_hat h(r) (z - z_0)` with `r = |z - z_0|` and
/// `h(r) = 1 / (alpha + r)` (latent to data), as normflows' `Radial`:
///
/// - parameters `{prefix}.beta` (`1 x 1`; normflows' `(1,)`), `{prefix}.alpha` (`1 x 1`)
///   and `{prefix}.z_0` (`1 x dim`), registered in that order and initialised as normflows
///   does: with `lim = 1 / dim`, `beta ~ U(-lim - 1, lim - 1)`, `alpha ~ U(-lim, lim)`,
///   `z_0 ~ N(0, 1)`. (normflows' buffer `d` is the dimension, which the spec holds.)
/// - the layer uses `|alpha|` (normflows' `torch.abs(self.alpha)`) and
///   `beta_hat = softplus(beta) - |alpha| > -|alpha|`, which keeps it invertible;
/// - log|det dx/dz| = `(dim - 1) log(1 + beta_hat h) + log(1 + beta_hat h + beta_hat h'(r) r)`,
///   evaluated as `(dim - 1) log((r + s) / (a + r)) + log((r (r + 2a) + s a) / (a + r)^2)`
///   with `a = |alpha|` and `s = softplus(beta)`, sums of positive terms.
///
/// The inverse has no closed form in normflows; here it goes through the radius:
/// `|x - z_0| = r (1 + beta_hat / (a + r))` is increasing in `r >= 0`, and its root is that
/// of `r^2 + (s - |x - z_0|) r - a |x - z_0| = 0`, taken in a cancellation-free form. The
/// root is then put on the tape as one Newton step from its (constant) value, which carries
/// the gradient of the implicit function, and `z = z_0 + (x - z_0) (a + r) / (r + s)`, so
/// the inverse and its log-det have the exact inverse's first derivatives (including at
/// `x = z_0`, where the norm's gradient is taken as 0, as PyTorch does). Non-finite input
/// is [`Error::NotInvertible`], as is a point the layer does not reach (with `alpha = 0`,
/// the ball of radius `softplus(beta)` around `z_0`).
///
/// The layer takes no context.
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape, Tensor};
/// use flow_layers::{BuildContext, Flow, Radial};
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let layer = Radial::new(&mut BuildContext::new(&cpu, &mut params, "flows.0", 3, &mut rng(0)))?;
/// let tape = Tape::new(&cpu);
/// let z = tape.constant(Tensor::randn(&cpu, (4, 3), &mut rng(1))?);
/// let (x, log_det) = layer.forward(&params, &z, None)?;
/// let (z_back, inverse_log_det) = layer.inverse(&params, &x, None)?;
/// assert!(z_back.value().max_abs_diff(&z.value())? < 1e-10);
/// assert!(log_det.value().max_abs_diff(&inverse_log_det.neg()?.value())? < 1e-10);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Radial {
    dim: usize,
    beta: ParamId,
    alpha: ParamId,
    z_0: ParamId,
}

/// The layer's parameters bound on one tape.
struct Bound<B: Backend> {
    /// `|alpha|`, `1 x 1`.
    a: Var<B>,
    /// `softplus(beta) = beta_hat + |alpha|`, `1 x 1`.
    s: Var<B>,
    /// `1 x dim`.
    z_0: Var<B>,
}

impl Radial {
    /// A radial layer over `cx.dim >= 1` features with normflows' initialisation (see
    /// [`Radial`]; random in either [`crate::Init`]), its parameters registered under
    /// `cx.prefix`.
    pub fn new<B: Backend>(cx: &mut BuildContext<'_, B>) -> Result<Self> {
        let (backend, dim, rng, params) = (cx.backend, cx.dim, &mut *cx.rng, &mut *cx.params);
        let prefix = &cx.prefix;
        if dim == 0 {
            return Err(Error::Config("Radial needs at least 1 feature".into()));
        }
        let lim = 1.0 / dim as f64;
        let beta = Tensor::rand_uniform(backend, (1, 1), -lim - 1.0, lim - 1.0, rng)?;
        let beta = params.add(format!("{prefix}.beta"), beta)?;
        let alpha = Tensor::rand_uniform(backend, (1, 1), -lim, lim, rng)?;
        let alpha = params.add(format!("{prefix}.alpha"), alpha)?;
        let z_0 = params.add(
            format!("{prefix}.z_0"),
            Tensor::randn(backend, (1, dim), rng)?,
        )?;
        Ok(Radial {
            dim,
            beta,
            alpha,
            z_0,
        })
    }

    /// `beta`, `alpha` and `z_0`, in registration order.
    pub fn param_ids(&self) -> [ParamId; 3] {
        [self.beta, self.alpha, self.z_0]
    }

    fn bind<B: Backend>(&self, params: &ParamStore<B>, tape: &Tape<B>) -> Result<Bound<B>> {
        Ok(Bound {
            a: tape.param(params, self.alpha)?.abs()?,
            s: tape.param(params, self.beta)?.softplus()?,
            z_0: tape.param(params, self.z_0)?,
        })
    }

    /// log|det dx/dz| at radius `r` (`rows x 1`).
    fn log_det<B: Backend>(&self, bound: &Bound<B>, r: &Var<B>) -> Result<Var<B>> {
        let a_r = r.add(&bound.a)?;
        let log_a_r = a_r.log()?;
        // log(1 + beta_hat h + beta_hat h' r) = log(r (r + 2a) + s a) - 2 log(a + r).
        let radial = r
            .mul(&r.add(&bound.a.mul_scalar(2.0)?)?)?
            .add(&bound.s.mul(&bound.a)?)?
            .log()?
            .sub(&log_a_r.mul_scalar(2.0)?)?;
        if self.dim == 1 {
            return Ok(radial);
        }
        // (d - 1) log(1 + beta_hat h) = (d - 1) (log(r + s) - log(a + r)).
        let tangential = r.add(&bound.s)?.log()?.sub(&log_a_r)?;
        Ok(radial.add(&tangential.mul_scalar((self.dim - 1) as f64)?)?)
    }
}

/// The Euclidean norm of each row (`rows x 1`), with gradient 0 at a zero row (where the
/// plain `sqrt` would give NaN).
fn row_norms<B: Backend>(v: &Var<B>) -> Result<Var<B>> {
    let tape = v.tape();
    let squares = v.square()?.sum(Axis::Cols)?;
    let shape = squares.shape();
    let positive = tape.constant(squares.value().unary(UnaryOp::Step)?);
    let ones = tape.constant(Tensor::ones(tape.backend(), shape)?);
    let zeros = tape.constant(Tensor::zeros(tape.backend(), shape)?);
    let safe = Var::select(&positive, &squares, &ones)?.sqrt()?;
    Ok(Var::select(&positive, &safe, &zeros)?)
}

/// The radius `r >= 0` of `z` given that of `x`: the non-negative root of
/// `r^2 + (s - r_x) r - a r_x = 0`, without cancellation.
fn solve_radius(r_x: f64, a: f64, s: f64) -> f64 {
    let p = s - r_x;
    let disc = p.hypot(2.0 * (a * r_x).sqrt());
    if p > 0.0 {
        2.0 * a * r_x / (p + disc)
    } else {
        0.5 * (disc - p)
    }
}

impl<B: Backend> Flow<B> for Radial {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Radial forward", self.dim, z)?;
        let bound = self.bind(params, z.tape())?;
        let dz = z.sub(&bound.z_0)?;
        let r = row_norms(&dz)?;
        let beta_hat = bound.s.sub(&bound.a)?;
        let h = beta_hat.div(&r.add(&bound.a)?)?;
        let x = z.add(&h.mul(&dz)?)?;
        Ok((x, self.log_det(&bound, &r)?))
    }

    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Radial inverse", self.dim, x)?;
        check_finite_input("Radial", x)?;
        let tape = x.tape();
        let bound = self.bind(params, tape)?;
        let (a, s) = (bound.a.value().to_f64s()?[0], bound.s.value().to_f64s()?[0]);
        if !(a.is_finite() && s.is_finite() && s > 0.0) {
            return Err(Error::NotInvertible {
                layer: "Radial",
                reason: format!("|alpha| = {a}, softplus(beta) = {s}"),
            });
        }
        let dx = x.sub(&bound.z_0)?;
        let r_x = row_norms(&dx)?;
        let rows = x.shape().rows;
        let mut roots = Vec::with_capacity(rows);
        let mut slopes = Vec::with_capacity(rows);
        for (row, &rx) in r_x.value().to_f64s()?.iter().enumerate() {
            let r = solve_radius(rx, a, s);
            if !r.is_finite() || (a == 0.0 && rx <= s) {
                return Err(Error::NotInvertible {
                    layer: "Radial",
                    reason: format!(
                        "row {row}: no radius maps to |x - z_0| = {rx} \
                         (|alpha| = {a}, softplus(beta) = {s})"
                    ),
                });
            }
            roots.push(r);
            // d/dr [r (r + s) / (a + r)] = (r (r + 2a) + s a) / (a + r)^2 > 0.
            slopes.push((r * (r + 2.0 * a) + s * a) / (a + r).powi(2));
        }
        let backend = tape.backend();
        let root = tape.constant(Tensor::from_f64s(backend, (rows, 1), &roots)?);
        let slope = tape.constant(Tensor::from_f64s(backend, (rows, 1), &slopes)?);
        // One Newton step on r (r + s) / (a + r) = r_x from the constant root: the root's
        // value, the implicit function's gradient.
        let residual = root
            .mul(&root.add(&bound.s)?)?
            .div(&root.add(&bound.a)?)?
            .sub(&r_x)?;
        let r = root.sub(&residual.div(&slope)?)?;
        let ratio = r.add(&bound.a)?.div(&r.add(&bound.s)?)?;
        let z = bound.z_0.add(&dx.mul(&ratio)?)?;
        Ok((z, self.log_det(&bound, &r)?.neg()?))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&NoConfig {})
    }
}

impl LayerKind for Radial {
    const NAME: &'static str = "radial";
    type Config = NoConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        let _ = config;
        Ok(Box::new(Self::new(cx)?))
    }

    /// `z_0` (`dim`), `alpha` and `beta`.
    fn num_scalars(_: &Self::Config, dim: usize, _: usize) -> Option<usize> {
        dim.checked_add(2)
    }
}

/// A stack of `transforms` radial flows over a standard diagonal Gaussian, as normflows'
/// examples build them (`[nf.flows.Radial((dim,)) for _ in range(K)]`).
///
/// ```
/// use flow_core::{rng, Cpu};
/// use flow_layers::{NormalizingFlow, RadialConfig, Registry};
///
/// let spec = RadialConfig { dim: 3, transforms: 4 }.spec()?;
/// assert_eq!(spec.num_scalars(&Registry::<Cpu<f64>>::builtin())?, Some(2 * 3 + 4 * (3 + 2)));
/// let model = NormalizingFlow::new(&Cpu::<f64>::new(), spec, 0)?;
/// let (x, log_q) = model.sample(5, None, &mut rng(1))?;
/// assert!(model.log_prob(&x, None)?.max_abs_diff(&log_q)? < 1e-9);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RadialConfig {
    pub dim: usize,
    pub transforms: usize,
}

impl Default for RadialConfig {
    /// 16 radial flows in 2 dimensions, normflows' usual `K = 16`.
    fn default() -> Self {
        RadialConfig {
            dim: 2,
            transforms: 16,
        }
    }
}

impl RadialConfig {
    pub fn spec(&self) -> Result<FlowSpec> {
        if self.dim == 0 {
            return Err(Error::Config(
                "a radial flow needs at least 1 feature".into(),
            ));
        }
        Ok(FlowSpec {
            dim: self.dim,
            context: 0,
            base: BaseSpec::DiagGaussian,
            layers: vec![LayerSpec::of::<Radial>(&NoConfig {}); self.transforms],
        })
    }
}
