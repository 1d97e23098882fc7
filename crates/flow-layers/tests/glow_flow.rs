//! Property tests of whole Glow flows (`GlowConfig`): with random parameters, dimensions 2 to
//! 6 and 1 to 3 steps, the round trip, forward log-det = - inverse log-det, the forward
//! log-det against log|det J| of a central-difference Jacobian, the sampler's log-density
//! against `log_prob`, the spec through JSON and its size against the built model, for
//! unconditional and conditional flows; the spec's structure (normflows' `GlowBlock` order);
//! and ActNorm's data-dependent initialisation through `NormalizingFlow::initialize_actnorm`.

use flow_core::{Tape, Tensor};
use flow_layers::{FlowSpec, GlowConfig, LayerSpec, NormalizingFlow, RealNvpConfig, ScaleMap};
use proptest::prelude::*;

mod common;
use common::*;

fn glow(dim: usize, transforms: usize, context: usize, seed: u64) -> GlowConfig {
    GlowConfig {
        dim,
        transforms,
        hidden: vec![8, 8],
        context,
        leaky: 0.1,
        seed,
    }
}

/// The whole-flow properties of `model` at latent points `z`, given `context` (held fixed).
fn check_flow(
    model: &NormalizingFlow<B>,
    z: &Tensor<B>,
    context: Option<&Tensor<B>>,
    seed: u64,
) -> Result<(), TestCaseError> {
    check_model_given(model, z, context)?;

    // log q(x) of the flow's own samples, by the inverse, equals the sampler's log q.
    let n = 6;
    let sample_context = context.map(|c| {
        // One context row per sample: the given rows, cycled.
        let (rows, cols) = (c.rows(), c.cols());
        let v = c.to_vec().unwrap();
        let cycled: Vec<f64> = (0..n)
            .flat_map(|r| v[(r % rows) * cols..(r % rows + 1) * cols].to_vec())
            .collect();
        Tensor::from_vec(&CPU, (n, cols), cycled).unwrap()
    });
    let (xs, log_q) = model
        .sample(n, sample_context.as_ref(), &mut flow_core::rng(seed + 2))
        .unwrap();
    let log_p = model.log_prob(&xs, sample_context.as_ref()).unwrap();
    assert_close(
        &log_p.to_vec()?,
        &log_q.to_vec()?,
        TOL,
        "sample log q vs log_prob",
    )?;

    // A checkpoint's architecture rebuilds the same model, of the same size.
    let rebuilt = FlowSpec::from_json(&model.spec().to_json()).unwrap();
    prop_assert_eq!(&rebuilt, model.spec());
    prop_assert_eq!(
        rebuilt.num_scalars(&Registry::<B>::builtin()).unwrap(),
        Some(model.params().num_scalars())
    );
    let built = NormalizingFlow::new(&CPU, rebuilt, seed).unwrap();
    prop_assert_eq!(built.params().num_scalars(), model.params().num_scalars());
    Ok(())
}

/// The values leaving each ActNorm when `x` runs through the inverse, layer by layer: (layer
/// index, values).
fn actnorm_outputs(
    model: &NormalizingFlow<B>,
    x: &Tensor<B>,
    context: Option<&Tensor<B>>,
) -> Vec<(usize, Tensor<B>)> {
    let mut v = x.clone();
    let mut out = Vec::new();
    for (k, flow) in model.flows().iter().enumerate().rev() {
        let tape = Tape::new(&CPU);
        let c = context.map(|c| tape.constant(c.clone()));
        v = flow
            .inverse(model.params(), &tape.constant(v), c.as_ref())
            .unwrap()
            .0
            .value();
        if flow.wants_data_init() {
            out.push((k, v.clone()));
        }
    }
    out
}

/// Per-feature mean and (population) standard deviation.
fn moments(t: &Tensor<B>) -> Vec<(f64, f64)> {
    let (rows, d) = (t.rows(), t.cols());
    let v = t.to_vec().unwrap();
    (0..d)
        .map(|j| {
            let mean = (0..rows).map(|r| v[r * d + j]).sum::<f64>() / rows as f64;
            let var = (0..rows)
                .map(|r| (v[r * d + j] - mean).powi(2))
                .sum::<f64>()
                / rows as f64;
            (mean, var.sqrt())
        })
        .collect()
}

