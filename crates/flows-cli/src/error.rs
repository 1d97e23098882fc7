//! The command's errors: the library's (each naming the file, row or flag involved) and
//! plots that cannot be drawn.

use crate::plot::PlotError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Training, checkpoints, data and flags: flow-train's errors.
    #[error(transparent)]
    Train(#[from] flow_train::Error),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<flow_core::Error> for Error {
    fn from(e: flow_core::Error) -> Self {
        Error::Train(e.into())
    }
}

impl From<flow_layers::Error> for Error {
    fn from(e: flow_layers::Error) -> Self {
        Error::Train(e.into())
    }
}
