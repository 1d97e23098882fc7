//! The `Flow` trait: one invertible layer.

use crate::error::Result;
use crate::spec::LayerSpec;
use flow_core::{Backend, ParamStore, Var};

/// An invertible map between `dim`-dimensional spaces, written over the backend.
///
/// Parameters live in the model's [`ParamStore`]; a layer holds only their handles, and
/// binds them into the tape of its input variable on each call.
pub trait Flow<B: Backend>: std::fmt::Debug + Send + Sync {
    /// Number of features the layer maps.
    fn dim(&self) -> usize;

    /// `z -> x`, with log|det dx/dz| per sample (`rows x 1`).
    fn forward(&self, params: &ParamStore<B>, z: &Var<B>) -> Result<(Var<B>, Var<B>)>;

    /// `x -> z`, with log|det dz/dx| per sample (`rows x 1`).
    fn inverse(&self, params: &ParamStore<B>, x: &Var<B>) -> Result<(Var<B>, Var<B>)>;

    /// The layer's architecture, for checkpoints.
    fn spec(&self) -> LayerSpec;
}

/// A `rows x 1` zero log-determinant on `like`'s tape, for volume-preserving layers.
pub(crate) fn zero_log_det<B: Backend>(like: &Var<B>) -> Var<B> {
    let rows = like.shape().rows;
    like.tape()
        .constant(flow_core::Tensor::zeros(like.tape().backend(), (rows, 1)))
}
