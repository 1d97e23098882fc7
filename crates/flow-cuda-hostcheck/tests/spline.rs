//! `spline.cu` against `Cpu<f64>`: the rational-quadratic spline forward and inverse (bins
//! 1, 2, 5, 8 and 16; two specs; inputs inside and outside the tail bound, on it, NaN and
//! infinite; rows of 100 000 on small grids) against `Tensor::rational_quadratic`, and the
//! backward, fed the forward kernel's own cache, against the gradients of
//! `Var::rational_quadratic` on the tape for a random projection of both halves of the
//! output.
//!
//! The kernels compute in double from the same values as the reference (in f32: the f32
//! inputs, and the spec's constants rounded to f32, on both sides). Results match to 1e-12
//! of their scale (f32: plus the rounding of the result), and the f32 kernels give exactly
//! the f64 kernels' results, rounded. Added per entry: what theta's uncertainty moves the
//! results by ([`theta_uncertainty`]): the kernel's knots may differ from the CPU's in their
//! last bits, and the inverse's quadratic, the same formula on both sides, is
//! ill-conditioned where a knot derivative is much steeper than the bin (its coefficients
//! and its root formula cancel): there theta is good to thousands of ulps only, and the
//! log-derivative, steep in theta, with it. In f32 the backward's cache holds theta rounded
//! to f32: near 0 or 1 that moves the gradients by up to ~1e-5 of their scale (measured with
//! the f64 kernel, and part of the f32 tolerance).

use flow_core::{Direction, RationalQuadratic, Tape, Tensor};
use flow_cuda_hostcheck::both_types;
use flow_cuda_hostcheck::check::{
    assert_close, assert_same, cpu, nans, nth, plan, tensor, to_f64s, to_real, values, Real, Rng,
};
use flow_cuda_hostcheck::Launch;

const BINS: [usize; 5] = [1, 2, 5, 8, 16];
const DIRECTIONS: [(Direction, i32); 2] = [(Direction::Forward, 0), (Direction::Inverse, 1)];
/// Values a cache entry holds (`KERNELS.md`).
const CACHE: usize = 8;

/// The spec of the `variant`-th check with its constants rounded to T (the kernel reads
/// them as T; the reference gets the same values).
fn spec<T: Real>(bins: usize, variant: usize) -> RationalQuadratic {
    let t = |x: f64| T::of(x).to_f64();
    if variant % 2 == 0 {
        RationalQuadratic {
            bins,
            tail_bound: 3.0,
            min_bin_width: t(1e-3),
            min_bin_height: t(1e-3),
            min_derivative: t(1e-3),
        }
    } else {
        RationalQuadratic {
            bins,
            tail_bound: t(4.5),
            min_bin_width: t(1e-2),
            min_bin_height: t(2e-2),
            min_derivative: t(1e-2),
        }
    }
}

/// The shapes of the checks with `bins` bins: one row, one column, ragged rows, and for 5
/// bins 100 000 rows.
fn shapes(bins: usize) -> Vec<(usize, usize)> {
    let mut s = vec![(1, 150), (150, 1), (37, 7)];
    if bins == 5 {
        s.push((100_000, 1));
    }
    s
}

/// Entries of `x`: about a fifth outside `[-B, B]`, and the special values: both ends of
/// the bound, just past them, zeros, NaN, infinities.
fn spline_inputs<T: Real>(rng: &mut Rng, n: usize, bound: f64) -> Vec<T> {
    let past = bound * (1.0 + 1e-6);
    let specials = [
        bound,
        -bound,
        past,
        -past,
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-9,
    ];
    let mut x = rng.values(n, -1.25 * bound, 1.25 * bound);
    // Spread through the entries (the first `n / 7`-th ones, so one-column shapes get them
    // in several rows).
    let step = (n / specials.len()).clamp(1, 7);
    for (i, s) in specials.into_iter().enumerate() {
        if i * step < n {
            x[i * step] = s;
        }
    }
    to_real(&x)
}

/// Raw parameters: logits on `[-3, 3]`, now and then +-12 (bins at their minimum width or
/// height, knot derivatives near their bounds).
fn spline_params<T: Real>(rng: &mut Rng, n: usize) -> Vec<T> {
    let p: Vec<f64> = (0..n)
        .map(|i| match i % 29 {
            3 => 12.0,
            17 => -12.0,
            _ => rng.uniform(-3.0, 3.0),
        })
        .collect();
    to_real(&p)
}

