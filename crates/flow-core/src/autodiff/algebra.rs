//! The arithmetic that backward passes are written in, with two interpreters:
//! [`RawAlgebra`] computes on tensors (first-order, nothing recorded) and
//! [`RecordingAlgebra`] records onto the tape (so gradients are differentiable).
//!
//! Shapes inside a backward pass follow from shapes validated in the forward pass, so a
//! failure here is a broken invariant and panics.

use super::op::Op;
use super::tape::{Node, NodeId, Tape};
use crate::backend::{
    Activation, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, UnaryOp,
};
use crate::ops::custom::CustomOp;
use crate::shape::{Axis, Shape};
use crate::tensor::Tensor;
use std::sync::Arc;

const INVARIANT: &str = "backward shapes follow from validated forward shapes";

pub(crate) trait GradAlgebra<B: Backend> {
    type T: Clone;

    /// The op that produced node `id`.
    fn op(&self, id: NodeId) -> Op<B>;
    /// Whether gradients must flow into node `id`.
    fn needs_grad(&self, id: NodeId) -> bool;
    /// Node `id`'s value, as an operand.
    fn node(&mut self, id: NodeId) -> Self::T;
    fn constant(&mut self, value: Tensor<B>) -> Self::T;
    fn shape(&self, t: &Self::T) -> Shape;

    fn matmul(&mut self, a: &Self::T, ta: bool, b: &Self::T, tb: bool) -> Self::T;
    fn unary(&mut self, op: UnaryOp<B::Elem>, a: &Self::T) -> Self::T;
    fn binary(&mut self, op: BinaryOp, a: &Self::T, b: &Self::T) -> Self::T;
    fn sum(&mut self, a: &Self::T, axis: Axis) -> Self::T;
    fn broadcast_to(&mut self, a: &Self::T, shape: Shape) -> Self::T;
    fn slice_cols(&mut self, a: &Self::T, start: usize, len: usize) -> Self::T;
    fn gather_cols(&mut self, a: &Self::T, index: &Arc<[usize]>) -> Self::T;
    fn scatter_add_cols(&mut self, a: &Self::T, index: &Arc<[usize]>, width: usize) -> Self::T;
    fn select(&mut self, mask: &Tensor<B>, a: &Self::T, b: &Self::T) -> Self::T;
    fn reshape(&mut self, a: &Self::T, shape: Shape) -> Self::T;
    fn take_per_row(&mut self, a: &Self::T, index: &Arc<[usize]>) -> Self::T;
    fn put_per_row(&mut self, a: &Self::T, index: &Arc<[usize]>, width: usize) -> Self::T;
    /// The gradients of a rational-quadratic spline node's inputs `x` and `params`, given the
    /// gradient `g` of its output.
    fn rational_quadratic_grads(
        &mut self,
        x: NodeId,
        params: NodeId,
        cache: &Tensor<B>,
        g: &Self::T,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> (Self::T, Self::T);

    fn add(&mut self, a: &Self::T, b: &Self::T) -> Self::T {
        self.binary(BinaryOp::Add, a, b)
    }
    fn sub(&mut self, a: &Self::T, b: &Self::T) -> Self::T {
        self.binary(BinaryOp::Sub, a, b)
    }
    fn mul(&mut self, a: &Self::T, b: &Self::T) -> Self::T {
        self.binary(BinaryOp::Mul, a, b)
    }
    fn div(&mut self, a: &Self::T, b: &Self::T) -> Self::T {
        self.binary(BinaryOp::Div, a, b)
    }
    fn scale(&mut self, a: &Self::T, s: B::Elem) -> Self::T {
        self.unary(UnaryOp::MulScalar(s), a)
    }
    fn neg(&mut self, a: &Self::T) -> Self::T {
        self.unary(UnaryOp::Neg, a)
    }
    /// Multiplies by a constant tensor (a mask or a fixed factor).
    fn mul_const(&mut self, a: &Self::T, c: Tensor<B>) -> Self::T {
        let c = self.constant(c);
        self.mul(a, &c)
    }
    /// A linear layer's output gradient `g` carried through its activation (read from the
    /// output `out`), and that gradient summed over rows (the bias gradient). Takes `g` by
    /// value, so that an interpreter may reuse its buffer.
    fn activation_grads(
        &mut self,
        act: Activation<B::Elem>,
        g: Self::T,
        out: &Self::T,
    ) -> (Self::T, Self::T)
    where
        Self: Sized,
    {
        crate::ops::linear::composed_activation_grads(self, act, &g, out)
    }
    /// The gradients of an affine coupling's rows `v` and parameters, given the gradient
    /// `g` of its output node `out`: the backend's fused backward, or recorded through the
    /// op's composition.
    fn affine_coupling_grads(
        &mut self,
        v: NodeId,
        params: NodeId,
        out: NodeId,
        g: &Self::T,
        scale: CouplingScale,
        direction: Direction,
    ) -> (Self::T, Self::T);
    /// The gradients of a custom op's inputs (`None` where it gives none). An error of the
    /// op's own backward is kept for [`GradAlgebra::take_error`] and gives no gradients.
    fn custom_grads(
        &mut self,
        op: &Arc<dyn CustomOp<B>>,
        inputs: &[NodeId],
        out: NodeId,
        g: &Self::T,
    ) -> Vec<Option<Self::T>>;
    /// The first error a user-defined backward reported during the pass.
    fn take_error(&mut self) -> Option<crate::error::Error>;
    /// The gradients of a diagonal Gaussian's log-density with respect to the points, the
    /// mean and the log-scale, as [`GradAlgebra::affine_coupling_grads`].
    fn diag_normal_log_prob_grads(
        &mut self,
        z: NodeId,
        loc: NodeId,
        log_scale: NodeId,
        g: &Self::T,
    ) -> (Self::T, Self::T, Self::T);
    /// Sums away broadcast dimensions: the adjoint of broadcasting `shape` up to `a`'s shape.
    fn sum_to(&mut self, a: &Self::T, shape: Shape) -> Self::T {
        let mut t = a.clone();
        let s = self.shape(&t);
        if shape.rows == 1 && s.rows != 1 {
            t = self.sum(&t, Axis::Rows);
        }
        if shape.cols == 1 && s.cols != 1 {
            t = self.sum(&t, Axis::Cols);
        }
        t
    }
}

/// Backward on tensors: nothing is recorded.
pub(crate) struct RawAlgebra<'a, B: Backend> {
    nodes: &'a [Node<B>],
    error: Option<crate::error::Error>,
}

