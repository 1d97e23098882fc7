//! Optimizers, training loops, checkpoints, plots and the `flows` command-line tool.

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod error;
pub mod import;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod preprocess;
pub mod run_data;
pub mod source;
pub mod train;

pub use error::{Error, Result};
