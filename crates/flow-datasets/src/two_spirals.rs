//! FFJORD's `2spirals`: two interleaved noisy spirals of one and a half turns, each the
//! other rotated by 180 degrees.
//!
//! Definition (FFJORD `lib/toy_data.py`, `inf_train_gen("2spirals")`): draw
//! `n = sqrt(u) * 540 * 2 pi / 360 = 3 pi sqrt(u)`, `u ~ U[0, 1)` (so `n` has density
//! `2 n / (3 pi)^2` on `[0, 3 pi)`, rising along the spiral, not uniform), and
//! `v1, v2 ~ U[0, 0.5)`; the point of the first spiral is
//! `d = (-n cos n + v1, n sin n + v2)`, the second spiral's is `-d` (the uniform offsets
//! are negated too), half the points on each; FFJORD divides by 3 and adds `N(0, 0.1^2)`
//! noise per coordinate. So `x = s d / 3 + 0.1 e`, `s = +-1` with probability 1/2 each,
//! `e ~ N(0, I_2)`. FFJORD fixes half the batch on each spiral; `sample` picks the
//! spiral of each point independently.
//!
//! The density is an integral over the spiral and the offset square with no closed
//! form, so `log_prob` and `entropy` are `None`.

use crate::special::std_normal;
use crate::ToyDensity;
use flow_core::FlowRng;
use rand::Rng;
use std::f64::consts::PI;

/// FFJORD's `2spirals` (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct TwoSpirals;

impl TwoSpirals {
    /// The largest curve parameter: 540 degrees in radians.
    pub const N_MAX: f64 = 3.0 * PI;
    /// Width of the uniform offset added to each coordinate before the division by 3.
    pub const OFFSET: f64 = 0.5;
    /// FFJORD's divisor.
    pub const DIVISOR: f64 = 3.0;
    /// Per-axis noise standard deviation (added after the division).
    pub const SIGMA: f64 = 0.1;
}

impl ToyDensity for TwoSpirals {
    fn name(&self) -> &'static str {
        "2spirals"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let t = Self::N_MAX * rng.random::<f64>().sqrt();
            let (sin, cos) = t.sin_cos();
            let d0 = -t * cos + Self::OFFSET * rng.random::<f64>();
            let d1 = t * sin + Self::OFFSET * rng.random::<f64>();
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            out.push(sign * d0 / Self::DIVISOR + Self::SIGMA * std_normal(rng));
            out.push(sign * d1 / Self::DIVISOR + Self::SIGMA * std_normal(rng));
        }
        out
    }

    fn log_prob(&self, _x: &[f64]) -> Option<f64> {
        None
    }

    fn entropy(&self) -> Option<f64> {
        None
    }

    /// `[-4, 4]^2` (FFJORD's box): the spirals end at `|x0| <= (3 pi + 0.5) / 3 = 3.31`,
    /// 6.9 noise standard deviations inside the edges.
    fn plot_range(&self) -> (f64, f64) {
        (-4.0, 4.0)
    }
}
