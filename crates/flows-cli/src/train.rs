//! `flows train`: a run from flags, or `--resume DIR` from the configuration stored there.

use super::{density_grid, good, on_backend, TrainArgs, GRID, TARGET_HISTOGRAM_SAMPLES};
use crate::plot::{
    density_panels, image_grid, pairwise_scatter, samples_scatter, training_curves, DensityGrid,
};
use clap::Parser;
use flow_core::{Backend, Tensor};
use flow_layers::ode::Solver;
use flow_layers::{FlowMatching, NormalizingFlow, Pairing};
use flow_train::checkpoint::{self, RunCheckpoint};
use flow_train::data::write_csv;
use flow_train::metrics::{History, MetricsLog};
use flow_train::preprocess::Preprocess;
use flow_train::run_data::RunData;
use flow_train::source::ReflowPairs;
use flow_train::train::{
    mean_and_se, test_nll, test_rng, train_on, Objective, Observer, Progress, ResumeState,
    TrainConfig, TrainReport, Validation,
};
use flow_train::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

const CHECKPOINT: &str = "checkpoint.safetensors";
const BEST: &str = "best.safetensors";
const METRICS: &str = "metrics.jsonl";
/// The features drawn in the pairwise-marginal grid of higher-dimensional data.
const PAIRWISE_FEATURES: usize = 6;
/// Samples drawn (and plotted as a grid) from a model of images.
const IMAGE_SAMPLES: usize = 64;

pub(super) fn run_train(args: TrainArgs) -> crate::error::Result<()> {
    on_backend!(args.device, backend => run_train_on(backend, args))
}

