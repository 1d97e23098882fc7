//! # flow-datasets
//!
//! Densities and data sets to train and test flows on. Each toy density samples with an
//! explicit, seeded generator and, where it has one, reports its normalised log-density and
//! entropy (the floor of any model's test NLL).
//!
//! ```
//! use flow_datasets::{by_name, ToyDensity};
//! let moons = by_name("two-moons").unwrap();
//! let x = moons.sample(1000, &mut flow_core::rng(0));   // 1000 rows of 2 features
//! assert_eq!(x.len(), 2000);
//! assert!(moons.entropy().unwrap() > 1.5);
//! ```

pub mod two_moons;

pub use two_moons::TwoMoons;

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
pub const NAMES: &[&str] = &["two-moons"];

/// The built-in density called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn ToyDensity>> {
    match name {
        "two-moons" => Some(Box::new(TwoMoons)),
        _ => None,
    }
}
