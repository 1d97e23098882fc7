//! Seeded randomness. ChaCha8 is used everywhere because its stream is fixed by its
//! algorithm (unlike `StdRng`, which may change between `rand` releases), so a seed
//! reproduces a result across machines and versions.

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng as FlowRng;

/// The project's random number generator, seeded.
pub fn rng(seed: u64) -> FlowRng {
    FlowRng::seed_from_u64(seed)
}