fn run_train_on<B: Backend<Elem = f32>>(backend: &B, args: TrainArgs) -> crate::error::Result<()> {
    let (args, resumed) = match args.resume.clone() {
        Some(dir) => {
            let (stored, checkpoint) = resume_args(backend, &args, &dir)?;
            (stored, Some(checkpoint))
        }
        None => (args, None),
    };
    check_flags(&args)?;
    let seed = args.model.seed;
    let data = args.data.load(seed)?;
    let dim = data.dim();
    let preprocess = data.preprocess();
    let fingerprint = data.fingerprint();
    let (mut model, resume) = match resumed {
        Some(c) => {
            let RunCheckpoint {
                model,
                resume,
                metadata,
                ..
            } = c;
            if metadata.get("data_fingerprint") != Some(&fingerprint) {
                return Err(Error::Config(format!(
                    "the data of this run ({}) changed since it was checkpointed; \
                     resuming would not continue the same run",
                    args.data.name()
                ))
                .into());
            }
            if model.dim() != dim || model.spec() != args.model.build(backend, dim)?.spec() {
                return Err(Error::Config(format!(
                    "the checkpoint in {} holds a different architecture ({} features) than \
                     the run it claims to continue ({dim} features, {} {:?}); it was not \
                     written by this run",
                    args.out.as_deref().unwrap_or(Path::new(".")).display(),
                    model.dim(),
                    args.model.flow_name(),
                    args.model.hidden
                ))
                .into());
            }
            (model, resume)
        }
        None => (args.model.build(backend, dim)?, None),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "runs/{}-{}",
            args.data.name(),
            args.model.flow_name()
        ))
    });
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let estimated = crate::estimated_note(&model);
    let mut config = args.model.train_config(args.iters, args.batch);
    config.validate_every = args.validate_every;
    config.patience = args.patience;
    let validation = data.validation(backend, args.validation_samples, seed)?;
    let metrics_path = out.join(METRICS);
    let (metrics, history) = match &resume {
        Some(state) => MetricsLog::resume(&metrics_path, state.step)?,
        None => (MetricsLog::create(&metrics_path)?, History::default()),
    };
    let first = resume.as_ref().map_or(0, |r| r.step);
    println!(
        "{} {} ({} parameters) on {} for {} iterations{}, batch {}, {:?} lr {} weight decay {}",
        if first > 0 { "resuming" } else { "training" },
        args.model.flow_name(),
        model.params().num_trainable_scalars(),
        describe(&data),
        config.iters,
        if first > 0 {
            format!(" from iteration {first}")
        } else {
            String::new()
        },
        config.batch,
        config.optimizer,
        config.lr,
        config.weight_decay
    );
    let mut stored_args = args.clone();
    stored_args.resume = None;
    let run_json = serde_json::to_string(&stored_args).expect("plain data serialises");
    let range = plot_range(&data);
    let probe = Tensor::from_f64s(
        backend,
        (validation.x.shape().rows.min(256), dim),
        &validation.x.to_f64s()?[..validation.x.shape().rows.min(256) * dim],
    )?;
    let mut observer = RunObserver {
        args: &args,
        out: &out,
        preprocess: &preprocess,
        metrics,
        probe,
        extra: vec![
            ("run", run_json),
            ("data_fingerprint", fingerprint),
            ("dataset", data.name().to_string()),
            (
                "columns",
                serde_json::to_string(&column_names(&data)).expect("strings serialise"),
            ),
        ],
        snapshots: Vec::new(),
        grid_range: (dim == 2).then_some(range),
        final_state: None,
        bar: (!args.quiet).then(|| progress_bar(config.iters, first)),
    };
    let report = train_on(
        &mut model,
        data.source(seed)?,
        &config,
        Some(&validation),
        resume,
        &mut observer,
    )?;
    if let Some(bar) = observer.bar.take() {
        bar.finish_and_clear();
    }
    print_report(&report);
    if args.model.reflow > 0 {
        reflow(&mut model, &args, &config, &validation)?;
    }
    let losses: Vec<f64> = history
        .losses
        .iter()
        .chain(&report.losses)
        .copied()
        .collect();
    let validations: Vec<(usize, f64)> = history
        .validation
        .iter()
        .chain(&report.validation)
        .copied()
        .collect();
    let end = report.first_step + report.losses.len();
    let (nll, se) = test(&data, &model, &args, seed)?;
    observer.metrics.test(end, nll, se, "final")?;
    // A finite data set can be overfitted: its best-validation model is tested too, and is
    // the one whose samples are written and drawn.
    let (best_test, best_model) = match (&data, report.best) {
        (RunData::Table(_) | RunData::Images(_), Some((step, _))) if step != end => {
            let best = checkpoint::load(backend, &out.join(BEST))?;
            let (b, bse) = test(&data, &best, &args, seed)?;
            observer.metrics.test(step, b, bse, "best")?;
            (Some((step, b, bse)), Some(best))
        }
        _ => (None, None),
    };
    observer.metrics.flush()?;
    let mut extra = observer.extra.clone();
    extra.push(("iterations", end.to_string()));
    extra.push(("test_nll", format!("{nll}")));
    if good(&model, &observer.probe)? {
        checkpoint::save_run(
            &model,
            &preprocess,
            observer.final_state.as_ref(),
            &out.join(CHECKPOINT),
            &extra,
        )?;
    } else {
        eprintln!(
            "warning: the final model has non-finite parameters or log-densities; \
             {CHECKPOINT} keeps the last good one"
        );
    }
    let mut written = vec![
        CHECKPOINT,
        BEST,
        METRICS,
        "loss.csv",
        "loss.png",
        "samples.csv",
    ];
    let rows: Vec<f64> = losses
        .iter()
        .enumerate()
        .flat_map(|(i, &l)| [i as f64, l])
        .collect();
    write_csv(&out.join("loss.csv"), &["iteration", "loss"], &rows)?;
    training_curves(
        &out.join("loss.png"),
        &format!("forward KL and validation NLL on {}", data.name()),
        &losses,
        &validations,
    )?;
    let image = preprocess.image();
    let drawn = if image.is_some() { IMAGE_SAMPLES } else { 2000 };
    let shown = best_model.as_ref().unwrap_or(&model);
    let (samples, _) = shown.sample(drawn, None, &mut flow_core::rng(seed ^ 0x5a))?;
    let mut samples = samples.to_f64s()?;
    preprocess.inverse_rows(&mut samples, dim);
    let header = column_names(&data);
    write_csv(
        &out.join("samples.csv"),
        &header.iter().map(String::as_str).collect::<Vec<_>>(),
        &samples,
    )?;
    if dim == 2 {
        plot_2d(
            &data,
            shown,
            &preprocess,
            &mut observer.snapshots,
            &samples,
            &out,
            seed,
            &args,
        )?;
        written.extend(["density.png", "samples.png"]);
    } else if let Some((height, width)) = image {
        image_grid(
            &out.join("samples.png"),
            &format!("{IMAGE_SAMPLES} model samples ({})", data.name()),
            &samples,
            height,
            width,
            8,
            (0.0, 256.0),
        )?;
        image_grid(
            &out.join("data.png"),
            &format!("{IMAGE_SAMPLES} training images ({})", data.name()),
            &data.reference_rows(IMAGE_SAMPLES, seed),
            height,
            width,
            8,
            (0.0, 256.0),
        )?;
        written.extend(["samples.png", "data.png"]);
    } else if dim > 2 {
        pairwise_scatter(
            &out.join("pairs.png"),
            &format!("pairwise marginals: model samples and {} data", data.name()),
            &samples,
            &data.reference_rows(2000, seed),
            dim,
            &header,
            PAIRWISE_FEATURES,
        )?;
        written.push("pairs.png");
    }
    println!("wrote {} in {}", written.join(", "), out.display());
    if let RunData::Density(d) = &data {
        if let Some(h) = d.entropy() {
            println!(
                "entropy of {} (the lowest reachable NLL): {h:.4} nats",
                d.name()
            );
        }
    }
    if let Some((step, nll)) = report.best {
        println!("best validation NLL: {nll:.4} at iteration {step} (model in {BEST})");
    }
    println!(
        "test NLL: {nll:.4} (standard error {se:.4}, {}){}",
        test_size(&data, &args),
        bits(&preprocess, nll, se)
    );
    if let Some(note) = &estimated {
        println!("{note}");
    }
    if let Some((step, b, bse)) = best_test {
        println!("samples and plots are of the best model (iteration {step})");
        println!(
            "test NLL of the best model (iteration {step}): {b:.4} (standard error {bse:.4}){}",
            bits(&preprocess, b, bse)
        );
    }
    Ok(())
}

