//! Residual flows (i-ResNet, Residual Flows): property tests through the public `testing`
//! module (round trip through the fixed-point inverse, log-dets against autodiff and
//! central-difference Jacobians, parameter gradients), the estimators' statistics (the
//! Russian-roulette estimate and its Neumann gradient unbiased, the truncated series
//! converging), the Lipschitz bound through training, and the layer's errors.

use flow_core::{rng, Axis, Cpu, ParamStore, Tape, Tensor};
use flow_layers::logdet::{residual_log_det, Neumann};
use flow_layers::spectral_norm::spectral_norm_of;
use flow_layers::testing::{cases, check_layer_kind, check_layer_kind_params, Tolerances};
use flow_layers::{
    BuildContext, Error, Flow, Init, LogDetEstimator, NormalizingFlow, Probe, Residual,
    ResidualConfig, ResidualLayerConfig, TermDistribution,
};
use proptest::prelude::*;

type B = Cpu<f64>;
const CPU: B = Cpu::new();

fn small(log_det: LogDetEstimator) -> ResidualLayerConfig {
    ResidualLayerConfig {
        hidden: vec![8, 8],
        log_det,
        inverse_tolerance: 1e-14,
        inverse_max_iterations: 5000,
        ..Default::default()
    }
}

fn layer(dim: usize, hidden: Vec<usize>, seed: u64) -> (Residual, ParamStore<B>) {
    let mut params = ParamStore::new();
    let mut r = rng(seed);
    let config = ResidualLayerConfig {
        hidden,
        ..Default::default()
    };
    let layer = Residual::new(
        &mut BuildContext::new(&CPU, &mut params, "res", dim, &mut r).with_init(Init::Random),
        config,
    )
    .unwrap();
    (layer, params)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Round trip, forward log-det = -inverse log-det, both against log|det J| by autodiff
    /// (through the implicit gradient of the fixed point) and by central differences.
    #[test]
    fn residual_blocks_invert_with_exact_log_dets(case in cases(1..=4, 1..=4, 0..=2)) {
        let tol = Tolerances { round_trip: 1e-10, log_det: 1e-10, jacobian: 1e-8, ..Default::default() };
        check_layer_kind::<Residual>(&small(LogDetEstimator::Exact), &case, &tol)?;
    }

    /// Parameter gradients (weights through the spectral normalisation, biases, LipSwish
    /// slopes) of both directions, log-dets included, against central differences, with the
    /// exact estimator in training (the stochastic ones are checked statistically below).
    #[test]
    fn residual_parameter_gradients_match_finite_differences(case in cases(1..=3, 1..=3, 0..=1)) {
        let checker = flow_core::gradcheck::GradCheck { rtol: 1e-5, atol: 1e-6, ..Default::default() };
        check_layer_kind_params::<Residual>(&small(LogDetEstimator::Exact), &case, &checker)?;
    }
}

/// `-|z|^2 / 2 + log-det` per row: log q under a standard normal base, up to its constant.
fn log_q_unnormalised(z: &flow_core::Var<B>, log_det: &flow_core::Var<B>) -> flow_core::Var<B> {
    let square = z.square().unwrap().sum(Axis::Cols).unwrap();
    square.mul_scalar(-0.5).unwrap().add(log_det).unwrap()
}

/// The exact log-det of a fixed layer at `x`, by evaluation (parameters frozen).
fn exact_log_det(layer: &Residual, params: &ParamStore<B>, x: &Tensor<B>) -> Vec<f64> {
    let tape = Tape::inference(&CPU);
    let (_, ld) = layer
        .inverse(params, &tape.constant(x.clone()), None)
        .unwrap();
    ld.value().to_f64s().unwrap()
}