/// The tolerance of a result of the kernel: `rel` of `scale` (the double computations'
/// differences), and in f32 the rounding of the result to f32 (half an ulp, 2^-24 |want|).
fn tolerance<T: Real>(want: f64, scale: f64, rel: f64) -> f64 {
    let rounding = if T::NAME == "f32" {
        want.abs() * f64::from(f32::EPSILON) / 2.0
    } else {
        0.0
    };
    rel * scale + rounding
}

/// How far the kernel's theta may be from the CPU backend's for the cache entry `c` (the
/// kernel's bin, theta, w, h, d0, d1), four times over; 0 outside the bound.
///
/// Both sides compute theta with the same formulas from knots that may differ in their last
/// bits (`bins + 1` roundings of `2 B`: the CPU's softmaxes use its own `exp`). Forward,
/// `theta = (x - x0) / w` moves by that over `w`. The inverse solves the quadratic
/// `qa theta^2 + qb theta + qc = 0` (`flow_bin_solve`), whose coefficients cancel where a
/// knot derivative is much steeper than the bin: errors `dqa`, `dqb`, `dqc` in them move
/// the root by `(|dqa| theta^2 + |dqb| theta + |dqc|) / sqrt(disc)`, an error `do` in
/// `y - y0` by `den do / sqrt(disc)`, and the root formula `2 qc / (-qb - sqrt(disc))`
/// itself rounds to `eps (|qb| + sqrt(disc)) / |qb + sqrt(disc)|` of theta (it cancels
/// too, near theta = 1, where `qb < 0`).
fn theta_uncertainty(c: &[f64], spec: &RationalQuadratic, inverse: bool) -> f64 {
    if c[0] < 0.0 {
        return 0.0;
    }
    let (theta, w, h, d0, d1) = (c[1], c[2], c[3], c[4], c[5]);
    let eps = f64::EPSILON;
    let knots = 2.0 * spec.tail_bound * (spec.bins + 1) as f64 * eps;
    if !inverse {
        return 4.0 * (knots * (1.0 + theta) / w + eps);
    }
    let s = h / w;
    let cc = d0 + d1 - 2.0 * s;
    let t = theta * (1.0 - theta);
    let den = s + cc * t;
    let offset = h * (s * theta * theta + d0 * t) / den;
    let qa = h * (s - d0) + offset * cc;
    let qb = h * d0 - offset * cc;
    let qc = -s * offset;
    let root = (qb * qb - 4.0 * qa * qc).max(0.0).sqrt();
    // The bin's quantities: relative errors of a few roundings and the knots' over h and w.
    let r = 4.0 * eps + knots / h + knots / w;
    let spread = offset.abs() * (d0 + d1 + 2.0 * s);
    let dqa = r * (h * (s + d0) + spread);
    let dqb = r * (h * d0 + spread);
    let dqc = r * s * offset.abs();
    let coefficients = (dqa * theta * theta + dqb * theta + dqc + den * knots) / root;
    let formula = theta * eps * (qb.abs() + root) / (qb + root).abs();
    let total = coefficients + formula + eps;
    if total.is_finite() {
        4.0 * total
    } else {
        0.0
    }
}

/// For the cache entry `c`: how fast the output (`y` forward, `x` inverse) and the
/// log-derivative move with theta. With `t = theta (1 - theta)`, `den = s + (d0 + d1 - 2 s)
/// t` and `m = d1 theta^2 + 2 s t + d0 (1 - theta)^2`: `dy/dtheta = h s m / den^2`, `dx/dtheta
/// = w`, `dL/dtheta = m'/m - 2 den'/den`.
fn theta_slopes(c: &[f64], inverse: bool) -> (f64, f64) {
    let (theta, w, h, d0, d1) = (c[1], c[2], c[3], c[4], c[5]);
    let s = h / w;
    let cc = d0 + d1 - 2.0 * s;
    let t = theta * (1.0 - theta);
    let den = s + cc * t;
    let m = d1 * theta * theta + 2.0 * s * t + d0 * (1.0 - theta) * (1.0 - theta);
    let m_theta = 2.0 * d1 * theta + 2.0 * s * (1.0 - 2.0 * theta) - 2.0 * d0 * (1.0 - theta);
    let den_theta = cc * (1.0 - 2.0 * theta);
    let out = if inverse { w } else { h * s * m / (den * den) };
    (out, (m_theta / m - 2.0 * den_theta / den).abs())
}

