//! The affine coupling of RealNVP and Glow on whole rows (see [`Backend::affine_coupling`]):
//! one fused backend call forward and one backward, for the transformed rows; the log-det
//! is a second node whose backward is a handful of small ops on `n x d2` tensors.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Var};
use crate::backend::{interleaved_columns, Backend, CouplingScale, Direction, UnaryOp};
use crate::error::Result;
use crate::shape::Shape;
use num_traits::One as _;
use std::sync::Arc;

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
) {
    if !(alg.needs_grad(v) || alg.needs_grad(params)) {
        return;
    }
    let (p, y) = (alg.node(params), alg.node(out));
    let (g_v, g_params) = alg.affine_coupling_grads(&p, &y, g, scale, direction);
    if alg.needs_grad(v) {
        grads.push((v, g_v));
    }
    if alg.needs_grad(params) {
        grads.push((params, g_params));
    }
}

/// The log-det `±sum(s(raw))` depends on the raw scales only: `draw = ±g ds/draw`.
pub(crate) fn backward_log_det<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    params: NodeId,
    scale: CouplingScale,
    direction: Direction,
    g: &A::T,
    grads: &mut GradList<A::T>,
) {
    if !alg.needs_grad(params) {
        return;
    }
    let p = alg.node(params);
    let shape = alg.shape(&p);
    let d2 = shape.cols / 2;
    let one = B::Elem::one();
    let sign = match direction {
        Direction::Forward => one,
        Direction::Inverse => -one,
    };
    let g_s = alg.broadcast_to(g, Shape::new(shape.rows, d2));
    let g_s = alg.scale(&g_s, sign);
    let (_, odd) = interleaved_columns(d2);
    let odd: Arc<[usize]> = odd.into();
    let g_raw = match scale {
        CouplingScale::Exp => g_s,
        CouplingScale::Sigmoid => {
            // ds/draw = -sigmoid(-(raw + 2))
            let raw = alg.gather_cols(&p, &odd);
            let a = alg.unary(UnaryOp::AddScalar(one + one), &raw);
            let a = alg.neg(&a);
            let d = alg.unary(UnaryOp::Sigmoid, &a);
            let d = alg.neg(&d);
            alg.mul(&g_s, &d)
        }
    };
    grads.push((params, alg.scatter_add_cols(&g_raw, &odd, shape.cols)));
}

/// The composition of [`backward`]'s gradients from primitives, as recorded for higher
/// orders (first-order passes use the backend's fused kernel instead). See
/// [`Backend::affine_coupling_backward`] for the formulas.
pub(crate) fn composed_grads<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    p: &A::T,
    y: &A::T,
    g: &A::T,
    scale: CouplingScale,
    direction: Direction,
) -> (A::T, A::T) {
    let d = alg.shape(y).cols;
    let d2 = alg.shape(p).cols / 2;
    let d1 = d - d2;
    let one = B::Elem::one();
    let (even, odd) = interleaved_columns(d2);
    let (even, odd): (Arc<[usize]>, Arc<[usize]>) = (even.into(), odd.into());
    let shift = alg.gather_cols(p, &even);
    let raw = alg.gather_cols(p, &odd);
    let a = alg.unary(UnaryOp::AddScalar(one + one), &raw);
    let a = alg.neg(&a); // -(raw + 2)
    let s = match scale {
        CouplingScale::Exp => raw,
        CouplingScale::Sigmoid => alg.unary(UnaryOp::Softplus, &a),
    };
    let g1 = alg.slice_cols(g, 0, d1);
    let g2 = alg.slice_cols(g, d1, d2);
    let y2 = alg.slice_cols(y, d1, d2);
    let (g_v2, g_shift, g_s) = match direction {
        Direction::Forward => {
            let e = alg.unary(UnaryOp::Exp, &s);
            let centred = alg.sub(&y2, &shift);
            (alg.mul(&g2, &e), g2.clone(), alg.mul(&g2, &centred))
        }
        Direction::Inverse => {
            let neg_s = alg.neg(&s);
            let e = alg.unary(UnaryOp::Exp, &neg_s);
            let g_v2 = alg.mul(&g2, &e);
            let g_shift = alg.neg(&g_v2);
            let gy = alg.mul(&g2, &y2);
            (g_v2, g_shift, alg.neg(&gy))
        }
    };
    let g_raw = match scale {
        CouplingScale::Exp => g_s,
        CouplingScale::Sigmoid => {
            let d = alg.unary(UnaryOp::Sigmoid, &a);
            let d = alg.neg(&d);
            alg.mul(&g_s, &d)
        }
    };
    let first: Arc<[usize]> = (0..d1).collect::<Vec<_>>().into();
    let second: Arc<[usize]> = (d1..d).collect::<Vec<_>>().into();
    let g_v1 = alg.scatter_add_cols(&g1, &first, d);
    let g_v2 = alg.scatter_add_cols(&g_v2, &second, d);
    let g_v = alg.add(&g_v1, &g_v2);
    let g_shift = alg.scatter_add_cols(&g_shift, &even, 2 * d2);
    let g_raw = alg.scatter_add_cols(&g_raw, &odd, 2 * d2);
    (g_v, alg.add(&g_shift, &g_raw))
}
