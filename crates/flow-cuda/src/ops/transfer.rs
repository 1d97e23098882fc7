//! Transfers between host and device, filled storage, indices, and synchronisation.

use super::size;
use crate::backend::{CudaBackend, CudaElement};
use crate::device::Arg;
use crate::kernels;
use crate::launch;
use crate::storage::{indices_to_u32, CudaIndex, CudaStorage};
use flow_core::{Result, Shape};
use std::sync::Arc;

impl<E: CudaElement> CudaBackend<E> {
    pub(crate) fn upload_values(&self, shape: Shape, data: &[E]) -> Result<CudaStorage<E>> {
        if data.is_empty() {
            return self.zeros_of(shape);
        }
        let slice = self
            .device
            .stream
            .clone_htod(data)
            .map_err(|e| self.error(format!("uploading {} values: {e:?}", data.len())))?;
        Ok(CudaStorage::new(slice, shape))
    }

    pub(crate) fn download_values(&self, s: &CudaStorage<E>) -> Result<Vec<E>> {
        let n = s.shape.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let values = self
            .device
            .stream
            .clone_dtoh(&s.data.slice(0..n))
            .map_err(|e| self.error(format!("downloading {n} values: {e:?}")))?;
        // A copy to pageable memory has finished when it returns; synchronising also
        // reports a failure of anything queued before it.
        self.sync()?;
        Ok(values)
    }

    pub(crate) fn fill(&self, shape: Shape, value: E) -> Result<CudaStorage<E>> {
        let n = shape.len();
        let mut out = self.output(n)?;
        if n > 0 {
            // fill(T* out, u64 n, T value): writes out[0..n].
            self.launch(
                &kernels::FILL,
                launch::grid_stride(n as u64),
                &mut [Arg::Out(&mut out, n), size(n), Arg::Elem(value)],
            )?;
        }
        Ok(CudaStorage::new(out, shape))
    }

    pub(crate) fn upload_indices(&self, index: &[usize]) -> Result<CudaIndex> {
        let values = indices_to_u32(index).map_err(|m| self.error(m))?;
        let data = if values.is_empty() {
            self.index_zeros(0)?
        } else {
            self.device
                .stream
                .clone_htod(&values)
                .map_err(|e| self.error(format!("uploading {} indices: {e:?}", values.len())))?
        };
        Ok(CudaIndex {
            data: Arc::new(data),
            len: index.len(),
        })
    }

    pub(crate) fn download_indices(&self, index: &CudaIndex) -> Result<Vec<usize>> {
        if index.len == 0 {
            return Ok(Vec::new());
        }
        let values = self
            .device
            .stream
            .clone_dtoh(&index.data.slice(0..index.len))
            .map_err(|e| self.error(format!("downloading {} indices: {e:?}", index.len)))?;
        self.sync()?;
        Ok(values.into_iter().map(|i| i as usize).collect())
    }

    /// Waits for the stream; reports a failure of anything queued, or one the driver
    /// recorded where it could not return it (freeing a buffer).
    pub(crate) fn sync(&self) -> Result<()> {
        self.device
            .stream
            .synchronize()
            .map_err(|e| self.error(format!("synchronizing the stream: {e:?}")))?;
        self.device
            .ctx
            .check_err()
            .map_err(|e| self.error(format!("an earlier operation failed: {e:?}")))
    }
}
