//! Planar flows (Rezende & Mohamed 2015, arXiv:1505.05770) with normflows' semantics:
//! `f(z) = z + u_hat h(w·z + b)`, where `u_hat` is `u` moved along `w` so that
//! `w·u_hat >= -1` and the map stays invertible.
//!
//! The forward map and its log-determinant are closed form. The inverse is not: it reduces
//! to one monotone scalar equation per sample along `w`, solved numerically (tanh) or by
//! cases (leaky ReLU), and then expressed on the tape so that its gradients are those of
//! the exact inverse (see [`Planar`]).

use crate::error::{Error, Result};
use crate::flow::{check_width, Flow};
use crate::registry::{BuildContext, LayerKind, LayerSpec};
use crate::spec::{BaseSpec, FlowSpec};
use flow_core::{Backend, Element, ParamId, ParamStore, Tape, Tensor, UnaryOp, Var};
use serde::{Deserialize, Serialize};

/// Negative slope of the leaky ReLU a planar flow may use (normflows' fixed 0.2).
pub const PLANAR_LEAKY_SLOPE: f64 = 0.2;

/// Relative tolerance of the scalar solve behind the tanh inverse (before the final
/// Newton step on the tape, which refines it further).
const SOLVE_TOL: f64 = 1e-13;
/// Safeguarded Newton iterations before the solve gives up.
const MAX_ITERATIONS: usize = 200;

/// The nonlinearity `h` of a planar flow: normflows' `act="tanh"` (the default) or
/// `act="leaky_relu"` (negative slope [`PLANAR_LEAKY_SLOPE`]). Serialised in snake case.
///
/// ```
/// use flow_layers::PlanarActivation;
/// assert_eq!(PlanarActivation::default(), PlanarActivation::Tanh);
/// assert_eq!(serde_json::to_string(&PlanarActivation::LeakyRelu).unwrap(), "\"leaky_relu\"");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanarActivation {
    #[default]
    Tanh,
    LeakyRelu,
}

/// A planar flow, `x = f(z) = z + u_hat h(w·z + b)` (latent to data), as normflows'
/// `Planar`:
///
/// - parameters `{prefix}.u` (`1 x dim`), `{prefix}.w` (`1 x dim`) and `{prefix}.b`
///   (`1 x 1`; normflows' `(1,)`), registered in that order and initialised as normflows
///   does: `u ~ U(-sqrt(2), sqrt(2))`, `w ~ U(-sqrt(2 / dim), sqrt(2 / dim))`, `b = 0`;
/// - the invertibility constraint `u_hat = u + (m(w·u) - w·u) w / |w|^2` with
///   `m(a) = -1 + softplus(a)`, so that `w·u_hat = m(w·u) > -1` whatever `u` and `w` are;
/// - log|det dx/dz| = `log|1 + h'(w·z + b) w·u_hat|`, evaluated as
///   `log((1 - h') + softplus(w·u) h')`, a sum of non-negative terms, so that it stays
///   accurate when `w·u_hat` is close to -1.
///
/// The inverse has no closed form. With `lambda = w·z + b` and `l = w·x + b`, the forward
/// map gives `lambda + (w·u_hat) h(lambda) = l`, strictly increasing in `lambda`. For tanh
/// it is solved per sample by Newton's method safeguarded by bisection inside the bracket
/// `[l - |w·u_hat|, l + |w·u_hat|]`; then one more Newton step is recorded on the tape,
/// from the solution held constant: it keeps the value and carries the gradient of the
/// implicit function (`d lambda = -dF / F'` for the residual `F`), so that
/// `z = x - u_hat h(lambda)` and the inverse log-det have the exact inverse's first
/// derivatives in `x` and in the parameters. (Second derivatives through the solve are not
/// exact.) For the leaky ReLU the equation is piecewise linear and solved on the tape in
/// closed form: `h(lambda) = a l / (1 + a w·u_hat)` with `a` the slope on `l`'s side of 0
/// (the sign of `l` is that of `lambda`). Non-finite input, or a solve that does not
/// converge, is [`Error::NotInvertible`]; so is `w = 0`, where `u_hat` is undefined.
///
/// The layer takes no context.
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape, Tensor};
/// use flow_layers::{BuildContext, Flow, Planar, PlanarActivation};
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let layer = Planar::new(
///     &mut BuildContext::new(&cpu, &mut params, "flows.0", 3, &mut rng(0)),
///     PlanarActivation::Tanh,
/// )?;
/// let tape = Tape::new(&cpu);
/// let z = tape.constant(Tensor::randn(&cpu, (4, 3), &mut rng(1))?);
/// let (x, log_det) = layer.forward(&params, &z, None)?;
/// let (z_back, inverse_log_det) = layer.inverse(&params, &x, None)?; // solved numerically
/// assert!(z_back.value().max_abs_diff(&z.value())? < 1e-10);
/// assert!(log_det.value().max_abs_diff(&inverse_log_det.neg()?.value())? < 1e-10);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Planar {
    dim: usize,
    activation: PlanarActivation,
    u: ParamId,
    w: ParamId,
    b: ParamId,
}

