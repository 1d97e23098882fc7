//! MADE (Germain et al. 2015): an MLP whose weights are masked so that output `i` depends
//! only on the inputs that come before input `i` in an ordering, the building block of
//! autoregressive flows.

use crate::error::{Error, Result};
use crate::mlp::{add_linear, fused_activation};
use crate::registry::BuildContext;
use flow_core::{Backend, FlowRng, ParamId, ParamStore, Resident, Shape, Var};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// The order in which MADE's inputs come: output `i` may depend on input `j` only when `j`
/// comes before `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// `x_0, x_1, ...`
    Natural,
    /// `x_{D-1}, ..., x_0`
    Reversed,
    /// A random permutation (drawn from the layer's seed and stored with it).
    Random,
}

impl Ordering {
    /// The ordering of autoregressive layer `k` in a stack that starts with `self`: natural
    /// and reversed in turn (zuko's and nflows' default), a random one for every layer.
    pub fn of_layer(self, k: usize) -> Ordering {
        match (self, k % 2) {
            (Ordering::Natural, 1) => Ordering::Reversed,
            (Ordering::Reversed, 1) => Ordering::Natural,
            (o, _) => o,
        }
    }

    /// The degree of each input (its 1-based position in the ordering).
    pub fn degrees(self, dim: usize, rng: &mut FlowRng) -> Vec<usize> {
        match self {
            Ordering::Natural => (1..=dim).collect(),
            Ordering::Reversed => (1..=dim).rev().collect(),
            Ordering::Random => {
                let mut d: Vec<usize> = (1..=dim).collect();
                d.shuffle(rng);
                d
            }
        }
    }
}

/// A masked MLP over `dim` inputs (plus `context` inputs every output may see), with
/// `outputs_per_input` outputs per input laid out in blocks: outputs `k * dim .. (k + 1) *
/// dim` are the `k`-th output of each input (or, `feature_major`, outputs `i P .. (i + 1) P`
/// are those of input `i`). Parameters are named
/// `{prefix}.net.{2k}.weight` (`out x in`) and `.bias`, as [`crate::Mlp`]'s.
///
/// Degrees follow the MADE paper and nflows: input `j` has degree `degrees[j]` (1..=D),
/// hidden unit `k` of any layer degree `k mod (D - 1) + 1` (with context: `k mod D`, so that
/// some units see the context alone), context inputs degree 0; a hidden weight connects
/// degrees `d_in <= d_out`, an output weight `d_in < d_out`.
#[derive(Clone, Debug)]
pub struct Made {
    dim: usize,
    context: usize,
    outputs_per_input: usize,
    feature_major: bool,
    hidden: Vec<usize>,
    degrees: Vec<usize>,
    leaky: f64,
    layers: Vec<(ParamId, ParamId)>,
    /// Per layer: the `out x in` 0/1 mask, row-major like the weight.
    masks: Vec<Resident<(Shape, Vec<f64>)>>,
}

/// What [`Made::new`] needs.
#[derive(Clone, Debug, PartialEq)]
pub struct MadeConfig {
    pub dim: usize,
    pub hidden: Vec<usize>,
    /// The input degrees, a permutation of `1..=dim` (see [`Ordering::degrees`]).
    pub degrees: Vec<usize>,
    pub outputs_per_input: usize,
    /// Outputs grouped by input (`i P + k`) rather than by output index (`k D + i`).
    pub feature_major: bool,
    pub context: usize,
    pub leaky: f64,
}

