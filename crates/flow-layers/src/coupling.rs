//! Coupling layers (RealNVP, Glow, the coupling neural spline flow): the first `ceil(d/2)`
//! features pass unchanged and, with the context, condition an elementwise transform of the
//! rest. One layer, [`Coupling`], over any [`CouplingTransformer`], as zuko's
//! `GeneralCouplingTransform` over any univariate transform; two stored kinds, which keep
//! their parameter names: [`AffineCouplingBlock`] (normflows' `AffineCouplingBlock`) and
//! [`SplineCoupling`] (nflows' `PiecewiseRationalQuadraticCouplingTransform`).

use crate::error::{Error, Result};
use crate::flow::{check_width, with_context, Flow};
use crate::mlp::Mlp;
use crate::registry::{conditioner_scalars, conditioner_sizes, BuildContext, LayerKind, LayerSpec};
use crate::spline::{self, SplineConfig};
use flow_core::{Backend, CouplingScale, Direction, ParamStore, Var};
use serde::{Deserialize, Serialize};

/// How an affine coupling's raw scale output becomes a scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMap {
    /// RealNVP: `x2 = z2 * exp(s) + shift`.
    #[default]
    Exp,
    /// Glow (normflows' `sigmoid`): `x2 = z2 / sigmoid(s + 2) + shift`.
    Sigmoid,
}

impl ScaleMap {
    fn coupling_scale(self) -> CouplingScale {
        match self {
            ScaleMap::Exp => CouplingScale::Exp,
            ScaleMap::Sigmoid => CouplingScale::Sigmoid,
        }
    }
}

/// The elementwise transform a [`Coupling`] applies to its second part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CouplingTransformer {
    /// `x2 = z2 * scale + shift`, the conditioner's output interleaving shift (even columns)
    /// and raw scale (odd columns) as normflows; one fused op on whole rows
    /// ([`Var::affine_coupling`]).
    Affine(ScaleMap),
    /// A monotonic rational-quadratic spline per feature, feature `i`'s parameters in
    /// columns `i (3K - 1) ..` of the conditioner's output.
    RationalQuadratic(SplineConfig),
}

impl CouplingTransformer {
    /// Conditioner outputs per transformed feature.
    pub fn params_per_feature(&self) -> usize {
        match self {
            CouplingTransformer::Affine(_) => 2,
            CouplingTransformer::RationalQuadratic(spline) => spline.params_per_feature(),
        }
    }
}

/// Split, transform and merge in one layer: the first `ceil(d/2)` features condition an MLP
/// (`ceil(d/2) + context -> hidden... -> (d - ceil(d/2)) P`) whose output parametrises the
/// transformer of the others.
#[derive(Clone, Debug)]
pub struct Coupling {
    dim: usize,
    context: usize,
    net: Mlp,
    transformer: CouplingTransformer,
}

impl Coupling {
    /// A coupling over `cx.dim >= 2` features with `transformer`, its conditioner's
    /// parameters named `{prefix}.{net_name}.net.*`. With [`crate::Init::Identity`] the
    /// conditioner's last layer starts at zero, so the layer starts as the identity.
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        net_name: &str,
        hidden: &[usize],
        leaky: f64,
        transformer: CouplingTransformer,
    ) -> Result<Self> {
        let (dim, context) = (cx.dim, cx.context);
        if dim < 2 {
            return Err(Error::Config(format!(
                "a coupling layer needs at least 2 features, got {dim}"
            )));
        }
        if let CouplingTransformer::RationalQuadratic(spline) = &transformer {
            spline.validate()?;
        }
        let (d1, d2) = split(dim);
        let sizes = conditioner_sizes(
            d1,
            context,
            hidden,
            d2.checked_mul(transformer.params_per_feature()),
        )
        .ok_or_else(|| Error::Config("conditioner sizes overflow".into()))?;
        let net = Mlp::new(cx, net_name, &sizes, leaky)?;
        Ok(Coupling {
            dim,
            context,
            net,
            transformer,
        })
    }

    pub fn transformer(&self) -> &CouplingTransformer {
        &self.transformer
    }

    /// The conditioner's hidden layer sizes.
    pub fn hidden(&self) -> &[usize] {
        &self.net.sizes()[1..self.net.sizes().len() - 1]
    }

    /// The conditioner's LeakyReLU slope.
    pub fn leaky(&self) -> f64 {
        self.net.leaky()
    }

    /// The coupling of `v` in `direction`, conditioned on its first `ceil(d/2)` features.
    fn couple<B: Backend>(
        &self,
        params: &ParamStore<B>,
        v: &Var<B>,
        context: Option<&Var<B>>,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("coupling", self.dim, v)?;
        let (d1, d2) = split(self.dim);
        let v1 = v.slice_cols(0, d1)?;
        let input = with_context("coupling", &v1, context, self.context)?;
        let out = self.net.forward(params, &input)?;
        match &self.transformer {
            CouplingTransformer::Affine(scale) => {
                Ok(v.affine_coupling(&out, scale.coupling_scale(), direction)?)
            }
            CouplingTransformer::RationalQuadratic(spline) => {
                let (y2, log_det) =
                    spline::rational_quadratic(&v.slice_cols(d1, d2)?, &out, spline, direction)?;
                Ok((Var::concat_cols(&[&v1, &y2])?, log_det))
            }
        }
    }
}

