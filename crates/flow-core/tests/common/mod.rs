//! Proptest strategies shared by the gradient-check tests: f64 CPU tensors of small shapes
//! (1 row and 1 column included), with values kept away from kinks where an op has one.
#![allow(dead_code)]

use flow_core::gradcheck::{GradCheck, GradCheckError};
use flow_core::{Cpu, IndexTensor, Result, Tensor, Var};
use proptest::prelude::*;

pub type B = Cpu<f64>;
pub const CPU: B = Cpu::new();

pub fn tensor(rows: usize, cols: usize, values: Vec<f64>) -> Tensor<B> {
    Tensor::from_vec(&CPU, (rows, cols), values).unwrap()
}

/// A `rows x cols` tensor with values from `values`.
pub fn matrix_of(
    rows: usize,
    cols: usize,
    values: impl Strategy<Value = f64> + Clone + 'static,
) -> BoxedStrategy<Tensor<B>> {
    prop::collection::vec(values, rows * cols)
        .prop_map(move |v| tensor(rows, cols, v))
        .boxed()
}

/// Any shape from 1x1 to 5x5.
pub fn shape() -> impl Strategy<Value = (usize, usize)> {
    (1usize..=5, 1usize..=5)
}

/// Values in [-2, 2].
pub fn any_value() -> impl Strategy<Value = f64> + Clone {
    -2.0f64..2.0
}

/// Values in [-2, 2] at least 0.05 away from zero: for ops with a kink at zero.
pub fn away_from_zero() -> impl Strategy<Value = f64> + Clone {
    (0.05f64..2.0, any::<bool>()).prop_map(|(m, neg)| if neg { -m } else { m })
}

/// Values in [0.2, 3]: for log, sqrt and reciprocals.
pub fn positive() -> impl Strategy<Value = f64> + Clone {
    0.2f64..3.0
}

/// Operands `a`, `b` of `op(a) @ op(b)` for an `m x k` by `k x n` product with the given
/// transpose flags (each operand stored in the layout its flag reads).
pub fn product_operands(
    (m, k, n): (usize, usize, usize),
    ta: bool,
    tb: bool,
) -> BoxedStrategy<(Tensor<B>, Tensor<B>, bool, bool)> {
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    (
        matrix_of(ar, ac, any_value()),
        matrix_of(br, bc, any_value()),
        Just(ta),
        Just(tb),
    )
        .boxed()
}

/// Operands of `op(a) @ op(b)` with each dimension in `1..=max`, and the transpose flags.
pub fn matmul_operands(max: usize) -> BoxedStrategy<(Tensor<B>, Tensor<B>, bool, bool)> {
    (1..=max, 1..=max, 1..=max, any::<bool>(), any::<bool>())
        .prop_flat_map(|(m, k, n, ta, tb)| product_operands((m, k, n), ta, tb))
        .boxed()
}

/// Operands of an affine coupling: rows `n x d` and interleaved parameters `n x 2 d2`
/// (`1 <= d2 <= d`), with a scale map and a direction.
pub fn coupling_operands() -> BoxedStrategy<(
    Tensor<B>,
    Tensor<B>,
    flow_core::CouplingScale,
    flow_core::Direction,
)> {
    use flow_core::{CouplingScale, Direction};
    (1usize..=4, 1usize..=5)
        .prop_flat_map(|(n, d)| (Just(n), Just(d), 1..=d))
        .prop_flat_map(|(n, d, d2)| {
            (
                matrix_of(n, d, any_value()),
                matrix_of(n, 2 * d2, any_value()),
                prop::sample::select(vec![CouplingScale::Exp, CouplingScale::Sigmoid]),
                prop::sample::select(vec![Direction::Forward, Direction::Inverse]),
            )
        })
        .boxed()
}

/// Points `n x d` with a Gaussian's `loc` and `log_scale` (`1 x d`).
pub fn diag_normal_operands() -> BoxedStrategy<(Tensor<B>, Tensor<B>, Tensor<B>)> {
    shape()
        .prop_flat_map(|(n, d)| {
            (
                matrix_of(n, d, any_value()),
                matrix_of(1, d, any_value()),
                matrix_of(1, d, -1.0f64..1.0),
            )
        })
        .boxed()
}

/// Operands of a linear layer: `x` (`r x i`), `weight` (`o x i`), `bias` (`1 x o`).
pub fn linear_operands(max: usize) -> BoxedStrategy<(Tensor<B>, Tensor<B>, Tensor<B>)> {
    (1..=max, 1..=max, 1..=max)
        .prop_flat_map(|(r, i, o)| {
            (
                matrix_of(r, i, any_value()),
                matrix_of(o, i, any_value()),
                matrix_of(1, o, any_value()),
            )
        })
        .boxed()
}

