//! Matrix products through the `gemm` crate (about 1.3x ndarray's default on the 512x64 @
//! 64x64 products of flow conditioners), with transposes expressed as strides; thin products
//! (one of `m`, `n`, `k` at most [`THIN`]) through the hand-written kernels of
//! [`super::thin_matmul`], which run them several times faster than `gemm`.

use super::thin_matmul::{thin_matmul, THIN};
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
    let thin_max = {
        static T: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *T.get_or_init(|| std::env::var("THIN").ok().and_then(|v| v.parse().ok()).unwrap_or(THIN))
    };
    let smallest = m.min(n).min(k);
    if smallest >= 1 && smallest <= thin_max {
        let init = init.map(slice_of);
        let data = thin_matmul(slice_of(a), ta, slice_of(b), tb, (m, n, k), init);
        return super::from_shape_vec(crate::Shape::new(m, n), data);
    }
    let mut out = match init {
        Some(row) => {
            let row = slice_of(row);
            debug_assert_eq!(row.len(), n);
            let mut data = Vec::with_capacity(m * n);
            for _ in 0..m {
                data.extend_from_slice(row);
            }
            super::from_shape_vec(crate::Shape::new(m, n), data)
        }
        None => Array2::zeros((m, n)),
    };
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    let (a_rs, a_cs) = strides(sa.cols, ta);
    let (b_rs, b_cs) = strides(sb.cols, tb);
    let dst = out.as_slice_mut().expect("fresh array is contiguous");
    // SAFETY: every pointer addresses a live, contiguous buffer of the size its strides
    // and dimensions describe (m x k for a, k x n for b, m x n for dst), and dst does not
    // alias a or b.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
    }
    out
}
