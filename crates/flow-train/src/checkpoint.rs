//! Checkpoints: safetensors files holding a model's parameters under normflows' names and
//! shapes (biases 1-D, as `torch.nn.Linear`), with the architecture as JSON metadata.
//! Written atomically: a temporary file beside the target is renamed over it, so a crash
//! mid-write leaves the previous checkpoint intact.

use crate::error::{Error, Result};
use flow_core::{Backend, Element, ParamStore, Tensor};
use flow_layers::{FlowSpec, NormalizingFlow};
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
    let mut file = TensorFile::default();
    for (_, name, value) in model.params().iter() {
        let s = value.shape();
        file.tensors.insert(
            name.to_string(),
            (stored_shape(name, s.rows, s.cols), value.to_f64s()),
        );
    }
    file.metadata.insert("format".into(), FORMAT.into());
    file.metadata.insert("version".into(), VERSION.into());
    file.metadata
        .insert("architecture".into(), model.spec().to_json());
    for (k, v) in extra {
        file.metadata.insert((*k).to_string(), v.clone());
    }
    file.write(path, <B::Elem as Element>::NAME)
}

/// Loads a model saved by [`save`] onto `backend`.
pub fn load<B: Backend>(backend: &B, path: &Path) -> Result<NormalizingFlow<B>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_bytes(backend, &bytes, path)
}

/// [`load`] from the bytes of a checkpoint file; `path` only names it in errors.
pub fn load_bytes<B: Backend>(
    backend: &B,
    bytes: &[u8],
    path: &Path,
) -> Result<NormalizingFlow<B>> {
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
    let mut model = NormalizingFlow::new(backend, spec, 0)?;
    load_params(model.params_mut(), &file, path)?;
    let known: std::collections::HashSet<&str> = model.params().iter().map(|(_, n, _)| n).collect();
    if let Some(extra) = file.tensors.keys().find(|k| !known.contains(k.as_str())) {
        return Err(Error::format(
            path,
            format!("tensor `{extra}` is not a parameter of the stored architecture"),
        ));
    }
    Ok(model)
}
