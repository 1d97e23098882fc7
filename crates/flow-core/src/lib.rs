//! # flow-core
//!
//! Tensors on a swappable [`Backend`] and a reverse-mode autodiff [`Tape`] with
//! higher-order gradients: the ground every other `flows` crate stands on.
//!
//! **Debug builds**: unoptimised, the tensor kernels are about 100 times slower (19 against
//! about 2,900 it/s for the seed example's training loop). Add this to your project's
//! `Cargo.toml`, which optimises the dependencies only (1,407 it/s in the same debug build):
//!
//! ```toml
//! [profile.dev.package."*"]
//! opt-level = 2
//! debug-assertions = false
//! overflow-checks = false
//! ```
//!
//! ```
//! use flow_core::{Cpu, ParamStore, Tape, Tensor};
//!
//! let cpu = Cpu::<f64>::new();
//! let mut params = ParamStore::new();
//! let w = params.add("w", Tensor::from_vec(&cpu, (2, 1), vec![0.5, -1.0])?)?;
//!
//! // One forward pass: bind the parameters into a tape, compute a scalar loss.
//! let tape = Tape::new(&cpu);
//! let x = tape.constant(Tensor::from_vec(&cpu, (3, 2), vec![1., 2., 3., 4., 5., 6.])?);
//! let loss = x.matmul(&tape.param(&params, w)?)?.tanh()?.square()?.mean_all()?;
//!
//! let grads = tape.backward(&loss)?;
//! assert_eq!(grads.param(w).unwrap().shape(), (2, 1).into());
//!
//! // Higher order: the gradient itself is on the tape and can be differentiated again.
//! let xi = tape.input(Tensor::from_vec(&cpu, (1, 1), vec![0.3])?);
//! let y = xi.tanh()?.sum_all()?;
//! let dy = &tape.grad(&y, &[&xi], true)?[0]; // 1 - tanh^2
//! let d2y = &tape.grad(&dy.sum_all()?, &[&xi], false)?[0]; // -2 tanh (1 - tanh^2)
//! let t = 0.3f64.tanh();
//! assert!((d2y.scalar_value()? + 2.0 * t * (1.0 - t * t)).abs() < 1e-12);
//! # Ok::<(), flow_core::Error>(())
//! ```

pub mod autodiff;
pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod element;
pub mod error;
pub mod gradcheck;
pub mod index;
mod ops;
pub mod params;
pub mod random;
pub mod resident;
pub mod shape;
pub mod target;
pub mod tensor;

pub use autodiff::{Gradients, Tape, Var};
pub use backend::cpu::Cpu;
pub use backend::{
    backend_error, Activation, AdamStep, Backend, BinaryOp, CouplingScale, Direction,
    RationalQuadratic, ReduceOp, UnaryOp,
};
pub use element::Element;
pub use error::{Error, Result};
pub use index::IndexTensor;
pub use ops::custom::CustomOp;
pub use params::{ParamId, ParamStore};
pub use random::{rng, standard_normals, FlowRng};
pub use resident::Resident;
pub use shape::{Axis, Shape};
pub use target::Target;
pub use tensor::Tensor;
