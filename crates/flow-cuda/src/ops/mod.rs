//! The backend's operations, as kernel launches, by kind. Each file adds inherent methods
//! to [`CudaBackend`](crate::CudaBackend) that the `Backend` impl (`backend.rs`) calls.
//!
//! Conventions: an empty result is returned without a launch (a grid cannot be empty); a
//! result that reduces over an empty dimension is filled on the device with the
//! reduction's identity. Output buffers are left uninitialised (they may hold a freed
//! buffer's values): every kernel writes every entry of its outputs (KERNELS.md; the host
//! checks poison outputs with NaN to hold them to it), and a result no kernel writes (a
//! product over an empty inner dimension) is allocated zeroed.

mod columns;
mod elementwise;
mod fused;
mod matmul;
mod random;
mod reduce;
mod spline;
mod transfer;

use crate::device::Arg;
use crate::storage::CudaStorage;

/// `s` as a kernel's `const T*` argument covering its values.
pub(crate) fn input<E>(s: &CudaStorage<E>) -> Arg<'_, E> {
    Arg::In(&s.data, s.shape.len())
}

/// A size as a kernel argument.
pub(crate) fn size<E>(n: usize) -> Arg<'static, E> {
    Arg::U64(crate::device::u64_of(n))
}
