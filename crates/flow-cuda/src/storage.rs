//! Device storage: a shared device buffer and the shape it holds.
//!
//! cudarc's `CudaSlice::clone` is a device copy (and panics on failure), so storage shares
//! its buffer through an `Arc`: cloning storage, or reshaping it, is free. The two methods
//! that write in place ([`Backend::activation_backward`], [`Backend::adam_update`]) copy a
//! shared buffer first, so no other holder sees the write.
//!
//! A buffer holds at least one element, even for an empty shape (the driver allocates no
//! zero-byte buffers); the shape says how many of them are the tensor's.
//!
//! [`Backend::activation_backward`]: flow_core::Backend::activation_backward
//! [`Backend::adam_update`]: flow_core::Backend::adam_update

use cudarc::driver::CudaSlice;
use flow_core::Shape;
use std::fmt;
use std::sync::Arc;

/// A tensor's values on the device (row-major, contiguous) and its shape.
#[derive(Clone)]
pub struct CudaStorage<E> {
    pub(crate) data: Arc<CudaSlice<E>>,
    pub(crate) shape: Shape,
}

impl<E> CudaStorage<E> {
    pub(crate) fn new(data: CudaSlice<E>, shape: Shape) -> Self {
        CudaStorage {
            data: Arc::new(data),
            shape,
        }
    }

    /// The shape of the values.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The device buffer (at least `shape().len()` elements, at least one).
    pub fn slice(&self) -> &CudaSlice<E> {
        &self.data
    }
}

impl<E> fmt::Debug for CudaStorage<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaStorage({})", self.shape)
    }
}

/// A list of indices on the device, as `u32` (KERNELS.md's index storage).
#[derive(Clone)]
pub struct CudaIndex {
    pub(crate) data: Arc<CudaSlice<u32>>,
    pub(crate) len: usize,
}

impl CudaIndex {
    /// How many indices it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device buffer (at least `len()` elements, at least one).
    pub fn slice(&self) -> &CudaSlice<u32> {
        &self.data
    }
}

impl fmt::Debug for CudaIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaIndex({} indices)", self.len)
    }
}

/// The elements a buffer for `len` values holds: `len`, but at least one.
pub(crate) fn capacity(len: usize) -> usize {
    len.max(1)
}

/// Host indices as the device's `u32` indices; `Err` names the first that does not fit.
pub(crate) fn indices_to_u32(index: &[usize]) -> Result<Vec<u32>, String> {
    index
        .iter()
        .map(|&i| {
            u32::try_from(i)
                .map_err(|_| format!("index {i} does not fit the device's 32-bit index storage"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_never_zero() {
        assert_eq!(capacity(0), 1);
        assert_eq!(capacity(1), 1);
        assert_eq!(capacity(17), 17);
    }

    #[test]
    fn indices_convert_or_name_the_one_that_does_not_fit() {
        assert_eq!(indices_to_u32(&[0, 3, 7]), Ok(vec![0, 3, 7]));
        assert_eq!(indices_to_u32(&[]), Ok(vec![]));
        let big = u32::MAX as usize + 1;
        let e = indices_to_u32(&[1, big]).unwrap_err();
        assert!(e.contains(&big.to_string()), "{e}");
    }
}
