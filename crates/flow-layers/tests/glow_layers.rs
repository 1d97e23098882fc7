//! Property tests of Glow's layers: `ActNorm` and `InvertibleLinearLu`, with random
//! parameters and dimensions 1 to 8: round trips, forward log-det = - inverse log-det, and
//! log-dets against log|det J| by autodiff; ActNorm's data-dependent initialisation; the LU
//! layer's orthogonal initialisation and its determinant under a gradient step; specs that
//! round-trip through JSON and rebuild the same layer.

use flow_core::{Axis, ParamStore, Tape, Tensor};
use flow_layers::lu_linear::{lu_decompose, random_orthogonal};
use flow_layers::{
    ActNorm, BaseSpec, Flow, FlowSpec, InvertibleLinearLu, LayerSpec, NormalizingFlow,
};
use proptest::prelude::*;

mod common;
use common::*;

fn forward_value(layer: &dyn Flow<B>, params: &ParamStore<B>, z: &Tensor<B>) -> Vec<f64> {
    let tape = Tape::new(&CPU);
    layer
        .forward(params, &tape.constant(z.clone()), None)
        .unwrap()
        .0
        .value()
        .to_vec()
        .unwrap()
}

/// A one-layer flow of `layer`'s spec, rebuilt from JSON, with `params`' values copied in by
/// name: its forward must match the layer's.
fn check_spec_round_trip(
    layer: &dyn Flow<B>,
    params: &ParamStore<B>,
    z: &Tensor<B>,
) -> Result<(), TestCaseError> {
    let spec = FlowSpec {
        dim: z.cols(),
        context: 0,
        base: BaseSpec::DiagGaussian,
        layers: vec![layer.spec()],
    };
    let rebuilt_spec = FlowSpec::from_json(&spec.to_json()).unwrap();
    prop_assert_eq!(&rebuilt_spec, &spec);
    let mut model = NormalizingFlow::new(&CPU, rebuilt_spec.clone(), 7).unwrap();
    prop_assert_eq!(
        rebuilt_spec
            .num_scalars(&flow_layers::Registry::<B>::builtin())
            .unwrap(),
        Some(model.params().num_scalars())
    );
    let store = model.params_mut();
    for (_, name, value) in params.iter() {
        let id = store.id(name).unwrap();
        store.set(id, value.clone()).unwrap();
    }
    let rebuilt = model.flows()[0].as_ref();
    prop_assert_eq!(rebuilt.spec(), layer.spec());
    assert_close(
        &forward_value(rebuilt, model.params(), z),
        &forward_value(layer, params, z),
        1e-12,
        "rebuilt forward",
    )
}

