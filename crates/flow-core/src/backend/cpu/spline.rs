//! The rational-quadratic spline kernel (forward and first-order backward) on flat slices:
//! entry `e` of `x` has its `3K - 1` raw parameters at `params[e P .. (e + 1) P]`. Used by the
//! CPU backend directly and by [`crate::Backend`]'s host-side defaults. Arithmetic is in f64
//! whatever the element type: the inverse's quadratic formula loses digits in f32.
//!
//! Notation (Durkan et al. 2019): knots `X_k`, `Y_k` (`k = 0..=K`) on `[-B, B]`, derivatives
//! `D_k` (`D_0 = D_K = 1`); in bin `k`: `x0 = X_k`, `w = X_{k+1} - X_k`, `y0 = Y_k`,
//! `h = Y_{k+1} - Y_k`, `s = h / w`, `d0 = D_k`, `d1 = D_{k+1}`; `theta = (x - x0) / w`,
//! `t = theta (1 - theta)`, `c = d0 + d1 - 2 s`,
//! `y = y0 + h (s theta^2 + d0 t) / (s + c t)`,
//! `log dy/dx = 2 log s + log(d1 theta^2 + 2 s t + d0 (1 - theta)^2) - 2 log(s + c t)`.
//!
//! Entries are processed in blocks of [`LANES`], transposed so that every step (softmaxes,
//! knots, the bin search, the gathers of the bin's quantities, the spline itself) is one
//! branch-free loop across the block, which the compiler turns into SIMD lanes.

use super::math;
use crate::backend::{Direction, RationalQuadratic};
use crate::element::Element;

/// Entries processed side by side (one AVX-512 vector of f64, two of AVX2).
const LANES: usize = 64;
type Lanes = [f64; LANES];

/// Knot positions `-B + 2B cumsum(min + (1 - K min) softmax(raw))`, the last at `B`, of
/// every lane, from the `K` rows of raw logits; the softmax is written to `softmax`.
#[inline(always)]
fn knots_of(raw: &[Lanes], min: f64, bound: f64, softmax: &mut [Lanes], knots: &mut [Lanes]) {
    let k = raw.len();
    let mut max = [f64::NEG_INFINITY; LANES];
    for r in raw {
        for l in 0..LANES {
            max[l] = max[l].max(r[l]);
        }
    }
    let mut total = [0.0; LANES];
    for (s, r) in softmax.iter_mut().zip(raw) {
        for l in 0..LANES {
            s[l] = math::exp(r[l] - max[l]);
            total[l] += s[l];
        }
    }
    let inverse_total = total.map(|t| 1.0 / t);
    let scale = 1.0 - min * k as f64;
    let mut acc = [0.0; LANES];
    knots[0] = [-bound; LANES];
    for (j, s) in softmax.iter_mut().enumerate() {
        for l in 0..LANES {
            s[l] *= inverse_total[l];
            acc[l] += min + scale * s[l];
            knots[j + 1][l] = -bound + 2.0 * bound * acc[l];
        }
    }
    knots[k] = [bound; LANES];
}

/// Per-block scratch, sized by the bin count.
struct Block {
    /// The `3K - 1` raw parameters, one row per parameter.
    raw: Vec<Lanes>,
    xs: Vec<Lanes>,
    ys: Vec<Lanes>,
    width_softmax: Vec<Lanes>,
    height_softmax: Vec<Lanes>,
}

impl Block {
    fn new(k: usize) -> Self {
        Block {
            raw: vec![[0.0; LANES]; 3 * k - 1],
            xs: vec![[0.0; LANES]; k + 1],
            ys: vec![[0.0; LANES]; k + 1],
            width_softmax: vec![[0.0; LANES]; k],
            height_softmax: vec![[0.0; LANES]; k],
        }
    }
}

/// Values the backward reads per entry, so that it needs no transcendental function: the bin
/// (-1 outside the tail bound), `theta, w, h, d0, d1`, the slopes `dD/draw` of the bin's two
/// knot derivatives (0 at the ends), then the width and the height softmaxes.
fn cache_width(spec: &RationalQuadratic) -> usize {
    8 + 2 * spec.bins
}

/// The cache's `(rows, columns)` for `entries` entries: one row per block of [`LANES`]
/// entries, holding each cached value of the block's lanes side by side (so that the
/// kernels read and write it in whole vectors). Lanes outside the tail bound hold a harmless
/// bin (`theta` 0, unit sizes and derivatives, zero softmaxes) marked -1.
pub(crate) fn cache_shape(entries: usize, spec: &RationalQuadratic) -> (usize, usize) {
    (entries.div_ceil(LANES), cache_width(spec) * LANES)
}

