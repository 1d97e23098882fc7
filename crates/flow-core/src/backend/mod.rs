//! The `Backend` trait: storage and the primitive tensor operations that the tape and the
//! layers are written against. A backend is a value (the CPU backend is zero-sized, a GPU
//! backend would hold its device handle); storage carries its own shape.
//!
//! Backend methods assume validated arguments: shape checks live in [`crate::Tensor`], so
//! every backend gets them once. The primitives (creation, transfer, random draws, maps,
//! reductions, column and per-row indexing) have no default: a backend implements each on its own
//! device. Hot compositions (affine coupling, linear layers, the spline, Adam) are trait
//! methods with a default built from the primitives, so that a backend may replace them
//! with one fused kernel without any layer changing. No default computes on the host (the
//! composed spline uploads its constant cumulative-sum matrix once per bin count and backend).

mod composed;
mod counted;
use crate::ops::rational_quadratic::composed_side_by_side as composed_spline;
pub use counted::{Calls, Counted};
pub mod cpu;

use crate::element::Element;
use crate::error::Result;
use crate::random::FlowRng;
use crate::shape::{Axis, Shape};
use num_traits::{Float as _, One as _, Zero as _};
use std::fmt::Debug;

/// Elementwise maps of one operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp<E> {
    Neg,
    Exp,
    Log,
    Log1p,
    Sqrt,
    Square,
    Abs,
    Tanh,
    Sigmoid,
    Softplus,
    Relu,
    /// `x` for `x > 0`, `slope * x` otherwise.
    LeakyRelu(E),
    /// `x` for `x > 0`, `alpha * (exp(x) - 1)` otherwise.
    Elu(E),
    AddScalar(E),
    MulScalar(E),
    Powi(i32),
    /// -1, 0 or 1. Its derivative is zero.
    Sign,
    /// 1 where `x > 0`, else 0. Its derivative is zero.
    Step,
    /// The `k`-th derivative of swish, `x sigmoid(x)` (`k = 0`: swish itself), for
    /// `0 <= k <= MAX_SWISH_DERIVATIVE`; each is the derivative of the one before, so
    /// gradients through LipSwish activations (residual flows) are fused maps to any order
    /// the estimators need.
    Swish(i32),
    /// ELU's derivative, `1` for `x > 0`, `alpha exp(x)` otherwise: ELU's gradient as one
    /// fused map (its own derivative is itself less [`UnaryOp::Step`]).
    EluDerivative(E),
}

/// The highest derivative of swish [`UnaryOp::Swish`] computes.
pub const MAX_SWISH_DERIVATIVE: i32 = 4;

impl<E> UnaryOp<E> {
    /// Piecewise-constant maps: their gradient is zero everywhere it exists.
    pub fn is_piecewise_constant(&self) -> bool {
        matches!(self, UnaryOp::Sign | UnaryOp::Step)
    }
}

/// Elementwise maps of two operands, with row and column broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `a` where `b > 0`, else 0: the ReLU backward in one pass. Not differentiable in `b`.
    Gate,
}

/// An activation a linear layer applies in the same pass ([`Backend::linear`]). Each is
/// increasing with a positive slope on either side of zero, so its derivative is a function of
/// the output's sign: the fused backward reads the output, not the pre-activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation<E> {
    Identity,
    Relu,
    /// `x` for `x > 0`, `slope * x` otherwise, with `slope > 0` (checked by `Var`).
    LeakyRelu(E),
}

impl<E: Element> Activation<E> {
    /// The same map as a unary op (`None` for the identity).
    pub fn unary(self) -> Option<UnaryOp<E>> {
        match self {
            Activation::Identity => None,
            Activation::Relu => Some(UnaryOp::Relu),
            Activation::LeakyRelu(slope) => Some(UnaryOp::LeakyRelu(slope)),
        }
    }
}

