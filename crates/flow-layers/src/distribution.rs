//! Base distributions and the target-density trait used by `reverse_kld`.

use crate::error::{Error, Result};
use flow_core::{Axis, Backend, FlowRng, ParamId, ParamStore, Tensor, Var};
use std::f64::consts::PI;

/// A (possibly unnormalised) log-density that can be differentiated, for `reverse_kld`.
pub trait Target<B: Backend> {
    fn dim(&self) -> usize;
    /// log p(x) per row (`rows x 1`).
    fn log_prob(&self, x: &Var<B>) -> Result<Var<B>>;
}

/// normflows' `DiagGaussian`: a Gaussian with learnable `loc` and `log_scale` (`1 x d`,
/// named `q0.loc` and `q0.log_scale`), starting as the standard normal.
#[derive(Clone, Debug)]
pub struct DiagGaussian {
    dim: usize,
    loc: ParamId,
    log_scale: ParamId,
}

impl DiagGaussian {
    pub fn new<B: Backend>(params: &mut ParamStore<B>, backend: &B, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Config(
                "a distribution needs at least one dimension".into(),
            ));
        }
        let loc = params.add("q0.loc", Tensor::zeros(backend, (1, dim)))?;
        let log_scale = params.add("q0.log_scale", Tensor::zeros(backend, (1, dim)))?;
        Ok(DiagGaussian {
            dim,
            loc,
            log_scale,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn constant(&self) -> f64 {
        -0.5 * self.dim as f64 * (2.0 * PI).ln()
    }

    /// log q(z) per row (`rows x 1`).
    pub fn log_prob<B: Backend>(&self, params: &ParamStore<B>, z: &Var<B>) -> Result<Var<B>> {
        let tape = z.tape();
        let loc = tape.param(params, self.loc)?;
        let log_scale = tape.param(params, self.log_scale)?;
        Ok(z.diag_normal_log_prob(&loc, &log_scale)?)
    }

    /// `n` draws on `tape` (differentiable in the parameters, reparametrised) and their
    /// log-density.
    pub fn sample<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &flow_core::Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        let eps = Tensor::randn(tape.backend(), (n, self.dim), rng);
        let loc = tape.param(params, self.loc)?;
        let log_scale = tape.param(params, self.log_scale)?;
        let eps = tape.constant(eps);
        let z = eps.mul(&log_scale.exp())?.add(&loc)?;
        let quad = eps.square().sum(Axis::Cols).mul_scalar(0.5);
        let log_p = quad
            .add(&log_scale.sum_all())?
            .neg()
            .add_scalar(self.constant());
        Ok((z, log_p))
    }
}
