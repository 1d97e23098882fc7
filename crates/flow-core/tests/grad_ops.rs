//! First-order gradient checks of every op against central finite differences (f64), over
//! proptest-generated shapes and values.

mod common;

use common::*;
use flow_core::gradcheck::GradCheck;
use flow_core::{Activation, Axis, Tape, Tensor, Var};
use proptest::prelude::*;

/// Shapes of an operand broadcast against a `rows x cols` result: full, row, column, scalar.
fn broadcast_shape(rows: usize, cols: usize, kind: u8) -> (usize, usize) {
    match kind % 4 {
        0 => (rows, cols),
        1 => (1, cols),
        2 => (rows, 1),
        _ => (1, 1),
    }
}

fn broadcast_pair(
    b_values: impl Strategy<Value = f64> + Clone + 'static,
) -> impl Strategy<Value = (Tensor<B>, Tensor<B>)> {
    (shape(), 0u8..4, 0u8..4).prop_flat_map(move |((r, c), ka, kb)| {
        let (ar, ac) = broadcast_shape(r, c, ka);
        let (br, bc) = broadcast_shape(r, c, kb);
        (
            matrix_of(ar, ac, any_value()),
            matrix_of(br, bc, b_values.clone()),
        )
    })
}

macro_rules! unary_checks {
    ($($name:ident: $values:expr => |$x:ident| $body:expr;)*) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name(x in shape().prop_flat_map(|(r, c)| matrix_of(r, c, $values))) {
                    check1(&[x], |v| { let $x = &v[0]; Ok($body) })?;
                }
            )*
        }
    };
}

unary_checks! {
    neg: any_value() => |x| x.neg()?;
    exp: any_value() => |x| x.exp()?;
    log: positive() => |x| x.log()?;
    log1p: -0.7f64..3.0 => |x| x.log1p()?;
    sqrt: positive() => |x| x.sqrt()?;
    square: any_value() => |x| x.square()?;
    powi_cube: any_value() => |x| x.powi(3)?;
    powi_negative: away_from_zero() => |x| x.powi(-2)?;
    abs: away_from_zero() => |x| x.abs()?;
    tanh: any_value() => |x| x.tanh()?;
    sigmoid: -8.0f64..8.0 => |x| x.sigmoid()?;
    softplus: -8.0f64..8.0 => |x| x.softplus()?;
    relu: away_from_zero() => |x| x.relu()?;
    leaky_relu: away_from_zero() => |x| x.leaky_relu(0.2)?;
    elu: away_from_zero() => |x| x.elu(1.3)?;
    elu_derivative: away_from_zero() => |x| x.unary(flow_core::UnaryOp::EluDerivative(1.3))?;
    add_scalar: any_value() => |x| x.add_scalar(0.7)?;
    mul_scalar: any_value() => |x| x.mul_scalar(-1.7)?;
    sum_rows: any_value() => |x| x.sum(Axis::Rows)?;
    sum_cols: any_value() => |x| x.sum(Axis::Cols)?;
    sum_all: any_value() => |x| x.sum_all()?;
    mean_rows: any_value() => |x| x.mean(Axis::Rows)?;
    mean_cols: any_value() => |x| x.mean(Axis::Cols)?;
    mean_all: any_value() => |x| x.mean_all()?;
    logsumexp: any_value() => |x| x.logsumexp_cols()?;
    softmax: any_value() => |x| x.softmax_cols()?;
    log_softmax: any_value() => |x| x.log_softmax_cols()?;
}

