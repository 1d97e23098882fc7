//! Checkpoints: safetensors files holding a model's parameters under normflows' names and
//! shapes (biases 1-D, as `torch.nn.Linear`), with the architecture as JSON metadata.
//! Written atomically: a temporary file beside the target is renamed over it, so a crash
//! mid-write leaves the previous checkpoint intact.

use crate::error::{Error, Result};
use crate::optim::OptimizerState;
use crate::preprocess::Preprocess;
use crate::source::SourcePosition;
use crate::train::{Counters, ResumeState};
use flow_core::{Backend, Element, ParamStore, Tensor};
use flow_layers::{FlowSpec, NormalizingFlow, Registry};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

pub const FORMAT: &str = "flows-checkpoint";
pub const VERSION: &str = "1";

/// Named tensors read from a safetensors file, as f64 values with their stored shapes.
#[derive(Debug, Default)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a safetensors file; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::format(path, format!("not a readable safetensors file ({e})")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::format(path, format!("unreadable safetensors header ({e})")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let values =
                decode(&view).map_err(|m| Error::format(path, format!("tensor `{name}`: {m}")))?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(TensorFile {
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// Writes all tensors as `dtype` ("f32" or "f64"), atomically.
    pub fn write(&self, path: &Path, dtype: &str) -> Result<()> {
        let (st_dtype, bytes): (Dtype, Vec<Vec<u8>>) = match dtype {
            "f32" => (
                Dtype::F32,
                self.tensors
                    .values()
                    .map(|(_, v)| v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect())
                    .collect(),
            ),
            "f64" => (
                Dtype::F64,
                self.tensors
                    .values()
                    .map(|(_, v)| v.iter().flat_map(|&x| x.to_le_bytes()).collect())
                    .collect(),
            ),
            other => {
                return Err(Error::Config(format!(
                    "unsupported checkpoint dtype {other}"
                )))
            }
        };
        let views = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|((name, (shape, _)), data)| {
                TensorView::new(st_dtype, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let data = safetensors::serialize(views, Some(self.metadata.clone()))
            .map_err(|e| Error::format(path, format!("serialising: {e}")))?;
        write_atomically(path, &data)
    }
}

fn decode(view: &TensorView<'_>) -> std::result::Result<Vec<f64>, String> {
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4")) as f64)
            .collect()),
        Dtype::F64 => Ok(data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")))
            .collect()),
        // Integer buffers (normflows stores permutations as int64).
        Dtype::I64 => Ok(data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")) as f64)
            .collect()),
        Dtype::I32 => Ok(data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("chunk of 4")) as f64)
            .collect()),
        other => Err(format!(
            "dtype {other:?} is not supported (f32, f64, i64 or i32)"
        )),
    }
}

/// Writes `data` to a temporary file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// The shape a parameter is stored with: biases and other `1 x n` row parameters named
/// `*.bias` are 1-D, as PyTorch stores them.
fn stored_shape(name: &str, rows: usize, cols: usize) -> Vec<usize> {
    if rows == 1 && name.ends_with(".bias") {
        vec![cols]
    } else {
        vec![rows, cols]
    }
}

/// Copies every parameter of `store` from `file`, by name. Shapes must agree (1-D `n` is
/// read as `1 x n`); a missing parameter or a mismatch is an error naming it.
pub fn load_params<B: Backend>(
    store: &mut ParamStore<B>,
    file: &TensorFile,
    path: &Path,
) -> Result<()> {
    let ids: Vec<_> = store.ids().collect();
    for id in ids {
        let name = store.name(id)?.to_string();
        let expected = store.get(id)?.shape();
        let (shape, values) = file.tensors.get(&name).ok_or_else(|| {
            Error::format(
                path,
                format!("missing parameter `{name}` (shape {expected})"),
            )
        })?;
        let (rows, cols) = match shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => (0, 0),
        };
        if (rows, cols) != (expected.rows, expected.cols) {
            return Err(Error::format(
                path,
                format!(
                    "parameter `{name}` has shape {shape:?}, the architecture needs {expected}"
                ),
            ));
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                path,
                format!("parameter `{name}` holds a non-finite value at index {bad}"),
            ));
        }
        let t = Tensor::from_f64s(store.get(id)?.backend(), expected, values)?;
        store.set(id, t)?;
    }
    Ok(())
}