/// How an affine coupling turns the conditioner's raw scale output `r` into the log-scale
/// `s` of `x2 = z2 * exp(s) + shift` (normflows' `scale_map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CouplingScale {
    /// RealNVP: `s = r`.
    Exp,
    /// Glow (normflows' `sigmoid`): `x2 = z2 / sigmoid(r + 2) + shift`, so
    /// `s = -log sigmoid(r + 2) = softplus(-(r + 2))`.
    Sigmoid,
}

/// Which way an invertible transform runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Latent to data: `y2 = v2 * exp(s) + shift`, log-det `+sum(s)`.
    Forward,
    /// Data to latent: `y2 = (v2 - shift) * exp(-s)`, log-det `-sum(s)`.
    Inverse,
}

/// A monotonic rational-quadratic spline (Durkan et al. 2019): `bins` bins on
/// `[-tail_bound, tail_bound]`, the identity outside, knot derivative 1 at both ends. Each
/// transformed entry has `3 bins - 1` unconstrained parameters: bin widths and heights (a
/// softmax each, floored at `min_bin_width` / `min_bin_height` of `2 tail_bound`) and inner
/// knot derivatives (zuko's `exp(raw / (1 + |raw| / L))` with `L = -ln min_derivative`, so
/// within `(min_derivative, 1 / min_derivative)` and 1 at a raw 0: zero parameters are the
/// identity). Checked by the layers that build it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RationalQuadratic {
    pub bins: usize,
    pub tail_bound: f64,
    pub min_bin_width: f64,
    pub min_bin_height: f64,
    pub min_derivative: f64,
}

impl RationalQuadratic {
    /// `3 bins - 1`: widths, heights, inner derivatives.
    pub fn params_per_feature(&self) -> usize {
        3 * self.bins - 1
    }

    /// `L = -ln min_derivative`: the bound of a knot derivative's logarithm.
    pub fn log_derivative_bound(&self) -> f64 {
        -self.min_derivative.ln()
    }
}

/// Reductions along an [`Axis`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// Hyperparameters of one Adam update (PyTorch's semantics: weight decay is added to the
/// gradient; `bias_correction{1,2}` are `1 - beta^t`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep<E> {
    pub lr: E,
    pub beta1: E,
    pub beta2: E,
    pub eps: E,
    pub weight_decay: E,
    pub bias_correction1: E,
    pub bias_correction2: E,
}

