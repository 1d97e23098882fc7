//! FFJORD's `swissroll`: scikit-learn's 3-D `make_swiss_roll(noise=1.0)`, seen from
//! above (coordinates 0 and 2) and divided by 5: a noisy spiral of one and a half turns.
//!
//! Definition: `make_swiss_roll` draws `t = 1.5 pi (1 + 2 u)`, `u ~ U[0, 1)` (so `t` is
//! uniform on `[1.5 pi, 4.5 pi)`), returns `(t cos t, 21 v, t sin t) + 1.0 e` with
//! `e ~ N(0, I_3)`; FFJORD keeps coordinates 0 and 2 and divides by 5. So
//! `x = (t cos t, t sin t) / 5 + 0.2 e`, `e ~ N(0, I_2)`. (The height `21 v` is dropped,
//! so it is not drawn here.)
//!
//! The density is a Gaussian blurred along an arc of the spiral, an integral with no
//! closed form, so `log_prob` and `entropy` are `None`.

use crate::special::std_normal;
use crate::ToyDensity;
use flow_core::FlowRng;
use rand::Rng;
use std::f64::consts::PI;

/// FFJORD's `swissroll` (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct SwissRoll;

impl SwissRoll {
    /// Per-axis noise standard deviation after FFJORD's scaling (`1.0 / 5`).
    pub const SIGMA: f64 = 0.2;
    /// FFJORD's divisor.
    pub const DIVISOR: f64 = 5.0;
    /// The curve parameter `t` is uniform on `[T_MIN, T_MAX)`.
    pub const T_MIN: f64 = 1.5 * PI;
    /// See [`Self::T_MIN`].
    pub const T_MAX: f64 = 4.5 * PI;
}

impl ToyDensity for SwissRoll {
    fn name(&self) -> &'static str {
        "swissroll"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
            let (sin, cos) = t.sin_cos();
            out.push(t * cos / Self::DIVISOR + Self::SIGMA * std_normal(rng));
            out.push(t * sin / Self::DIVISOR + Self::SIGMA * std_normal(rng));
        }
        out
    }

    fn log_prob(&self, _x: &[f64]) -> Option<f64> {
        None
    }

    fn entropy(&self) -> Option<f64> {
        None
    }

    /// `[-4, 4]^2` (FFJORD's box): the spiral reaches radius `4.5 pi / 5 = 2.83`, so the
    /// edges are 5.8 noise standard deviations beyond it.
    fn plot_range(&self) -> (f64, f64) {
        (-4.0, 4.0)
    }
}
