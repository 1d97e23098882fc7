//! Errors of training, checkpoints and data: each names the file involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] flow_core::Error),
    #[error(transparent)]
    Layers(#[from] flow_layers::Error),
    /// A data file that cannot be read (the message names the file, row and column).
    #[error(transparent)]
    Data(#[from] flow_datasets::tabular::Error),
    /// An image file that cannot be read.
    #[error(transparent)]
    Images(#[from] flow_datasets::images::Error),
    /// A built-in real data set that cannot be loaded (missing files, say).
    #[error(transparent)]
    Real(#[from] flow_datasets::real::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that exists but cannot be understood (truncated, corrupted, wrong contents).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// Training stopped because the loss (or its gradient) stayed NaN or infinite: skipping
    /// such steps (as normflows does) cannot recover once the model only gives them.
    #[error(
        "training stopped at iteration {at}: the loss or its gradient was NaN or infinite for \
         {steps} iterations in a row (since iteration {first}); try a lower --lr or \
         --clip-grad-norm"
    )]
    Diverged {
        at: usize,
        first: usize,
        steps: usize,
    },
    /// An optimizer step refused because a parameter's gradient holds a NaN or an infinity
    /// (the first such entry, parameters in the store's order): no parameter and no optimizer
    /// state was changed.
    #[error(
        "the gradient of parameter `{param}` has a non-finite value {value} at row {row}, \
         column {col}; no parameter was updated"
    )]
    NonFiniteGradient {
        param: String,
        row: usize,
        col: usize,
        value: f64,
    },
    /// A configuration a user asked for that cannot run.
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// [`Error::Format`]: `path` holds something other than what it should.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
