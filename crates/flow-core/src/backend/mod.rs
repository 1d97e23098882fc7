//! The `Backend` trait: storage and the primitive tensor operations that the tape and the
//! layers are written against. A backend is a value (the CPU backend is zero-sized, a GPU
//! backend would hold its device handle); storage carries its own shape.
//!
//! Backend methods assume validated arguments: shape checks live in [`crate::Tensor`], so
//! every backend gets them once. Hot compositions (affine coupling, linear layers) are
//! trait methods with a default built from the primitives, so that a backend may replace
//! them with one fused kernel without any layer changing.

pub mod cpu;

use crate::element::Element;
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
}

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
pub trait Backend: Clone + Debug + Send + Sync + 'static {
    type Elem: Element;
    type Storage: Clone + Debug + Send + Sync;

    /// A short name for reports ("cpu-f32").
    fn name(&self) -> String;

    // ---- creation and transfer ----
    /// Moves row-major host values into storage; `data.len() == shape.len()` is
    /// guaranteed by the caller.
    fn upload(&self, shape: Shape, data: Vec<Self::Elem>) -> Self::Storage;
    /// Copies storage back to row-major host values.
    fn download(&self, s: &Self::Storage) -> Vec<Self::Elem>;
    fn full(&self, shape: Shape, value: Self::Elem) -> Self::Storage;
    fn shape(&self, s: &Self::Storage) -> Shape;

    // ---- primitives ----
    /// `op(a) @ op(b)` where `op` transposes when its flag is set.
    fn matmul(&self, a: &Self::Storage, ta: bool, b: &Self::Storage, tb: bool) -> Self::Storage;
    fn unary(&self, op: UnaryOp<Self::Elem>, a: &Self::Storage) -> Self::Storage;
    /// Broadcasting: each dimension equal, or 1 on one side.
    fn binary(&self, op: BinaryOp, a: &Self::Storage, b: &Self::Storage) -> Self::Storage;
    /// Reduces along `axis`, keeping both dimensions.
    fn reduce(&self, op: ReduceOp, axis: Axis, a: &Self::Storage) -> Self::Storage;
    /// One-hot mask (same shape as `a`) of the first maximum along `axis`.
    fn argmax_mask(&self, axis: Axis, a: &Self::Storage) -> Self::Storage;
    /// `log(sum(exp(a)))` over the columns of each row, computed stably: `r x 1`.
    fn logsumexp_cols(&self, a: &Self::Storage) -> Self::Storage;
    /// Softmax over the columns of each row.
    fn softmax_cols(&self, a: &Self::Storage) -> Self::Storage;
    fn broadcast_to(&self, a: &Self::Storage, shape: Shape) -> Self::Storage;
    fn slice_cols(&self, a: &Self::Storage, start: usize, len: usize) -> Self::Storage;
    fn concat_cols(&self, parts: &[&Self::Storage]) -> Self::Storage;
    /// Output column `j` is input column `index[j]`.
    fn gather_cols(&self, a: &Self::Storage, index: &[usize]) -> Self::Storage;
    /// Output has `width` columns; input column `j` is added into output column `index[j]`.
    fn scatter_add_cols(&self, a: &Self::Storage, index: &[usize], width: usize) -> Self::Storage;
    /// `a` where `mask != 0`, else `b`; all three of one shape.
    fn select(&self, mask: &Self::Storage, a: &Self::Storage, b: &Self::Storage) -> Self::Storage;

    // ---- fused operations with default compositions ----

    /// A linear layer `x @ weight^T + bias` with `weight` stored `out x in` (as
    /// `torch.nn.Linear`) and `bias` `1 x out`.
    fn linear(
        &self,
        x: &Self::Storage,
        weight: &Self::Storage,
        bias: &Self::Storage,
    ) -> Self::Storage {
        let xw = self.matmul(x, false, weight, true);
        self.binary(BinaryOp::Add, &xw, bias)
    }

    /// The affine coupling transform `y = x * exp(log_scale) + shift`, and the row sums of
    /// `log_scale` (its log-determinant per sample, `r x 1`).
    fn affine_coupling(
        &self,
        x: &Self::Storage,
        shift: &Self::Storage,
        log_scale: &Self::Storage,
    ) -> (Self::Storage, Self::Storage) {
        let scale = self.unary(UnaryOp::Exp, log_scale);
        let scaled = self.binary(BinaryOp::Mul, x, &scale);
        let y = self.binary(BinaryOp::Add, &scaled, shift);
        (y, self.reduce(ReduceOp::Sum, Axis::Cols, log_scale))
    }

    /// The inverse of [`Backend::affine_coupling`]: `x = (y - shift) * exp(-log_scale)`, and
    /// the row sums of `log_scale` (the inverse log-determinant is their negative).
    fn affine_coupling_inverse(
        &self,
        y: &Self::Storage,
        shift: &Self::Storage,
        log_scale: &Self::Storage,
    ) -> (Self::Storage, Self::Storage) {
        let inv_scale = self.unary(UnaryOp::Exp, &self.unary(UnaryOp::Neg, log_scale));
        let centred = self.binary(BinaryOp::Sub, y, shift);
        let x = self.binary(BinaryOp::Mul, &centred, &inv_scale);
        (x, self.reduce(ReduceOp::Sum, Axis::Cols, log_scale))
    }

    /// One Adam update of `param` with `grad` and moments `m`, `v`; returns the new
    /// `(param, m, v)`. As `torch.optim.Adam`: `g = grad + wd * param`,
    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `param -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`. Backends may flush subnormal
    /// results to zero (the CPU backend does, for speed).
    fn adam_update(
        &self,
        param: &Self::Storage,
        grad: &Self::Storage,
        m: &Self::Storage,
        v: &Self::Storage,
        h: &AdamStep<Self::Elem>,
    ) -> (Self::Storage, Self::Storage, Self::Storage) {
        use UnaryOp::{AddScalar, MulScalar, Sqrt, Square};
        let one = Self::Elem::one();
        let g = if h.weight_decay == Self::Elem::zero() {
            grad.clone()
        } else {
            self.binary(
                BinaryOp::Add,
                grad,
                &self.unary(MulScalar(h.weight_decay), param),
            )
        };
        let m = self.binary(
            BinaryOp::Add,
            &self.unary(MulScalar(h.beta1), m),
            &self.unary(MulScalar(one - h.beta1), &g),
        );
        let v = self.binary(
            BinaryOp::Add,
            &self.unary(MulScalar(h.beta2), v),
            &self.unary(MulScalar(one - h.beta2), &self.unary(Square, &g)),
        );
        let denom = self.unary(
            AddScalar(h.eps),
            &self.unary(
                MulScalar(one / h.bias_correction2.sqrt()),
                &self.unary(Sqrt, &v),
            ),
        );
        let step = self.unary(
            MulScalar(h.lr / h.bias_correction1),
            &self.binary(BinaryOp::Div, &m, &denom),
        );
        (self.binary(BinaryOp::Sub, param, &step), m, v)
    }
}
