//! `flows import-normflows`: a normflows RealNVP state_dict (`AffineCouplingBlock`s of
//! `MLP`s with `Permute` layers) turned into our checkpoint.
//!
//! The architecture is read from the tensors: `q0.loc` gives the dimension; a flow index
//! with `flows.{k}.flows.1.param_map.net.{j}.weight` tensors is a coupling block (its MLP
//! sizes from the weights); one with a `flows.{k}.perm` buffer is a shuffle permutation; an
//! index with no tensors is a parameter-free layer, which in these models is `Permute(mode="swap")`.
//! What a state_dict cannot say comes from the caller: the LeakyReLU slope, the scale map,
//! and whether a last coupling block is followed by a swap permutation (normflows' recipe
//! ends every block with a `Permute`, but a trailing swap has no tensors to show it).

use crate::checkpoint::{load_params, TensorFile};
use crate::error::{Error, Result};
use flow_core::Backend;
use flow_layers::{
    AffineCouplingBlock, AffineCouplingConfig, BaseSpec, FlowSpec, LayerSpec, NormalizingFlow,
    Permute, PermuteConfig, PermuteMode, ScaleMap,
};
use std::collections::BTreeMap;
use std::path::Path;

/// What a normflows state_dict does not record.
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    /// The MLPs' LeakyReLU slope (normflows' `MLP(leaky=...)`, 0 by default).
    pub leaky: f64,
    pub scale_map: ScaleMap,
    /// Whether a coupling block in last position is followed by `Permute(mode="swap")`, as
    /// in normflows' RealNVP recipe (default true).
    pub trailing_swap: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            leaky: 0.0,
            scale_map: ScaleMap::Exp,
            trailing_swap: true,
        }
    }
}

/// Reads a normflows RealNVP state_dict into a model on `backend`.
pub fn import_normflows<B: Backend>(
    backend: &B,
    path: &Path,
    options: ImportOptions,
) -> Result<NormalizingFlow<B>> {
    // (What a state_dict cannot record, slopes, scale maps, shuffles, would be guessed from
    // one of our checkpoints and silently change the model: it is refused.)
    let file = super::read_state_dict(path)?;
    let spec = infer_spec(&file, path, options)?;
    let mut model = NormalizingFlow::new(backend, spec, 0)?;
    load_params(model.params_mut(), &file, path)?;
    Ok(model)
}

fn infer_spec(file: &TensorFile, path: &Path, options: ImportOptions) -> Result<FlowSpec> {
    let (loc_shape, _) = file.tensors.get("q0.loc").ok_or_else(|| {
        Error::format(
            path,
            "no `q0.loc`: not a normflows model with a DiagGaussian base",
        )
    })?;
    let dim = *loc_shape.last().unwrap_or(&0);
    // flow index -> (MLP layer index -> (out, in)), and shuffle buffers.
    let mut mlps: BTreeMap<usize, BTreeMap<usize, (usize, usize)>> = BTreeMap::new();
    let mut perms: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut last_index = None;
    for (name, (shape, values)) in &file.tensors {
        let Some(rest) = name.strip_prefix("flows.") else {
            if !name.starts_with("q0.") {
                return Err(Error::format(
                    path,
                    format!("unexpected tensor `{name}` for a RealNVP"),
                ));
            }
            continue;
        };
        let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let k: usize = index
            .parse()
            .map_err(|_| Error::format(path, format!("unexpected tensor `{name}`")))?;
        last_index = last_index.max(Some(k));
        if let Some(j) = tail
            .strip_prefix("flows.1.param_map.net.")
            .and_then(|t| t.strip_suffix(".weight"))
        {
            let j: usize = j
                .parse()
                .map_err(|_| Error::format(path, format!("unexpected tensor `{name}`")))?;
            match shape.as_slice() {
                [out, inp] => {
                    mlps.entry(k).or_default().insert(j, (*out, *inp));
                }
                _ => {
                    return Err(Error::format(
                        path,
                        format!("`{name}` has shape {shape:?}, expected (out, in)"),
                    ))
                }
            }
        } else if tail == "perm" {
            perms.insert(k, values.iter().map(|&v| v as usize).collect());
        } else if !(tail == "inv_perm"
            || tail.starts_with("flows.1.param_map.net.") && tail.ends_with(".bias"))
        {
            return Err(Error::format(
                path,
                format!("unexpected tensor `{name}` for a RealNVP"),
            ));
        }
    }
    let mut layers = Vec::new();
    for k in 0..last_index.map_or(0, |k| k + 1) {
        if let Some(net) = mlps.get(&k) {
            let sizes: Vec<(usize, usize)> = net.values().copied().collect();
            let hidden: Vec<usize> = sizes[..sizes.len() - 1]
                .iter()
                .map(|&(out, _)| out)
                .collect();
            let (d1, d2) = (dim.div_ceil(2), dim - dim.div_ceil(2));
            let (first_in, last_out) = (sizes[0].1, sizes[sizes.len() - 1].0);
            if first_in != d1 || last_out != 2 * d2 {
                return Err(Error::format(
                    path,
                    format!(
                        "flow {k}: MLP maps {first_in} -> {last_out} features, a coupling block over {dim} needs {d1} -> {}",
                        2 * d2
                    ),
                ));
            }
            layers.push(LayerSpec::of::<AffineCouplingBlock>(
                &AffineCouplingConfig {
                    hidden,
                    leaky: options.leaky,
                    scale_map: options.scale_map,
                },
            ));
        } else if let Some(perm) = perms.get(&k) {
            Permute::from_perm(perm.clone(), PermuteMode::Shuffle)?;
            layers.push(LayerSpec::of::<Permute>(&PermuteConfig {
                mode: PermuteMode::Shuffle,
                perm: perm.clone(),
            }));
        } else {
            layers.push(swap_spec(dim)?);
        }
    }
    if options.trailing_swap && layers.last().is_some_and(|l| l.is::<AffineCouplingBlock>()) {
        layers.push(swap_spec(dim)?);
    }
    Ok(FlowSpec {
        dim,
        context: 0,
        base: BaseSpec::DiagGaussian,
        layers,
    })
}

fn swap_spec(dim: usize) -> Result<LayerSpec> {
    let swap = Permute::new(dim, PermuteMode::Swap, &mut flow_core::rng(0))?;
    Ok(LayerSpec::of::<Permute>(&PermuteConfig {
        mode: PermuteMode::Swap,
        perm: swap.perm().to_vec(),
    }))
}
