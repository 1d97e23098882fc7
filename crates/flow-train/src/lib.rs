//! Optimizers, training loops, checkpoints, plots and the `flows` command-line tool.

pub mod plot;