/// Saves a model: parameters (in the model's element type) and its architecture.
pub fn save<B: Backend>(
    model: &NormalizingFlow<B>,
    path: &Path,
    extra: &[(&str, String)],
) -> Result<()> {
    save_run(model, &Preprocess::Identity, None, path, extra)
}

/// The prefix of optimizer buffers among a checkpoint's tensors.
const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Saves a training run's state: the model, the data's preprocessing map, and, with
/// `resume`, what continues the run bit for bit (optimizer buffers as tensors
/// `optimizer.<state>.<parameter>`, the step, the data stream's position and the counters
/// as JSON metadata). `extra` adds metadata (the run's configuration, figures).
pub fn save_run<B: Backend>(
    model: &NormalizingFlow<B>,
    preprocess: &Preprocess,
    resume: Option<&ResumeState<B>>,
    path: &Path,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut file = TensorFile::default();
    let mut put = |name: String, value: &Tensor<B>| -> Result<()> {
        let s = value.shape();
        let shape = stored_shape(&name, s.rows, s.cols);
        file.tensors.insert(name, (shape, value.to_f64s()?));
        Ok(())
    };
    for (_, name, value) in model.params().iter() {
        put(name.to_string(), value)?;
    }
    if let Some(state) = resume {
        for (name, value) in &state.optimizer.buffers {
            put(format!("{OPTIMIZER_PREFIX}{name}"), value)?;
        }
        let stored = StoredState {
            step: state.step,
            optimizer_steps: state.optimizer.steps,
            source: state.source.clone(),
            counters: state.counters.clone(),
        };
        file.metadata.insert(
            "train_state".into(),
            serde_json::to_string(&stored).expect("plain data serialises"),
        );
    }
    file.metadata.insert("format".into(), FORMAT.into());
    file.metadata.insert("version".into(), VERSION.into());
    file.metadata
        .insert("architecture".into(), model.spec().to_json());
    file.metadata.insert(
        "preprocess".into(),
        serde_json::to_string(preprocess).expect("plain data serialises"),
    );
    for (k, v) in extra {
        file.metadata.insert((*k).to_string(), v.clone());
    }
    file.write(path, <B::Elem as Element>::NAME)
}

/// The resume state's plain part, as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredState {
    step: usize,
    optimizer_steps: u64,
    source: SourcePosition,
    counters: Counters,
}

/// A checkpoint read back: the model, its data preprocessing, the state to resume its
/// training run (when saved with one), and all metadata.
#[derive(Debug)]
pub struct RunCheckpoint<B: Backend> {
    pub model: NormalizingFlow<B>,
    pub preprocess: Preprocess,
    pub resume: Option<ResumeState<B>>,
    pub metadata: HashMap<String, String>,
}

/// Loads a model of built-in layers saved by [`save`] or [`save_run`] onto `backend`.
pub fn load<B: Backend>(backend: &B, path: &Path) -> Result<NormalizingFlow<B>> {
    Ok(load_run(backend, path)?.model)
}

/// Loads a model whose layer kinds `registry` holds (built-in and user-defined layers).
pub fn load_with<B: Backend>(
    registry: &Registry<B>,
    backend: &B,
    path: &Path,
) -> Result<NormalizingFlow<B>> {
    Ok(load_run_with(registry, backend, path)?.model)
}

/// Loads everything [`save_run`] stored (a model of built-in layers).
pub fn load_run<B: Backend>(backend: &B, path: &Path) -> Result<RunCheckpoint<B>> {
    load_run_with(&Registry::builtin(), backend, path)
}