/// Mean and standard error of each column of `samples` (one row per draw).
fn mean_and_se(samples: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = samples.len() as f64;
    let k = samples[0].len();
    let mean: Vec<f64> = (0..k)
        .map(|j| samples.iter().map(|s| s[j]).sum::<f64>() / n)
        .collect();
    let se = (0..k)
        .map(|j| {
            let var = samples
                .iter()
                .map(|s| (s[j] - mean[j]).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            (var / n).sqrt()
        })
        .collect();
    (mean, se)
}

/// `n` estimates (rows of per-sample log-dets) of `layer`'s log-det at `x`, unrecorded.
fn estimates(
    layer: &Residual,
    params: &ParamStore<B>,
    x: &Tensor<B>,
    estimator: &LogDetEstimator,
    probe: Probe,
    n: usize,
    r: &mut flow_core::FlowRng,
) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| {
            let tape = Tape::new(&CPU);
            let xv = tape.input(x.clone());
            let gx = layer.net().forward(params, &xv).unwrap();
            residual_log_det(&xv, &gx, estimator, probe, Neumann::Off, false, r)
                .unwrap()
                .value()
                .to_f64s()
                .unwrap()
        })
        .collect()
}

/// A layer whose branch is far from the identity, so that the series needs many terms.
fn strong_layer() -> (Residual, ParamStore<B>, Tensor<B>) {
    let (layer, mut params) = layer(3, vec![16], 11);
    // Scale every weight up: the spectral normalisation brings each back to norm 0.9.
    for l in layer.net().layers() {
        let w = params
            .get(l.weight())
            .unwrap()
            .unary(flow_core::UnaryOp::MulScalar(5.0))
            .unwrap();
        params.set(l.weight(), w).unwrap();
        l.converge(&mut params, 1e-14, 100_000).unwrap();
    }
    let x = Tensor::randn(&CPU, (3, 3), &mut rng(5)).unwrap();
    (layer, params, x)
}

#[test]
fn the_russian_roulette_estimate_is_unbiased() {
    let (layer, params, x) = strong_layer();
    let exact = exact_log_det(&layer, &params, &x);
    for probe in [Probe::Gaussian, Probe::Rademacher] {
        for distribution in [
            TermDistribution::Geometric { p: 0.5 },
            TermDistribution::Poisson { lambda: 2.0 },
        ] {
            let estimator = LogDetEstimator::Roulette {
                exact_terms: 2,
                distribution,
            };
            let mut r = rng(7);
            let samples = estimates(&layer, &params, &x, &estimator, probe, 4000, &mut r);
            let (mean, se) = mean_and_se(&samples);
            for j in 0..exact.len() {
                let z = (mean[j] - exact[j]) / se[j];
                assert!(
                    z.abs() < 4.5,
                    "{probe:?} {distribution:?} row {j}: mean {} exact {} ({z:.2} standard errors)",
                    mean[j],
                    exact[j]
                );
            }
            // A biased estimator would not pass: the roulette's bias-free terms matter.
            assert!(
                exact.iter().any(|e| e.abs() > 0.05),
                "the test layer is too weak: {exact:?}"
            );
        }
    }
}

#[test]
fn the_neumann_gradient_is_unbiased() {
    let (layer, params, x) = strong_layer();
    let ids: Vec<_> = params.trainable_ids().collect();
    // Directional derivatives of sum(log-det) along a few fixed random directions.
    let directions: Vec<Vec<Vec<f64>>> = (0..3)
        .map(|k| {
            let mut r = rng(100 + k);
            ids.iter()
                .map(|&id| {
                    flow_core::standard_normals(params.get(id).unwrap().shape().len(), &mut r)
                })
                .collect()
        })
        .collect();
    let project = |grads: &flow_core::Gradients<B>| -> Vec<f64> {
        directions
            .iter()
            .map(|dir| {
                ids.iter()
                    .zip(dir)
                    .map(|(&id, d)| {
                        let g = grads.param(id).map(|g| g.to_f64s().unwrap());
                        g.map_or(0.0, |g| g.iter().zip(d).map(|(a, b)| a * b).sum())
                    })
                    .sum()
            })
            .collect()
    };
    let gradient = |estimator: &LogDetEstimator, neumann: Neumann, r: &mut flow_core::FlowRng| {
        let tape = Tape::new(&CPU);
        let xv = tape.input(x.clone());
        let gx = layer.net().forward(&params, &xv).unwrap();
        let ld = residual_log_det(&xv, &gx, estimator, Probe::Gaussian, neumann, true, r).unwrap();
        project(&tape.backward(&ld.sum_all().unwrap()).unwrap())
    };
    let exact = gradient(&LogDetEstimator::Exact, Neumann::Off, &mut rng(0));
    let roulette = LogDetEstimator::default();
    let mut r = rng(9);
    for neumann in [Neumann::On, Neumann::Off] {
        let samples: Vec<Vec<f64>> = (0..3000)
            .map(|_| gradient(&roulette, neumann, &mut r))
            .collect();
        let (mean, se) = mean_and_se(&samples);
        for j in 0..exact.len() {
            let z = (mean[j] - exact[j]) / se[j];
            assert!(
                z.abs() < 4.5,
                "{neumann:?} direction {j}: mean {} exact {} ({z:.2} standard errors)",
                mean[j],
                exact[j]
            );
        }
    }
}

