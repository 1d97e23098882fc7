//! Networks with a bounded Lipschitz constant, the residual branch of invertible ResNets:
//! LipSwish activations and spectrally normalised linear layers, as normflows'
//! `LipschitzMLP`.

use crate::error::{Error, Result};
use crate::registry::BuildContext;
use crate::spectral_norm::SpectralLinear;
use flow_core::{Backend, ParamId, ParamStore, Tensor, Var};

/// LipSwish's scale: `x sigmoid(beta x)` has slope at most about 1.1 whatever `beta >= 0`,
/// so dividing by 1.1 makes it 1-Lipschitz (Chen et al. 2019).
pub const LIPSWISH_SCALE: f64 = 1.1;

/// The initial raw `beta` of a LipSwish (normflows' 0.5; the slope used is `softplus(beta)`).
pub const LIPSWISH_BETA: f64 = 0.5;

/// `LipSwish(x) = x sigmoid(softplus(beta) x) / 1.1`, elementwise, with `beta` a `1 x 1`
/// learnable variable; 1-Lipschitz for every `beta`.
///
/// ```
/// use flow_core::{Cpu, Tape, Tensor};
/// let cpu = Cpu::<f64>::new();
/// let tape = Tape::new(&cpu);
/// let x = tape.constant(Tensor::from_f64s(&cpu, (1, 2), &[0.0, 2.0])?);
/// let beta = tape.constant(Tensor::from_f64s(&cpu, (1, 1), &[0.5])?);
/// let y = flow_layers::lipschitz_mlp::lip_swish(&x, &beta)?.value().to_f64s()?;
/// let s = (1.0f64 + 0.5f64.exp()).ln(); // softplus(0.5)
/// assert_eq!(y[0], 0.0);
/// assert!((y[1] - 2.0 / (1.0 + (-2.0 * s).exp()) / 1.1).abs() < 1e-12);
/// # Ok::<(), flow_layers::Error>(())
/// ```
pub fn lip_swish<B: Backend>(x: &Var<B>, beta: &Var<B>) -> Result<Var<B>> {
    let slope = beta.softplus()?;
    Ok(x.mul(&x.mul(&slope)?.sigmoid()?)?
        .mul_scalar(1.0 / LIPSWISH_SCALE)?)
}

/// normflows' `LipschitzMLP(channels, lipschitz_const)`: for each consecutive pair of
/// `sizes`, a LipSwish then a [`SpectralLinear`] of Lipschitz bound `coeff` (the LipSwish
/// comes first, on the input too). The whole network is `coeff^layers`-Lipschitz, below 1
/// for `coeff < 1`. The last layer's weight starts 1000 times smaller with `zero_init`
/// (normflows' `init_zeros`), so that a residual block starts close to the identity.
///
/// Names follow normflows' `nn.Sequential`: `{prefix}.net.{2k}.beta` (`1 x 1`) for the
/// activations and `{prefix}.net.{2k+1}.weight`, `.bias`, `.u`, `.v` for the linear layers.
#[derive(Clone, Debug)]
pub struct LipschitzMlp {
    sizes: Vec<usize>,
    betas: Vec<ParamId>,
    layers: Vec<SpectralLinear>,
}

