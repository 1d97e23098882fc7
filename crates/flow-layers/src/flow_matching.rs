//! Flow matching: training a continuous flow's vector field by regression on a probability
//! path, without solving the ODE (Lipman et al. 2023; Tong et al. 2024, torchcfm; Liu et
//! al. 2023, rectified flow).
//!
//! A batch of data `x1` is paired with draws `x0` of the model's base, a time `t ~ U[0, 1]`
//! is drawn per pair, and the field at `x_t = t x1 + (1 - t) x0 + sigma eps` is regressed on
//! `u_t = x1 - x0`: the loss is the mean of `(v(x_t, t) - u_t)^2` over rows and features, as
//! torchcfm's. The trained model is an ordinary [`NormalizingFlow`] of one continuous layer
//! ([`crate::Cnf`]), so sampling integrates the field and `log_prob` is the exact
//! continuous change of variables, like any other flow's.
//!
//! ```
//! use flow_core::{rng, Cpu, Tape, Tensor};
//! use flow_layers::cnf::{FieldActivation, CnfConfig, CnfLayerConfig};
//! use flow_layers::flow_matching::{FlowMatching, Pairing};
//! use flow_layers::ode::Solver;
//! use flow_layers::NormalizingFlow;
//!
//! let layer = CnfLayerConfig {
//!     hidden: vec![16],
//!     activation: FieldActivation::Selu,
//!     solver: Solver::Rk4 { steps: 10 },
//!     ..Default::default()
//! };
//! let spec = CnfConfig { dim: 2, transforms: 1, layer }.spec()?;
//! let cpu = Cpu::<f64>::new();
//! let model = NormalizingFlow::new_random(&cpu, spec, 0)?;
//! let matcher = FlowMatching { pairing: Pairing::OptimalTransport, sigma: 0.0 };
//! let tape = Tape::new(&cpu);
//! let x1 = tape.constant(Tensor::randn(&cpu, (64, 2), &mut rng(1))?);
//! let loss = matcher.loss(&model, &x1, None, &mut rng(2))?;
//! let grads = tape.backward(&loss)?; // then an optimizer step, as for `forward_kld`
//! assert!(loss.scalar_value()? > 0.0);
//! # Ok::<(), flow_layers::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::model::NormalizingFlow;
use flow_core::{Backend, FlowRng, Tensor, Var};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How data and base draws are paired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Independently (I-CFM; with `sigma = 0`, rectified flow's first round).
    #[default]
    Independent,
    /// By the exact optimal-transport plan between the two batches under squared Euclidean
    /// cost (OT-CFM). For equal batches with uniform weights the plan is a permutation,
    /// solved exactly by [`crate::assignment::solve`]; each pair is used once (torchcfm
    /// resamples pairs from the plan with replacement, which repeats some and drops others).
    OptimalTransport,
    /// Pairs given with the data: each row is `[x0, x1]` (twice the model's features), as
    /// reflow's pairs of base draws and what a trained model maps them to (rectified flow's
    /// later rounds; `flow_train::source::ReflowPairs` makes them).
    Given,
}

/// A flow-matching objective (torchcfm's `ConditionalFlowMatcher(sigma)` and
/// `ExactOptimalTransportConditionalFlowMatcher(sigma)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowMatching {
    pub pairing: Pairing,
    /// The standard deviation of the Gaussian path around the straight line (0: none).
    pub sigma: f64,
}

/// One batch of the regression: inputs, times and targets, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchingBatch {
    /// `x_t`, `rows x dim`, row-major.
    pub xt: Vec<f64>,
    /// `t`, one per row.
    pub times: Vec<f64>,
    /// `u_t = x1 - x0`, `rows x dim`.
    pub target: Vec<f64>,
}

