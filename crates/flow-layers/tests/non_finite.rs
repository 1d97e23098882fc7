//! The model's policy on non-finite values: every call that takes rows (`log_prob`,
//! `forward_kld`, `inverse`, `forward`, `init_from_data`, a context of `sample`), on tensors
//! and tape variables, refuses a NaN or an infinity in its input or its context with an
//! error naming the call, the argument and the first such entry's row, column and value.

use flow_core::{Cpu, Tape, Tensor};
use flow_layers::{Error, GlowConfig, NormalizingFlow, NsfConfig, RealNvpConfig};
use proptest::prelude::*;

type B = Cpu<f64>;
const CPU: B = Cpu::new();
const BAD: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

fn real_nvp(dim: usize) -> NormalizingFlow<B> {
    let spec = RealNvpConfig {
        dim,
        hidden: vec![8],
        ..RealNvpConfig::default()
    }
    .spec()
    .unwrap();
    NormalizingFlow::new_random(&CPU, spec, 0).unwrap()
}

/// A conditional flow over 3 features with 2 context features.
fn conditional() -> NormalizingFlow<B> {
    let spec = NsfConfig {
        dim: 3,
        context: 2,
        transforms: 2,
        hidden: vec![8],
        ..NsfConfig::default()
    }
    .spec()
    .unwrap();
    NormalizingFlow::new_random(&CPU, spec, 0).unwrap()
}

/// `rows x cols` of finite values, `bad` at every entry of `at` (row-major positions).
fn rows_with(rows: usize, cols: usize, at: &[(usize, usize)], bad: f64) -> Tensor<B> {
    let mut v: Vec<f64> = (0..rows * cols)
        .map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0)
        .collect();
    for &(r, c) in at {
        v[r * cols + c] = bad;
    }
    Tensor::from_vec(&CPU, (rows, cols), v).unwrap()
}

fn same_value(got: f64, want: f64) -> bool {
    got == want || (got.is_nan() && want.is_nan())
}

/// `result` is the error of `call` naming `arg` at (`row`, `col`) holding `bad`.
fn assert_refused<T: std::fmt::Debug>(
    result: flow_layers::Result<T>,
    call: &str,
    arg: &str,
    (row, col): (usize, usize),
    bad: f64,
) {
    let err = result.expect_err("non-finite input accepted");
    let message = err.to_string();
    match err {
        Error::NonFinite {
            call: c,
            arg: a,
            row: r,
            col: k,
            value,
        } => {
            assert_eq!((c, a, r, k), (call, arg, row, col), "{message}");
            assert!(same_value(value, bad), "{message}");
        }
        other => panic!("{call}({arg}) with {bad} at ({row}, {col}): {other}"),
    }
    assert!(
        message.contains(&format!("row {row}, column {col}")) && message.contains(call),
        "{message}"
    );
}

/// Every data-taking call of an unconditional model, tensor and tape-variable forms.
fn check_unconditional(model: &NormalizingFlow<B>, x: &Tensor<B>, first: (usize, usize), bad: f64) {
    assert_refused(model.log_prob(x, None), "log_prob", "x", first, bad);
    assert_refused(model.forward_kld(x, None), "forward_kld", "x", first, bad);
    assert_refused(model.inverse(x, None), "inverse", "x", first, bad);
    assert_refused(model.forward(x, None), "forward", "z", first, bad);
    let tape = Tape::new(&CPU);
    let v = tape.constant(x.clone());
    assert_refused(model.log_prob(&v, None), "log_prob", "x", first, bad);
    assert_refused(model.forward_kld(&v, None), "forward_kld", "x", first, bad);
    assert_refused(model.inverse(&v, None), "inverse", "x", first, bad);
    assert_refused(model.forward(&v, None), "forward", "z", first, bad);
    // A variable computed on the tape (not a leaf) is checked too.
    let w = tape.input(x.clone()).mul_scalar(1.0).unwrap();
    assert_refused(model.forward_kld(&w, None), "forward_kld", "x", first, bad);
}

/// Every data-taking call of the conditional model, with `x` and `c`; `arg` is the one
/// holding the first non-finite entry.
fn check_conditional(
    model: &NormalizingFlow<B>,
    x: &Tensor<B>,
    c: &Tensor<B>,
    arg: &str,
    first: (usize, usize),
    bad: f64,
) {
    let z_arg = if arg == "x" { "z" } else { arg };
    assert_refused(model.log_prob(x, Some(c)), "log_prob", arg, first, bad);
    assert_refused(
        model.forward_kld(x, Some(c)),
        "forward_kld",
        arg,
        first,
        bad,
    );
    assert_refused(model.inverse(x, Some(c)), "inverse", arg, first, bad);
    assert_refused(model.forward(x, Some(c)), "forward", z_arg, first, bad);
    let tape = Tape::new(&CPU);
    let (xv, cv) = (tape.constant(x.clone()), tape.constant(c.clone()));
    assert_refused(model.log_prob(&xv, Some(&cv)), "log_prob", arg, first, bad);
    assert_refused(
        model.forward_kld(&xv, Some(&cv)),
        "forward_kld",
        arg,
        first,
        bad,
    );
    assert_refused(model.inverse(&xv, Some(&cv)), "inverse", arg, first, bad);
    assert_refused(model.forward(&xv, Some(&cv)), "forward", z_arg, first, bad);
}

