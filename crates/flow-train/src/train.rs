//! Training by maximum likelihood (`forward_kld`) on samples of a density, and held-out
//! evaluation.

use crate::error::{Error, Result};
use crate::optim::{clip_grad_norm, LrSchedule, Optimizer, OptimizerKind, OptimizerState};
use crate::source::{BatchSource, DensitySource, SourcePosition};
use flow_core::{Backend, Element, FlowRng, Tape, Tensor};
use flow_datasets::ToyDensity;
use flow_layers::{FlowMatching, NormalizingFlow};
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
    /// Stop with [`Error::Diverged`] after this many skipped steps in a row (non-finite
    /// losses or gradients, see [`train_on`]).
    pub max_nonfinite_streak: usize,
    /// Compute the validation NLL every this many updates (and at the end); 0: never.
    pub validate_every: usize,
    /// Stop early after this many validations in a row without a new best; 0: never.
    pub patience: usize,
    pub seed: u64,
    /// What each step minimises (maximum likelihood unless set).
    pub objective: Objective,
}

/// What a training step minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Objective {
    /// Maximum likelihood: [`NormalizingFlow::forward_kld`] of the batch (every flow).
    #[default]
    MaximumLikelihood,
    /// Flow matching ([`FlowMatching::loss`]; a model of one continuous layer), its draws
    /// (base samples, times, path noise) from a stream fixed by the run's seed and the step,
    /// so that a resumed run repeats them. The loss reported is the regression's mean
    /// squared error, not an NLL; validation still reports the exact NLL.
    FlowMatching(FlowMatching),
}

impl Objective {
    /// The loss of one batch on `x`'s tape.
    pub fn loss<B: Backend>(
        &self,
        model: &NormalizingFlow<B>,
        x: &flow_core::Var<B>,
        seed: u64,
        step: usize,
    ) -> flow_layers::Result<flow_core::Var<B>> {
        match self {
            Objective::MaximumLikelihood => model.forward_kld(x, None),
            Objective::FlowMatching(matcher) => {
                let mut rng = salted_rng(seed, 0xf10e);
                rng.set_stream(step as u64);
                matcher.loss(model, x, None, &mut rng)
            }
        }
    }

    /// The columns of a batch for a model of `dim` features: twice that for flow matching on
    /// given pairs (`[x0, x1]` per row).
    pub fn data_width(&self, dim: usize) -> usize {
        match self {
            Objective::FlowMatching(FlowMatching {
                pairing: flow_layers::Pairing::Given,
                ..
            }) => 2 * dim,
            _ => dim,
        }
    }

    /// Whether a batch's loss is in the data's units (an NLL), so that the preprocessing's
    /// log-determinant belongs in the reported value.
    fn is_nll(&self) -> bool {
        matches!(self, Objective::MaximumLikelihood)
    }
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
            validate_every: 0,
            patience: 0,
            seed: 0,
            objective: Objective::MaximumLikelihood,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    /// The loss of every iteration run by this call (NaN or infinite where the step was
    /// skipped for its loss, NaN for a batch holding a NaN or an infinity, finite where it was
    /// skipped for its gradient), in the data's units (the mean NLL of the batch, the preprocessing's
    /// log-determinant included); a resumed run's start at [`TrainReport::first_step`].
    pub losses: Vec<f64>,
    pub first_step: usize,
    /// Steps skipped because the loss or its gradient was not finite (over the whole run,
    /// resumed or not).
    pub skipped: usize,
    /// Validation NLLs: (updates taken, mean NLL).
    pub validation: Vec<(usize, f64)>,
    /// The best validation: (updates taken, mean NLL).
    pub best: Option<(usize, f64)>,
    /// Set when early stopping ended the run: the number of updates taken.
    pub stopped_early: Option<usize>,
    /// Wall time of the training steps (sampling, forward, backward, update), seconds;
    /// validation and observers are not counted.
    pub seconds: f64,
}

impl TrainReport {
    pub fn iters_per_second(&self) -> f64 {
        self.losses.len() as f64 / self.seconds
    }
}

/// The random streams of a run, derived from its seed so that each is reproducible.
pub fn data_rng(seed: u64) -> FlowRng {
    salted_rng(seed, 0xda7a)
}

