//! FFJORD's `8gaussians`: eight equal, well separated Gaussians on a circle, the standard
//! test of whether a flow can split its mass into disconnected modes.
//!
//! Definition (FFJORD `lib/toy_data.py`, `inf_train_gen("8gaussians")`): pick `k`
//! uniformly from the eight unit vectors `c_k` = `(1, 0), (-1, 0), (0, 1), (0, -1),
//! (1/√2, 1/√2), (1/√2, -1/√2), (-1/√2, 1/√2), (-1/√2, -1/√2)`, draw `e ~ N(0, I_2)`, and
//! return `x = (4 c_k + 0.5 e) / 1.414`.
//!
//! FFJORD divides by the literal `1.414`, not `√2`, and so does this: the centres lie at
//! radius `4 / 1.414 = 2.82885` and each component is isotropic with standard deviation
//! `0.5 / 1.414 = 0.353607`. The density is the mixture
//! `p(x) = 1/8 sum_k N(x; (4 / 1.414) c_k, (0.5 / 1.414)^2 I_2)`.

use crate::special::{log_sum_exp, std_normal, LN_2PI};
use crate::ToyDensity;
use flow_core::FlowRng;
use rand::Rng;
use std::f64::consts::FRAC_1_SQRT_2;

/// FFJORD's `8gaussians` (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct EightGaussians;

impl EightGaussians {
    /// FFJORD's final divisor (the literal, not `√2`).
    pub const DIVISOR: f64 = 1.414;
    /// Radius of the circle of centres: `4 / 1.414`.
    pub const RADIUS: f64 = 4.0 / Self::DIVISOR;
    /// Per-axis standard deviation of each component: `0.5 / 1.414`.
    pub const STD: f64 = 0.5 / Self::DIVISOR;
    /// The unit directions of the centres, in FFJORD's order.
    pub const DIRECTIONS: [(f64, f64); 8] = [
        (1.0, 0.0),
        (-1.0, 0.0),
        (0.0, 1.0),
        (0.0, -1.0),
        (FRAC_1_SQRT_2, FRAC_1_SQRT_2),
        (FRAC_1_SQRT_2, -FRAC_1_SQRT_2),
        (-FRAC_1_SQRT_2, FRAC_1_SQRT_2),
        (-FRAC_1_SQRT_2, -FRAC_1_SQRT_2),
    ];
    /// Differential entropy in nats, by the midpoint rule for `-p ln p` on `[-6, 6]^2`
    /// (mass outside below 1e-20; the integrand is smooth, so the rule converges
    /// geometrically): 300^2 and 600^2 cells agree to 3e-13, and finer grids only add
    /// rounding from the longer sums (`tests/toy_densities.rs` recomputes it). It is
    /// 6.3e-3 below `ln 8 + ln(2 pi e STD^2) = 2.838179`, the value for disjoint modes:
    /// adjacent modes are only 6.1 standard deviations apart and overlap a little.
    pub const ENTROPY: f64 = 2.831_880_406_137;
}

impl ToyDensity for EightGaussians {
    fn name(&self) -> &'static str {
        "8gaussians"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let (c0, c1) = Self::DIRECTIONS[rng.random_range(0..8)];
            let (e0, e1) = (std_normal(rng), std_normal(rng));
            out.push((4.0 * c0 + 0.5 * e0) / Self::DIVISOR);
            out.push((4.0 * c1 + 0.5 * e1) / Self::DIVISOR);
        }
        out
    }

    fn log_prob(&self, x: &[f64]) -> Option<f64> {
        let var = Self::STD * Self::STD;
        let terms = Self::DIRECTIONS.map(|(c0, c1)| {
            let (d0, d1) = (x[0] - Self::RADIUS * c0, x[1] - Self::RADIUS * c1);
            -(d0 * d0 + d1 * d1) / (2.0 * var)
        });
        Some(log_sum_exp(&terms) - 8f64.ln() - LN_2PI - var.ln())
    }

    fn entropy(&self) -> Option<f64> {
        Some(Self::ENTROPY)
    }

    /// `[-5, 5]^2`: the edges are 6.1 standard deviations beyond the four axis modes,
    /// leaving 2e-10 of the mass outside (FFJORD plots `[-4, 4]^2`, which cuts 2.3e-4 off
    /// those modes).
    fn plot_range(&self) -> (f64, f64) {
        (-5.0, 5.0)
    }
}
