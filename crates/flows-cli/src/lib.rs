//! # flows-cli
//!
//! The `flows` command, the command line over the `flows` crates: `flows train` fits a flow
//! (RealNVP, Glow, MAF, IAF, NSF, planar, radial, residual, CNF, FFJORD) to a built-in density, a CSV or .npy table
//! or an image set, with validation, early stopping, checkpoints that resume bit for bit,
//! a metrics log and PNG plots; `log-prob`, `sample` and `eval` use a checkpoint;
//! `import-normflows` converts a normflows RealNVP; `bench` times training; `datasets` lists
//! the data sets. `--device cuda` runs `train`, `eval`, `log-prob`, `sample` and `bench` on
//! GPU 0 through flow-cuda. Run `flows --help`, or from a checkout
//! `cargo run --release -p flows-cli --bin flows -- train`.
//!
//! The library half holds what the binary runs ([`Cli`], [`run`]) and the plots it draws
//! ([`plot`]); training itself is flow-train's.

pub mod error;
pub mod plot;

use crate::plot::DensityGrid;
use data::read_for_model;
use flow_train::checkpoint;
use flow_train::data::write_csv;
use flow_train::import::{import_normflows, import_torchcfm, ImportOptions};
use flow_train::optim::{Decay, LrSchedule, OptimizerKind};
use flow_train::preprocess::Preprocess;
use flow_train::train::{mean_and_se, train_on, Objective, Progress, TrainConfig};
use flow_train::{Error, Result};