fn det_sign_free_log(w: &Tensor<B>) -> f64 {
    log_abs_det(w.to_vec().unwrap(), w.rows())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn actnorm(z in batch(1..=8), seed in 0u64..1000) {
        let mut params = ParamStore::new();
        let layer = ActNorm::new(&mut BuildContext::new(&CPU, &mut params, "flows.0", z.cols(), &mut flow_core::rng(seed)).with_init(Init::Random)).unwrap();
        check_layer(&layer, &params, &z)?;
        check_spec_round_trip(&layer, &params, &z)?;
    }

    #[test]
    fn actnorm_initialize_standardises_the_batch(
        d in 1usize..=8,
        rows in 2usize..=40,
        seed in 0u64..1000,
        spread in prop::collection::vec(0.01f64..20.0, 8),
        shift in prop::collection::vec(-10.0f64..10.0, 8),
    ) {
        let mut rng = flow_core::rng(seed);
        let raw = Tensor::randn(&CPU, (rows, d), &mut rng)?.to_vec()?;
        let x: Vec<f64> = raw.iter().enumerate().map(|(k, v)| v * spread[k % d] + shift[k % d]).collect();
        let x = Tensor::from_vec(&CPU, (rows, d), x).unwrap();
        let mut params = ParamStore::new();
        let layer = ActNorm::new(&mut BuildContext::new(&CPU, &mut params, "flows.0", d, &mut rng).with_init(Init::Random)).unwrap();
        layer.initialize(&mut params, &x).unwrap();
        let tape = Tape::new(&CPU);
        let z = layer.inverse(&params, &tape.constant(x), None).unwrap().0.value().to_vec()?;
        for j in 0..d {
            let col: Vec<f64> = (0..rows).map(|r| z[r * d + j]).collect();
            let mean = col.iter().sum::<f64>() / rows as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
            prop_assert!(mean.abs() < 1e-9, "feature {}: mean {}", j, mean);
            prop_assert!((var.sqrt() - 1.0).abs() < 1e-9, "feature {}: std {}", j, var.sqrt());
        }
    }

    #[test]
    fn lu_linear_glow_init(z in batch(1..=8), seed in 0u64..1000) {
        let mut params = ParamStore::new();
        let layer = InvertibleLinearLu::new(&mut BuildContext::new(&CPU, &mut params, "flows.0", z.cols(), &mut flow_core::rng(seed))).unwrap();
        check_layer(&layer, &params, &z)?;
        check_spec_round_trip(&layer, &params, &z)?;
    }

    #[test]
    fn lu_linear_random(z in batch(1..=8), seed in 0u64..1000) {
        let d = z.cols();
        let mut rng = flow_core::rng(seed);
        let perm = random_orthogonal(d, &mut rng);
        let perm = lu_decompose(&perm, d).unwrap().perm;
        let sign: Vec<f64> = (0..d).map(|i| if (seed >> i) & 1 == 1 { -1.0 } else { 1.0 }).collect();
        let mut params = ParamStore::new();
        let layer = InvertibleLinearLu::from_config(&mut BuildContext::new(&CPU, &mut params, "flows.0", d, &mut rng).with_init(Init::Random), &InvertibleLinearLuConfig { perm, sign }).unwrap();
        check_layer(&layer, &params, &z)?;
        check_spec_round_trip(&layer, &params, &z)?;
    }

    #[test]
    fn lu_linear_starts_at_the_orthogonal_w0_and_keeps_its_determinant(d in 1usize..=8, seed in 0u64..1000) {
        // The same draws as `new`: W0 first.
        let w0 = random_orthogonal(d, &mut flow_core::rng(seed));
        let mut params = ParamStore::new();
        let layer = InvertibleLinearLu::new(&mut BuildContext::new(&CPU, &mut params, "flows.0", d, &mut flow_core::rng(seed))).unwrap();
        let w = layer.weight(&params).unwrap();
        assert_close(&w.to_vec()?, &w0, 1e-12, "W at init vs W0")?;
        // W0 is orthogonal: W0 W0^T = I.
        let wwt = w.matmul_t(false, &w, true).unwrap().to_vec()?;
        for i in 0..d {
            for j in 0..d {
                let want = if i == j { 1.0 } else { 0.0 };
                prop_assert!((wwt[i * d + j] - want).abs() < 1e-12);
            }
        }
        // The forward map is z W^T.
        let z = Tensor::randn(&CPU, (3, d), &mut flow_core::rng(seed + 1))?;
        let want = z.matmul_t(false, &w, true).unwrap().to_vec()?;
        assert_close(&forward_value(&layer, &params, &z), &want, 1e-12, "forward vs z W^T")?;

        // One gradient step of a loss through the inverse (as log_prob would).
        let tape = Tape::new(&CPU);
        let x = tape.constant(Tensor::randn(&CPU, (5, d), &mut flow_core::rng(seed + 2))?);
        let (zz, ld) = layer.inverse(&params, &x, None).unwrap();
        let loss = zz.square()?.sum(Axis::All)?.mul_scalar(0.5)?.sub(&ld.sum(Axis::All)?).unwrap();
        let grads = tape.backward(&loss).unwrap();
        for id in layer.param_ids() {
            if let Some(g) = grads.param(id) {
                let step = params.get(id).unwrap().sub(&g.unary(flow_core::UnaryOp::MulScalar(0.1))?).unwrap();
                params.set(id, step).unwrap();
            }
        }
        let w1 = layer.weight(&params).unwrap();
        prop_assert!(w1.max_abs_diff(&w).unwrap() > 1e-6, "the step did not change W");
        let log_s = params.get(layer.param_ids()[2]).unwrap().to_vec()?;
        let sum_log_s: f64 = log_s.iter().sum();
        let from_lu = det_sign_free_log(&w1);
        prop_assert!((from_lu - sum_log_s).abs() < 1e-10, "log|det W| {} vs sum(log_s) {}", from_lu, sum_log_s);
        // The masked-out parts stay zero: the triangles keep their shape.
        let lu = lu_decompose(&w1.to_vec()?, d).unwrap();
        let diag_log: f64 = (0..d).map(|i| lu.upper[i * d + i].abs().ln()).sum();
        prop_assert!((diag_log - sum_log_s).abs() < 1e-10);
        // And the layer still inverts, with the same log-dets.
        let z = Tensor::randn(&CPU, (3, d), &mut flow_core::rng(seed + 3))?;
        check_layer(&layer, &params, &z)?;
    }
}

