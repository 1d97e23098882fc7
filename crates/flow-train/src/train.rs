//! Training by maximum likelihood (`forward_kld`) on samples of a density, and held-out
//! evaluation.

use crate::error::{Error, Result};
use crate::optim::{clip_grad_norm, LrSchedule, OptimizerKind};
use flow_core::{Backend, Element, FlowRng, Tape, Tensor};
use flow_datasets::ToyDensity;
use flow_layers::NormalizingFlow;
use std::time::Instant;

/// The settings of a training run (defaults: normflows' two-moons example).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub iters: usize,
    pub batch: usize,
    /// The base learning rate (the schedule scales it).
    pub lr: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this bound.
    pub clip_grad_norm: Option<f64>,
    /// Stop with [`Error::Diverged`] after this many non-finite losses in a row.
    pub max_nonfinite_streak: usize,
    pub seed: u64,
    /// Show a progress bar on the terminal.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            iters: 3201,
            batch: 512,
            lr: 5e-4,
            weight_decay: 1e-5,
            optimizer: OptimizerKind::Adam,
            schedule: LrSchedule::default(),
            clip_grad_norm: None,
            max_nonfinite_streak: 50,
            seed: 0,
            progress: false,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    /// The loss of every iteration (NaN or infinite where the step was skipped).
    pub losses: Vec<f64>,
    /// Steps skipped because the loss was not finite.
    pub skipped: usize,
    /// Wall time of the training loop (sampling, forward, backward, update), seconds.
    pub seconds: f64,
}

impl TrainReport {
    pub fn iters_per_second(&self) -> f64 {
        self.losses.len() as f64 / self.seconds
    }
}

/// The random streams of a run, derived from its seed so that each is reproducible.
pub fn data_rng(seed: u64) -> FlowRng {
    flow_core::rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xda7a)
}

pub fn test_rng(seed: u64) -> FlowRng {
    flow_core::rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x7e57)
}

/// Trains `model` on fresh batches of `density` by minimising `forward_kld`, as normflows'
/// loop: a step whose loss is NaN or infinite is skipped (and counted). `on_iter(i, model)`
/// is called before iteration `i`'s update (for snapshots).
///
/// Batches are drawn on a second thread, one step ahead, from the same single random
/// stream as a sequential loop would use, so results do not depend on the threading; on
/// two-moons the rejection sampler costs about a quarter of a step, which the prefetch hides.
pub fn train<B: Backend>(
    model: &mut NormalizingFlow<B>,
    density: &dyn ToyDensity,
    config: &TrainConfig,
    mut on_iter: impl FnMut(usize, &NormalizingFlow<B>) -> Result<()>,
) -> Result<TrainReport> {
    let backend = model.backend().clone();
    let (batch, dim, iters) = (config.batch, density.dim(), config.iters);
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Tensor<B>>>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut rng = data_rng(config.seed);
            for _ in 0..iters {
                let x = Tensor::from_f64s(&backend, (batch, dim), &density.sample(batch, &mut rng));
                // A closed channel means the training loop stopped early: stop too.
                if sender.send(x.map_err(Into::into)).is_err() {
                    break;
                }
            }
        });
        // `receiver` moves into the loop and is dropped when it returns, early or not, which
        // ends the sampling thread.
        let batches = receiver;
        train_loop(model, config, &mut on_iter, move || {
            batches
                .recv()
                .expect("the sampling thread sends one batch per iteration")
        })
    })
}

fn train_loop<B: Backend>(
    model: &mut NormalizingFlow<B>,
    config: &TrainConfig,
    on_iter: &mut impl FnMut(usize, &NormalizingFlow<B>) -> Result<()>,
    mut next_batch: impl FnMut() -> Result<Tensor<B>>,
) -> Result<TrainReport> {
    let mut optimizer = config
        .optimizer
        .build::<B>(config.lr, config.weight_decay)?;
    let mut report = TrainReport {
        losses: Vec::with_capacity(config.iters),
        ..Default::default()
    };
    let bar = progress_bar(config);
    let start = Instant::now();
    let mut hook_time = 0.0;
    let mut streak = 0;
    for i in 0..config.iters {
        let hook_start = Instant::now();
        on_iter(i, model)?;
        hook_time += hook_start.elapsed().as_secs_f64();
        let x = next_batch()?;
        let tape = Tape::new(model.backend());
        let loss = model.forward_kld(&tape.constant(x))?;
        let value = loss.scalar_value()?.as_f64();
        report.losses.push(value);
        if value.is_finite() {
            let mut grads = tape.backward(&loss)?;
            // The tape holds the parameters too: dropped, Adam updates them in place.
            drop((loss, tape));
            if let Some(bound) = config.clip_grad_norm {
                clip_grad_norm(&mut grads, bound)?;
            }
            optimizer.set_lr(config.schedule.lr(config.lr, i));
            optimizer.step(model.params_mut(), &grads)?;
            streak = 0;
        } else {
            report.skipped += 1;
            streak += 1;
            if streak >= config.max_nonfinite_streak {
                return Err(Error::Diverged {
                    at: i,
                    first: i + 1 - streak,
                    steps: streak,
                });
            }
        }
        if let Some(bar) = &bar {
            if i % 25 == 0 || i + 1 == config.iters {
                bar.set_position(i as u64 + 1);
                bar.set_message(format!("loss {value:.4}"));
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64() - hook_time;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}

fn progress_bar(config: &TrainConfig) -> Option<indicatif::ProgressBar> {
    if !config.progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new(config.iters as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} [{elapsed_precise}] {per_sec} {msg}",
        )
        .expect("valid template"),
    );
    Some(bar)
}

/// Mean negative log-likelihood (nats) of `n` fresh samples of `density` under `model`,
/// with its standard error.
pub fn test_nll<B: Backend>(
    model: &NormalizingFlow<B>,
    density: &dyn ToyDensity,
    n: usize,
    rng: &mut FlowRng,
) -> Result<(f64, f64)> {
    let mut nll = Vec::with_capacity(n);
    let chunk = 4096;
    let mut left = n;
    while left > 0 {
        let m = left.min(chunk);
        let x = Tensor::from_f64s(model.backend(), (m, density.dim()), &density.sample(m, rng))?;
        nll.extend(model.log_prob_of(&x)?.to_f64s().into_iter().map(|v| -v));
        left -= m;
    }
    Ok(mean_and_se(&nll))
}

pub fn mean_and_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}