/// ", x.xxxx bits per dimension" for images, nothing for other data.
pub(super) fn bits(preprocess: &Preprocess, nll: f64, se: f64) -> String {
    match (preprocess.bits_per_dim(nll), preprocess.bits_per_dim(se)) {
        (Some(b), Some(s)) => format!("; {b:.4} bits per dimension (standard error {s:.4})"),
        _ => String::new(),
    }
}

fn print_report(report: &TrainReport) {
    println!(
        "trained {} iterations in {:.2} s ({:.0} it/s); {} non-finite steps skipped; final loss {:.4}",
        report.losses.len(),
        report.seconds,
        report.iters_per_second(),
        report.skipped,
        report.losses.last().copied().unwrap_or(f64::NAN)
    );
    if let Some(step) = report.stopped_early {
        println!("stopped early at iteration {step}: no better validation NLL for --patience validations");
    }
}

fn describe(data: &RunData) -> String {
    match data {
        RunData::Density(d) => d.name().to_string(),
        RunData::Table(t) => format!(
            "{} ({} features; {} training, {} validation, {} test rows; {})",
            t.name,
            t.train.cols(),
            t.train.rows(),
            t.validation.rows(),
            t.test.rows(),
            t.preprocess.describe()
        ),
        RunData::Images(i) => format!(
            "{} ({}x{} images; {} training, {} validation, {} test; {})",
            i.name,
            i.train.height(),
            i.train.width(),
            i.train.count(),
            i.validation.count(),
            i.test.count(),
            i.preprocess.describe()
        ),
    }
}

fn test_size(data: &RunData, args: &TrainArgs) -> String {
    match data {
        RunData::Density(_) => format!("{} held-out samples", args.test_samples),
        RunData::Table(t) => format!("{} test rows", t.test.rows()),
        RunData::Images(i) => format!("{} test images", i.test.count()),
    }
}

/// The test NLL: fresh samples of a density, or the test rows of a finite data set.
fn test<B: Backend<Elem = f32>>(
    data: &RunData,
    model: &NormalizingFlow<B>,
    args: &TrainArgs,
    seed: u64,
) -> Result<(f64, f64)> {
    match (data, data.test(model.backend(), seed)?) {
        (_, Some(held_out)) => Ok(mean_and_se(&held_out.nll_of_rows(model)?)),
        (RunData::Density(d), None) => {
            test_nll(model, d.as_ref(), args.test_samples, &mut test_rng(seed))
        }
        (_, None) => unreachable!("finite data sets have test rows"),
    }
}

