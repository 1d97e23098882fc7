//! Resuming a run from a checkpoint written mid-run: the final parameters equal an
//! uninterrupted run's, bit for bit (flows-cli's tests/resume.rs kills the `flows` process).

mod common;

use common::params_of;
use flow_core::Cpu;
use flow_datasets::tabular::Table;
use flow_datasets::TwoMoons;
use flow_layers::{NormalizingFlow, RealNvpConfig, ResidualConfig, ResidualLayerConfig};
use flow_train::checkpoint;
use flow_train::optim::OptimizerKind;
use flow_train::run_data::{RunData, SplitTable, TableOptions};
use flow_train::train::{train_on, Progress, TrainConfig};

type B = Cpu<f32>;

fn small_model(dim: usize, seed: u64) -> NormalizingFlow<B> {
    let spec = RealNvpConfig {
        dim,
        hidden: vec![16, 16],
        ..RealNvpConfig::default()
    }
    .spec()
    .unwrap();
    NormalizingFlow::new(&Cpu::new(), spec, seed).unwrap()
}

/// A table of 3 correlated features, the last integer-valued (so it is dequantised).
fn table(rows: usize) -> Table {
    let mut rng = flow_core::rng(7);
    let mut data = Vec::new();
    for _ in 0..rows {
        let a: f64 = rand::Rng::random_range(&mut rng, -1.0..1.0);
        let b: f64 = rand::Rng::random_range(&mut rng, -1.0..1.0);
        data.extend([a, a + 0.3 * b, (3.0 * a + 5.0 * b).round()]);
    }
    Table::new(vec!["a".into(), "b".into(), "count".into()], data).unwrap()
}

/// Runs `config` on `data` twice: straight through, and stopped at `stop` (checkpoint file
/// written and read back), then resumed; the final parameters must be identical.
fn check_resume(data: &RunData, config: &TrainConfig, stop: usize) {
    check_resume_of(data, config, stop, small_model);
}

/// [`check_resume`] for the model `build(dim, seed)` makes.
fn check_resume_of(
    data: &RunData,
    config: &TrainConfig,
    stop: usize,
    build: fn(usize, u64) -> NormalizingFlow<B>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mid.safetensors");
    let validation = data.validation(&Cpu::new(), 64, 0).unwrap();
    let mut straight = build(data.dim(), 3);
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
    assert_eq!(full.losses.len(), config.iters);

    let stored = checkpoint::load_run::<B>(&Cpu::new(), &path).unwrap();
    let state = stored
        .resume
        .expect("the checkpoint holds a training state");
    assert_eq!(state.step, stop);
    assert_eq!(stored.preprocess, data.preprocess());
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
    assert_eq!(rest.first_step, stop);
    assert_eq!(
        rest.losses,
        full.losses[stop..],
        "the same batches, the same losses"
    );
    assert_eq!(rest.best, full.best);
    assert_eq!(params_of(&resumed), params_of(&straight));
}

#[test]
fn a_run_resumed_from_a_checkpoint_ends_with_the_uninterrupted_parameters() {
    let config = TrainConfig {
        iters: 60,
        batch: 64,
        lr: 2e-3,
        validate_every: 10,
        ..TrainConfig::default()
    };
    let moons = RunData::Density(Box::new(TwoMoons));
    check_resume(&moons, &config, 25);
    let sgd = TrainConfig {
        optimizer: OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: true,
        },
        lr: 1e-3,
        seed: 5,
        ..config.clone()
    };
    check_resume(&moons, &sgd, 31);
    // A finite table: passes in random order, dequantisation noise, standardisation.
    let tab = RunData::Table(Box::new(
        SplitTable::new("t", table(150), &TableOptions::default()).unwrap(),
    ));
    // 120 training rows, batch 64: the stop falls inside a pass.
    check_resume(&tab, &TrainConfig { seed: 2, ..config }, 7);
}

/// Residual flows keep state beside their parameters: the power-iteration vectors of every
/// spectrally normalised weight, and the draw counter behind the log-det estimator's random
/// probes and series lengths. Both are buffers in the checkpoint, so a resumed run draws
/// the same estimates and ends with the same parameters and vectors, bit for bit.
#[test]
fn a_resumed_residual_flow_draws_the_same_estimates() {
    fn residual(dim: usize, seed: u64) -> NormalizingFlow<B> {
        let spec = ResidualConfig {
            dim,
            transforms: 2,
            layer: ResidualLayerConfig {
                hidden: vec![16],
                power_iterations: 5,
                ..Default::default()
            },
            ..Default::default()
        }
        .spec()
        .unwrap();
        NormalizingFlow::new(&Cpu::new(), spec, seed).unwrap()
    }
    let config = TrainConfig {
        iters: 30,
        batch: 64,
        lr: 2e-3,
        validate_every: 10,
        ..TrainConfig::default()
    };
    check_resume_of(&RunData::Density(Box::new(TwoMoons)), &config, 13, residual);
}