/// The layer's parameters bound on one tape, with the constraint applied.
struct Bound<B: Backend> {
    /// `1 x dim`.
    u_hat: Var<B>,
    /// `1 x dim`.
    w: Var<B>,
    /// `1 x 1`.
    b: Var<B>,
    /// `softplus(w·u) = 1 + w·u_hat`, `1 x 1`.
    s: Var<B>,
}

/// `h(lambda)`, `h'(lambda)` and `1 - h'(lambda)`, each `rows x 1`.
struct Slopes<B: Backend> {
    h: Var<B>,
    dh: Var<B>,
    one_minus_dh: Var<B>,
}

impl Planar {
    /// A planar layer over `cx.dim >= 1` features with normflows' initialisation (see
    /// [`Planar`]; random in either [`crate::Init`], as normflows), its parameters registered
    /// under `cx.prefix`.
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        activation: PlanarActivation,
    ) -> Result<Self> {
        let (backend, dim, rng) = (cx.backend, cx.dim, &mut *cx.rng);
        if dim == 0 {
            return Err(Error::Config("Planar needs at least 1 feature".into()));
        }
        let lim_u = 2f64.sqrt();
        let lim_w = (2.0 / dim as f64).sqrt();
        let u = Tensor::rand_uniform(backend, (1, dim), -lim_u, lim_u, rng)?;
        let w = Tensor::rand_uniform(backend, (1, dim), -lim_w, lim_w, rng)?;
        let u = cx.params.add(cx.name("u"), u)?;
        let w = cx.params.add(cx.name("w"), w)?;
        let b = cx
            .params
            .add(cx.name("b"), Tensor::zeros(backend, (1, 1))?)?;
        Ok(Planar {
            dim,
            activation,
            u,
            w,
            b,
        })
    }

    pub fn activation(&self) -> PlanarActivation {
        self.activation
    }

    /// `u`, `w` and `b`, in registration order.
    pub fn param_ids(&self) -> [ParamId; 3] {
        [self.u, self.w, self.b]
    }

    /// The constrained `u_hat` (`1 x dim`) the layer uses with the current parameters;
    /// `w·u_hat > -1`.
    pub fn u_hat<B: Backend>(&self, params: &ParamStore<B>) -> Result<Tensor<B>> {
        let backend = params.get(self.u)?.backend().clone();
        let tape = Tape::new(&backend);
        Ok(self.bind(params, &tape)?.u_hat.value())
    }

    fn bind<B: Backend>(&self, params: &ParamStore<B>, tape: &Tape<B>) -> Result<Bound<B>> {
        let w_sq: f64 = params.get(self.w)?.to_f64s()?.iter().map(|v| v * v).sum();
        if !(w_sq > 0.0 && w_sq.is_finite()) {
            return Err(Error::NotInvertible {
                layer: "Planar",
                reason: format!("|w|^2 = {w_sq}: the constraint on u needs a finite, non-zero w"),
            });
        }
        let u = tape.param(params, self.u)?;
        let w = tape.param(params, self.w)?;
        let b = tape.param(params, self.b)?;
        let inner = w.mul(&u)?.sum_all()?;
        let s = inner.softplus()?;
        // u_hat = u + (m(w·u) - w·u) w / |w|^2, m(a) = softplus(a) - 1.
        let coef = s
            .add_scalar(-1.0)?
            .sub(&inner)?
            .div(&w.square()?.sum_all()?)?;
        let u_hat = u.add(&w.mul(&coef)?)?;
        Ok(Bound { u_hat, w, b, s })
    }

    /// `v·w + b` per row (`rows x 1`).
    fn linear<B: Backend>(bound: &Bound<B>, v: &Var<B>) -> Result<Var<B>> {
        Ok(v.matmul_t(false, &bound.w, true)?.add(&bound.b)?)
    }

    /// `h`, `h'` and `1 - h'` at `lambda`. The leaky ReLU's slope is normflows'
    /// `(lambda < 0) * (slope - 1) + 1` (1 at 0), a constant of the tape.
    fn slopes<B: Backend>(&self, lambda: &Var<B>) -> Result<Slopes<B>> {
        Ok(match self.activation {
            PlanarActivation::Tanh => {
                let h = lambda.tanh()?;
                let one_minus_dh = h.square()?;
                let dh = one_minus_dh.neg()?.add_scalar(1.0)?;
                Slopes {
                    h,
                    dh,
                    one_minus_dh,
                }
            }
            PlanarActivation::LeakyRelu => {
                let tape = lambda.tape();
                let (dh, one_minus_dh) = leaky_slopes(&lambda.value())?;
                Slopes {
                    h: lambda.leaky_relu(PLANAR_LEAKY_SLOPE)?,
                    dh: tape.constant(dh),
                    one_minus_dh: tape.constant(one_minus_dh),
                }
            }
        })
    }

    /// `log(1 + h' w·u_hat) = log((1 - h') + softplus(w·u) h')`.
    fn log_det<B: Backend>(bound: &Bound<B>, slopes: &Slopes<B>) -> Result<Var<B>> {
        Ok(slopes.one_minus_dh.add(&slopes.dh.mul(&bound.s)?)?.log()?)
    }
}

