//! Sums, means and maxima along an axis, and broadcasting (the adjoint of a sum).

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::shape::{Axis, Shape};
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    pub(crate) fn record_sum(&self, x: NodeId, axis: Axis) -> Result<NodeId> {
        let value = self.value(x).sum(axis);
        Ok(self.push(value?, Op::Sum { x, axis }))
    }

    pub(crate) fn record_broadcast_to(&self, x: NodeId, shape: Shape) -> Result<NodeId> {
        let value = self.value(x).broadcast_to(shape)?;
        Ok(self.push(value, Op::BroadcastTo { x }))
    }
}

impl<B: Backend> Var<B> {
    /// Sum collapsing `axis` (see [`Axis`]); both dimensions are kept.
    pub fn sum(&self, axis: Axis) -> Result<Var<B>> {
        Ok(self.tape.var(self.tape.record_sum(self.id, axis)?))
    }

    pub fn sum_all(&self) -> Result<Var<B>> {
        self.sum(Axis::All)
    }

    /// Mean collapsing `axis`.
    pub fn mean(&self, axis: Axis) -> Result<Var<B>> {
        let s = self.shape();
        let n = match axis {
            Axis::Rows => s.rows,
            Axis::Cols => s.cols,
            Axis::All => s.len(),
        };
        self.sum(axis)?.mul_scalar(1.0 / n.max(1) as f64)
    }

    pub fn mean_all(&self) -> Result<Var<B>> {
        self.mean(Axis::All)
    }

    /// Maximum collapsing `axis`. The gradient goes to the first maximal entry.
    pub fn max(&self, axis: Axis) -> Result<Var<B>> {
        let x = self.value();
        let mask = x.argmax_mask(axis);
        let op = Op::Max {
            x: self.id,
            mask: mask?,
        };
        Ok(self.tape.var(self.tape.push(x.max(axis)?, op)))
    }

    /// Repeats a row vector, column vector or scalar up to `shape`.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Var<B>> {
        let id = self.tape.record_broadcast_to(self.id, shape.into())?;
        Ok(self.tape.var(id))
    }
}

pub(crate) fn backward_sum<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let xv = alg.node(x);
        let shape = alg.shape(&xv);
        grads.push((x, alg.broadcast_to(g, shape)?));
    }
    Ok(())
}

pub(crate) fn backward_broadcast<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let xv = alg.node(x);
        let shape = alg.shape(&xv);
        grads.push((x, alg.sum_to(g, shape)?));
    }
    Ok(())
}

pub(crate) fn backward_max<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    mask: &Tensor<B>,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let spread = alg.broadcast_to(g, mask.shape())?;
        grads.push((x, alg.mul_const(&spread, mask.clone())?));
    }
    Ok(())
}
