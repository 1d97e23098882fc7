//! Fused kernels that replace the trait's default compositions on the CPU.

use super::{from_shape_vec, matmul::matmul, shape_of, slice_of};
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
    let s = shape_of(x);
    let (dx, dt, ds) = (slice_of(x), slice_of(shift), slice_of(log_scale));
    let mut y = Vec::with_capacity(s.len());
    let mut log_det = Vec::with_capacity(s.rows);
    for i in 0..s.rows {
        let r = i * s.cols..(i + 1) * s.cols;
        let mut sum = E::zero();
        for ((&x, &t), &ls) in dx[r.clone()].iter().zip(&dt[r.clone()]).zip(&ds[r]) {
            y.push(x * ls.exp() + t);
            sum += ls;
        }
        log_det.push(sum);
    }
    (
        from_shape_vec(s, y),
        from_shape_vec(Shape::new(s.rows, 1), log_det),
    )
}
