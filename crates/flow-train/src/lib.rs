//! # flow-train
//!
//! Training normalizing flows: optimizers, learning-rate schedules and gradient clipping
//! (PyTorch's semantics), the training loop with validation, early stopping and bit-for-bit
//! resume, safetensors checkpoints, JSON-lines metrics and normflows import.

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
