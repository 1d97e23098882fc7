//! `coupling.cu` against `Cpu<f64>`: the affine coupling (output and log-det, every lane
//! count from 1 to 32 on blocks of 32 to 256, both scales, both directions, `d2` from 1 to
//! `d`, rows of 1 to 784 columns and 100 000 rows) against `Tensor::affine_coupling`, and its
//! backward against the CPU backend's `Backend::affine_coupling_backward`; outputs filled
//! with NaN first.

use flow_core::{Backend, CouplingScale, Direction};
use flow_cuda_hostcheck::both_types;
use flow_cuda_hostcheck::check::{
    assert_close, assert_same, cpu, group_launch, nans, nth, plan, tensor, to_f64s, to_real,
    values, with_specials, Real, Rng, LANES,
};
use flow_cuda_hostcheck::Launch;

/// The shapes: one row, one column, ragged rows, odd widths, rows of 784, 100 000 rows
/// (tens of rows only where a row may have a warp: each of its shuffles is a barrier of 32
/// threads on the host).
const SHAPES: [(usize, usize); 6] = [
    (1, 300),
    (67, 1),
    (77, 5),
    (45, 17),
    (37, 784),
    (100_000, 3),
];

/// The scales with their codes in `coupling.cu`.
const SCALES: [(CouplingScale, i32); 2] = [(CouplingScale::Exp, 0), (CouplingScale::Sigmoid, 1)];
/// The directions with their codes.
const DIRECTIONS: [(Direction, i32); 2] = [(Direction::Forward, 0), (Direction::Inverse, 1)];

/// The transformed widths of `rows` rows of `d` columns: 1, half, all but one, all (for
/// 100 000 rows, all but one only: the other shapes cover the widths).
fn widths(rows: usize, d: usize) -> Vec<usize> {
    if rows > 50_000 {
        return vec![d - 1];
    }
    let mut w = vec![1, d / 2, d - 1, d];
    w.retain(|&x| x >= 1);
    w.sort_unstable();
    w.dedup();
    w
}

/// The log-scale `s` of a raw scale and `ds/draw`, in f64.
fn log_scale(raw: f64, scale: CouplingScale) -> (f64, f64) {
    match scale {
        CouplingScale::Exp => (raw, 1.0),
        CouplingScale::Sigmoid => {
            let a = -(raw + 2.0);
            let sigmoid = 1.0 / (1.0 + (-a).exp());
            (a.max(0.0) + (-a.abs()).exp().ln_1p(), -sigmoid)
        }
    }
}

/// Inputs of one check: rows with the special values (infinities, NaN, signed zeros) among
/// them, and parameters whose raw scales reach +-20 now and then.
fn inputs<T: Real>(rng: &mut Rng, rows: usize, d: usize, d2: usize) -> (Vec<T>, Vec<T>) {
    let v = to_real::<T>(&with_specials(rng, rows * d, -3.0, 3.0));
    let p: Vec<f64> = (0..rows * 2 * d2)
        .map(|i| match (i % 2, i % 97) {
            (0, _) => rng.uniform(-2.0, 2.0),
            (_, 1) => 20.0,
            (_, 3) => -20.0,
            _ => rng.uniform(-4.0, 4.0),
        })
        .collect();
    (v, to_real::<T>(&p))
}

/// A tolerance of `T::RTOL` relative to `scale`, none where the reference is not finite.
fn within<T: Real>(scale: f64, want: f64) -> f64 {
    if want.is_finite() {
        T::RTOL * scale
    } else {
        0.0
    }
}

