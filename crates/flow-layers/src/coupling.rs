//! The affine coupling block of RealNVP and Glow (normflows' `AffineCouplingBlock`): the first
//! `ceil(d/2)` features pass unchanged and condition an affine map of the rest.

use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::mlp::Mlp;
use crate::spec::LayerSpec;
use flow_core::{Backend, FlowRng, ParamStore, Var};
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

/// Split, affine coupling and merge in one layer. The conditioner's output interleaves
/// shift (even columns) and raw log-scale (odd columns), as normflows.
#[derive(Clone, Debug)]
pub struct AffineCouplingBlock {
    dim: usize,
    net: Mlp,
    scale_map: ScaleMap,
    shift_cols: Vec<usize>,
    scale_cols: Vec<usize>,
}

impl AffineCouplingBlock {
    /// A block over `dim >= 2` features whose conditioner is an MLP
    /// `ceil(dim/2) -> hidden... -> 2 * (dim - ceil(dim/2))`, with parameters named
    /// `{prefix}.flows.1.param_map.net.*` (normflows' names for flow `prefix`).
    #[allow(clippy::too_many_arguments)]
    pub fn new<B: Backend>(
        params: &mut ParamStore<B>,
        backend: &B,
        prefix: &str,
        dim: usize,
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
        let mut sizes = vec![d1];
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
            net,
            scale_map,
            shift_cols: (0..d2).map(|j| 2 * j).collect(),
            scale_cols: (0..d2).map(|j| 2 * j + 1).collect(),
        })
    }

    pub fn scale_map(&self) -> ScaleMap {
        self.scale_map
    }

    /// Conditioning half, transformed half, shift and raw scale parameter.
    fn parts<B: Backend>(&self, params: &ParamStore<B>, v: &Var<B>) -> Result<[Var<B>; 4]> {
        let (d1, d2) = split(self.dim);
        let cond = v.slice_cols(0, d1)?;
        let rest = v.slice_cols(d1, d2)?;
        let out = self.net.forward(params, &cond)?;
        let shift = out.gather_cols(&self.shift_cols)?;
        let raw = out.gather_cols(&self.scale_cols)?;
        Ok([cond, rest, shift, raw])
    }

    /// log sigmoid(raw + 2), stably: -softplus(-(raw + 2)).
    fn log_sigmoid_scale<B: Backend>(raw: &Var<B>) -> Var<B> {
        raw.add_scalar(2.0).neg().softplus().neg()
    }
}

/// normflows' `torch.chunk(2, dim=1)`: the first half rounded up, then the rest.
fn split(dim: usize) -> (usize, usize) {
    let d1 = dim.div_ceil(2);
    (d1, dim - d1)
}

impl<B: Backend> Flow<B> for AffineCouplingBlock {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(&self, params: &ParamStore<B>, z: &Var<B>) -> Result<(Var<B>, Var<B>)> {
        let [cond, z2, shift, raw] = self.parts(params, z)?;
        let (x2, log_det) = match self.scale_map {
            ScaleMap::Exp => z2.affine_coupling(&shift, &raw)?,
            ScaleMap::Sigmoid => {
                // x2 = z2 / scale + shift = z2 * exp(-log scale) + shift
                let log_scale = Self::log_sigmoid_scale(&raw);
                z2.affine_coupling(&shift, &log_scale.neg())?
            }
        };
        Ok((Var::concat_cols(&[&cond, &x2])?, log_det))
    }

    fn inverse(&self, params: &ParamStore<B>, x: &Var<B>) -> Result<(Var<B>, Var<B>)> {
        let [cond, x2, shift, raw] = self.parts(params, x)?;
        // z2 = (x2 - shift) * exp(-s), log-det -sum(s), with s the forward log-scale:
        // the raw output (RealNVP), or -log sigmoid(raw + 2) (Glow).
        let forward_log_scale = match self.scale_map {
            ScaleMap::Exp => raw,
            ScaleMap::Sigmoid => Self::log_sigmoid_scale(&raw).neg(),
        };
        let (z2, sums) = x2.affine_coupling_inverse(&shift, &forward_log_scale)?;
        Ok((Var::concat_cols(&[&cond, &z2])?, sums.neg()))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::AffineCoupling {
            hidden: self.net.sizes()[1..self.net.sizes().len() - 1].to_vec(),
            leaky: self.net.leaky(),
            scale_map: self.scale_map,
        }
    }
}