/// A batch of `rows x d` with very different scales and offsets per feature, and a
/// correlation between the first two.
fn skewed_batch(rows: usize, d: usize, seed: u64) -> Tensor<B> {
    let raw = Tensor::randn(&CPU, (rows, d), &mut flow_core::rng(seed))
        .unwrap()
        .to_vec()
        .unwrap();
    let mut x = raw.clone();
    for r in 0..rows {
        for j in 0..d {
            let scale = 10f64.powf(j as f64 - 1.5);
            x[r * d + j] = raw[r * d + j] * scale + 3.0 * j as f64 - 4.0;
        }
        x[r * d + 1] += 2.0 * raw[r * d];
    }
    Tensor::from_vec(&CPU, (rows, d), x).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn whole_glow(z in batch(2..=6), seed in 0u64..1000, transforms in 1usize..=3) {
        let spec = glow(z.cols(), transforms, 0, seed).spec().unwrap();
        let model = NormalizingFlow::new_random(&CPU, spec, seed).unwrap();
        check_flow(&model, &z, None, seed)?;
    }

    #[test]
    fn whole_conditional_glow(
        z in batch(2..=5),
        seed in 0u64..1000,
        transforms in 1usize..=3,
        context in 1usize..=3,
    ) {
        let spec = glow(z.cols(), transforms, context, seed).spec().unwrap();
        let model = NormalizingFlow::new_random(&CPU, spec, seed).unwrap();
        let c = Tensor::rand_uniform(&CPU, (z.rows(), context), -2.0, 2.0, &mut flow_core::rng(seed + 9)).unwrap();
        check_flow(&model, &z, Some(&c), seed)?;
        // The context matters: another one maps z elsewhere.
        let other = c.unary(flow_core::UnaryOp::AddScalar(0.5))?;
        let tape = Tape::new(&CPU);
        let zv = tape.constant(z.clone());
        let x1 = model.forward(&zv, Some(&tape.constant(c))).unwrap().0.value();
        let x2 = model.forward(&zv, Some(&tape.constant(other))).unwrap().0.value();
        prop_assert!(x1.max_abs_diff(&x2).unwrap() > 1e-6, "the context does not reach the couplings");
    }

    /// A freshly built Glow (identity ActNorms, signed-permutation linear layers), ActNorms
    /// initialised on a batch: each ActNorm's output on that batch is standardised, and the
    /// model stays a consistent flow.
    #[test]
    fn initialize_actnorm_standardises_what_leaves_each_actnorm(
        d in 2usize..=5,
        rows in 8usize..=64,
        seed in 0u64..1000,
        transforms in 1usize..=3,
        random in any::<bool>(),
    ) {
        let spec = glow(d, transforms, 0, seed).spec().unwrap();
        let mut model = if random {
            NormalizingFlow::new_random(&CPU, spec, seed).unwrap()
        } else {
            NormalizingFlow::new(&CPU, spec, seed).unwrap()
        };
        prop_assert!(model.wants_data_init());
        let x = skewed_batch(rows, d, seed + 1);
        prop_assert_eq!(model.init_from_data(&x, None).unwrap(), transforms);
        let outputs = actnorm_outputs(&model, &x, None);
        prop_assert_eq!(outputs.len(), transforms);
        for (k, out) in &outputs {
            for (j, (mean, std)) in moments(out).into_iter().enumerate() {
                prop_assert!(mean.abs() < 1e-9, "layer {} feature {}: mean {}", k, j, mean);
                prop_assert!((std - 1.0).abs() < 1e-9, "layer {} feature {}: std {}", k, j, std);
            }
        }
        // The first layer the data meet is an ActNorm set to the batch's own moments.
        prop_assert!(model.flows().last().unwrap().wants_data_init());
        let last = model.flows().len() - 1;
        let loc = model.params().get(model.params().id(&format!("flows.{last}.loc")).unwrap()).unwrap().to_vec()?;
        for (j, (mean, _)) in moments(&x).into_iter().enumerate() {
            prop_assert!((loc[j] - mean).abs() < 1e-9 * (1.0 + mean.abs()));
        }
        let z = Tensor::randn(&CPU, (3, d), &mut flow_core::rng(seed + 3))?;
        check_flow(&model, &z, None, seed)?;
    }

    #[test]
    fn initialize_actnorm_given_a_context(
        d in 2usize..=4,
        seed in 0u64..1000,
        context in 1usize..=2,
    ) {
        let spec = glow(d, 2, context, seed).spec().unwrap();
        let mut model = NormalizingFlow::new_random(&CPU, spec, seed).unwrap();
        let x = skewed_batch(40, d, seed + 1);
        let c = Tensor::rand_uniform(&CPU, (40, context), -2.0, 2.0, &mut flow_core::rng(seed + 2)).unwrap();
        prop_assert_eq!(model.init_from_data(&x, Some(&c)).unwrap(), 2);
        for (k, out) in actnorm_outputs(&model, &x, Some(&c)) {
            for (j, (mean, std)) in moments(&out).into_iter().enumerate() {
                prop_assert!(mean.abs() < 1e-9 && (std - 1.0).abs() < 1e-9, "layer {} feature {}: {} {}", k, j, mean, std);
            }
        }
        let z = Tensor::randn(&CPU, (3, d), &mut flow_core::rng(seed + 3))?;
        check_flow(&model, &z, Some(&Tensor::rand_uniform(&CPU, (3, context), -2.0, 2.0, &mut flow_core::rng(seed + 4)).unwrap()), seed)?;
    }
}

