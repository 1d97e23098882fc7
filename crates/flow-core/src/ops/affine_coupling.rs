//! The affine coupling of RealNVP and Glow on whole rows (see [`Backend::affine_coupling`]):
//! one fused backend call forward and one backward, for the transformed rows; the log-det
//! is a second node whose backward is a handful of small ops on `n x d2` tensors.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::{Backend, CouplingScale, Direction, UnaryOp};
use crate::error::Result;
use crate::shape::{Axis, Shape};
use num_traits::One as _;

impl<B: Backend> Var<B> {
    /// Affine coupling of `self` (`n x d`) by the conditioner output `params` (`n x 2 d2`,
    /// shift at even and raw scale at odd columns, normflows' layout): the first `d - d2`
    /// columns pass through, the last `d2` are transformed in `direction`. Returns the
    /// output and each row's log|det J| (`n x 1`).
    pub fn affine_coupling(
        &self,
        params: &Var<B>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        self.check_same_tape(params, "affine_coupling")?;
        let (out, log_det) = self
            .value()
            .affine_coupling(&params.value(), scale, direction)?;
        let tape = &self.tape;
        let out = tape.push(
            out,
            Op::AffineCoupling {
                v: self.id,
                params: params.id,
                scale,
                direction,
            },
        );
        let log_det = tape.push(
            log_det,
            Op::AffineCouplingLogDet {
                params: params.id,
                scale,
                direction,
            },
        );
        Ok((tape.var(out), tape.var(log_det)))
    }

    /// [`Var::affine_coupling`] composed from the tape's primitives (gathers of the shifts and
    /// raw scales, elementwise arithmetic, a row sum): the same values to rounding, slower,
    /// differentiable to any order through the primitives' own backward passes. It is the
    /// op's definition for backends without a fused kernel and for recorded gradients.
    pub fn affine_coupling_composed(
        &self,
        params: &Var<B>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        self.check_same_tape(params, "affine_coupling")?;
        crate::tensor::check_coupling_shapes(self.shape(), params.shape())?;
        let d = self.shape().cols;
        let d2 = params.shape().cols / 2;
        let d1 = d - d2;
        // The interleaved pairs as rows of two: column 0 the shifts, column 1 the raw scales.
        let n = params.shape().rows;
        let pairs = params.reshape((n * d2, 2))?;
        let shift = pairs.slice_cols(0, 1)?.reshape((n, d2))?;
        let raw = pairs.slice_cols(1, 1)?.reshape((n, d2))?;
        let s = match scale {
            CouplingScale::Exp => raw,
            // -log sigmoid(raw + 2) = softplus(-(raw + 2))
            CouplingScale::Sigmoid => raw.add_scalar(2.0)?.neg()?.softplus()?,
        };
        let sign = match direction {
            Direction::Forward => 1.0,
            Direction::Inverse => -1.0,
        };
        let factor = s.mul_scalar(sign)?.exp()?;
        let v2 = self.slice_cols(d1, d2)?;
        let y2 = match direction {
            Direction::Forward => v2.mul(&factor)?.add(&shift)?,
            Direction::Inverse => v2.sub(&shift)?.mul(&factor)?,
        };
        let out = if d1 == 0 {
            y2
        } else {
            Var::concat_cols(&[&self.slice_cols(0, d1)?, &y2])?
        };
        Ok((out, s.sum(Axis::Cols)?.mul_scalar(sign)?))
    }
}

/// Gradients of the transformed rows with respect to the rows and the parameters.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    v: NodeId,
    params: NodeId,
    scale: CouplingScale,
    direction: Direction,
    out: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if !(alg.needs_grad(v) || alg.needs_grad(params)) {
        return Ok(());
    }
    let (g_v, g_params) = alg.affine_coupling_grads(v, params, out, g, scale, direction)?;
    if alg.needs_grad(v) {
        grads.push((v, g_v));
    }
    if alg.needs_grad(params) {
        grads.push((params, g_params));
    }
    Ok(())
}

/// The log-det `±sum(s(raw))` depends on the raw scales only: `draw = ±g ds/draw`.
pub(crate) fn backward_log_det<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    params: NodeId,
    scale: CouplingScale,
    direction: Direction,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if !alg.needs_grad(params) {
        return Ok(());
    }
    let p = alg.node(params);
    let shape = alg.shape(&p);
    let d2 = shape.cols / 2;
    let one = B::Elem::one();
    let sign = match direction {
        Direction::Forward => one,
        Direction::Inverse => -one,
    };
    let g_s = alg.broadcast_to(g, Shape::new(shape.rows, d2))?;
    let g_s = alg.scale(&g_s, sign)?;
    // The raw scales' columns, 1, 3, 5, .. (`interleaved_columns`).
    let odd = crate::resident::shared_columns(alg.backend(), 1, d2, 2)?;
    let g_raw = match scale {
        CouplingScale::Exp => g_s,
        CouplingScale::Sigmoid => {
            // ds/draw = -sigmoid(-(raw + 2))
            let raw = alg.gather_cols(&p, &odd)?;
            let a = alg.unary(UnaryOp::AddScalar(one + one), &raw)?;
            let a = alg.neg(&a)?;
            let d = alg.unary(UnaryOp::Sigmoid, &a)?;
            let d = alg.neg(&d)?;
            alg.mul(&g_s, &d)?
        }
    };
    grads.push((params, alg.scatter_add_cols(&g_raw, &odd, shape.cols)?));
    Ok(())
}

/// The gradients of the rows and parameters recorded on `tape` (so differentiable again):
/// those of the composition [`Var::affine_coupling_composed`], projected on `g`.
pub(crate) fn recorded_grads<B: Backend>(
    tape: &Tape<B>,
    v: NodeId,
    params: NodeId,
    g: NodeId,
    scale: CouplingScale,
    direction: Direction,
) -> Result<(NodeId, NodeId)> {
    let (vv, pv, gv) = (tape.var(v), tape.var(params), tape.var(g));
    let floor = tape.len();
    let (out, _) = vv.affine_coupling_composed(&pv, scale, direction)?;
    let projected = out.mul(&gv)?.sum_all()?;
    let grads = tape.grad_since(&projected, &[&vv, &pv], floor)?;
    Ok((grads[0].id, grads[1].id))
}
