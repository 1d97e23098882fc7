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
}

/// Reductions along an [`Axis`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
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
}
