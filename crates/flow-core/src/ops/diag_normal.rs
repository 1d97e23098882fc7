//! The log-density of a diagonal Gaussian at each row, one fused backend call each way:
//! the base distribution of most flows is evaluated on every sample of every step.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::shape::Axis;

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

    /// [`Var::diag_normal_log_prob`] composed from the tape's primitives: the op's
    /// definition for backends without a fused kernel and for recorded gradients.
    pub fn diag_normal_log_prob_composed(
        &self,
        loc: &Var<B>,
        log_scale: &Var<B>,
    ) -> Result<Var<B>> {
        self.check_same_tape(loc, "diag_normal_log_prob")?;
        self.check_same_tape(log_scale, "diag_normal_log_prob")?;
        crate::tensor::check_diag_normal_shapes(self.shape(), loc.shape(), log_scale.shape())?;
        let d = self.shape().cols as f64;
        let u = self.sub(loc)?.mul(&log_scale.neg()?.exp()?)?;
        let quad = u.square()?.sum(Axis::Cols)?.mul_scalar(0.5)?;
        let norm = log_scale.sum_all()?;
        let constant = -0.5 * d * (2.0 * std::f64::consts::PI).ln();
        quad.add(&norm)?.neg()?.add_scalar(constant)
    }
}

pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    z: NodeId,
    loc: NodeId,
    log_scale: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    let (g_z, g_loc, g_log_scale) = alg.diag_normal_log_prob_grads(z, loc, log_scale, g)?;
    for (id, grad) in [(z, g_z), (loc, g_loc), (log_scale, g_log_scale)] {
        if alg.needs_grad(id) {
            grads.push((id, grad));
        }
    }
    Ok(())
}

/// The gradients recorded on `tape` (so differentiable again): those of the composition
/// [`Var::diag_normal_log_prob_composed`], projected on `g`.
pub(crate) fn recorded_grads<B: Backend>(
    tape: &Tape<B>,
    z: NodeId,
    loc: NodeId,
    log_scale: NodeId,
    g: NodeId,
) -> Result<(NodeId, NodeId, NodeId)> {
    let (zv, lv, sv, gv) = (tape.var(z), tape.var(loc), tape.var(log_scale), tape.var(g));
    let floor = tape.len();
    let log_prob = zv.diag_normal_log_prob_composed(&lv, &sv)?;
    let projected = log_prob.mul(&gv)?.sum_all()?;
    let grads = tape.grad_since(&projected, &[&zv, &lv, &sv], floor)?;
    Ok((grads[0].id, grads[1].id, grads[2].id))
}
