//! Test-only: the `flow-cuda` kernels compiled as host C++ and checked on the CPU.
//!
//! `build.rs` compiles every `.cu` of `crates/flow-cuda/kernels` with `-DFLOW_HOST` (where
//! `kernels/host/cuda_host.h` stands in for the CUDA built-ins: a block's threads are real
//! threads) once with `FLOW_T=float` and once with `FLOW_T=double`, with the entry points
//! of `cpp/`. [`ffi`] declares those entry points; [`check`] has what the tests in `tests/`
//! share: random inputs, launch shapes, the `Cpu<f64>` reference and comparisons.

pub mod check;
pub mod ffi;

pub use ffi::{Kernels, Launch};
