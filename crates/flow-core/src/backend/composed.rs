//! The default bodies of the fused operations: each op's composition from primitives (a
//! `Var` method beside the op, in `crate::ops`) run on a scratch tape of the backend itself,
//! its values for the forward and its vector-Jacobian product for the backward. So a
//! backend that does not override a fused op still computes it on its own device, and the
//! op's math lives in one place: the composition (a backend's fused kernel is its own).
//!
//! Shapes were validated by the `Tensor` method that called the backend, so an error here
//! is the backend's own (a device's), passed on.

use super::Backend;
use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::tensor::Tensor;

/// The outputs of `f` on `inputs`.
pub(crate) fn evaluate<B: Backend>(
    backend: &B,
    inputs: &[&B::Storage],
    f: impl FnOnce(&[Var<B>]) -> Result<Vec<Var<B>>>,
) -> Result<Vec<B::Storage>> {
    let tape = Tape::new(backend);
    let vars: Vec<Var<B>> = inputs
        .iter()
        .map(|s| tape.constant(Tensor::from_storage(backend, (*s).clone())))
        .collect();
    Ok(f(&vars)?
        .into_iter()
        .map(|v| v.value().storage().clone())
        .collect())
}

/// The gradient of `sum_k <f(inputs)_k, grads_k>` with respect to each input: the
/// vector-Jacobian product of `f` with the outputs' gradients `grads`.
pub(crate) fn vjp<B: Backend>(
    backend: &B,
    inputs: &[&B::Storage],
    f: impl FnOnce(&[Var<B>]) -> Result<Vec<Var<B>>>,
    grads: &[&B::Storage],
) -> Result<Vec<B::Storage>> {
    let tape = Tape::new(backend);
    let vars: Vec<Var<B>> = inputs
        .iter()
        .map(|s| tape.input(Tensor::from_storage(backend, (*s).clone())))
        .collect();
    let projected = {
        let outputs = f(&vars)?;
        let mut total: Option<Var<B>> = None;
        for (out, g) in outputs.iter().zip(grads) {
            let g = tape.constant(Tensor::from_storage(backend, (*g).clone()));
            let term = out.mul(&g)?.sum_all()?;
            total = Some(match total {
                None => term,
                Some(t) => t.add(&term)?,
            });
        }
        total.expect("a fused op has an output")
    };
    let refs: Vec<&Var<B>> = vars.iter().collect();
    Ok(tape
        .grad(&projected, &refs, false)?
        .into_iter()
        .map(|v| v.value().storage().clone())
        .collect())
}
