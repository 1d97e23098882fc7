//! The fused linear layer `x @ weight^T + bias` (weight stored `out x in`, as PyTorch).

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::shape::Axis;

impl<B: Backend> Var<B> {
    /// `self @ weight^T + bias`, with `weight` `out x in` and `bias` `1 x out`. One fused
    /// backend call where the backend has one.
    pub fn linear(&self, weight: &Var<B>, bias: &Var<B>) -> Result<Var<B>> {
        self.check_same_tape(weight, "linear")?;
        self.check_same_tape(bias, "linear")?;
        let value = self.value().linear(&weight.value(), &bias.value())?;
        let op = Op::Linear {
            x: self.id,
            weight: weight.id,
            bias: bias.id,
        };
        Ok(self.tape.var(self.tape.push(value, op)))
    }
}

pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    weight: NodeId,
    bias: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) {
    if alg.needs_grad(x) {
        let w = alg.node(weight);
        let gx = alg.matmul(g, false, &w, false);
        grads.push((x, gx));
    }
    if alg.needs_grad(weight) {
        let xv = alg.node(x);
        let gw = alg.matmul(g, true, &xv, false);
        grads.push((weight, gw));
    }
    if alg.needs_grad(bias) {
        let gb = alg.sum(g, Axis::Rows);
        grads.push((bias, gb));
    }
}