pub fn test_rng(seed: u64) -> FlowRng {
    salted_rng(seed, 0x7e57)
}

/// A run's stream for one purpose: its seed spread over the bits, then `salt` mixed in.
fn salted_rng(seed: u64, salt: u64) -> FlowRng {
    flow_core::rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt)
}

/// Held-out rows, already mapped to model inputs, and the log-determinant of that map per
/// row, so that the NLL is reported in the data's own units: `-log q(y) - log|dy/dx|`.
#[derive(Debug)]
pub struct Validation<B: Backend> {
    pub x: Tensor<B>,
    pub log_det: Vec<f64>,
}

impl<B: Backend> Validation<B> {
    /// Validation rows without a preprocessing map.
    pub fn new(x: Tensor<B>) -> Self {
        let log_det = vec![0.0; x.shape().rows];
        Validation { x, log_det }
    }

    /// The NLL of every row under `model`, in chunks.
    pub fn nll_of_rows(&self, model: &NormalizingFlow<B>) -> Result<Vec<f64>> {
        let (rows, dim) = (self.x.shape().rows, self.x.shape().cols);
        // Chunks are cut on the backend (rows of a row-major tensor are a column range of
        // its one-row view): nothing goes to the host but the log-densities. The rows are on
        // the model's device: run data are built with the model's backend.
        let flat = if rows > VALIDATION_CHUNK {
            Some(self.x.reshape((1, rows * dim))?)
        } else {
            None
        };
        let mut nll = Vec::with_capacity(rows);
        for start in (0..rows).step_by(VALIDATION_CHUNK) {
            let end = (start + VALIDATION_CHUNK).min(rows);
            let chunk;
            let x = match &flat {
                Some(flat) => {
                    chunk = flat
                        .slice_cols(start * dim, (end - start) * dim)?
                        .reshape((end - start, dim))?;
                    &chunk
                }
                None => &self.x,
            };
            let lp = model.log_prob(x, None)?.to_f64s()?;
            nll.extend(
                lp.iter()
                    .zip(&self.log_det[start..end])
                    .map(|(lp, ld)| -(lp + ld)),
            );
        }
        Ok(nll)
    }

    /// Mean NLL and its standard error.
    pub fn nll(&self, model: &NormalizingFlow<B>) -> Result<(f64, f64)> {
        Ok(mean_and_se(&self.nll_of_rows(model)?))
    }
}

const VALIDATION_CHUNK: usize = 4096;

/// Everything beyond the parameters that a run needs to continue where it stopped.
#[derive(Clone, Debug)]
pub struct ResumeState<B: Backend> {
    /// Updates taken (the next iteration's index).
    pub step: usize,
    pub optimizer: OptimizerState<B>,
    pub source: SourcePosition,
    pub counters: Counters,
}

/// The run's bookkeeping that decides what happens next (divergence and early stopping).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Skipped steps (non-finite losses or gradients) so far, and in a row up to now.
    pub skipped: usize,
    pub streak: usize,
    /// The best validation: (updates taken, mean NLL).
    pub best: Option<(usize, f64)>,
    /// Validations since the best.
    pub stale: usize,
}

/// The state of a run between two updates, handed to an [`Observer`].
#[derive(Debug)]
pub struct Progress<'a, B: Backend> {
    /// Updates taken so far.
    pub step: usize,
    pub model: &'a NormalizingFlow<B>,
    /// The validation computed at this step, if any: (mean NLL, standard error).
    pub validation: Option<(f64, f64)>,
    /// This validation is the best so far.
    pub improved: bool,
    /// No update follows (the last iteration, or early stopping).
    pub finished: bool,
    pub counters: &'a Counters,
    optimizer: &'a dyn Optimizer<B>,
    source: &'a SourcePosition,
}

impl<B: Backend> Progress<'_, B> {
    /// What a checkpoint must hold to resume from here.
    pub fn resume_state(&self) -> Result<ResumeState<B>> {
        Ok(ResumeState {
            step: self.step,
            optimizer: self.optimizer.state(self.model.params())?,
            source: self.source.clone(),
            counters: self.counters.clone(),
        })
    }
}

