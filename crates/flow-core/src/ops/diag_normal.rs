//! The log-density of a diagonal Gaussian at each row, one fused backend call each way:
//! the base distribution of most flows is evaluated on every sample of every step.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Var};
use crate::backend::{Backend, UnaryOp};
use crate::error::Result;
use crate::shape::Axis;
use num_traits::One as _;

impl<B: Backend> Var<B> {
    /// `log N(row; loc, diag(exp(log_scale))^2)` for each row of `self` (`n x d`), with
    /// `loc` and `log_scale` `1 x d`. Returns `n x 1`.
    pub fn diag_normal_log_prob(&self, loc: &Var<B>, log_scale: &Var<B>) -> Result<Var<B>> {
        self.check_same_tape(loc, "diag_normal_log_prob")?;
        self.check_same_tape(log_scale, "diag_normal_log_prob")?;
        let value = self
            .value()
            .diag_normal_log_prob(&loc.value(), &log_scale.value())?;
        let op = Op::DiagNormalLogProb {
            z: self.id,
            loc: loc.id,
            log_scale: log_scale.id,
        };
        Ok(self.tape.var(self.tape.push(value, op)))
    }
}

pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    z: NodeId,
    loc: NodeId,
    log_scale: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) {
    let (zv, lv, sv) = (alg.node(z), alg.node(loc), alg.node(log_scale));
    let (g_z, g_loc, g_log_scale) = alg.diag_normal_log_prob_grads(&zv, &lv, &sv, g);
    for (id, grad) in [(z, g_z), (loc, g_loc), (log_scale, g_log_scale)] {
        if alg.needs_grad(id) {
            grads.push((id, grad));
        }
    }
}

/// The gradients composed from primitives, as recorded for higher orders (see
/// [`Backend::diag_normal_log_prob_backward`] for the formulas).
pub(crate) fn composed_grads<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    z: &A::T,
    loc: &A::T,
    log_scale: &A::T,
    g: &A::T,
) -> (A::T, A::T, A::T) {
    let neg = alg.neg(log_scale);
    let inv_scale = alg.unary(UnaryOp::Exp, &neg);
    let centred = alg.sub(z, loc);
    let u = alg.mul(&centred, &inv_scale);
    let gu = alg.mul(g, &u);
    let w = alg.mul(&gu, &inv_scale);
    let u2 = alg.unary(UnaryOp::Square, &u);
    let u2m1 = alg.unary(UnaryOp::AddScalar(-B::Elem::one()), &u2);
    let gs = alg.mul(g, &u2m1);
    let g_z = alg.neg(&w);
    let g_loc = alg.sum(&w, Axis::Rows);
    let g_log_scale = alg.sum(&gs, Axis::Rows);
    (g_z, g_loc, g_log_scale)
}
