//! Feature permutations (normflows' `Permute`): volume preserving, log-det zero.

use crate::error::{Error, Result};
use crate::flow::{zero_log_det, Flow};
use crate::registry::{BuildContext, LayerKind, LayerSpec};
use flow_core::{Backend, ParamStore, Resident, Var};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// How a [`Permute`] layer reorders features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermuteMode {
    /// Moves the second half (the last `d - d/2` features) in front of the first.
    Swap,
    /// A random permutation drawn from a seed.
    Shuffle,
    /// Reverses the order.
    Reverse,
}

/// A [`Permute`] layer's architecture (stored as `"permute"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermuteConfig {
    pub mode: PermuteMode,
    /// Output column `j` of `forward` is input column `perm[j]`.
    pub perm: Vec<usize>,
}

/// A fixed permutation: output column `j` of `forward` is input column `perm[j]`.
#[derive(Clone, Debug)]
pub struct Permute {
    perm: Resident<Vec<usize>>,
    inverse: Resident<Vec<usize>>,
    mode: PermuteMode,
}

impl Permute {
    /// The permutation of `dim` features for `mode`; `rng` is used by `Shuffle` only.
    pub fn new(dim: usize, mode: PermuteMode, rng: &mut flow_core::FlowRng) -> Result<Self> {
        let perm: Vec<usize> = match mode {
            // normflows: cat([z[:, d/2:], z[:, :d/2]])
            PermuteMode::Swap => (dim / 2..dim).chain(0..dim / 2).collect(),
            PermuteMode::Reverse => (0..dim).rev().collect(),
            PermuteMode::Shuffle => {
                let mut p: Vec<usize> = (0..dim).collect();
                p.shuffle(rng);
                p
            }
        };
        Permute::from_perm(perm, mode)
    }

    /// A layer with an explicit permutation (as imported from a normflows `perm` buffer).
    pub fn from_perm(perm: Vec<usize>, mode: PermuteMode) -> Result<Self> {
        let mut inverse = vec![usize::MAX; perm.len()];
        for (j, &p) in perm.iter().enumerate() {
            if p >= perm.len() || inverse[p] != usize::MAX {
                return Err(Error::Config(format!("{perm:?} is not a permutation")));
            }
            inverse[p] = j;
        }
        Ok(Permute {
            perm: Resident::new(perm),
            inverse: Resident::new(inverse),
            mode,
        })
    }

    pub fn perm(&self) -> &[usize] {
        self.perm.host()
    }
}

impl<B: Backend> Flow<B> for Permute {
    fn dim(&self) -> usize {
        self.perm.host().len()
    }

    fn forward(
        &self,
        _: &ParamStore<B>,
        z: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let perm = self.perm.index(z.tape().backend())?;
        Ok((z.gather_cols(&perm)?, zero_log_det(z)?))
    }

    fn inverse(
        &self,
        _: &ParamStore<B>,
        x: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        let inverse = self.inverse.index(x.tape().backend())?;
        Ok((x.gather_cols(&inverse)?, zero_log_det(x)?))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&PermuteConfig {
            mode: self.mode,
            perm: self.perm.host().clone(),
        })
    }
}

impl LayerKind for Permute {
    const NAME: &'static str = "permute";
    type Config = PermuteConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        if config.perm.len() != cx.dim {
            return Err(Error::Config(format!(
                "{}: permutation of {} features in a flow of {}",
                cx.prefix,
                config.perm.len(),
                cx.dim
            )));
        }
        Ok(Box::new(Self::from_perm(config.perm.clone(), config.mode)?))
    }

    fn num_scalars(_: &Self::Config, _: usize, _: usize) -> Option<usize> {
        Some(0)
    }
}
