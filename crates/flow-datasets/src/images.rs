//! Image data sets for flows: an IDX reader (MNIST, Fashion-MNIST), the built-in
//! [`fashion_mnist`] and [`mnist`] sets, and RealNVP's pixel preprocessing with the
//! bookkeeping that turns a flow's log-density into bits per dimension.
//!
//! # Preprocessing and bits/dim
//!
//! Following RealNVP (Dinh et al. 2017, section 4.1), everything stays in pixel units:
//!
//! 1. Dequantise: a pixel `k ∈ {0, …, 255}` becomes `x = k + u`, `u ~ U[0, 1)`
//!    ([`ImageSet::dequantized`], [`dequantize_pixels`]), so `x ∈ [0, 256)^D` and, since each
//!    bin `[k, k + 1)` has volume 1, `log P(k) ≥ E_u[log p(x)]` for any density `p` of `x`.
//! 2. Logit: `y = logit(s)`, `s = alpha + (1 - 2 alpha) x / 256` ([`LogitTransform`],
//!    default `alpha = 1e-6` for MNIST-like data, [`CIFAR_ALPHA`]` = 0.05` as RealNVP used
//!    for natural images), which maps the bounded pixels onto the whole real line where a
//!    flow's Gaussian base lives.
//! 3. The flow models `y`. Its log-density gives that of `x` by the change of variables:
//!    `log p(x) = log p_model(y) + Σ_i log |dy_i/dx_i|`, with
//!    `dy/dx = (1 - 2 alpha) / (256 s (1 - s))`, so each feature contributes
//!    `log(1 - 2 alpha) - log 256 - log s - log(1 - s)`
//!    ([`LogitTransform::log_det_rows`]).
//! 4. Report `-log p(x)` (nats per image) as `bits/dim = NLL / (D ln 2)` ([`bits_per_dim`]):
//!    the standard discrete bits/dim of the 8-bit images, comparable with published
//!    numbers (uniform noise over the 256 levels would score exactly 8).
//!
//! ```no_run
//! use flow_datasets::images::{self, LogitTransform, Part};
//! # fn main() -> Result<(), images::Error> {
//! let train = images::fashion_mnist(Part::Train)?;          // 60,000 × 28 × 28
//! let mut x = train.take(1000).dequantized(&mut flow_core::rng(0));
//! let logit = LogitTransform::default();
//! let log_det = logit.log_det_rows(&x, train.dim());        // before transforming x
//! logit.forward_rows(&mut x);                               // now the flow's input
//! # let _ = log_det;
//! # Ok(())
//! # }
//! ```
//!
//! # Where the files are
//!
//! | set | directory | files |
//! |---|---|---|
//! | Fashion-MNIST | `$FLOWS_FASHION_MNIST_DIR`, else `/usr/share/datasets/fashion-mnist` (Debian: `apt-get install dataset-fashion-mnist`) | `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each with or without `.gz` |
//! | MNIST | `$FLOWS_MNIST_DIR`, else `/usr/share/datasets/mnist` (no Debian package: download the four files from <http://yann.lecun.com/exdb/mnist/> or a mirror) | the same names |
//!
//! Measured on Debian's `dataset-fashion-mnist`: 60,000 training and 10,000 test images of
//! 28 × 28, 6,000 (resp. 1,000) of each of the 10 labels, training pixel mean
//! 72.940352 (3,431,114,169 / 47,040,000), test pixel mean 73.146567.

mod error;
mod idx;
mod logit;

pub use error::{Error, Result};
pub use idx::{
    dequantize_pixels, idx_images_bytes, idx_labels_bytes, read_idx_images, read_idx_labels,
    read_idx_pair, ImageSet, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
};
pub use logit::{bits_per_dim, LogitTransform, CIFAR_ALPHA, MNIST_ALPHA};

use std::path::{Path, PathBuf};

/// Which part of a data set with an official train / test division.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The training part (60,000 images for MNIST and Fashion-MNIST).
    Train,
    /// The test part (10,000 images for MNIST and Fashion-MNIST).
    Test,
}

impl Part {
    /// The prefix of the IDX file names: `train` or `t10k`.
    pub fn idx_prefix(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Test => "t10k",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Part::Train => "training",
            Part::Test => "test",
        }
    }
}

/// Where a built-in IDX data set lives and how to get it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdxSource {
    pub(crate) name: &'static str,
    /// The environment variable naming the directory (`None` for a directory given).
    pub(crate) env: Option<&'static str>,
    pub(crate) default_dir: &'static str,
    pub(crate) how_to_get: &'static str,
}

pub(crate) const FASHION_MNIST: IdxSource = IdxSource {
    name: "Fashion-MNIST",
    env: Some("FLOWS_FASHION_MNIST_DIR"),
    default_dir: "/usr/share/datasets/fashion-mnist",
    how_to_get: "install it with `apt-get install dataset-fashion-mnist` (Debian)",
};

pub(crate) const MNIST: IdxSource = IdxSource {
    name: "MNIST",
    env: Some("FLOWS_MNIST_DIR"),
    default_dir: "/usr/share/datasets/mnist",
    how_to_get: "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
                 t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from \
                 http://yann.lecun.com/exdb/mnist/ (or a mirror) into it",
};

