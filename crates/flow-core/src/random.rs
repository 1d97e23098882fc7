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

/// `n` uniform draws on `[low, high)` on the host from `rng`, in order: the numbers the CPU
/// backend's [`crate::Backend::rand_uniform`] gives (as f64). An error unless `low < high`,
/// both finite.
pub fn uniforms(n: usize, low: f64, high: f64, rng: &mut FlowRng) -> crate::Result<Vec<f64>> {
    use rand_distr::{Distribution, Uniform};
    check_interval(low, high)?;
    let dist = Uniform::new(low, high)
        .map_err(|e| crate::Error::invalid("rand_uniform", format!("[{low}, {high}): {e}")))?;
    Ok((0..n).map(|_| dist.sample(rng)).collect())
}

/// An error unless `[low, high)` is a finite, non-empty interval to draw from.
pub(crate) fn check_interval(low: f64, high: f64) -> crate::Result<()> {
    if low < high && low.is_finite() && high.is_finite() {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            "rand_uniform",
            format!("[{low}, {high}) is not a finite, non-empty interval"),
        ))
    }
}
