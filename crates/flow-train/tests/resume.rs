//! Resuming a run: from a checkpoint written mid-run (library), and after killing the
//! `flows` process (command line), the final parameters equal an uninterrupted run's, bit
//! for bit.

mod common;

use common::{checkpoint_bits, flows, params_of};
use flow_core::Cpu;
use flow_datasets::tabular::Table;
use flow_datasets::TwoMoons;
use flow_layers::{NormalizingFlow, RealNvpConfig};
use flow_train::checkpoint::{self, TensorFile};
use flow_train::optim::OptimizerKind;
use flow_train::run_data::{RunData, SplitTable, TableOptions};
use flow_train::train::{train_on, Progress, TrainConfig};
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mid.safetensors");
    let validation = data.validation(&Cpu::new(), 64, 0).unwrap();
    let mut straight = small_model(data.dim(), 3);
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

fn read_step(checkpoint: &Path) -> Option<usize> {
    let file = TensorFile::read(checkpoint).ok()?;
    file.metadata.get("iterations")?.parse().ok()
}

fn train_args(out: &Path) -> Vec<std::ffi::OsString> {
    [
        "train",
        "--iters",
        "1500",
        "--batch",
        "128",
        "--hidden",
        "32,32",
        "--checkpoint-every",
        "100",
        "--validate-every",
        "50",
        "--test-samples",
        "500",
        "--snapshots",
        "0",
        "--quiet",
        "--out",
    ]
    .iter()
    .map(|s| OsStr::new(s).to_owned())
    .chain([out.as_os_str().to_owned()])
    .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, killed) = (dir.path().join("straight"), dir.path().join("killed"));
    flows(train_args(&straight)).ok();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flows"))
        .args(train_args(&killed))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = killed.join("checkpoint.safetensors");
    let start = Instant::now();
    // Kill it (SIGKILL: no cleanup) as soon as its first checkpoint is complete.
    while read_step(&ckpt).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at = read_step(&ckpt).unwrap();
    assert!(at < 1500, "killed after the end ({at})");

    // Flags other than --quiet are refused: the stored configuration is the run's.
    flows([
        OsStr::new("train"),
        OsStr::new("--resume"),
        killed.as_os_str(),
        OsStr::new("--iters"),
        OsStr::new("10"),
    ])
    .fails_with(&["--resume", "--iters"]);

    let run = flows([
        OsStr::new("train"),
        OsStr::new("--resume"),
        killed.as_os_str(),
        OsStr::new("--quiet"),
    ]);
    let out = run.ok();
    assert!(
        out.contains(&format!("from iteration {at}")),
        "{}",
        run.describe()
    );
    let name = "checkpoint.safetensors";
    assert_eq!(
        checkpoint_bits(&killed.join(name)),
        checkpoint_bits(&straight.join(name)),
        "parameters and optimizer state after resuming at {at} differ from the uninterrupted run's"
    );
    assert_eq!(
        checkpoint_bits(&killed.join("best.safetensors")),
        checkpoint_bits(&straight.join("best.safetensors"))
    );
    // The metrics log continues where the checkpoint was: no step twice, none missing.
    let log = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let (a, b) = (log(&killed), log(&straight));
    for (n, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        assert_eq!(x, y, "metrics.jsonl line {} differs", n + 1);
    }
    assert_eq!(a.lines().count(), b.lines().count());
}

#[test]
fn resume_without_a_checkpoint_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    flows([
        OsStr::new("train"),
        OsStr::new("--resume"),
        dir.path().as_os_str(),
    ])
    .fails_with(&["checkpoint.safetensors"]);
}

#[test]
fn resume_refuses_a_checkpoint_of_another_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let short = |out: &Path, hidden: &str| {
        flows([
            OsStr::new("train"),
            OsStr::new("--iters"),
            OsStr::new("20"),
            OsStr::new("--hidden"),
            OsStr::new(hidden),
            OsStr::new("--test-samples"),
            OsStr::new("100"),
            OsStr::new("--quiet"),
            OsStr::new("--out"),
            out.as_os_str(),
        ])
        .ok();
    };
    short(&a, "16");
    short(&b, "32");
    // b's checkpoint replaced by a's (a smaller network) under b's stored configuration.
    let ckpt = "checkpoint.safetensors";
    let b_run = TensorFile::read(&b.join(ckpt)).unwrap().metadata["run"].clone();
    let mut swapped = TensorFile::read(&a.join(ckpt)).unwrap();
    swapped.metadata.insert("run".into(), b_run);
    swapped.write(&b.join(ckpt), "f32").unwrap();
    flows([OsStr::new("train"), OsStr::new("--resume"), b.as_os_str()])
        .fails_with(&["different architecture"]);
}
