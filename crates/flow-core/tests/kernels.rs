//! CPU kernels against their definitions written as plain loops. The gradient checks use
//! the same forward kernels on both sides, so forward values need their own reference.

mod common;

use common::*;
use flow_core::{Axis, BinaryOp, Tensor, UnaryOp};
use proptest::prelude::*;

fn at(t: &Tensor<B>, i: usize, j: usize) -> f64 {
    t.get(i, j).unwrap()
}

fn assert_close(got: &Tensor<B>, want: &[f64]) -> Result<(), TestCaseError> {
    let got = got.to_vec()?;
    prop_assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
            "entry {}: {} vs {}",
            k,
            g,
            w
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn matmul_matches_the_triple_loop((a, b, ta, tb) in matmul_operands(9))
    {
        let got = a.matmul_t(ta, &b, tb).unwrap();
        let (m, k) = if ta { (a.cols(), a.rows()) } else { (a.rows(), a.cols()) };
        let n = if tb { b.rows() } else { b.cols() };
        let ea = |i, p| if ta { at(&a, p, i) } else { at(&a, i, p) };
        let eb = |p, j| if tb { at(&b, j, p) } else { at(&b, p, j) };
        let want: Vec<f64> = (0..m).flat_map(|i| (0..n).map(move |j| (i, j)))
            .map(|(i, j)| (0..k).map(|p| ea(i, p) * eb(p, j)).sum())
            .collect();
        assert_close(&got, &want)?;
    }

    #[test]
    fn broadcasting_matches_indexing((a, b) in (shape(), 0u8..4, 0u8..4).prop_flat_map(|((r, c), ka, kb)| {
        let s = |k: u8| match k { 0 => (r, c), 1 => (1, c), 2 => (r, 1), _ => (1, 1) };
        let ((ar, ac), (br, bc)) = (s(ka), s(kb));
        (matrix_of(ar, ac, any_value()), matrix_of(br, bc, away_from_zero()))
    })) {
        let (r, c) = (a.rows().max(b.rows()), a.cols().max(b.cols()));
        let pick = |t: &Tensor<B>, i: usize, j: usize| at(t, i.min(t.rows() - 1), j.min(t.cols() - 1));
        for (op, f) in [
            (BinaryOp::Add, (|x, y| x + y) as fn(f64, f64) -> f64),
            (BinaryOp::Sub, |x, y| x - y),
            (BinaryOp::Mul, |x, y| x * y),
            (BinaryOp::Div, |x, y| x / y),
            (BinaryOp::Gate, |x, y| if y > 0.0 { x } else { 0.0 }),
        ] {
            let want: Vec<f64> = (0..r).flat_map(|i| (0..c).map(move |j| (i, j)))
                .map(|(i, j)| f(pick(&a, i, j), pick(&b, i, j)))
                .collect();
            assert_close(&a.binary(op, &b).unwrap(), &want)?;
        }
    }

    #[test]
    fn unary_ops_match_their_formulas(x in any_matrix()) {
        let v = x.to_vec()?;
        type Formula = fn(f64) -> f64;
        let cases: Vec<(UnaryOp<f64>, Formula)> = vec![
            (UnaryOp::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
            (UnaryOp::Softplus, |x| (1.0 + x.exp()).ln()),
            (UnaryOp::Elu(1.0), |x| if x > 0.0 { x } else { x.exp() - 1.0 }),
            (UnaryOp::LeakyRelu(0.01), |x| if x > 0.0 { x } else { 0.01 * x }),
            (UnaryOp::Relu, |x| x.max(0.0)),
            (UnaryOp::Tanh, f64::tanh),
            (UnaryOp::Powi(3), |x| x * x * x),
            (UnaryOp::Sign, |x| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 }),
            (UnaryOp::Swish(0), |x| x / (1.0 + (-x).exp())),
            (UnaryOp::EluDerivative(1.3), |x| if x > 0.0 { 1.0 } else { 1.3 * x.exp() }),
        ];
        for (op, f) in cases {
            let want: Vec<f64> = v.iter().map(|&x| f(x)).collect();
            assert_close(&x.unary(op)?, &want)?;
        }
    }

    #[test]
    fn reductions_match_loops(x in any_matrix()) {
        let (r, c) = (x.rows(), x.cols());
        let rows_sum: Vec<f64> = (0..c).map(|j| (0..r).map(|i| at(&x, i, j)).sum()).collect();
        let cols_max: Vec<f64> = (0..r).map(|i| (0..c).map(|j| at(&x, i, j)).fold(f64::MIN, f64::max)).collect();
        let lse: Vec<f64> = (0..r).map(|i| (0..c).map(|j| at(&x, i, j).exp()).sum::<f64>().ln()).collect();
        assert_close(&x.sum(Axis::Rows)?, &rows_sum)?;
        assert_close(&x.max(Axis::Cols)?, &cols_max)?;
        assert_close(&x.sum(Axis::All)?, &[x.to_vec()?.iter().sum()])?;
        assert_close(&x.logsumexp_cols()?, &lse)?;
        let softmax: Vec<f64> = (0..r).flat_map(|i| (0..c).map(move |j| (i, j)))
            .map(|(i, j)| (at(&x, i, j) - lse[i]).exp()).collect();
        assert_close(&x.softmax_cols()?, &softmax)?;
    }

    #[test]
    fn gather_then_scatter_is_the_adjoint((x, y, index) in (shape(), 1usize..=6).prop_flat_map(|((r, c), n)| {
        (matrix_of(r, c, any_value()), matrix_of(r, n, any_value()), prop::collection::vec(0..c, n))
    })) {
        // <gather(x), y> == <x, scatter_add(y)>
        let lhs: f64 = x.gather_cols(&idx(&index)).unwrap().mul(&y).unwrap().to_vec()?.iter().sum();
        let rhs: f64 = x.mul(&y.scatter_add_cols(&idx(&index), x.cols()).unwrap()).unwrap().to_vec()?.iter().sum();
        prop_assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()));
    }

    #[test]
    fn per_row_take_put_and_reshape((x, index) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), prop::collection::vec(0..c, r))
    })) {
        let (r, c) = (x.rows(), x.cols());
        let picked: Vec<f64> = index.iter().enumerate().map(|(i, &j)| at(&x, i, j)).collect();
        let taken = x.take_per_row(&idx(&index)).unwrap();
        assert_close(&taken, &picked)?;
        let mut placed = vec![0.0; r * c];
        for (i, &j) in index.iter().enumerate() {
            placed[i * c + j] = picked[i];
        }
        assert_close(&taken.put_per_row(&idx(&index), c).unwrap(), &placed)?;
        let flat = x.reshape((1, r * c)).unwrap();
        prop_assert_eq!(flat.shape(), flow_core::Shape::new(1, r * c));
        assert_close(&flat, &x.to_vec()?)?;
    }

    #[test]
    fn search_sorted_rows_counts_entries_at_or_below((knots, x) in (1usize..=5, 1usize..=9).prop_flat_map(|(r, k)| {
        (
            prop::collection::vec(prop::collection::vec(-3.0f64..3.0, k), r),
            prop::collection::vec(prop_oneof![-4.0f64..4.0, Just(0.5), Just(f64::NAN)], r),
        )
    })) {
        // Sorted rows, with a repeated knot at 0.5 so that ties are exercised.
        let r = knots.len();
        let k = knots[0].len();
        let rows: Vec<Vec<f64>> = knots.into_iter().map(|mut row| {
            row[0] = 0.5;
            row.sort_by(f64::total_cmp);
            row
        }).collect();
        let sorted = tensor(r, k, rows.concat());
        let got = sorted.search_sorted_rows(&tensor(r, 1, x.clone())).unwrap().to_vec().unwrap();
        for i in 0..r {
            let want = rows[i].iter().filter(|&&v| v <= x[i]).count();
            prop_assert_eq!(got[i], want, "row {} value {}", i, x[i]);
        }
    }
}

