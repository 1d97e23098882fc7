//! # flow-cuda
//!
//! A CUDA backend for `flow-core`: [`CudaBackend<E>`] implements
//! [`flow_core::Backend`] for `f32` and `f64` on one NVIDIA GPU, so every tensor, tape,
//! layer and training loop written against the trait runs on the device unchanged.
//!
//! - **Kernels** are hand-written CUDA C++ in `kernels/*.cu` (their contract:
//!   `kernels/KERNELS.md`), embedded in the crate and compiled by NVRTC at run time for the
//!   device's own architecture (`sm_XY`, to machine code), once per device and element type,
//!   on first use. [`CudaBackend::compile_all`] compiles them up front.
//! - **Matrix products** go through cuBLAS; a linear layer is one cuBLAS call and one
//!   bias-and-activation kernel.
//! - **Fused operations** (linear layers and their activation's backward, affine couplings,
//!   the diagonal Gaussian's log-density, the rational-quadratic spline, Adam) have their own
//!   kernels, with the backwards the `Backend` trait describes.
//! - **Random draws** (`randn`, `rand_uniform`) are Philox on the device, keyed by the
//!   [`FlowRng`](flow_core::FlowRng)'s seed, stream and position, which then moves past what
//!   was used: the same seed gives the same numbers (not the CPU backend's numbers).
//! - **Work is asynchronous**, on one stream. A device failure comes back as
//!   [`flow_core::Error::Backend`] from the call that sees it: the launch itself, or a later
//!   download or [`Backend::synchronize`](flow_core::Backend::synchronize).
//!
//! ## What it needs at run time
//!
//! The NVIDIA driver (`libcuda`), and NVRTC and cuBLAS from a CUDA toolkit 12 or 13
//! (`libnvrtc`, `libcublas`), found on the library path; nothing at build time. Without
//! them [`CudaBackend::new`] is an error that names what is missing, for example
//!
//! ```text
//! cuda:0-f32: cannot load NVRTC (libnvrtc, from CUDA 12 or 13, to compile the kernels); install
//! it or add it to the library path (LD_LIBRARY_PATH)
//! ```
//!
//! and without a GPU it is `cuda:0-f32: no CUDA device: ...`.
//!
//! ## Example
//!
//! ```no_run
//! use flow_core::backend::UnaryOp;
//! use flow_core::{Axis, Backend, Tensor};
//! use flow_cuda::CudaBackend;
//!
//! # fn main() -> flow_core::Result<()> {
//! let gpu = CudaBackend::<f32>::new(0)?; // device 0
//! let x = Tensor::from_f64s(&gpu, (2, 3), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let y = x.unary(UnaryOp::Tanh)?.sum(Axis::All)?;
//! println!("{:?} on {}", y.to_vec()?, gpu.name());
//! # Ok(())
//! # }
//! ```
//!
//! A backend crate's usual check is `flow_core`'s conformance suite, which this crate runs
//! in `tests/device.rs` (with `FLOWS_REQUIRE_GPU=1` a missing GPU fails the test rather
//! than skipping it).

mod backend;
mod blas;
mod compile;
mod device;
mod kernels;
mod launch;
mod ops;
mod philox;
#[cfg(test)]
mod ptxas;
mod storage;

pub use backend::{CudaBackend, CudaElement};
pub use storage::{CudaIndex, CudaStorage};

pub use cudarc;