/// The forward kernel's output and cache.
#[allow(clippy::too_many_arguments)]
fn run_forward<T: Real>(
    launch: Launch,
    x: &[T],
    params: &[T],
    rows: usize,
    d: usize,
    spec: &RationalQuadratic,
    direction: i32,
) -> (Vec<T>, Vec<T>) {
    let mut out = nans::<T>(rows * 2 * d);
    let mut cache = nans::<T>(rows * d * CACHE);
    unsafe {
        T::rational_quadratic(
            launch,
            x.as_ptr(),
            params.as_ptr(),
            out.as_mut_ptr(),
            cache.as_mut_ptr(),
            rows as u64,
            d as u64,
            spec.bins as i32,
            T::of(spec.tail_bound),
            T::of(spec.min_bin_width),
            T::of(spec.min_bin_height),
            T::of(spec.min_derivative),
            direction,
        )
    };
    (out, cache)
}

/// The backward kernel on the forward kernel's `cache`: `(g_x, g_params)`.
#[allow(clippy::too_many_arguments)]
fn run_backward<T: Real>(
    launch: Launch,
    params: &[T],
    cache: &[T],
    g: &[T],
    rows: usize,
    d: usize,
    spec: &RationalQuadratic,
    direction: i32,
) -> (Vec<T>, Vec<T>) {
    let mut g_x = nans::<T>(rows * d);
    let mut g_p = nans::<T>(rows * d * spec.params_per_feature());
    unsafe {
        T::rational_quadratic_backward(
            launch,
            params.as_ptr(),
            cache.as_ptr(),
            g.as_ptr(),
            g_x.as_mut_ptr(),
            g_p.as_mut_ptr(),
            rows as u64,
            d as u64,
            spec.bins as i32,
            T::of(spec.tail_bound),
            T::of(spec.min_bin_width),
            T::of(spec.min_bin_height),
            direction,
        )
    };
    (g_x, g_p)
}

/// Values rounded to T, as f64.
fn rounded<T: Real>(v: &[f64]) -> Vec<f64> {
    to_f64s(&to_real::<T>(v))
}

fn rational_quadratic<T: Real>() {
    let mut rng = Rng::new(60);
    let mut k = 0;
    for (b, bins) in BINS.into_iter().enumerate() {
        for (rows, d) in shapes(bins) {
            let spec = spec::<T>(bins, b + rows);
            let p = spec.params_per_feature();
            let bound = spec.tail_bound;
            let x = spline_inputs::<T>(&mut rng, rows * d, bound);
            let params = spline_params::<T>(&mut rng, rows * d * p);
            let (x64, p64) = (to_f64s(&x), to_f64s(&params));
            let (tx, tp) = (tensor(rows, d, &x64), tensor(rows, d * p, &p64));
            let launches = plan(rows * d);
            for (direction, code) in DIRECTIONS {
                let inverse = code == 1;
                let want = values(&tx.rational_quadratic(&tp, &spec, direction).unwrap());
                for launch in [nth(&launches, k), nth(&launches, k + 4)] {
                    let (out, cache) = run_forward(launch, &x, &params, rows, d, &spec, code);
                    let what = format!(
                        "rational_quadratic {direction:?} {bins} bins (B = {bound}) \
                         {rows}x{d}, {launch:?}"
                    );
                    // Outputs on [-B, B] (or the input's own bits), then log-derivatives;
                    // plus what theta's uncertainty moves them by.
                    let cache64 = to_f64s(&cache);
                    assert_close(&what, &out, &want, |i, w| {
                        let (r, col) = (i / (2 * d), i % (2 * d));
                        let e = r * d + col % d;
                        let c = &cache64[e * CACHE..(e + 1) * CACHE];
                        let (out_slope, log_slope) = theta_slopes(c, inverse);
                        let (scale, slope) = if col < d {
                            (bound, out_slope)
                        } else {
                            (1.0, log_slope)
                        };
                        let theta = theta_uncertainty(c, &spec, inverse) * slope;
                        tolerance::<T>(w, w.abs() + scale, 1e-12) + theta
                    });
                    if T::NAME == "f32" {
                        // In double, then rounded: the f64 kernel's results on the same
                        // values, rounded to f32, bit for bit.
                        let (out64, own) = run_forward(launch, &x64, &p64, rows, d, &spec, code);
                        let against = format!("{what}: against f64's");
                        assert_same(&against, &out, &rounded::<T>(&out64));
                        let cache_what = format!("{what}: cache against f64's");
                        assert_same(&cache_what, &cache, &rounded::<T>(&own));
                    }
                    // The cache's bin: -1 exactly where the input is outside or NaN, else
                    // one of the bins with theta in [0, 1] (to rounding: the inverse's
                    // theta at y = B can be 1 + eps, as the CPU backend's).
                    for (e, c) in cache64.chunks_exact(CACHE).enumerate() {
                        let v = x64[e];
                        let (bin, theta) = (c[0], c[1]);
                        let inside = v.abs() <= bound;
                        assert!(
                            if inside {
                                bin >= 0.0
                                    && bin < bins as f64
                                    && (-1e-12..=1.0 + 1e-12).contains(&theta)
                            } else {
                                bin == -1.0
                            },
                            "{what}: cache of entry {e} (x = {v}) holds bin {bin}, theta {theta}"
                        );
                    }
                }
                k += 1;
            }
        }
    }
}