#[test]
fn lu_decompose_reconstructs() {
    let a = vec![0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, 0.5, -1.0];
    let lu = lu_decompose(&a, 3).unwrap();
    for i in 0..3 {
        assert_eq!(lu.lower[i * 3 + i], 1.0);
    }
    let mut m = [0.0; 9];
    for i in 0..3 {
        for j in 0..3 {
            m[i * 3 + j] = (0..3)
                .map(|k| lu.lower[i * 3 + k] * lu.upper[k * 3 + j])
                .sum();
        }
    }
    for j in 0..3 {
        for k in 0..3 {
            assert!((a[lu.perm[j] * 3 + k] - m[j * 3 + k]).abs() < 1e-14);
        }
    }
    assert!(lu_decompose(&[1.0, 2.0, 2.0, 4.0], 2).is_none());
}

#[test]
fn bad_specs_are_errors() {
    let spec = FlowSpec {
        dim: 3,
        context: 0,
        base: BaseSpec::DiagGaussian,
        layers: vec![LayerSpec::of::<InvertibleLinearLu>(
            &InvertibleLinearLuConfig {
                perm: vec![0, 1],
                sign: vec![1.0, 1.0],
            },
        )],
    };
    assert!(NormalizingFlow::new(&CPU, spec, 0).is_err());
    let spec = FlowSpec {
        dim: 2,
        context: 0,
        base: BaseSpec::DiagGaussian,
        layers: vec![LayerSpec::of::<InvertibleLinearLu>(
            &InvertibleLinearLuConfig {
                perm: vec![1, 1],
                sign: vec![1.0, -1.0],
            },
        )],
    };
    assert!(NormalizingFlow::new(&CPU, spec, 0).is_err());
    let mut params = ParamStore::<B>::new();
    let layer = ActNorm::new(&mut BuildContext::new(
        &CPU,
        &mut params,
        "a",
        2,
        &mut flow_core::rng(0),
    ))
    .unwrap();
    assert!(layer
        .initialize(&mut params, &Tensor::zeros(&CPU, (4, 3)).unwrap())
        .is_err());
    // A constant feature: the std floor keeps the inverse finite.
    layer
        .initialize(&mut params, &Tensor::ones(&CPU, (4, 2)).unwrap())
        .unwrap();
    let tape = Tape::new(&CPU);
    let z = layer
        .inverse(
            &params,
            &tape.constant(Tensor::ones(&CPU, (4, 2)).unwrap()),
            None,
        )
        .unwrap()
        .0
        .value();
    assert!(z
        .to_vec()
        .unwrap()
        .iter()
        .all(|v| v.is_finite() && v.abs() < 1e-9));
}
