//! `Resident`: host data that a layer keeps (a permutation, a mask) together with its copy
//! on each backend it has run on, made on first use, so that a forward pass does not upload
//! it again. Layers are backend-independent values (`impl<B: Backend> Flow<B>`), so the copies
//! are keyed by the backend's type and name.

use crate::backend::Backend;
use crate::error::Result;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

type Copies = Vec<(TypeId, String, Arc<dyn Any + Send + Sync>)>;

/// Host data `T` with its device copies. Clones share the copies.
pub struct Resident<T> {
    host: T,
    copies: Arc<Mutex<Copies>>,
}

impl<T: Clone> Clone for Resident<T> {
    fn clone(&self) -> Self {
        Resident {
            host: self.host.clone(),
            copies: Arc::clone(&self.copies),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Resident<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.host.fmt(f)
    }
}

impl<T> Resident<T> {
    pub fn new(host: T) -> Self {
        Resident {
            host,
            copies: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The host data.
    pub fn host(&self) -> &T {
        &self.host
    }

    /// The copy on `backend` made by `upload` (once per backend and copy type; later calls
    /// return a clone of it).
    ///
    /// ```
    /// use flow_core::{Cpu, IndexTensor, Resident};
    /// let perm = Resident::new(vec![1, 0]);
    /// let cpu = Cpu::<f64>::new();
    /// let index = perm.on(&cpu, |p| IndexTensor::new(&cpu, p))?;
    /// assert_eq!(index.to_vec()?, vec![1, 0]);
    /// # Ok::<(), flow_core::Error>(())
    /// ```
    pub fn on<B, D>(&self, backend: &B, upload: impl FnOnce(&T) -> Result<D>) -> Result<D>
    where
        B: Backend,
        D: Clone + Send + Sync + 'static,
    {
        let key = TypeId::of::<(B, D)>();
        let name = backend.name();
        // A poisoned lock only means another thread panicked while uploading: the list
        // itself is still valid.
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, copy)) = copies.iter().find(|(k, n, _)| *k == key && *n == name) {
            let copy = copy.downcast_ref::<D>().expect("keyed by its type");
            return Ok(copy.clone());
        }
        let copy = upload(&self.host)?;
        copies.push((key, name, Arc::new(copy.clone())));
        Ok(copy)
    }
}

impl Resident<Vec<usize>> {
    /// The indices as an [`IndexTensor`](crate::IndexTensor) on `backend`, uploaded once.
    pub fn index<B: Backend>(&self, backend: &B) -> Result<crate::IndexTensor<B>> {
        self.on(backend, |values| crate::IndexTensor::new(backend, values))
    }
}

impl Resident<(crate::Shape, Vec<f64>)> {
    /// The row-major values of the given shape as a tensor on `backend`, uploaded once.
    pub fn tensor<B: Backend>(&self, backend: &B) -> Result<crate::Tensor<B>> {
        self.on(backend, |(shape, values)| {
            crate::Tensor::from_f64s(backend, *shape, values)
        })
    }
}

/// Constants that ops build from a few numbers on every call; [`shared`] keeps each one, with
/// its backend copies, for the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Constant {
    /// The column indices `start, start + step, ..` (`len` of them): a sliced column range
    /// (`step` 1), the log-scale columns of a coupling's parameters (`start` 1, `step` 2).
    Columns {
        start: usize,
        len: usize,
        step: usize,
    },
    /// The `k x (k + 1)` matrix of a `k`-bin spline's cumulative sums.
    CumulativeSums(usize),
}

/// How many distinct constants [`shared`] keeps before it starts afresh (a model uses a
/// handful; the bound only stops pathological growth).
const SHARED_CAPACITY: usize = 1024;

/// The constant `key`, built by `build` on first use and kept for the process, handed to
/// `with` (which makes or reads its copy on a backend), so that an op that needs it on every
/// step (a backward pass's index list) uploads it once per backend: a device backend's step
/// then copies nothing from the host. The map's lock is held only to find the entry, not
/// while `with` runs.
pub(crate) fn shared<T, R>(
    key: Constant,
    build: impl FnOnce(Constant) -> T,
    with: impl FnOnce(&Resident<T>) -> R,
) -> R
where
    T: Send + Sync + 'static,
{
    type Kept = HashMap<Constant, Arc<dyn Any + Send + Sync>>;
    static KEPT: OnceLock<Mutex<Kept>> = OnceLock::new();
    let entry = {
        // A poisoned lock only means another thread panicked during a lookup; the map is
        // valid.
        let mut kept = KEPT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if kept.len() >= SHARED_CAPACITY && !kept.contains_key(&key) {
            kept.clear();
        }
        Arc::clone(
            kept.entry(key)
                .or_insert_with(|| Arc::new(Resident::new(build(key)))),
        )
    };
    with(
        entry
            .downcast_ref::<Resident<T>>()
            .expect("each kind of constant is built as one type"),
    )
}

/// The column indices `start, start + step, ..` (`len` of them) on `backend`, uploaded once.
pub(crate) fn shared_columns<B: Backend>(
    backend: &B,
    start: usize,
    len: usize,
    step: usize,
) -> Result<crate::IndexTensor<B>> {
    shared(
        Constant::Columns { start, len, step },
        |_| (0..len).map(|k| start + k * step).collect::<Vec<usize>>(),
        |resident| resident.index(backend),
    )
}