/// Storage and primitive operations of one device and element type.
///
/// Every method that touches storage is fallible: a device may run out of memory, fail a
/// launch or a copy, or report an earlier asynchronous failure. Such failures come back as
/// [`Error::Backend`](crate::Error::Backend) (built with [`backend_error`]); arguments were
/// validated by [`crate::Tensor`] before a backend sees them.
pub trait Backend: Clone + Debug + Send + Sync + 'static {
    type Elem: Element;
    type Storage: Clone + Debug + Send + Sync;
    /// Storage of a list of indices on the device: column permutations, per-row positions,
    /// bin numbers ([`crate::IndexTensor`] wraps it with its length and bound).
    type Index: Clone + Debug + Send + Sync;

    /// A short name for reports ("cpu-f32", "cuda:0-f32"). It also identifies the device:
    /// host data kept with copies per backend ([`crate::Resident`]) is keyed by the backend's
    /// type and name, so two backends of one type whose storage cannot be shared (two GPUs)
    /// must have different names.
    fn name(&self) -> String;

    // ---- creation and transfer ----
    /// Moves row-major host values into storage; `data.len() == shape.len()` is
    /// guaranteed by the caller.
    fn upload(&self, shape: Shape, data: Vec<Self::Elem>) -> Result<Self::Storage>;
    /// Copies storage back to row-major host values.
    fn download(&self, s: &Self::Storage) -> Result<Vec<Self::Elem>>;
    fn full(&self, shape: Shape, value: Self::Elem) -> Result<Self::Storage>;
    /// The shape storage carries (host metadata: never fails).
    fn shape(&self, s: &Self::Storage) -> Shape;

    /// Moves host indices into index storage.
    fn upload_index(&self, index: &[usize]) -> Result<Self::Index>;
    /// Copies index storage back to the host.
    fn download_index(&self, index: &Self::Index) -> Result<Vec<usize>>;

    /// Waits until every operation issued so far has finished (a device backend's queue);
    /// errors that a device reports late surface here. The CPU computes eagerly: a no-op.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    // ---- random draws ----

    /// `shape` standard normal draws (row-major) from the seeded stream `rng`, which they
    /// advance. The CPU backend draws on the host ([`crate::random::standard_normals`]); a
    /// device backend draws on the device from the stream's seed, stream number and
    /// position (`rng.get_seed()`, `get_stream()`, `get_word_pos()`), then advances `rng`
    /// past what it used, so that draws stay reproducible per seed.
    fn randn(&self, shape: Shape, rng: &mut FlowRng) -> Result<Self::Storage>;

    /// `shape` uniform draws on `[low, high)` from `rng`, as [`Backend::randn`] (the CPU
    /// backend's are [`crate::random::uniforms`]). `low < high`, both finite, is checked by
    /// the caller.
    fn rand_uniform(
        &self,
        shape: Shape,
        low: f64,
        high: f64,
        rng: &mut FlowRng,
    ) -> Result<Self::Storage>;

    // ---- primitives ----
    /// `op(a) @ op(b)` where `op` transposes when its flag is set.
    fn matmul(
        &self,
        a: &Self::Storage,
        ta: bool,
        b: &Self::Storage,
        tb: bool,
    ) -> Result<Self::Storage>;
    fn unary(&self, op: UnaryOp<Self::Elem>, a: &Self::Storage) -> Result<Self::Storage>;
    /// Broadcasting: each dimension equal, or 1 on one side.
    fn binary(&self, op: BinaryOp, a: &Self::Storage, b: &Self::Storage) -> Result<Self::Storage>;
    /// Reduces along `axis`, keeping both dimensions.
    fn reduce(&self, op: ReduceOp, axis: Axis, a: &Self::Storage) -> Result<Self::Storage>;
    /// A `1 x 1` probe of `a`'s finiteness: finite when every entry of `a` is finite, NaN or
    /// infinite when one is not. It may also be infinite for finite entries so large that
    /// their sum overflows, so a probe that is not finite calls for a look at the entries
    /// themselves ([`crate::Tensor::check_finite`]). Probes add: the sum of several is a
    /// probe of them all, so one scalar read back covers any number of tensors. The default
    /// is the sum of the entries, one reduction on the device; the CPU backend sums `0 * x`
    /// (0 for a finite `x`, NaN otherwise) in independent lanes, vectorised, never overflowing.
    fn finite_probe(&self, a: &Self::Storage) -> Result<Self::Storage> {
        self.reduce(ReduceOp::Sum, Axis::All, a)
    }
    /// One-hot mask (same shape as `a`) of the first maximum along `axis`.
    fn argmax_mask(&self, axis: Axis, a: &Self::Storage) -> Result<Self::Storage>;
    /// `log(sum(exp(a)))` over the columns of each row, computed stably: `r x 1`.
    fn logsumexp_cols(&self, a: &Self::Storage) -> Result<Self::Storage>;
    /// Softmax over the columns of each row.
    fn softmax_cols(&self, a: &Self::Storage) -> Result<Self::Storage>;
    fn broadcast_to(&self, a: &Self::Storage, shape: Shape) -> Result<Self::Storage>;
    fn slice_cols(&self, a: &Self::Storage, start: usize, len: usize) -> Result<Self::Storage>;
    fn concat_cols(&self, parts: &[&Self::Storage]) -> Result<Self::Storage>;
    /// Output column `j` is input column `index[j]`.
    fn gather_cols(&self, a: &Self::Storage, index: &Self::Index) -> Result<Self::Storage>;
    /// Output has `width` columns; input column `j` is added into output column `index[j]`.
    fn scatter_add_cols(
        &self,
        a: &Self::Storage,
        index: &Self::Index,
        width: usize,
    ) -> Result<Self::Storage>;
    /// `a` where `mask != 0`, else `b`; all three of one shape. A NaN mask entry is not 0,
    /// so it takes `a`.
    fn select(
        &self,
        mask: &Self::Storage,
        a: &Self::Storage,
        b: &Self::Storage,
    ) -> Result<Self::Storage>;

    // ---- per-row indexing ----

    /// The same row-major values seen as `shape` (`shape.len()` equals `a`'s length).
    fn reshape(&self, a: &Self::Storage, shape: Shape) -> Result<Self::Storage>;

    /// `rows x 1`: entry `index[r]` of each row `r`.
    fn take_per_row(&self, a: &Self::Storage, index: &Self::Index) -> Result<Self::Storage>;

    /// `rows x width`, zero except entry `index[r]` of row `r`, which is `a[r]` (`a` is
    /// `rows x 1`): the adjoint of [`Backend::take_per_row`].
    fn put_per_row(
        &self,
        a: &Self::Storage,
        index: &Self::Index,
        width: usize,
    ) -> Result<Self::Storage>;

    /// For each row `r`, how many entries of row `r` of `sorted` (ascending) are `<= x[r]`
    /// (`x` is `rows x 1`): `torch.searchsorted(sorted, x, right=True)`. A NaN counts none.
    fn search_sorted_rows(&self, sorted: &Self::Storage, x: &Self::Storage) -> Result<Self::Index>;

    // ---- fused operations with default compositions ----

    /// The rational-quadratic spline of every entry of `x` (`n x d`) in `direction`, entry
    /// `(r, i)`'s parameters in row `r`, columns `i P .. (i + 1) P` of `params` (`n x d P`).
    /// Returns `n x 2d` (the outputs, then each entry's log|dy/dx|) and what the backward
    /// reads (a backend's own layout). The default is the spline's composition from
    /// primitives ([`crate::Var::rational_quadratic_composed`]), with an empty cache.
    fn rational_quadratic(
        &self,
        x: &Self::Storage,
        params: &Self::Storage,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let spec = *spec;
        let mut out = composed::evaluate(self, &[x, params], |v| {
            Ok(vec![composed_spline(&v[0], &v[1], &spec, direction)?])
        })?;
        Ok((
            out.remove(0),
            self.full(Shape::new(1, 1), Self::Elem::zero())?,
        ))
    }

    /// The gradients of [`Backend::rational_quadratic`] with respect to `x` and `params`,
    /// given that of its output `g` (`n x 2d`) and the forward's `cache`. The default
    /// differentiates the composition.
    fn rational_quadratic_backward(
        &self,
        x: &Self::Storage,
        params: &Self::Storage,
        cache: &Self::Storage,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let _ = cache;
        let spec = *spec;
        let mut grads = composed::vjp(
            self,
            &[x, params],
            |v| Ok(vec![composed_spline(&v[0], &v[1], &spec, direction)?]),
            &[g],
        )?;
        let g_params = grads.pop().expect("two inputs");
        Ok((grads.pop().expect("two inputs"), g_params))
    }

    /// A linear layer `act(x @ weight^T + bias)` with `weight` stored `out x in` (as
    /// `torch.nn.Linear`) and `bias` `1 x out`.
    fn linear(
        &self,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
        act: Activation<Self::Elem>,
    ) -> Result<Self::Storage> {
        let xw = self.matmul(x, false, weight, true)?;
        let pre = self.binary(BinaryOp::Add, &xw, bias)?;
        match act.unary() {
            Some(op) => self.unary(op, &pre),
            None => Ok(pre),
        }
    }

    /// The backward of a linear layer's activation, in place: `g`, the gradient at the
    /// output `out` (`n x m`), becomes the gradient at the pre-activation; returns that
    /// gradient summed over rows (the bias gradient, `1 x m`). The activation's derivative
    /// is read from the output's sign.
    fn activation_backward(
        &self,
        act: Activation<Self::Elem>,
        g: &mut Self::Storage,
        out: &Self::Storage,
    ) -> Result<Self::Storage> {
        match act {
            Activation::Identity => {}
            Activation::Relu => *g = self.binary(BinaryOp::Gate, g, out)?,
            Activation::LeakyRelu(slope) => {
                // step(out) (1 - slope) + slope
                let d = self.unary(
                    UnaryOp::AddScalar(slope),
                    &self.unary(
                        UnaryOp::MulScalar(Self::Elem::one() - slope),
                        &self.unary(UnaryOp::Step, out)?,
                    )?,
                )?;
                *g = self.binary(BinaryOp::Mul, g, &d)?;
            }
        }
        self.reduce(ReduceOp::Sum, Axis::Rows, g)
    }

    /// The affine coupling of RealNVP and Glow on whole rows. `v` is `n x d`; `params` is
    /// `n x 2 d2`, the conditioner's output with shift at even and raw scale at odd columns
    /// (normflows' layout). The first `d - d2` columns of `v` pass through; the last `d2` are
    /// transformed in `direction` with log-scale `s = scale(raw)`. Returns the output
    /// (`n x d`) and each row's log|det J| (`n x 1`: `+sum(s)` forward, `-sum(s)` inverse).
    /// The default is the composition [`crate::Var::affine_coupling_composed`].
    fn affine_coupling(
        &self,
        v: &Self::Storage,
        params: &Self::Storage,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let mut out = composed::evaluate(self, &[v, params], |x| {
            let (out, log_det) = x[0].affine_coupling_composed(&x[1], scale, direction)?;
            Ok(vec![out, log_det])
        })?;
        let log_det = out.pop().expect("two outputs");
        Ok((out.pop().expect("two outputs"), log_det))
    }

    /// The gradients of [`Backend::affine_coupling`]'s output (not its log-det) with respect
    /// to `v` and `params`, given the rows `v`, the output `out` and its gradient `g` (all
    /// `n x d`). A fused kernel may read `out` rather than `v`: with `e = exp(±s)`, `dv1 =
    /// g1`, `dv2 = g2 e`; forward `dshift = g2`, `ds = g2 (y2 - shift)`; inverse `dshift =
    /// -g2 e`, `ds = -g2 y2`; and `draw = ds * ds/draw`. The default differentiates the
    /// composition.
    fn affine_coupling_backward(
        &self,
        v: &Self::Storage,
        params: &Self::Storage,
        out: &Self::Storage,
        g: &Self::Storage,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Self::Storage, Self::Storage)> {
        let _ = out;
        let mut grads = composed::vjp(
            self,
            &[v, params],
            |x| {
                Ok(vec![
                    x[0].affine_coupling_composed(&x[1], scale, direction)?.0,
                ])
            },
            &[g],
        )?;
        let g_params = grads.pop().expect("two inputs");
        Ok((grads.pop().expect("two inputs"), g_params))
    }

    /// The log-density of a diagonal Gaussian at each row of `z` (`n x d`), with `loc` and
    /// `log_scale` `1 x d`: `-sum_j (u_j^2 / 2 + log_scale_j) - d/2 log(2 pi)` with
    /// `u = (z - loc) exp(-log_scale)`. Returns `n x 1`. The default is the composition
    /// [`crate::Var::diag_normal_log_prob_composed`].
    fn diag_normal_log_prob(
        &self,
        z: &Self::Storage,
        loc: &Self::Storage,
        log_scale: &Self::Storage,
    ) -> Result<Self::Storage> {
        Ok(composed::evaluate(self, &[z, loc, log_scale], |x| {
            Ok(vec![x[0].diag_normal_log_prob_composed(&x[1], &x[2])?])
        })?
        .remove(0))
    }

    /// The gradients of [`Backend::diag_normal_log_prob`] given `g` (`n x 1`): with
    /// `w = g u exp(-log_scale)`, `dz = -w`, `dloc = sum over rows of w`,
    /// `dlog_scale = sum over rows of g (u^2 - 1)`. The default differentiates the
    /// composition.
    fn diag_normal_log_prob_backward(
        &self,
        z: &Self::Storage,
        loc: &Self::Storage,
        log_scale: &Self::Storage,
        g: &Self::Storage,
    ) -> Result<(Self::Storage, Self::Storage, Self::Storage)> {
        let mut grads = composed::vjp(
            self,
            &[z, loc, log_scale],
            |x| Ok(vec![x[0].diag_normal_log_prob_composed(&x[1], &x[2])?]),
            &[g],
        )?;
        let g_log_scale = grads.pop().expect("three inputs");
        let g_loc = grads.pop().expect("three inputs");
        Ok((grads.pop().expect("three inputs"), g_loc, g_log_scale))
    }

    /// One Adam update of `param` with `grad` and moments `m`, `v`, in place. As `torch.optim.Adam`: `g = grad + wd * param`,
    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `param -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`. Backends may flush subnormal
    /// results to zero (the CPU backend does, for speed). On an error the three buffers are
    /// left as they were.
    fn adam_update(
        &self,
        param: &mut Self::Storage,
        grad: &Self::Storage,
        m: &mut Self::Storage,
        v: &mut Self::Storage,
        h: &AdamStep<Self::Elem>,
    ) -> Result<()> {
        use UnaryOp::{AddScalar, MulScalar, Sqrt, Square};
        let one = Self::Elem::one();
        let g = if h.weight_decay == Self::Elem::zero() {
            grad.clone()
        } else {
            self.binary(
                BinaryOp::Add,
                grad,
                &self.unary(MulScalar(h.weight_decay), param)?,
            )?
        };
        let m_new = self.binary(
            BinaryOp::Add,
            &self.unary(MulScalar(h.beta1), m)?,
            &self.unary(MulScalar(one - h.beta1), &g)?,
        )?;
        let v_new = self.binary(
            BinaryOp::Add,
            &self.unary(MulScalar(h.beta2), v)?,
            &self.unary(MulScalar(one - h.beta2), &self.unary(Square, &g)?)?,
        )?;
        let denom = self.unary(
            AddScalar(h.eps),
            &self.unary(
                MulScalar(one / h.bias_correction2.sqrt()),
                &self.unary(Sqrt, &v_new)?,
            )?,
        )?;
        let step = self.unary(
            MulScalar(h.lr / h.bias_correction1),
            &self.binary(BinaryOp::Div, &m_new, &denom)?,
        )?;
        *param = self.binary(BinaryOp::Sub, param, &step)?;
        *m = m_new;
        *v = v_new;
        Ok(())
    }
}

