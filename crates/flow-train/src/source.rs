//! Where training batches come from: fresh samples of a density, or passes over a finite
//! data set. Each source can report and restore its position, so that a resumed run draws
//! exactly the batches an uninterrupted one would.

use crate::error::{Error, Result};
use flow_core::{Backend, FlowRng};
use flow_datasets::ToyDensity;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// A source of training batches, row-major, `rows x dim`.
pub trait BatchSource: Send {
    fn dim(&self) -> usize;
    /// The batch of update `step` (0-based), called with consecutive steps, and the mean
    /// log-determinant of the map from data to model inputs over its rows (0 without one),
    /// which puts the loss in the data's units.
    fn batch(&mut self, step: usize, rows: usize) -> Result<(Vec<f64>, f64)>;
    /// The position to store in a checkpoint: restored, the source continues with the batch
    /// that follows the last one drawn.
    fn position(&self) -> SourcePosition;
    fn restore(&mut self, position: &SourcePosition) -> Result<()>;
}

/// A source's position: a random stream's state, or nothing for sources whose batches are
/// a function of the step alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct SourcePosition {
    /// ChaCha8's seed (hex), stream and word position (decimal: a u128).
    pub rng: Option<(String, u64, String)>,
}

impl SourcePosition {
    fn of(rng: &FlowRng) -> Self {
        let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
        SourcePosition {
            rng: Some((seed, rng.get_stream(), rng.get_word_pos().to_string())),
        }
    }

    fn rng(&self) -> Result<FlowRng> {
        use rand::SeedableRng;
        let bad = || Error::Config(format!("unreadable random-stream state {:?}", self.rng));
        let (seed_hex, stream, word_pos) = self.rng.as_ref().ok_or_else(bad)?;
        if seed_hex.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let mut rng = FlowRng::from_seed(seed);
        rng.set_stream(*stream);
        rng.set_word_pos(word_pos.parse::<u128>().map_err(|_| bad())?);
        Ok(rng)
    }
}

/// Fresh i.i.d. samples of a density from one random stream (normflows' loop).
#[derive(Debug)]
pub struct DensitySource<'a> {
    density: &'a dyn ToyDensity,
    rng: FlowRng,
}

impl<'a> DensitySource<'a> {
    pub fn new(density: &'a dyn ToyDensity, rng: FlowRng) -> Self {
        DensitySource { density, rng }
    }
}

impl BatchSource for DensitySource<'_> {
    fn dim(&self) -> usize {
        self.density.dim()
    }

    fn batch(&mut self, _step: usize, rows: usize) -> Result<(Vec<f64>, f64)> {
        Ok((self.density.sample(rows, &mut self.rng), 0.0))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::of(&self.rng)
    }

    fn restore(&mut self, position: &SourcePosition) -> Result<()> {
        self.rng = position.rng()?;
        Ok(())
    }
}

/// Rows of a finite data set, read one by one into a batch.
pub trait Rows: Send + Sync {
    fn rows(&self) -> usize;
    fn dim(&self) -> usize;
    /// Writes row `i` into `out` (`dim` values).
    fn row_into(&self, i: usize, out: &mut [f64]);
}

impl Rows for flow_datasets::tabular::Table {
    fn rows(&self) -> usize {
        flow_datasets::tabular::Table::rows(self)
    }

    fn dim(&self) -> usize {
        self.cols()
    }

    fn row_into(&self, i: usize, out: &mut [f64]) {
        out.copy_from_slice(self.row(i));
    }
}

impl Rows for flow_datasets::images::ImageSet {
    fn rows(&self) -> usize {
        self.count()
    }

    fn dim(&self) -> usize {
        flow_datasets::images::ImageSet::dim(self)
    }

    fn row_into(&self, i: usize, out: &mut [f64]) {
        for (o, &p) in out.iter_mut().zip(self.image(i)) {
            *o = p as f64;
        }
    }
}

/// A per-batch map from data rows to model inputs (dequantisation noise, standardisation).
pub trait BatchTransform: Send + Sync {
    /// Maps the rows in place; returns the mean log-determinant of the map over them.
    fn apply(&self, batch: &mut [f64], dim: usize, rng: &mut FlowRng) -> Result<f64>;
}

/// Passes (epochs) over a finite data set, each in its own random order, consecutive
/// batches read from the concatenated passes: the batch of a step depends only on the seed
/// and the step, so nothing needs storing to resume.
pub struct EpochSource<'a> {
    data: &'a dyn Rows,
    transform: &'a dyn BatchTransform,
    seed: u64,
    order: Vec<usize>,
    epoch: Option<usize>,
}

impl<'a> EpochSource<'a> {
    pub fn new(data: &'a dyn Rows, transform: &'a dyn BatchTransform, seed: u64) -> Result<Self> {
        if data.rows() == 0 {
            return Err(Error::Config("no training rows".into()));
        }
        Ok(EpochSource {
            data,
            transform,
            seed,
            order: Vec::new(),
            epoch: None,
        })
    }

