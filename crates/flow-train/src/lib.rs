//! # flow-train
//!
//! Training normalizing flows: optimizers, learning-rate schedules and gradient clipping
//! (PyTorch's semantics), the training loop with validation, early stopping and bit-for-bit
//! resume, safetensors checkpoints, JSON-lines metrics and normflows import.
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
pub mod error;
pub mod import;
pub mod metrics;
pub mod optim;
pub mod preprocess;
pub mod run_data;
pub mod source;
pub mod train;

pub use error::{Error, Result};