/// A [`Error::Backend`](crate::Error::Backend) from `backend`: what a device reported.
pub fn backend_error<B: Backend>(backend: &B, message: impl std::fmt::Display) -> crate::Error {
    crate::Error::Backend {
        backend: backend.name(),
        message: message.to_string(),
    }
}

/// Column indices of the shifts (even) and raw scales (odd) in a coupling's parameters.
pub fn interleaved_columns(d2: usize) -> (Vec<usize>, Vec<usize>) {
    (
        (0..d2).map(|j| 2 * j).collect(),
        (0..d2).map(|j| 2 * j + 1).collect(),
    )
}

/// Rows of `[a_r | b_r]` from two `rows x cols` row-major blocks.
pub(crate) fn interleave_halves<E: Copy>(a: &[E], b: &[E], rows: usize, cols: usize) -> Vec<E> {
    let mut out = Vec::with_capacity(2 * a.len());
    for r in 0..rows {
        out.extend_from_slice(&a[r * cols..(r + 1) * cols]);
        out.extend_from_slice(&b[r * cols..(r + 1) * cols]);
    }
    out
}

/// The inverse of [`interleave_halves`].
pub(crate) fn split_halves<E: Copy>(ab: &[E], rows: usize, cols: usize) -> (Vec<E>, Vec<E>) {
    let (mut a, mut b) = (
        Vec::with_capacity(rows * cols),
        Vec::with_capacity(rows * cols),
    );
    for row in ab.chunks_exact(2 * cols.max(1)).take(rows) {
        a.extend_from_slice(&row[..cols]);
        b.extend_from_slice(&row[cols..]);
    }
    (a, b)
}
