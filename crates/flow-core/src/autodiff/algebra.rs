//! The arithmetic that backward passes are written in, with two interpreters:
//! [`RawAlgebra`] computes on tensors (first-order, nothing recorded) and
//! [`RecordingAlgebra`] records onto the tape (so gradients are differentiable).
//!
//! Shapes inside a backward pass follow from shapes validated in the forward pass; what can
//! fail is the backend (a device out of memory) or a user's [`CustomOp`] backward, and
//! either error ends the pass.

use super::op::Op;
use super::tape::{Node, NodeId, Tape};
use crate::backend::{
    Activation, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, UnaryOp,
};
use crate::error::Result;
use crate::index::IndexTensor;
use crate::ops::custom::CustomOp;
use crate::shape::{Axis, Shape};
use crate::tensor::Tensor;
use std::sync::Arc;

pub(crate) trait GradAlgebra<B: Backend> {
    type T: Clone;

    fn backend(&self) -> &B;
    /// The op that produced node `id`.
    fn op(&self, id: NodeId) -> Op<B>;
    /// Whether gradients must flow into node `id`.
    fn needs_grad(&self, id: NodeId) -> bool;
    /// Node `id`'s value, as an operand.
    fn node(&mut self, id: NodeId) -> Self::T;
    fn constant(&mut self, value: Tensor<B>) -> Self::T;
    fn shape(&self, t: &Self::T) -> Shape;

    fn matmul(&mut self, a: &Self::T, ta: bool, b: &Self::T, tb: bool) -> Result<Self::T>;
    fn unary(&mut self, op: UnaryOp<B::Elem>, a: &Self::T) -> Result<Self::T>;
    fn binary(&mut self, op: BinaryOp, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn sum(&mut self, a: &Self::T, axis: Axis) -> Result<Self::T>;
    fn broadcast_to(&mut self, a: &Self::T, shape: Shape) -> Result<Self::T>;
    fn slice_cols(&mut self, a: &Self::T, start: usize, len: usize) -> Result<Self::T>;
    fn gather_cols(&mut self, a: &Self::T, index: &IndexTensor<B>) -> Result<Self::T>;
    fn scatter_add_cols(
        &mut self,
        a: &Self::T,
        index: &IndexTensor<B>,
        width: usize,
    ) -> Result<Self::T>;
    fn select(&mut self, mask: &Tensor<B>, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn reshape(&mut self, a: &Self::T, shape: Shape) -> Result<Self::T>;
    fn take_per_row(&mut self, a: &Self::T, index: &IndexTensor<B>) -> Result<Self::T>;
    fn put_per_row(&mut self, a: &Self::T, index: &IndexTensor<B>, width: usize)
        -> Result<Self::T>;
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
    ) -> Result<(Self::T, Self::T)>;

    /// `op` applied to node `x`'s value: the local derivative of node `id` (of which `x` is
    /// the input). A first-order pass keeps it in the node, so that repeated
    /// vector-Jacobian products through the node (the terms of a residual flow's power
    /// series) compute it once; a recorded pass records it as usual.
    fn local_derivative(&mut self, id: NodeId, op: UnaryOp<B::Elem>, x: NodeId) -> Result<Self::T> {
        let _ = id;
        let x = self.node(x);
        self.unary(op, &x)
    }

    fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
        self.binary(BinaryOp::Add, a, b)
    }
    fn sub(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
        self.binary(BinaryOp::Sub, a, b)
    }
    fn mul(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
        self.binary(BinaryOp::Mul, a, b)
    }
    fn div(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
        self.binary(BinaryOp::Div, a, b)
    }
    fn scale(&mut self, a: &Self::T, s: B::Elem) -> Result<Self::T> {
        self.unary(UnaryOp::MulScalar(s), a)
    }
    fn neg(&mut self, a: &Self::T) -> Result<Self::T> {
        self.unary(UnaryOp::Neg, a)
    }
    /// Multiplies by a constant tensor (a mask or a fixed factor).
    fn mul_const(&mut self, a: &Self::T, c: Tensor<B>) -> Result<Self::T> {
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
    ) -> Result<(Self::T, Self::T)>
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
    ) -> Result<(Self::T, Self::T)>;
    /// The gradients of a custom op's inputs (`None` where it gives none), or the error of
    /// the op's own backward.
    fn custom_grads(
        &mut self,
        op: &Arc<dyn CustomOp<B>>,
        inputs: &[NodeId],
        out: NodeId,
        g: &Self::T,
    ) -> Result<Vec<Option<Self::T>>>;
    /// The gradients of a diagonal Gaussian's log-density with respect to the points, the
    /// mean and the log-scale, as [`GradAlgebra::affine_coupling_grads`].
    fn diag_normal_log_prob_grads(
        &mut self,
        z: NodeId,
        loc: NodeId,
        log_scale: NodeId,
        g: &Self::T,
    ) -> Result<(Self::T, Self::T, Self::T)>;
    /// Sums away broadcast dimensions: the adjoint of broadcasting `shape` up to `a`'s shape.
    fn sum_to(&mut self, a: &Self::T, shape: Shape) -> Result<Self::T> {
        let mut t = a.clone();
        let s = self.shape(&t);
        if shape.rows == 1 && s.rows != 1 {
            t = self.sum(&t, Axis::Rows)?;
        }
        if shape.cols == 1 && s.cols != 1 {
            t = self.sum(&t, Axis::Cols)?;
        }
        Ok(t)
    }
}

