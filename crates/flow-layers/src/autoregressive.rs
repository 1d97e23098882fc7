//! Affine autoregressive layers: MAF (Papamakarios et al. 2017), whose density direction is
//! one pass of a MADE, and IAF (Kingma et al. 2016), its inverse, whose sampling direction is.

use crate::error::Result;
use crate::flow::Flow;
use crate::made::{Made, MadeConfig};
use crate::spec::LayerSpec;
use flow_core::{Axis, Backend, FlowRng, ParamStore, Tensor, Var};

/// `y = u * s(u) + t(u)` feature by feature, with `t_i` and `s_i` functions of the features
/// before `i` in the MADE's ordering. The scale is zuko's soft-clamped exponential,
/// `log s = a / (1 + |a| / ln 1000)`, which keeps it in (1e-3, 1e3) and is 1 at `a = 0`
/// (a zero-initialised MADE starts as the identity). The one-pass map runs from data to
/// latent for MAF (density in one pass, sampling in D passes) and from latent to data for IAF.
#[derive(Clone, Debug)]
pub struct MaskedAffineAutoregressive {
    made: Made,
    /// IAF: the one-pass map is `forward` (latent to data).
    inverse_autoregressive: bool,
}

/// `ln 1000`: the bound of `|log s|`.
const LOG_SCALE_BOUND: f64 = 6.907_755_278_982_137;

impl MaskedAffineAutoregressive {
    /// A layer over `dim` features whose MADE has `hidden` layers and input `degrees`
    /// (see [`crate::made::Ordering::degrees`]); `iaf` makes it an IAF.
    #[allow(clippy::too_many_arguments)]
    pub fn new<B: Backend>(
        params: &mut ParamStore<B>,
        backend: &B,
        prefix: &str,
        dim: usize,
        context: usize,
        hidden: &[usize],
        degrees: Vec<usize>,
        leaky: f64,
        iaf: bool,
        init_zeros: bool,
        rng: &mut FlowRng,
    ) -> Result<Self> {
        let made = Made::new(
            params,
            backend,
            &format!("{prefix}.made"),
            &MadeConfig {
                dim,
                hidden: hidden.to_vec(),
                degrees,
                outputs_per_input: 2,
                context,
                leaky,
            },
            init_zeros,
            rng,
        )?;
        Ok(MaskedAffineAutoregressive {
            made,
            inverse_autoregressive: iaf,
        })
    }

    pub fn made(&self) -> &Made {
        &self.made
    }

    /// `(t(u), log s(u))`.
    fn shift_and_log_scale<B: Backend>(
        &self,
        params: &ParamStore<B>,
        u: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let d = self.made.dim();
        let out = self.made.forward(params, u, context)?;
        let shift = out.slice_cols(0, d)?;
        let raw = out.slice_cols(d, d)?;
        let log_scale = raw.div(&raw.abs().mul_scalar(1.0 / LOG_SCALE_BOUND).add_scalar(1.0))?;
        Ok((shift, log_scale))
    }

    /// `y = u * s(u) + t(u)` and `sum log s(u)` per row.
    fn one_pass<B: Backend>(
        &self,
        params: &ParamStore<B>,
        u: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let (shift, log_scale) = self.shift_and_log_scale(params, u, context)?;
        let y = u.mul(&log_scale.exp())?.add(&shift)?;
        Ok((y, log_scale.sum(Axis::Cols)))
    }

    /// The `u` with `u * s(u) + t(u) = y`, by D passes (each fixes the next feature in the
    /// ordering; the result is exact, the gradient that of the exact inverse), and
    /// `-sum log s(u)` per row.
    fn solve<B: Backend>(
        &self,
        params: &ParamStore<B>,
        y: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let tape = y.tape();
        let mut u = tape.constant(Tensor::zeros(tape.backend(), y.shape()));
        let mut log_scale = None;
        for _ in 0..self.made.dim() {
            // Pass k reads features of degree < k, exact since pass k - 1: so the last
            // pass's shift and scale are those of the solution.
            let (shift, ls) = self.shift_and_log_scale(params, &u, context)?;
            u = y.sub(&shift)?.mul(&ls.neg().exp())?;
            log_scale = Some(ls);
        }
        let log_scale = log_scale.expect("a MADE has at least one input");
        Ok((u, log_scale.sum(Axis::Cols).neg()))
    }
}

impl<B: Backend> Flow<B> for MaskedAffineAutoregressive {
    fn dim(&self) -> usize {
        self.made.dim()
    }

    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        if self.inverse_autoregressive {
            self.one_pass(params, z, context)
        } else {
            self.solve(params, z, context)
        }
    }

    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        if self.inverse_autoregressive {
            self.solve(params, x, context)
        } else {
            self.one_pass(params, x, context)
        }
    }

    fn context_dim(&self) -> usize {
        self.made.context()
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::MaskedAffineAutoregressive {
            hidden: self.made.hidden().to_vec(),
            degrees: self.made.degrees().to_vec(),
            leaky: self.made.leaky(),
            iaf: self.inverse_autoregressive,
        }
    }
}
