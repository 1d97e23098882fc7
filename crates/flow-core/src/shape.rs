//! Shapes of row-major matrices: rows are samples, columns are features.

use std::fmt;

/// The shape of a 2-D tensor. Vectors are `n x 1` or `1 x n`, scalars `1 x 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    pub rows: usize,
    pub cols: usize,
}

impl Shape {
    pub const SCALAR: Shape = Shape { rows: 1, cols: 1 };

    pub const fn new(rows: usize, cols: usize) -> Self {
        Shape { rows, cols }
    }

    pub const fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub const fn is_scalar(&self) -> bool {
        self.rows == 1 && self.cols == 1
    }

    /// The shape both operands broadcast to: each dimension equal, or 1 on one side.
    pub fn broadcast(self, other: Shape) -> Option<Shape> {
        let dim = |a: usize, b: usize| match (a, b) {
            _ if a == b => Some(a),
            (1, _) => Some(b),
            (_, 1) => Some(a),
            _ => None,
        };
        Some(Shape::new(
            dim(self.rows, other.rows)?,
            dim(self.cols, other.cols)?,
        ))
    }

    /// Whether `self` can be broadcast (expanded, never shrunk) to `target`.
    pub fn broadcasts_to(self, target: Shape) -> bool {
        (self.rows == target.rows || self.rows == 1) && (self.cols == target.cols || self.cols == 1)
    }

    /// The shape left after collapsing `axis`.
    pub fn reduced(self, axis: Axis) -> Shape {
        match axis {
            Axis::Rows => Shape::new(1, self.cols),
            Axis::Cols => Shape::new(self.rows, 1),
            Axis::All => Shape::SCALAR,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

impl From<(usize, usize)> for Shape {
    fn from((rows, cols): (usize, usize)) -> Self {
        Shape::new(rows, cols)
    }
}

/// The axis a reduction collapses. Results keep both dimensions.
///
/// `Axis::Rows` collapses the rows (one value per column, shape `1 x c`),
/// `Axis::Cols` collapses the columns (one value per row, shape `r x 1`: per-sample sums),
/// `Axis::All` collapses both (`1 x 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    Rows,
    Cols,
    All,
}
