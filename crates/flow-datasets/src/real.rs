//! The registry of built-in real data sets, by the names the `flows` command line takes:
//! what each one is ([`real_info`], without loading anything) and its data ([`load_real`]).
//!
//! | name | what | train rows | dim | needs |
//! |---|---|---|---|---|
//! | `wine-quality` | UCI red wine quality, 11 features (module [`crate::wine`]) | 1,599 (no test part) | 11 | nothing: compiled in |
//! | `fashion-mnist` | Fashion-MNIST, 28 × 28 grey-scale | 60,000 (test 10,000) | 784 | `apt-get install dataset-fashion-mnist` or `FLOWS_FASHION_MNIST_DIR` |
//! | `mnist` | MNIST digits, 28 × 28 grey-scale | 60,000 (test 10,000) | 784 | the IDX files in `/usr/share/datasets/mnist` or `FLOWS_MNIST_DIR` |
//!
//! ```no_run
//! use flow_datasets::real::{load_real, real_info, RealData, REAL_NAMES};
//! use flow_datasets::images::Part;
//! for name in REAL_NAMES {
//!     let info = real_info(name).unwrap();
//!     println!("{name}: {} rows of {} features — {}", info.rows, info.dim, info.description);
//! }
//! match load_real("wine-quality", Part::Train)? {
//!     RealData::Table(table) => assert_eq!(table.cols(), 11),
//!     RealData::Images(_) => unreachable!(),
//! }
//! # Ok::<(), flow_datasets::real::Error>(())
//! ```

use crate::images::{self, ImageSet, Part};
use crate::tabular::{self, Table};
use crate::wine;

/// The built-in real data sets' names.
pub const REAL_NAMES: &[&str] = &["wine-quality", "fashion-mnist", "mnist"];

/// A loaded real data set.
#[derive(Debug, Clone, PartialEq)]
pub enum RealData {
    /// Rows of `f64` features with column names.
    Table(Table),
    /// 8-bit grey-scale images (dequantise and logit-transform them before a flow sees them:
    /// see [`images`]).
    Images(ImageSet),
}

impl RealData {
    /// Rows (tables) or images.
    pub fn rows(&self) -> usize {
        match self {
            RealData::Table(t) => t.rows(),
            RealData::Images(i) => i.count(),
        }
    }

    /// Features per row: columns, or pixels per image.
    pub fn dim(&self) -> usize {
        match self {
            RealData::Table(t) => t.cols(),
            RealData::Images(i) => i.dim(),
        }
    }
}

/// What a built-in real data set is, known without loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealInfo {
    /// The name in [`REAL_NAMES`].
    pub name: &'static str,
    /// Rows (images) of the training part; for a set without a test part, all rows.
    pub rows: usize,
    /// Features per row (pixels per image).
    pub dim: usize,
    /// `(height, width)` of an image; `None` for tables.
    pub image: Option<(usize, usize)>,
    /// A one-line description with the source.
    pub description: &'static str,
    /// What to install or set before it loads; `None` when it is compiled in.
    pub needs: Option<&'static str>,
    /// Whether it has an official test part ([`Part::Test`]).
    pub has_test: bool,
}

/// Loading a real data set failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name not in [`REAL_NAMES`].
    #[error(
        "unknown real data set `{name}`; the built-in ones are {}",
        known_text()
    )]
    UnknownName { name: String },
    /// [`Part::Test`] of a set without an official test part.
    #[error(
        "`{name}` has no official test part: load Part::Train (all {rows} rows) and hold out \
         a test set with a split (tabular::Split)"
    )]
    NoTestPart { name: &'static str, rows: usize },
    /// Reading an image set failed.
    #[error(transparent)]
    Images(#[from] images::Error),
    /// Building a table failed.
    #[error(transparent)]
    Table(#[from] tabular::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn known_text() -> String {
    let names: Vec<String> = REAL_NAMES.iter().map(|n| format!("`{n}`")).collect();
    names.join(", ")
}

/// What the built-in real data set `name` is, without loading it; `None` for an unknown
/// name.
///
/// ```
/// let info = flow_datasets::real::real_info("fashion-mnist").unwrap();
/// assert_eq!((info.rows, info.dim, info.image), (60_000, 784, Some((28, 28))));
/// assert!(flow_datasets::real::real_info("cifar").is_none());
/// ```
pub fn real_info(name: &str) -> Option<RealInfo> {
    match name {
        "wine-quality" => Some(RealInfo {
            name: "wine-quality",
            rows: wine::WINE_ROWS,
            dim: wine::WINE_COLUMNS.len(),
            image: None,
            description: "UCI red wine quality, 11 physico-chemical features \
                          (Cortez et al. 2009; CC BY 4.0; compiled in)",
            needs: None,
            has_test: false,
        }),
        "fashion-mnist" => Some(RealInfo {
            name: "fashion-mnist",
            rows: 60_000,
            dim: 784,
            image: Some((28, 28)),
            description: "Fashion-MNIST, 28x28 grey-scale clothing images \
                          (Xiao et al. 2017; IDX files)",
            needs: Some("apt-get install dataset-fashion-mnist (or set FLOWS_FASHION_MNIST_DIR)"),
            has_test: true,
        }),
        "mnist" => Some(RealInfo {
            name: "mnist",
            rows: 60_000,
            dim: 784,
            image: Some((28, 28)),
            description: "MNIST, 28x28 grey-scale handwritten digits (LeCun et al.; IDX files)",
            needs: Some(
                "the MNIST IDX files from http://yann.lecun.com/exdb/mnist/ in \
                 /usr/share/datasets/mnist (or set FLOWS_MNIST_DIR)",
            ),
            has_test: true,
        }),
        _ => None,
    }
}

/// Loads part `part` of the built-in real data set `name`: a [`RealData::Table`] for
/// `wine-quality` (which has no official test part: [`Part::Test`] is an error saying to
/// hold one out with a split), [`RealData::Images`] for `fashion-mnist` and `mnist` (read as
/// [`images::fashion_mnist`] and [`images::mnist`] do). An unknown name is an error listing
/// the known ones.
///
/// ```
/// use flow_datasets::real::{load_real, RealData};
/// use flow_datasets::images::Part;
/// let wine = load_real("wine-quality", Part::Train).unwrap();
/// assert_eq!((wine.rows(), wine.dim()), (1599, 11));
/// assert!(load_real("wine-quality", Part::Test).is_err());
/// ```
pub fn load_real(name: &str, part: Part) -> Result<RealData> {
    match name {
        "wine-quality" => match part {
            Part::Train => Ok(RealData::Table(wine::wine_quality()?)),
            Part::Test => Err(Error::NoTestPart {
                name: "wine-quality",
                rows: wine::WINE_ROWS,
            }),
        },
        "fashion-mnist" => Ok(RealData::Images(images::fashion_mnist(part)?)),
        "mnist" => Ok(RealData::Images(images::mnist(part)?)),
        _ => Err(Error::UnknownName { name: name.into() }),
    }
}
