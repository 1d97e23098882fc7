//! `diag_normal.cu` against `Cpu<f64>`: the log-density of a diagonal Gaussian at each row
//! (every lane count from 1 to 32 on blocks of 32 to 256, rows of 1 to 784 columns and
//! 100 000 rows, non-finite entries) against `Tensor::diag_normal_log_prob`, and the
//! backward's per-entry terms `w` and `t` against the CPU backend's gradients (`dz = -w`,
//! `dloc` the sum of `w` over rows, `dlog_scale` that of `t`); outputs filled with NaN
//! first.

use flow_core::Backend;
use flow_cuda_hostcheck::both_types;
use flow_cuda_hostcheck::check::{
    assert_close, cpu, group_launch, nans, nth, plan, tensor, to_f64s, to_real, values,
    with_specials, Real, Rng, LANES,
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

/// `z` (`rows x d`), `loc` and `log_scale` (`1 x d`).
fn inputs<T: Real>(rng: &mut Rng, rows: usize, d: usize, specials: bool) -> [Vec<T>; 3] {
    let z = if specials {
        with_specials(rng, rows * d, -3.0, 3.0)
    } else {
        rng.values(rows * d, -3.0, 3.0)
    };
    [
        to_real(&z),
        to_real(&rng.values(d, -1.0, 1.0)),
        to_real(&rng.values(d, -2.0, 2.0)),
    ]
}

/// `u = (z - loc) exp(-log_scale)` of every entry, in f64.
fn standardized(z: &[f64], loc: &[f64], log_scale: &[f64]) -> Vec<f64> {
    let d = loc.len();
    z.iter()
        .enumerate()
        .map(|(i, &x)| (x - loc[i % d]) * (-log_scale[i % d]).exp())
        .collect()
}

fn diag_normal_log_prob<T: Real>() {
    let mut rng = Rng::new(50);
    let mut k = 0;
    for (rows, d) in SHAPES {
        let [z, loc, log_scale] = inputs::<T>(&mut rng, rows, d, true);
        let (z64, loc64, ls64) = (to_f64s(&z), to_f64s(&loc), to_f64s(&log_scale));
        let want = values(
            &tensor(rows, d, &z64)
                .diag_normal_log_prob(&tensor(1, d, &loc64), &tensor(1, d, &ls64))
                .unwrap(),
        );
        // The size of each row's terms: half the sum of u^2, the sum of |log_scale| and
        // the constant d/2 ln(2 pi).
        let u = standardized(&z64, &loc64, &ls64);
        let norm: f64 = ls64.iter().map(|x| x.abs()).sum();
        let size: Vec<f64> = u
            .chunks_exact(d)
            .map(|row| 0.5 * row.iter().map(|x| x * x).sum::<f64>() + norm + d as f64)
            .collect();
        // 100 000 rows: one lane (no shuffles) and two, on small grids.
        let plan: Vec<(i32, Launch)> = if rows > 50_000 {
            vec![(1, Launch::new(3, 256)), (2, Launch::new(1, 128))]
        } else {
            LANES
                .iter()
                .map(|&lanes| {
                    k += 1;
                    (lanes, group_launch(rows, lanes, k))
                })
                .collect()
        };
        for (lanes, launch) in plan {
            let mut out = nans::<T>(rows);
            unsafe {
                T::diag_normal_log_prob(
                    launch,
                    z.as_ptr(),
                    loc.as_ptr(),
                    log_scale.as_ptr(),
                    out.as_mut_ptr(),
                    rows as u64,
                    d as u64,
                    lanes,
                )
            };
            let what = format!("diag_normal_log_prob {rows}x{d}, {lanes} lanes, {launch:?}");
            assert_close(&what, &out, &want, |r, w| {
                if w.is_finite() {
                    T::RTOL * size[r]
                } else {
                    0.0
                }
            });
        }
    }
}

/// The sums of the columns of `x` (`rows x d`), compensated (Kahan), in f64.
fn column_sums(x: &[f64], d: usize) -> Vec<f64> {
    let mut sum = vec![0.0; d];
    let mut c = vec![0.0; d];
    for (i, &v) in x.iter().enumerate() {
        let j = i % d;
        let y = v - c[j];
        let t = sum[j] + y;
        c[j] = (t - sum[j]) - y;
        sum[j] = t;
    }
    sum
}

fn diag_normal_backward<T: Real>() {
    let mut rng = Rng::new(51);
    for (s, (rows, d)) in SHAPES.into_iter().enumerate() {
        let [z, loc, log_scale] = inputs::<T>(&mut rng, rows, d, false);
        let g = to_real::<T>(&rng.values(rows, -2.0, 2.0));
        let (z64, loc64, ls64, g64) =
            (to_f64s(&z), to_f64s(&loc), to_f64s(&log_scale), to_f64s(&g));
        let storage = |r: usize, c: usize, x: &[f64]| tensor(r, c, x).storage().clone();
        let (gz, gloc, gls) = cpu()
            .diag_normal_log_prob_backward(
                &storage(rows, d, &z64),
                &storage(1, d, &loc64),
                &storage(1, d, &ls64),
                &storage(rows, 1, &g64),
            )
            .unwrap();
        let download = |a| cpu().download(&a).unwrap();
        let (gz, gloc, gls) = (download(gz), download(gloc), download(gls));
        let u = standardized(&z64, &loc64, &ls64);
        // t = g (u^2 - 1) cancels near |u| = 1: its size is |g| (u^2 + 1).
        let t_size: Vec<f64> = u
            .iter()
            .enumerate()
            .map(|(i, x)| g64[i / d].abs() * (x * x + 1.0))
            .collect();
        let t_want: Vec<f64> = u
            .iter()
            .enumerate()
            .map(|(i, x)| g64[i / d] * (x * x - 1.0))
            .collect();
        let launches = plan(rows * d);
        for launch in [nth(&launches, s), nth(&launches, s + 4)] {
            let mut w = nans::<T>(rows * d);
            let mut t = nans::<T>(rows * d);
            unsafe {
                T::diag_normal_backward(
                    launch,
                    z.as_ptr(),
                    loc.as_ptr(),
                    log_scale.as_ptr(),
                    g.as_ptr(),
                    w.as_mut_ptr(),
                    t.as_mut_ptr(),
                    rows as u64,
                    d as u64,
                )
            };
            let what = format!("diag_normal_backward {rows}x{d} {launch:?}");
            let minus_gz: Vec<f64> = gz.iter().map(|x| -x).collect();
            assert_close(&format!("{what}: w = -dz"), &w, &minus_gz, |_, x| {
                T::RTOL * x.abs()
            });
            assert_close(&format!("{what}: t = g (u^2 - 1)"), &t, &t_want, |i, _| {
                T::RTOL * t_size[i]
            });
            // The launch code's reductions over rows, here in f64 (the sums are f64: the
            // messages name T here).
            let what = format!("{what} ({})", T::NAME);
            let (w64, t64) = (to_f64s(&w), to_f64s(&t));
            let abs = |x: &[f64]| column_sums(&x.iter().map(|v| v.abs()).collect::<Vec<_>>(), d);
            let (w_abs, t_abs) = (abs(&w64), column_sums(&t_size, d));
            let w_sum = column_sums(&w64, d);
            let t_sum = column_sums(&t64, d);
            assert_close(
                &format!("{what}: sum of w = dloc"),
                &w_sum,
                &gloc,
                |j, _| T::RTOL * w_abs[j],
            );
            assert_close(
                &format!("{what}: sum of t = dlog_scale"),
                &t_sum,
                &gls,
                |j, _| T::RTOL * t_abs[j],
            );
        }
    }
}

both_types!(diag_normal_log_prob, diag_normal_backward);