impl Made {
    /// Registers a MADE in `cx.params` under `{cx.prefix}.{name}`; with
    /// [`crate::Init::Identity`] the last layer starts at zero.
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        name: &str,
        config: &MadeConfig,
    ) -> Result<Self> {
        let (prefix, init_zeros) = (cx.name(name), cx.init_zeros());
        let MadeConfig {
            dim,
            ref hidden,
            ref degrees,
            outputs_per_input,
            feature_major,
            context,
            leaky,
        } = *config;
        let mut sorted = degrees.clone();
        sorted.sort_unstable();
        if dim == 0
            || outputs_per_input == 0
            || hidden.contains(&0)
            || sorted != (1..=dim).collect::<Vec<_>>()
        {
            return Err(Error::Config(format!(
                "MADE over {dim} inputs: the degrees {degrees:?} must be a permutation of \
                 1..={dim}, hidden sizes {hidden:?} and outputs per input \
                 {outputs_per_input} positive"
            )));
        }
        // Degrees of every layer's units: inputs (context first, degree 0), hidden, outputs.
        let mut layer_degrees = vec![[vec![0; context], degrees.clone()].concat()];
        // nflows: `arange(h) % max(1, D - 1) + min(1, D - 1)`, cycling through 1..=D-1.
        // With context, degrees cycle through 0..=D-1: units of degree 0 see the context
        // alone, which is how it reaches the first input's outputs too.
        let (cycle, offset) = if context > 0 {
            (dim, 0)
        } else {
            (dim.saturating_sub(1).max(1), dim.saturating_sub(1).min(1))
        };
        for &h in hidden {
            layer_degrees.push((0..h).map(|k| k % cycle + offset).collect());
        }
        let out_degrees: Vec<usize> = if feature_major {
            degrees
                .iter()
                .flat_map(|&d| std::iter::repeat_n(d, outputs_per_input))
                .collect()
        } else {
            (0..outputs_per_input)
                .flat_map(|_| degrees.iter().copied())
                .collect()
        };
        layer_degrees.push(out_degrees);
        let mut layers = Vec::new();
        let mut masks = Vec::new();
        let last = layer_degrees.len() - 2;
        for (k, pair) in layer_degrees.windows(2).enumerate() {
            let (d_in, d_out) = (&pair[0], &pair[1]);
            let (fan_in, fan_out) = (d_in.len(), d_out.len());
            let mask: Vec<f64> = d_out
                .iter()
                .flat_map(|&o| {
                    d_in.iter().map(move |&i| {
                        let connected = if k == last { i < o } else { i <= o };
                        if connected {
                            1.0
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            let zero = k == last && init_zeros;
            let (w, b) = add_linear(cx, &prefix, k, (fan_in, fan_out), zero)?;
            layers.push((w, b));
            masks.push(Resident::new((Shape::new(fan_out, fan_in), mask)));
        }
        Ok(Made {
            dim,
            context,
            outputs_per_input,
            feature_major,
            hidden: hidden.clone(),
            degrees: degrees.clone(),
            leaky,
            layers,
            masks,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn hidden(&self) -> &[usize] {
        &self.hidden
    }

    /// The input degrees (1-based positions in the ordering).
    pub fn degrees(&self) -> &[usize] {
        &self.degrees
    }

    pub fn context(&self) -> usize {
        self.context
    }

    pub fn leaky(&self) -> f64 {
        self.leaky
    }

    pub fn outputs_per_input(&self) -> usize {
        self.outputs_per_input
    }

    /// Whether outputs are grouped by input (`i P + k`) rather than by index (`k D + i`).
    pub fn feature_major(&self) -> bool {
        self.feature_major
    }

    /// The network on `x` (`rows x dim`), with `context` (`rows x context`) when the MADE
    /// has context inputs.
    pub fn forward<B: Backend>(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        context: Option<&Var<B>>,
    ) -> Result<Var<B>> {
        let tape = x.tape();
        let mut h = match (context, self.context) {
            (_, 0) => x.clone(),
            (Some(c), n) if c.shape().cols == n && c.shape().rows == x.shape().rows => {
                Var::concat_cols(&[c, x])?
            }
            (c, n) => {
                return Err(Error::Context {
                    what: "MADE",
                    expected: n,
                    got: c.map(|c| (c.shape().rows, c.shape().cols)),
                    rows: x.shape().rows,
                })
            }
        };
        let act = fused_activation::<B>(self.leaky);
        for (k, (&(w, b), mask)) in self.layers.iter().zip(&self.masks).enumerate() {
            let mask = tape.constant(mask.tensor(tape.backend())?);
            let w = tape.param(params, w)?.mul(&mask)?;
            let b = tape.param(params, b)?;
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