/// Watches a run: [`Observer::progress`] between updates (snapshots, checkpoints, the best
/// model), [`Observer::loss`] after each iteration (metrics, a progress bar). A closure taking a
/// [`Progress`] is an observer.
pub trait Observer<B: Backend> {
    fn progress(&mut self, p: &Progress<'_, B>) -> Result<()>;
    /// The loss of iteration `step` and the learning rate its update used.
    fn loss(&mut self, _step: usize, _loss: f64, _lr: f64) -> Result<()> {
        Ok(())
    }
}

impl<B: Backend, F: FnMut(&Progress<'_, B>) -> Result<()>> Observer<B> for F {
    fn progress(&mut self, p: &Progress<'_, B>) -> Result<()> {
        self(p)
    }
}

/// Trains `model` on fresh batches of `density` by minimising `forward_kld`, as normflows'
/// loop (see [`train_on`]).
pub fn train<B: Backend>(
    model: &mut NormalizingFlow<B>,
    density: &dyn ToyDensity,
    config: &TrainConfig,
    mut observer: impl Observer<B>,
) -> Result<TrainReport> {
    let source = DensitySource::new(density, data_rng(config.seed));
    train_on(model, source, config, None, None, &mut observer)
}

/// Trains `model` by minimising `forward_kld` on the batches of `source`: a step whose loss
/// is NaN or infinite is skipped (and counted), as is one whose batch holds a NaN or an
/// infinity (which [`NormalizingFlow::forward_kld`] refuses) and one whose loss is finite but
/// whose gradient is not (which the optimizer refuses, leaving the parameters and its state
/// as they were: see [`crate::optim`]); [`TrainConfig::max_nonfinite_streak`] skipped steps
/// in a row stop the run with [`Error::Diverged`]. With `validation`, the validation
/// NLL is computed every [`TrainConfig::validate_every`] updates and at the end, and
/// [`TrainConfig::patience`] validations without a new best stop the run early. With
/// `resume` (from [`Progress::resume_state`], with the model's parameters of that moment),
/// the run continues as if it had never stopped: same batches, same updates, bit for bit.
///
/// A fresh run (no `resume`) of a model with ActNorm layers (Glow) first initialises them
/// from the first training batch, as Glow does
/// ([`NormalizingFlow::init_from_data`]: each maps that batch to zero mean and unit
/// variance per feature); then the run starts, that same batch its first step's. The
/// observer sees the initialised model from step 0 on, so every checkpoint holds the
/// initialised parameters and a resumed run does not initialise again.
///
/// Batches are drawn on a second thread, one step ahead, in the order a sequential loop would
/// draw them, so results do not depend on the threading; on two-moons the rejection sampler
/// costs about a quarter of a step, which the prefetch hides.
///
/// Training on a table with validation, and resuming from a checkpoint written mid-run:
///
/// ```
/// use flow_core::Cpu;
/// use flow_datasets::tabular::Table;
/// use flow_layers::{NormalizingFlow, RealNvpConfig};
/// use flow_train::run_data::{RunData, SplitTable, TableOptions};
/// use flow_train::checkpoint;
/// use flow_train::train::{train_on, Progress, TrainConfig};
/// # fn main() -> flow_train::Result<()> {
/// let cpu = Cpu::<f32>::new();
/// let rows: Vec<f64> = (0..400).flat_map(|i| [i as f64 % 7.0, (i * i % 11) as f64]).collect();
/// let table = Table::new(vec!["a".into(), "b".into()], rows)?;
/// // 80/10/10 split, standardisation fitted on the training rows, integer columns dequantised.
/// let data = RunData::Table(Box::new(SplitTable::new("demo", table, &TableOptions::default())?));
/// let validation = data.validation(&cpu, 0, 0)?;
/// let config = TrainConfig { iters: 40, batch: 32, validate_every: 10, patience: 3, ..TrainConfig::default() };
/// let spec = RealNvpConfig { dim: 2, hidden: vec![16, 16], ..RealNvpConfig::default() }.spec()?;
/// let mut model = NormalizingFlow::new(&cpu, spec, 0)?;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("checkpoint.safetensors");
/// let mut checkpoint_at_20 = |p: &Progress<'_, Cpu<f32>>| {
///     if p.step == 20 {
///         let state = p.resume_state()?;
///         checkpoint::save_run(p.model, &data.preprocess(), Some(&state), &path, &[])
///     } else {
///         Ok(())
///     }
/// };
/// let report = train_on(&mut model, data.source(0)?, &config, Some(&validation), None, &mut checkpoint_at_20)?;
/// assert!(report.best.is_some());
/// // As if the process had been killed after iteration 20:
/// let stored = checkpoint::load_run(&cpu, &path)?;
/// let mut resumed = stored.model;
/// let mut quiet = |_: &Progress<'_, Cpu<f32>>| Ok(());
/// train_on(&mut resumed, data.source(0)?, &config, Some(&validation), stored.resume, &mut quiet)?;
/// for ((_, _, a), (_, _, b)) in resumed.params().iter().zip(model.params().iter()) {
///     assert_eq!(a.to_vec(), b.to_vec());   // bit for bit
/// }
/// # Ok(())
/// # }
/// ```
pub fn train_on<B: Backend, S: BatchSource>(
    model: &mut NormalizingFlow<B>,
    mut source: S,
    config: &TrainConfig,
    validation: Option<&Validation<B>>,
    resume: Option<ResumeState<B>>,
    observer: &mut dyn Observer<B>,
) -> Result<TrainReport> {
    let width = config.objective.data_width(model.dim());
    if source.dim() != width {
        return Err(Error::Config(format!(
            "the data have {} features, the model {} (rows of {width} expected)",
            source.dim(),
            model.dim()
        )));
    }
    let mut optimizer = config
        .optimizer
        .build::<B>(config.lr, config.weight_decay)?;
    let resumed = resume.is_some();
    let wants_data_init = model.wants_data_init();
    let (first, counters) = match resume {
        Some(state) => {
            optimizer.load_state(model.params(), state.optimizer)?;
            source.restore(&state.source)?;
            (state.step, state.counters)
        }
        None => (0, Counters::default()),
    };
    let start_position = source.position();
    let backend = model.backend().clone();
    let (batch, dim, iters) = (config.batch, width, config.iters);
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Batch<B>>>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for step in first..iters {
                let x = source.batch(step, batch).and_then(|(values, log_det)| {
                    Ok(Batch {
                        x: Tensor::from_f64s(&backend, (batch, dim), &values)?,
                        log_det,
                        after: source.position(),
                    })
                });
                // A closed channel means the training loop stopped early: stop too.
                if sender.send(x).is_err() {
                    break;
                }
            }
        });
        // `receiver` moves into the loop and is dropped when it returns, early or not, which
        // ends the sampling thread.
        let batches = receiver;
        let mut run = Run {
            model,
            config,
            optimizer,
            validation,
            counters,
            position: start_position,
            // The checkpoint was written after this step's validation.
            validated: resumed.then_some(first),
            init_from_data: !resumed && wants_data_init,
        };
        run.train(first, observer, move || {
            batches
                .recv()
                .expect("the sampling thread sends one batch per iteration")
        })
    })
}

