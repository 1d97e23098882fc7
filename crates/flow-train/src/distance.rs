//! Distances between samples: how close a model's samples are to the data when its density
//! cannot be compared directly.

use crate::error::{Error, Result};

/// The 2-Wasserstein distance between two equal-size empirical distributions of `dim`
/// features (row-major): `sqrt(min over pairings of mean |a_i - b_p(i)|^2)`, the optimal
/// pairing solved exactly ([`flow_layers::assignment::solve`]). torchcfm's `wasserstein`
/// (POT's `emd2` on squared distances, then the square root) computes the same.
///
/// ```
/// use flow_train::distance::wasserstein2;
/// // Two points each, shifted by (3, 4): the distance is 5 whichever way they are listed.
/// let a = [0.0, 0.0, 1.0, 1.0];
/// let b = [4.0, 5.0, 3.0, 4.0];
/// assert!((wasserstein2(&a, &b, 2)? - 5.0).abs() < 1e-12);
/// # Ok::<(), flow_train::Error>(())
/// ```
pub fn wasserstein2(a: &[f64], b: &[f64], dim: usize) -> Result<f64> {
    if dim == 0 || a.len() != b.len() || a.len() % dim != 0 || a.is_empty() {
        return Err(Error::Config(format!(
            "a 2-Wasserstein distance needs two equal, nonempty sets of {dim}-feature rows, got \
             {} and {} values",
            a.len(),
            b.len()
        )));
    }
    let n = a.len() / dim;
    let cost = flow_layers::assignment::squared_distances(a, b, dim);
    let plan = flow_layers::assignment::solve(&cost, n)?;
    Ok((plan.total(&cost) / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_at_distance_zero_from_its_shuffle_and_a_shift_away_from_its_shift() {
        let a: Vec<f64> = flow_core::random::standard_normals(600, &mut flow_core::rng(1));
        let mut rows: Vec<&[f64]> = a.chunks(3).collect();
        rows.reverse();
        let shuffled: Vec<f64> = rows.concat();
        assert!(wasserstein2(&a, &shuffled, 3).unwrap() < 1e-12);
        let shifted: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(k, v)| v + [1.0, 2.0, 2.0][k % 3])
            .collect();
        assert!((wasserstein2(&a, &shifted, 3).unwrap() - 3.0).abs() < 1e-12);
        assert!(wasserstein2(&a, &a[..300], 3).is_err());
    }
}