impl LipschitzMlp {
    /// Registers the network under `{cx.prefix}.{name}` (`cx.prefix` alone for an empty
    /// `name`).
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        name: &str,
        sizes: &[usize],
        coeff: f64,
        zero_init: bool,
    ) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::Config(format!(
                "Lipschitz MLP sizes {sizes:?}: need an input and an output size, all positive"
            )));
        }
        let prefix = if name.is_empty() {
            cx.prefix.clone()
        } else {
            cx.name(name)
        };
        let sub = |k: usize| {
            if prefix.is_empty() {
                format!("net.{k}")
            } else {
                format!("{prefix}.net.{k}")
            }
        };
        let mut betas = Vec::new();
        let mut layers = Vec::new();
        let n = sizes.len() - 1;
        for (k, pair) in sizes.windows(2).enumerate() {
            let beta = Tensor::from_f64s(cx.backend, (1, 1), &[LIPSWISH_BETA])?;
            betas.push(cx.params.add(format!("{}.beta", sub(2 * k)), beta)?);
            let saved = std::mem::replace(&mut cx.prefix, sub(2 * k + 1));
            let layer =
                SpectralLinear::new(cx, "", (pair[0], pair[1]), coeff, zero_init && k + 1 == n);
            cx.prefix = saved;
            layers.push(layer?);
        }
        Ok(LipschitzMlp {
            sizes: sizes.to_vec(),
            betas,
            layers,
        })
    }

    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    pub fn layers(&self) -> &[SpectralLinear] {
        &self.layers
    }

    /// Every trained parameter: each activation's `beta`, each layer's weight and bias.
    pub fn param_ids(&self) -> Vec<ParamId> {
        let mut ids = self.betas.clone();
        for layer in &self.layers {
            ids.push(layer.weight());
            ids.push(layer.bias());
        }
        ids
    }

    /// The activations' raw `beta` parameters, in order.
    pub fn betas(&self) -> &[ParamId] {
        &self.betas
    }

    /// The network on `x` (`rows x sizes[0]`).
    ///
    /// Computed with each LipSwish's slope folded into the weights around it, so that an
    /// activation costs one fused map of the batch: with `s_i = softplus(beta_i)`,
    /// `LipSwish_i(h) = swish(s_i h) / (1.1 s_i)`, so the pre-activations `t_i = s_i h_(i-1)`
    /// follow `t_(i+1) = swish(t_i) (s_(i+1) W_i / (1.1 s_i))^T + s_(i+1) b_i`, scalings of
    /// the (small) weights instead of passes over the (large) batch. Its gradients, to any
    /// order, are fused maps of swish's derivatives ([`flow_core::UnaryOp::Swish`]).
    pub fn forward<B: Backend>(&self, params: &ParamStore<B>, x: &Var<B>) -> Result<Var<B>> {
        let tape = x.tape();
        let slopes: Vec<Var<B>> = self
            .betas
            .iter()
            .map(|&b| Ok(tape.param(params, b)?.softplus()?))
            .collect::<Result<_>>()?;
        let n = self.layers.len();
        let mut t = x.mul(&slopes[0])?;
        for (i, layer) in self.layers.iter().enumerate() {
            let w = layer.normalised_weight(params, tape)?;
            let b = tape.param(params, layer.bias())?;
            let inv = slopes[i].mul_scalar(LIPSWISH_SCALE)?;
            let a = t.swish()?;
            t = if i + 1 < n {
                let next = &slopes[i + 1];
                let scale = next.div(&inv)?;
                a.linear(&w.mul(&scale)?, &b.mul(next)?)?
            } else {
                a.linear(&w.div(&inv)?, &b)?
            };
        }
        Ok(t)
    }

    /// The network written plainly, LipSwish then linear layer by layer: the reference
    /// [`LipschitzMlp::forward`] is tested against.
    pub fn forward_unfolded<B: Backend>(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
    ) -> Result<Var<B>> {
        let tape = x.tape();
        let mut h = x.clone();
        for (layer, &beta) in self.layers.iter().zip(&self.betas) {
            h = lip_swish(&h, &tape.param(params, beta)?)?;
            h = layer.forward(params, &h)?;
        }
        Ok(h)
    }

    /// `iterations` power iterations on every layer (normflows' `update_lipschitz`).
    pub fn power_iterate<B: Backend>(
        &self,
        params: &mut ParamStore<B>,
        iterations: usize,
    ) -> Result<()> {
        for layer in &self.layers {
            layer.power_iterate(params, iterations)?;
        }
        Ok(())
    }
}
