//! Elementwise selection by a mask.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    pub(crate) fn record_select(&self, mask: Tensor<B>, a: NodeId, b: NodeId) -> Result<NodeId> {
        let value = Tensor::select(&mask, &self.value(a), &self.value(b))?;
        Ok(self.push(value, Op::Select { mask, a, b }))
    }
}

impl<B: Backend> Var<B> {
    /// `on_true` where `mask` is non-zero, else `on_false`; all three of one shape.
    /// Gradients flow into the branches, never into the mask.
    pub fn select(mask: &Var<B>, on_true: &Var<B>, on_false: &Var<B>) -> Result<Var<B>> {
        mask.check_same_tape(on_true, "select")?;
        mask.check_same_tape(on_false, "select")?;
        let id = mask
            .tape
            .record_select(mask.value(), on_true.id, on_false.id)?;
        Ok(mask.tape.var(id))
    }
}

pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    mask: &Tensor<B>,
    a: NodeId,
    b: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    let zeros = alg.constant(Tensor::zeros(mask.backend(), mask.shape())?);
    if alg.needs_grad(a) {
        grads.push((a, alg.select(mask, g, &zeros)?));
    }
    if alg.needs_grad(b) {
        grads.push((b, alg.select(mask, &zeros, g)?));
    }
    Ok(())
}
