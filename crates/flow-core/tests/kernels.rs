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
    let got = got.to_vec();
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
        let v = x.to_vec();
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
        ];
        for (op, f) in cases {
            let want: Vec<f64> = v.iter().map(|&x| f(x)).collect();
            assert_close(&x.unary(op), &want)?;
        }
    }

    #[test]
    fn reductions_match_loops(x in any_matrix()) {
        let (r, c) = (x.rows(), x.cols());
        let rows_sum: Vec<f64> = (0..c).map(|j| (0..r).map(|i| at(&x, i, j)).sum()).collect();
        let cols_max: Vec<f64> = (0..r).map(|i| (0..c).map(|j| at(&x, i, j)).fold(f64::MIN, f64::max)).collect();
        let lse: Vec<f64> = (0..r).map(|i| (0..c).map(|j| at(&x, i, j).exp()).sum::<f64>().ln()).collect();
        assert_close(&x.sum(Axis::Rows), &rows_sum)?;
        assert_close(&x.max(Axis::Cols), &cols_max)?;
        assert_close(&x.sum(Axis::All), &[x.to_vec().iter().sum()])?;
        assert_close(&x.logsumexp_cols(), &lse)?;
        let softmax: Vec<f64> = (0..r).flat_map(|i| (0..c).map(move |j| (i, j)))
            .map(|(i, j)| (at(&x, i, j) - lse[i]).exp()).collect();
        assert_close(&x.softmax_cols(), &softmax)?;
    }

    #[test]
    fn gather_then_scatter_is_the_adjoint((x, y, index) in (shape(), 1usize..=6).prop_flat_map(|((r, c), n)| {
        (matrix_of(r, c, any_value()), matrix_of(r, n, any_value()), prop::collection::vec(0..c, n))
    })) {
        // <gather(x), y> == <x, scatter_add(y)>
        let lhs: f64 = x.gather_cols(&index).unwrap().mul(&y).unwrap().to_vec().iter().sum();
        let rhs: f64 = x.mul(&y.scatter_add_cols(&index, x.cols()).unwrap()).unwrap().to_vec().iter().sum();
        prop_assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()));
    }
}

#[test]
fn logsumexp_and_softplus_do_not_overflow() {
    let x = tensor(1, 3, vec![1000.0, 1000.0, -1000.0]);
    let lse = x.logsumexp_cols().to_vec()[0];
    assert!((lse - (1000.0 + 2f64.ln())).abs() < 1e-9);
    let sp = x.unary(UnaryOp::Softplus).to_vec();
    assert_eq!(sp[0], 1000.0);
    assert_eq!(sp[2], 0.0); // exp(-1000) underflows f64
                            // Where 1 + exp(x) rounds to 1, the stable form keeps the answer, exp(x).
    let small = tensor(1, 1, vec![-40.0]).unary(UnaryOp::Softplus).to_vec()[0];
    assert!((small / (-40f64).exp() - 1.0).abs() < 1e-12);
    let s = x.softmax_cols().to_vec();
    assert!((s[0] - 0.5).abs() < 1e-12 && s[2] == 0.0);
}

#[test]
fn empty_and_degenerate_shapes() {
    let x = tensor(3, 0, vec![]);
    let w = tensor(0, 2, vec![]);
    assert_eq!(x.matmul(&w).unwrap().to_vec(), vec![0.0; 6]);
    assert_eq!(x.sum(Axis::Cols).to_vec(), vec![0.0; 3]);
}
