//! The affine coupling block of RealNVP and Glow (normflows' `AffineCouplingBlock`): the first
//! `ceil(d/2)` features pass unchanged and condition an affine map of the rest.

use crate::error::{Error, Result};
use crate::flow::{with_context, Flow};
use crate::mlp::Mlp;
use crate::spec::LayerSpec;
use flow_core::{Backend, CouplingScale, Direction, FlowRng, ParamStore, Var};
use serde::{Deserialize, Serialize};

/// How the conditioner's raw scale output becomes a scale.
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

/// Split, affine coupling and merge in one layer. The conditioner's output interleaves
/// shift (even columns) and raw log-scale (odd columns), as normflows; the coupling itself
/// is one fused op ([`Var::affine_coupling`]) on whole rows.
#[derive(Clone, Debug)]
pub struct AffineCouplingBlock {
    dim: usize,
    context: usize,
    net: Mlp,
    scale_map: ScaleMap,
}

impl AffineCouplingBlock {
    /// A block over `dim >= 2` features whose conditioner is an MLP
    /// `ceil(dim/2) + context -> hidden... -> 2 * (dim - ceil(dim/2))`, with parameters named
    /// `{prefix}.flows.1.param_map.net.*` (normflows' names for flow `prefix`). With
    /// `context > 0` the conditioner also reads the context features (appended after the
    /// first half).
    #[allow(clippy::too_many_arguments)]
    pub fn new<B: Backend>(
        params: &mut ParamStore<B>,
        backend: &B,
        prefix: &str,
        dim: usize,
        context: usize,
        hidden: &[usize],
        leaky: f64,
        scale_map: ScaleMap,
        init_zeros: bool,
        rng: &mut FlowRng,
    ) -> Result<Self> {
        if dim < 2 {
            return Err(Error::Config(format!(
                "an affine coupling block needs at least 2 features, got {dim}"
            )));
        }
        let (d1, d2) = split(dim);
        let mut sizes = vec![d1 + context];
        sizes.extend_from_slice(hidden);
        sizes.push(2 * d2);
        let net = Mlp::new(
            params,
            backend,
            &format!("{prefix}.flows.1.param_map"),
            &sizes,
            leaky,
            init_zeros,
            rng,
        )?;
        Ok(AffineCouplingBlock {
            dim,
            context,
            net,
            scale_map,
        })
    }

    pub fn scale_map(&self) -> ScaleMap {
        self.scale_map
    }

    /// The coupling of `v` in `direction`, conditioned on its first `ceil(d/2)` features.
    fn couple<B: Backend>(
        &self,
        params: &ParamStore<B>,
        v: &Var<B>,
        context: Option<&Var<B>>,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        let (d1, _) = split(self.dim);
        let input = with_context(
            "affine coupling",
            &v.slice_cols(0, d1)?,
            context,
            self.context,
        )?;
        let conditioner_out = self.net.forward(params, &input)?;
        Ok(v.affine_coupling(&conditioner_out, self.scale_map.coupling_scale(), direction)?)
    }
}

/// normflows' `torch.chunk(2, dim=1)`: the first half rounded up, then the rest.
pub(crate) fn split(dim: usize) -> (usize, usize) {
    let d1 = dim.div_ceil(2);
    (d1, dim - d1)
}

impl<B: Backend> Flow<B> for AffineCouplingBlock {
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
        LayerSpec::AffineCoupling {
            hidden: self.net.sizes()[1..self.net.sizes().len() - 1].to_vec(),
            leaky: self.net.leaky(),
            scale_map: self.scale_map,
        }
    }
}
