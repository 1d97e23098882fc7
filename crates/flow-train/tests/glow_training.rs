//! Training a Glow (a flow with ActNorm layers): a fresh run initialises every ActNorm from
//! its first training batch before the first update (and uses that batch for the first
//! update), a run without ActNorm is left alone, and a resumed run does not initialise again:
//! stopped and resumed, it ends with the uninterrupted run's parameters, bit for bit.

mod common;

use common::params_of;
use flow_core::{Cpu, Tape, Tensor};
use flow_datasets::tabular::Table;
use flow_datasets::TwoMoons;
use flow_layers::{GlowConfig, NormalizingFlow, RealNvpConfig};
use flow_train::checkpoint;
use flow_train::run_data::{RunData, SplitTable, TableOptions};
use flow_train::train::{train_on, Progress, TrainConfig};

type B = Cpu<f32>;
const CPU: B = Cpu::new();

fn glow(dim: usize, seed: u64) -> NormalizingFlow<B> {
    let spec = GlowConfig {
        dim,
        transforms: 2,
        hidden: vec![16, 16],
        seed,
        ..GlowConfig::default()
    }
    .spec()
    .unwrap();
    NormalizingFlow::new(&CPU, spec, seed).unwrap()
}

/// Three features on very different scales, the last integer-valued (dequantised).
fn table(rows: usize) -> Table {
    let mut rng = flow_core::rng(5);
    let mut data = Vec::new();
    for _ in 0..rows {
        let a: f64 = rand::Rng::random_range(&mut rng, -1.0..1.0);
        let b: f64 = rand::Rng::random_range(&mut rng, -1.0..1.0);
        data.extend([100.0 * a, a * a + 0.1 * b, (3.0 * a + 5.0 * b).round()]);
    }
    Table::new(vec!["a".into(), "b".into(), "count".into()], data).unwrap()
}

/// The values leaving each ActNorm of `model` when `x` runs through its inverse.
fn actnorm_outputs(model: &NormalizingFlow<B>, x: &Tensor<B>) -> Vec<Tensor<B>> {
    let mut v = x.clone();
    let mut out = Vec::new();
    for flow in model.flows().iter().rev() {
        let tape = Tape::new(&CPU);
        v = flow
            .inverse(model.params(), &tape.constant(v), None)
            .unwrap()
            .0
            .value();
        if flow.wants_data_init() {
            out.push(v.clone());
        }
    }
    out
}

fn assert_standardised(t: &Tensor<B>, what: &str) {
    let (rows, d) = (t.rows(), t.cols());
    let v = t.to_f64s().unwrap();
    for j in 0..d {
        let mean = (0..rows).map(|r| v[r * d + j]).sum::<f64>() / rows as f64;
        let var = (0..rows)
            .map(|r| (v[r * d + j] - mean).powi(2))
            .sum::<f64>()
            / rows as f64;
        assert!(
            mean.abs() < 1e-4 && (var.sqrt() - 1.0).abs() < 1e-4,
            "{what}, feature {j}: mean {mean}, std {}",
            var.sqrt()
        );
    }
}

/// Trains a fresh Glow on `data` for a few steps; at step 0 (before any update) the first
/// batch, drawn again from a second source of the same seed, must leave every ActNorm
/// standardised, and the first step's loss must be that batch's NLL under that model.
fn check_first_batch_initialisation(data: &RunData, batch: usize, seed: u64) {
    let mut first_batch = data.source(seed).unwrap();
    let (values, log_det) = first_batch.batch(0, batch).unwrap();
    let x = Tensor::from_f64s(&CPU, (batch, data.dim()), &values).unwrap();
    let mut model = glow(data.dim(), seed);
    let fresh = params_of(&model);
    let mut nll_at_step_0 = None;
    let mut observer = |p: &Progress<'_, B>| {
        if p.step == 0 {
            assert_ne!(params_of(p.model), fresh, "no ActNorm was initialised");
            let outputs = actnorm_outputs(p.model, &x);
            assert_eq!(outputs.len(), 2);
            for (k, out) in outputs.iter().enumerate() {
                assert_standardised(out, &format!("{}: ActNorm {k} from the data", data.name()));
            }
            let lp = p.model.log_prob(&x, None)?.to_f64s()?;
            nll_at_step_0 = Some(-lp.iter().sum::<f64>() / lp.len() as f64 - log_det);
        }
        Ok(())
    };
    let config = TrainConfig {
        iters: 5,
        batch,
        lr: 1e-3,
        seed,
        ..TrainConfig::default()
    };
    let report = train_on(
        &mut model,
        data.source(seed).unwrap(),
        &config,
        None,
        None,
        &mut observer,
    )
    .unwrap();
    let nll = nll_at_step_0.expect("the observer ran at step 0");
    assert!(
        (report.losses[0] - nll).abs() < 1e-5 * (1.0 + nll.abs()),
        "the first step's loss {} is not the first batch's NLL {nll}",
        report.losses[0]
    );
    assert!(report.losses.iter().all(|l| l.is_finite()));
}

