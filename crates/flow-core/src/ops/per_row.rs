//! Reshaping, and one entry per row: `take_per_row` (torch's `gather` along columns with one
//! index per row, the bin lookup of splines) and its adjoint `put_per_row`. The indices are
//! fixed at forward time (found by [`crate::Tensor::search_sorted_rows`], which has no
//! gradient), so each op is linear in its operand and its backward is the other.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::index::IndexTensor;
use crate::shape::Shape;

impl<B: Backend> Tape<B> {
    pub(crate) fn record_reshape(&self, x: NodeId, shape: Shape) -> Result<NodeId> {
        let value = self.value(x).reshape(shape)?;
        Ok(self.push(value, Op::Reshape { x }))
    }

    pub(crate) fn record_take_per_row(&self, x: NodeId, index: IndexTensor<B>) -> Result<NodeId> {
        let value = self.value(x).take_per_row(&index)?;
        Ok(self.push(value, Op::TakePerRow { x, index }))
    }

    pub(crate) fn record_put_per_row(
        &self,
        x: NodeId,
        index: IndexTensor<B>,
        width: usize,
    ) -> Result<NodeId> {
        let value = self.value(x).put_per_row(&index, width)?;
        Ok(self.push(value, Op::PutPerRow { x, index }))
    }
}

impl<B: Backend> Var<B> {
    /// The same row-major values as `shape` (`rows x cols` of equal length): `n x (d k)`
    /// becomes `(n d) x k`, one row per feature.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Var<B>> {
        Ok(self
            .tape
            .var(self.tape.record_reshape(self.id, shape.into())?))
    }

    /// `rows x 1`: entry `index[r]` of each row `r`.
    pub fn take_per_row(&self, index: &IndexTensor<B>) -> Result<Var<B>> {
        Ok(self
            .tape
            .var(self.tape.record_take_per_row(self.id, index.clone())?))
    }

    /// `rows x width`, zero except entry `index[r]` of row `r`, which is this `rows x 1`
    /// variable's row `r`.
    pub fn put_per_row(&self, index: &IndexTensor<B>, width: usize) -> Result<Var<B>> {
        let id = self
            .tape
            .record_put_per_row(self.id, index.clone(), width)?;
        Ok(self.tape.var(id))
    }
}

pub(crate) fn backward_reshape<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let xv = alg.node(x);
        let shape = alg.shape(&xv);
        grads.push((x, alg.reshape(g, shape)?));
    }
    Ok(())
}

pub(crate) fn backward_take<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    index: &IndexTensor<B>,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let xv = alg.node(x);
        let width = alg.shape(&xv).cols;
        grads.push((x, alg.put_per_row(g, index, width)?));
    }
    Ok(())
}

pub(crate) fn backward_put<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    index: &IndexTensor<B>,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        grads.push((x, alg.take_per_row(g, index)?));
    }
    Ok(())
}
