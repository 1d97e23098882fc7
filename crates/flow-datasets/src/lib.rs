//! # flow-datasets
//!
//! Densities and data sets to train and test flows on. Each toy density samples with an
//! explicit, seeded generator and, where it has one, reports its normalised log-density and
//! entropy (the floor of any model's test NLL).
//!
//! The 2-D toy densities, by the names `flows train --dataset` takes:
//!
//! | name | definition | `log_prob` | entropy (nats) |
//! |---|---|---|---|
//! | `two-moons` | normflows' `TwoMoons` | closed form | 1.5711 (quadrature) |
//! | `8gaussians` | FFJORD | Gaussian mixture | 2.8319 (quadrature) |
//! | `checkerboard` | FFJORD | `-ln 32` on the squares, `-inf` off | 3.4657 = `ln 32` |
//! | `rings` | FFJORD | Bessel-`I0` closed form | 2.6232 (radial quadrature) |
//! | `circles` | scikit-learn `make_circles`, FFJORD's scaling | Bessel-`I0` closed form | 3.2681 (radial quadrature) |
//! | `moons` | scikit-learn `make_moons`, FFJORD's scaling | none | unknown |
//! | `swissroll` | scikit-learn `make_swiss_roll`, FFJORD's projection | none | unknown |
//! | `2spirals` | FFJORD | none | unknown |
//! | `pinwheel` | FFJORD | exact sum over preimages (root finding) | 2.3178 (quadrature) |
//!
//! FFJORD (`lib/toy_data.py` of rtqichen/ffjord) draws some of them as stratified batches
//! (evenly spaced angles, fixed counts per component); `sample` draws the distribution
//! those batches come from i.i.d., which is what the density and the entropy describe.
//! Each module documents its exact generative definition.
//!
//! ```
//! use flow_datasets::{by_name, ToyDensity};
//! let moons = by_name("two-moons").unwrap();
//! let x = moons.sample(1000, &mut flow_core::rng(0));   // 1000 rows of 2 features
//! assert_eq!(x.len(), 2000);
//! assert!(moons.entropy().unwrap() > 1.5);
//! ```
//!
//! ## Real data sets
//!
//! Besides CSV and `.npy` files ([`tabular`]), the built-in real data sets ([`real`], by the
//! names in [`REAL_NAMES`]) are:
//!
//! | name | what | size | source |
//! |---|---|---|---|
//! | `wine-quality` | UCI red wine quality, 11 physico-chemical features ([`wine`]) | 1,599 rows, no test part | compiled in (UCI, CC BY 4.0) |
//! | `fashion-mnist` | Fashion-MNIST, 28 × 28 grey-scale ([`images`]) | 60,000 train, 10,000 test | `apt-get install dataset-fashion-mnist`, or `FLOWS_FASHION_MNIST_DIR` |
//! | `mnist` | MNIST digits, 28 × 28 grey-scale ([`images`]) | 60,000 train, 10,000 test | IDX files in `/usr/share/datasets/mnist`, or `FLOWS_MNIST_DIR` |
//!
//! Images are modelled as in RealNVP: dequantised in pixel units, logit-transformed
//! ([`LogitTransform`]), with the transform's log-determinant added back so that NLLs
//! come out as the standard bits per dimension ([`images::bits_per_dim`]).

pub mod checkerboard;
pub mod eight_gaussians;
pub mod images;
pub mod moons;
pub mod pinwheel;
pub mod real;
pub mod rings;
pub mod special;
pub mod swiss_roll;
pub mod tabular;
pub mod two_moons;
pub mod two_spirals;
pub mod wine;

pub use checkerboard::Checkerboard;
pub use eight_gaussians::EightGaussians;
pub use images::{ImageSet, LogitTransform, Part};
pub use moons::Moons;
pub use pinwheel::Pinwheel;
pub use real::{load_real, real_info, RealData, RealInfo, REAL_NAMES};
pub use rings::{Circles, Rings};
pub use swiss_roll::SwissRoll;
pub use two_moons::TwoMoons;
pub use two_spirals::TwoSpirals;
pub use wine::wine_quality;

use flow_core::FlowRng;

/// A density to learn: sampled from, and (where known) evaluated.
pub trait ToyDensity: Send + Sync + std::fmt::Debug {
    /// The name the command line uses (`two-moons`).
    fn name(&self) -> &'static str;
    fn dim(&self) -> usize;
    /// `n` samples, row-major (`n * dim` values).
    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64>;
    /// The normalised log-density at one point, where it has a closed form.
    fn log_prob(&self, x: &[f64]) -> Option<f64>;
    /// Differential entropy in nats: the lowest NLL any model can reach.
    fn entropy(&self) -> Option<f64>;
    /// A box that holds (almost) all the mass, for plots: `(min, max)` per axis.
    fn plot_range(&self) -> (f64, f64);
}

/// The built-in densities' names.
pub const NAMES: &[&str] = &[
    "two-moons",
    "8gaussians",
    "checkerboard",
    "rings",
    "circles",
    "moons",
    "swissroll",
    "2spirals",
    "pinwheel",
];

/// The built-in density called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn ToyDensity>> {
    match name {
        "two-moons" => Some(Box::new(TwoMoons)),
        "8gaussians" => Some(Box::new(EightGaussians)),
        "checkerboard" => Some(Box::new(Checkerboard)),
        "rings" => Some(Box::new(Rings)),
        "circles" => Some(Box::new(Circles)),
        "moons" => Some(Box::new(Moons)),
        "swissroll" => Some(Box::new(SwissRoll)),
        "2spirals" => Some(Box::new(TwoSpirals)),
        "pinwheel" => Some(Box::new(Pinwheel)),
        _ => None,
    }
}