/// The fused spline kernel and its composition from primitives agree, values and
/// first-order gradients.
fn check_fused_spline(
    x: &Tensor<B>,
    params: &Tensor<B>,
    bins: usize,
    direction: flow_core::Direction,
) -> Result<(), TestCaseError> {
    let spec = spline_spec(bins);
    let tape = flow_core::Tape::new(&CPU);
    let (xv, pv) = (tape.input(x.clone()), tape.input(params.clone()));
    let (y, ld) = xv.rational_quadratic(&pv, &spec, direction).unwrap();
    let (yc, ldc) = xv
        .rational_quadratic_composed(&pv, &spec, direction)
        .unwrap();
    assert_close(&y.value(), &yc.value().to_vec()?)?;
    let ld_tol = ld.value().max_abs_diff(&ldc.value()).unwrap();
    prop_assert!(ld_tol < 1e-10, "log-dets differ by {}", ld_tol);
    let weights = Tensor::randn(&CPU, (x.rows(), 2 * x.cols()), &mut flow_core::rng(7))?;
    let w = tape.constant(weights);
    let fused = flow_core::Var::concat_cols(&[&y, &ld])
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()?;
    let composed = flow_core::Var::concat_cols(&[&yc, &ldc])
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()?;
    let gf = tape.grad(&fused, &[&xv, &pv], false).unwrap();
    let gc = tape.grad(&composed, &[&xv, &pv], false).unwrap();
    for (a, b) in gf.iter().zip(&gc) {
        let diff = a.value().max_abs_diff(&b.value()).unwrap();
        let scale = 1.0
            + b.value()
                .to_vec()?
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
        prop_assert!(
            diff < 1e-9 * scale,
            "gradients differ by {} (scale {})",
            diff,
            scale
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fused_spline_matches_composed((x, params, bins, direction) in spline_operands()) {
        check_fused_spline(&x, &params, bins, direction)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Batches of 30 to 300 entries: the kernel works through blocks of entries side by
    /// side, so this covers whole blocks, a partial last block, and entries beyond the tail
    /// bound in any lane of either.
    #[test]
    fn fused_spline_matches_composed_over_blocks(
        (x, params, bins, direction) in (30usize..=100, 1usize..=3, 1usize..=8, any::<bool>())
            .prop_flat_map(|(n, d, k, inverse)| (
                matrix_of(n, d, -2.6f64..2.6),
                matrix_of(n, d * (3 * k - 1), -3.0f64..3.0),
                Just(k),
                Just(if inverse { flow_core::Direction::Inverse } else { flow_core::Direction::Forward }),
            ))
    ) {
        check_fused_spline(&x, &params, bins, direction)?;
    }
}

#[test]
fn per_row_ops_name_bad_shapes() {
    let x = tensor(2, 3, vec![0.0; 6]);
    let err = x.take_per_row(&idx(&[0])).unwrap_err().to_string();
    assert!(err.contains("1 indices for 2 rows"), "{err}");
    let err = x.take_per_row(&idx(&[0, 3])).unwrap_err().to_string();
    assert!(
        err.contains("column index 3 out of range for width 3"),
        "{err}"
    );
    let err = x.put_per_row(&idx(&[0, 1]), 3).unwrap_err().to_string();
    assert!(err.contains("expected one column"), "{err}");
    let err = x.reshape((4, 2)).unwrap_err().to_string();
    assert!(err.contains("cannot be viewed as"), "{err}");
    let err = x
        .search_sorted_rows(&tensor(3, 1, vec![0.0; 3]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("search_sorted_rows"), "{err}");
}

/// `(m, k, n)` of a product `op(a) @ op(b)`: all three in 1..=10, or one or two of them up to
/// 70, so that the CPU backend's thin-product kernels (`k <= 4`, `n <= 8`, or `m <= 8` with
/// `b` transposed) and `gemm` both run, with and without the kernels' vector tails.
fn product_dims() -> impl Strategy<Value = (usize, usize, usize)> {
    let small = 1usize..=10;
    let large = 11usize..=70;
    prop_oneof![
        (small.clone(), small.clone(), small.clone()),
        (0usize..3, large.clone(), small.clone(), small.clone()).prop_map(|(at, l, s1, s2)| {
            match at {
                0 => (l, s1, s2),
                1 => (s1, l, s2),
                _ => (s1, s2, l),
            }
        }),
        (0usize..3, small, large.clone(), large).prop_map(|(at, s, l1, l2)| match at {
            0 => (s, l1, l2),
            1 => (l1, s, l2),
            _ => (l1, l2, s),
        }),
    ]
}

/// `a`, `b`, `ta`, `tb` of `a.matmul_t(ta, b, tb)`, and a bias row of length `n`.
type ProductOperands = (Tensor<B>, Tensor<B>, bool, bool, Tensor<B>);

/// Operands of a product with `(m, k, n)` from [`product_dims`].
fn thin_product_operands() -> BoxedStrategy<ProductOperands> {
    (product_dims(), any::<bool>(), any::<bool>())
        .prop_flat_map(|(dims, ta, tb)| {
            (
                product_operands(dims, ta, tb),
                matrix_of(1, dims.2, any_value()),
            )
                .prop_map(|((a, b, ta, tb), bias)| (a, b, ta, tb, bias))
        })
        .boxed()
}

/// `t^T`, contiguous.
fn transposed(t: &Tensor<B>) -> Tensor<B> {
    let (r, c) = (t.rows(), t.cols());
    tensor(
        c,
        r,
        (0..c)
            .flat_map(|j| (0..r).map(move |i| at(t, i, j)))
            .collect(),
    )
}

/// `got` against `bias[j] + sum_p a(i, p) * b(p, j)`, to 1e-12 of the sum of the terms'
/// magnitudes.
fn assert_product(
    got: &Tensor<B>,
    (m, k, n): (usize, usize, usize),
    ea: impl Fn(usize, usize) -> f64,
    eb: impl Fn(usize, usize) -> f64,
    bias: Option<&Tensor<B>>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!((got.rows(), got.cols()), (m, n));
    for i in 0..m {
        for j in 0..n {
            let b0 = bias.map_or(0.0, |b| at(b, 0, j));
            let want = b0 + (0..k).map(|p| ea(i, p) * eb(p, j)).sum::<f64>();
            let scale = b0.abs() + (0..k).map(|p| (ea(i, p) * eb(p, j)).abs()).sum::<f64>();
            let g = at(got, i, j);
            prop_assert!(
                (g - want).abs() <= 1e-12 * (1.0 + scale),
                "({}, {}) of {}x{}x{}: {} vs {}",
                i,
                j,
                m,
                k,
                n,
                g,
                want
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..config() })]

    #[test]
    fn thin_and_wide_products_match_the_triple_loop(
        (a, b, ta, tb, bias) in thin_product_operands()
    ) {
        let (m, k) = if ta { (a.cols(), a.rows()) } else { (a.rows(), a.cols()) };
        let n = if tb { b.rows() } else { b.cols() };
        let ea = |i, p| if ta { at(&a, p, i) } else { at(&a, i, p) };
        let eb = |p, j| if tb { at(&b, j, p) } else { at(&b, p, j) };
        assert_product(&a.matmul_t(ta, &b, tb).unwrap(), (m, k, n), ea, eb, None)?;

        // x @ weight^T + bias, with x = op(a) and weight = op(b)^T made contiguous.
        let x = if ta { transposed(&a) } else { a.clone() };
        let weight = if tb { b.clone() } else { transposed(&b) };
        let got = x.linear(&weight, &bias).unwrap();
        let (ex, ew) = (|i, p| at(&x, i, p), |p, j| at(&weight, j, p));
        assert_product(&got, (m, k, n), ex, ew, Some(&bias))?;
    }
}

#[test]
fn logsumexp_and_softplus_do_not_overflow() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let x = tensor(1, 3, vec![1000.0, 1000.0, -1000.0]);
    let lse = x.logsumexp_cols()?.to_vec()?[0];
    assert!((lse - (1000.0 + 2f64.ln())).abs() < 1e-9);
    let sp = x.unary(UnaryOp::Softplus)?.to_vec()?;
    assert_eq!(sp[0], 1000.0);
    assert_eq!(sp[2], 0.0); // exp(-1000) underflows f64
                            // Where 1 + exp(x) rounds to 1, the stable form keeps the answer, exp(x).
    let small = tensor(1, 1, vec![-40.0])
        .unary(UnaryOp::Softplus)?
        .to_vec()?[0];
    assert!((small / (-40f64).exp() - 1.0).abs() < 1e-12);
    let s = x.softmax_cols()?.to_vec()?;
    assert!((s[0] - 0.5).abs() < 1e-12 && s[2] == 0.0);
    Ok(())
}

#[test]
fn empty_and_degenerate_shapes() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let x = tensor(3, 0, vec![]);
    let w = tensor(0, 2, vec![]);
    assert_eq!(x.matmul(&w).unwrap().to_vec()?, vec![0.0; 6]);
    assert_eq!(x.sum(Axis::Cols)?.to_vec()?, vec![0.0; 3]);
    Ok(())
}
