//! # flow-train
//!
//! Training normalizing flows: optimizers, learning-rate schedules and gradient clipping
//! (PyTorch's semantics), the training loop with validation, early stopping and bit-for-bit
//! resume, safetensors checkpoints, JSON-lines metrics and normflows import.
//!
//! To train on your own rows, start with [`fit::Fit`]: `flows train --data` as one call,
//! with the command's defaults, validation, the best model kept and optional checkpoints
//! (its module documentation has a complete example). [`train::train_on`] is the loop
//! underneath, for a custom data source or observer.
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
//! ## Non-finite values
//!
//! Nothing non-finite reaches the parameters silently. The model refuses a batch holding a NaN
//! or an infinity (`flow_layers`' `Error::NonFinite`); the optimizers ([`optim::Adam`],
//! AdamW, [`optim::Sgd`]) refuse a gradient holding one ([`Error::NonFiniteGradient`], naming
//! the parameter), leaving every parameter and their own state unchanged; and the training
//! loop ([`train::train_on`]) skips and counts a step whose batch, loss or gradient is not
//! finite, stopping with [`Error::Diverged`] after
//! [`TrainConfig::max_nonfinite_streak`](train::TrainConfig::max_nonfinite_streak) in a row.
//! See [`optim`] for an example.

pub mod checkpoint;
pub mod data;
pub mod distance;
pub mod error;
pub mod fit;
pub mod import;
pub mod metrics;
pub mod optim;
pub mod preprocess;
pub mod run_data;
pub mod source;
pub mod train;

pub use error::{Error, Result};

// The Rust examples of the repository's README, compiled and run as doctests (those that
// need names from elsewhere define them in hidden lines; long trainings are `no_run`).
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