impl FlowMatching {
    /// The regression batch for data `x1` and base draws `x0` (both `rows x dim`,
    /// row-major; `x0` is re-paired here under [`Pairing::OptimalTransport`], taken as paired
    /// otherwise), drawing the times and the path noise from `rng`.
    pub fn batch(
        &self,
        x0: &[f64],
        x1: &[f64],
        dim: usize,
        rng: &mut FlowRng,
    ) -> Result<MatchingBatch> {
        if !(self.sigma >= 0.0 && self.sigma.is_finite()) {
            return Err(Error::Config(format!(
                "flow matching's sigma must be finite and nonnegative, got {}",
                self.sigma
            )));
        }
        if dim == 0 || x0.len() != x1.len() || x1.len() % dim != 0 {
            return Err(Error::Config(format!(
                "flow matching pairs equal batches of {dim} features: got {} and {} values",
                x0.len(),
                x1.len()
            )));
        }
        let rows = x1.len() / dim;
        let paired;
        let x0 = match self.pairing {
            Pairing::Independent | Pairing::Given => x0,
            Pairing::OptimalTransport => {
                paired = pair_by_transport(x0, x1, dim)?;
                &paired
            }
        };
        let times: Vec<f64> = (0..rows).map(|_| rng.random::<f64>()).collect();
        let noise = if self.sigma > 0.0 {
            flow_core::random::standard_normals(rows * dim, rng)
        } else {
            Vec::new()
        };
        let mut xt = Vec::with_capacity(rows * dim);
        let mut target = Vec::with_capacity(rows * dim);
        for (r, &t) in times.iter().enumerate() {
            for c in 0..dim {
                let k = r * dim + c;
                let mean = t * x1[k] + (1.0 - t) * x0[k];
                xt.push(match noise.get(k) {
                    Some(eps) => mean + self.sigma * eps,
                    None => mean,
                });
                target.push(x1[k] - x0[k]);
            }
        }
        Ok(MatchingBatch { xt, times, target })
    }

    /// The flow-matching loss of `model` on data `x1` (a batch on the tape the loss is
    /// recorded on; `context` has a row per row of `x1` for a conditional field): base draws
    /// from `model`'s base, paired by [`FlowMatching::pairing`] (or, for [`Pairing::Given`],
    /// the first half of each row of `x1`), times and path noise from `rng`. The model must
    /// be one continuous layer (its [`crate::Flow::velocity`]).
    pub fn loss<B: Backend>(
        &self,
        model: &NormalizingFlow<B>,
        x1: &Var<B>,
        context: Option<&Var<B>>,
        rng: &mut FlowRng,
    ) -> Result<Var<B>> {
        let (rows, dim) = (x1.shape().rows, model.dim());
        let tape = x1.tape();
        let data = x1.value().to_f64s()?;
        let (x0, data) = if self.pairing == Pairing::Given {
            crate::flow::check_width("flow matching pairs [x0, x1]", 2 * dim, x1)?;
            let (mut x0, mut x1) = (
                Vec::with_capacity(rows * dim),
                Vec::with_capacity(rows * dim),
            );
            for row in data.chunks_exact(2 * dim) {
                x0.extend_from_slice(&row[..dim]);
                x1.extend_from_slice(&row[dim..]);
            }
            (x0, x1)
        } else {
            crate::flow::check_width("flow matching data", dim, x1)?;
            let (x0, _) = model.base().sample(model.params(), tape, rows, rng)?;
            (x0.value().to_f64s()?, data)
        };
        let batch = self.batch(&x0, &data, dim, rng)?;
        let backend = tape.backend();
        let xt = tape.constant(Tensor::from_f64s(backend, (rows, dim), &batch.xt)?);
        let target = tape.constant(Tensor::from_f64s(backend, (rows, dim), &batch.target)?);
        let v = model.velocity(&xt, &batch.times, context)?;
        Ok(v.sub(&target)?.square()?.mean_all()?)
    }
}

/// `x0`'s rows reordered so that row `j` is the one the optimal plan sends to `x1`'s row
/// `j` (squared Euclidean cost).
pub fn pair_by_transport(x0: &[f64], x1: &[f64], dim: usize) -> Result<Vec<f64>> {
    let rows = x1.len() / dim;
    let cost = crate::assignment::squared_distances(x0, x1, dim);
    let plan = crate::assignment::solve(&cost, rows)?;
    let mut paired = vec![0.0; x0.len()];
    for (i, &j) in plan.column_of_row.iter().enumerate() {
        paired[j * dim..(j + 1) * dim].copy_from_slice(&x0[i * dim..(i + 1) * dim]);
    }
    Ok(paired)
}