#[test]
fn a_fresh_glow_run_initialises_its_actnorms_from_the_first_batch() {
    check_first_batch_initialisation(&RunData::Density(Box::new(TwoMoons)), 128, 0);
    let tab = RunData::Table(Box::new(
        SplitTable::new("t", table(300), &TableOptions::default()).unwrap(),
    ));
    check_first_batch_initialisation(&tab, 64, 3);
    // Unstandardised: the ActNorms see the raw scales (a feature of spread 100).
    let raw = RunData::Table(Box::new(
        SplitTable::new(
            "raw",
            table(300),
            &TableOptions {
                standardize: false,
                ..TableOptions::default()
            },
        )
        .unwrap(),
    ));
    check_first_batch_initialisation(&raw, 64, 4);
}

#[test]
fn a_run_without_actnorm_starts_from_the_built_parameters() {
    let spec = RealNvpConfig {
        hidden: vec![8],
        ..RealNvpConfig::default()
    }
    .spec()
    .unwrap();
    let mut model = NormalizingFlow::<B>::new(&CPU, spec, 0).unwrap();
    let fresh = params_of(&model);
    let config = TrainConfig {
        iters: 2,
        batch: 32,
        ..TrainConfig::default()
    };
    let mut observer = |p: &Progress<'_, B>| {
        if p.step == 0 {
            assert_eq!(params_of(p.model), fresh);
        }
        Ok(())
    };
    let moons = RunData::Density(Box::new(TwoMoons));
    train_on(
        &mut model,
        moons.source(0).unwrap(),
        &config,
        None,
        None,
        &mut observer,
    )
    .unwrap();
}

#[test]
fn glow_with_a_batch_of_one_row_is_refused() {
    let moons = RunData::Density(Box::new(TwoMoons));
    let mut model = glow(2, 0);
    let config = TrainConfig {
        iters: 3,
        batch: 1,
        ..TrainConfig::default()
    };
    let err = train_on(
        &mut model,
        moons.source(0).unwrap(),
        &config,
        None,
        None,
        &mut |_: &Progress<'_, B>| Ok(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("at least 2 rows"), "{err}");
}

/// As tests/resume.rs: straight through, and stopped at `stop` (checkpoint written and read
/// back), then resumed; the same losses and the same final parameters.
fn check_resume(data: &RunData, config: &TrainConfig, stop: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mid.safetensors");
    let validation = data.validation(&CPU, 64, 0).unwrap();
    let mut straight = glow(data.dim(), 1);
    let mut save_at_stop = |p: &Progress<'_, B>| {
        if p.step == stop {
            let state = p.resume_state()?;
            checkpoint::save_run(p.model, &data.preprocess(), Some(&state), &path, &[])?;
        }
        Ok(())
    };
    let full = train_on(
        &mut straight,
        data.source(config.seed).unwrap(),
        config,
        Some(&validation),
        None,
        &mut save_at_stop,
    )
    .unwrap();
    let stored = checkpoint::load_run::<B>(&CPU, &path).unwrap();
    let state = stored.resume.expect("a training state");
    assert_eq!(state.step, stop);
    let mut resumed = stored.model;
    let rest = train_on(
        &mut resumed,
        data.source(config.seed).unwrap(),
        config,
        Some(&validation),
        Some(state),
        &mut |_: &Progress<'_, B>| Ok(()),
    )
    .unwrap();
    assert_eq!(rest.losses, full.losses[stop..], "stopped at {stop}");
    assert_eq!(rest.best, full.best);
    assert_eq!(
        params_of(&resumed),
        params_of(&straight),
        "stopped at {stop}"
    );
}

#[test]
fn a_resumed_glow_run_ends_with_the_uninterrupted_parameters() {
    let config = TrainConfig {
        iters: 30,
        batch: 64,
        lr: 2e-3,
        validate_every: 10,
        ..TrainConfig::default()
    };
    let moons = RunData::Density(Box::new(TwoMoons));
    // Mid-run, and at step 0: a checkpoint written before the first update already holds
    // the initialised ActNorms, and resuming it does not initialise again.
    check_resume(&moons, &config, 13);
    check_resume(&moons, &config, 0);
    let tab = RunData::Table(Box::new(
        SplitTable::new("t", table(150), &TableOptions::default()).unwrap(),
    ));
    check_resume(&tab, &TrainConfig { seed: 2, ..config }, 7);
}
