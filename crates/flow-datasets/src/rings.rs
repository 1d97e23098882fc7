//! Concentric noisy circles: FFJORD's `rings` and `circles` (scikit-learn's
//! `make_circles` as FFJORD scales it).
//!
//! Both are equal-weight mixtures of circles of radius `R_j` around the origin, each
//! point at a uniform angle and blurred by isotropic Gaussian noise of standard
//! deviation `sigma`:
//! `x = R_J (cos T, sin T) + sigma e`, `J` uniform over the circles, `T ~ U[0, 2 pi)`,
//! `e ~ N(0, I_2)`.
//!
//! FFJORD's batches put a fixed share of the points on each circle and space their
//! angles evenly (`np.linspace(0, 2 pi, m, endpoint=False)`, then a shuffle): a
//! stratified batch from the distribution above. `sample` draws from that distribution
//! i.i.d. instead, which is what a density (and a training loss) refers to; the
//! moments and the density are those of any FFJORD batch's large-batch limit.
//!
//! Unlike noisy arcs (moons, swiss roll, spirals), a full circle with a uniform angle
//! and isotropic noise has a closed-form density: integrating the Gaussian over the
//! angle gives the Rice density
//! `p_j(x) = exp(-(|x|^2 + R_j^2) / (2 sigma^2)) I0(|x| R_j / sigma^2) / (2 pi sigma^2)`,
//! with `I0` the modified Bessel function of order 0. It is evaluated in log space as
//! `-(|x| - R_j)^2 / (2 sigma^2) + ln(I0(z) e^{-z}) - ln(2 pi sigma^2)`, `z = |x| R_j / sigma^2`,
//! which stays finite where `I0` alone would overflow.

use crate::special::{ln_bessel_i0e, log_sum_exp, std_normal, LN_2PI};
use crate::ToyDensity;
use flow_core::FlowRng;
use rand::Rng;
use std::f64::consts::TAU;

/// `ln p(x)` of the equal-weight mixture of noisy circles (at most 4).
fn ring_mixture_log_prob(x: &[f64], radii: &[f64], sigma: f64) -> f64 {
    let rho = x[0].hypot(x[1]);
    let var = sigma * sigma;
    let mut terms = [f64::NEG_INFINITY; 4];
    for (term, &r) in terms.iter_mut().zip(radii) {
        *term = -(rho - r).powi(2) / (2.0 * var) + ln_bessel_i0e(rho * r / var);
    }
    log_sum_exp(&terms[..radii.len()]) - (radii.len() as f64).ln() - LN_2PI - var.ln()
}

/// `n` i.i.d. points of the equal-weight mixture of noisy circles.
fn ring_mixture_sample(n: usize, radii: &[f64], sigma: f64, rng: &mut FlowRng) -> Vec<f64> {
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let r = radii[rng.random_range(0..radii.len())];
        let (sin, cos) = (TAU * rng.random::<f64>()).sin_cos();
        out.push(r * cos + sigma * std_normal(rng));
        out.push(r * sin + sigma * std_normal(rng));
    }
    out
}

/// FFJORD's `rings`: four noisy circles of radii 3, 2.25, 1.5 and 0.75.
///
/// Definition (FFJORD `lib/toy_data.py`, `inf_train_gen("rings")`): circles of radius
/// 1, 0.75, 0.5 and 0.25 with a quarter of the points each, scaled by 3, then
/// `N(0, 0.08^2)` noise added to each coordinate (after the scaling, so `sigma = 0.08`).
/// The density is the mixture of the module documentation with `R = 3, 2.25, 1.5, 0.75`
/// and weights 1/4.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rings;

impl Rings {
    /// The radii, outermost first.
    pub const RADII: [f64; 4] = [3.0, 2.25, 1.5, 0.75];
    /// Per-axis noise standard deviation.
    pub const SIGMA: f64 = 0.08;
    /// Differential entropy in nats. The density is radial, so
    /// `H = -int_0^inf p(r) ln p(r) 2 pi r dr`: Simpson's rule on `[0, 3 + 20 sigma]`
    /// with 1000, 4000, 16000 and 64000 intervals agrees to 1e-14 (`tests/toy_densities.rs`
    /// recomputes it). The rings are 9 noise deviations apart, so this is close to the
    /// disjoint-rings value `ln 4 + mean_j ln(2 pi R_j) + ln(2 pi e sigma^2) / 2`.
    pub const ENTROPY: f64 = 2.623_182_770_300;
}

impl ToyDensity for Rings {
    fn name(&self) -> &'static str {
        "rings"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        ring_mixture_sample(n, &Self::RADII, Self::SIGMA, rng)
    }

    fn log_prob(&self, x: &[f64]) -> Option<f64> {
        Some(ring_mixture_log_prob(x, &Self::RADII, Self::SIGMA))
    }

    fn entropy(&self) -> Option<f64> {
        Some(Self::ENTROPY)
    }

    /// `[-4, 4]^2` (FFJORD's box): its edges are 12 noise standard deviations outside
    /// the outer ring, so all the mass is inside.
    fn plot_range(&self) -> (f64, f64) {
        (-4.0, 4.0)
    }
}

/// FFJORD's `circles`: scikit-learn's `make_circles(factor=0.5, noise=0.08)`, scaled by 3.
///
/// Definition: `make_circles` puts half the points on the unit circle and half on the
/// circle of radius `factor = 0.5` and adds `N(0, 0.08^2)` noise per coordinate; FFJORD
/// then multiplies by 3. So `R = 3, 1.5` with weights 1/2, and the noise, added before
/// the scaling, has `sigma = 3 * 0.08 = 0.24`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Circles;

impl Circles {
    /// The radii, outer first.
    pub const RADII: [f64; 2] = [3.0, 1.5];
    /// Per-axis noise standard deviation (scikit-learn's 0.08, times FFJORD's 3).
    pub const SIGMA: f64 = 0.24;
    /// Differential entropy in nats, by the same radial quadrature as [`Rings::ENTROPY`]
    /// (Simpson on `[0, 3 + 20 sigma]`; 1000 to 64000 intervals agree to 1e-13).
    pub const ENTROPY: f64 = 3.268_135_711_706;
}

impl ToyDensity for Circles {
    fn name(&self) -> &'static str {
        "circles"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        ring_mixture_sample(n, &Self::RADII, Self::SIGMA, rng)
    }

    fn log_prob(&self, x: &[f64]) -> Option<f64> {
        Some(ring_mixture_log_prob(x, &Self::RADII, Self::SIGMA))
    }

    fn entropy(&self) -> Option<f64> {
        Some(Self::ENTROPY)
    }

    /// `[-4.5, 4.5]^2`: 6.25 noise standard deviations beyond the outer circle, leaving
    /// 2e-11 of the mass outside (FFJORD's `[-4, 4]^2` cuts 1.6e-6).
    fn plot_range(&self) -> (f64, f64) {
        (-4.5, 4.5)
    }
}
