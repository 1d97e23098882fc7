//! The one error type of `flow-core`: everything a caller can get wrong.

use crate::shape::Shape;

/// Errors returned by public `flow-core` calls.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// Two operands whose shapes cannot be combined by `op`.
    #[error("{op}: shapes {lhs} and {rhs} do not match")]
    ShapeMismatch {
        op: &'static str,
        lhs: Shape,
        rhs: Shape,
    },
    /// A buffer whose length does not equal rows * cols.
    #[error("{op}: {len} values cannot fill shape {shape}")]
    LengthMismatch {
        op: &'static str,
        len: usize,
        shape: Shape,
    },
    /// An argument outside its valid range (an index, a column range, an empty list).
    #[error("{op}: {message}")]
    InvalidArgument { op: &'static str, message: String },
    /// `backward` or `grad` called on something that is not a 1x1 scalar.
    #[error("{op}: expected a 1x1 scalar, got shape {shape}")]
    NotScalar { op: &'static str, shape: Shape },
    /// Variables from two different tapes combined in one op.
    #[error("{op}: operands belong to different tapes")]
    TapeMismatch { op: &'static str },
    /// A parameter name registered twice in one store.
    #[error("parameter `{0}` is already registered")]
    DuplicateParameter(String),
    /// A parameter name or id that the store does not hold.
    #[error("unknown parameter `{0}`")]
    UnknownParameter(String),
    /// What a backend's device reported: out of memory, a failed launch or copy, a missing
    /// driver or library.
    #[error("{backend}: {message}")]
    Backend { backend: String, message: String },
    /// A value that should be finite is NaN or infinite.
    #[error("{what}: non-finite value {value} at row {row}, column {col}")]
    NonFinite {
        what: String,
        row: usize,
        col: usize,
        value: f64,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            message: message.into(),
        }
    }
}