/// Backward on tensors: nothing is recorded.
pub(crate) struct RawAlgebra<'a, B: Backend> {
    backend: &'a B,
    nodes: &'a [Node<B>],
    /// When set, gradients flow only into the nodes marked (see `Tape::grad`).
    reach: Option<Vec<bool>>,
}

impl<'a, B: Backend> RawAlgebra<'a, B> {
    pub(crate) fn new(backend: &'a B, nodes: &'a [Node<B>]) -> Self {
        RawAlgebra {
            backend,
            nodes,
            reach: None,
        }
    }

    /// Gradients flow only into the nodes `reach` marks.
    pub(crate) fn pruned(mut self, reach: Vec<bool>) -> Self {
        self.reach = Some(reach);
        self
    }
}

/// Whether `reach` (when given) lets a gradient into node `id`.
fn reached(reach: &Option<Vec<bool>>, id: NodeId) -> bool {
    reach
        .as_ref()
        .is_none_or(|r| r.get(id).copied().unwrap_or(true))
}

impl<B: Backend> GradAlgebra<B> for RawAlgebra<'_, B> {
    type T = Tensor<B>;

    fn backend(&self) -> &B {
        self.backend
    }
    fn op(&self, id: NodeId) -> Op<B> {
        self.nodes[id].op.clone()
    }
    fn needs_grad(&self, id: NodeId) -> bool {
        self.nodes[id].requires_grad && reached(&self.reach, id)
    }
    fn local_derivative(
        &mut self,
        id: NodeId,
        op: UnaryOp<B::Elem>,
        x: NodeId,
    ) -> Result<Tensor<B>> {
        if let Some(d) = self.nodes[id].derivative.get() {
            return Ok(d.clone());
        }
        let d = self.nodes[x].value.unary(op)?;
        let _ = self.nodes[id].derivative.set(d.clone());
        Ok(d)
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
    fn matmul(&mut self, a: &Tensor<B>, ta: bool, b: &Tensor<B>, tb: bool) -> Result<Tensor<B>> {
        a.matmul_t(ta, b, tb)
    }
    fn unary(&mut self, op: UnaryOp<B::Elem>, a: &Tensor<B>) -> Result<Tensor<B>> {
        a.unary(op)
    }
    fn binary(&mut self, op: BinaryOp, a: &Tensor<B>, b: &Tensor<B>) -> Result<Tensor<B>> {
        a.binary(op, b)
    }
    fn sum(&mut self, a: &Tensor<B>, axis: Axis) -> Result<Tensor<B>> {
        a.sum(axis)
    }
    fn broadcast_to(&mut self, a: &Tensor<B>, shape: Shape) -> Result<Tensor<B>> {
        a.broadcast_to(shape)
    }
    fn slice_cols(&mut self, a: &Tensor<B>, start: usize, len: usize) -> Result<Tensor<B>> {
        a.slice_cols(start, len)
    }
    fn gather_cols(&mut self, a: &Tensor<B>, index: &IndexTensor<B>) -> Result<Tensor<B>> {
        a.gather_cols(index)
    }
    fn scatter_add_cols(
        &mut self,
        a: &Tensor<B>,
        index: &IndexTensor<B>,
        width: usize,
    ) -> Result<Tensor<B>> {
        a.scatter_add_cols(index, width)
    }
    fn select(&mut self, mask: &Tensor<B>, a: &Tensor<B>, b: &Tensor<B>) -> Result<Tensor<B>> {
        Tensor::select(mask, a, b)
    }
    fn reshape(&mut self, a: &Tensor<B>, shape: Shape) -> Result<Tensor<B>> {
        a.reshape(shape)
    }
    fn take_per_row(&mut self, a: &Tensor<B>, index: &IndexTensor<B>) -> Result<Tensor<B>> {
        a.take_per_row(index)
    }
    fn put_per_row(
        &mut self,
        a: &Tensor<B>,
        index: &IndexTensor<B>,
        width: usize,
    ) -> Result<Tensor<B>> {
        a.put_per_row(index, width)
    }
    fn rational_quadratic_grads(
        &mut self,
        x: NodeId,
        params: NodeId,
        cache: &Tensor<B>,
        g: &Tensor<B>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(Tensor<B>, Tensor<B>)> {
        let (xv, pv) = (self.node(x), self.node(params));
        xv.rational_quadratic_backward(&pv, cache, spec, direction, g)
    }
    fn activation_grads(
        &mut self,
        act: Activation<B::Elem>,
        g: Tensor<B>,
        out: &Tensor<B>,
    ) -> Result<(Tensor<B>, Tensor<B>)> {
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
    ) -> Result<(Tensor<B>, Tensor<B>)> {
        let (v, params, out) = (self.node(v), self.node(params), self.node(out));
        Tensor::affine_coupling_backward(&v, &params, &out, g, scale, direction)
    }
    fn custom_grads(
        &mut self,
        op: &Arc<dyn CustomOp<B>>,
        inputs: &[NodeId],
        out: NodeId,
        g: &Tensor<B>,
    ) -> Result<Vec<Option<Tensor<B>>>> {
        let values: Vec<Tensor<B>> = inputs.iter().map(|&id| self.node(id)).collect();
        let out = self.node(out);
        crate::ops::custom::value_grads(op, &values, &out, g)
    }
    fn diag_normal_log_prob_grads(
        &mut self,
        z: NodeId,
        loc: NodeId,
        log_scale: NodeId,
        g: &Tensor<B>,
    ) -> Result<(Tensor<B>, Tensor<B>, Tensor<B>)> {
        let (z, loc, log_scale) = (self.node(z), self.node(loc), self.node(log_scale));
        Tensor::diag_normal_log_prob_backward(&z, &loc, &log_scale, g)
    }
}

/// Backward recorded onto the tape: every gradient is a node, differentiable again.
pub(crate) struct RecordingAlgebra<'a, B: Backend> {
    tape: &'a Tape<B>,
    /// When set, gradients flow only into the nodes marked (see `Tape::grad`).
    reach: Option<Vec<bool>>,
}

