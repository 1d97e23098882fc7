//! FFJORD's `checkerboard`: the uniform density on the eight black squares of a 4 x 4
//! board, a test of sharp edges and disconnected support.
//!
//! Definition (FFJORD `lib/toy_data.py`, `inf_train_gen("checkerboard")`): draw
//! `x1 ~ U[-2, 2)`, `v ~ U[0, 1)` and `b` uniform on `{0, 1}`, set
//! `x2 = v - 2 b + (floor(x1) mod 2)` (Python's `%`, so the remainder is 0 or 1), and
//! return `2 (x1, x2)`.
//!
//! For each unit column `floor(x1) = i` this puts `x2` uniformly on the two unit cells
//! `j` with `i + j` even, so the result is uniform on the 8 squares of side 2
//! `[2i, 2i + 2) x [2j, 2j + 2)`, `i, j` in `{-2, -1, 0, 1}`, `i + j` even: total area 32,
//! density `1/32` on them and 0 elsewhere. `[0, 2)^2` is black, and so are the corner
//! squares `[-4, -2)^2` and `[2, 4)^2`, which makes `x1` and `x2` positively correlated
//! (covariance exactly 1; both variances are 16/3).

use crate::ToyDensity;
use flow_core::FlowRng;
use rand::Rng;

/// FFJORD's `checkerboard` (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct Checkerboard;

impl Checkerboard {
    /// Area of the support: 8 squares of side 2.
    pub const AREA: f64 = 32.0;
    /// Differential entropy in nats, exact: `ln 32 = 3.4657` (uniform on area 32).
    pub const ENTROPY: f64 = 5.0 * std::f64::consts::LN_2;

    /// Whether `(x0, x1)` lies on a black square: inside `[-4, 4)^2` with
    /// `floor(x0 / 2) + floor(x1 / 2)` even (squares are closed below, open above, as
    /// the sampler's `U[0, 1)` draws make them).
    pub fn on_board(x0: f64, x1: f64) -> bool {
        let inside = |v: f64| (-4.0..4.0).contains(&v);
        inside(x0) && inside(x1) && ((x0 / 2.0).floor() + (x1 / 2.0).floor()).rem_euclid(2.0) == 0.0
    }
}

impl ToyDensity for Checkerboard {
    fn name(&self) -> &'static str {
        "checkerboard"
    }

    fn dim(&self) -> usize {
        2
    }

    fn sample(&self, n: usize, rng: &mut FlowRng) -> Vec<f64> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let x1 = rng.random::<f64>() * 4.0 - 2.0;
            let v = rng.random::<f64>();
            let b = f64::from(rng.random_range(0..2_u8));
            let x2 = v - 2.0 * b + x1.floor().rem_euclid(2.0);
            out.push(2.0 * x1);
            out.push(2.0 * x2);
        }
        out
    }

    /// `-ln 32` on the black squares, `-inf` elsewhere (a density, not `None`: it has a
    /// closed form, which is zero off the board).
    fn log_prob(&self, x: &[f64]) -> Option<f64> {
        Some(if Self::on_board(x[0], x[1]) {
            -Self::ENTROPY
        } else {
            f64::NEG_INFINITY
        })
    }

    fn entropy(&self) -> Option<f64> {
        Some(Self::ENTROPY)
    }

    /// `[-4, 4]^2`, the board itself (and FFJORD's plotting box): all the mass.
    fn plot_range(&self) -> (f64, f64) {
        (-4.0, 4.0)
    }
}