fn affine_coupling<T: Real>() {
    let mut rng = Rng::new(40);
    let mut k = 0;
    for (rows, d) in SHAPES {
        for (w, d2) in widths(rows, d).into_iter().enumerate() {
            let d1 = d - d2;
            let (v, p) = inputs::<T>(&mut rng, rows, d, d2);
            let (v64, p64) = (to_f64s(&v), to_f64s(&p));
            let (tv, tp) = (tensor(rows, d, &v64), tensor(rows, 2 * d2, &p64));
            for (sc, (scale, scale_code)) in SCALES.into_iter().enumerate() {
                // Each transformed entry's log-scale, and the size of each row's log-det's
                // terms.
                let s: Vec<f64> = p64
                    .chunks_exact(2)
                    .map(|tr| log_scale(tr[1], scale).0)
                    .collect();
                let abs_sums: Vec<f64> = s
                    .chunks_exact(d2)
                    .map(|row| row.iter().map(|x| x.abs()).sum())
                    .collect();
                for (dc, (direction, direction_code)) in DIRECTIONS.into_iter().enumerate() {
                    let (out, log_det) = tv.affine_coupling(&tp, scale, direction).unwrap();
                    let (want, want_log_det) = (values(&out), values(&log_det));
                    // The size of each output's terms: |x| e^s + |shift| forward,
                    // (|x| + |shift|) e^-s inverse.
                    let size = |i: usize| {
                        let (r, c) = (i / d, i % d);
                        if c < d1 {
                            return v64[i].abs();
                        }
                        let j = r * d2 + c - d1;
                        let (x, shift) = (v64[i].abs(), p64[2 * j].abs());
                        match direction {
                            Direction::Forward => x * s[j].exp() + shift,
                            Direction::Inverse => (x + shift) * (-s[j]).exp(),
                        }
                    };
                    // Two lane counts a check, in turn, so that each width meets all six
                    // over its four scale and direction pairs (the lanes only share out the
                    // row and its log-det's sum). 100 000 rows: one lane (no shuffles), and
                    // two once.
                    let combo = w + 2 * sc + dc;
                    let lanes: Vec<i32> = if rows > 50_000 {
                        vec![if combo == 0 { 2 } else { 1 }]
                    } else {
                        (0..2).map(|i| LANES[(2 * combo + i) % 6]).collect()
                    };
                    for lanes in lanes {
                        let launch = if rows > 50_000 {
                            Launch::new(1 + k as u32 % 3, 256)
                        } else {
                            group_launch(rows, lanes, k)
                        };
                        k += 1;
                        let mut y = nans::<T>(rows * d);
                        let mut ld = nans::<T>(rows);
                        unsafe {
                            T::affine_coupling(
                                launch,
                                v.as_ptr(),
                                p.as_ptr(),
                                y.as_mut_ptr(),
                                ld.as_mut_ptr(),
                                rows as u64,
                                d as u64,
                                d2 as u64,
                                scale_code,
                                direction_code,
                                lanes,
                            )
                        };
                        let what = format!(
                            "affine_coupling {scale:?} {direction:?} {rows}x{d} d2 = {d2}, \
                             {lanes} lanes, {launch:?}"
                        );
                        assert_close(&what, &y, &want, |i, w| within::<T>(size(i), w));
                        let pass: Vec<T> = y
                            .chunks_exact(d)
                            .flat_map(|row| row[..d1].to_vec())
                            .collect();
                        let pass_want: Vec<f64> = v64
                            .chunks_exact(d)
                            .flat_map(|row| row[..d1].to_vec())
                            .collect();
                        assert_same(&format!("{what}: passed columns"), &pass, &pass_want);
                        assert_close(&format!("{what}: log-det"), &ld, &want_log_det, |r, w| {
                            within::<T>(abs_sums[r] + 1.0, w)
                        });
                    }
                }
            }
        }
    }
}

fn affine_coupling_backward<T: Real>() {
    let mut rng = Rng::new(41);
    let mut k = 0;
    for (rows, d) in SHAPES {
        let launches = plan(rows * d);
        for d2 in widths(rows, d) {
            let d1 = d - d2;
            let (v, p) = inputs::<T>(&mut rng, rows, d, d2);
            let g = to_real::<T>(&rng.values(rows * d, -2.0, 2.0));
            let (v64, p64, g64) = (to_f64s(&v), to_f64s(&p), to_f64s(&g));
            let (tv, tp, tg) = (
                tensor(rows, d, &v64),
                tensor(rows, 2 * d2, &p64),
                tensor(rows, d, &g64),
            );
            for (scale, scale_code) in SCALES {
                for (direction, direction_code) in DIRECTIONS {
                    // The output, as the forward gives it in T: the backward reads it.
                    let out = to_real::<T>(&values(
                        &tv.affine_coupling(&tp, scale, direction).unwrap().0,
                    ));
                    let out64 = to_f64s(&out);
                    let tout = tensor(rows, d, &out64);
                    let (want_v, want_p) = cpu()
                        .affine_coupling_backward(
                            tv.storage(),
                            tp.storage(),
                            tout.storage(),
                            tg.storage(),
                            scale,
                            direction,
                        )
                        .unwrap();
                    let want_v = cpu().download(&want_v).unwrap();
                    let want_p = cpu().download(&want_p).unwrap();
                    // The raw scale's gradient of the forward, g2 (y2 - shift) ds/draw,
                    // cancels: its size is |g2| (|y2| + |shift|) |ds/draw|.
                    let size_p = |i: usize, w: f64| {
                        if i % 2 == 0 {
                            return w.abs();
                        }
                        let j = i / 2;
                        let (r, c) = (j / d2, d1 + j % d2);
                        let e = r * d + c;
                        let ds = log_scale(p64[i], scale).1.abs();
                        g64[e].abs() * (out64[e].abs() + p64[i - 1].abs()) * ds + w.abs()
                    };
                    let launch = nth(&launches, k);
                    let mut g_v = nans::<T>(rows * d);
                    let mut g_p = nans::<T>(rows * 2 * d2);
                    unsafe {
                        T::affine_coupling_backward(
                            launch,
                            p.as_ptr(),
                            out.as_ptr(),
                            g.as_ptr(),
                            g_v.as_mut_ptr(),
                            g_p.as_mut_ptr(),
                            rows as u64,
                            d as u64,
                            d2 as u64,
                            scale_code,
                            direction_code,
                        )
                    };
                    let what = format!(
                        "affine_coupling_backward {scale:?} {direction:?} {rows}x{d} \
                         d2 = {d2}, {launch:?}"
                    );
                    assert_close(&format!("{what}: g_v"), &g_v, &want_v, |_, w| {
                        within::<T>(w.abs(), w)
                    });
                    assert_close(&format!("{what}: g_params"), &g_p, &want_p, |i, w| {
                        within::<T>(size_p(i, w), w)
                    });
                    k += 1;
                }
            }
        }
    }
}

both_types!(affine_coupling, affine_coupling_backward);