#[test]
fn the_truncated_series_converges_to_the_exact_value() {
    let (layer, params, x) = strong_layer();
    let exact = exact_log_det(&layer, &params, &x);
    let mut biases = Vec::new();
    for terms in [1, 2, 4, 8, 16, 48] {
        // The same probes for every truncation: the differences are the truncation's.
        let mut r = rng(3);
        let series = LogDetEstimator::Series { terms };
        let samples = estimates(
            &layer,
            &params,
            &x,
            &series,
            Probe::Rademacher,
            2000,
            &mut r,
        );
        let (mean, se) = mean_and_se(&samples);
        biases.push((terms, mean.clone(), se));
    }
    let (_, last, last_se) = biases.last().unwrap().clone();
    for j in 0..exact.len() {
        assert!(
            (last[j] - exact[j]).abs() < 4.5 * last_se[j] + 1e-9,
            "48 terms, row {j}: {} against {}",
            last[j],
            exact[j]
        );
    }
    // The gap to the 48-term mean (same probes, so no sampling noise between them) shrinks.
    let gap = |m: &[f64]| {
        m.iter()
            .zip(&last)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    let gaps: Vec<f64> = biases[..biases.len() - 1]
        .iter()
        .map(|(_, m, _)| gap(m))
        .collect();
    for w in gaps.windows(2) {
        assert!(
            w[1] < w[0],
            "the truncation error does not shrink: {gaps:?}"
        );
    }
    assert!(gaps[0] > 1e-3, "the test layer is too weak: {gaps:?}");
}

#[test]
fn the_lipschitz_bound_holds_through_training() {
    // A 2-D residual flow trained by plain gradient descent with a large step, so that the
    // raw weights grow; after every step (and its power iterations) each normalised weight's
    // spectral norm, computed independently by Jacobi rotations, stays at the bound.
    let (layer, mut params) = layer(2, vec![32, 32], 4);
    let data = Tensor::randn(&CPU, (256, 2), &mut rng(8)).unwrap();
    let data = data.unary(flow_core::UnaryOp::MulScalar(3.0)).unwrap();
    let mut worst = 0.0f64;
    let lr = 1e-2;
    for step in 0..300 {
        let tape = Tape::new(&CPU);
        let (z, ld) = layer
            .inverse(&params, &tape.constant(data.clone()), None)
            .unwrap();
        let log_q = log_q_unnormalised(&z, &ld);
        let loss = log_q.mean_all().unwrap().neg().unwrap();
        let grads = tape.backward(&loss).unwrap();
        drop((loss, log_q, z, ld, tape));
        for id in params.trainable_ids().collect::<Vec<_>>() {
            if let Some(g) = grads.param(id) {
                // Adam's first steps move every entry by about the learning rate: sign steps.
                let step = g
                    .unary(flow_core::UnaryOp::Sign)
                    .unwrap()
                    .unary(flow_core::UnaryOp::MulScalar(-lr))
                    .unwrap();
                let updated = params.get(id).unwrap().add(&step).unwrap();
                params.set(id, updated).unwrap();
            }
        }
        layer.after_step(&mut params).unwrap();
        for l in layer.net().layers() {
            let w = l
                .normalised_weight(&params, &Tape::inference(&CPU))
                .unwrap()
                .value();
            let sigma = spectral_norm_of(&w.to_f64s().unwrap(), l.out_features(), l.in_features());
            worst = worst.max(sigma);
            assert!(
                sigma <= 0.9 * (1.0 + 1e-9),
                "step {step}: spectral norm {sigma} of a {}x{} layer",
                l.out_features(),
                l.in_features()
            );
        }
    }
    // The raw weights did grow past the bound: the normalisation was doing the work.
    assert!(worst > 0.89, "the bound was never approached: {worst}");
    eprintln!("largest spectral norm after a step: {worst}");
}

#[test]
fn a_model_of_residual_blocks_samples_and_scores_consistently() {
    let spec = ResidualConfig {
        transforms: 3,
        layer: ResidualLayerConfig {
            hidden: vec![16, 16],
            ..Default::default()
        },
        ..Default::default()
    }
    .spec()
    .unwrap();
    let model = NormalizingFlow::new_random(&CPU, spec, 3).unwrap();
    assert!(model.stochastic_log_dets().is_empty());
    let (x, log_q) = model.sample(64, None, &mut rng(1)).unwrap();
    let again = model.log_prob(&x, None).unwrap();
    assert!(again.max_abs_diff(&log_q).unwrap() < 1e-5);
    // Above the exact dimension the evaluation states its estimator.
    let spec = ResidualConfig {
        dim: 3,
        transforms: 1,
        layer: ResidualLayerConfig {
            hidden: vec![4],
            exact_up_to: 2,
            ..Default::default()
        },
        ..Default::default()
    }
    .spec()
    .unwrap();
    let model = NormalizingFlow::new(&CPU, spec, 3).unwrap();
    let described = model.stochastic_log_dets();
    assert_eq!(described.len(), 1);
    assert!(
        described[0].contains("Russian roulette: 20 exact terms"),
        "{described:?}"
    );
}

#[test]
fn training_estimates_are_real_log_densities_and_draws_resume() {
    // The training value is the unbiased estimate (not normflows' surrogate): its mean over
    // many forwards matches the exact evaluation; and after `after_step` the committed draw
    // count is in the buffer, so a copy of the store replays the same draws.
    let (layer, mut params) = layer(2, vec![16], 2);
    let x = Tensor::randn(&CPU, (4, 2), &mut rng(3)).unwrap();
    let exact = exact_log_det(&layer, &params, &x);
    let train_value = |params: &ParamStore<B>| {
        let tape = Tape::new(&CPU);
        let (_, ld) = layer
            .inverse(params, &tape.constant(x.clone()), None)
            .unwrap();
        ld.value().to_f64s().unwrap()
    };
    let samples: Vec<Vec<f64>> = (0..2000).map(|_| train_value(&params)).collect();
    let (mean, se) = mean_and_se(&samples);
    for j in 0..4 {
        assert!(
            (mean[j] - exact[j]).abs() < 4.5 * se[j] + 1e-12,
            "{mean:?} {exact:?}"
        );
    }
    layer.after_step(&mut params).unwrap();
    let saved = params.clone();
    let first = train_value(&params);
    // A layer built afresh, its store loaded with the saved values by name (as from a
    // checkpoint), draws what the original drew first after the saved point.
    let (fresh, mut fresh_params) = self::layer(2, vec![16], 99);
    for (_, name, value) in saved.iter() {
        let id = fresh_params.id(name).unwrap();
        fresh_params.set(id, value.clone()).unwrap();
    }
    let tape = Tape::new(&CPU);
    let (_, ld) = fresh
        .inverse(&fresh_params, &tape.constant(x.clone()), None)
        .unwrap();
    assert_eq!(ld.value().to_f64s().unwrap(), first);
    // The original's next draw differs (a new call).
    assert_ne!(train_value(&params), first);
}

#[test]
fn the_folded_network_is_the_plain_lipschitz_mlp() {
    // The LipSwish slopes folded into the weights (one fused map per activation) against
    // the network written layer by layer, with slopes away from their initial value.
    let (layer, mut params) = layer(3, vec![12, 7], 21);
    for (k, &beta) in layer.net().betas().iter().enumerate() {
        let t = Tensor::from_f64s(&CPU, (1, 1), &[-0.8 + 0.9 * k as f64]).unwrap();
        params.set(beta, t).unwrap();
    }
    let tape = Tape::new(&CPU);
    let x = tape.constant(Tensor::randn(&CPU, (6, 3), &mut rng(4)).unwrap());
    let folded = layer.net().forward(&params, &x).unwrap().value();
    let plain = layer.net().forward_unfolded(&params, &x).unwrap().value();
    assert!(folded.max_abs_diff(&plain).unwrap() < 1e-13);
}

#[test]
fn the_memory_saving_backward_gives_the_same_gradients() {
    // Built alike, the two layers draw the same probes and series lengths: the gradients
    // computed in the forward pass equal the recorded Neumann estimator's.
    let build = |memory_saving: bool| {
        let mut params = ParamStore::new();
        let config = ResidualLayerConfig {
            hidden: vec![16, 16],
            memory_saving,
            ..Default::default()
        };
        let l = Residual::new(
            &mut BuildContext::new(&CPU, &mut params, "r", 2, &mut rng(6)).with_init(Init::Random),
            config,
        )
        .unwrap();
        (l, params)
    };
    let x = Tensor::randn(&CPU, (32, 2), &mut rng(1)).unwrap();
    let run = |(layer, params): &(Residual, ParamStore<B>), weights: Option<&Tensor<B>>| {
        let tape = Tape::new(&CPU);
        let xv = tape.input(x.clone());
        let (z, ld) = layer.inverse(params, &xv, None).unwrap();
        let log_q = log_q_unnormalised(&z, &ld);
        let loss = match weights {
            None => log_q.mean_all().unwrap().neg().unwrap(),
            Some(w) => log_q
                .mul(&tape.constant(w.clone()))
                .unwrap()
                .sum_all()
                .unwrap(),
        };
        let value = loss.value().to_f64s().unwrap();
        tape.backward(&loss).map(|g| {
            let mut all = value.clone();
            all.extend(g.get(&xv).unwrap().to_f64s().unwrap());
            for id in params.trainable_ids() {
                all.extend(g.param(id).unwrap().to_f64s().unwrap());
            }
            all
        })
    };
    let (recorded, saving) = (build(false), build(true));
    let a = run(&recorded, None).unwrap();
    let b = run(&saving, None).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, (u, v)) in a.iter().zip(&b).enumerate() {
        assert!(
            (u - v).abs() <= 1e-10 * (1.0 + u.abs()),
            "entry {k}: {u} against {v}"
        );
    }
    // A loss that weights rows unequally cannot use gradients summed over the rows.
    let w = Tensor::from_f64s(
        &CPU,
        (32, 1),
        &(0..32).map(|i| i as f64).collect::<Vec<_>>(),
    )
    .unwrap();
    let e = run(&saving, Some(&w)).unwrap_err();
    assert!(
        e.to_string()
            .contains("memory-saving backward needs equal weights"),
        "{e}"
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let mut params = ParamStore::<B>::new();
    let mut r = rng(0);
    let bad = ResidualLayerConfig {
        lipschitz: 1.0,
        ..Default::default()
    };
    let e = Residual::new(
        &mut BuildContext::new(&CPU, &mut params, "r", 2, &mut r),
        bad,
    )
    .unwrap_err();
    assert!(e.to_string().contains("(0, 1)"), "{e}");
    // An inverse that cannot converge in its iteration cap names the residual reached.
    let (layer_, params) = {
        let mut params = ParamStore::new();
        let config = ResidualLayerConfig {
            hidden: vec![8],
            inverse_max_iterations: 1,
            ..Default::default()
        };
        let l = Residual::new(
            &mut BuildContext::new(&CPU, &mut params, "r", 2, &mut rng(1)).with_init(Init::Random),
            config,
        )
        .unwrap();
        (l, params)
    };
    let tape = Tape::inference(&CPU);
    let z = tape.constant(Tensor::randn(&CPU, (4, 2), &mut rng(2)).unwrap());
    match layer_.forward(&params, &z, None) {
        Err(Error::NotInvertible { layer, reason }) => {
            assert_eq!(layer, "Residual");
            assert!(reason.contains("max |x + g(x) - z|"), "{reason}");
        }
        other => panic!("expected NotInvertible, got {other:?}"),
    }
    // The wrong width.
    let wide = tape.constant(Tensor::zeros(&CPU, (1, 3)).unwrap());
    assert!(matches!(
        layer_.inverse(&params, &wide, None),
        Err(Error::Width { .. })
    ));
}