/// Values with pairwise gaps of at least 0.01, so that a maximum is never within a
/// finite-difference step of a tie.
fn distinct(rows: usize, cols: usize) -> BoxedStrategy<Tensor<B>> {
    Just((0..rows * cols).collect::<Vec<_>>())
        .prop_shuffle()
        .prop_flat_map(move |order| {
            prop::collection::vec(0.0f64..0.005, rows * cols).prop_map(move |jitter| {
                let v = order
                    .iter()
                    .zip(&jitter)
                    .map(|(&k, j)| k as f64 * 0.01 + j - 0.1)
                    .collect();
                tensor(rows, cols, v)
            })
        })
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn matmul((a, b, ta, tb) in matmul_operands(5))
    {
        check1(&[a, b], |v| v[0].matmul_t(ta, &v[1], tb))?;
    }

    #[test]
    fn linear((x, w, b) in (1usize..=5, 1usize..=5, 1usize..=5).prop_flat_map(|(r, i, o)| {
        (matrix_of(r, i, any_value()), matrix_of(o, i, any_value()), matrix_of(1, o, any_value()))
    })) {
        check1(&[x, w, b], |v| v[0].linear(&v[1], &v[2]))?;
    }

    #[test]
    fn add((a, b) in broadcast_pair(any_value())) {
        check1(&[a, b], |v| v[0].add(&v[1]))?;
    }

    #[test]
    fn sub((a, b) in broadcast_pair(any_value())) {
        check1(&[a, b], |v| v[0].sub(&v[1]))?;
    }

    #[test]
    fn mul((a, b) in broadcast_pair(any_value())) {
        check1(&[a, b], |v| v[0].mul(&v[1]))?;
    }

    #[test]
    fn div((a, b) in broadcast_pair(away_from_zero().prop_map(|x| x + x.signum() * 0.3))) {
        check1(&[a, b], |v| v[0].div(&v[1]))?;
    }

    #[test]
    fn gate((a, b) in broadcast_pair(away_from_zero())) {
        // Differentiable in the gated operand; the gate itself is a constant mask.
        let gate = b.clone();
        check1(&[a], move |v| v[0].gate(&v[0].tape().constant(gate.clone())))?;
    }

    #[test]
    fn same_operand_twice(x in any_matrix()) {
        check1(&[x], |v| v[0].mul(&v[0])?.add(&v[0]))?;
    }

    #[test]
    fn max((x, axis) in (shape().prop_flat_map(|(r, c)| distinct(r, c)), 0u8..3)) {
        let axis = [Axis::Rows, Axis::Cols, Axis::All][axis as usize];
        check1(&[x], |v| v[0].max(axis))?;
    }

    #[test]
    fn broadcast_to((x, rows, cols) in (shape(), 0u8..4).prop_flat_map(|((r, c), k)| {
        let (xr, xc) = broadcast_shape(r, c, k);
        (matrix_of(xr, xc, any_value()), Just(r), Just(c))
    })) {
        check1(&[x], |v| v[0].broadcast_to((rows, cols)))?;
    }

    #[test]
    fn slice_cols((x, start, len) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), 0..c).prop_flat_map(move |(x, start)| (Just(x), Just(start), 1..=c - start))
    })) {
        check1(&[x], |v| v[0].slice_cols(start, len))?;
    }

    #[test]
    fn concat_cols((a, b, c) in (1usize..=5, 1usize..=4, 1usize..=4, 1usize..=4).prop_flat_map(|(r, c1, c2, c3)| {
        (matrix_of(r, c1, any_value()), matrix_of(r, c2, any_value()), matrix_of(r, c3, any_value()))
    })) {
        check1(&[a, b, c], |v| Var::concat_cols(&[&v[0], &v[1], &v[2]]))?;
    }

    #[test]
    fn gather_cols_permutation((x, perm) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), Just((0..c).collect::<Vec<_>>()).prop_shuffle())
    })) {
        check1(&[x], |v| v[0].gather_cols(&idx(&perm)))?;
    }

    #[test]
    fn gather_cols_with_repeats((x, index) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), prop::collection::vec(0..c, 1..=6))
    })) {
        check1(&[x], |v| v[0].gather_cols(&idx(&index)))?;
    }

    #[test]
    fn scatter_add_cols((x, index, width) in (shape(), 1usize..=5).prop_flat_map(|((r, c), w)| {
        (matrix_of(r, c, any_value()), prop::collection::vec(0..w, c), Just(w))
    })) {
        check1(&[x], |v| v[0].scatter_add_cols(&idx(&index), width))?;
    }

    #[test]
    fn reshape((x, rows) in shape().prop_flat_map(|(r, c)| {
        // Any factorisation of r * c rows.
        let n = r * c;
        let divisors: Vec<usize> = (1..=n).filter(|k| n % k == 0).collect();
        (matrix_of(r, c, any_value()), prop::sample::select(divisors))
    })) {
        let cols = x.shape().len() / rows;
        check1(&[x], |v| v[0].reshape((rows, cols))?.tanh())?;
    }

    #[test]
    fn take_per_row((x, index) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), prop::collection::vec(0..c, r))
    })) {
        check1(&[x], |v| v[0].take_per_row(&idx(&index)))?;
    }

    #[test]
    fn put_per_row((x, index, width) in (1usize..=5, 1usize..=5).prop_flat_map(|(r, w)| {
        (matrix_of(r, 1, any_value()), prop::collection::vec(0..w, r), Just(w))
    })) {
        check1(&[x], |v| v[0].put_per_row(&idx(&index), width))?;
    }

    #[test]
    fn rational_quadratic((x, params, bins, direction) in spline_operands()) {
        let spec = spline_spec(bins);
        // The log-det's derivative jumps at a knot (the spline is only once continuously
        // differentiable there), so a central difference across one measures nothing: points
        // within 1e-5 of a knot are drawn again. Off the knots no single step serves every
        // spline: narrow steep bins have third derivatives near 1e8 (truncation error
        // h^2 f''' / 6: a steep inverse bin gave -3.29341662 against the analytic -3.29329005
        // at the default step), and the inverse's quadratic, near a double root, amplifies
        // rounding (noise of eps |f| / h times that: a parameter's gradient came out 2.11869e-2
        // at the default step, 2.1187837e-2 at 1e-4, against the analytic 2.1187822e-2), and
        // one spline can have entries of both kinds. So each entry passes when the central
        // difference of one of four steps agrees (`GradCheck::fallback_steps`).
        prop_assume!(clear_of_knots(&x, &params, &spec, direction, 1e-5));
        let checker = GradCheck {
            fallback_steps: &[1e-7, 1e-5, 1e-4],
            ..GradCheck::default()
        };
        check1_with(checker, &[x.clone(), params.clone()], |v| {
            let (y, ld) = v[0].rational_quadratic(&v[1], &spec, direction)?;
            Var::concat_cols(&[&y, &ld])
        })?;
        check1_with(checker, &[x, params], |v| {
            let (y, ld) = v[0].rational_quadratic_composed(&v[1], &spec, direction)?;
            Var::concat_cols(&[&y, &ld])
        })?;
    }

    #[test]
    fn select((mask, a, b) in shape().prop_flat_map(|(r, c)| {
        (
            prop::collection::vec(any::<bool>(), r * c)
                .prop_map(move |m| tensor(r, c, m.into_iter().map(|t| t as u8 as f64).collect())),
            matrix_of(r, c, any_value()),
            matrix_of(r, c, any_value()),
        )
    })) {
        check1(&[a, b], |v| {
            let m = v[0].tape().constant(mask.clone());
            Var::select(&m, &v[0], &v[1])
        })?;
    }

    #[test]
    fn affine_coupling((v, params, scale, direction) in coupling_operands()) {
        check1(&[v, params], |v| {
            let (y, log_det) = v[0].affine_coupling(&v[1], scale, direction)?;
            Var::concat_cols(&[&y, &log_det])
        })?;
    }

    #[test]
    fn linear_activated((x, w, b) in linear_operands(5), slope in prop::sample::select(vec![0.0, 0.1])) {
        prop_assume!(min_abs_pre_activation(&x, &w, &b) > 1e-3);
        let act = if slope == 0.0 { Activation::Relu } else { Activation::LeakyRelu(slope) };
        check1(&[x, w, b], |v| v[0].linear_activated(&v[1], &v[2], act))?;
    }

    #[test]
    fn diag_normal_log_prob((z, loc, log_scale) in diag_normal_operands()) {
        check1(&[z, loc, log_scale], |v| v[0].diag_normal_log_prob(&v[1], &v[2]))?;
    }

    /// First-order passes use fused backward kernels; recorded ones compose primitives.
    /// Both must give the same gradients.
    #[test]
    fn fused_backward_matches_recorded(
        (v, params, scale, direction) in coupling_operands(),
        (x, w, b) in linear_operands(5),
        slope in prop::sample::select(vec![0.0, 0.2]),
        (z, loc, log_scale) in diag_normal_operands(),
    ) {
        let act = if slope == 0.0 { Activation::Relu } else { Activation::LeakyRelu(slope) };
        let tape = Tape::new(&CPU);
        let inputs: Vec<Var<B>> = [v, params, x, w, b, z, loc, log_scale].into_iter().map(|t| tape.input(t)).collect();
        let (y, log_det) = inputs[0].affine_coupling(&inputs[1], scale, direction)?;
        let h = inputs[2].linear_activated(&inputs[3], &inputs[4], act)?;
        let loss = y
            .tanh()?
            .sum_all()?
            .add(&log_det.square()?.sum_all()?)?
            .add(&h.square()?.sum_all()?)?
            .add(&inputs[5].diag_normal_log_prob(&inputs[6], &inputs[7])?.sum_all()?)?;
        let raw = tape.backward(&loss)?;
        let wrt: Vec<&Var<B>> = inputs.iter().collect();
        let recorded = tape.grad(&loss, &wrt, true)?;
        for (var, rec) in inputs.iter().zip(&recorded) {
            let diff = raw.get(var).unwrap().max_abs_diff(&rec.value())?;
            prop_assert!(diff < 1e-12, "raw and recorded gradients differ by {diff}");
        }
    }
}
