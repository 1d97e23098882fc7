//! FFJORD's `moons`: scikit-learn's `make_moons(noise=0.1)`, scaled by 2 and shifted by
//! `(-1, -0.2)`. (Not normflows' `two-moons`, which is a different, closed-form density.)
//!
//! Definition: `make_moons` puts half the points on the upper unit half-circle
//! `(cos t, sin t)` and half on the lower half-circle `(1 - cos t, 1/2 - sin t)`, with
//! `t` in `[0, pi]`, and adds `N(0, 0.1^2)` noise per coordinate; FFJORD returns
//! `2 x + (-1, -0.2)`. With `t ~ U[0, pi]`, `e ~ N(0, I_2)`:
//!
//! - upper moon (probability 1/2): `(2 cos t - 1, 2 sin t - 0.2) + 0.2 e`,
//! - lower moon (probability 1/2): `(1 - 2 cos t, 0.8 - 2 sin t) + 0.2 e`.
//!
//! scikit-learn spaces `t` evenly within a batch (`np.linspace(0, pi, m)`, then a
//! shuffle); `sample` draws the distribution those batches stratify i.i.d.
//!
//! The density is a Gaussian blurred over a half-circle arc, an integral with no closed
//! form, so `log_prob` and `entropy` are `None`.

use crate::special::std_normal;
use crate::ToyDensity;
use flow_core::FlowRng;
use rand::Rng;
use std::f64::consts::PI;

/// FFJORD's `moons` (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct Moons;

impl Moons {
    /// Per-axis noise standard deviation after FFJORD's scaling (`2 * 0.1`).
    pub const SIGMA: f64 = 0.2;
}

impl ToyDensity for Moons {
    fn name(&self) -> &'static str {
        "moons"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let upper = rng.random::<bool>();
            let (sin, cos) = (PI * rng.random::<f64>()).sin_cos();
            let (x0, x1) = if upper {
                (2.0 * cos - 1.0, 2.0 * sin - 0.2)
            } else {
                (1.0 - 2.0 * cos, 0.8 - 2.0 * sin)
            };
            out.push(x0 + Self::SIGMA * std_normal(rng));
            out.push(x1 + Self::SIGMA * std_normal(rng));
        }
        out
    }

    fn log_prob(&self, _x: &[f64]) -> Option<f64> {
        None
    }

    fn entropy(&self) -> Option<f64> {
        None
    }

    /// `[-4, 4]^2` (FFJORD's box): 5 noise standard deviations beyond the tips of the
    /// moons at `x0 = -3` and `3`, and further from everything else.
    fn plot_range(&self) -> (f64, f64) {
        (-4.0, 4.0)
    }
}