/// `h'` and `1 - h'` of the leaky ReLU at each entry of `lambda` (normflows' convention:
/// slope 1 at 0).
fn leaky_slopes<B: Backend>(lambda: &Tensor<B>) -> Result<(Tensor<B>, Tensor<B>)> {
    let of = <B::Elem as Element>::of;
    // 1 where lambda < 0, else 0.
    let negative = lambda.unary(UnaryOp::Neg)?.unary(UnaryOp::Step)?;
    let dh = negative
        .unary(UnaryOp::MulScalar(of(PLANAR_LEAKY_SLOPE - 1.0)))?
        .unary(UnaryOp::AddScalar(of(1.0)))?;
    let one_minus_dh = negative.unary(UnaryOp::MulScalar(of(1.0 - PLANAR_LEAKY_SLOPE)))?;
    Ok((dh, one_minus_dh))
}

/// `Err(NotInvertible)` naming the first non-finite entry of `v`.
pub(crate) fn check_finite_input<B: Backend>(layer: &'static str, v: &Var<B>) -> Result<()> {
    let cols = v.shape().cols.max(1);
    match v.value().to_f64s()?.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NotInvertible {
            layer,
            reason: format!("non-finite input at row {}, column {}", i / cols, i % cols),
        }),
    }
}

/// The root of `g(lambda) = lambda + (s - 1) tanh(lambda) - l`, which increases strictly
/// (`g' = tanh^2 + s (1 - tanh^2) > 0` for `s > 0`): Newton's method, falling back to
/// bisection whenever a step leaves the bracket. `None` when it does not converge.
fn solve_tanh(l: f64, s: f64) -> Option<f64> {
    let c = s - 1.0;
    if !(l.is_finite() && s.is_finite() && s >= 0.0) {
        return None;
    }
    // |tanh| <= 1, so g(l - |c|) <= 0 <= g(l + |c|).
    let (mut lo, mut hi) = (l - c.abs(), l + c.abs());
    let mut lambda = (l - c * l.tanh()).clamp(lo, hi);
    for _ in 0..MAX_ITERATIONS {
        let t = lambda.tanh();
        let g = lambda + c * t - l;
        if g == 0.0 {
            return Some(lambda);
        }
        if g < 0.0 {
            lo = lambda;
        } else {
            hi = lambda;
        }
        let slope = t * t + s * (1.0 - t * t);
        let newton = lambda - g / slope;
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        let tol = SOLVE_TOL * (1.0 + next.abs());
        if (next - lambda).abs() <= tol || hi - lo <= tol {
            return Some(next);
        }
        lambda = next;
    }
    None
}