mod data;
mod train;
use clap::{Parser, Subcommand, ValueEnum};
use flow_core::{Backend, Cpu, Tensor};
use flow_layers::ode::Solver;
use flow_layers::{
    CnfConfig, CnfLayerConfig, FieldActivation, FlowMatching, GlowConfig, LogDetEstimator,
    MafConfig, NormalizingFlow, NsfConfig, Ordering, Pairing, PermuteMode, PlanarConfig,
    RadialConfig, RealNvpConfig, ResidualConfig, ResidualLayerConfig, ScaleMap, SplineConfig,
    TermDistribution, TimeInput,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a command computes (`--device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Device {
    /// The CPU backend.
    #[default]
    Cpu,
    /// The CUDA backend on GPU 0: needs the NVIDIA driver, and NVRTC and cuBLAS from CUDA 12
    /// or 13.
    Cuda,
}

/// Evaluates `$body` with `$b` bound to (a reference to) the f32 backend `$device` selects;
/// a CUDA backend that cannot start returns its error from the enclosing function.
macro_rules! on_backend {
    ($device:expr, $b:ident => $body:expr) => {
        match $device {
            $crate::Device::Cpu => {
                let $b = &flow_core::Cpu::<f32>::new();
                $body
            }
            $crate::Device::Cuda => {
                let $b = &flow_cuda::CudaBackend::<f32>::new(0)?;
                $body
            }
        }
    };
}
pub(crate) use on_backend;

/// `--device`'s help.
const DEVICE_HELP: &str = "Where to compute: cpu, or cuda (GPU 0; needs the NVIDIA driver, and NVRTC and cuBLAS from CUDA 12 or 13)";

#[derive(Parser, Debug)]
#[command(
    name = "flows",
    version,
    about = "Normalizing flows: train, evaluate, import, benchmark"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a flow on a built-in data set or a CSV/.npy file, by maximum likelihood (flow matching for cfm, otcfm and rectified; defaults: normflows' RealNVP on two moons).
    Train(TrainArgs),
    /// Print log q(x) for every row of a CSV or .npy file under a checkpoint (in the data's
    /// units: the stored standardisation is applied and its log-determinant added).
    LogProb {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// Seed of the dequantisation noise (integer-valued columns the model was trained
        /// with dequantised).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Device::Cpu, help = DEVICE_HELP)]
        device: Device,
        #[command(flatten)]
        ode: SolverOverride,
    },
    /// Convert a normflows RealNVP state_dict (safetensors) into a flows checkpoint.
    ImportNormflows {
        /// The state_dict, saved with safetensors.
        weights: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The MLPs' LeakyReLU slope (normflows' MLP(leaky=...)).
        #[arg(long, default_value_t = 0.0)]
        leaky: f64,
        #[arg(long, value_enum, default_value_t = ScaleMapArg::Exp)]
        scale_map: ScaleMapArg,
        /// The last coupling block is not followed by a swap permutation (normflows' recipe
        /// appends one after every block; a swap has no tensors to reveal it).
        #[arg(long)]
        no_trailing_permute: bool,
    },
    /// Convert the state_dict (safetensors) of torchcfm's MLP(dim, w, time_varying=True)
    /// into a flows checkpoint: one CNF layer (SELU field on [x, t], standard normal at
    /// t = 0, data at t = 1) whose samples and exact log-densities `flows sample`, `eval` and
    /// `log-prob` then give.
    ImportTorchcfm {
        /// The state_dict, saved with safetensors (`net.{0,2,4,6}.weight` and `.bias`).
        weights: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The solver stored with the model (eval, log-prob and sample can override it).
        #[arg(long, value_enum, default_value_t = SolverArg::Dopri5)]
        solver: SolverArg,
        /// dopri5's relative tolerance (as --flow cfm; torchcfm's examples use 1e-4).
        #[arg(long, default_value_t = 1e-5)]
        rtol: f64,
        /// dopri5's absolute tolerance (as --flow cfm; torchcfm's examples use 1e-4).
        #[arg(long, default_value_t = 1e-5)]
        atol: f64,
        /// The steps of a fixed-step solver.
        #[arg(long, default_value_t = 20)]
        steps: usize,
    },
    /// Draw samples from a checkpoint's model and write them as CSV (columns x0, x1, ...).
    Sample {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Number of samples.
        #[arg(short = 'n', long, default_value_t = 1000)]
        n: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Device::Cpu, help = DEVICE_HELP)]
        device: Device,
        #[command(flatten)]
        ode: SolverOverride,
    },
    /// Mean negative log-likelihood (nats) of the rows of a CSV or .npy file under a
    /// checkpoint, with its standard error.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// Seed of the dequantisation noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Device::Cpu, help = DEVICE_HELP)]
        device: Device,
        #[command(flatten)]
        ode: SolverOverride,
    },
    /// List the built-in data sets: name, dimension, whether the log-density has a closed
    /// form, and the entropy (the lowest NLL any model can reach) where it is known.
    Datasets,
    /// Time the whole training step (sampling, forward, backward, Adam) without plots.
    Bench {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 3201)]
        iters: usize,
        #[arg(long, default_value_t = 512)]
        batch: usize,
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        #[arg(long, value_enum, default_value_t = Device::Cpu, help = DEVICE_HELP)]
        device: Device,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum FlowKind {
    /// Affine couplings with MLP conditioners, each followed by a permutation (normflows).
    Realnvp,
    /// Masked autoregressive flow: density in one pass, sampling in D (zuko, nflows).
    Maf,
    /// Inverse autoregressive flow: sampling in one pass, density in D.
    Iaf,
    /// Neural spline flow, autoregressive (zuko's and nflows' NSF): rational-quadratic
    /// splines over MADEs.
    Nsf,
    /// Neural spline flow with coupling layers, each followed by a permutation.
    NsfCoupling,
    /// Glow (normflows' GlowBlock): steps of ActNorm (initialised from the first batch), an
    /// LU-parametrised invertible linear map and an affine coupling with sigmoid scale.
    Glow,
    /// Planar flows (Rezende & Mohamed; tanh): no conditioner, numerical inverse, so density
    /// evaluation solves an equation per layer. Use many (--transforms 16).
    Planar,
    /// Radial flows (Rezende & Mohamed): no conditioner, numerical inverse. Use many
    /// (--transforms 16).
    Radial,
    /// Residual flows (i-ResNet, Residual Flows; normflows' example): blocks x + g(x) with g
    /// a spectrally normalised LipSwish MLP, each followed by ActNorm, over a fixed standard
    /// normal. Densities run the explicit map with a stochastic log-det in training (see
    /// --logdet) and the exact one in evaluation up to 16 features; sampling solves a fixed
    /// point. Unless given: --transforms 16 --hidden 128,128 --lr 3e-4.
    Residual,
    /// A continuous normalizing flow (neural ODE, zuko's CNF): an MLP vector field (ELU) on
    /// [z, cos/sin(k pi t), k = 1..3], the exact trace, integrated by --solver (gradients
    /// through the solver, or --adjoint). Unless given: --transforms 1 --hidden 64,64,64
    /// --lr 1e-3 --activation elu --time-freqs 3.
    Cnf,
    /// FFJORD: a CNF (tanh, on [z, t]) whose trace is Hutchinson's estimate in training
    /// (Gaussian probes fixed per solve); evaluation is exact up to 16 features. Unless
    /// given: as --flow cnf, with --activation tanh --time-freqs 0 --trace hutchinson.
    Ffjord,
    /// Conditional flow matching (I-CFM, torchcfm's ConditionalFlowMatcher(--sigma)): the
    /// vector field of a CNF regressed on straight paths between independent base draws and
    /// data, no ODE solved in training; sampling and the exact log-density integrate it by
    /// --solver. Unless given: --transforms 1 --hidden 64,64,64 --lr 1e-3 --batch 256
    /// --activation selu --time-freqs 0 (torchcfm's MLP) --rtol 1e-5 --atol 1e-5.
    Cfm,
    /// Optimal-transport CFM: as cfm, with base draws and data paired by the exact
    /// minibatch optimal-transport plan (an assignment problem solved exactly).
    Otcfm,
    /// Rectified flow: as cfm with sigma 0, then --reflow rounds, each retraining the field
    /// on pairs (z, x) that the previous round's model generates, which straightens paths.
    Rectified,
}

impl FlowKind {
    /// The flows trained by flow matching.
    pub fn is_flow_matching(self) -> bool {
        matches!(self, FlowKind::Cfm | FlowKind::Otcfm | FlowKind::Rectified)
    }

    /// The continuous flows (one or more CNF layers).
    pub fn is_continuous(self) -> bool {
        self.is_flow_matching() || matches!(self, FlowKind::Cnf | FlowKind::Ffjord)
    }
}

/// The nonlinearity of a continuous flow's vector field.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum ActivationArg {
    Tanh,
    Elu,
    Selu,
}

/// The trace of a continuous flow's Jacobian in training.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum TraceArg {
    /// One vector-Jacobian product per feature.
    Exact,
    /// Hutchinson's estimate with a Gaussian probe fixed per solve (FFJORD).
    Hutchinson,
}

/// The ODE solver of continuous flows.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum SolverArg {
    /// Adaptive Dormand-Prince 5(4) with --rtol and --atol (torchdiffeq's dopri5).
    Dopri5,
    /// Classical Runge-Kutta, --steps equal steps.
    Rk4,
    /// The midpoint rule, --steps equal steps.
    Midpoint,
    /// Explicit Euler, --steps equal steps.
    Euler,
}

/// A continuous model's solver for one command, overriding the one its checkpoint stores.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct SolverOverride {
    /// Continuous flows: integrate with this solver instead of the stored one.
    #[arg(long, value_enum)]
    pub solver: Option<SolverArg>,
    /// Continuous flows, dopri5: relative tolerance instead of the stored one.
    #[arg(long)]
    pub rtol: Option<f64>,
    /// Continuous flows, dopri5: absolute tolerance instead of the stored one.
    #[arg(long)]
    pub atol: Option<f64>,
    /// Continuous flows, fixed-step solvers: the number of steps (default 20).
    #[arg(long)]
    pub steps: Option<usize>,
}

impl SolverOverride {
    /// `model` with its continuous layers integrated as given; unchanged when nothing is.
    pub fn apply<B: Backend>(&self, model: NormalizingFlow<B>) -> Result<NormalizingFlow<B>> {
        if *self == SolverOverride::default() {
            return Ok(model);
        }
        let stored = model
            .spec()
            .layers
            .iter()
            .find(|l| l.kind() == <flow_layers::Cnf as flow_layers::LayerKind>::NAME)
            .map(|l| l.config::<flow_layers::Cnf>())
            .transpose()?
            .map(|c| c.solver)
            .ok_or_else(|| {
                Error::Config(
                    "--solver, --rtol, --atol and --steps apply to continuous flows only".into(),
                )
            })?;
        // What the stored solver does not hold falls back to the training defaults.
        let (stored_tol, stored_steps) = match stored {
            Solver::Dopri5 { rtol, atol, .. } => ((rtol, atol), None),
            Solver::Rk4 { steps } | Solver::Midpoint { steps } | Solver::Euler { steps } => {
                ((default_rtol(), default_atol()), Some(steps))
            }
        };
        let kind = self.solver.unwrap_or(match stored {
            Solver::Dopri5 { .. } => SolverArg::Dopri5,
            Solver::Rk4 { .. } => SolverArg::Rk4,
            Solver::Midpoint { .. } => SolverArg::Midpoint,
            Solver::Euler { .. } => SolverArg::Euler,
        });
        let solver = ode_solver(
            kind,
            self.rtol.unwrap_or(stored_tol.0),
            self.atol.unwrap_or(stored_tol.1),
            self.steps
                .or(stored_steps)
                .unwrap_or_else(default_ode_steps),
        )?;
        let (spec, _) = flow_layers::cnf::with_solver(model.spec(), solver)?;
        Ok(model.with_spec(&flow_layers::Registry::builtin(), spec)?)
    }
}

/// The log-determinant estimator of residual flows in training.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum LogDetArg {
    /// The full Jacobian (d vector-Jacobian products per block): for small dimensions.
    Exact,
    /// The power series truncated at --series-terms terms (i-ResNet; biased).
    Series,
    /// Russian roulette (Residual Flows; unbiased): --exact-terms terms plus a
    /// geometric(--geom-p) number more (normflows' default).
    Roulette,
}

/// The orderings of MAF / IAF layers.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum OrderingArg {
    /// Natural and reversed in turn (zuko's default).
    Alternate,
    /// Each layer a random ordering (from --seed).
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum ScaleMapArg {
    Exp,
    Sigmoid,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum OptimizerArg {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum ScheduleArg {
    Constant,
    Cosine,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum, Serialize, Deserialize)]
pub enum PermuteArg {
    Swap,
    Shuffle,
    Reverse,
}

#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArgs {
    #[arg(long, value_enum, default_value_t = FlowKind::Realnvp)]
    pub flow: FlowKind,
    /// Number of coupling blocks (RealNVP, NSF coupling: each followed by a permutation),
    /// autoregressive layers (MAF, IAF, NSF), Glow steps (ActNorm, LU linear, coupling) or
    /// planar / radial layers.
    #[arg(long, default_value_t = 2)]
    pub transforms: usize,
    /// Hidden layer sizes of each conditioner MLP (planar and radial flows have none).
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub hidden: Vec<usize>,
    /// NSF: bins of each rational-quadratic spline.
    #[arg(long, default_value_t = 8)]
    #[serde(default = "default_bins")]
    pub bins: usize,
    /// NSF: the splines act on [-B, B] and are the identity outside.
    #[arg(long, default_value_t = 5.0)]
    #[serde(default = "default_tail_bound")]
    pub tail_bound: f64,
    /// RealNVP, NSF coupling: the permutation after each coupling block.
    #[arg(long, value_enum, default_value_t = PermuteArg::Swap)]
    pub permute: PermuteArg,
    /// MAF / IAF / NSF: the orderings of the autoregressive layers.
    #[arg(long, value_enum, default_value_t = OrderingArg::Alternate)]
    pub ordering: OrderingArg,
    /// RealNVP: the couplings' scale, exp or sigmoid (Glow's couplings are always sigmoid).
    #[arg(long, value_enum, default_value_t = ScaleMapArg::Exp)]
    pub scale_map: ScaleMapArg,
    /// LeakyReLU slope of the conditioners (0: ReLU).
    #[arg(long, default_value_t = 0.0)]
    pub leaky: f64,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-5)]
    pub weight_decay: f64,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    pub optimizer: OptimizerArg,
    /// SGD's momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// After the warm-up: constant, or cosine decay to --min-lr over the remaining steps.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Constant)]
    pub schedule: ScheduleArg,
    /// Steps of linear warm-up from a tenth of --lr.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f64,
    /// Clip the global gradient norm to this bound.
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Residual flows: the Lipschitz bound of each spectrally normalised layer (below 1).
    #[arg(long, default_value_t = 0.9)]
    #[serde(default = "default_lipschitz")]
    pub lipschitz: f64,
    /// Residual flows: the log-det estimator in training (evaluation is exact up to 16
    /// features).
    #[arg(long, value_enum, default_value_t = LogDetArg::Roulette)]
    #[serde(default = "default_logdet")]
    pub logdet: LogDetArg,
    /// Residual flows, --logdet series: the number of terms.
    #[arg(long, default_value_t = 8)]
    #[serde(default = "default_series_terms")]
    pub series_terms: usize,
    /// Residual flows, --logdet roulette: the terms always computed.
    #[arg(long, default_value_t = 2)]
    #[serde(default = "default_exact_terms")]
    pub exact_terms: usize,
    /// Residual flows, --logdet roulette: the geometric law's p of the further terms.
    #[arg(long, default_value_t = 0.5)]
    #[serde(default = "default_geom_p")]
    pub geom_p: f64,
    /// Residual flows: compute the log-det's gradients in the forward pass and keep only
    /// them (normflows' reduce_memory): less memory, one more evaluation of each block.
    #[arg(long)]
    #[serde(default)]
    pub memory_saving: bool,
    /// Continuous flows: the ODE solver.
    #[arg(long, value_enum, default_value_t = SolverArg::Dopri5)]
    #[serde(default = "default_solver")]
    pub solver: SolverArg,
    /// Continuous flows, --solver dopri5: relative tolerance (zuko's 1e-5).
    #[arg(long, default_value_t = 1e-5)]
    #[serde(default = "default_rtol")]
    pub rtol: f64,
    /// Continuous flows, --solver dopri5: absolute tolerance (zuko's 1e-6).
    #[arg(long, default_value_t = 1e-6)]
    #[serde(default = "default_atol")]
    pub atol: f64,
    /// Continuous flows: the steps of a fixed-step solver.
    #[arg(long, default_value_t = 20)]
    #[serde(default = "default_ode_steps")]
    pub steps: usize,
    /// Continuous flows: gradients by the adjoint method (memory independent of the
    /// number of steps) instead of through the solver's operations.
    #[arg(long)]
    #[serde(default)]
    pub adjoint: bool,
    /// Continuous flows, in training: RNODE's weight of the kinetic energy
    /// integral ||f||^2 dt added to the loss (0: none; Finlay et al. use 0.01).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub kinetic_energy: f64,
    /// Continuous flows, in training: RNODE's weight of the Jacobian's squared Frobenius
    /// norm integral ||df/dz||^2 dt added to the loss (0: none; Finlay et al. use 0.01).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub jacobian_norm: f64,
    /// Continuous flows: the vector field's nonlinearity (per-flow default).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub activation: Option<ActivationArg>,
    /// Continuous flows: time enters the field as cos(k pi t) and sin(k pi t) for
    /// k = 1..N (zuko's 3); 0: as t itself (per-flow default).
    #[arg(long)]
    #[serde(default)]
    pub time_freqs: Option<usize>,
    /// Continuous flows: the trace in training (cnf: exact, ffjord: hutchinson).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub trace: Option<TraceArg>,
    /// Flow matching (cfm, otcfm): the standard deviation of the Gaussian path.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub sigma: f64,
    /// Rectified flow: rounds of reflow after the first training, each --iters iterations
    /// on pairs (z, x) that the model of the round before generates (its checkpoint is the
    /// last round's model).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub reflow: usize,
}

fn default_solver() -> SolverArg {
    SolverArg::Dopri5
}
fn default_rtol() -> f64 {
    1e-5
}
fn default_atol() -> f64 {
    1e-6
}
fn default_ode_steps() -> usize {
    20
}

fn default_lipschitz() -> f64 {
    0.9
}
fn default_logdet() -> LogDetArg {
    LogDetArg::Roulette
}
fn default_series_terms() -> usize {
    8
}
fn default_exact_terms() -> usize {
    2
}
fn default_geom_p() -> f64 {
    0.5
}

impl Cli {
    /// The command line of this process, with the per-flow defaults applied (see
    /// [`Cli::parse_from_args`]).
    pub fn parse_with_defaults() -> Self {
        match Self::parse_from_args(std::env::args_os()) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    }

    /// Parses `args` as clap does, then gives flows whose normflows examples differ from
    /// the general defaults (residual flows) their own for every option not given.
    pub fn parse_from_args<I, T>(args: I) -> std::result::Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        if let Some((_, sub)) = matches.subcommand() {
            let given = |id: &str| {
                sub.try_get_raw(id).ok().flatten().is_some()
                    && sub.value_source(id) != Some(clap::parser::ValueSource::DefaultValue)
            };
            match &mut cli.command {
                Command::Train(args) => {
                    args.model.apply_flow_defaults(&given);
                    if args.model.flow.is_flow_matching() && !given("batch") {
                        args.batch = 256;
                    }
                }
                Command::Bench { model, batch, .. } => {
                    model.apply_flow_defaults(&given);
                    if model.flow.is_flow_matching() && !given("batch") {
                        *batch = 256;
                    }
                }
                _ => {}
            }
        }
        Ok(cli)
    }
}

/// Where the data come from, and how a table becomes training data.
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataArgs {
    /// A built-in data set, as listed by `flows datasets` (default: two-moons).
    #[arg(long, conflicts_with = "data")]
    pub dataset: Option<String>,
    /// A CSV or .npy file of one row per point (CSV: header optional).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The columns of --data (or wine-quality) to use, by header name or 0-based index
    /// (default: all).
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Train, validation and test fractions of a finite data set (seeded by --seed).
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.1,0.1")]
    pub split: Vec<f64>,
    /// Integer-valued columns get uniform noise: auto (every all-integer column), none, or
    /// columns by name or 0-based index.
    #[arg(long, default_value = "auto")]
    pub dequantize: String,
    /// Do not standardise (the default fits mean and standard deviation on the training rows).
    #[arg(long)]
    pub no_standardize: bool,
    /// Use only the first N rows of a finite data set.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    #[arg(long, default_value_t = 3201)]
    pub iters: usize,
    /// Output folder (default: runs/DATASET-FLOW).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Held-out samples for the test NLL.
    #[arg(long, default_value_t = 100_000)]
    pub test_samples: usize,
    /// Iterations at which the model density is plotted.
    #[arg(long, value_delimiter = ',', default_value = "0,800,1600,2400,3200")]
    pub snapshots: Vec<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Also write the checkpoint every N iterations (atomically; 0: only at the end). A
    /// checkpoint whose parameters are not all finite is never written, so a run that
    /// diverges leaves its last good one.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: usize,
    /// Compute the validation NLL every N iterations and at the end (0: only at the end);
    /// the best model is kept in best.safetensors.
    #[arg(long, default_value_t = 200)]
    pub validate_every: usize,
    /// Stop after this many validations in a row without a new best (0: never).
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    /// Fresh samples of a built-in density to validate on.
    #[arg(long, default_value_t = 10_000)]
    pub validation_samples: usize,
    /// Continue the run in this folder from its last checkpoint, with the configuration
    /// stored there; no other flags but --quiet and --device.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Not part of the run's configuration: a run may resume on another device.
    #[arg(long, value_enum, default_value_t = Device::Cpu, help = DEVICE_HELP)]
    #[serde(skip)]
    pub device: Device,
}

fn default_bins() -> usize {
    8
}

fn default_tail_bound() -> f64 {
    5.0
}

impl From<ScaleMapArg> for ScaleMap {
    fn from(a: ScaleMapArg) -> Self {
        match a {
            ScaleMapArg::Exp => ScaleMap::Exp,
            ScaleMapArg::Sigmoid => ScaleMap::Sigmoid,
        }
    }
}

impl From<PermuteArg> for PermuteMode {
    fn from(a: PermuteArg) -> Self {
        match a {
            PermuteArg::Swap => PermuteMode::Swap,
            PermuteArg::Shuffle => PermuteMode::Shuffle,
            PermuteArg::Reverse => PermuteMode::Reverse,
        }
    }
}

impl ModelArgs {
    /// The defaults of normflows' example of `flow` for the options the command line left
    /// at their general defaults (`given` says which it did not): residual flows take 16
    /// blocks of [128, 128] at lr 3e-4.
    fn apply_flow_defaults(&mut self, given: &dyn Fn(&str) -> bool) {
        if self.flow.is_continuous() {
            if !given("transforms") {
                self.transforms = 1;
            }
            if !given("hidden") {
                self.hidden = vec![64, 64, 64];
            }
            if !given("lr") {
                self.lr = 1e-3;
            }
            // A SELU field's kinks make tight tolerances costly; at 1e-5 the log-densities of
            // torchcfm's model are within 0.008 nats of its float64 references (0.0001 in
            // the mean), where torchcfm's examples' 1e-4 is off by up to 0.04.
            if self.flow.is_flow_matching() && !given("rtol") {
                self.rtol = 1e-5;
            }
            if self.flow.is_flow_matching() && !given("atol") {
                self.atol = 1e-5;
            }
        }
        if self.flow == FlowKind::Residual {
            if !given("transforms") {
                self.transforms = 16;
            }
            if !given("hidden") {
                self.hidden = vec![128, 128];
            }
            if !given("lr") {
                self.lr = 3e-4;
            }
        }
    }

    /// The vector field of a continuous flow: --hidden, --activation, --time-freqs.
    fn cnf_layer(&self) -> Result<CnfLayerConfig> {
        let zuko = self.flow == FlowKind::Cnf;
        let activation = match self.activation {
            Some(ActivationArg::Tanh) => FieldActivation::Tanh,
            Some(ActivationArg::Elu) => FieldActivation::Elu,
            Some(ActivationArg::Selu) => FieldActivation::Selu,
            None if zuko => FieldActivation::Elu,
            None if self.flow.is_flow_matching() => FieldActivation::Selu,
            None => FieldActivation::Tanh,
        };
        let time = match self.time_freqs.unwrap_or(if zuko { 3 } else { 0 }) {
            0 => TimeInput::Linear,
            frequencies => TimeInput::Fourier { frequencies },
        };
        let hutchinson = match self.trace {
            Some(trace) => trace == TraceArg::Hutchinson,
            None => self.flow == FlowKind::Ffjord,
        };
        let regularised = self.kinetic_energy != 0.0 || self.jacobian_norm != 0.0;
        if self.flow.is_flow_matching() && (hutchinson || self.adjoint || regularised) {
            return Err(Error::Config(format!(
                "--flow {} trains without solving the ODE: --trace, --adjoint, \
                 --kinetic-energy and --jacobian-norm do not apply",
                self.flow_name()
            )));
        }
        if self.flow == FlowKind::Rectified && self.sigma != 0.0 {
            return Err(Error::Config(
                "rectified flow's paths are straight lines: --sigma must be 0".into(),
            ));
        }
        Ok(CnfLayerConfig {
            hidden: self.hidden.clone(),
            activation,
            time,
            solver: self.ode_solver()?,
            trace: if hutchinson {
                flow_layers::cnf::Trace::Hutchinson {
                    probe: flow_layers::Probe::Gaussian,
                }
            } else {
                flow_layers::cnf::Trace::Exact
            },
            adjoint: self.adjoint,
            kinetic_energy: self.kinetic_energy,
            jacobian_norm: self.jacobian_norm,
            ..CnfLayerConfig::default()
        })
    }

    /// What training minimises: flow matching for cfm, otcfm and rectified, maximum
    /// likelihood otherwise.
    pub fn objective(&self) -> Objective {
        let pairing = match self.flow {
            FlowKind::Otcfm => Pairing::OptimalTransport,
            _ => Pairing::Independent,
        };
        match self.flow.is_flow_matching() {
            true => Objective::FlowMatching(FlowMatching {
                pairing,
                sigma: self.sigma,
            }),
            false => Objective::MaximumLikelihood,
        }
    }

    /// The ODE solver of continuous flows, from --solver, --rtol, --atol and --steps.
    fn ode_solver(&self) -> Result<Solver> {
        ode_solver(self.solver, self.rtol, self.atol, self.steps)
    }

    fn build<B: Backend<Elem = f32>>(&self, backend: &B, dim: usize) -> Result<NormalizingFlow<B>> {
        let spec = match self.flow {
            FlowKind::Realnvp => RealNvpConfig {
                dim,
                transforms: self.transforms,
                hidden: self.hidden.clone(),
                context: 0,
                leaky: self.leaky,
                scale_map: self.scale_map.into(),
                permute: self.permute.into(),
                seed: self.seed,
            }
            .spec()?,
            FlowKind::Maf | FlowKind::Iaf => MafConfig {
                dim,
                transforms: self.transforms,
                hidden: self.hidden.clone(),
                context: 0,
                ordering: match self.ordering {
                    OrderingArg::Alternate => Ordering::Natural,
                    OrderingArg::Random => Ordering::Random,
                },
                leaky: self.leaky,
                iaf: matches!(self.flow, FlowKind::Iaf),
                seed: self.seed,
            }
            .spec()?,
            FlowKind::Nsf | FlowKind::NsfCoupling if self.bins == 0 => {
                return Err(Error::Config("--bins must be at least 1, got 0".into()))
            }
            FlowKind::Nsf | FlowKind::NsfCoupling
                if !(self.tail_bound > 0.0 && self.tail_bound.is_finite()) =>
            {
                return Err(Error::Config(format!(
                    "--tail-bound must be positive and finite, got {}",
                    self.tail_bound
                )))
            }
            FlowKind::Nsf | FlowKind::NsfCoupling => NsfConfig {
                dim,
                transforms: self.transforms,
                hidden: self.hidden.clone(),
                context: 0,
                spline: SplineConfig {
                    bins: self.bins,
                    tail_bound: self.tail_bound,
                    ..SplineConfig::default()
                },
                coupling: matches!(self.flow, FlowKind::NsfCoupling),
                ordering: match self.ordering {
                    OrderingArg::Alternate => Ordering::Natural,
                    OrderingArg::Random => Ordering::Random,
                },
                permute: self.permute.into(),
                leaky: self.leaky,
                seed: self.seed,
            }
            .spec()?,
            FlowKind::Glow => GlowConfig {
                dim,
                transforms: self.transforms,
                hidden: self.hidden.clone(),
                context: 0,
                leaky: self.leaky,
                seed: self.seed,
            }
            .spec()?,
            FlowKind::Planar => PlanarConfig {
                dim,
                transforms: self.transforms,
                ..PlanarConfig::default()
            }
            .spec()?,
            FlowKind::Radial => RadialConfig {
                dim,
                transforms: self.transforms,
            }
            .spec()?,
            FlowKind::Residual => ResidualConfig {
                dim,
                transforms: self.transforms,
                actnorm: true,
                layer: ResidualLayerConfig {
                    hidden: self.hidden.clone(),
                    lipschitz: self.lipschitz,
                    log_det: match self.logdet {
                        LogDetArg::Exact => LogDetEstimator::Exact,
                        LogDetArg::Series => LogDetEstimator::Series {
                            terms: self.series_terms,
                        },
                        LogDetArg::Roulette => LogDetEstimator::Roulette {
                            exact_terms: self.exact_terms,
                            distribution: TermDistribution::Geometric { p: self.geom_p },
                        },
                    },
                    memory_saving: self.memory_saving,
                    ..ResidualLayerConfig::default()
                },
            }
            .spec()?,
            _ if self.flow.is_flow_matching() && self.transforms != 1 => {
                return Err(Error::Config(format!(
                    "flow matching trains one vector field: --transforms must be 1, got {}",
                    self.transforms
                )))
            }
            FlowKind::Cnf
            | FlowKind::Ffjord
            | FlowKind::Cfm
            | FlowKind::Otcfm
            | FlowKind::Rectified => CnfConfig {
                dim,
                transforms: self.transforms,
                layer: self.cnf_layer()?,
            }
            .spec()?,
        };
        // MAF and IAF as zuko: every MADE layer at PyTorch's initialisation (their base is
        // zuko's fixed standard normal); the others as normflows, last layers at zero.
        Ok(match self.flow {
            FlowKind::Maf | FlowKind::Iaf => NormalizingFlow::new_random(backend, spec, self.seed)?,
            _ => NormalizingFlow::new(backend, spec, self.seed)?,
        })
    }

    fn train_config(&self, iters: usize, batch: usize) -> TrainConfig {
        TrainConfig {
            iters,
            batch,
            lr: self.lr,
            weight_decay: self.weight_decay,
            optimizer: match self.optimizer {
                OptimizerArg::Adam => OptimizerKind::Adam,
                OptimizerArg::Adamw => OptimizerKind::AdamW,
                OptimizerArg::Sgd => OptimizerKind::Sgd {
                    momentum: self.momentum,
                    nesterov: self.nesterov,
                },
            },
            schedule: LrSchedule {
                warmup_steps: self.warmup,
                warmup_start_factor: 0.1,
                decay: match self.schedule {
                    ScheduleArg::Constant => Decay::Constant,
                    ScheduleArg::Cosine => Decay::Cosine {
                        steps: iters.saturating_sub(self.warmup),
                        min_lr: self.min_lr,
                    },
                },
            },
            clip_grad_norm: self.clip_grad_norm,
            max_nonfinite_streak: TrainConfig::default().max_nonfinite_streak,
            validate_every: 0,
            patience: 0,
            seed: self.seed,
            objective: self.objective(),
        }
    }

    /// The optimizer flags a run cannot start with, refused before anything is written.
    fn check_optimizer_flags(&self) -> Result<()> {
        let bad =
            |flag: &str, v: f64, why: &str| Err(Error::Config(format!("{flag} {why}, got {v}")));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr", self.lr, "must be positive");
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return bad("--clip-grad-norm", c, "must be positive");
            }
        }
        if self.nesterov && !matches!(self.optimizer, OptimizerArg::Sgd) {
            return Err(Error::Config(
                "--nesterov applies to --optimizer sgd only".into(),
            ));
        }
        if self.nesterov && self.momentum <= 0.0 {
            return bad(
                "--momentum",
                self.momentum,
                "must be positive with --nesterov",
            );
        }
        Ok(())
    }

    fn flow_name(&self) -> &'static str {
        match self.flow {
            FlowKind::Realnvp => "realnvp",
            FlowKind::Maf => "maf",
            FlowKind::Iaf => "iaf",
            FlowKind::Nsf => "nsf",
            FlowKind::NsfCoupling => "nsf-coupling",
            FlowKind::Glow => "glow",
            FlowKind::Planar => "planar",
            FlowKind::Radial => "radial",
            FlowKind::Residual => "residual",
            FlowKind::Cnf => "cnf",
            FlowKind::Ffjord => "ffjord",
            FlowKind::Cfm => "cfm",
            FlowKind::Otcfm => "otcfm",
            FlowKind::Rectified => "rectified",
        }
    }
}

/// An ODE solver from --solver, --rtol, --atol and --steps.
fn ode_solver(kind: SolverArg, rtol: f64, atol: f64, steps: usize) -> Result<Solver> {
    let positive = |flag: &str, v: f64| {
        if v > 0.0 && v.is_finite() {
            Ok(v)
        } else {
            Err(Error::Config(format!("{flag} must be positive, got {v}")))
        }
    };
    if steps == 0 {
        return Err(Error::Config("--steps must be at least 1, got 0".into()));
    }
    Ok(match kind {
        SolverArg::Dopri5 => Solver::Dopri5 {
            rtol: positive("--rtol", rtol)?,
            atol: positive("--atol", atol)?,
            max_steps: 10_000,
        },
        SolverArg::Rk4 => Solver::Rk4 { steps },
        SolverArg::Midpoint => Solver::Midpoint { steps },
        SolverArg::Euler => Solver::Euler { steps },
    })
}

/// Whether `model` is worth a checkpoint: every parameter finite, and a finite
/// log-density at every `probe` point (a diverging run can have huge but finite weights).
fn good<B: Backend<Elem = f32>>(model: &NormalizingFlow<B>, probe: &Tensor<B>) -> Result<bool> {
    let finite = |t: &Tensor<B>| -> Result<bool> { Ok(t.to_vec()?.iter().all(|v| v.is_finite())) };
    for (_, _, t) in model.params().iter() {
        if !finite(t)? {
            return Ok(false);
        }
    }
    finite(&model.log_prob(probe, None)?)
}

/// The table `flows datasets` prints.
pub fn datasets_table() -> String {
    let mut out = format!(
        "{:<14} {:>4}  {:<12} {}\n",
        "name", "dim", "log-density", "entropy (nats)"
    );
    for name in flow_datasets::NAMES {
        let density = flow_datasets::by_name(name).expect("NAMES lists known densities");
        let origin = vec![0.0; density.dim()];
        let closed_form = if density.log_prob(&origin).is_some() {
            "exact"
        } else {
            "none"
        };
        let entropy = density
            .entropy()
            .map_or_else(|| "unknown".to_string(), |h| format!("{h:.4}"));
        out.push_str(&format!(
            "{:<14} {:>4}  {:<12} {entropy}\n",
            name,
            density.dim(),
            closed_form
        ));
    }
    out.push_str(&format!(
        "\n{:<14} {:>7} {:>5}  {}\n",
        "real data", "rows", "dim", "what"
    ));
    for name in flow_datasets::REAL_NAMES {
        let info = flow_datasets::real_info(name).expect("REAL_NAMES lists known sets");
        let shape = if info.has_test {
            format!("{}; a test part beside", info.description)
        } else {
            info.description.to_string()
        };
        let needs = info
            .needs
            .map_or_else(String::new, |n| format!("\n{:<29}needs: {n}", ""));
        out.push_str(&format!(
            "{:<14} {:>7} {:>5}  {shape}{needs}\n",
            name, info.rows, info.dim
        ));
    }
    out
}

/// Samples behind the target's panel when its density has no closed form: about 25 per
/// cell of the 200 x 200 grid where the mass is.
const TARGET_HISTOGRAM_SAMPLES: usize = 1_000_000;

/// Runs one `flows` command.
pub fn run(cli: Cli) -> error::Result<()> {
    match cli.command {
        Command::Train(args) => train::run_train(args),
        Command::LogProb {
            checkpoint,
            data,
            seed,
            device,
            ode,
        } => {
            let mut out = String::new();
            let log_p =
                on_backend!(device, b => log_prob_of_file(b, &checkpoint, &data, seed, &ode)?.0);
            for v in log_p {
                out.push_str(&format!("{v}\n"));
            }
            print!("{out}");
            Ok(())
        }
        Command::Sample {
            checkpoint,
            n,
            out,
            seed,
            device,
            ode,
        } => Ok(on_backend!(device, b => run_sample(b, &checkpoint, n, &out, seed, &ode))?),
        Command::Eval {
            checkpoint,
            data,
            seed,
            device,
            ode,
        } => {
            let (log_p, preprocess) =
                on_backend!(device, b => log_prob_of_file(b, &checkpoint, &data, seed, &ode)?);
            let nll: Vec<f64> = log_p.into_iter().map(|v| -v).collect();
            let (mean, se) = mean_and_se(&nll);
            println!(
                "test NLL: {mean:.4} (standard error {se:.4}, {} rows of {}){}",
                nll.len(),
                data.display(),
                train::bits(&preprocess, mean, se)
            );
            Ok(())
        }
        Command::ImportTorchcfm {
            weights,
            out,
            solver,
            rtol,
            atol,
            steps,
        } => Ok(run_import_torchcfm(
            &weights,
            &out,
            ode_solver(solver, rtol, atol, steps)?,
        )?),
        Command::ImportNormflows {
            weights,
            out,
            leaky,
            scale_map,
            no_trailing_permute,
        } => Ok(run_import(
            &weights,
            &out,
            ImportOptions {
                leaky,
                scale_map: scale_map.into(),
                trailing_swap: !no_trailing_permute,
            },
        )?),
        Command::Bench {
            data,
            model,
            iters,
            batch,
            repeats,
            device,
        } => Ok(on_backend!(device, b => run_bench(b, &data, &model, iters, batch, repeats))?),
        Command::Datasets => {
            print!("{}", datasets_table());
            Ok(())
        }
    }
}

const GRID: usize = 200;

/// The model's log-density in the data's units on the plotting grid.
fn density_grid<B: Backend<Elem = f32>>(
    model: &NormalizingFlow<B>,
    range: (f64, f64),
    preprocess: &Preprocess,
) -> Result<DensityGrid> {
    let mut points: Vec<f64> = DensityGrid::points(range, range, GRID)
        .into_iter()
        .flatten()
        .collect();
    let log_det = preprocess.map_rows(&mut points, 2);
    let x = Tensor::from_f64s(model.backend(), (GRID * GRID, 2), &points)?;
    let log_q = model.log_prob(&x, None)?.to_f64s()?;
    Ok(DensityGrid {
        x_range: range,
        y_range: range,
        n: GRID,
        log_density: log_q.iter().zip(&log_det).map(|(q, d)| q + d).collect(),
    })
}

/// log p(x) of every row of the CSV or .npy file `data` under the model in `checkpoint`, in
/// the data's units (the stored preprocessing applied, its log-determinant added).
/// A sentence saying which log-determinants of `model` are estimated rather than exact in
/// evaluation (residual flows above their exact dimension); `None` when all are exact.
pub(crate) fn estimated_note<B: Backend>(model: &NormalizingFlow<B>) -> Option<String> {
    let estimated = model.stochastic_log_dets();
    let first = estimated.first()?;
    Some(format!(
        "note: {} of the model's layers estimate their log-determinant in evaluation \
         (unbiased, not exact): {first}",
        estimated.len()
    ))
}

fn log_prob_of_file<B: Backend<Elem = f32>>(
    backend: &B,
    checkpoint: &Path,
    data: &Path,
    seed: u64,
    ode: &SolverOverride,
) -> Result<(Vec<f64>, Preprocess)> {
    let mut stored = checkpoint::load_run(backend, checkpoint)?;
    stored.model = ode.apply(stored.model)?;
    let dim = stored.model.dim();
    let trained_columns: Option<Vec<String>> = stored
        .metadata
        .get("columns")
        .and_then(|c| serde_json::from_str::<Vec<String>>(c).ok())
        // Positional names (`x0`, `x1`, ...) are not a header to select columns by.
        .filter(|names| names.iter().enumerate().any(|(j, n)| *n != format!("x{j}")));
    let (values, log_det) = read_for_model(
        data,
        dim,
        trained_columns.as_deref(),
        &stored.preprocess,
        checkpoint,
        seed,
    )?;
    let x = Tensor::from_f64s(backend, (values.len() / dim, dim), &values)?;
    if let Some(note) = estimated_note(&stored.model) {
        eprintln!("{note}");
    }
    let log_q = stored.model.log_prob(&x, None)?.to_f64s()?;
    let log_p = log_q.iter().zip(&log_det).map(|(q, d)| q + d).collect();
    Ok((log_p, stored.preprocess))
}

fn run_sample<B: Backend<Elem = f32>>(
    backend: &B,
    checkpoint: &Path,
    n: usize,
    out: &Path,
    seed: u64,
    ode: &SolverOverride,
) -> Result<()> {
    if n == 0 {
        return Err(Error::Config("-n must be at least 1".into()));
    }
    let mut stored = checkpoint::load_run(backend, checkpoint)?;
    stored.model = ode.apply(stored.model)?;
    let dim = stored.model.dim();
    let (samples, _) = stored.model.sample(n, None, &mut flow_core::rng(seed))?;
    // In the data's units and under the data's column names.
    let mut samples = samples.to_f64s()?;
    stored.preprocess.inverse_rows(&mut samples, dim);
    let header: Vec<String> = stored
        .metadata
        .get("columns")
        .and_then(|c| serde_json::from_str::<Vec<String>>(c).ok())
        .filter(|names| names.len() == dim)
        .unwrap_or_else(|| (0..dim).map(|j| format!("x{j}")).collect());
    write_csv(
        out,
        &header.iter().map(String::as_str).collect::<Vec<_>>(),
        &samples,
    )?;
    println!("wrote {n} samples to {}", out.display());
    Ok(())
}

fn run_import_torchcfm(weights: &Path, out: &Path, solver: Solver) -> Result<()> {
    let model = import_torchcfm(&Cpu::<f32>::new(), weights, solver)?;
    checkpoint::save(
        &model,
        out,
        &[("imported_from", weights.display().to_string())],
    )?;
    let hidden = model.spec().layers[0].config::<flow_layers::Cnf>()?.hidden;
    println!(
        "imported a torchcfm MLP over {} features (hidden {hidden:?}, {} parameters) into {}",
        model.dim(),
        model.params().num_trainable_scalars(),
        out.display()
    );
    Ok(())
}

fn run_import(weights: &Path, out: &Path, options: ImportOptions) -> Result<()> {
    let model = import_normflows(&Cpu::<f32>::new(), weights, options)?;
    checkpoint::save(
        &model,
        out,
        &[("imported_from", weights.display().to_string())],
    )?;
    let blocks = model.spec().layers.len();
    println!(
        "imported a normflows RealNVP over {} features ({} layers, {} parameters) into {}",
        model.dim(),
        blocks,
        model.params().num_trainable_scalars(),
        out.display()
    );
    Ok(())
}

fn run_bench<B: Backend<Elem = f32>>(
    backend: &B,
    data: &DataArgs,
    args: &ModelArgs,
    iters: usize,
    batch: usize,
    repeats: usize,
) -> Result<()> {
    let run_data = data.load(args.seed)?;
    let mut rates = Vec::new();
    for r in 0..repeats.max(1) {
        let mut model = args.build(backend, run_data.dim())?;
        let config = args.train_config(iters, batch);
        let mut no_observer = |_: &Progress<'_, B>| Ok(());
        let source = run_data.source(args.seed)?;
        let report = train_on(&mut model, source, &config, None, None, &mut no_observer)?;
        // Continuous flows: the solver's cost per step (forward and backward solves).
        let evaluations = model
            .field_evaluations()
            .filter(|&n| n > 0)
            .map(|n| {
                format!(
                    ", {:.0} field evaluations per iteration",
                    n as f64 / iters.max(1) as f64
                )
            })
            .unwrap_or_default();
        println!(
            "run {}: {} iterations in {:.3} s, {:.0} it/s (final loss {:.4}){evaluations}",
            r + 1,
            iters,
            report.seconds,
            report.iters_per_second(),
            report.losses.last().copied().unwrap_or(f64::NAN)
        );
        rates.push(report.iters_per_second());
    }
    rates.sort_by(f64::total_cmp);
    let (mean, _) = mean_and_se(&rates);
    println!(
        "flows {} on {}, batch {batch}: median {:.0} it/s (mean {:.0}) over {} runs",
        args.flow_name(),
        run_data.name(),
        rates[rates.len() / 2],
        mean,
        rates.len()
    );
    Ok(())
}
