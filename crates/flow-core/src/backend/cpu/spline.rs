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

use crate::backend::{Direction, RationalQuadratic};
use crate::element::Element;

/// One entry's knots, from its raw parameters. Derivatives are computed only at the two
/// knots of the entry's bin (each costs an exponential).
struct Knots {
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// The raw inner derivative parameters.
    raw_derivatives: Vec<f64>,
    /// `1 / L`: see [`RationalQuadratic`].
    inverse_log_bound: f64,
    /// The softmaxes of the raw widths and heights (for the backward).
    width_softmax: Vec<f64>,
    height_softmax: Vec<f64>,
}

/// Knot positions `-B + 2B cumsum(min + (1 - K min) softmax(raw))`, with the last at `B`,
/// from `exps`, the exponentials of the raw logits less their maximum.
fn positions(exps: &[f64], min: f64, bound: f64, softmax: &mut Vec<f64>, out: &mut Vec<f64>) {
    let k = exps.len();
    let inverse_total = 1.0 / exps.iter().sum::<f64>();
    softmax.resize(k, 0.0);
    out.resize(k + 1, 0.0);
    let scale = 1.0 - min * k as f64;
    out[0] = -bound;
    let mut acc = 0.0;
    for j in 0..k {
        let p = exps[j] * inverse_total;
        softmax[j] = p;
        acc += min + scale * p;
        out[j + 1] = -bound + 2.0 * bound * acc;
    }
    out[k] = bound;
}

/// For every entry, `exp(raw - max)` of its width logits and of its height logits (each
/// shifted by its own maximum): `2K` values per entry, computed in one flat loop so that the
/// exponentials of different entries overlap (and vectorise where the target allows).
fn shifted_exponentials<E: Element>(
    params: &[E],
    entries: usize,
    spec: &RationalQuadratic,
) -> Vec<f64> {
    let (k, p) = (spec.bins, spec.params_per_feature());
    let mut exps = vec![0.0; entries * 2 * k];
    for (e, out) in exps.chunks_exact_mut(2 * k).enumerate() {
        let raw = &params[e * p..e * p + 2 * k];
        for (o, r) in out.chunks_exact_mut(k).zip(raw.chunks_exact(k)) {
            let max = r.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.as_f64()));
            for (o, v) in o.iter_mut().zip(r) {
                *o = v.as_f64() - max;
            }
        }
    }
    exponentiate(&mut exps, exp2_table());
    exps
}

/// `exp` of every (non-positive) value in place; compiled a second time for AVX2, whose
/// lanes and gathers the loop vectorises to.
fn exponentiate(values: &mut [f64], table: &[f64; 64]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA, checked at run time.
        unsafe { exponentiate_avx2(values, table) };
        return;
    }
    exponentiate_body(values, table);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exponentiate_avx2(values: &mut [f64], table: &[f64; 64]) {
    exponentiate_body(values, table);
}

#[inline(always)]
fn exponentiate_body(values: &mut [f64], table: &[f64; 64]) {
    for v in values.iter_mut() {
        *v = table_exp(*v, table);
    }
}

/// `2^(j / 64)`, `j = 0..64`.
fn exp2_table() -> &'static [f64; 64] {
    static TABLE: std::sync::OnceLock<[f64; 64]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|j| (j as f64 / 64.0).exp2()))
}

/// `exp(x)` for `x <= 700` (a softmax's shifted logits, clamped derivatives), to within a
/// few ulps:
/// `2^(m / 64) e^r` with `|r| <= ln 2 / 128`, a table of `2^(j / 64)` and a degree-5 Taylor
/// polynomial. Inlined and short, unlike libm's, which is most of a spline's cost otherwise.
#[inline]
fn table_exp(x: f64, table: &[f64; 64]) -> f64 {
    const SCALE: f64 = 64.0 * std::f64::consts::LOG2_E;
    // ln 2 / 64 split so that m * LN2_64_HI is exact.
    const LN2_64_HI: f64 = 0.693_147_180_369_123_8 / 64.0;
    const LN2_64_LO: f64 = 1.908_214_929_270_587_7e-10 / 64.0;
    // Round to nearest by the 1.5 * 2^52 trick (branch-free, no libm call).
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // Below -708 the result is subnormal or zero; 0 is what a softmax needs there.
    let x = x.max(-708.0);
    let shifted = x * SCALE + ROUND;
    let m = shifted - ROUND;
    let r = (x - m * LN2_64_HI) - m * LN2_64_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0)))));
    // The integer m from the shifted value's bits (no float-to-int conversion, which AVX2
    // lacks for f64 lanes), offset so that the shift below is of a non-negative number.
    let m_plus = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(1023 * 64);
    let j = (m_plus & 63) as usize;
    // 2^k, k = floor(m / 64), through the exponent bits (k >= -1022 here).
    p * table[j] * f64::from_bits((m_plus >> 6) << 52)
}