#[test]
fn first_and_last_entries_and_every_kind_are_named() {
    let model = real_nvp(3);
    for bad in BAD {
        for (rows, at) in [
            (1, (0, 0)),
            (1, (0, 2)),
            (5, (0, 0)),
            (5, (4, 2)),
            (5, (2, 1)),
        ] {
            check_unconditional(&model, &rows_with(rows, 3, &[at], bad), at, bad);
        }
        // Several: the first, row by row, is named.
        let x = rows_with(6, 3, &[(1, 2), (2, 0), (5, 2)], bad);
        check_unconditional(&model, &x, (1, 2), bad);
    }
}

#[test]
fn the_context_is_checked_and_the_data_first() {
    let model = conditional();
    for bad in BAD {
        for at in [(0, 0), (3, 1), (1, 0)] {
            let x = rows_with(4, 3, &[], 0.0);
            let c = rows_with(4, 2, &[at], bad);
            check_conditional(&model, &x, &c, "context", at, bad);
            // Both bad: the data are named.
            let x = rows_with(4, 3, &[(2, 2)], bad);
            check_conditional(&model, &x, &c, "x", (2, 2), bad);
        }
    }
    // A context of `sample`, one row or one per sample.
    let c = rows_with(1, 2, &[(0, 1)], f64::NAN);
    assert_refused(
        model.sample(5, Some(&c), &mut flow_core::rng(0)),
        "sample",
        "context",
        (0, 1),
        f64::NAN,
    );
    let c = rows_with(5, 2, &[(4, 0)], f64::INFINITY);
    assert_refused(
        model.sample(5, Some(&c), &mut flow_core::rng(0)),
        "sample",
        "context",
        (4, 0),
        f64::INFINITY,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_position_is_named(
        rows in 1usize..7,
        dim in 2usize..5,
        pick in 0usize..1000,
        kind in 0usize..3,
        more in proptest::collection::vec(0usize..1000, 0..3),
    ) {
        let bad = BAD[kind];
        let n = rows * dim;
        let first = pick % n;
        // Further bad entries after the first one.
        let mut at = vec![(first / dim, first % dim)];
        at.extend(more.iter().map(|m| first + m % (n - first)).map(|i| (i / dim, i % dim)));
        let x = rows_with(rows, dim, &at, bad);
        check_unconditional(&real_nvp(dim), &x, (first / dim, first % dim), bad);
    }

    #[test]
    fn any_position_of_the_context_is_named(
        rows in 1usize..7,
        pick in 0usize..1000,
        kind in 0usize..3,
    ) {
        let bad = BAD[kind];
        let at = (pick % rows, pick / rows % 2);
        let x = rows_with(rows, 3, &[], 0.0);
        let c = rows_with(rows, 2, &[at], bad);
        check_conditional(&conditional(), &x, &c, "context", at, bad);
    }
}

#[test]
fn finite_data_pass_even_when_their_sum_overflows() {
    let model = real_nvp(2);
    let x = Tensor::from_vec(&CPU, (2, 2), vec![f64::MAX, f64::MAX, 0.0, 1.0]).unwrap();
    // No error: the density of huge values may itself not be finite, but the data are.
    model.log_prob(&x, None).unwrap();
    model.forward_kld(&x, None).unwrap();
    let x = Tensor::from_vec(&CPU, (1, 2), vec![f64::MAX, -f64::MAX]).unwrap();
    model.inverse(&x, None).unwrap();
}

#[test]
fn shape_errors_come_before_the_check() {
    let model = real_nvp(2);
    let x = rows_with(2, 3, &[(0, 0)], f64::NAN);
    assert!(matches!(model.log_prob(&x, None), Err(Error::Width { .. })));
}

#[test]
fn sampling_without_data_is_unaffected() {
    let model = real_nvp(2);
    let (x, log_q) = model.sample(16, None, &mut flow_core::rng(3)).unwrap();
    assert!(
        model
            .log_prob(&x, None)
            .unwrap()
            .max_abs_diff(&log_q)
            .unwrap()
            < 1e-9
    );
}

#[test]
fn data_dependent_initialisation_refuses_non_finite_data() {
    let spec = GlowConfig {
        dim: 2,
        transforms: 2,
        hidden: vec![8],
        ..GlowConfig::default()
    }
    .spec()
    .unwrap();
    let mut model = NormalizingFlow::new(&CPU, spec, 0).unwrap();
    let before: Vec<Vec<f64>> = model
        .params()
        .iter()
        .map(|(_, _, t)| t.to_vec().unwrap())
        .collect();
    let x = rows_with(8, 2, &[(5, 1)], f64::NEG_INFINITY);
    let err = model.init_from_data(&x, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFinite {
                call: "init_from_data",
                arg: "x",
                row: 5,
                col: 1,
                ..
            }
        ),
        "{err}"
    );
    let after: Vec<Vec<f64>> = model
        .params()
        .iter()
        .map(|(_, _, t)| t.to_vec().unwrap())
        .collect();
    assert_eq!(before, after);
}
