//! Autoregressive layers: MAF (Papamakarios et al. 2017), whose density direction is one pass
//! of a MADE, IAF (Kingma et al. 2016), its inverse, whose sampling direction is, and the
//! autoregressive neural spline flow (Durkan et al. 2019), MAF with a spline transformer.

use crate::error::Result;
use crate::flow::Flow;
use crate::made::{Made, MadeConfig};
use crate::registry::{conditioner_scalars, BuildContext, LayerKind, LayerSpec};
use crate::spline::{self, SplineConfig};
use flow_core::{Axis, Backend, Direction, ParamStore, Tensor, Var};
use serde::{Deserialize, Serialize};

/// An autoregressive layer: `y_i = tau(u_i; h_i(u_<i))` feature by feature, with the
/// parameters `h_i` of an elementwise [`Transformer`] computed by a MADE from the features
/// before `i` in its ordering (and from the context, if any). The one-pass map runs from data
/// to latent for MAF (density in one pass, sampling in D passes) and from latent to data for
/// IAF; with a rational-quadratic transformer it is the autoregressive neural spline flow
/// (zuko's and nflows' `NSF`).
#[derive(Clone, Debug)]
pub struct MaskedAutoregressive {
    made: Made,
    /// IAF: the one-pass map is `forward` (latent to data).
    inverse_autoregressive: bool,
    transformer: Transformer,
}

/// The elementwise map of an autoregressive layer, monotonic in its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transformer {
    /// `y = u * s + t` with zuko's soft-clamped scale, `log s = a / (1 + |a| / ln 1000)`,
    /// which keeps it in (1e-3, 1e3) and is 1 at `a = 0` (a zero-initialised MADE starts as
    /// the identity).
    Affine,
    /// A monotonic rational-quadratic spline ([`crate::spline`]), identity at zero
    /// parameters.
    RationalQuadratic(SplineConfig),
}

impl Transformer {
    /// Unconstrained parameters per feature.
    pub fn params_per_feature(&self) -> usize {
        match self {
            Transformer::Affine => 2,
            Transformer::RationalQuadratic(spline) => spline.params_per_feature(),
        }
    }
}

/// The MADE of an autoregressive layer and its direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoregressiveConfig {
    /// Hidden layer sizes of the MADE.
    pub hidden: Vec<usize>,
    /// The input degrees (the ordering; see [`crate::made::Ordering::degrees`]).
    pub degrees: Vec<usize>,
    /// Slope of the MADE's LeakyReLU (0: ReLU).
    pub leaky: f64,
    /// IAF: sampling in one pass, density in D.
    pub iaf: bool,
}

/// An autoregressive spline layer's architecture: the MADE's and the spline's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplineAutoregressiveConfig {
    #[serde(flatten)]
    pub made: AutoregressiveConfig,
    pub spline: SplineConfig,
}

/// MAF's (or IAF's) layer kind, `"masked_affine_autoregressive"`: a
/// [`MaskedAutoregressive`] with an affine transformer.
#[derive(Clone, Copy, Debug)]
pub struct MaskedAffineAutoregressive;

/// The autoregressive neural spline flow's layer kind, `"masked_spline_autoregressive"`: a
/// [`MaskedAutoregressive`] with a rational-quadratic transformer.
#[derive(Clone, Copy, Debug)]
pub struct MaskedSplineAutoregressive;

impl LayerKind for MaskedAffineAutoregressive {
    const NAME: &'static str = "masked_affine_autoregressive";
    type Config = AutoregressiveConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(MaskedAutoregressive::new(
            cx,
            config,
            Transformer::Affine,
        )?))
    }

    fn num_scalars(config: &Self::Config, dim: usize, context: usize) -> Option<usize> {
        conditioner_scalars(dim, context, &config.hidden, dim.checked_mul(2))
    }
}

impl LayerKind for MaskedSplineAutoregressive {
    const NAME: &'static str = "masked_spline_autoregressive";
    type Config = SplineAutoregressiveConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        let transformer = Transformer::RationalQuadratic(config.spline);
        Ok(Box::new(MaskedAutoregressive::new(
            cx,
            &config.made,
            transformer,
        )?))
    }

    fn num_scalars(config: &Self::Config, dim: usize, context: usize) -> Option<usize> {
        let outputs = dim.checked_mul(config.spline.checked_params_per_feature()?);
        conditioner_scalars(dim, context, &config.made.hidden, outputs)
    }
}

