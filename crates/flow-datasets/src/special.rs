//! Numerical helpers the toy densities share: a stable log-sum-exp, the Gaussian
//! log-density, and the exponentially scaled modified Bessel function `I0`, which the
//! closed forms of the ring densities need.

use flow_core::FlowRng;
use rand::Rng;

/// `ln(2 pi)`.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `ln sum exp(v)` without overflow; `-inf` for an empty slice or all `-inf` terms.
pub fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// `ln N(x; mean, std^2)` in one dimension.
#[inline]
pub fn ln_normal(x: f64, mean: f64, std: f64) -> f64 {
    let z = (x - mean) / std;
    -0.5 * z * z - std.ln() - 0.5 * LN_2PI
}

/// A standard normal draw from `rng` (the ziggurat of `rand_distr`: exact, not an
/// approximation such as a sum of uniforms).
#[inline]
pub fn std_normal(rng: &mut FlowRng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

/// `ln(I0(z) e^{-|z|})`, where `I0` is the modified Bessel function of the first kind of
/// order 0, to about 1e-15 relative error in `I0`.
///
/// The scaling keeps it finite where `I0` itself overflows (`z > 713`): the ring
/// densities evaluate it at `z = |x| R / sigma^2`, which reaches the thousands.
///
/// Below `z = 20` it sums the power series `sum_k (z^2/4)^k / (k!)^2` (positive terms,
/// so no cancellation); from 20 on, the asymptotic series
/// `I0(z) e^{-z} ~ (2 pi z)^{-1/2} sum_k ((2k-1)!!)^2 / (k! (8z)^k)`, cut where its
/// terms fall below 1e-17 (they shrink until `k ~ 2z`, so the truncation error there is
/// below `e^{-40}`).
pub fn ln_bessel_i0e(z: f64) -> f64 {
    let z = z.abs();
    if z < 20.0 {
        let q = 0.25 * z * z;
        let (mut term, mut sum) = (1.0_f64, 1.0_f64);
        let mut k = 0.0_f64;
        loop {
            k += 1.0;
            term *= q / (k * k);
            sum += term;
            if term < 1e-17 * sum {
                break;
            }
        }
        sum.ln() - z
    } else {
        let (mut term, mut sum) = (1.0_f64, 1.0_f64);
        let mut k = 0.0_f64;
        loop {
            let next = term * (2.0 * k + 1.0).powi(2) / (8.0 * (k + 1.0) * z);
            if next < 1e-17 || next >= term {
                break;
            }
            term = next;
            sum += term;
            k += 1.0;
        }
        sum.ln() - 0.5 * (LN_2PI + z.ln())
    }
}
