//! Seeded randomness. ChaCha8 is used everywhere because its stream is fixed by its
//! algorithm (unlike `StdRng`, which may change between `rand` releases), so a seed
//! reproduces a result across machines and versions.

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng as FlowRng;

/// The project's random number generator, seeded.
pub fn rng(seed: u64) -> FlowRng {
    FlowRng::seed_from_u64(seed)
}

/// `n` standard normal draws on the host from `rng`, in order: the numbers the CPU
/// backend's [`crate::Backend::randn`] gives (as f64), for host-side initialisations.
pub fn standard_normals(n: usize, rng: &mut FlowRng) -> Vec<f64> {
    use rand_distr::{Distribution, StandardNormal};
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}
