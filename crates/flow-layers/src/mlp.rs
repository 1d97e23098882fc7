//! Multilayer perceptrons with normflows' semantics: Linear layers with LeakyReLU(leaky)
//! between them (leaky = 0 is ReLU), optionally zero-initialised last layer.

use crate::error::{Error, Result};
use crate::registry::BuildContext;
use flow_core::{Activation, Backend, Element, ParamId, ParamStore, Tensor, Var};

/// An MLP whose parameters are named `{prefix}.net.{2k}.weight` (`out x in`) and
/// `{prefix}.net.{2k}.bias` (`1 x out`), as in a normflows state_dict.
#[derive(Clone, Debug)]
pub struct Mlp {
    sizes: Vec<usize>,
    leaky: f64,
    layers: Vec<(ParamId, ParamId)>,
}

impl Mlp {
    /// Registers the layers of an MLP with `sizes` (input, hidden..., output) in
    /// `cx.params`, named `{cx.prefix}.{name}.net.{2k}.weight` and `.bias`. Weights and biases
    /// start as PyTorch's `nn.Linear` does, uniform on `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`;
    /// with [`crate::Init::Identity`] the last layer starts at zero.
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        name: &str,
        sizes: &[usize],
        leaky: f64,
    ) -> Result<Self> {
        let prefix = cx.name(name);
        let init_zeros = cx.init_zeros();
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::Config(format!(
                "MLP sizes {sizes:?}: need an input and an output size, all positive"
            )));
        }
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        for (k, w) in sizes.windows(2).enumerate() {
            let zero = init_zeros && k + 2 == sizes.len();
            layers.push(add_linear(cx, &prefix, k, (w[0], w[1]), zero)?);
        }
        Ok(Mlp {
            sizes: sizes.to_vec(),
            leaky,
            layers,
        })
    }

    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    pub fn leaky(&self) -> f64 {
        self.leaky
    }

    /// The network on `x`. Hidden layers apply their activation inside the linear node
    /// (one fused kernel); a negative leaky slope, which that fusion does not cover, runs as
    /// a separate op.
    pub fn forward<B: Backend>(&self, params: &ParamStore<B>, x: &Var<B>) -> Result<Var<B>> {
        let tape = x.tape();
        let act = fused_activation::<B>(self.leaky);
        let mut h = x.clone();
        for (k, &(w, b)) in self.layers.iter().enumerate() {
            let (w, b) = (tape.param(params, w)?, tape.param(params, b)?);
            let hidden = k + 1 < self.layers.len();
            h = match (hidden, act) {
                (false, _) => h.linear(&w, &b)?,
                (true, Some(act)) => h.linear_activated(&w, &b, act)?,
                (true, None) => h.linear(&w, &b)?.leaky_relu(self.leaky)?,
            };
        }
        Ok(h)
    }
}

/// Registers layer `k` of an MLP (`{prefix}.net.{2k}.weight`, `out x in`, and `.bias`),
/// initialised as PyTorch's `nn.Linear` (uniform on `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`), or
/// at zero.
pub(crate) fn add_linear<B: Backend>(
    cx: &mut BuildContext<'_, B>,
    prefix: &str,
    k: usize,
    (fan_in, fan_out): (usize, usize),
    zero: bool,
) -> Result<(ParamId, ParamId)> {
    let (backend, rng) = (cx.backend, &mut *cx.rng);
    let bound = 1.0 / (fan_in as f64).sqrt();
    let (weight, bias) = if zero {
        (
            Tensor::zeros(backend, (fan_out, fan_in))?,
            Tensor::zeros(backend, (1, fan_out))?,
        )
    } else {
        (
            Tensor::rand_uniform(backend, (fan_out, fan_in), -bound, bound, rng)?,
            Tensor::rand_uniform(backend, (1, fan_out), -bound, bound, rng)?,
        )
    };
    let net = match prefix {
        "" => "net".to_string(),
        _ => format!("{prefix}.net"),
    };
    let w = cx.params.add(format!("{net}.{}.weight", 2 * k), weight)?;
    let b = cx.params.add(format!("{net}.{}.bias", 2 * k), bias)?;
    Ok((w, b))
}

/// The activation a hidden linear node applies itself for LeakyReLU(`leaky`) (0: ReLU);
/// `None` for a negative slope, which the fused kernel does not cover.
pub(crate) fn fused_activation<B: Backend>(leaky: f64) -> Option<Activation<B::Elem>> {
    match leaky {
        0.0 => Some(Activation::Relu),
        s if s > 0.0 => Some(Activation::LeakyRelu(B::Elem::of(s))),
        _ => None,
    }
}