/// `(y, log|dy/dx|)` of every entry, written to `y` and `log_det` (one per entry), and the
/// backward's cache (laid out as [`cache_shape`] says).
pub(crate) fn forward<E: Element>(
    x: &[E],
    params: &[E],
    spec: &RationalQuadratic,
    direction: Direction,
    y: &mut [E],
    log_det: &mut [E],
    cache: &mut [E],
) {
    match direction {
        Direction::Forward => super::simd::widest(
            #[inline(always)]
            || forward_body::<E, false>(x, params, spec, y, log_det, cache),
        ),
        Direction::Inverse => super::simd::widest(
            #[inline(always)]
            || forward_body::<E, true>(x, params, spec, y, log_det, cache),
        ),
    }
}

#[inline(always)]
fn forward_body<E: Element, const INVERSE: bool>(
    x: &[E],
    params: &[E],
    spec: &RationalQuadratic,
    y: &mut [E],
    log_det: &mut [E],
    cache: &mut [E],
) {
    let (k, p, width) = (spec.bins, spec.params_per_feature(), cache_width(spec));
    let bound = spec.tail_bound;
    let inverse_log_bound = 1.0 / spec.log_derivative_bound();
    let mut block = Block::new(k);
    for start in (0..x.len()).step_by(LANES) {
        let n = LANES.min(x.len() - start);
        // Transpose the block; lanes past the end compute on zeros (the identity spline).
        let mut v = [0.0; LANES];
        v[..n]
            .iter_mut()
            .zip(&x[start..])
            .for_each(|(v, x)| *v = x.as_f64());
        let entries = &params[start * p..(start + n) * p];
        for (j, row) in block.raw.iter_mut().enumerate() {
            if n == LANES {
                // Strided loads, whole-vector stores (bounds checks kept this loop scalar).
                assert!(entries.len() == LANES * p && j < p);
                for (l, r) in row.iter_mut().enumerate() {
                    // SAFETY: l < LANES and j < p, so l p + j < LANES p = entries.len().
                    *r = unsafe { entries.get_unchecked(l * p + j) }.as_f64();
                }
            } else {
                *row = [0.0; LANES];
                for l in 0..n {
                    row[l] = entries[l * p + j].as_f64();
                }
            }
        }
        let (widths, rest) = block.raw.split_at(k);
        let (heights, derivatives) = rest.split_at(k);
        let (min_w, min_h) = (spec.min_bin_width, spec.min_bin_height);
        knots_of(
            widths,
            min_w,
            bound,
            &mut block.width_softmax,
            &mut block.xs,
        );
        knots_of(
            heights,
            min_h,
            bound,
            &mut block.height_softmax,
            &mut block.ys,
        );
        // The bin: how many inner knots are at or below the input.
        let search = if INVERSE { &block.ys } else { &block.xs };
        let mut bin = [0.0; LANES];
        for knot in &search[1..k] {
            for l in 0..LANES {
                bin[l] += if knot[l] <= v[l] { 1.0 } else { 0.0 };
            }
        }
        // The bin's knots and the raw parameters of its knot derivatives (0 at the two ends,
        // whose derivative is 1 = the clamped exponential of 0).
        let [mut x0, mut x1, mut y0, mut y1, mut a0, mut a1] = [[0.0; LANES]; 6];
        let zero = [0.0; LANES];
        for j in 0..k {
            let (xa, xb) = (&block.xs[j], &block.xs[j + 1]);
            let (ya, yb) = (&block.ys[j], &block.ys[j + 1]);
            let ra = if j == 0 { &zero } else { &derivatives[j - 1] };
            let rb = if j + 1 == k { &zero } else { &derivatives[j] };
            for l in 0..LANES {
                // All ones where the lane's bin is j: a bitwise select, which vectorises
                // where a branchy one did not.
                let hit = ((bin[l] == j as f64) as u64).wrapping_neg();
                let pick =
                    |new: f64, old: f64| f64::from_bits(new.to_bits() & hit | old.to_bits() & !hit);
                x0[l] = pick(xa[l], x0[l]);
                x1[l] = pick(xb[l], x1[l]);
                y0[l] = pick(ya[l], y0[l]);
                y1[l] = pick(yb[l], y1[l]);
                a0[l] = pick(ra[l], a0[l]);
                a1[l] = pick(rb[l], a1[l]);
            }
        }
        // The steps below are separate loops across the block: each one vectorises, where
        // the compiler gives up on a single long loop body.
        let [mut d0, mut d1, mut slope0, mut slope1] = [[0.0; LANES]; 4];
        let last = (k - 1) as f64;
        for l in 0..LANES {
            (d0[l], slope0[l]) = clamped_exp(a0[l], inverse_log_bound);
            (d1[l], slope1[l]) = clamped_exp(a1[l], inverse_log_bound);
            slope0[l] = if bin[l] == 0.0 { 0.0 } else { slope0[l] };
            slope1[l] = if bin[l] == last { 0.0 } else { slope1[l] };
        }
        let [mut w, mut h, mut theta, mut out, mut log_derivative] = [[0.0; LANES]; 5];
        for l in 0..LANES {
            (w[l], h[l]) = (x1[l] - x0[l], y1[l] - y0[l]);
            let mut local = Local::new(w[l], h[l], d0[l], d1[l]);
            out[l] = if INVERSE {
                local.at(local.solve(v[l] - y0[l]));
                x0[l] + local.theta * w[l]
            } else {
                local.at((v[l] - x0[l]) / w[l]);
                y0[l] + h[l] * local.num / local.den
            };
            theta[l] = local.theta;
            log_derivative[l] = local.derivative_ratio();
        }
        // One logarithm per entry (see `Local::derivative_ratio`).
        for ld in log_derivative.iter_mut() {
            *ld = math::ln(*ld);
        }
        // Outside the bound, or NaN: the identity, and a harmless bin for the backward.
        let inside: [bool; LANES] = std::array::from_fn(|l| v[l].abs() <= bound);
        let mut head = [bin, theta, w, h, d0, d1, slope0, slope1];
        let outside = [-1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        for (row, outside) in head.iter_mut().zip(outside) {
            for l in 0..LANES {
                row[l] = if inside[l] { row[l] } else { outside };
            }
        }
        // (Outside lanes' outputs are their inputs, copied below with their exact bits.)
        for l in 0..LANES {
            log_derivative[l] = if inside[l] { log_derivative[l] } else { 0.0 };
        }
        for row in block
            .width_softmax
            .iter_mut()
            .chain(&mut block.height_softmax)
        {
            for l in 0..LANES {
                row[l] = if inside[l] { row[l] } else { 0.0 };
            }
        }
        for l in 0..n {
            let e = start + l;
            y[e] = if inside[l] { E::of(out[l]) } else { x[e] };
            log_det[e] = E::of(if INVERSE {
                -log_derivative[l]
            } else {
                log_derivative[l]
            });
        }
        let rows = head
            .iter()
            .chain(&block.width_softmax)
            .chain(&block.height_softmax);
        let cached = &mut cache[start * width..(start + LANES) * width];
        for (c, row) in cached.chunks_exact_mut(LANES).zip(rows) {
            for l in 0..LANES {
                c[l] = E::of(row[l]);
            }
        }
    }
}

/// The gradients with respect to `x` and `params` given those of the outputs (`g_y`,
/// `g_log_det`, one per entry) and the forward's cache, written to `g_x` and `g_params`
/// (overwritten).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<E: Element>(
    spec: &RationalQuadratic,
    direction: Direction,
    cache: &[E],
    g_y: &[E],
    g_log_det: &[E],
    g_x: &mut [E],
    g_params: &mut [E],
) {
    match direction {
        Direction::Forward => super::simd::widest(
            #[inline(always)]
            || backward_body::<E, false>(spec, cache, g_y, g_log_det, g_x, g_params),
        ),
        Direction::Inverse => super::simd::widest(
            #[inline(always)]
            || backward_body::<E, true>(spec, cache, g_y, g_log_det, g_x, g_params),
        ),
    }
}

