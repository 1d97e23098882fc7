//! `flows import-torchcfm`: the state_dict of torchcfm's `MLP(dim, w, time_varying=True)`
//! turned into a model of one CNF layer over a standard normal.
//!
//! torchcfm's MLP is `Linear(dim + 1, w), SELU, (Linear(w, w), SELU) x 2, Linear(w, dim)`
//! under `net.{0,2,4,6}`, read on `[x, t]`, with the flow running from a standard normal at
//! `t = 0` to the data at `t = 1`: exactly our [`flow_layers::Cnf`] with
//! [`FieldActivation::Selu`] and [`TimeInput::Linear`], whose parameters are
//! `flows.0.net.{k}.*` in the same `(out, in)` layout. The widths and the number of layers
//! are read from the tensors, so any dimension, width and depth imports.

use crate::error::{Error, Result};
use flow_core::{Backend, Tensor};
use flow_layers::ode::Solver;
use flow_layers::{CnfConfig, CnfLayerConfig, FieldActivation, NormalizingFlow, TimeInput};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads a torchcfm `MLP(dim, w, time_varying=True)` state_dict into a model on `backend`,
/// integrated by `solver` (torchcfm's examples use Dormand-Prince at rtol = atol = 1e-4).
///
/// ```no_run
/// use flow_core::Cpu;
/// use flow_layers::ode::Solver;
/// use flow_train::import::import_torchcfm;
///
/// let solver = Solver::Dopri5 { rtol: 1e-4, atol: 1e-4, max_steps: 10_000 };
/// let model = import_torchcfm(&Cpu::<f64>::new(), "icfm.safetensors".as_ref(), solver)?;
/// let (x, log_q) = model.sample(1000, None, &mut flow_core::rng(0))?; // exact log-densities
/// # Ok::<(), flow_train::Error>(())
/// ```
pub fn import_torchcfm<B: Backend>(
    backend: &B,
    path: &Path,
    solver: Solver,
) -> Result<NormalizingFlow<B>> {
    let file = super::read_state_dict(path)?;
    // Layer index -> (weight shape, bias shape).
    type Shapes = (Option<Vec<usize>>, Option<Vec<usize>>);
    let mut layers: BTreeMap<usize, Shapes> = BTreeMap::new();
    for (name, (shape, _)) in &file.tensors {
        let unexpected = || {
            Error::format(
                path,
                format!(
                    "unexpected tensor `{name}`: a torchcfm MLP has only `net.{{k}}.weight` and \
                     `net.{{k}}.bias`"
                ),
            )
        };
        let rest = name.strip_prefix("net.").ok_or_else(unexpected)?;
        let (index, what) = rest.split_once('.').ok_or_else(unexpected)?;
        let k: usize = index.parse().map_err(|_| unexpected())?;
        let entry = layers.entry(k).or_default();
        match what {
            "weight" => entry.0 = Some(shape.clone()),
            "bias" => entry.1 = Some(shape.clone()),
            _ => return Err(unexpected()),
        }
    }
    let mut sizes: Vec<(usize, usize)> = Vec::new();
    for (position, (&k, (weight, bias))) in layers.iter().enumerate() {
        if k != 2 * position {
            return Err(Error::format(
                path,
                format!(
                    "linear layers at net.{{0, 2, 4, ...}} expected (SELU between them), found \
                     net.{k} in place {position}"
                ),
            ));
        }
        let (Some(weight), Some(bias)) = (weight, bias) else {
            return Err(Error::format(
                path,
                format!("net.{k} needs both a weight and a bias"),
            ));
        };
        let (out, inp) = match weight.as_slice() {
            [out, inp] => (*out, *inp),
            _ => {
                return Err(Error::format(
                    path,
                    format!("net.{k}.weight has shape {weight:?}, expected (out, in)"),
                ))
            }
        };
        if bias.as_slice() != [out] {
            return Err(Error::format(
                path,
                format!("net.{k}.bias has shape {bias:?}, expected ({out},)"),
            ));
        }
        if let Some(&(previous_out, _)) = sizes.last() {
            if previous_out != inp {
                return Err(Error::format(
                    path,
                    format!("net.{k} reads {inp} features, the layer before gives {previous_out}"),
                ));
            }
        }
        sizes.push((out, inp));
    }
    let (Some(&(_, input)), Some(&(dim, _))) = (sizes.first(), sizes.last()) else {
        return Err(Error::format(
            path,
            "no `net.{k}` tensors: not a torchcfm MLP",
        ));
    };
    if sizes.len() < 2 || input != dim + 1 {
        return Err(Error::format(
            path,
            format!(
                "the MLP maps {input} features to {dim} in {} layers: torchcfm's \
                 MLP(dim, w, time_varying=True) reads dim + 1 ([x, t]) and has hidden layers",
                sizes.len()
            ),
        ));
    }
    let layer = CnfLayerConfig {
        hidden: sizes[..sizes.len() - 1]
            .iter()
            .map(|&(out, _)| out)
            .collect(),
        activation: FieldActivation::Selu,
        time: TimeInput::Linear,
        solver,
        ..CnfLayerConfig::default()
    };
    let spec = CnfConfig {
        dim,
        transforms: 1,
        layer,
    }
    .spec()?;
    let mut model = NormalizingFlow::new(backend, spec, 0)?;
    let params = model.params_mut();
    for (name, (_, values)) in &file.tensors {
        let ours = format!("flows.0.{name}");
        let id = params
            .id(&ours)
            .ok_or_else(|| Error::format(path, format!("`{name}` has no place in the model")))?;
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                path,
                format!("`{name}` holds a non-finite value at index {bad}"),
            ));
        }
        let shape = params.get(id)?.shape();
        params.set(id, Tensor::from_f64s(backend, shape, values)?)?;
    }
    Ok(model)
}