/// `(exp(a / (1 + |a| / L)), its derivative in a)`, with `inverse_bound = 1 / L`: the
/// exponent stays within `±L`, where the table exponential is exact to a few ulps.
#[inline]
fn clamped_exp(a: f64, inverse_bound: f64) -> (f64, f64) {
    let q = 1.0 + a.abs() * inverse_bound;
    let d = table_exp(a / q, exp2_table());
    (d, d / (q * q))
}

impl Knots {
    fn new(spec: &RationalQuadratic) -> Self {
        Knots {
            xs: Vec::new(),
            ys: Vec::new(),
            raw_derivatives: Vec::new(),
            inverse_log_bound: 1.0 / spec.log_derivative_bound(),
            width_softmax: Vec::new(),
            height_softmax: Vec::new(),
        }
    }

    /// The knots of an entry with raw parameters `p`, given the exponentials of its shifted
    /// width and height logits (see [`shifted_exponentials`]).
    fn fill<E: Element>(&mut self, p: &[E], exps: &[f64], spec: &RationalQuadratic) {
        let k = spec.bins;
        let b = spec.tail_bound;
        let (widths, heights) = exps.split_at(k);
        positions(
            widths,
            spec.min_bin_width,
            b,
            &mut self.width_softmax,
            &mut self.xs,
        );
        positions(
            heights,
            spec.min_bin_height,
            b,
            &mut self.height_softmax,
            &mut self.ys,
        );
        self.raw_derivatives.clear();
        self.raw_derivatives
            .extend(p[2 * k..].iter().map(|v| v.as_f64()));
    }

    /// `(D_k, dD_k / draw)`: `(1, 0)` at both ends, the clamped exponential of the raw
    /// parameter inside (see [`RationalQuadratic`]).
    #[inline]
    fn derivative(&self, knot: usize) -> (f64, f64) {
        if knot == 0 || knot == self.xs.len() - 1 {
            (1.0, 0.0)
        } else {
            clamped_exp(self.raw_derivatives[knot - 1], self.inverse_log_bound)
        }
    }

    /// The bin of `v` among `knots`: how many inner knots are at or below it.
    fn bin(knots: &[f64], v: f64) -> usize {
        knots[1..knots.len() - 1].partition_point(|&k| k <= v)
    }
}

/// The bin's quantities and the spline's local partial derivatives at `theta`.
struct Local {
    theta: f64,
    w: f64,
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
    /// The bin's quantities, `x0`, `y0`, and the slopes `dD/draw` of its knot derivatives.
    fn new(k: &Knots, bin: usize) -> (Self, f64, f64, [f64; 2]) {
        let (x0, y0) = (k.xs[bin], k.ys[bin]);
        let w = k.xs[bin + 1] - x0;
        let h = k.ys[bin + 1] - y0;
        let ((d0, slope0), (d1, slope1)) = (k.derivative(bin), k.derivative(bin + 1));
        let local = Local {
            theta: 0.0,
            w,
            h,
            s: h / w,
            d0,
            d1,
            num: 0.0,
            den: 0.0,
            m: 0.0,
        };
        (local, x0, y0, [slope0, slope1])
    }

    fn at(&mut self, theta: f64) {
        let (s, d0, d1) = (self.s, self.d0, self.d1);
        let t = theta * (1.0 - theta);
        self.theta = theta;
        self.num = s * theta * theta + d0 * t;
        self.den = s + (d0 + d1 - 2.0 * s) * t;
        self.m = d1 * theta * theta + 2.0 * s * t + d0 * (1.0 - theta) * (1.0 - theta);
    }

    /// `log(s^2 m / den^2)`, in one logarithm: every factor is positive and bounded by the
    /// minimum bin sizes and derivatives.
    fn log_derivative(&self) -> f64 {
        let ratio = self.s / self.den;
        (ratio * ratio * self.m).ln()
    }

    /// `theta` solving `y0 + h num / den = y` (the root in [0, 1], in the form that does not
    /// cancel).
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

/// Values the backward reads per entry, so that it needs no transcendental function: the bin
/// (-1 outside the tail bound), `theta, w, h, d0, d1`, the slopes `dD/draw` of the bin's two
/// knot derivatives (0 at the ends), then the width and the height softmaxes.
pub(crate) fn cache_width(spec: &RationalQuadratic) -> usize {
    8 + 2 * spec.bins
}

/// `(y, log|dy/dx|)` of every entry, written to `y` and `log_det` (one per entry), and the
/// backward's cache (`cache_width` per entry).
pub(crate) fn forward<E: Element>(
    x: &[E],
    params: &[E],
    spec: &RationalQuadratic,
    direction: Direction,
    y: &mut [E],
    log_det: &mut [E],
    cache: &mut [E],
) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA, checked at run time.
        unsafe { forward_avx2(x, params, spec, direction, y, log_det, cache) };
        return;
    }
    forward_body(x, params, spec, direction, y, log_det, cache);
}

