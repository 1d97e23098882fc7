//! Activation normalisation (Glow, Kingma & Dhariwal 2018): a per-feature affine map with
//! data-dependent initialisation.

use crate::error::{Error, Result};
use crate::flow::{check_width, Flow};
use crate::registry::{BuildContext, LayerKind, LayerSpec, NoConfig};
use flow_core::{Axis, Backend, FlowRng, ParamId, ParamStore, Tensor, Var};

/// The smallest standard deviation [`ActNorm::initialize`] divides by.
pub const MIN_STD: f64 = 1e-6;

/// `x = z * exp(log_scale) + loc` per feature (forward), with log|det| = `sum(log_scale)`
/// for every sample. Parameters: `{prefix}.loc` and `{prefix}.log_scale`, both `1 x dim`.
///
/// Glow initialises the layer from data: call [`ActNorm::initialize`] once, on a first batch
/// of training data, before training starts, so that the layer's inverse maps that batch to
/// zero mean and unit variance per feature. (The trainer does this; building the layer
/// alone leaves it at the identity, or random with `init_zeros = false`.)
#[derive(Clone, Debug)]
pub struct ActNorm {
    dim: usize,
    loc: ParamId,
    log_scale: ParamId,
}

impl ActNorm {
    /// A layer over `cx.dim >= 1` features. With [`crate::Init::Identity`] it starts as the
    /// identity (`loc = 0`, `log_scale = 0`); otherwise both are drawn from `N(0, 0.5^2)`
    /// (for tests of the layer's algebra).
    pub fn new<B: Backend>(cx: &mut BuildContext<'_, B>) -> Result<Self> {
        let (backend, dim, init_zeros) = (cx.backend, cx.dim, cx.init_zeros());
        if dim == 0 {
            return Err(Error::Config("ActNorm needs at least 1 feature".into()));
        }
        let init = |rng: &mut FlowRng| {
            if init_zeros {
                Tensor::zeros(backend, (1, dim))
            } else {
                Tensor::randn(backend, (1, dim), rng)?.unary(flow_core::UnaryOp::MulScalar(
                    <B::Elem as flow_core::Element>::of(0.5),
                ))
            }
        };
        let loc = cx.params.add(cx.name("loc"), init(cx.rng)?)?;
        let log_scale = cx.params.add(cx.name("log_scale"), init(cx.rng)?)?;
        Ok(ActNorm {
            dim,
            loc,
            log_scale,
        })
    }

    pub fn loc(&self) -> ParamId {
        self.loc
    }

    pub fn log_scale(&self) -> ParamId {
        self.log_scale
    }

    /// Data-dependent initialisation, called once on a first batch `x` (data side, `rows x
    /// dim`) before training: sets `loc` to the batch mean and `log_scale` to the log of the
    /// batch standard deviation (population, floored at [`MIN_STD`]) of each feature, so
    /// that [`Flow::inverse`] maps `x` to zero mean and unit variance per feature.
    pub fn initialize<B: Backend>(&self, params: &mut ParamStore<B>, x: &Tensor<B>) -> Result<()> {
        let (rows, d) = (x.rows(), x.cols());
        if d != self.dim {
            return Err(Error::Width {
                what: "ActNorm::initialize",
                expected: self.dim,
                got: d,
            });
        }
        if rows == 0 {
            return Err(Error::Config(
                "ActNorm::initialize needs at least one sample".into(),
            ));
        }
        let v = x.to_f64s()?;
        if let Some(bad) = v.iter().position(|e| !e.is_finite()) {
            return Err(Error::Config(format!(
                "ActNorm initialisation: the batch reaches the layer with a non-finite value \
                 at row {}, column {}",
                bad / d,
                bad % d
            )));
        }
        let n = rows as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| (0..rows).map(|r| v[r * d + j]).sum::<f64>() / n)
            .collect();
        let log_std: Vec<f64> = (0..d)
            .map(|j| {
                let var = (0..rows)
                    .map(|r| (v[r * d + j] - mean[j]).powi(2))
                    .sum::<f64>()
                    / n;
                var.sqrt().max(MIN_STD).ln()
            })
            .collect();
        let backend = x.backend();
        params.set(self.loc, Tensor::from_f64s(backend, (1, d), &mean)?)?;
        params.set(
            self.log_scale,
            Tensor::from_f64s(backend, (1, d), &log_std)?,
        )?;
        Ok(())
    }

    /// `sum(log_scale)` as a `rows x 1` column, times `sign`.
    fn log_det<B: Backend>(log_scale: &Var<B>, rows: usize, sign: f64) -> Result<Var<B>> {
        Ok(log_scale
            .sum(Axis::All)?
            .mul_scalar(sign)?
            .broadcast_to((rows, 1))?)
    }
}

impl<B: Backend> Flow<B> for ActNorm {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("ActNorm forward", self.dim, z)?;
        let tape = z.tape();
        let loc = tape.param(params, self.loc)?;
        let log_scale = tape.param(params, self.log_scale)?;
        let x = z.mul(&log_scale.exp()?)?.add(&loc)?;
        Ok((x, Self::log_det(&log_scale, z.shape().rows, 1.0)?))
    }

    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("ActNorm inverse", self.dim, x)?;
        let tape = x.tape();
        let loc = tape.param(params, self.loc)?;
        let log_scale = tape.param(params, self.log_scale)?;
        let z = x.sub(&loc)?.mul(&log_scale.neg()?.exp()?)?;
        Ok((z, Self::log_det(&log_scale, x.shape().rows, -1.0)?))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&NoConfig {})
    }

    fn wants_data_init(&self) -> bool {
        true
    }

    fn init_from_data(
        &self,
        params: &mut ParamStore<B>,
        x: &Tensor<B>,
        _: Option<&Tensor<B>>,
    ) -> Result<()> {
        self.initialize(params, x)
    }
}

impl LayerKind for ActNorm {
    const NAME: &'static str = "act_norm";
    type Config = NoConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        let _ = config;
        Ok(Box::new(Self::new(cx)?))
    }

    fn num_scalars(_: &Self::Config, dim: usize, _: usize) -> Option<usize> {
        dim.checked_mul(2)
    }
}
