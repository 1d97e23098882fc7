//! Errors of flow construction and evaluation.

/// Errors returned by `flow-layers`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] flow_core::Error),
    /// An architecture that cannot be built (a dimension too small, a bad permutation).
    #[error("invalid flow configuration: {0}")]
    Config(String),
    /// Data whose width differs from the flow's dimension.
    #[error("{what}: expected {expected} features, got {got}")]
    Width {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A conditional layer called without its context, or with one of the wrong shape.
    #[error("{what}: expected a context of {rows} rows x {expected} features, got {}", match got { Some((r, c)) => format!("{r} x {c}"), None => "none".to_string() })]
    Context {
        what: &'static str,
        expected: usize,
        /// `(rows, cols)` of the context given, if any.
        got: Option<(usize, usize)>,
        rows: usize,
    },
    /// A layer without a closed-form inverse (planar, radial) that cannot invert its input:
    /// non-finite data or parameters, a numerical solve that did not converge, or a point
    /// outside the layer's image.
    #[error("{layer} is not invertible here: {reason}")]
    NotInvertible { layer: &'static str, reason: String },
    /// Rows given to a model call (`x`, `z` or a context) with a NaN or infinite entry: the
    /// first one, row by row (see [`NormalizingFlow`](crate::NormalizingFlow)'s policy on
    /// non-finite values).
    #[error("{call}: {arg} has a non-finite value {value} at row {row}, column {col}")]
    NonFinite {
        /// The call refused (`log_prob`, `forward_kld`, ...).
        call: &'static str,
        /// Which of its arguments: `x`, `z` or `context`.
        arg: &'static str,
        row: usize,
        col: usize,
        value: f64,
    },
}

impl Error {
    /// This error as flow-core's, for the backward pass of a custom op named `op` (which
    /// returns flow-core's errors).
    pub(crate) fn in_op(self, op: &'static str) -> flow_core::Error {
        flow_core::Error::InvalidArgument {
            op,
            message: self.to_string(),
        }
    }

    /// [`Error::NonFinite`] from `flow_core`'s [`flow_core::Error::NonFinite`] (from
    /// [`flow_core::Tensor::check_finite`]) for argument `arg` of `call`; any other error
    /// as is.
    pub fn non_finite(call: &'static str, arg: &'static str, e: flow_core::Error) -> Self {
        match e {
            flow_core::Error::NonFinite {
                row, col, value, ..
            } => Error::NonFinite {
                call,
                arg,
                row,
                col,
                value,
            },
            e => Error::Core(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
