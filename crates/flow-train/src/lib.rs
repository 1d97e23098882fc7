//! Optimizers, training loops, checkpoints, plots and the `flows` command-line tool.

pub mod checkpoint;
pub mod error;
pub mod import;
pub mod plot;

pub use error::{Error, Result};