struct Batch<B: Backend> {
    x: Tensor<B>,
    /// The mean log-determinant of the data-to-input map over the batch's rows.
    log_det: f64,
    /// The source's position after drawing this batch.
    after: SourcePosition,
}

/// A run in progress: what changes from one update to the next.
struct Run<'a, B: Backend> {
    model: &'a mut NormalizingFlow<B>,
    config: &'a TrainConfig,
    optimizer: Box<dyn Optimizer<B>>,
    validation: Option<&'a Validation<B>>,
    counters: Counters,
    /// The source's position before the next batch.
    position: SourcePosition,
    /// A step whose validation is already done (in the run a resumed one continues).
    validated: Option<usize>,
    /// Initialise the model's ActNorm layers from the first batch before the first step.
    init_from_data: bool,
}

impl<B: Backend> Run<'_, B> {
    fn train(
        &mut self,
        first: usize,
        observer: &mut dyn Observer<B>,
        mut next_batch: impl FnMut() -> Result<Batch<B>>,
    ) -> Result<TrainReport> {
        let config = self.config;
        let mut report = TrainReport {
            losses: Vec::with_capacity(config.iters.saturating_sub(first)),
            first_step: first,
            ..Default::default()
        };
        let mut seconds = 0.0;
        // Drawn before step `first`'s observer, so that it sees the initialised model; the
        // batch is still step `first`'s.
        let mut first_batch = None;
        if self.init_from_data && first < config.iters {
            let batch = next_batch()?;
            self.model.init_from_data(&batch.x, None)?;
            first_batch = Some(batch);
        }
        for i in first..=config.iters {
            if self.checkpoint_hook(i, observer, &mut report)? {
                break;
            }
            let start = Instant::now();
            let Batch { x, log_det, after } = match first_batch.take() {
                Some(batch) => batch,
                None => next_batch()?,
            };
            self.position = after;
            let tape = Tape::new(self.model.backend());
            let loss = match config
                .objective
                .loss(self.model, &tape.constant(x), config.seed, i)
            {
                Ok(loss) => Some(loss),
                // A batch holding a NaN or an infinity: skipped as a non-finite loss.
                Err(flow_layers::Error::NonFinite { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            // Reported in the data's units, like the validation NLL.
            let value = match &loss {
                Some(loss) if config.objective.is_nll() => loss.scalar_value()?.as_f64() - log_det,
                Some(loss) => loss.scalar_value()?.as_f64(),
                None => f64::NAN,
            };
            report.losses.push(value);
            let lr = config.schedule.lr(config.lr, i);
            let mut updated = false;
            if let Some(loss) = loss.filter(|_| value.is_finite()) {
                let mut grads = tape.backward(&loss)?;
                // The tape holds the parameters too: dropped, Adam updates them in place.
                drop((loss, tape));
                if let Some(bound) = config.clip_grad_norm {
                    clip_grad_norm(&mut grads, bound)?;
                }
                self.optimizer.set_lr(lr);
                match self.optimizer.step(self.model.params_mut(), &grads) {
                    Ok(()) => updated = true,
                    // A finite loss, a non-finite gradient: nothing was changed; skipped.
                    Err(Error::NonFiniteGradient { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            // Power iterations of spectrally normalised weights, commits of stochastic
            // layers' draws (normflows' `update_lipschitz` after every iteration, updated
            // or not).
            self.model.after_step()?;
            if updated {
                self.counters.streak = 0;
            } else {
                self.counters.skipped += 1;
                self.counters.streak += 1;
                if self.counters.streak >= config.max_nonfinite_streak {
                    return Err(Error::Diverged {
                        at: i,
                        first: i + 1 - self.counters.streak,
                        steps: self.counters.streak,
                    });
                }
            }
            seconds += start.elapsed().as_secs_f64();
            observer.loss(i, value, lr)?;
        }
        report.seconds = seconds;
        report.skipped = self.counters.skipped;
        report.best = self.counters.best;
        Ok(report)
    }

    /// Validation and the observer before update `step`; true when the run ends here.
    fn checkpoint_hook(
        &mut self,
        step: usize,
        observer: &mut dyn Observer<B>,
        report: &mut TrainReport,
    ) -> Result<bool> {
        let config = self.config;
        let last = step == config.iters;
        let mut validation = None;
        let mut improved = false;
        let mut finished = last;
        if let Some(v) = self.validation {
            let due = config.validate_every > 0 && step > 0 && step % config.validate_every == 0;
            if (due || last) && self.validated != Some(step) {
                let (nll, se) = v.nll(self.model)?;
                validation = Some((nll, se));
                report.validation.push((step, nll));
                improved = nll.is_finite() && self.counters.best.is_none_or(|(_, b)| nll < b);
                if improved {
                    self.counters.best = Some((step, nll));
                    self.counters.stale = 0;
                } else {
                    self.counters.stale += 1;
                    if config.patience > 0 && self.counters.stale >= config.patience && !last {
                        finished = true;
                        report.stopped_early = Some(step);
                    }
                }
            }
        }
        observer.progress(&Progress {
            step,
            model: self.model,
            validation,
            improved,
            finished,
            counters: &self.counters,
            optimizer: self.optimizer.as_ref(),
            source: &self.position,
        })?;
        Ok(finished)
    }
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
        nll.extend(model.log_prob(&x, None)?.to_f64s()?.into_iter().map(|v| -v));
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
