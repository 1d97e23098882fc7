//! The rational-quadratic spline coupling layer of neural spline flows (Durkan et al. 2019,
//! nflows' `PiecewiseRationalQuadraticCouplingTransform`): the first `ceil(d/2)` features pass
//! unchanged and, with the context, condition a spline of each of the others.

use crate::coupling::split;
use crate::error::{Error, Result};
use crate::flow::{with_context, Flow};
use crate::mlp::Mlp;
use crate::spec::LayerSpec;
use crate::spline::{self, SplineConfig};
use flow_core::{Backend, Direction, FlowRng, ParamStore, Var};

/// Splits, splines the second part with parameters from an MLP of the first, and merges.
/// The MLP (`ceil(d/2) + context -> hidden... -> (d - ceil(d/2)) (3K - 1)`) is named
/// `{prefix}.net.*`; feature `i` of the second part reads its columns `i (3K - 1) ..`.
#[derive(Clone, Debug)]
pub struct SplineCoupling {
    dim: usize,
    context: usize,
    net: Mlp,
    spline: SplineConfig,
}

impl SplineCoupling {
    /// A coupling over `dim >= 2` features. With `init_zeros` the MLP's last layer starts at
    /// zero, so the layer starts as the identity.
    #[allow(clippy::too_many_arguments)]
    pub fn new<B: Backend>(
        params: &mut ParamStore<B>,
        backend: &B,
        prefix: &str,
        dim: usize,
        context: usize,
        hidden: &[usize],
        leaky: f64,
        spline: SplineConfig,
        init_zeros: bool,
        rng: &mut FlowRng,
    ) -> Result<Self> {
        if dim < 2 {
            return Err(Error::Config(format!(
                "a spline coupling needs at least 2 features, got {dim}"
            )));
        }
        spline.validate()?;
        let (d1, d2) = split(dim);
        let mut sizes = vec![d1 + context];
        sizes.extend_from_slice(hidden);
        sizes.push(d2 * spline.params_per_feature());
        let net = Mlp::new(
            params,
            backend,
            &format!("{prefix}.spline"),
            &sizes,
            leaky,
            init_zeros,
            rng,
        )?;
        Ok(SplineCoupling {
            dim,
            context,
            net,
            spline,
        })
    }

    pub fn spline(&self) -> &SplineConfig {
        &self.spline
    }

    fn couple<B: Backend>(
        &self,
        params: &ParamStore<B>,
        v: &Var<B>,
        context: Option<&Var<B>>,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        if v.shape().cols != self.dim {
            return Err(Error::Width {
                what: "spline coupling",
                expected: self.dim,
                got: v.shape().cols,
            });
        }
        let (d1, d2) = split(self.dim);
        let v1 = v.slice_cols(0, d1)?;
        let input = with_context("spline coupling", &v1, context, self.context)?;
        let spline_params = self.net.forward(params, &input)?;
        let (y2, log_det) = spline::rational_quadratic(
            &v.slice_cols(d1, d2)?,
            &spline_params,
            &self.spline,
            direction,
        )?;
        Ok((Var::concat_cols(&[&v1, &y2])?, log_det))
    }
}

impl<B: Backend> Flow<B> for SplineCoupling {
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
        LayerSpec::SplineCoupling {
            hidden: self.net.sizes()[1..self.net.sizes().len() - 1].to_vec(),
            leaky: self.net.leaky(),
            spline: self.spline,
        }
    }
}
