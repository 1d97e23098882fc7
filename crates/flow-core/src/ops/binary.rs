//! Add, sub, mul and div with row and column broadcasting.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::{Backend, BinaryOp};
use crate::error::Result;

impl<B: Backend> Tape<B> {
    pub(crate) fn record_binary(&self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        let value = self.value(a).binary(op, &self.value(b))?;
        Ok(self.push(value, Op::Binary { op, a, b }))
    }
}

impl<B: Backend> Var<B> {
    /// Elementwise `op`; each dimension must be equal or 1 on one side (broadcast).
    pub fn binary(&self, op: BinaryOp, other: &Var<B>) -> Result<Var<B>> {
        self.check_same_tape(other, "binary op")?;
        let id = self.tape.record_binary(op, self.id, other.id)?;
        Ok(self.tape.var(id))
    }
    pub fn add(&self, other: &Var<B>) -> Result<Var<B>> {
        self.binary(BinaryOp::Add, other)
    }
    pub fn sub(&self, other: &Var<B>) -> Result<Var<B>> {
        self.binary(BinaryOp::Sub, other)
    }
    pub fn mul(&self, other: &Var<B>) -> Result<Var<B>> {
        self.binary(BinaryOp::Mul, other)
    }
    pub fn div(&self, other: &Var<B>) -> Result<Var<B>> {
        self.binary(BinaryOp::Div, other)
    }
    /// `self` where `gate > 0`, else 0. Gradients flow into `self` only.
    pub fn gate(&self, gate: &Var<B>) -> Result<Var<B>> {
        self.binary(BinaryOp::Gate, gate)
    }
}

/// Each operand's gradient is summed over the dimensions it was broadcast along.
pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    op: BinaryOp,
    a: NodeId,
    b: NodeId,
    out: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    let (av, bv) = (alg.node(a), alg.node(b));
    let (sa, sb) = (alg.shape(&av), alg.shape(&bv));
    if alg.needs_grad(a) {
        let ga = match op {
            BinaryOp::Add | BinaryOp::Sub => g.clone(),
            BinaryOp::Mul => alg.mul(g, &bv)?,
            BinaryOp::Div => alg.div(g, &bv)?,
            BinaryOp::Gate => alg.binary(BinaryOp::Gate, g, &bv)?,
        };
        grads.push((a, alg.sum_to(&ga, sa)?));
    }
    if alg.needs_grad(b) && op != BinaryOp::Gate {
        let gb = match op {
            BinaryOp::Add => g.clone(),
            BinaryOp::Sub => alg.neg(g)?,
            BinaryOp::Mul => alg.mul(g, &av)?,
            BinaryOp::Div => {
                // -g a / b^2 = -(g y) / b
                let y = alg.node(out);
                let gy = alg.mul(g, &y)?;
                let q = alg.div(&gy, &bv)?;
                alg.neg(&q)?
            }
            BinaryOp::Gate => unreachable!("the gate is piecewise constant in b"),
        };
        grads.push((b, alg.sum_to(&gb, sb)?));
    }
    Ok(())
}