impl<'a, B: Backend> RawAlgebra<'a, B> {
    pub(crate) fn new(nodes: &'a [Node<B>]) -> Self {
        RawAlgebra { nodes, error: None }
    }
}

impl<B: Backend> GradAlgebra<B> for RawAlgebra<'_, B> {
    type T = Tensor<B>;

    fn op(&self, id: NodeId) -> Op<B> {
        self.nodes[id].op.clone()
    }
    fn needs_grad(&self, id: NodeId) -> bool {
        self.nodes[id].requires_grad
    }
    fn node(&mut self, id: NodeId) -> Tensor<B> {
        self.nodes[id].value.clone()
    }
    fn constant(&mut self, value: Tensor<B>) -> Tensor<B> {
        value
    }
    fn shape(&self, t: &Tensor<B>) -> Shape {
        t.shape()
    }
    fn matmul(&mut self, a: &Tensor<B>, ta: bool, b: &Tensor<B>, tb: bool) -> Tensor<B> {
        a.matmul_t(ta, b, tb).expect(INVARIANT)
    }
    fn unary(&mut self, op: UnaryOp<B::Elem>, a: &Tensor<B>) -> Tensor<B> {
        a.unary(op)
    }
    fn binary(&mut self, op: BinaryOp, a: &Tensor<B>, b: &Tensor<B>) -> Tensor<B> {
        a.binary(op, b).expect(INVARIANT)
    }
    fn sum(&mut self, a: &Tensor<B>, axis: Axis) -> Tensor<B> {
        a.sum(axis)
    }
    fn broadcast_to(&mut self, a: &Tensor<B>, shape: Shape) -> Tensor<B> {
        a.broadcast_to(shape).expect(INVARIANT)
    }
    fn slice_cols(&mut self, a: &Tensor<B>, start: usize, len: usize) -> Tensor<B> {
        a.slice_cols(start, len).expect(INVARIANT)
    }
    fn gather_cols(&mut self, a: &Tensor<B>, index: &Arc<[usize]>) -> Tensor<B> {
        a.gather_cols(index).expect(INVARIANT)
    }
    fn scatter_add_cols(&mut self, a: &Tensor<B>, index: &Arc<[usize]>, width: usize) -> Tensor<B> {
        a.scatter_add_cols(index, width).expect(INVARIANT)
    }
    fn select(&mut self, mask: &Tensor<B>, a: &Tensor<B>, b: &Tensor<B>) -> Tensor<B> {
        Tensor::select(mask, a, b).expect(INVARIANT)
    }
    fn reshape(&mut self, a: &Tensor<B>, shape: Shape) -> Tensor<B> {
        a.reshape(shape).expect(INVARIANT)
    }
    fn take_per_row(&mut self, a: &Tensor<B>, index: &Arc<[usize]>) -> Tensor<B> {
        a.take_per_row(index).expect(INVARIANT)
    }
    fn put_per_row(&mut self, a: &Tensor<B>, index: &Arc<[usize]>, width: usize) -> Tensor<B> {
        a.put_per_row(index, width).expect(INVARIANT)
    }
    fn rational_quadratic_grads(
        &mut self,
        x: NodeId,
        params: NodeId,
        cache: &Tensor<B>,
        g: &Tensor<B>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> (Tensor<B>, Tensor<B>) {
        let (xv, pv) = (self.node(x), self.node(params));
        xv.rational_quadratic_backward(&pv, cache, spec, direction, g)
    }
    fn activation_grads(
        &mut self,
        act: Activation<B::Elem>,
        g: Tensor<B>,
        out: &Tensor<B>,
    ) -> (Tensor<B>, Tensor<B>) {
        Tensor::activation_backward(act, g, out)
    }
    fn affine_coupling_grads(
        &mut self,
        v: NodeId,
        params: NodeId,
        out: NodeId,
        g: &Tensor<B>,
        scale: CouplingScale,
        direction: Direction,
    ) -> (Tensor<B>, Tensor<B>) {
        let (v, params, out) = (self.node(v), self.node(params), self.node(out));
        Tensor::affine_coupling_backward(&v, &params, &out, g, scale, direction)
    }
    fn custom_grads(
        &mut self,
        op: &Arc<dyn CustomOp<B>>,
        inputs: &[NodeId],
        out: NodeId,
        g: &Tensor<B>,
    ) -> Vec<Option<Tensor<B>>> {
        let values: Vec<Tensor<B>> = inputs.iter().map(|&id| self.node(id)).collect();
        let out = self.node(out);
        let grads = crate::ops::custom::value_grads(op, &values, &out, g);
        keep_error(&mut self.error, grads, inputs.len())
    }
    fn take_error(&mut self) -> Option<crate::error::Error> {
        self.error.take()
    }
    fn diag_normal_log_prob_grads(
        &mut self,
        z: NodeId,
        loc: NodeId,
        log_scale: NodeId,
        g: &Tensor<B>,
    ) -> (Tensor<B>, Tensor<B>, Tensor<B>) {
        let (z, loc, log_scale) = (self.node(z), self.node(loc), self.node(log_scale));
        Tensor::diag_normal_log_prob_backward(&z, &loc, &log_scale, g)
    }
}