/// Gradients of `sum(y * g_y) + sum(log|dy/dx| * g_l)` with respect to `x` and the
/// parameters, through the tape on `Cpu<f64>`.
fn tape_gradients(
    x: &Tensor<flow_core::Cpu<f64>>,
    params: &Tensor<flow_core::Cpu<f64>>,
    g_y: &Tensor<flow_core::Cpu<f64>>,
    g_l: &Tensor<flow_core::Cpu<f64>>,
    spec: &RationalQuadratic,
    direction: Direction,
) -> (Vec<f64>, Vec<f64>) {
    let tape = Tape::new(&cpu());
    let (xv, pv) = (tape.input(x.clone()), tape.input(params.clone()));
    let (y, ld) = xv.rational_quadratic(&pv, spec, direction).unwrap();
    let (gy, gl) = (tape.constant(g_y.clone()), tape.constant(g_l.clone()));
    let loss = y
        .mul(&gy)
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&ld.mul(&gl).unwrap().sum_all().unwrap())
        .unwrap();
    let grads = tape.grad(&loss, &[&xv, &pv], false).unwrap();
    (values(&grads[0].value()), values(&grads[1].value()))
}

/// Per entry, the largest of `|a - b|` over its `g_x` and its `p` parameters' gradients.
fn entry_max_diff(a: (&[f64], &[f64]), b: (&[f64], &[f64]), p: usize) -> Vec<f64> {
    (0..a.0.len())
        .map(|e| {
            let params = (e * p..(e + 1) * p).map(|i| (a.1[i] - b.1[i]).abs());
            params.fold((a.0[e] - b.0[e]).abs(), f64::max)
        })
        .map(|m: f64| if m.is_nan() { 0.0 } else { m })
        .collect()
}