    fn order_of(&mut self, epoch: usize) -> &[usize] {
        if self.epoch != Some(epoch) {
            self.order = (0..self.data.rows()).collect();
            self.order
                .shuffle(&mut stream(self.seed, ORDER_STREAMS | epoch as u64));
            self.epoch = Some(epoch);
        }
        &self.order
    }
}

/// The stream numbers of the passes' orders and of the batches' noise: disjoint ranges.
const ORDER_STREAMS: u64 = 1 << 63;
const NOISE_STREAMS: u64 = 1 << 62;

impl std::fmt::Debug for EpochSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochSource")
            .field("rows", &self.data.rows())
            .field("dim", &self.data.dim())
            .field("seed", &self.seed)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// An independent random stream per (seed, purpose).
fn stream(seed: u64, purpose: u64) -> FlowRng {
    let mut rng = flow_core::rng(seed);
    rng.set_stream(purpose);
    rng
}

impl BatchSource for EpochSource<'_> {
    fn dim(&self) -> usize {
        self.data.dim()
    }

    fn batch(&mut self, step: usize, rows: usize) -> Result<(Vec<f64>, f64)> {
        let (n, dim) = (self.data.rows(), self.data.dim());
        let mut out = vec![0.0; rows * dim];
        let start = step * rows;
        for (r, chunk) in out.chunks_exact_mut(dim).enumerate() {
            let p = start + r;
            let i = self.order_of(p / n)[p % n];
            self.data.row_into(i, chunk);
        }
        let mut noise = stream(self.seed, NOISE_STREAMS | step as u64);
        let log_det = self.transform.apply(&mut out, dim, &mut noise)?;
        Ok((out, log_det))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::default()
    }

    fn restore(&mut self, _position: &SourcePosition) -> Result<()> {
        Ok(())
    }
}

/// Reflow's training pairs (rectified flow, Liu et al. 2023): draws `z` of the teacher's
/// base and the teacher's samples `x = forward(z)`, as rows `[z, x]` (twice the features),
/// for flow matching on given pairs ([`flow_layers::Pairing::Given`]). Retraining a field on
/// them straightens its paths, so that few integration steps sample well.
///
/// ```
/// use flow_core::{rng, Cpu};
/// use flow_layers::{CnfConfig, CnfLayerConfig, NormalizingFlow};
/// use flow_layers::ode::Solver;
/// use flow_train::source::{BatchSource, ReflowPairs};
///
/// let layer = CnfLayerConfig { hidden: vec![8], solver: Solver::Rk4 { steps: 5 }, ..Default::default() };
/// let teacher = NormalizingFlow::new_random(&Cpu::<f32>::new(), CnfConfig { dim: 2, transforms: 1, layer }.spec()?, 0)?;
/// let mut pairs = ReflowPairs::new(teacher, rng(1));
/// let (rows, _) = pairs.batch(0, 16)?;
/// assert_eq!((pairs.dim(), rows.len()), (4, 16 * 4));
/// # Ok::<(), flow_train::Error>(())
/// ```
pub struct ReflowPairs<B: Backend> {
    teacher: flow_layers::NormalizingFlow<B>,
    rng: FlowRng,
}

impl<B: Backend> std::fmt::Debug for ReflowPairs<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReflowPairs")
            .field("teacher", &self.teacher.spec())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> ReflowPairs<B> {
    pub fn new(teacher: flow_layers::NormalizingFlow<B>, rng: FlowRng) -> Self {
        ReflowPairs { teacher, rng }
    }
}

impl<B: Backend> BatchSource for ReflowPairs<B> {
    fn dim(&self) -> usize {
        2 * self.teacher.dim()
    }

    fn batch(&mut self, _step: usize, rows: usize) -> Result<(Vec<f64>, f64)> {
        let dim = self.teacher.dim();
        let tape = flow_core::Tape::inference(self.teacher.backend());
        let (z, _) =
            self.teacher
                .base()
                .sample(self.teacher.params(), &tape, rows, &mut self.rng)?;
        let z = z.value();
        // The pairs need the map alone: a continuous teacher skips the trace.
        let x = self.teacher.forward_map(&z, None)?;
        let (z, x) = (z.to_f64s()?, x.to_f64s()?);
        let mut pairs = Vec::with_capacity(2 * rows * dim);
        for (z, x) in z.chunks_exact(dim).zip(x.chunks_exact(dim)) {
            pairs.extend_from_slice(z);
            pairs.extend_from_slice(x);
        }
        Ok((pairs, 0.0))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::of(&self.rng)
    }

    fn restore(&mut self, position: &SourcePosition) -> Result<()> {
        self.rng = position.rng()?;
        Ok(())
    }
}
