//! `IndexTensor`: a list of indices kept in a backend's index storage (a column
//! permutation, one position per row, bin numbers), so that gathers and scatters read their
//! indices on the device instead of uploading them on every call.
//!
//! Its length and an upper bound of its entries are host metadata, known when it is built,
//! so shape and range checks never read the indices back.

use crate::backend::Backend;
use crate::error::{Error, Result};
use std::fmt;
use std::sync::Arc;

/// Indices on backend `B`: `len` entries, each below `bound`. Cloning is cheap.
pub struct IndexTensor<B: Backend> {
    backend: B,
    storage: Arc<B::Index>,
    len: usize,
    bound: usize,
}

impl<B: Backend> Clone for IndexTensor<B> {
    fn clone(&self) -> Self {
        IndexTensor {
            backend: self.backend.clone(),
            storage: Arc::clone(&self.storage),
            len: self.len,
            bound: self.bound,
        }
    }
}

impl<B: Backend> fmt::Debug for IndexTensor<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("IndexTensor");
        s.field("backend", &self.backend.name())
            .field("len", &self.len)
            .field("bound", &self.bound);
        if self.len <= 16 {
            match self.to_vec() {
                Ok(values) => s.field("data", &values),
                Err(e) => s.field("data", &e),
            };
        }
        s.finish()
    }
}

impl<B: Backend> IndexTensor<B> {
    /// Uploads `index` once; its bound is its largest entry plus one.
    ///
    /// ```
    /// use flow_core::{Cpu, IndexTensor, Tensor};
    /// let cpu = Cpu::<f64>::new();
    /// let swap = IndexTensor::new(&cpu, &[1, 0])?;
    /// let t = Tensor::from_vec(&cpu, (1, 2), vec![1.0, 2.0])?;
    /// assert_eq!(t.gather_cols(&swap)?.to_vec()?, vec![2.0, 1.0]);
    /// # Ok::<(), flow_core::Error>(())
    /// ```
    pub fn new(backend: &B, index: &[usize]) -> Result<Self> {
        let bound = index.iter().max().map_or(0, |&m| m + 1);
        Ok(IndexTensor::from_storage(
            backend,
            backend.upload_index(index)?,
            index.len(),
            bound,
        ))
    }

    /// Wraps index storage a backend produced, with its length and a bound of its entries
    /// (every entry `< bound`): the caller's promise.
    pub fn from_storage(backend: &B, storage: B::Index, len: usize, bound: usize) -> Self {
        IndexTensor {
            backend: backend.clone(),
            storage: Arc::new(storage),
            len,
            bound,
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn storage(&self) -> &B::Index {
        &self.storage
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry is below this.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// The indices, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<usize>> {
        self.backend.download_index(&self.storage)
    }

    /// An error for `op` unless every entry indexes a row of `width` columns.
    pub(crate) fn check_bound(&self, op: &'static str, width: usize) -> Result<()> {
        if self.bound > width {
            return Err(Error::invalid(
                op,
                format!(
                    "column index {} out of range for width {width}",
                    self.bound - 1
                ),
            ));
        }
        Ok(())
    }
}