/// [`forward`] compiled for AVX2 (wider lanes for its per-entry loops; no FMA contraction,
/// so the results are those of the baseline build).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_avx2<E: Element>(
    x: &[E],
    params: &[E],
    spec: &RationalQuadratic,
    direction: Direction,
    y: &mut [E],
    log_det: &mut [E],
    cache: &mut [E],
) {
    forward_body(x, params, spec, direction, y, log_det, cache);
}

#[inline(always)]
fn forward_body<E: Element>(
    x: &[E],
    params: &[E],
    spec: &RationalQuadratic,
    direction: Direction,
    y: &mut [E],
    log_det: &mut [E],
    cache: &mut [E],
) {
    let p = spec.params_per_feature();
    let k = spec.bins;
    let width = cache_width(spec);
    let bound = spec.tail_bound;
    let mut knots = Knots::new(spec);
    let exps = shifted_exponentials(params, x.len(), spec);
    for (e, &xe) in x.iter().enumerate() {
        let v = xe.as_f64();
        let cached = &mut cache[e * width..(e + 1) * width];
        // Outside the bound, or NaN: the identity.
        let inside = v.abs() <= bound;
        if !inside {
            y[e] = xe;
            log_det[e] = E::zero();
            cached[0] = E::of(-1.0);
            continue;
        }
        knots.fill(
            &params[e * p..(e + 1) * p],
            &exps[e * 2 * k..(e + 1) * 2 * k],
            spec,
        );
        let search = match direction {
            Direction::Forward => &knots.xs,
            Direction::Inverse => &knots.ys,
        };
        let bin = Knots::bin(search, v);
        let (mut local, x0, y0, slopes) = Local::new(&knots, bin);
        let (out, ld) = match direction {
            Direction::Forward => {
                local.at((v - x0) / local.w);
                (y0 + local.h * local.num / local.den, local.log_derivative())
            }
            Direction::Inverse => {
                local.at(local.solve(v - y0));
                (x0 + local.theta * local.w, -local.log_derivative())
            }
        };
        y[e] = E::of(out);
        log_det[e] = E::of(ld);
        let head = [
            bin as f64,
            local.theta,
            local.w,
            local.h,
            local.d0,
            local.d1,
            slopes[0],
            slopes[1],
        ];
        for (c, v) in cached.iter_mut().zip(
            head.iter()
                .chain(&knots.width_softmax)
                .chain(&knots.height_softmax),
        ) {
            *c = E::of(*v);
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
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2() {
        // SAFETY: the CPU has AVX2, checked at run time.
        unsafe { backward_avx2(spec, direction, cache, g_y, g_log_det, g_x, g_params) };
        return;
    }
    backward_body(spec, direction, cache, g_y, g_log_det, g_x, g_params);
}

/// [`backward`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn backward_avx2<E: Element>(
    spec: &RationalQuadratic,
    direction: Direction,
    cache: &[E],
    g_y: &[E],
    g_log_det: &[E],
    g_x: &mut [E],
    g_params: &mut [E],
) {
    backward_body(spec, direction, cache, g_y, g_log_det, g_x, g_params);
}

#[inline(always)]
fn backward_body<E: Element>(
    spec: &RationalQuadratic,
    direction: Direction,
    cache: &[E],
    g_y: &[E],
    g_log_det: &[E],
    g_x: &mut [E],
    g_params: &mut [E],
) {
    let p = spec.params_per_feature();
    let k = spec.bins;
    let width = cache_width(spec);
    let bound = spec.tail_bound;
    let (mut g_xs, mut g_ys) = (vec![0.0; k + 1], vec![0.0; k + 1]);
    let (mut width_softmax, mut height_softmax) = (vec![0.0; k], vec![0.0; k]);
    let mut scratch = vec![0.0; k];
    for (e, cached) in cache.chunks_exact(width).enumerate() {
        let gp = &mut g_params[e * p..(e + 1) * p];
        gp.iter_mut().for_each(|v| *v = E::zero());
        let mut c = [0.0f64; 8];
        for (c, v) in c.iter_mut().zip(cached) {
            *c = v.as_f64();
        }
        if c[0] < 0.0 {
            g_x[e] = g_y[e];
            continue;
        }
        let bin = c[0] as usize;
        let (gy, gl) = (g_y[e].as_f64(), g_log_det[e].as_f64());
        let (w, h) = (c[2], c[3]);
        let mut local = Local {
            theta: 0.0,
            w,
            h,
            s: h / w,
            d0: c[4],
            d1: c[5],
            num: 0.0,
            den: 0.0,
            m: 0.0,
        };
        local.at(c[1]);
        let (f, l) = local.partials();
        // Gradients of the bin's quantities: x0, w, y0, h, s, d0, d1.
        let (g_in, g_x0, mut g_w, g_y0, mut g_h, g_s, g_d0, g_d1);
        match direction {
            Direction::Forward => {
                let g_theta = gy * f[0] + gl * l[0];
                g_in = g_theta / w;
                g_x0 = -g_in;
                g_w = -g_theta * local.theta / w;
                g_y0 = gy;
                g_h = gy * f[2];
                g_s = gy * f[1] + gl * l[1];
                g_d0 = gy * f[3] + gl * l[3];
                g_d1 = gy * f[4] + gl * l[4];
            }
            Direction::Inverse => {
                // x = x0 + theta w and -L, with theta(y, ...) implicit in F(theta, ...) = y:
                // d theta / dy = 1 / F_theta, d theta / dq = -F_q / F_theta.
                let g_theta = gy * w - gl * l[0];
                let through = g_theta / f[0];
                g_in = through;
                g_x0 = gy;
                g_w = gy * local.theta;
                g_y0 = -through;
                g_h = -through * f[2];
                g_s = -through * f[1] - gl * l[1];
                g_d0 = -through * f[3] - gl * l[3];
                g_d1 = -through * f[4] - gl * l[4];
            }
        }
        g_x[e] = E::of(g_in);
        // s = h / w.
        g_h += g_s / w;
        g_w -= g_s * local.s / w;
        g_xs.iter_mut().chain(&mut g_ys).for_each(|v| *v = 0.0);
        g_xs[bin] += g_x0 - g_w;
        g_xs[bin + 1] += g_w;
        g_ys[bin] += g_y0 - g_h;
        g_ys[bin + 1] += g_h;
        for j in 0..k {
            width_softmax[j] = cached[8 + j].as_f64();
            height_softmax[j] = cached[8 + k + j].as_f64();
        }
        let (min_w, min_h) = (spec.min_bin_width, spec.min_bin_height);
        raw_grads(
            &g_xs,
            &width_softmax,
            min_w,
            bound,
            &mut scratch,
            &mut gp[..k],
        );
        raw_grads(
            &g_ys,
            &height_softmax,
            min_h,
            bound,
            &mut scratch,
            &mut gp[k..2 * k],
        );
        // Only the bin's two knot derivatives were read (the end ones are constant).
        for (knot, g_d, slope) in [(bin, g_d0, c[6]), (bin + 1, g_d1, c[7])] {
            if knot > 0 && knot < k {
                gp[2 * k + knot - 1] = E::of(g_d * slope);
            }
        }
    }
}

/// From the gradients of knot positions `X_k = -B + 2B sum_{j<k} (min + (1 - K min) s_j)`
/// (the last knot's included: it is constant, and the softmax's backward removes it) to
/// those of the raw logits of the softmax `s`.
fn raw_grads<E: Element>(
    g_knots: &[f64],
    softmax: &[f64],
    min: f64,
    bound: f64,
    g_s: &mut [f64],
    out: &mut [E],
) {
    let k = softmax.len();
    // d/ds_j = 2B (1 - K min) sum_{k > j} g_k.
    let scale = 2.0 * bound * (1.0 - min * k as f64);
    let mut suffix = 0.0;
    for j in (0..k).rev() {
        suffix += g_knots[j + 1];
        g_s[j] = scale * suffix;
    }
    let dot: f64 = g_s.iter().zip(softmax).map(|(g, s)| g * s).sum();
    for ((o, g), s) in out.iter_mut().zip(g_s.iter()).zip(softmax) {
        *o = E::of(s * (g - dot));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_exp_matches_libm() {
        let mut worst: f64 = 0.0;
        for i in 0..=200_000 {
            let x = -700.0 * (i as f64 / 200_000.0).powi(3);
            let (got, want) = (super::table_exp(x, super::exp2_table()), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4.0 * f64::EPSILON, "relative error {worst:e}");
        let table = super::exp2_table();
        assert!(super::table_exp(-1e4, table) < 1e-300);
        assert_eq!(super::table_exp(0.0, table), 1.0);
        for x in [0.5, 3.0, 6.9, 50.0] {
            let (got, want) = (super::table_exp(x, table), f64::exp(x));
            assert!(
                ((got - want) / want).abs() < 4.0 * f64::EPSILON,
                "{x}: {got} vs {want}"
            );
        }
    }
}
