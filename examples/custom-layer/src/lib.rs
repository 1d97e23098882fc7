//! A user-defined layer: an elementwise affine map `x = z * exp(log_scale) + shift`, with
//! learnable `log_scale` and `shift` per feature, written against `flow-core` and
//! `flow-layers` only. It joins a `NormalizingFlow` beside the built-in layers, and a
//! registry that holds it reloads the model from its architecture.

use flow_core::{Axis, Backend, ParamId, ParamStore, Tensor, Var};
use flow_layers::{BuildContext, Flow, Init, LayerKind, LayerSpec, Result};
use serde::{Deserialize, Serialize};

/// `x = z * exp(log_scale) + shift`, per feature.
#[derive(Clone, Debug)]
pub struct ElementwiseAffine {
    config: ElementwiseAffineConfig,
    dim: usize,
    log_scale: ParamId,
    shift: ParamId,
}

/// Its configuration: none beyond the model's width, but the type makes it a `LayerKind`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ElementwiseAffineConfig {
    /// The standard deviation of the random initialisation (`Init::Random`).
    pub init_std: f64,
}

impl ElementwiseAffine {
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        config: &ElementwiseAffineConfig,
    ) -> Result<Self> {
        let shape = (1, cx.dim);
        let draw = |cx: &mut BuildContext<'_, B>| -> Result<Tensor<B>> {
            Ok(match cx.init {
                Init::Identity => Tensor::zeros(cx.backend, shape)?,
                Init::Random => {
                    let values: Vec<f64> = Tensor::randn(cx.backend, shape, cx.rng)?
                        .to_f64s()?
                        .iter()
                        .map(|v| v * config.init_std)
                        .collect();
                    Tensor::from_f64s(cx.backend, shape, &values)?
                }
            })
        };
        let log_scale = draw(cx)?;
        let shift = draw(cx)?;
        Ok(ElementwiseAffine {
            config: config.clone(),
            dim: cx.dim,
            log_scale: cx.params.add(cx.name("log_scale"), log_scale)?,
            shift: cx.params.add(cx.name("shift"), shift)?,
        })
    }
}

impl<B: Backend> Flow<B> for ElementwiseAffine {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let tape = z.tape();
        let log_scale = tape.param(params, self.log_scale)?;
        let shift = tape.param(params, self.shift)?;
        let x = z.mul(&log_scale.exp()?)?.add(&shift)?;
        let log_det = log_scale
            .sum(Axis::All)?
            .broadcast_to((z.shape().rows, 1))?;
        Ok((x, log_det))
    }

    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let tape = x.tape();
        let log_scale = tape.param(params, self.log_scale)?;
        let shift = tape.param(params, self.shift)?;
        let z = x.sub(&shift)?.mul(&log_scale.neg()?.exp()?)?;
        let log_det = log_scale
            .sum(Axis::All)?
            .neg()?
            .broadcast_to((x.shape().rows, 1))?;
        Ok((z, log_det))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&self.config)
    }
}

impl LayerKind for ElementwiseAffine {
    const NAME: &'static str = "elementwise_affine";
    type Config = ElementwiseAffineConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(Self::new(cx, config)?))
    }

    fn num_scalars(_: &Self::Config, dim: usize, _: usize) -> Option<usize> {
        dim.checked_mul(2)
    }
}