/// normflows' `torch.chunk(2, dim=1)`: the first half rounded up, then the rest.
pub(crate) fn split(dim: usize) -> (usize, usize) {
    let d1 = dim.div_ceil(2);
    (d1, dim - d1)
}

impl<B: Backend> Flow<B> for Coupling {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        self.couple(params, z, context, Direction::Forward)
    }

    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        self.couple(params, x, context, Direction::Inverse)
    }

    fn context_dim(&self) -> usize {
        self.context
    }

    fn spec(&self) -> LayerSpec {
        let (hidden, leaky) = (self.hidden().to_vec(), self.leaky());
        match self.transformer {
            CouplingTransformer::Affine(scale_map) => {
                LayerSpec::of::<AffineCouplingBlock>(&AffineCouplingConfig {
                    hidden,
                    leaky,
                    scale_map,
                })
            }
            CouplingTransformer::RationalQuadratic(spline) => {
                LayerSpec::of::<SplineCoupling>(&SplineCouplingConfig {
                    hidden,
                    leaky,
                    spline,
                })
            }
        }
    }
}

/// The affine coupling block of RealNVP and Glow (stored as `"affine_coupling"`): a
/// [`Coupling`] with an affine transformer, its conditioner named as normflows names it
/// (`{prefix}.flows.1.param_map.net.*`).
#[derive(Clone, Copy, Debug)]
pub struct AffineCouplingBlock;

/// An [`AffineCouplingBlock`]'s architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffineCouplingConfig {
    /// Hidden layer sizes of the conditioner MLP.
    pub hidden: Vec<usize>,
    /// Slope of the conditioner's LeakyReLU (0: ReLU, normflows' default).
    pub leaky: f64,
    pub scale_map: ScaleMap,
}

impl AffineCouplingBlock {
    /// The block over `cx.dim >= 2` features, reading `cx.context` more.
    #[allow(clippy::new_ret_no_self)] // a kind's constructor gives the layer it names
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        config: &AffineCouplingConfig,
    ) -> Result<Coupling> {
        let transformer = CouplingTransformer::Affine(config.scale_map);
        Coupling::new(
            cx,
            "flows.1.param_map",
            &config.hidden,
            config.leaky,
            transformer,
        )
    }
}

impl LayerKind for AffineCouplingBlock {
    const NAME: &'static str = "affine_coupling";
    type Config = AffineCouplingConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(Self::new(cx, config)?))
    }

    fn num_scalars(config: &Self::Config, dim: usize, context: usize) -> Option<usize> {
        coupling_scalars(&config.hidden, dim, context, Some(2))
    }
}

/// The rational-quadratic spline coupling of neural spline flows (stored as
/// `"spline_coupling"`): a [`Coupling`] with a spline transformer, its conditioner named
/// `{prefix}.spline.net.*`.
#[derive(Clone, Copy, Debug)]
pub struct SplineCoupling;

/// A [`SplineCoupling`]'s architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplineCouplingConfig {
    /// Hidden layer sizes of the conditioner MLP.
    pub hidden: Vec<usize>,
    /// Slope of the conditioner's LeakyReLU (0: ReLU).
    pub leaky: f64,
    pub spline: SplineConfig,
}

impl SplineCoupling {
    /// The layer over `cx.dim >= 2` features, reading `cx.context` more.
    #[allow(clippy::new_ret_no_self)] // a kind's constructor gives the layer it names
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        config: &SplineCouplingConfig,
    ) -> Result<Coupling> {
        let transformer = CouplingTransformer::RationalQuadratic(config.spline);
        Coupling::new(cx, "spline", &config.hidden, config.leaky, transformer)
    }
}

impl LayerKind for SplineCoupling {
    const NAME: &'static str = "spline_coupling";
    type Config = SplineCouplingConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(Self::new(cx, config)?))
    }

    fn num_scalars(config: &Self::Config, dim: usize, context: usize) -> Option<usize> {
        let per_feature = config.spline.checked_params_per_feature();
        coupling_scalars(&config.hidden, dim, context, per_feature)
    }
}

/// A coupling conditioner's weights and biases.
fn coupling_scalars(
    hidden: &[usize],
    dim: usize,
    context: usize,
    per_feature: Option<usize>,
) -> Option<usize> {
    let (d1, d2) = split(dim);
    conditioner_scalars(d1, context, hidden, d2.checked_mul(per_feature?))
}
