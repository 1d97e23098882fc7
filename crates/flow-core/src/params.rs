//! Parameters live outside the tape, in a store with stable names (the names checkpoints
//! use); each forward pass binds them into a fresh tape with [`crate::Tape::param`].

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

/// A parameter handle. It names its store, so a handle used with the wrong store (or the
/// wrong store's gradients) is caught rather than silently reading another parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId {
    store: u64,
    index: usize,
}

impl ParamId {
    /// Position in its store (registration order).
    pub fn index(&self) -> usize {
        self.index
    }
}

/// Named parameter tensors, in registration order.
#[derive(Debug)]
pub struct ParamStore<B: Backend> {
    id: u64,
    names: Vec<String>,
    values: Vec<Tensor<B>>,
    by_name: HashMap<String, usize>,
    /// Which entries are buffers ([`ParamStore::add_buffer`]).
    buffers: Vec<bool>,
}

impl<B: Backend> Default for ParamStore<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> Clone for ParamStore<B> {
    /// A copy with its own identity: handles of the original do not address it.
    fn clone(&self) -> Self {
        ParamStore {
            id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            names: self.names.clone(),
            values: self.values.clone(),
            by_name: self.by_name.clone(),
            buffers: self.buffers.clone(),
        }
    }
}

impl<B: Backend> ParamStore<B> {
    pub fn new() -> Self {
        ParamStore {
            id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            names: Vec::new(),
            values: Vec::new(),
            by_name: HashMap::new(),
            buffers: Vec::new(),
        }
    }

    /// A copy of the values as they are now that this store's handles still address (unlike
    /// [`Clone`], whose copy has an identity of its own): for a backward pass that must
    /// re-run a layer with the parameters its forward pass used. Tensors are shared, not
    /// copied.
    pub fn snapshot(&self) -> Self {
        ParamStore {
            id: self.id,
            names: self.names.clone(),
            values: self.values.clone(),
            by_name: self.by_name.clone(),
            buffers: self.buffers.clone(),
        }
    }

    /// Registers `value` under `name`, which must be new to this store.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor<B>) -> Result<ParamId> {
        self.insert(name.into(), value, false)
    }

    /// Registers a buffer: state saved with the parameters (checkpoints hold it) that is not
    /// trained. [`crate::Tape::param`] binds it as a constant, so it never gets a gradient
    /// and optimizers leave it alone; its owner changes it with [`ParamStore::set`] (the
    /// power-iteration vectors of a spectral norm, say: PyTorch's `register_buffer`).
    ///
    /// ```
    /// use flow_core::{Cpu, ParamStore, Tensor};
    /// let cpu = Cpu::<f64>::new();
    /// let mut store = ParamStore::new();
    /// let w = store.add("w", Tensor::zeros(&cpu, (2, 2))?)?;
    /// let u = store.add_buffer("u", Tensor::zeros(&cpu, (1, 2))?)?;
    /// assert!(store.is_buffer(u)? && !store.is_buffer(w)?);
    /// assert_eq!(store.trainable_ids().collect::<Vec<_>>(), vec![w]);
    /// # Ok::<(), flow_core::Error>(())
    /// ```
    pub fn add_buffer(&mut self, name: impl Into<String>, value: Tensor<B>) -> Result<ParamId> {
        self.insert(name.into(), value, true)
    }

    /// Whether `id` is a buffer ([`ParamStore::add_buffer`]) rather than a parameter.
    pub fn is_buffer(&self, id: ParamId) -> Result<bool> {
        Ok(self.buffers[self.position(id)?])
    }

    /// The trained entries (every one but the buffers), in registration order.
    pub fn trainable_ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.ids().filter(|id| !self.buffers[id.index])
    }

    fn insert(&mut self, name: String, value: Tensor<B>, buffer: bool) -> Result<ParamId> {
        if self.by_name.contains_key(&name) {
            return Err(Error::DuplicateParameter(name));
        }
        let index = self.values.len();
        self.by_name.insert(name.clone(), index);
        self.names.push(name);
        self.values.push(value);
        self.buffers.push(buffer);
        Ok(self.handle(index))
    }

    fn handle(&self, index: usize) -> ParamId {
        ParamId {
            store: self.id,
            index,
        }
    }

    fn position(&self, id: ParamId) -> Result<usize> {
        if id.store != self.id || id.index >= self.values.len() {
            return Err(Error::UnknownParameter(format!("{id:?}")));
        }
        Ok(id.index)
    }

    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).map(|&i| self.handle(i))
    }

    pub fn get(&self, id: ParamId) -> Result<&Tensor<B>> {
        Ok(&self.values[self.position(id)?])
    }

    pub fn name(&self, id: ParamId) -> Result<&str> {
        Ok(&self.names[self.position(id)?])
    }

    /// Replaces a parameter's value; the shape must stay the same.
    pub fn set(&mut self, id: ParamId, value: Tensor<B>) -> Result<()> {
        let i = self.position(id)?;
        if value.shape() != self.values[i].shape() {
            return Err(Error::ShapeMismatch {
                op: "ParamStore::set",
                lhs: self.values[i].shape(),
                rhs: value.shape(),
            });
        }
        self.values[i] = value;
        Ok(())
    }

    /// Changes a parameter's value in place with `f` (which must keep its shape).
    pub fn update(
        &mut self,
        id: ParamId,
        f: impl FnOnce(&mut Tensor<B>) -> Result<()>,
    ) -> Result<()> {
        let i = self.position(id)?;
        let shape = self.values[i].shape();
        f(&mut self.values[i])?;
        if self.values[i].shape() != shape {
            return Err(Error::ShapeMismatch {
                op: "ParamStore::update",
                lhs: shape,
                rhs: self.values[i].shape(),
            });
        }
        Ok(())
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.values.len()).map(|i| self.handle(i))
    }

    /// `(id, name, value)` in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &Tensor<B>)> + '_ {
        self.ids()
            .zip(&self.names)
            .zip(&self.values)
            .map(|((id, n), v)| (id, n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total number of scalars, buffers included.
    pub fn num_scalars(&self) -> usize {
        self.values.iter().map(|v| v.shape().len()).sum()
    }

    /// The number of trained scalars (buffers left out): the model size to report.
    pub fn num_trainable_scalars(&self) -> usize {
        self.values
            .iter()
            .zip(&self.buffers)
            .filter(|(_, &buffer)| !buffer)
            .map(|(v, _)| v.shape().len())
            .sum()
    }
}