impl IdxSource {
    /// The directory to read: the environment variable's value when set and not empty,
    /// else the default.
    fn dir(&self) -> PathBuf {
        match self.env.and_then(std::env::var_os) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(self.default_dir),
        }
    }

    fn hint(&self, dir: &Path) -> String {
        const FILES: &str = "train-images-idx3-ubyte, train-labels-idx1-ubyte, \
                             t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, \
                             each with or without .gz";
        let Some(env) = self.env else {
            return format!("{} must hold the IDX files {FILES}", dir.display());
        };
        let from_env = std::env::var_os(env).is_some_and(|d| !d.is_empty());
        let place = if from_env {
            format!("{env} is set to {}", dir.display())
        } else {
            format!(
                "{env} is not set, so the default {} was used",
                dir.display()
            )
        };
        format!(
            "{place}; {} or set {env} to a directory holding the IDX files ({FILES})",
            self.how_to_get
        )
    }

    /// `dir/base` or `dir/base.gz`, whichever exists (the plain name first).
    fn find(&self, dir: &Path, base: &str, what: String) -> Result<PathBuf> {
        if !dir.is_dir() {
            return Err(Error::NotFound {
                dataset: self.name,
                what: "the directory".into(),
                tried: vec![dir.into()],
                hint: self.hint(dir),
            });
        }
        let tried = vec![dir.join(base), dir.join(format!("{base}.gz"))];
        match tried.iter().find(|p| p.is_file()) {
            Some(p) => Ok(p.clone()),
            None => Err(Error::NotFound {
                dataset: self.name,
                what,
                tried,
                hint: self.hint(dir),
            }),
        }
    }

    pub(crate) fn images(&self, part: Part) -> Result<ImageSet> {
        self.images_in(&self.dir(), part)
    }

    pub(crate) fn images_in(&self, dir: &Path, part: Part) -> Result<ImageSet> {
        let base = format!("{}-images-idx3-ubyte", part.idx_prefix());
        let path = self.find(dir, &base, format!("the {} images", part.describe()))?;
        read_idx_images(path)
    }

    pub(crate) fn labeled_in(&self, dir: &Path, part: Part) -> Result<(ImageSet, Vec<u8>)> {
        let images = format!("{}-images-idx3-ubyte", part.idx_prefix());
        let labels = format!("{}-labels-idx1-ubyte", part.idx_prefix());
        let images = self.find(dir, &images, format!("the {} images", part.describe()))?;
        let labels = self.find(dir, &labels, format!("the {} labels", part.describe()))?;
        read_idx_pair(images, labels)
    }
}

/// The Fashion-MNIST images of `part` (Xiao et al. 2017; 60,000 training, 10,000 test
/// images of 28 × 28 grey-scale pixels), read from `$FLOWS_FASHION_MNIST_DIR` or else
/// `/usr/share/datasets/fashion-mnist` (`apt-get install dataset-fashion-mnist`), each file
/// with or without `.gz`. A missing directory or file is an error listing the paths tried
/// and how to get them.
///
/// ```no_run
/// use flow_datasets::images::{fashion_mnist, Part};
/// let test = fashion_mnist(Part::Test)?;
/// assert_eq!((test.count(), test.dim()), (10_000, 784));
/// # Ok::<(), flow_datasets::images::Error>(())
/// ```
pub fn fashion_mnist(part: Part) -> Result<ImageSet> {
    FASHION_MNIST.images(part)
}

/// The Fashion-MNIST images of `part` with their labels (0 to 9: T-shirt/top, trouser,
/// pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot), from where
/// [`fashion_mnist`] looks.
pub fn fashion_mnist_labeled(part: Part) -> Result<(ImageSet, Vec<u8>)> {
    FASHION_MNIST.labeled_in(&FASHION_MNIST.dir(), part)
}

/// The MNIST digits of `part` (60,000 training, 10,000 test images of 28 × 28), read from
/// `$FLOWS_MNIST_DIR` or else `/usr/share/datasets/mnist` (Debian has no package: download
/// the four IDX files from <http://yann.lecun.com/exdb/mnist/> or a mirror), each file with
/// or without `.gz`.
///
/// ```no_run
/// use flow_datasets::images::{mnist, Part};
/// let train = mnist(Part::Train)?;
/// assert_eq!((train.count(), train.height(), train.width()), (60_000, 28, 28));
/// # Ok::<(), flow_datasets::images::Error>(())
/// ```
pub fn mnist(part: Part) -> Result<ImageSet> {
    MNIST.images(part)
}

/// The MNIST images of `part` with their labels (the digits 0 to 9).
pub fn mnist_labeled(part: Part) -> Result<(ImageSet, Vec<u8>)> {
    MNIST.labeled_in(&MNIST.dir(), part)
}

/// The images of `part` (and their labels) from an MNIST-layout directory `dir`: the files
/// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`, each with or without `.gz`. Use it for other sets stored the
/// same way (KMNIST, EMNIST, a local copy).
pub fn read_idx_dir(dir: impl AsRef<Path>, part: Part) -> Result<(ImageSet, Vec<u8>)> {
    let source = IdxSource {
        name: "IDX data set",
        env: None,
        default_dir: "",
        how_to_get: "",
    };
    source.labeled_in(dir.as_ref(), part)
}
