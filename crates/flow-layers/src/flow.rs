//! The `Flow` trait: one invertible layer.

use crate::error::Result;
use crate::registry::LayerSpec;
use flow_core::{Backend, ParamStore, Tensor, Var};

/// An invertible map between `dim`-dimensional spaces, written over the backend.
///
/// Parameters live in the model's [`ParamStore`]; a layer holds only their handles, and
/// binds them into the tape of its input variable on each call.
pub trait Flow<B: Backend>: std::fmt::Debug + Send + Sync {
    /// Number of features the layer maps.
    fn dim(&self) -> usize;

    /// `z -> x`, with log|det dx/dz| per sample (`rows x 1`). `context` (`rows x c`) is the
    /// conditioning input of a conditional flow; layers without a conditioner ignore it.
    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)>;

    /// `x -> z`, with log|det dz/dx| per sample (`rows x 1`), given the same `context`.
    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)>;

    /// The number of context features the layer's conditioner reads (0: unconditional).
    fn context_dim(&self) -> usize {
        0
    }

    /// The layer's kind and configuration, for checkpoints: [`LayerSpec::of`] of its
    /// [`crate::LayerKind`].
    fn spec(&self) -> LayerSpec;

    /// Whether the layer initialises its parameters from data ([`Flow::init_from_data`]),
    /// as Glow's ActNorm does.
    fn wants_data_init(&self) -> bool {
        false
    }

    /// Work after each optimizer step, with the parameters as the step left them: a
    /// spectrally normalised layer runs its power iterations here (normflows'
    /// `update_lipschitz`), a stochastic layer commits the draws it made, in buffers of
    /// `params` that checkpoints save. The trainer calls it
    /// ([`crate::NormalizingFlow::after_step`]); a hand-written training loop should too.
    /// The default does nothing.
    fn after_step(&self, params: &mut ParamStore<B>) -> Result<()> {
        let _ = params;
        Ok(())
    }

    /// The vector field `dx/dt` of a continuous layer at `x` and `times` (one per row of
    /// `x`, or one for all; `t = 0` is the latent side, `t = 1` the data side), on `x`'s
    /// tape: what flow matching regresses. `None`, the default, for a layer that is not
    /// continuous.
    fn velocity(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        times: &[f64],
        context: Option<&Var<B>>,
    ) -> Result<Option<Var<B>>> {
        let _ = (params, x, times, context);
        Ok(None)
    }

    /// The forward map alone, `x = f(z)` without its log-determinant, where a layer can
    /// skip that work (a CNF integrates its field without the trace: a third of the cost
    /// with the exact trace in 2 dimensions). The default runs [`Flow::forward`] and drops
    /// the log-det.
    fn forward_map(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<Var<B>> {
        Ok(self.forward(params, z, context)?.0)
    }

    /// The vector-field evaluations a continuous layer has made so far, over every solve
    /// (training, evaluation, sampling, the adjoint method's backward pass): the cost
    /// measure of neural ODEs (NFE), which grows as a field learns sharper dynamics. `None`,
    /// the default, for a layer that solves no ODE.
    fn field_evaluations(&self) -> Option<u64> {
        None
    }

    /// How the layer computes its log-determinant when the parameters are frozen (an
    /// evaluation on a [`flow_core::Tape::inference`] tape, as `log_prob` of tensors runs):
    /// [`LogDetKind::Exact`] for every closed-form layer; a residual layer above its exact
    /// dimension states its estimator.
    fn evaluation_log_det(&self) -> LogDetKind {
        LogDetKind::Exact
    }

    /// Data-dependent initialisation, for layers whose [`Flow::wants_data_init`] is true:
    /// sets the layer's parameters from `x`, a first batch as it reaches the layer from the
    /// data side (`rows x dim`, finite), and its context. Called by
    /// [`crate::NormalizingFlow::init_from_data`] once, before training; the default does nothing.
    fn init_from_data(
        &self,
        params: &mut ParamStore<B>,
        x: &Tensor<B>,
        context: Option<&Tensor<B>>,
    ) -> Result<()> {
        let _ = (params, x, context);
        Ok(())
    }
}

/// How a layer's log-determinant is computed ([`Flow::evaluation_log_det`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDetKind {
    /// Exactly (closed form, or from the full Jacobian).
    Exact,
    /// By an unbiased stochastic estimator, described here (for reports).
    Stochastic(String),
}

/// An error naming `what` unless `v` has `expected` columns.
pub fn check_width<B: Backend>(what: &'static str, expected: usize, v: &Var<B>) -> Result<()> {
    let got = v.shape().cols;
    if got != expected {
        return Err(crate::error::Error::Width {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// A `rows x 1` zero log-determinant on `like`'s tape, for volume-preserving layers.
pub fn zero_log_det<B: Backend>(like: &Var<B>) -> Result<Var<B>> {
    let rows = like.shape().rows;
    Ok(like
        .tape()
        .constant(flow_core::Tensor::zeros(like.tape().backend(), (rows, 1))?))
}

/// The conditioner's input: `v`, with `context` appended as further columns when the layer
/// takes `expected` context features. Errors name a missing or wrongly sized context.
pub fn with_context<B: flow_core::Backend>(
    what: &'static str,
    v: &Var<B>,
    context: Option<&Var<B>>,
    expected: usize,
) -> Result<Var<B>> {
    match (context, expected) {
        (_, 0) => Ok(v.clone()),
        (Some(c), n) if c.shape().cols == n && c.shape().rows == v.shape().rows => {
            Ok(Var::concat_cols(&[v, c])?)
        }
        (c, n) => Err(crate::error::Error::Context {
            what,
            expected: n,
            got: c.map(|c| (c.shape().rows, c.shape().cols)),
            rows: v.shape().rows,
        }),
    }
}

/// A `rows x` (sum of the widths) tensor of constant column blocks, `runs` of `(width,
/// value)` from left to right, filled on the backend: nothing is uploaded. Blocks of width 0
/// are skipped.
pub(crate) fn constant_columns<B: Backend>(
    backend: &B,
    rows: usize,
    runs: &[(usize, f64)],
) -> Result<Tensor<B>> {
    use flow_core::Element;
    let mut blocks = runs
        .iter()
        .filter(|&&(width, _)| width > 0)
        .map(|&(width, value)| Tensor::full(backend, (rows, width), B::Elem::of(value)))
        .collect::<flow_core::Result<Vec<_>>>()?;
    Ok(match blocks.len() {
        1 => blocks.pop().expect("one block"),
        _ => Tensor::concat_cols(&blocks.iter().collect::<Vec<_>>())?,
    })
}