fn column_names(data: &RunData) -> Vec<String> {
    match data {
        RunData::Table(t) => t.columns.clone(),
        _ => (0..data.dim()).map(|j| format!("x{j}")).collect(),
    }
}

/// The square drawn for 2-D data: the density's own, or the data's 0.5%-99.5% range.
fn plot_range(data: &RunData) -> (f64, f64) {
    match data {
        RunData::Density(d) => d.plot_range(),
        _ => {
            let mut v = data.reference_rows(usize::MAX, 0);
            v.retain(|x| x.is_finite());
            if v.is_empty() {
                return (-1.0, 1.0);
            }
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
            let (lo, hi) = (at(0.005), at(0.995));
            let pad = 0.1 * (hi - lo).max(1e-9);
            (lo - pad, hi + pad)
        }
    }
}

/// Watches the run: validation lines and the best model, periodic checkpoints, snapshots.
struct RunObserver<'a, B: Backend<Elem = f32>> {
    args: &'a TrainArgs,
    out: &'a Path,
    preprocess: &'a Preprocess,
    metrics: MetricsLog,
    probe: Tensor<B>,
    extra: Vec<(&'static str, String)>,
    snapshots: Vec<(String, DensityGrid)>,
    grid_range: Option<(f64, f64)>,
    final_state: Option<ResumeState<B>>,
    /// The progress bar on the terminal (none with `--quiet`).
    bar: Option<ProgressBar>,
}

impl<B: Backend<Elem = f32>> Observer<B> for RunObserver<'_, B> {
    fn progress(&mut self, p: &Progress<'_, B>) -> Result<()> {
        if let (Some(range), true) = (self.grid_range, self.args.snapshots.contains(&p.step)) {
            self.snapshots.push((
                format!("iteration {}", p.step),
                density_grid(p.model, range, self.preprocess)?,
            ));
        }
        if let Some((nll, se)) = p.validation {
            self.metrics.validation(p.step, nll, se, p.improved)?;
            if p.improved && good(p.model, &self.probe)? {
                let mut extra = self.extra.clone();
                extra.push(("iterations", p.step.to_string()));
                extra.push(("validation_nll", format!("{nll}")));
                checkpoint::save_run(p.model, self.preprocess, None, &self.out.join(BEST), &extra)?;
            }
        }
        let every = self.args.checkpoint_every;
        if every > 0
            && p.step > 0
            && p.step % every == 0
            && !p.finished
            && good(p.model, &self.probe)?
        {
            // The log first, so that it is never behind the checkpoint.
            self.metrics.flush()?;
            let mut extra = self.extra.clone();
            extra.push(("iterations", p.step.to_string()));
            checkpoint::save_run(
                p.model,
                self.preprocess,
                Some(&p.resume_state()?),
                &self.out.join(CHECKPOINT),
                &extra,
            )?;
        }
        if p.finished {
            self.final_state = Some(p.resume_state()?);
        }
        Ok(())
    }

    fn loss(&mut self, step: usize, loss: f64, lr: f64) -> Result<()> {
        if let Some(bar) = &self.bar {
            if step % 25 == 0 || step + 1 == self.args.iters {
                bar.set_position(step as u64 + 1);
                bar.set_message(format!("loss {loss:.4}"));
            }
        }
        self.metrics.loss(step, loss, lr)
    }
}

/// A bar over `iters` iterations that starts at `first` (a resumed run's step).
fn progress_bar(iters: usize, first: usize) -> ProgressBar {
    let bar = ProgressBar::new(iters as u64);
    bar.set_position(first as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise}] {per_sec} {msg}")
            .expect("valid template"),
    );
    bar
}