impl<B: Backend> Flow<B> for Planar {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Planar forward", self.dim, z)?;
        let bound = self.bind(params, z.tape())?;
        let lambda = Self::linear(&bound, z)?;
        let slopes = self.slopes(&lambda)?;
        let x = z.add(&slopes.h.mul(&bound.u_hat)?)?;
        Ok((x, Self::log_det(&bound, &slopes)?))
    }

    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("Planar inverse", self.dim, x)?;
        check_finite_input("Planar", x)?;
        let tape = x.tape();
        let bound = self.bind(params, tape)?;
        // l = w·x + b = lambda + (w·u_hat) h(lambda), lambda = w·z + b.
        let l = Self::linear(&bound, x)?;
        let s = bound.s.value().to_f64s()?[0];
        if !(s.is_finite() && s > 0.0) {
            return Err(Error::NotInvertible {
                layer: "Planar",
                reason: format!("1 + w·u_hat = softplus(w·u) = {s}"),
            });
        }
        let rows = x.shape().rows;
        let ls = l.value().to_f64s()?;
        if let Some(r) = ls.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotInvertible {
                layer: "Planar",
                reason: format!("row {r}: w·x + b = {} (non-finite parameters)", ls[r]),
            });
        }
        let (h, log_det) = match self.activation {
            PlanarActivation::Tanh => {
                let mut roots = Vec::with_capacity(rows);
                let mut slopes = Vec::with_capacity(rows);
                for (r, &lr) in ls.iter().enumerate() {
                    let root = solve_tanh(lr, s).ok_or_else(|| Error::NotInvertible {
                        layer: "Planar",
                        reason: format!(
                            "row {r}: no root of lambda + (w·u_hat) tanh(lambda) = {lr} \
                             (w·u_hat = {}) within {MAX_ITERATIONS} iterations",
                            s - 1.0
                        ),
                    })?;
                    let t = root.tanh();
                    roots.push(root);
                    slopes.push(t * t + s * (1.0 - t * t));
                }
                let backend = tape.backend();
                let root = tape.constant(Tensor::from_f64s(backend, (rows, 1), &roots)?);
                let slope = tape.constant(Tensor::from_f64s(backend, (rows, 1), &slopes)?);
                // One Newton step from the (constant) root: its value is the root, its
                // gradient that of the implicit function, -dF / F'.
                let residual = root
                    .add(&root.tanh()?.mul(&bound.s.add_scalar(-1.0)?)?)?
                    .sub(&l)?;
                let lambda = root.sub(&residual.div(&slope)?)?;
                let slopes = self.slopes(&lambda)?;
                let log_det = Self::log_det(&bound, &slopes)?.neg()?;
                (slopes.h, log_det)
            }
            PlanarActivation::LeakyRelu => {
                // On l's side of 0 (that of lambda), l = lambda (1 + a w·u_hat), so
                // h(lambda) = a lambda = a l / (1 + a w·u_hat), with
                // 1 + a w·u_hat = (1 - a) + a softplus(w·u) > 0.
                let (a, one_minus_a) = leaky_slopes(&l.value())?;
                let (a, one_minus_a) = (tape.constant(a), tape.constant(one_minus_a));
                let scale = one_minus_a.add(&a.mul(&bound.s)?)?;
                (a.mul(&l)?.div(&scale)?, scale.log()?.neg()?)
            }
        };
        let z = x.sub(&h.mul(&bound.u_hat)?)?;
        Ok((z, log_det))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&PlanarLayerConfig {
            activation: self.activation,
        })
    }
}

/// One [`Planar`] layer's configuration (stored as `"planar"`; `activation` defaults to
/// tanh when absent).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanarLayerConfig {
    #[serde(default)]
    pub activation: PlanarActivation,
}

impl LayerKind for Planar {
    const NAME: &'static str = "planar";
    type Config = PlanarLayerConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(Self::new(cx, config.activation)?))
    }

    /// `u` and `w` (`dim` each) and `b`.
    fn num_scalars(_: &Self::Config, dim: usize, _: usize) -> Option<usize> {
        dim.checked_mul(2)?.checked_add(1)
    }
}

/// A stack of `transforms` planar flows over a standard diagonal Gaussian, as normflows'
/// examples build them (`[nf.flows.Planar((dim,), act) for _ in range(K)]`).
///
/// ```
/// use flow_core::{rng, Cpu};
/// use flow_layers::{NormalizingFlow, PlanarConfig, Registry};
///
/// let spec = PlanarConfig { dim: 2, transforms: 8, ..Default::default() }.spec()?;
/// assert_eq!(spec.num_scalars(&Registry::<Cpu<f64>>::builtin())?, Some(2 * 2 + 8 * (2 * 2 + 1)));
/// let model = NormalizingFlow::new(&Cpu::<f64>::new(), spec, 0)?;
/// let (x, log_q) = model.sample(5, None, &mut rng(1))?;
/// assert!(model.log_prob(&x, None)?.max_abs_diff(&log_q)? < 1e-9);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PlanarConfig {
    pub dim: usize,
    pub transforms: usize,
    pub activation: PlanarActivation,
}

impl Default for PlanarConfig {
    /// 16 tanh planar flows in 2 dimensions, normflows' usual `K = 16`.
    fn default() -> Self {
        PlanarConfig {
            dim: 2,
            transforms: 16,
            activation: PlanarActivation::Tanh,
        }
    }
}

impl PlanarConfig {
    pub fn spec(&self) -> Result<FlowSpec> {
        if self.dim == 0 {
            return Err(Error::Config(
                "a planar flow needs at least 1 feature".into(),
            ));
        }
        Ok(FlowSpec {
            dim: self.dim,
            context: 0,
            base: BaseSpec::DiagGaussian,
            layers: vec![
                LayerSpec::of::<Planar>(&PlanarLayerConfig {
                    activation: self.activation
                });
                self.transforms
            ],
        })
    }
}
