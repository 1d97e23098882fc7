//! Errors of reading, splitting and transforming tabular data. Every error about a file names
//! the file; errors about a cell also name its row and column.

use std::fmt;
use std::path::PathBuf;

/// A column in an error message: its 1-based position in the file and, when the file has a
/// header, its name. Displays as ``column 3`` or ``column 3 (`x2`)``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    /// 1-based position among all the columns of the file (not only the selected ones).
    pub number: usize,
    /// The header's name for the column, when the file has a header.
    pub name: Option<String>,
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "column {} (`{name}`)", self.number),
            None => write!(f, "column {}", self.number),
        }
    }
}

/// Which non-finite value a cell holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    NaN,
    PosInfinity,
    NegInfinity,
}

impl NonFinite {
    /// The kind of `v`, or `None` when `v` is finite.
    pub fn of(v: f64) -> Option<Self> {
        if v.is_nan() {
            Some(Self::NaN)
        } else if v == f64::INFINITY {
            Some(Self::PosInfinity)
        } else if v == f64::NEG_INFINITY {
            Some(Self::NegInfinity)
        } else {
            None
        }
    }
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NaN => "NaN",
            Self::PosInfinity => "+infinity",
            Self::NegInfinity => "-infinity",
        })
    }
}

/// What went wrong. In messages about CSV files, `row` is the 1-based line of the file as an
/// editor numbers it (the header line and blank lines count); in messages about NPY files it
/// is the 1-based row of the array. Columns are numbered from 1 in messages, while
/// [`ColumnSelector::Index`](super::ColumnSelector::Index) counts from 0.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read or written (missing, unreadable, ...).
    #[error("{path}: cannot {action} the file: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no data rows (it is empty, or holds only a header or blank lines).
    #[error("{path}: no data rows{}", empty_note(.header))]
    Empty { path: PathBuf, header: bool },
    /// A cell that does not parse as a number.
    #[error("{path}: row {row}, {column}: {} is not a number", cell_text(.cell))]
    NotANumber {
        path: PathBuf,
        row: usize,
        column: ColumnRef,
        cell: String,
    },
    /// NaN or an infinity in the data.
    #[error("{path}: row {row}, {column}: `{cell}` is not finite ({kind})")]
    NonFinite {
        path: PathBuf,
        row: usize,
        column: ColumnRef,
        /// The cell as written in the file (CSV) or as formatted (NPY).
        cell: String,
        kind: NonFinite,
    },
    /// A row with a different number of cells from the first row.
    #[error("{path}: row {row} has {got} columns, earlier rows have {expected}")]
    Ragged {
        path: PathBuf,
        row: usize,
        expected: usize,
        got: usize,
    },
    /// A CSV line whose quoted cell is not closed on that line.
    #[error("{path}: row {row}: a quoted cell is not closed (cells cannot span lines)")]
    UnclosedQuote { path: PathBuf, row: usize },
    /// A column selected by a name that the header does not have.
    #[error("{path}: no column is named `{name}`; the columns are {available}")]
    UnknownColumn {
        path: PathBuf,
        name: String,
        /// The header's names, quoted and comma-separated.
        available: String,
    },
    /// A column selected by name in a file without a header.
    #[error(
        "{path}: column `{name}` is selected by name, but the file has no header \
         (select columns by index, counting from 0)"
    )]
    NoHeader { path: PathBuf, name: String },
    /// A column index past the last column.
    #[error(
        "{path}: column index {index} is out of range: the file has {cols} columns \
         (indices 0 to {})", .cols.saturating_sub(1)
    )]
    ColumnOutOfRange {
        path: PathBuf,
        index: usize,
        cols: usize,
    },
    /// An empty list of columns to select, or a file with zero columns.
    #[error("{path}: no columns to read")]
    NoColumns { path: PathBuf },
    /// A file that does not start with the NPY magic string.
    #[error("{path}: not an NPY file: it does not start with the magic string `\\x93NUMPY`")]
    NpyMagic { path: PathBuf },
    /// An NPY format version other than 1.0, 2.0 and 3.0.
    #[error("{path}: unsupported NPY format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")]
    NpyVersion { path: PathBuf, major: u8, minor: u8 },
    /// An NPY header that cannot be parsed.
    #[error("{path}: bad NPY header: {message}")]
    NpyHeader { path: PathBuf, message: String },
    /// An NPY file with fewer data bytes than its header promises.
    #[error(
        "{path}: the data is truncated: shape {} of `{descr}` needs {expected} bytes, \
         the file holds {actual}", shape_text(.shape)
    )]
    Truncated {
        path: PathBuf,
        shape: Vec<usize>,
        descr: String,
        expected: u64,
        actual: u64,
    },
    /// An NPY element type this reader does not convert.
    #[error(
        "{path}: unsupported dtype `{descr}` (supported: f8 f4 i8 i4 i2 i1 u8 u4 u2 u1 b1, \
         little- or big-endian)"
    )]
    UnsupportedDtype { path: PathBuf, descr: String },
    /// An NPY array that is not 1-D or 2-D.
    #[error(
        "{path}: the array has shape {} ({} dimensions); only 1-D and 2-D arrays can be read",
        shape_text(.shape), .shape.len()
    )]
    UnsupportedShape { path: PathBuf, shape: Vec<usize> },
    /// A file whose extension names no supported format.
    #[error("{path}: unsupported file type; supported extensions: .csv, .npy")]
    UnsupportedExtension { path: PathBuf },
    /// A file that is not text where text is expected.
    #[error("{path}: row {row}: the file is not valid UTF-8 text")]
    NotUtf8 { path: PathBuf, row: usize },
    /// A column [`dequantize`](super::dequantize) was asked to treat as integer-valued that
    /// holds a non-integer.
    #[error("{column} is not integer-valued: row {row} holds {value}")]
    NotInteger {
        column: ColumnRef,
        row: usize,
        value: f64,
    },
    /// Arguments that do not fit together (shapes, fractions, widths).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn empty_note(header: &bool) -> &'static str {
    if *header {
        " (only a header line)"
    } else {
        " (the file is empty or blank)"
    }
}

fn cell_text(cell: &str) -> String {
    if cell.is_empty() {
        "an empty cell".to_string()
    } else {
        format!("`{cell}`")
    }
}

/// `(3, 4)`, `(5,)` or `()`, as NumPy writes shapes.
pub(crate) fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

impl Error {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