#[inline(always)]
fn backward_body<E: Element, const INVERSE: bool>(
    spec: &RationalQuadratic,
    cache: &[E],
    g_y: &[E],
    g_log_det: &[E],
    g_x: &mut [E],
    g_params: &mut [E],
) {
    let (k, p, width) = (spec.bins, spec.params_per_feature(), cache_width(spec));
    let bound = spec.tail_bound;
    let mut width_softmax = vec![[0.0; LANES]; k];
    let mut height_softmax = vec![[0.0; LANES]; k];
    let mut g_raw = vec![[0.0; LANES]; p];
    for start in (0..g_y.len()).step_by(LANES) {
        let n = LANES.min(g_y.len() - start);
        let cached = &cache[start * width..(start + LANES) * width];
        let mut rows = cached
            .chunks_exact(LANES)
            .map(|c| -> Lanes { std::array::from_fn(|l| c[l].as_f64()) });
        let head: [Lanes; 8] = std::array::from_fn(|_| rows.next().expect("cache rows"));
        for row in width_softmax.iter_mut().chain(&mut height_softmax) {
            *row = rows.next().expect("cache rows");
        }
        // Lanes past the end have no gradient to pass back.
        let [mut gy, mut gl] = [[0.0; LANES]; 2];
        gy[..n]
            .iter_mut()
            .zip(&g_y[start..])
            .for_each(|(a, b)| *a = b.as_f64());
        gl[..n]
            .iter_mut()
            .zip(&g_log_det[start..])
            .for_each(|(a, b)| *a = b.as_f64());
        let bin = head[0];
        // Per lane: the gradients of the bin's two knots in x (`gx0`, `gx1`) and in y, and
        // of its two knot derivatives' raw parameters.
        let [mut g_in, mut gx0, mut gx1, mut gy0, mut gy1, mut gd0, mut gd1] = [[0.0; LANES]; 7];
        for l in 0..LANES {
            let (w, h) = (head[2][l], head[3][l]);
            let mut local = Local::new(w, h, head[4][l], head[5][l]);
            local.at(head[1][l]);
            let (f, lp) = local.partials();
            let (gy, gl) = (gy[l], gl[l]);
            // Gradients of the bin's quantities: x0, w, y0, h, s, d0, d1.
            let (g_input, g_x0, mut g_w, g_y0, mut g_h, g_s, g_d0, g_d1);
            if INVERSE {
                // x = x0 + theta w and -L, with theta(y, ...) implicit in F(theta, ...) = y:
                // d theta / dy = 1 / F_theta, d theta / dq = -F_q / F_theta.
                let g_theta = gy * w - gl * lp[0];
                let through = g_theta / f[0];
                g_input = through;
                g_x0 = gy;
                g_w = gy * local.theta;
                g_y0 = -through;
                g_h = -through * f[2];
                g_s = -through * f[1] - gl * lp[1];
                g_d0 = -through * f[3] - gl * lp[3];
                g_d1 = -through * f[4] - gl * lp[4];
            } else {
                let g_theta = gy * f[0] + gl * lp[0];
                g_input = g_theta / w;
                g_x0 = -g_input;
                g_w = -g_theta * local.theta / w;
                g_y0 = gy;
                g_h = gy * f[2];
                g_s = gy * f[1] + gl * lp[1];
                g_d0 = gy * f[3] + gl * lp[3];
                g_d1 = gy * f[4] + gl * lp[4];
            }
            // s = h / w.
            g_h += g_s / w;
            g_w -= g_s * local.s / w;
            let inside = bin[l] >= 0.0;
            g_in[l] = if inside { g_input } else { gy };
            gx0[l] = g_x0 - g_w;
            gx1[l] = g_w;
            gy0[l] = g_y0 - g_h;
            gy1[l] = g_h;
            gd0[l] = g_d0 * head[6][l];
            gd1[l] = g_d1 * head[7][l];
        }
        let (widths, rest) = g_raw.split_at_mut(k);
        let (heights, derivatives) = rest.split_at_mut(k);
        let (min_w, min_h) = (spec.min_bin_width, spec.min_bin_height);
        raw_grads(&bin, &gx0, &gx1, &width_softmax, min_w, bound, widths);
        raw_grads(&bin, &gy0, &gy1, &height_softmax, min_h, bound, heights);
        // Only the bin's two knot derivatives were read (the end ones are constant).
        for (j, g) in derivatives.iter_mut().enumerate() {
            let knot = (j + 1) as f64;
            for l in 0..LANES {
                g[l] = if bin[l] == knot {
                    gd0[l]
                } else if bin[l] + 1.0 == knot {
                    gd1[l]
                } else {
                    0.0
                };
            }
        }
        for l in 0..n {
            let e = start + l;
            g_x[e] = E::of(g_in[l]);
            for (o, g) in g_params[e * p..(e + 1) * p].iter_mut().zip(&g_raw) {
                *o = E::of(g[l]);
            }
        }
    }
}