#[test]
fn glow_steps_follow_normflows_glow_block() {
    let config = GlowConfig {
        dim: 5,
        transforms: 4,
        hidden: vec![12],
        context: 2,
        leaky: 0.2,
        seed: 11,
    };
    let spec = config.spec().unwrap();
    assert_eq!((spec.dim, spec.context), (5, 2));
    assert_eq!(spec.layers.len(), 12);
    for step in spec.layers.chunks(3) {
        // Latent to data: coupling, linear, ActNorm (so data to latent: ActNorm first).
        assert_eq!(
            step[0],
            LayerSpec::of::<AffineCouplingBlock>(&AffineCouplingConfig {
                hidden: vec![12],
                leaky: 0.2,
                scale_map: ScaleMap::Sigmoid
            })
        );
        let InvertibleLinearLuConfig { perm, sign } =
            step[1].config::<InvertibleLinearLu>().unwrap();
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..5).collect::<Vec<_>>());
        assert!(sign.iter().all(|&s| s == 1.0 || s == -1.0));
        assert!(step[2].is::<ActNorm>());
    }
    // Seeded: the same seed the same permutations and signs, other seeds others.
    assert_eq!(config.spec().unwrap(), spec);
    let linear = |s: &FlowSpec| -> Vec<LayerSpec> {
        s.layers
            .iter()
            .filter(|l| l.is::<InvertibleLinearLu>())
            .cloned()
            .collect()
    };
    let others = (12..20)
        .filter(|&seed| {
            linear(
                &GlowConfig {
                    seed,
                    ..config.clone()
                }
                .spec()
                .unwrap(),
            ) != linear(&spec)
        })
        .count();
    assert!(
        others >= 6,
        "only {others} of 8 other seeds changed the linear layers"
    );
    // Sizes: per step a coupling MLP (3 + 2) -> 12 -> 2 * 2, an LU (2 * 25 + 5) and an
    // ActNorm (2 * 5); the base 2 * 5.
    let coupling = (5 * 12 + 12) + (12 * 4 + 4);
    assert_eq!(
        spec.num_scalars(&Registry::<B>::builtin()).unwrap(),
        Some(10 + 4 * (coupling + 55 + 10))
    );
    let model = NormalizingFlow::new(&CPU, spec, 0).unwrap();
    assert_eq!(model.params().num_scalars(), 10 + 4 * (coupling + 55 + 10));
}

#[test]
fn bad_glow_configurations_are_errors() {
    let err = glow(1, 2, 0, 0).spec().unwrap_err();
    assert!(err.to_string().contains("at least 2 features"), "{err}");
    let err = GlowConfig {
        hidden: vec![8, 0],
        ..GlowConfig::default()
    }
    .spec()
    .unwrap_err();
    assert!(err.to_string().contains("hidden"), "{err}");
    // No steps: an empty flow, the base alone.
    let spec = glow(3, 0, 0, 0).spec().unwrap();
    assert!(spec.layers.is_empty());
}