/// `ln 1000`: the bound of `|log s|`.
const LOG_SCALE_BOUND: f64 = 6.907_755_278_982_137;

impl MaskedAutoregressive {
    /// A layer over `cx.dim` features (reading `cx.context` more) whose MADE has
    /// `config.hidden` layers and input `config.degrees`; `config.iaf` makes it an IAF.
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        config: &AutoregressiveConfig,
        transformer: Transformer,
    ) -> Result<Self> {
        if let Transformer::RationalQuadratic(spline) = &transformer {
            spline.validate()?;
        }
        let made = Made::new(
            cx,
            "made",
            &MadeConfig {
                dim: cx.dim,
                hidden: config.hidden.clone(),
                degrees: config.degrees.clone(),
                outputs_per_input: transformer.params_per_feature(),
                // A spline reads each feature's parameters side by side.
                feature_major: matches!(transformer, Transformer::RationalQuadratic(_)),
                context: cx.context,
                leaky: config.leaky,
            },
        )?;
        Ok(MaskedAutoregressive {
            made,
            inverse_autoregressive: config.iaf,
            transformer,
        })
    }

    /// The MADE's architecture and the direction.
    pub fn config(&self) -> AutoregressiveConfig {
        AutoregressiveConfig {
            hidden: self.made.hidden().to_vec(),
            degrees: self.made.degrees().to_vec(),
            leaky: self.made.leaky(),
            iaf: self.inverse_autoregressive,
        }
    }

    pub fn made(&self) -> &Made {
        &self.made
    }

    pub fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    /// The transformer applied to `v` in `direction`, with parameters from the MADE's
    /// output on `u` (blocks `k * dim + i`: parameter `k` of feature `i`); the summed
    /// log-det per row.
    fn transform<B: Backend>(
        &self,
        params: &ParamStore<B>,
        u: &Var<B>,
        v: &Var<B>,
        context: Option<&Var<B>>,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        let d = self.made.dim();
        let out = self.made.forward(params, u, context)?;
        match &self.transformer {
            Transformer::Affine => {
                let shift = out.slice_cols(0, d)?;
                let raw = out.slice_cols(d, d)?;
                let log_scale = raw.div(
                    &raw.abs()?
                        .mul_scalar(1.0 / LOG_SCALE_BOUND)?
                        .add_scalar(1.0)?,
                )?;
                Ok(match direction {
                    Direction::Forward => (
                        v.mul(&log_scale.exp()?)?.add(&shift)?,
                        log_scale.sum(Axis::Cols)?,
                    ),
                    Direction::Inverse => (
                        v.sub(&shift)?.mul(&log_scale.neg()?.exp()?)?,
                        log_scale.sum(Axis::Cols)?.neg()?,
                    ),
                })
            }
            // The MADE is feature-major: feature i's parameters in columns i P .. (i + 1) P.
            Transformer::RationalQuadratic(spline) => {
                spline::rational_quadratic(v, &out, spline, direction)
            }
        }
    }

    /// `y = tau(u; h(u))` in one pass, and its log-det.
    fn one_pass<B: Backend>(
        &self,
        params: &ParamStore<B>,
        u: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        self.transform(params, u, u, context, Direction::Forward)
    }

    /// The `u` with `tau(u; h(u)) = y`, by D passes (each fixes the next feature in the
    /// ordering; the result is exact, the gradient that of the exact inverse), and the
    /// inverse's log-det.
    fn solve<B: Backend>(
        &self,
        params: &ParamStore<B>,
        y: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let tape = y.tape();
        let mut u = tape.constant(Tensor::zeros(tape.backend(), y.shape())?);
        let mut log_det = None;
        for _ in 0..self.made.dim() {
            // Pass k reads features of degree < k, exact since pass k - 1: so the last
            // pass's parameters are those of the solution.
            let (next, ld) = self.transform(params, &u, y, context, Direction::Inverse)?;
            u = next;
            log_det = Some(ld);
        }
        let log_det = log_det.expect("a MADE has at least one input");
        Ok((u, log_det))
    }
}

impl<B: Backend> Flow<B> for MaskedAutoregressive {
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
        match self.transformer {
            Transformer::Affine => LayerSpec::of::<MaskedAffineAutoregressive>(&self.config()),
            Transformer::RationalQuadratic(spline) => {
                LayerSpec::of::<MaskedSplineAutoregressive>(&SplineAutoregressiveConfig {
                    made: self.config(),
                    spline,
                })
            }
        }
    }
}
