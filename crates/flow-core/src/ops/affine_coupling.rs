//! The affine coupling transform `y = x * exp(log_scale) + shift` with its per-sample
//! log-determinant, one fused backend call forward.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Var};
use crate::backend::{Backend, UnaryOp};
use crate::error::Result;
use crate::shape::Axis;
use crate::tensor::Tensor;

impl<B: Backend> Var<B> {
    /// Returns `(x * exp(log_scale) + shift, row sums of log_scale)`: the transformed
    /// features and each sample's log|det J| (`r x 1`). All three inputs of one shape.
    pub fn affine_coupling(&self, shift: &Var<B>, log_scale: &Var<B>) -> Result<(Var<B>, Var<B>)> {
        self.check_same_tape(shift, "affine_coupling")?;
        self.check_same_tape(log_scale, "affine_coupling")?;
        let (y, sums) = self
            .value()
            .affine_coupling(&shift.value(), &log_scale.value())?;
        let op = Op::AffineCoupling {
            x: self.id,
            shift: shift.id,
            log_scale: log_scale.id,
        };
        Ok(self.record_with_sums(y, op, sums, log_scale))
    }

    /// Returns `((self - shift) * exp(-log_scale), row sums of log_scale)`: the inverse of
    /// [`Var::affine_coupling`] and minus its log|det J| per sample. One fused backend call.
    pub fn affine_coupling_inverse(
        &self,
        shift: &Var<B>,
        log_scale: &Var<B>,
    ) -> Result<(Var<B>, Var<B>)> {
        self.check_same_tape(shift, "affine_coupling_inverse")?;
        self.check_same_tape(log_scale, "affine_coupling_inverse")?;
        let (x, sums) = self
            .value()
            .affine_coupling_inverse(&shift.value(), &log_scale.value())?;
        let op = Op::AffineCouplingInverse {
            y: self.id,
            shift: shift.id,
            log_scale: log_scale.id,
        };
        Ok(self.record_with_sums(x, op, sums, log_scale))
    }

    /// Records a fused kernel's two results: its output under `op`, and the row sums of
    /// `log_scale` it already computed, as that sum's own node.
    fn record_with_sums(
        &self,
        out: Tensor<B>,
        op: Op<B>,
        sums: Tensor<B>,
        log_scale: &Var<B>,
    ) -> (Var<B>, Var<B>) {
        let tape = &self.tape;
        let out = tape.push(out, op);
        let sums = tape.push(
            sums,
            Op::Sum {
                x: log_scale.id,
                axis: Axis::Cols,
            },
        );
        (tape.var(out), tape.var(sums))
    }
}

/// For `x = (y - shift) e` with `e = exp(-s)`: `dy = g e`, `dshift = -g e`, `ds = -g x`.
pub(crate) fn backward_inverse<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    y: NodeId,
    shift: NodeId,
    log_scale: NodeId,
    out: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) {
    if alg.needs_grad(y) || alg.needs_grad(shift) {
        let s = alg.node(log_scale);
        let neg_s = alg.neg(&s);
        let inv_scale = alg.unary(UnaryOp::Exp, &neg_s);
        let gy = alg.mul(g, &inv_scale);
        if alg.needs_grad(shift) {
            grads.push((shift, alg.neg(&gy)));
        }
        if alg.needs_grad(y) {
            grads.push((y, gy));
        }
    }
    if alg.needs_grad(log_scale) {
        let x = alg.node(out);
        let gx = alg.mul(g, &x);
        grads.push((log_scale, alg.neg(&gx)));
    }
}

/// `dx = g exp(s)`, `dshift = g`, `ds = g (y - shift)`.
pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    shift: NodeId,
    log_scale: NodeId,
    out: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) {
    if alg.needs_grad(x) {
        let s = alg.node(log_scale);
        let scale = alg.unary(UnaryOp::Exp, &s);
        grads.push((x, alg.mul(g, &scale)));
    }
    if alg.needs_grad(shift) {
        grads.push((shift, g.clone()));
    }
    if alg.needs_grad(log_scale) {
        let (y, t) = (alg.node(out), alg.node(shift));
        let scaled = alg.sub(&y, &t);
        grads.push((log_scale, alg.mul(g, &scaled)));
    }
}