#[allow(clippy::too_many_arguments)]
fn plot_2d<B: Backend<Elem = f32>>(
    data: &RunData,
    model: &NormalizingFlow<B>,
    preprocess: &Preprocess,
    snapshots: &mut Vec<(String, DensityGrid)>,
    samples: &[f64],
    out: &Path,
    seed: u64,
    args: &TrainArgs,
) -> crate::error::Result<()> {
    let range = plot_range(data);
    if snapshots.last().map(|(t, _)| t.as_str()) != Some(&format!("iteration {}", args.iters)) {
        snapshots.push((
            "final model".into(),
            density_grid(model, range, preprocess)?,
        ));
    }
    let target = match data {
        RunData::Density(density) => {
            let points = DensityGrid::points(range, range, GRID);
            let exact: Option<Vec<f64>> = points.iter().map(|p| density.log_prob(p)).collect();
            match exact {
                Some(log_density) => (
                    "target",
                    DensityGrid {
                        x_range: range,
                        y_range: range,
                        n: GRID,
                        log_density,
                    },
                ),
                // No closed form: a histogram of many samples stands in for it.
                None => {
                    let draws = density.sample(TARGET_HISTOGRAM_SAMPLES, &mut test_rng(seed ^ 2));
                    let pairs: Vec<[f64; 2]> = draws.chunks(2).map(|c| [c[0], c[1]]).collect();
                    (
                        "target (histogram)",
                        DensityGrid::from_samples(range, range, GRID, &pairs),
                    )
                }
            }
        }
        _ => {
            let rows = data.reference_rows(usize::MAX, seed);
            let pairs: Vec<[f64; 2]> = rows.chunks(2).map(|c| [c[0], c[1]]).collect();
            (
                "training data (histogram)",
                DensityGrid::from_samples(range, range, GRID, &pairs),
            )
        }
    };
    snapshots.push((target.0.to_string(), target.1));
    density_panels(&out.join("density.png"), snapshots)?;
    let reference = data.reference_rows(2000, seed);
    let pairs = |v: &[f64]| v.chunks(2).map(|c| [c[0], c[1]]).collect::<Vec<_>>();
    samples_scatter(
        &out.join("samples.png"),
        "model samples and data",
        &pairs(samples),
        Some(&pairs(&reference)),
        range,
        range,
    )?;
    Ok(())
}

/// `flows train` with nothing but the subcommand: the defaults `--resume` compares with.
#[derive(Parser)]
struct DefaultTrain {
    #[command(flatten)]
    args: TrainArgs,
}

