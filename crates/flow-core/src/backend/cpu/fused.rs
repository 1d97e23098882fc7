//! Fused kernels that replace the trait's default compositions on the CPU.

use super::{from_shape_vec, matmul::matmul, shape_of, slice_of};
use crate::backend::AdamStep;
use crate::element::Element;
use crate::shape::Shape;
use ndarray::Array2;

/// `x @ weight^T + bias` in one GEMM: the bias is written first and accumulated into,
/// saving a pass over the output.
pub(crate) fn linear<E: Element>(x: &Array2<E>, weight: &Array2<E>, bias: &Array2<E>) -> Array2<E> {
    matmul(x, false, weight, true, Some(bias))
}

/// `y = x * exp(log_scale) + shift` and the row sums of `log_scale`, in one pass.
pub(crate) fn affine_coupling<E: Element>(
    x: &Array2<E>,
    shift: &Array2<E>,
    log_scale: &Array2<E>,
) -> (Array2<E>, Array2<E>) {
    affine_rows(x, shift, log_scale, |x, t, ls| x * ls.exp() + t)
}

/// `x = (y - shift) * exp(-log_scale)` and the row sums of `log_scale`, in one pass.
pub(crate) fn affine_coupling_inverse<E: Element>(
    y: &Array2<E>,
    shift: &Array2<E>,
    log_scale: &Array2<E>,
) -> (Array2<E>, Array2<E>) {
    affine_rows(y, shift, log_scale, |y, t, ls| (y - t) * (-ls).exp())
}

/// `map(v, shift, log_scale)` elementwise, with the row sums of `log_scale` beside it.
fn affine_rows<E: Element>(
    v: &Array2<E>,
    shift: &Array2<E>,
    log_scale: &Array2<E>,
    map: impl Fn(E, E, E) -> E,
) -> (Array2<E>, Array2<E>) {
    let s = shape_of(v);
    let (dv, dt, ds) = (slice_of(v), slice_of(shift), slice_of(log_scale));
    let mut out = Vec::with_capacity(s.len());
    let mut sums = Vec::with_capacity(s.rows);
    for i in 0..s.rows {
        let r = i * s.cols..(i + 1) * s.cols;
        let mut sum = E::zero();
        for ((&v, &t), &ls) in dv[r.clone()].iter().zip(&dt[r.clone()]).zip(&ds[r]) {
            out.push(map(v, t, ls));
            sum += ls;
        }
        sums.push(sum);
    }
    (
        from_shape_vec(s, out),
        from_shape_vec(Shape::new(s.rows, 1), sums),
    )
}

/// One pass over parameter, gradient and moments, in the same operation order as the
/// default composition (and PyTorch's single-tensor Adam).
///
/// Subnormal numbers are kept out. Weights of dead ReLU units only feel weight decay and
/// shrink geometrically into the subnormal range, and squares of their tiny gradients land
/// there too; every operation touching a subnormal takes a microcode assist, and a handful
/// of such weights made the seed example 4x slower. So gradients below `sqrt(MIN_POSITIVE)`
/// (1.1e-19 in f32, whose squares would be subnormal) count as zero, and subnormal results
/// are flushed to zero. At these magnitudes the Adam step they would have produced is below
/// 1e-12 of the learning rate.
pub(crate) fn adam_update<E: Element>(
    param: &Array2<E>,
    grad: &Array2<E>,
    m: &Array2<E>,
    v: &Array2<E>,
    h: &AdamStep<E>,
) -> (Array2<E>, Array2<E>, Array2<E>) {
    let s = shape_of(param);
    let one = E::one();
    let tiny = E::min_positive_value().sqrt();
    let inv_sqrt_bc2 = one / h.bias_correction2.sqrt();
    let step_size = h.lr / h.bias_correction1;
    let n = s.len();
    let (mut p_out, mut m_out, mut v_out) =
        (vec![E::zero(); n], vec![E::zero(); n], vec![E::zero(); n]);
    let (pi, gi, mi, vi) = (slice_of(param), slice_of(grad), slice_of(m), slice_of(v));
    // Indexed over equal-length slices so that the loop vectorises (selects, sqrt, div).
    for k in 0..n {
        let p = pi[k];
        let g = gi[k] + h.weight_decay * p;
        let g = if g.abs() < tiny { E::zero() } else { g };
        let m = flush_subnormal(h.beta1 * mi[k] + (one - h.beta1) * g);
        let v = flush_subnormal(h.beta2 * vi[k] + (one - h.beta2) * (g * g));
        let denom = v.sqrt() * inv_sqrt_bc2 + h.eps;
        p_out[k] = flush_subnormal(p - step_size * (m / denom));
        m_out[k] = m;
        v_out[k] = v;
    }
    (
        from_shape_vec(s, p_out),
        from_shape_vec(s, m_out),
        from_shape_vec(s, v_out),
    )
}

#[inline]
fn flush_subnormal<E: Element>(x: E) -> E {
    if x.abs() < E::min_positive_value() {
        E::zero()
    } else {
        x
    }
}
