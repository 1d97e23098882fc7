//! Matrix products through the `gemm` crate (about 1.3x ndarray's default on the 512x64 @
//! 64x64 products of flow conditioners), with transposes expressed as strides; thin products
//! (see [`is_thin`]) through the hand-written kernels of [`super::thin_matmul`], which run
//! them several times faster than `gemm`.

use super::thin_matmul::{is_thin, thin_matmul};
use super::{shape_of, slice_of};
use crate::element::Element;
use ndarray::Array2;

/// Row and column strides of a row-major `rows x cols` buffer, read transposed or not.
fn strides(cols: usize, transposed: bool) -> (isize, isize) {
    if transposed {
        (1, cols as isize)
    } else {
        (cols as isize, 1)
    }
}

/// `op(a) @ op(b)`, plus `init` broadcast over rows when given (a `1 x n` bias row).
pub(crate) fn matmul<E: Element>(
    a: &Array2<E>,
    ta: bool,
    b: &Array2<E>,
    tb: bool,
    init: Option<&Array2<E>>,
) -> Array2<E> {
    let (sa, sb) = (shape_of(a), shape_of(b));
    let (m, k) = if ta {
        (sa.cols, sa.rows)
    } else {
        (sa.rows, sa.cols)
    };
    let (kb, n) = if tb {
        (sb.cols, sb.rows)
    } else {
        (sb.rows, sb.cols)
    };
    assert_eq!(k, kb, "matmul inner dimensions are validated by Tensor");
    if is_thin(m, n, k, tb) {
        let init = init.map(slice_of);
        let data = thin_matmul(slice_of(a), ta, slice_of(b), tb, (m, n, k), init);
        return super::from_shape_vec(crate::Shape::new(m, n), data);
    }
    let shape = crate::Shape::new(m, n);
    let mut data: Vec<E> = Vec::with_capacity(m * n);
    if let Some(row) = init {
        let row = slice_of(row);
        debug_assert_eq!(row.len(), n);
        for _ in 0..m {
            data.extend_from_slice(row);
        }
    }
    if m == 0 || n == 0 || k == 0 {
        data.resize(m * n, E::zero());
        return super::from_shape_vec(shape, data);
    }
    let (a_rs, a_cs) = strides(sa.cols, ta);
    let (b_rs, b_cs) = strides(sb.cols, tb);
    // SAFETY: every pointer addresses a live buffer of the size its strides and dimensions
    // describe (m x k for a, k x n for b, m x n of capacity for dst), and dst does not alias
    // a or b. Without `init`, gemm does not read dst (`read_dst` is false) and writes every
    // one of its m x n elements, so the length can be set afterwards.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            data.as_mut_ptr(),
            1,
            n as isize,
            init.is_some(),
            slice_of(a).as_ptr(),
            a_cs,
            a_rs,
            slice_of(b).as_ptr(),
            b_cs,
            b_rs,
            E::one(),
            E::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
        data.set_len(m * n);
    }
    super::from_shape_vec(shape, data)
}