/// The stored configuration of the run in `dir` and its last checkpoint. Flags other than
/// `--resume`, `--quiet` and `--device` are refused: the run continues as it was started.
fn resume_args<B: Backend<Elem = f32>>(
    backend: &B,
    given: &TrainArgs,
    dir: &Path,
) -> Result<(TrainArgs, RunCheckpoint<B>)> {
    let defaults = DefaultTrain::try_parse_from(["train"])
        .expect("the defaults parse")
        .args;
    let mut probe = given.clone();
    probe.resume = None;
    probe.quiet = defaults.quiet;
    probe.device = defaults.device;
    if probe != defaults {
        let a = serde_json::to_value(&probe).expect("serialises");
        let b = serde_json::to_value(&defaults).expect("serialises");
        let changed = changed_keys(&a, &b);
        return Err(Error::Config(format!(
            "--resume continues the run with the configuration stored in {}; drop {}",
            dir.display(),
            changed
                .iter()
                .map(|k| format!("--{}", k.replace('_', "-")))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let path = dir.join(CHECKPOINT);
    let checkpoint = checkpoint::load_run(backend, &path)?;
    let run = checkpoint.metadata.get("run").ok_or_else(|| {
        Error::format(
            &path,
            "no run configuration: not a checkpoint written by `flows train`",
        )
    })?;
    let mut args: TrainArgs = serde_json::from_str(run)
        .map_err(|e| Error::format(&path, format!("unreadable run configuration ({e})")))?;
    if checkpoint.resume.is_none() {
        return Err(Error::format(
            &path,
            "the checkpoint holds no training state to resume",
        ));
    }
    args.out = Some(dir.to_path_buf());
    args.quiet = given.quiet;
    args.device = given.device;
    args.resume = None;
    Ok((args, checkpoint))
}

/// The flattened keys whose values differ between two JSON objects.
fn changed_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => x
            .iter()
            .flat_map(|(k, v)| match y.get(k) {
                Some(w) if w.is_object() => changed_keys(v, w),
                Some(w) if w == v => vec![],
                _ => vec![k.clone()],
            })
            .collect(),
        _ => vec![],
    }
}

fn check_flags(args: &TrainArgs) -> Result<()> {
    // Checked before anything is trained or written, so a bad flag costs nothing.
    for (flag, value, least) in [
        ("--iters", args.iters, 1),
        ("--batch", args.batch, 1),
        ("--test-samples", args.test_samples, 2),
        ("--validation-samples", args.validation_samples, 2),
    ] {
        if value < least {
            return Err(Error::Config(format!(
                "{flag} must be at least {least}, got {value}"
            )));
        }
    }
    if args.model.flow == super::FlowKind::Glow && args.batch < 2 {
        return Err(Error::Config(format!(
            "--flow glow initialises its ActNorm layers from the first batch: --batch must be \
             at least 2, got {}",
            args.batch
        )));
    }
    if args.model.reflow > 0 && args.model.flow != super::FlowKind::Rectified {
        return Err(Error::Config(
            "--reflow applies to --flow rectified only".into(),
        ));
    }
    if args.model.reflow > 0 && args.resume.is_some() {
        return Err(Error::Config(
            "a run with --reflow cannot be resumed; start it again".into(),
        ));
    }
    args.model.check_optimizer_flags()
}

/// Rectified flow's reflow rounds (Liu et al. 2023): each retrains `model` on pairs
/// `(z, x)` that the model as the round found it generates, printing the validation NLL and
/// how well one Euler step samples (the 2-Wasserstein distance of 2,000 samples to 2,000
/// validation points), which straighter paths improve.
fn reflow<B: Backend<Elem = f32>>(
    model: &mut NormalizingFlow<B>,
    args: &TrainArgs,
    config: &TrainConfig,
    validation: &Validation<B>,
) -> Result<()> {
    let registry = flow_layers::Registry::builtin();
    let dim = model.dim();
    let points = validation.x.shape().rows.min(2000);
    let data = &validation.x.to_f64s()?[..points * dim];
    let one_step_w2 = |model: &NormalizingFlow<B>| -> Result<f64> {
        let (spec, _) = flow_layers::cnf::with_solver(model.spec(), Solver::Euler { steps: 1 })?;
        let euler = model.with_spec(&registry, spec)?;
        let (x, _) = euler.sample(points, None, &mut flow_core::rng(args.model.seed ^ 0x0e11))?;
        flow_train::distance::wasserstein2(&x.to_f64s()?, data, dim)
    };
    let (nll, _) = validation.nll(model)?;
    println!(
        "round 1 (rectified flow): validation NLL {nll:.4}, one-step samples at W2 {:.4} from the data",
        one_step_w2(model)?
    );
    for round in 1..=args.model.reflow {
        // The pairs come from 20 RK4 steps (80 field evaluations): the model's paths are
        // already nearly straight, and an adaptive solve at the model's tolerance through a
        // SELU field's kinks would cost far more per batch for pairs no better to learn from.
        let (spec, _) = flow_layers::cnf::with_solver(model.spec(), Solver::Rk4 { steps: 20 })?;
        let teacher = model.with_spec(&registry, spec)?;
        let mut pairs_rng = flow_train::train::data_rng(args.model.seed);
        pairs_rng.set_stream(round as u64);
        let round_config = TrainConfig {
            objective: Objective::FlowMatching(FlowMatching {
                pairing: Pairing::Given,
                sigma: 0.0,
            }),
            seed: args.model.seed.wrapping_add(round as u64),
            ..config.clone()
        };
        let mut quiet = |_: &flow_train::train::Progress<'_, B>| Ok(());
        let report = train_on(
            model,
            ReflowPairs::new(teacher, pairs_rng),
            &round_config,
            None,
            None,
            &mut quiet,
        )?;
        let (nll, _) = validation.nll(model)?;
        println!(
            "round {} (reflow): {} iterations on generated pairs ({:.0} it/s), validation NLL \
             {nll:.4}, one-step samples at W2 {:.4} from the data",
            round + 1,
            report.losses.len(),
            report.iters_per_second(),
            one_step_w2(model)?
        );
    }
    Ok(())
}
