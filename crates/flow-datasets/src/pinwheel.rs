//! FFJORD's `pinwheel`: five curved arms, each a Gaussian bent by a rotation that grows
//! exponentially with the distance from the centre.
//!
//! Definition (FFJORD `lib/toy_data.py`, `inf_train_gen("pinwheel")`): pick an arm `k`
//! uniformly from `0..5`, draw the features `r ~ N(1, 0.3^2)` (radial) and
//! `t ~ N(0, 0.1^2)` (tangential), set the angle
//! `a = 2 pi k / 5 + 0.25 e^r`, and return `x = 2 (r cos a + t sin a, -r sin a + t cos a)`,
//! i.e. twice the feature vector `(r, t)` rotated by `-a`. FFJORD fixes `n / 5` points per
//! arm (and so returns `5 floor(n / 5)` points); `sample` picks each point's arm
//! independently and returns exactly `n`.
//!
//! # The density
//!
//! It is *not* a Gaussian mixture after an invertible warp: per arm the map
//! `(r, t) -> y = x / 2` has Jacobian determinant `1 + 0.25 e^r t`, which vanishes on the
//! curve `t = -4 e^{-r}`, so the map folds over itself there (in the far tails: the
//! Gaussian factor on that curve is at most `e^{-17}` of its peak), and the arms also
//! overlap near the centre. The density is the sum over all preimages,
//!
//! `p(x) = 1/4 * 1/5 sum_k sum_{(r, t) -> x/2 on arm k} N(r; 1, 0.3^2) N(t; 0, 0.1^2) / |1 + 0.25 e^r t|`,
//!
//! (the `1/4` is the Jacobian of `x = 2 y`), and every preimage is found exactly: with
//! `y = rho (cos phi, sin phi)`, inverting the rotation gives
//! `(r, t) = rho (cos(phi + a), sin(phi + a))`, so `s = 0.25 e^r` solves the scalar
//! equation `F(s) = ln(4 s) - rho cos(theta + s) = 0`, `theta = phi + 2 pi k / 5`, on
//! `[e^{-rho} / 4, e^{rho} / 4]` (since `|r| <= rho`). On each half-period of the cosine
//! `F` splits into at most three monotone pieces (where `sin(theta + s) >= 0`, `F' > 0`;
//! where it is negative, `F'' = -1/s^2 + rho cos(theta + s)` increases, so `F'` has at
//! most two zeros), and each piece holds at most one root, found by a bracketed Newton
//! iteration. This is exact up to rounding, though not a closed form; in the plotting
//! box there are at most 4 half-periods per arm, and a point costs 10-20 microseconds.
//!
//! Beyond `|x| = 20` (`r` more than 30 standard deviations out, mass below 1e-190) the
//! number of half-periods grows like `e^{|x|/2}`, and `log_prob` returns `-inf` there
//! instead of enumerating them.

use crate::special::{ln_normal, log_sum_exp, std_normal};
use crate::ToyDensity;
use flow_core::FlowRng;
use rand::Rng;
use std::f64::consts::{PI, TAU};

/// FFJORD's `pinwheel` (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pinwheel;

impl Pinwheel {
    /// Number of arms.
    pub const ARMS: usize = 5;
    /// Standard deviation of the radial feature `r` (mean 1).
    pub const RADIAL_STD: f64 = 0.3;
    /// Standard deviation of the tangential feature `t` (mean 0).
    pub const TANGENTIAL_STD: f64 = 0.1;
    /// The arm's twist: `a = 2 pi k / 5 + RATE e^r`.
    pub const RATE: f64 = 0.25;
    /// FFJORD's final scaling.
    pub const SCALE: f64 = 2.0;
    /// `log_prob` is `-inf` beyond this distance from the origin (see the module docs).
    pub const LOG_PROB_RADIUS: f64 = 20.0;
    /// Differential entropy in nats, by the midpoint rule for `-p ln p` on `[-6, 6]^2`
    /// (mass outside ~1e-11): 300^2, 600^2 and 1200^2 cells give 2.317788091,
    /// 2.317788025 and 2.317788034, so it is good to about 1e-8. A Monte Carlo check,
    /// the mean of `-ln p` over 4 million samples, gave 2.31780 +- 0.00049.
    /// (`tests/toy_densities.rs` recomputes it on the 300^2 grid.)
    pub const ENTROPY: f64 = 2.317_788_03;