/// The backward fed the forward kernel's cache against the tape's gradients on `Cpu<f64>`
/// for a random projection `g` of both halves of the output. The tolerance of an entry:
/// `1e-12` of its scale (the largest of its gradients and its projection); plus twice what
/// moving the cached theta by its uncertainty ([`theta_uncertainty`]) changes the f64
/// kernel's gradients by; plus in f32 twice the rounding of the results and the effect of
/// the cache's rounding to f32 (the f64 kernel on the f32 cache against it on its own: near
/// theta = 0 or 1 the rounding of theta moves the gradients by up to ~1e-5 of their scale).
/// In f32 the kernel must also give exactly the f64 kernel's results on the same f32 cache,
/// rounded.
fn rational_quadratic_backward<T: Real>() {
    let mut rng = Rng::new(61);
    let mut k = 0;
    for (b, bins) in BINS.into_iter().enumerate() {
        for (rows, d) in shapes(bins) {
            let spec = spec::<T>(bins, b + rows + 1);
            let p = spec.params_per_feature();
            let x = spline_inputs::<T>(&mut rng, rows * d, spec.tail_bound);
            let params = spline_params::<T>(&mut rng, rows * d * p);
            // The projection: `g` as the kernel reads it (each row's g_y, then its g_l).
            let g = to_real::<T>(&rng.values(rows * 2 * d, -1.0, 1.0));
            let (x64, p64, g64) = (to_f64s(&x), to_f64s(&params), to_f64s(&g));
            let half = |second: bool| -> Vec<f64> {
                g64.chunks_exact(2 * d)
                    .flat_map(|row| if second { &row[d..] } else { &row[..d] }.to_vec())
                    .collect()
            };
            let (tx, tp) = (tensor(rows, d, &x64), tensor(rows, d * p, &p64));
            let (tgy, tgl) = (tensor(rows, d, &half(false)), tensor(rows, d, &half(true)));
            let launches = plan(rows * d);
            for (direction, code) in DIRECTIONS {
                let inverse = code == 1;
                let (want_x, want_p) = tape_gradients(&tx, &tp, &tgy, &tgl, &spec, direction);
                let scale: Vec<f64> = (0..rows * d)
                    .map(|e| {
                        let (r, c) = (e / d, e % d);
                        let gs = [g64[r * 2 * d + c], g64[r * 2 * d + d + c], want_x[e]];
                        let entry = want_p[e * p..(e + 1) * p].iter().chain(&gs);
                        entry.fold(0.0, |m: f64, v| m.max(v.abs()))
                    })
                    .collect();
                let forward = nth(&launches, k);
                let (_, cache) = run_forward(forward, &x, &params, rows, d, &spec, code);
                let launch = nth(&launches, k + 5);
                let (g_x, g_p) = run_backward(launch, &params, &cache, &g, rows, d, &spec, code);
                let what = format!(
                    "rational_quadratic_backward {direction:?} {bins} bins (B = {}) {rows}x{d}, \
                     {launch:?}",
                    spec.tail_bound
                );
                // The f64 kernel on the cache (widened from f32 in f32), then with every
                // theta moved by its uncertainty either way.
                let cache64 = to_f64s(&cache);
                let base = run_backward(launch, &p64, &cache64, &g64, rows, d, &spec, code);
                let mut slack = vec![0.0; rows * d];
                for sign in [1.0, -1.0] {
                    let mut moved = cache64.clone();
                    for c in moved.chunks_exact_mut(CACHE) {
                        c[1] += sign * theta_uncertainty(c, &spec, inverse);
                    }
                    let (mx, mp) = run_backward(launch, &p64, &moved, &g64, rows, d, &spec, code);
                    let change = entry_max_diff((&mx, &mp), (&base.0, &base.1), p);
                    for (s, c) in slack.iter_mut().zip(change) {
                        *s = f64::max(*s, 2.0 * c);
                    }
                }
                if T::NAME == "f32" {
                    let (rx, rp) = (rounded::<T>(&base.0), rounded::<T>(&base.1));
                    assert_same(&format!("{what}: g_x against f64's"), &g_x, &rx);
                    assert_same(&format!("{what}: g_params against f64's"), &g_p, &rp);
                    let (_, own) = run_forward(forward, &x64, &p64, rows, d, &spec, code);
                    let (ox, op) = run_backward(launch, &p64, &own, &g64, rows, d, &spec, code);
                    let effect = entry_max_diff((&base.0, &base.1), (&ox, &op), p);
                    for (s, e) in slack.iter_mut().zip(effect) {
                        *s += e;
                    }
                }
                // (Twice the rounding: in f32 that of the kernel's result, not of the
                // reference.)
                assert_close(&format!("{what}: g_x"), &g_x, &want_x, |e, w| {
                    2.0 * tolerance::<T>(w, scale[e], 1e-12) + slack[e]
                });
                assert_close(&format!("{what}: g_params"), &g_p, &want_p, |i, w| {
                    2.0 * tolerance::<T>(w, scale[i / p], 1e-12) + slack[i / p]
                });
                k += 1;
            }
        }
    }
}

both_types!(rational_quadratic, rational_quadratic_backward);
