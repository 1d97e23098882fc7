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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