/// Backward recorded onto the tape: every gradient is a node, differentiable again.
pub(crate) struct RecordingAlgebra<'a, B: Backend> {
    tape: &'a Tape<B>,
    error: Option<crate::error::Error>,
}

impl<'a, B: Backend> RecordingAlgebra<'a, B> {
    pub(crate) fn new(tape: &'a Tape<B>) -> Self {
        RecordingAlgebra { tape, error: None }
    }
}

impl<B: Backend> GradAlgebra<B> for RecordingAlgebra<'_, B> {
    type T = NodeId;

    fn op(&self, id: NodeId) -> Op<B> {
        self.tape.nodes().nodes[id].op.clone()
    }
    fn needs_grad(&self, id: NodeId) -> bool {
        self.tape.requires_grad(id)
    }
    fn node(&mut self, id: NodeId) -> NodeId {
        id
    }
    fn constant(&mut self, value: Tensor<B>) -> NodeId {
        self.tape.constant(value).id
    }
    fn shape(&self, t: &NodeId) -> Shape {
        self.tape.shape(*t)
    }
    fn matmul(&mut self, a: &NodeId, ta: bool, b: &NodeId, tb: bool) -> NodeId {
        self.tape.record_matmul(*a, ta, *b, tb).expect(INVARIANT)
    }
    fn unary(&mut self, op: UnaryOp<B::Elem>, a: &NodeId) -> NodeId {
        self.tape.record_unary(op, *a)
    }
    fn binary(&mut self, op: BinaryOp, a: &NodeId, b: &NodeId) -> NodeId {
        self.tape.record_binary(op, *a, *b).expect(INVARIANT)
    }
    fn sum(&mut self, a: &NodeId, axis: Axis) -> NodeId {
        self.tape.record_sum(*a, axis)
    }
    fn broadcast_to(&mut self, a: &NodeId, shape: Shape) -> NodeId {
        self.tape.record_broadcast_to(*a, shape).expect(INVARIANT)
    }
    fn slice_cols(&mut self, a: &NodeId, start: usize, len: usize) -> NodeId {
        self.tape
            .record_slice_cols(*a, start, len)
            .expect(INVARIANT)
    }
    fn gather_cols(&mut self, a: &NodeId, index: &Arc<[usize]>) -> NodeId {
        self.tape
            .record_gather_cols(*a, Arc::clone(index))
            .expect(INVARIANT)
    }
    fn scatter_add_cols(&mut self, a: &NodeId, index: &Arc<[usize]>, width: usize) -> NodeId {
        self.tape
            .record_scatter_add_cols(*a, Arc::clone(index), width)
            .expect(INVARIANT)
    }
    fn select(&mut self, mask: &Tensor<B>, a: &NodeId, b: &NodeId) -> NodeId {
        self.tape
            .record_select(mask.clone(), *a, *b)
            .expect(INVARIANT)
    }
    fn reshape(&mut self, a: &NodeId, shape: Shape) -> NodeId {
        self.tape.record_reshape(*a, shape).expect(INVARIANT)
    }
    fn take_per_row(&mut self, a: &NodeId, index: &Arc<[usize]>) -> NodeId {
        self.tape
            .record_take_per_row(*a, Arc::clone(index))
            .expect(INVARIANT)
    }
    fn put_per_row(&mut self, a: &NodeId, index: &Arc<[usize]>, width: usize) -> NodeId {
        self.tape
            .record_put_per_row(*a, Arc::clone(index), width)
            .expect(INVARIANT)
    }
    fn rational_quadratic_grads(
        &mut self,
        x: NodeId,
        params: NodeId,
        _cache: &Tensor<B>,
        g: &NodeId,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> (NodeId, NodeId) {
        crate::ops::rational_quadratic::recorded_grads(self.tape, x, params, *g, spec, direction)
            .expect(INVARIANT)
    }
    fn affine_coupling_grads(
        &mut self,
        v: NodeId,
        params: NodeId,
        _out: NodeId,
        g: &NodeId,
        scale: CouplingScale,
        direction: Direction,
    ) -> (NodeId, NodeId) {
        crate::ops::affine_coupling::recorded_grads(self.tape, v, params, *g, scale, direction)
            .expect(INVARIANT)
    }
    fn custom_grads(
        &mut self,
        op: &Arc<dyn CustomOp<B>>,
        inputs: &[NodeId],
        out: NodeId,
        g: &NodeId,
    ) -> Vec<Option<NodeId>> {
        let grads = crate::ops::custom::recorded_grads(self.tape, op, inputs, out, *g);
        keep_error(&mut self.error, grads, inputs.len())
    }
    fn take_error(&mut self) -> Option<crate::error::Error> {
        self.error.take()
    }
    fn diag_normal_log_prob_grads(
        &mut self,
        z: NodeId,
        loc: NodeId,
        log_scale: NodeId,
        g: &NodeId,
    ) -> (NodeId, NodeId, NodeId) {
        crate::ops::diag_normal::recorded_grads(self.tape, z, loc, log_scale, *g).expect(INVARIANT)
    }
}

/// A custom op's gradients, or no gradient for its `n` inputs with the first error kept for
/// the end of the pass.
fn keep_error<T: Clone>(
    slot: &mut Option<crate::error::Error>,
    grads: crate::error::Result<Vec<Option<T>>>,
    n: usize,
) -> Vec<Option<T>> {
    grads.unwrap_or_else(|e| {
        slot.get_or_insert(e);
        vec![None; n]
    })
}
