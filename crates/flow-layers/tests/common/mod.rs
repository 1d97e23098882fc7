//! Helpers shared by the layer property tests: independent Jacobians (autodiff and central
//! differences), log|det| by LU, and the round-trip / log-det checks of one layer.
#![allow(dead_code)]

use flow_core::{Axis, Cpu, ParamStore, Tape, Tensor, Var};
use flow_layers::{Flow, NormalizingFlow};
use proptest::prelude::*;

pub type B = Cpu<f64>;
pub const CPU: B = Cpu::new();
pub const TOL: f64 = 1e-9;

/// log|det| of a square matrix (row-major) by LU with partial pivoting.
pub fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut total = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
            .unwrap();
        if p != c {
            for k in 0..n {
                a.swap(c * n + k, p * n + k);
            }
        }
        let pivot = a[c * n + c];
        total += pivot.abs().ln();
        for r in c + 1..n {
            let f = a[r * n + c] / pivot;
            for k in c..n {
                a[r * n + k] -= f * a[c * n + k];
            }
        }
    }
    total
}

/// Per-sample Jacobians dy/dz of a row-wise map, by one reverse pass per output column.
pub fn jacobians(f: &dyn Fn(&Var<B>) -> Var<B>, z: &Tensor<B>) -> Vec<Vec<f64>> {
    let (rows, d) = (z.rows(), z.cols());
    let tape = Tape::new(&CPU);
    let zv = tape.input(z.clone());
    let y = f(&zv);
    let mut jac = vec![vec![0.0; d * d]; rows];
    for j in 0..d {
        let yj = y.slice_cols(j, 1).unwrap().sum(Axis::All);
        let g = tape
            .grad(&yj, &[&zv], false)
            .unwrap()
            .remove(0)
            .value()
            .to_vec();
        for (r, jr) in jac.iter_mut().enumerate() {
            for i in 0..d {
                jr[j * d + i] = g[r * d + i];
            }
        }
    }
    jac
}

/// Per-sample Jacobians by central differences.
pub fn jacobians_fd(f: &dyn Fn(&Tensor<B>) -> Tensor<B>, z: &Tensor<B>) -> Vec<Vec<f64>> {
    let (rows, d) = (z.rows(), z.cols());
    let eps = 1e-6;
    let mut jac = vec![vec![0.0; d * d]; rows];
    for i in 0..d {
        let shifted = |delta: f64| {
            let mut v = z.to_vec();
            for r in 0..rows {
                v[r * d + i] += delta;
            }
            f(&Tensor::from_vec(&CPU, (rows, d), v).unwrap()).to_vec()
        };
        let (up, down) = (shifted(eps), shifted(-eps));
        for (r, jr) in jac.iter_mut().enumerate() {
            for j in 0..d {
                jr[j * d + i] = (up[r * d + j] - down[r * d + j]) / (2.0 * eps);
            }
        }
    }
    jac
}

pub fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        prop_assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{} [{}]: {} vs {}",
            what,
            k,
            x,
            y
        );
    }
    Ok(())
}

/// The three properties for one layer at `z`.
pub fn check_layer(
    layer: &dyn Flow<B>,
    params: &ParamStore<B>,
    z: &Tensor<B>,
) -> Result<(), TestCaseError> {
    check_layer_given(layer, params, z, None)
}

/// The three properties for one layer at `z`, given a context (`rows x c`) held fixed.
pub fn check_layer_given(
    layer: &dyn Flow<B>,
    params: &ParamStore<B>,
    z: &Tensor<B>,
    context: Option<&Tensor<B>>,
) -> Result<(), TestCaseError> {
    let ctx = |v: &Var<B>| context.map(|c| v.tape().constant(c.clone()));
    let tape = Tape::new(&CPU);
    let zv = tape.constant(z.clone());
    let (x, fwd_ld) = layer.forward(params, &zv, ctx(&zv).as_ref()).unwrap();
    let (z_back, inv_ld) = layer.inverse(params, &x, ctx(&x).as_ref()).unwrap();
    assert_close(
        &z_back.value().to_vec(),
        &z.to_vec(),
        TOL,
        "inverse(forward(z))",
    )?;
    let minus_inv: Vec<f64> = inv_ld.value().to_vec().iter().map(|v| -v).collect();
    assert_close(
        &fwd_ld.value().to_vec(),
        &minus_inv,
        TOL,
        "forward log-det vs -inverse log-det",
    )?;
    prop_assert_eq!(fwd_ld.shape(), flow_core::Shape::new(z.rows(), 1));
    let d = z.cols();
    let jac = jacobians(&|v| layer.forward(params, v, ctx(v).as_ref()).unwrap().0, z);
    let from_jac: Vec<f64> = jac.into_iter().map(|j| log_abs_det(j, d)).collect();
    assert_close(
        &fwd_ld.value().to_vec(),
        &from_jac,
        1e-8,
        "forward log-det vs log|det J|",
    )?;
    // And the inverse's own Jacobian at x.
    let x = x.value();
    let jac = jacobians(
        &|v| layer.inverse(params, v, ctx(v).as_ref()).unwrap().0,
        &x,
    );
    let from_jac: Vec<f64> = jac.into_iter().map(|j| log_abs_det(j, d)).collect();
    assert_close(
        &inv_ld.value().to_vec(),
        &from_jac,
        1e-8,
        "inverse log-det vs log|det J|",
    )?;
    Ok(())
}

/// The properties for a whole model at `z`: `inverse(forward(z)) = z`, forward log-det =
/// -inverse log-det, and the forward log-det against log|det J| of a finite-difference
/// Jacobian. Returns the forward log-dets, for further checks.
pub fn check_model(model: &NormalizingFlow<B>, z: &Tensor<B>) -> Result<Vec<f64>, TestCaseError> {
    let tape = Tape::new(&CPU);
    let (x, fwd_ld) = model
        .forward_and_log_det(&tape.constant(z.clone()))
        .unwrap();
    let (z_back, inv_ld) = model.inverse_and_log_det(&x).unwrap();
    assert_close(&z_back.value().to_vec(), &z.to_vec(), TOL, "round trip")?;
    let fwd_ld = fwd_ld.value().to_vec();
    let minus_inv: Vec<f64> = inv_ld.value().to_vec().iter().map(|v| -v).collect();
    assert_close(&fwd_ld, &minus_inv, TOL, "log-dets")?;
    let forward = |t: &Tensor<B>| {
        let tape = Tape::new(&CPU);
        model
            .forward_and_log_det(&tape.constant(t.clone()))
            .unwrap()
            .0
            .value()
    };
    let from_fd: Vec<f64> = jacobians_fd(&forward, z)
        .into_iter()
        .map(|j| log_abs_det(j, z.cols()))
        .collect();
    assert_close(
        &fwd_ld,
        &from_fd,
        1e-6,
        "forward log-det vs finite-difference log|det J|",
    )?;
    Ok(fwd_ld)
}

pub fn batch(dim: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Tensor<B>> {
    (1usize..=4, dim).prop_flat_map(|(rows, d)| {
        prop::collection::vec(-2.5f64..2.5, rows * d)
            .prop_map(move |v| Tensor::from_vec(&CPU, (rows, d), v).unwrap())
    })
}