/// The smallest |pre-activation| of a linear layer: finite differences across a kink fail.
pub fn min_abs_pre_activation(x: &Tensor<B>, w: &Tensor<B>, b: &Tensor<B>) -> f64 {
    x.linear(w, b)
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .fold(f64::INFINITY, |m, v| m.min(v.abs()))
}

/// Indices on the CPU.
pub fn idx(values: &[usize]) -> IndexTensor<B> {
    IndexTensor::new(&CPU, values).unwrap()
}

pub fn any_matrix() -> BoxedStrategy<Tensor<B>> {
    shape()
        .prop_flat_map(|(r, c)| matrix_of(r, c, any_value()))
        .boxed()
}

pub fn check1(
    inputs: &[Tensor<B>],
    f: impl Fn(&[Var<B>]) -> Result<Var<B>>,
) -> Result<(), TestCaseError> {
    check1_with(GradCheck::default(), inputs, f)
}

/// [`check1`] with `checker`'s steps and tolerances.
pub fn check1_with(
    checker: GradCheck<f64>,
    inputs: &[Tensor<B>],
    f: impl Fn(&[Var<B>]) -> Result<Var<B>>,
) -> Result<(), TestCaseError> {
    checker.check(&CPU, inputs, f).map(|_| ()).map_err(fail)
}

pub fn check2(
    inputs: &[Tensor<B>],
    f: impl Fn(&[Var<B>]) -> Result<Var<B>>,
) -> Result<(), TestCaseError> {
    // Second differences of an analytic gradient are a little noisier.
    let checker = GradCheck {
        rtol: 1e-5,
        atol: 1e-6,
        ..GradCheck::default()
    };
    checker
        .check_second_order(&CPU, inputs, f)
        .map(|_| ())
        .map_err(fail)
}

fn fail(e: GradCheckError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// The number of cases every op's property test runs.
pub fn config() -> ProptestConfig {
    ProptestConfig::with_cases(64)
}

/// A spline of 1 to 6 bins on [-2, 2] with nflows' minimums.
pub fn spline_spec(bins: usize) -> flow_core::RationalQuadratic {
    flow_core::RationalQuadratic {
        bins,
        tail_bound: 2.0,
        min_bin_width: 1e-3,
        min_bin_height: 1e-3,
        min_derivative: 1e-3,
    }
}

/// Spline operands: values `n x d` on [-2.6, 2.6] (some beyond the tail bound), raw
/// parameters `n x d (3K - 1)` on [-2, 2], the bin count and the direction.
pub fn spline_operands(
) -> impl Strategy<Value = (Tensor<B>, Tensor<B>, usize, flow_core::Direction)> {
    (1usize..=4, 1usize..=3, 1usize..=6, any::<bool>()).prop_flat_map(|(n, d, k, inverse)| {
        (
            matrix_of(n, d, -2.6f64..2.6),
            matrix_of(n, d * (3 * k - 1), -2.0f64..2.0),
            Just(k),
            Just(if inverse {
                flow_core::Direction::Inverse
            } else {
                flow_core::Direction::Forward
            }),
        )
    })
}

/// Whether every entry of `x` inside the tail bound lies at least `gap` from each knot of
/// its spline on the input side (x-knots forward, y-knots inverse).
pub fn clear_of_knots(
    x: &flow_core::Tensor<B>,
    params: &flow_core::Tensor<B>,
    spec: &flow_core::RationalQuadratic,
    direction: flow_core::Direction,
    gap: f64,
) -> bool {
    let (k, bound) = (spec.bins, spec.tail_bound);
    let per = spec.params_per_feature();
    let (xs, ps) = (x.to_f64s().unwrap(), params.to_f64s().unwrap());
    let (offset, min) = match direction {
        flow_core::Direction::Forward => (0, spec.min_bin_width),
        flow_core::Direction::Inverse => (k, spec.min_bin_height),
    };
    xs.iter().enumerate().all(|(e, &v)| {
        if v.abs() > bound {
            return true;
        }
        let raw = &ps[e * per + offset..e * per + offset + k];
        let top = raw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = raw.iter().map(|r| (r - top).exp()).sum();
        let mut knot = -bound;
        raw.iter().all(|r| {
            knot += 2.0 * bound * (min + (1.0 - min * k as f64) * (r - top).exp() / total);
            (v - knot).abs() >= gap
        }) && (v + bound).abs() >= gap
    })
}