/// From the gradients of a bin's two knots, `g0` at knot `bin` and `g1` at `bin + 1`, of
/// positions `X_k = -B + 2B sum_{j<k} (min + (1 - K min) s_j)` to those of the raw logits of
/// the softmax `s`, across lanes (no gradient where `bin` is -1). The last knot is constant,
/// but counting it is harmless: the softmax's backward removes it.
#[inline(always)]
fn raw_grads(
    bin: &Lanes,
    g0: &Lanes,
    g1: &Lanes,
    softmax: &[Lanes],
    min: f64,
    bound: f64,
    out: &mut [Lanes],
) {
    let k = softmax.len();
    // d/ds_j = 2B (1 - K min) sum_{k > j} g_k: knot `bin` counts for j < bin, `bin + 1`
    // for j <= bin.
    let scale = 2.0 * bound * (1.0 - min * k as f64);
    let mut dot = [0.0; LANES];
    for (j, (o, s)) in out.iter_mut().zip(softmax).enumerate() {
        let j = j as f64;
        for l in 0..LANES {
            let suffix = if j < bin[l] {
                g1[l] + g0[l]
            } else if j == bin[l] {
                g1[l]
            } else {
                0.0
            };
            o[l] = scale * suffix;
            dot[l] += o[l] * s[l];
        }
    }
    for (o, s) in out.iter_mut().zip(softmax) {
        for l in 0..LANES {
            o[l] = s[l] * (o[l] - dot[l]);
        }
    }
}