impl<'a, B: Backend> RecordingAlgebra<'a, B> {
    pub(crate) fn new(tape: &'a Tape<B>) -> Self {
        RecordingAlgebra { tape, reach: None }
    }

    /// Gradients flow only into the nodes `reach` marks.
    pub(crate) fn pruned(mut self, reach: Vec<bool>) -> Self {
        self.reach = Some(reach);
        self
    }
}

impl<B: Backend> GradAlgebra<B> for RecordingAlgebra<'_, B> {
    type T = NodeId;

    fn backend(&self) -> &B {
        self.tape.backend()
    }
    fn op(&self, id: NodeId) -> Op<B> {
        self.tape.nodes().nodes[id].op.clone()
    }
    fn needs_grad(&self, id: NodeId) -> bool {
        self.tape.requires_grad(id) && reached(&self.reach, id)
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
    fn matmul(&mut self, a: &NodeId, ta: bool, b: &NodeId, tb: bool) -> Result<NodeId> {
        self.tape.record_matmul(*a, ta, *b, tb)
    }
    fn unary(&mut self, op: UnaryOp<B::Elem>, a: &NodeId) -> Result<NodeId> {
        self.tape.record_unary(op, *a)
    }
    fn binary(&mut self, op: BinaryOp, a: &NodeId, b: &NodeId) -> Result<NodeId> {
        self.tape.record_binary(op, *a, *b)
    }
    fn sum(&mut self, a: &NodeId, axis: Axis) -> Result<NodeId> {
        self.tape.record_sum(*a, axis)
    }
    fn broadcast_to(&mut self, a: &NodeId, shape: Shape) -> Result<NodeId> {
        self.tape.record_broadcast_to(*a, shape)
    }
    fn slice_cols(&mut self, a: &NodeId, start: usize, len: usize) -> Result<NodeId> {
        self.tape.record_slice_cols(*a, start, len)
    }
    fn gather_cols(&mut self, a: &NodeId, index: &IndexTensor<B>) -> Result<NodeId> {
        self.tape.record_gather_cols(*a, index.clone())
    }
    fn scatter_add_cols(
        &mut self,
        a: &NodeId,
        index: &IndexTensor<B>,
        width: usize,
    ) -> Result<NodeId> {
        self.tape.record_scatter_add_cols(*a, index.clone(), width)
    }
    fn select(&mut self, mask: &Tensor<B>, a: &NodeId, b: &NodeId) -> Result<NodeId> {
        self.tape.record_select(mask.clone(), *a, *b)
    }
    fn reshape(&mut self, a: &NodeId, shape: Shape) -> Result<NodeId> {
        self.tape.record_reshape(*a, shape)
    }
    fn take_per_row(&mut self, a: &NodeId, index: &IndexTensor<B>) -> Result<NodeId> {
        self.tape.record_take_per_row(*a, index.clone())
    }
    fn put_per_row(&mut self, a: &NodeId, index: &IndexTensor<B>, width: usize) -> Result<NodeId> {
        self.tape.record_put_per_row(*a, index.clone(), width)
    }
    fn rational_quadratic_grads(
        &mut self,
        x: NodeId,
        params: NodeId,
        _cache: &Tensor<B>,
        g: &NodeId,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(NodeId, NodeId)> {
        crate::ops::rational_quadratic::recorded_grads(self.tape, x, params, *g, spec, direction)
    }
    fn affine_coupling_grads(
        &mut self,
        v: NodeId,
        params: NodeId,
        _out: NodeId,
        g: &NodeId,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(NodeId, NodeId)> {
        crate::ops::affine_coupling::recorded_grads(self.tape, v, params, *g, scale, direction)
    }
    fn custom_grads(
        &mut self,
        op: &Arc<dyn CustomOp<B>>,
        inputs: &[NodeId],
        out: NodeId,
        g: &NodeId,
    ) -> Result<Vec<Option<NodeId>>> {
        crate::ops::custom::recorded_grads(self.tape, op, inputs, out, *g)
    }
    fn diag_normal_log_prob_grads(
        &mut self,
        z: NodeId,
        loc: NodeId,
        log_scale: NodeId,
        g: &NodeId,
    ) -> Result<(NodeId, NodeId, NodeId)> {
        crate::ops::diag_normal::recorded_grads(self.tape, z, loc, log_scale, *g)
    }
}
