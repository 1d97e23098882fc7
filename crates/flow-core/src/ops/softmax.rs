//! Logsumexp and softmax over the features (columns) of each row.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Var};
use crate::backend::{Backend, UnaryOp};
use crate::error::Result;
use crate::shape::Axis;

impl<B: Backend> Var<B> {
    /// `log(sum_j exp(x_ij))` per row, computed stably: `r x 1`.
    pub fn logsumexp_cols(&self) -> Result<Var<B>> {
        let value = self.value().logsumexp_cols();
        Ok(self
            .tape
            .var(self.tape.push(value?, Op::LogSumExpCols { x: self.id })))
    }

    /// Softmax over the columns of each row.
    pub fn softmax_cols(&self) -> Result<Var<B>> {
        let value = self.value().softmax_cols();
        Ok(self
            .tape
            .var(self.tape.push(value?, Op::SoftmaxCols { x: self.id })))
    }

    /// `x - logsumexp(x)` per row.
    pub fn log_softmax_cols(&self) -> Result<Var<B>> {
        self.sub(&self.logsumexp_cols()?)
    }
}

/// `d lse / dx = exp(x - lse)`, written through the output so it differentiates again.
pub(crate) fn backward_logsumexp<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    out: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let (xv, y) = (alg.node(x), alg.node(out));
        let centred = alg.sub(&xv, &y)?;
        let p = alg.unary(UnaryOp::Exp, &centred)?;
        grads.push((x, alg.mul(&p, g)?));
    }
    Ok(())
}

/// `y * (g - sum_j g_j y_j)` per row.
pub(crate) fn backward_softmax<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    out: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let y = alg.node(out);
        let gy = alg.mul(g, &y)?;
        let dot = alg.sum(&gy, Axis::Cols)?;
        let centred = alg.sub(g, &dot)?;
        grads.push((x, alg.mul(&y, &centred)?));
    }
    Ok(())
}