/// `(exp(a / (1 + |a| / L)), its derivative in a)`, with `inverse_bound = 1 / L`: the
/// exponent stays within `±L`, where `math::exp` is within an ulp of libm.
#[inline(always)]
fn clamped_exp(a: f64, inverse_bound: f64) -> (f64, f64) {
    let q = 1.0 + a.abs() * inverse_bound;
    let d = math::exp(a / q);
    (d, d / (q * q))
}

/// The bin's quantities and the spline's local partial derivatives at `theta`.
struct Local {
    theta: f64,
    h: f64,
    s: f64,
    d0: f64,
    d1: f64,
    /// y - y0 = h num / den.
    num: f64,
    den: f64,
    /// The derivative's numerator without `s^2`.
    m: f64,
}

impl Local {
    /// A bin of width `w`, height `h` and knot derivatives `d0`, `d1`, before [`Local::at`].
    #[inline(always)]
    fn new(w: f64, h: f64, d0: f64, d1: f64) -> Self {
        Local {
            theta: 0.0,
            h,
            s: h / w,
            d0,
            d1,
            num: 0.0,
            den: 0.0,
            m: 0.0,
        }
    }

    #[inline(always)]
    fn at(&mut self, theta: f64) {
        let (s, d0, d1) = (self.s, self.d0, self.d1);
        let t = theta * (1.0 - theta);
        self.theta = theta;
        self.num = s * theta * theta + d0 * t;
        self.den = s + (d0 + d1 - 2.0 * s) * t;
        self.m = d1 * theta * theta + 2.0 * s * t + d0 * (1.0 - theta) * (1.0 - theta);
    }

    /// `s^2 m / den^2`, the derivative, whose logarithm is taken once: every factor is
    /// positive and bounded by the minimum bin sizes and derivatives.
    #[inline(always)]
    fn derivative_ratio(&self) -> f64 {
        let ratio = self.s / self.den;
        ratio * ratio * self.m
    }

    /// `theta` solving `y0 + h num / den = y` (the root in [0, 1], in the form that does not
    /// cancel).
    #[inline(always)]
    fn solve(&self, offset: f64) -> f64 {
        let (h, s, d0, d1) = (self.h, self.s, self.d0, self.d1);
        let c = d0 + d1 - 2.0 * s;
        let a = h * (s - d0) + offset * c;
        let b = h * d0 - offset * c;
        let cc = -s * offset;
        let disc = (b * b - 4.0 * a * cc).max(0.0);
        2.0 * cc / (-b - disc.sqrt())
    }