/// Loads everything [`save_run`] stored, the model's layer kinds from `registry`.
pub fn load_run_with<B: Backend>(
    registry: &Registry<B>,
    backend: &B,
    path: &Path,
) -> Result<RunCheckpoint<B>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_bytes_with(registry, backend, &bytes, path)
}

/// [`load_run`] from the bytes of a checkpoint file; `path` only names it in errors.
pub fn load_bytes<B: Backend>(backend: &B, bytes: &[u8], path: &Path) -> Result<RunCheckpoint<B>> {
    load_bytes_with(&Registry::builtin(), backend, bytes, path)
}

/// [`load_run_with`] from the bytes of a checkpoint file; `path` only names it in errors.
pub fn load_bytes_with<B: Backend>(
    registry: &Registry<B>,
    backend: &B,
    bytes: &[u8],
    path: &Path,
) -> Result<RunCheckpoint<B>> {
    let file = TensorFile::from_bytes(bytes, path)?;
    if file.metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::format(
            path,
            "not a flows checkpoint (no `format: flows-checkpoint` metadata); \
             for a normflows state_dict use `flows import-normflows`",
        ));
    }
    let arch = file
        .metadata
        .get("architecture")
        .ok_or_else(|| Error::format(path, "checkpoint has no architecture metadata"))?;
    let spec = FlowSpec::from_json(arch).map_err(|e| Error::format(path, e.to_string()))?;
    // Checked before the model is built: a corrupted architecture could claim terabytes.
    let stored: usize = file.tensors.values().map(|(_, v)| v.len()).sum();
    let needed = spec
        .num_scalars(registry)
        .map_err(|e| Error::format(path, e.to_string()))?;
    match needed {
        Some(needed) if needed <= stored => {}
        needed => {
            return Err(Error::format(
                path,
                format!(
                    "the architecture needs {} parameters, the file holds {stored} values",
                    needed.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
                ),
            ))
        }
    }
    let mut model = NormalizingFlow::from_spec(registry, backend, spec, 0)?;
    load_params(model.params_mut(), &file, path)?;
    let known: std::collections::HashSet<&str> = model.params().iter().map(|(_, n, _)| n).collect();
    let mut buffers = BTreeMap::new();
    for (name, (shape, values)) in &file.tensors {
        if known.contains(name.as_str()) {
            continue;
        }
        let Some(buffer) = name.strip_prefix(OPTIMIZER_PREFIX) else {
            return Err(Error::format(
                path,
                format!("tensor `{name}` is not a parameter of the stored architecture"),
            ));
        };
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                path,
                format!("optimizer buffer `{name}` holds a non-finite value at index {bad}"),
            ));
        }
        let (rows, cols) = match shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => {
                return Err(Error::format(
                    path,
                    format!("optimizer buffer `{name}` has shape {shape:?}"),
                ))
            }
        };
        buffers.insert(
            buffer.to_string(),
            Tensor::from_f64s(backend, (rows, cols), values)?,
        );
    }
    let preprocess: Preprocess = match file.metadata.get("preprocess") {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| Error::format(path, format!("unreadable preprocess metadata ({e})")))?,
        None => Preprocess::Identity,
    };
    preprocess
        .check(model.dim())
        .map_err(|e| Error::format(path, e.to_string()))?;
    let resume = match file.metadata.get("train_state") {
        Some(json) => {
            let stored: StoredState = serde_json::from_str(json).map_err(|e| {
                Error::format(path, format!("unreadable train_state metadata ({e})"))
            })?;
            Some(ResumeState {
                step: stored.step,
                optimizer: OptimizerState {
                    steps: stored.optimizer_steps,
                    buffers,
                },
                source: stored.source,
                counters: stored.counters,
            })
        }
        None if !buffers.is_empty() => {
            return Err(Error::format(
                path,
                "optimizer buffers without a train_state (a corrupted checkpoint)",
            ))
        }
        None => None,
    };
    Ok(RunCheckpoint {
        model,
        preprocess,
        resume,
        metadata: file.metadata,
    })
}
