//! # flow-cuda
//!
//! A CUDA backend for `flow-core` (work in progress): hand-written kernels in `kernels/*.cu`
//! (see `kernels/KERNELS.md` for their contract), compiled by NVRTC at run time.

pub use cudarc;