    /// Partials of `y` (as `F(theta, s, h, d0, d1)`, plus 1 in `y0`) and of
    /// `L = log dy/dx` in `theta, s, h, d0, d1`.
    #[inline(always)]
    fn partials(&self) -> ([f64; 5], [f64; 5]) {
        let (theta, h, s, d0, d1) = (self.theta, self.h, self.s, self.d0, self.d1);
        let t = theta * (1.0 - theta);
        let c = d0 + d1 - 2.0 * s;
        let (num, den, m) = (self.num, self.den, self.m);
        let num_theta = 2.0 * s * theta + d0 * (1.0 - 2.0 * theta);
        let den_theta = c * (1.0 - 2.0 * theta);
        let den_s = 1.0 - 2.0 * t;
        let (inv_den, inv_m) = (1.0 / den, 1.0 / m);
        let h_over_den2 = h * inv_den * inv_den;
        let quotient = |dn: f64, dd: f64| h_over_den2 * (dn * den - num * dd);
        let f = [
            quotient(num_theta, den_theta),
            quotient(theta * theta, den_s),
            num * inv_den,
            quotient(t, t),
            quotient(0.0, t),
        ];
        let m_theta = 2.0 * d1 * theta + 2.0 * s * (1.0 - 2.0 * theta) - 2.0 * d0 * (1.0 - theta);
        let two_t_den = 2.0 * t * inv_den;
        let l = [
            m_theta * inv_m - 2.0 * den_theta * inv_den,
            2.0 / s + 2.0 * t * inv_m - 2.0 * den_s * inv_den,
            0.0,
            (1.0 - theta) * (1.0 - theta) * inv_m - two_t_den,
            theta * theta * inv_m - two_t_den,
        ];
        (f, l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Forward then backward through the kernel bodies; `out` is `y, log_det, cache, g_x,
    /// g_params`.
    #[inline(always)]
    fn kernels(
        direction: Direction,
        x: &[f64],
        params: &[f64],
        spec: &RationalQuadratic,
        gy: &[f64],
        gl: &[f64],
        [y, ld, cache, gx, gp]: [&mut Vec<f64>; 5],
    ) {
        if direction == Direction::Forward {
            forward_body::<f64, false>(x, params, spec, y, ld, cache);
            backward_body::<f64, false>(spec, cache, gy, gl, gx, gp);
        } else {
            forward_body::<f64, true>(x, params, spec, y, ld, cache);
            backward_body::<f64, true>(spec, cache, gy, gl, gx, gp);
        }
    }

    /// The copies compiled for the widest vectors this CPU has (what `forward` and `backward`
    /// run), for AVX2 and for the baseline give the same bits: nothing is contracted into FMAs.
    #[test]
    fn vector_copies_match_the_baseline_bit_for_bit() {
        let spec = RationalQuadratic {
            bins: 5,
            tail_bound: 3.0,
            min_bin_width: 1e-3,
            min_bin_height: 1e-3,
            min_derivative: 1e-3,
        };
        let (n, p) = (203, spec.params_per_feature());
        let (blocks, width) = cache_shape(n, &spec);
        let mut r = rand::rngs::StdRng::seed_from_u64(3);
        let x: Vec<f64> = (0..n).map(|_| r.random_range(-3.5..3.5)).collect();
        let params: Vec<f64> = (0..n * p).map(|_| r.random_range(-4.0..4.0)).collect();
        let g: Vec<f64> = (0..2 * n).map(|_| r.random_range(-1.0..1.0)).collect();
        for direction in [Direction::Forward, Direction::Inverse] {
            // The copy `forward` and `backward` pick, then the kernels compiled for AVX2 and
            // for the baseline (the first two are the same on a CPU without AVX-512).
            let run = |copy: &str| {
                let (mut y, mut ld) = (vec![0.0; n], vec![0.0; n]);
                let mut cache = vec![0.0; blocks * width];
                let (mut gx, mut gp) = (vec![0.0; n], vec![0.0; n * p]);
                let (gy, gl) = g.split_at(n);
                match copy {
                    "widest" => {
                        forward(&x, &params, &spec, direction, &mut y, &mut ld, &mut cache);
                        backward(&spec, direction, &cache, gy, gl, &mut gx, &mut gp);
                    }
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: only called where the CPU has AVX2 and FMA.
                    "avx2" => unsafe {
                        super::super::simd::with_avx2(
                            #[inline(always)]
                            || {
                                kernels(
                                    direction,
                                    &x,
                                    &params,
                                    &spec,
                                    gy,
                                    gl,
                                    [&mut y, &mut ld, &mut cache, &mut gx, &mut gp],
                                )
                            },
                        )
                    },
                    _ => kernels(
                        direction,
                        &x,
                        &params,
                        &spec,
                        gy,
                        gl,
                        [&mut y, &mut ld, &mut cache, &mut gx, &mut gp],
                    ),
                }
                [y, ld, cache, gx, gp].map(|v| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            let baseline = run("baseline");
            assert_eq!(run("widest"), baseline, "{direction:?}");
            #[cfg(target_arch = "x86_64")]
            if super::super::simd::has_avx2() {
                assert_eq!(run("avx2"), baseline, "{direction:?}");
            }
        }
    }
}
