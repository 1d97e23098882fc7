//! Row-major matrix products through column-major cuBLAS.
//!
//! A row-major `r x c` matrix is, to cuBLAS, the column-major `c x r` matrix (its
//! transpose) with leading dimension `c`. So the row-major `C = op(A) op(B)` (`m x n`) is
//! computed as the column-major `C^T = op(B)^T op(A)^T` (`n x m`): cuBLAS's first operand is
//! `B`'s buffer, transposed exactly when `tb` is set, its second `A`'s, transposed exactly
//! when `ta` is set, and each operand's leading dimension is its row-major column count.

use flow_core::Shape;

/// The arguments of one cuBLAS `gemm` for a row-major product (see the module docs).
/// `first` and `second` are the column-major operands: `first` is `B`'s buffer, `second`
/// `A`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GemmPlan {
    /// Whether cuBLAS transposes its first operand (`B`'s buffer): `tb`.
    pub trans_first: bool,
    /// Whether cuBLAS transposes its second operand (`A`'s buffer): `ta`.
    pub trans_second: bool,
    /// cuBLAS's `m`: rows of the column-major result, the row-major result's columns.
    pub m: usize,
    /// cuBLAS's `n`: the row-major result's rows.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    pub ld_first: usize,
    pub ld_second: usize,
    pub ld_out: usize,
    /// The row-major result's shape.
    pub out: Shape,
}

/// The cuBLAS call for `op(a) @ op(b)` on row-major `a` and `b`; `None` when the inner
/// dimensions differ. Leading dimensions are at least 1, as cuBLAS requires even of empty
/// matrices.
pub(crate) fn plan(a: Shape, ta: bool, b: Shape, tb: bool) -> Option<GemmPlan> {
    let (rows, inner) = if ta {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (inner_b, cols) = if tb {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    if inner != inner_b {
        return None;
    }
    Some(GemmPlan {
        trans_first: tb,
        trans_second: ta,
        m: cols,
        n: rows,
        k: inner,
        ld_first: b.cols.max(1),
        ld_second: a.cols.max(1),
        ld_out: cols.max(1),
        out: Shape::new(rows, cols),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cuBLAS computes: column-major `C = op(X) op(Y)` (`m x n`, `op` as the flags),
    /// reading `X`, `Y` and writing `C` through their leading dimensions.
    #[allow(clippy::too_many_arguments)]
    fn column_major_gemm(
        tx: bool,
        ty: bool,
        m: usize,
        n: usize,
        k: usize,
        x: &[f64],
        ldx: usize,
        y: &[f64],
        ldy: usize,
        c: &mut [f64],
        ldc: usize,
    ) {
        // Column-major element (i, j) of a matrix with leading dimension ld: data[i + j ld].
        let opx = |i: usize, l: usize| if tx { x[l + i * ldx] } else { x[i + l * ldx] };
        let opy = |l: usize, j: usize| if ty { y[j + l * ldy] } else { y[l + j * ldy] };
        for i in 0..m {
            for j in 0..n {
                c[i + j * ldc] = (0..k).map(|l| opx(i, l) * opy(l, j)).sum();
            }
        }
    }

    fn row_major_matmul(
        a: &[f64],
        sa: Shape,
        ta: bool,
        b: &[f64],
        sb: Shape,
        tb: bool,
    ) -> Vec<f64> {
        let at = |i: usize, l: usize| {
            if ta {
                a[l * sa.cols + i]
            } else {
                a[i * sa.cols + l]
            }
        };
        let bt = |l: usize, j: usize| {
            if tb {
                b[j * sb.cols + l]
            } else {
                b[l * sb.cols + j]
            }
        };
        let (m, k) = if ta {
            (sa.cols, sa.rows)
        } else {
            (sa.rows, sa.cols)
        };
        let n = if tb { sb.rows } else { sb.cols };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            }
        }
        c
    }

    #[test]
    fn the_plan_computes_the_row_major_product_for_every_flag() {
        let (m, k, n) = (3, 5, 4);
        for (m, k, n) in [(m, k, n), (1, 7, 1), (6, 1, 2), (2, 2, 2), (1, 1, 9)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let sa = if ta {
                        Shape::new(k, m)
                    } else {
                        Shape::new(m, k)
                    };
                    let sb = if tb {
                        Shape::new(n, k)
                    } else {
                        Shape::new(k, n)
                    };
                    let a: Vec<f64> = (0..sa.len()).map(|i| (i as f64 * 0.37).sin()).collect();
                    let b: Vec<f64> = (0..sb.len()).map(|i| (i as f64 * 0.91).cos()).collect();
                    let p = plan(sa, ta, sb, tb).unwrap();
                    assert_eq!(p.out, Shape::new(m, n));
                    assert_eq!((p.m, p.n, p.k), (n, m, k));
                    let mut c = vec![f64::NAN; p.out.len()];
                    column_major_gemm(
                        p.trans_first,
                        p.trans_second,
                        p.m,
                        p.n,
                        p.k,
                        &b,
                        p.ld_first,
                        &a,
                        p.ld_second,
                        &mut c,
                        p.ld_out,
                    );
                    let expected = row_major_matmul(&a, sa, ta, &b, sb, tb);
                    for (got, want) in c.iter().zip(&expected) {
                        assert!(
                            (got - want).abs() < 1e-12,
                            "ta {ta} tb {tb}: {c:?} {expected:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_inner_dimensions_have_no_plan() {
        assert_eq!(plan(Shape::new(2, 3), false, Shape::new(4, 2), false), None);
        assert_eq!(plan(Shape::new(2, 3), true, Shape::new(3, 2), false), None);
        assert!(plan(Shape::new(2, 3), true, Shape::new(2, 5), false).is_some());
        assert!(plan(Shape::new(2, 3), false, Shape::new(5, 3), true).is_some());
    }

    #[test]
    fn leading_dimensions_meet_cublas_minimums() {
        // cuBLAS: lda >= max(1, rows of the stored column-major operand), i.e. m when the
        // first operand is not transposed, k when it is; ldb likewise k / n; ldc >= m.
        for (sa, ta, sb, tb) in [
            (Shape::new(3, 5), false, Shape::new(5, 4), false),
            (Shape::new(5, 3), true, Shape::new(4, 5), true),
            (Shape::new(0, 5), false, Shape::new(5, 0), false),
            (Shape::new(3, 0), false, Shape::new(0, 4), false),
        ] {
            let p = plan(sa, ta, sb, tb).unwrap();
            let first_rows = if p.trans_first { p.k } else { p.m };
            let second_rows = if p.trans_second { p.n } else { p.k };
            assert!(p.ld_first >= first_rows.max(1));
            assert!(p.ld_second >= second_rows.max(1));
            assert!(p.ld_out >= p.m.max(1));
        }
    }
}