    /// `ln p` of the preimages on one arm of the point `rho (cos phi, sin phi)` of the
    /// unscaled plane (`y = x / 2`), `theta = phi + 2 pi k / 5`, appended to `out`
    /// (without the arm weight and the Jacobian of the scaling).
    fn arm_terms(rho: f64, theta: f64, out: &mut Vec<f64>) {
        let s_lo = 0.25 * (-rho).exp();
        let s_hi = 0.25 * rho.exp();
        // F and F' (the root equation), F' and F'', F'' and F''' (to split the pieces).
        let f = |s: f64| {
            let (sin, cos) = (theta + s).sin_cos();
            ((4.0 * s).ln() - rho * cos, 1.0 / s + rho * sin)
        };
        let df = |s: f64| {
            let (sin, cos) = (theta + s).sin_cos();
            (1.0 / s + rho * sin, -1.0 / (s * s) + rho * cos)
        };
        let d2f = |s: f64| {
            let (sin, cos) = (theta + s).sin_cos();
            (-1.0 / (s * s) + rho * cos, 2.0 / (s * s * s) - rho * sin)
        };
        let mut push_root = |lo: f64, hi: f64| {
            let (f_lo, f_hi) = (f(lo).0, f(hi).0);
            if (f_lo < 0.0) == (f_hi < 0.0) {
                return;
            }
            let s = bracketed_root(&f, lo, hi, f_lo);
            let r = (4.0 * s).ln();
            let t = rho * (theta + s).sin();
            let jacobian = 1.0 + s * t;
            out.push(
                ln_normal(r, 1.0, Self::RADIAL_STD) + ln_normal(t, 0.0, Self::TANGENTIAL_STD)
                    - jacobian.abs().ln(),
            );
        };
        // Half-periods of the cosine: theta + s in [m pi, (m + 1) pi].
        let mut m = ((theta + s_lo) / PI).floor();
        let mut a = s_lo;
        while a < s_hi {
            let b = ((m + 1.0) * PI - theta).min(s_hi);
            let sin_negative = m.rem_euclid(2.0) == 1.0;
            // Where sin >= 0, F' = 1/s + rho sin > 0; where sin < 0, still if 1/b > rho.
            if !sin_negative || 1.0 / b > rho {
                push_root(a, b);
            } else {
                // F'' increases on [a, b]: F' is smallest where F'' = 0 (or at an end).
                let (d2_a, d2_b) = (d2f(a).0, d2f(b).0);
                let s_min = if d2_a >= 0.0 {
                    a
                } else if d2_b <= 0.0 {
                    b
                } else {
                    bracketed_root(&d2f, a, b, d2_a)
                };
                if df(s_min).0 >= 0.0 {
                    push_root(a, b);
                } else {
                    // F' < 0 at s_min: it falls to there and rises after, so it has at
                    // most one zero on each side, and F is monotone between them.
                    let (df_a, df_b) = (df(a).0, df(b).0);
                    let c1 = if df_a > 0.0 {
                        bracketed_root(&df, a, s_min, df_a)
                    } else {
                        a
                    };
                    let c2 = if df_b > 0.0 {
                        bracketed_root(&df, s_min, b, df(s_min).0)
                    } else {
                        b
                    };
                    push_root(a, c1);
                    push_root(c1, c2);
                    push_root(c2, b);
                }
            }
            a = b;
            m += 1.0;
        }
    }
}

/// The root of `g` (which returns the value and the derivative) in `[lo, hi]`, where
/// `g(lo) = g_lo` and `g(hi)` have opposite signs: Newton steps, replaced by bisection
/// whenever they would leave the shrinking bracket.
fn bracketed_root(g: &impl Fn(f64) -> (f64, f64), mut lo: f64, mut hi: f64, g_lo: f64) -> f64 {
    let lo_negative = g_lo < 0.0;
    let mut x = 0.5 * (lo + hi);
    for _ in 0..200 {
        let (gx, dgx) = g(x);
        if gx == 0.0 {
            return x;
        }
        if (gx < 0.0) == lo_negative {
            lo = x;
        } else {
            hi = x;
        }
        let newton = x - gx / dgx;
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - x).abs() <= 2.0 * f64::EPSILON * x.abs() || hi - lo <= f64::EPSILON * hi {
            return next;
        }
        x = next;
    }
    x
}

impl ToyDensity for Pinwheel {
    fn name(&self) -> &'static str {
        "pinwheel"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let k = rng.random_range(0..Self::ARMS);
            let r = 1.0 + Self::RADIAL_STD * std_normal(rng);
            let t = Self::TANGENTIAL_STD * std_normal(rng);
            let a = TAU * k as f64 / Self::ARMS as f64 + Self::RATE * r.exp();
            let (sin, cos) = a.sin_cos();
            out.push(Self::SCALE * (r * cos + t * sin));
            out.push(Self::SCALE * (-r * sin + t * cos));
        }
        out
    }

    fn log_prob(&self, x: &[f64]) -> Option<f64> {
        let (y0, y1) = (x[0] / Self::SCALE, x[1] / Self::SCALE);
        let rho = y0.hypot(y1);
        let norm = -(Self::ARMS as f64).ln() - 2.0 * Self::SCALE.ln();
        if rho == 0.0 {
            // The origin's only preimage is (r, t) = (0, 0), with Jacobian 1, on every arm.
            return Some(
                ln_normal(0.0, 1.0, Self::RADIAL_STD)
                    + ln_normal(0.0, 0.0, Self::TANGENTIAL_STD)
                    + (Self::ARMS as f64).ln()
                    + norm,
            );
        }
        if Self::SCALE * rho > Self::LOG_PROB_RADIUS {
            return Some(f64::NEG_INFINITY);
        }
        let phi = y1.atan2(y0);
        let mut terms = Vec::with_capacity(2 * Self::ARMS);
        for k in 0..Self::ARMS {
            Self::arm_terms(rho, phi + TAU * k as f64 / Self::ARMS as f64, &mut terms);
        }
        Some(log_sum_exp(&terms) + norm)
    }

    fn entropy(&self) -> Option<f64> {
        Some(Self::ENTROPY)
    }

    /// `[-5, 5]^2`: `|x| = 2 sqrt(r^2 + t^2)` passes 5 only when `r > 2.5`, 5 standard
    /// deviations out, and 7e-8 of the mass lies outside (FFJORD's `[-4, 4]^2` cuts the
    /// arms' tips, 1.4e-4 of the mass).
    fn plot_range(&self) -> (f64, f64) {
        (-5.0, 5.0)
    }
}