#[test]
fn initialize_actnorm_refuses_bad_batches_and_leaves_the_model_alone(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let spec = glow(3, 2, 0, 0).spec().unwrap();
    let mut model = NormalizingFlow::new_random(&CPU, spec, 4).unwrap();
    let before: Vec<Vec<f64>> = model
        .params()
        .iter()
        .map(|(_, _, t)| t.to_vec().unwrap())
        .collect();
    let unchanged = |model: &NormalizingFlow<B>| {
        let now: Vec<Vec<f64>> = model
            .params()
            .iter()
            .map(|(_, _, t)| t.to_vec().unwrap())
            .collect();
        assert_eq!(
            now, before,
            "a failed initialisation changed the parameters"
        );
    };

    let err = model
        .init_from_data(&Tensor::zeros(&CPU, (8, 2))?, None)
        .unwrap_err();
    assert!(
        err.to_string().contains("expected 3 features, got 2"),
        "{err}"
    );
    unchanged(&model);
    let err = model
        .init_from_data(&Tensor::ones(&CPU, (1, 3))?, None)
        .unwrap_err();
    assert!(err.to_string().contains("at least 2 rows"), "{err}");
    unchanged(&model);
    let err = model
        .init_from_data(
            &Tensor::ones(&CPU, (4, 3))?,
            Some(&Tensor::ones(&CPU, (4, 1))?),
        )
        .unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
    unchanged(&model);
    // A NaN in the batch: refused before any layer sees it (the model's policy), nothing set.
    let mut x = skewed_batch(6, 3, 1).to_vec()?;
    x[4] = f64::NAN;
    let x = Tensor::from_vec(&CPU, (6, 3), x).unwrap();
    let err = model.init_from_data(&x, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "init_from_data: x has a non-finite value NaN at row 1, column 1"
    );
    unchanged(&model);
    // A value so large that the first ActNorm passes infinities on to the second: the first
    // one's new values are rolled back too.
    let mut x = skewed_batch(6, 3, 1).to_vec()?;
    x[0] = 1e300;
    x[3] = -1e300;
    let x = Tensor::from_vec(&CPU, (6, 3), x).unwrap();
    if model.init_from_data(&x, None).is_err() {
        unchanged(&model);
    }

    // A flow without ActNorm: nothing to do, and nothing run.
    let mut realnvp =
        NormalizingFlow::new(&CPU, RealNvpConfig::default().spec().unwrap(), 0).unwrap();
    assert!(!realnvp.wants_data_init());
    assert_eq!(
        realnvp
            .init_from_data(&Tensor::zeros(&CPU, (1, 2))?, None)
            .unwrap(),
        0
    );
    Ok(())
}

#[test]
fn initialize_actnorm_works_in_f32() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let cpu = flow_core::Cpu::<f32>::new();
    let spec = glow(2, 3, 0, 5).spec().unwrap();
    let mut model = NormalizingFlow::new(&cpu, spec, 5).unwrap();
    let x64 = skewed_batch(256, 2, 8);
    let x = Tensor::from_f64s(&cpu, (256, 2), &x64.to_vec()?).unwrap();
    assert_eq!(model.init_from_data(&x, None).unwrap(), 3);
    let (samples, log_q) = model.sample(32, None, &mut flow_core::rng(1)).unwrap();
    let log_p = model.log_prob(&samples, None).unwrap();
    assert!(log_p.max_abs_diff(&log_q).unwrap() < 1e-3);
    // The initialised model puts the batch near the standard normal: its NLL per feature is
    // close to the standard normal's entropy (1.42 nats), far below the untrained model's.
    let nll = |m: &NormalizingFlow<flow_core::Cpu<f32>>| {
        let lp = m.log_prob(&x, None).unwrap().to_f64s().unwrap();
        -lp.iter().sum::<f64>() / lp.len() as f64
    };
    let fresh = NormalizingFlow::new(&cpu, glow(2, 3, 0, 5).spec().unwrap(), 5).unwrap();
    assert!(
        nll(&model) < nll(&fresh),
        "{} vs {}",
        nll(&model),
        nll(&fresh)
    );
    Ok(())
}
