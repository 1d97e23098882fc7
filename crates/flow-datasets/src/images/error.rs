//! Errors of reading image data sets. Every error about a file names the file.

use std::path::PathBuf;

/// What went wrong reading IDX files or finding a built-in image data set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read (missing, unreadable, ...).
    #[error("{path}: cannot {action} the file: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no bytes at all.
    #[error("{path}: the file is empty (expected an IDX {kind} file)")]
    Empty { path: PathBuf, kind: &'static str },
    /// A gzip-compressed file (it starts with `1f 8b`) that does not decompress.
    #[error("{path}: the gzip stream is corrupt or truncated: {source}")]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that does not start with the expected IDX magic number.
    #[error(
        "{path}: bad magic number 0x{found:08x}{}: expected 0x{expected:08x} \
         (IDX {kind}: unsigned bytes, {} dimensions)",
        magic_note(*.found), .expected & 0xff
    )]
    Magic {
        path: PathBuf,
        kind: &'static str,
        expected: u32,
        found: u32,
    },
    /// A file shorter than its header.
    #[error(
        "{path}: the header is truncated: expected {expected} bytes, got {got}{}",
        gz_note(*.gzip)
    )]
    TruncatedHeader {
        path: PathBuf,
        expected: usize,
        got: usize,
        gzip: bool,
    },
    /// A file whose data is shorter than its header's dimensions promise.
    #[error(
        "{path}: the data is truncated: expected {expected} bytes after the {header}-byte \
         header for shape {}, got {got}{}",
        dims_text(.shape), gz_note(*.gzip)
    )]
    Truncated {
        path: PathBuf,
        shape: Vec<u32>,
        header: usize,
        expected: u64,
        got: u64,
        gzip: bool,
    },
    /// A file with more bytes than its header's dimensions account for.
    #[error(
        "{path}: trailing data: expected {expected} bytes after the {header}-byte header \
         for shape {}, got {got}{}",
        dims_text(.shape), gz_note(*.gzip)
    )]
    TrailingData {
        path: PathBuf,
        shape: Vec<u32>,
        header: usize,
        expected: u64,
        got: u64,
        gzip: bool,
    },
    /// A header with a zero dimension (no images, or images of zero rows or columns).
    #[error("{path}: the header's dimensions {} include a zero", dims_text(.shape))]
    ZeroDimension { path: PathBuf, shape: Vec<u32> },
    /// Images and labels that do not pair up.
    #[error("{images_path} holds {images} images but {labels_path} holds {labels} labels")]
    CountMismatch {
        images_path: PathBuf,
        labels_path: PathBuf,
        images: usize,
        labels: usize,
    },
    /// A built-in data set whose files are not where they were looked for.
    #[error("{dataset}: cannot find {what}; tried {}. {hint}", paths_text(.tried))]
    NotFound {
        /// The data set (`Fashion-MNIST`).
        dataset: &'static str,
        /// What was looked for (`the directory`, `the training images`).
        what: String,
        tried: Vec<PathBuf>,
        /// How to get the files.
        hint: String,
    },
    /// Arguments that do not fit together (shapes, sizes).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn magic_note(found: u32) -> &'static str {
    match found {
        0x0000_0801 => " (an IDX label file)",
        0x0000_0803 => " (an IDX image file)",
        0x1f8b_0000..=0x1f8b_ffff => " (gzip inside gzip?)",
        _ => "",
    }
}

fn gz_note(gzip: bool) -> &'static str {
    if gzip {
        " (after gzip decompression)"
    } else {
        ""
    }
}

/// `[60000, 28, 28]`.
pub(crate) fn dims_text(shape: &[u32]) -> String {
    let dims: Vec<String> = shape.iter().map(u32::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn paths_text(paths: &[PathBuf]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    paths.join(", ")
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
