//! `reduce.cu` against `Cpu<f64>`: sums and maxima along rows, along columns and of whole
//! tensors (both passes), the first maximum's mask, logsumexp and softmax; on random inputs
//! of many shapes (rows of 100 000, columns of 4099, every lane count of the per-row
//! kernels), blocks of 32 to 1024, grids of 1, 3 and many; non-finite entries, empty
//! dimensions, and long f32 sums against an f64 reference.

use flow_core::{Axis, ReduceOp, Tensor};
use flow_cuda_hostcheck::check::{
    assert_close, assert_same, cpu, nans, tensor, to_f64s, to_real, values, Real, Rng,
};
use flow_cuda_hostcheck::{both_types, Kernels, Launch};

const SUM: i32 = 0;
const MAX: i32 = 1;

/// Shapes of the reductions: one row, one column, ragged rows, 100 000 rows, rows of 4099
/// columns, and widths that give the per-row kernels 1 to 32 lanes a row (and cross the
/// 32-column tiles of the per-column ones).
const SHAPES: [(usize, usize); 12] = [
    (1, 300),
    (300, 1),
    (333, 5),
    (100_000, 3),
    (3, 100_000),
    (50, 4099),
    (1, 4099),
    (61, 9),
    (45, 17),
    (37, 33),
    (29, 65),
    (20, 257),
];

/// Four launch shapes for `items` work items of the `k`-th check, in turn from blocks of 32,
/// 64, 256 and 1024 on grids of 1, 3 and many (enough for every item, at most 12), so that
/// over the shapes each kernel meets all of them. Blocks of 1024 threads only where there are
/// few items a block (each item a block costs a barrier of all its threads on the host).
fn reduce_plan(items: usize, k: usize) -> Vec<Launch> {
    let many = items.clamp(1, 12) as u32;
    let all = [
        Launch::new(1, 32),
        Launch::new(3, 64),
        Launch::new(many, 256),
        Launch::new(2, 1024),
        Launch::new(1, 256),
        Launch::new(3, 32),
        Launch::new(many, 64),
        Launch::new(1, 1024),
        Launch::new(many, 32),
        Launch::new(3, 256),
    ];
    (0..4)
        .map(|j| all[(4 * k + j) % all.len()])
        .map(|l| {
            if l.block == 1024 && items > 16 {
                Launch::new(l.grid, 128)
            } else {
                l
            }
        })
        .collect()
}

/// The shapes of the per-column kernels (`reduce_rows`, `argmax_mask` along rows), whose
/// work items are tiles of 32 columns: without the 100 000 columns.
fn column_shapes() -> impl Iterator<Item = (usize, usize)> {
    SHAPES.into_iter().filter(|&(_, cols)| cols < 100_000)
}

/// Blocks of 32 to 1024 threads, in turn.
fn some_block(i: usize) -> u32 {
    [32, 64, 128, 256, 512, 1024][i % 6]
}

/// Sums and maxima of `x` by the CPU backend, and the sums of |x| (the scale of a sum's
/// rounding errors), along `axis`.
fn reference(x: &[f64], rows: usize, cols: usize, axis: Axis) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let t = tensor(rows, cols, x);
    let abs: Vec<f64> = x.iter().map(|v| v.abs()).collect();
    (
        values(&t.reduce(ReduceOp::Sum, axis).unwrap()),
        values(&t.reduce(ReduceOp::Max, axis).unwrap()),
        values(&tensor(rows, cols, &abs).sum(axis).unwrap()),
    )
}

/// A sum within `T::RTOL` of the sum of the magnitudes it adds.
#[track_caller]
fn assert_sum<T: Real>(what: &str, got: &[T], want: &[f64], abs_sums: &[f64]) {
    assert_close(what, got, want, |i, w| T::RTOL * (w.abs() + abs_sums[i]));
}

fn reduce_rows<T: Real>() {
    let mut rng = Rng::new(10);
    for (k, (rows, cols)) in column_shapes().enumerate() {
        let x = to_real::<T>(&rng.values(rows * cols, -3.0, 3.0));
        let (sum, max, abs) = reference(&to_f64s(&x), rows, cols, Axis::Rows);
        for launch in reduce_plan(cols.div_ceil(32), k) {
            for (op, name) in [(SUM, "sum"), (MAX, "max")] {
                let mut out = nans::<T>(cols);
                unsafe {
                    T::reduce_rows(
                        launch,
                        x.as_ptr(),
                        out.as_mut_ptr(),
                        rows as u64,
                        cols as u64,
                        op,
                    )
                };
                let what = format!("reduce_rows {name} {rows}x{cols} {launch:?}");
                if op == SUM {
                    assert_sum(&what, &out, &sum, &abs);
                } else {
                    assert_same(&what, &out, &max);
                }
            }
        }
    }
}

fn reduce_cols<T: Real>() {
    let mut rng = Rng::new(11);
    for (k, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let x = to_real::<T>(&rng.values(rows * cols, -3.0, 3.0));
        let (sum, max, abs) = reference(&to_f64s(&x), rows, cols, Axis::Cols);
        for launch in reduce_plan(rows, k) {
            for (op, name) in [(SUM, "sum"), (MAX, "max")] {
                let mut out = nans::<T>(rows);
                unsafe {
                    T::reduce_cols(
                        launch,
                        x.as_ptr(),
                        out.as_mut_ptr(),
                        rows as u64,
                        cols as u64,
                        op,
                    )
                };
                let what = format!("reduce_cols {name} {rows}x{cols} {launch:?}");
                if op == SUM {
                    assert_sum(&what, &out, &sum, &abs);
                } else {
                    assert_same(&what, &out, &max);
                }
            }
        }
    }
}

/// `reduce_all` as the launch code runs it: `first` over `x` into one partial per block,
/// then one block of `second_block` threads over the partials. Dynamic shared memory as
/// KERNELS.md states it.
fn reduce_all_two_pass<T: Real>(x: &[T], op: i32, first: Launch, second_block: u32) -> (Vec<T>, T) {
    let bytes = |block: u32| {
        let per_thread = if op == SUM { 2 } else { 1 } * std::mem::size_of::<T>() as u64;
        u64::from(block) * per_thread
    };
    let mut partials = nans::<T>(first.grid as usize);
    let first = first.with_shared(bytes(first.block));
    unsafe { T::reduce_all(first, x.as_ptr(), partials.as_mut_ptr(), x.len() as u64, op) };
    let mut out = nans::<T>(1);
    let second = Launch::new(1, second_block).with_shared(bytes(second_block));
    let n = partials.len() as u64;
    unsafe { T::reduce_all(second, partials.as_ptr(), out.as_mut_ptr(), n, op) };
    (partials, out[0])
}

fn reduce_all<T: Real>() {
    let mut rng = Rng::new(12);
    for (k, n) in [1, 300, 1665, 4099, 100_000].into_iter().enumerate() {
        let x = to_real::<T>(&rng.values(n, -3.0, 3.0));
        let (sum, max, abs) = reference(&to_f64s(&x), 1, n, Axis::All);
        for (i, first) in reduce_plan(n, k).into_iter().enumerate() {
            for (op, name) in [(SUM, "sum"), (MAX, "max")] {
                let (partials, total) = reduce_all_two_pass(&x, op, first, some_block(i + k));
                let what = format!("reduce_all {name} of {n} {first:?}");
                if op == SUM {
                    assert_sum(&what, &[total], &sum, &abs);
                } else {
                    assert_same(&what, &[total], &max);
                }
                // Block b's partial reduces the entries its grid-stride loop visits.
                let (grid, block) = (first.grid as usize, first.block as usize);
                let share = |b: usize| {
                    let picked: Vec<f64> = (0..n)
                        .filter(|i| (i / block) % grid == b)
                        .map(|i| x[i].to_f64())
                        .collect();
                    reference(&picked, 1, picked.len(), Axis::All)
                };
                for (b, &partial) in partials.iter().enumerate().take(4) {
                    let (s, m, a) = share(b);
                    let what = format!("{what}: partial {b}");
                    if op == SUM {
                        assert_sum(&what, &[partial], &s, &a);
                    } else {
                        assert_same(&what, &[partial], &m);
                    }
                }
            }
        }
    }
}

/// Small integers (many ties) with NaN, infinities and signed zeros here and there.
fn argmax_input(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| match i % 23 {
            0 if i % 3 == 0 => f64::NAN,
            5 => f64::NEG_INFINITY,
            7 if i % 2 == 0 => -0.0,
            11 => 0.0,
            _ => rng.below(5) as f64 - 4.0,
        })
        .collect()
}

fn argmax_mask<T: Real>() {
    let mut rng = Rng::new(13);
    for (k, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let x = to_real::<T>(&argmax_input(&mut rng, rows * cols));
        let t = tensor(rows, cols, &to_f64s(&x));
        let mut checks = vec![(Axis::Cols, 1, rows)];
        if cols < 100_000 {
            checks.push((Axis::Rows, 0, cols.div_ceil(32)));
        }
        for (axis, code, items) in checks {
            let want = values(&t.argmax_mask(axis).unwrap());
            for launch in reduce_plan(items, k + code as usize) {
                let mut out = nans::<T>(rows * cols);
                unsafe {
                    T::argmax_mask(
                        launch,
                        x.as_ptr(),
                        out.as_mut_ptr(),
                        rows as u64,
                        cols as u64,
                        code,
                    )
                };
                assert_same(
                    &format!("argmax_mask {axis:?} {rows}x{cols} {launch:?}"),
                    &out,
                    &want,
                );
            }
        }
    }
}

fn logsumexp_cols<T: Real>() {
    let mut rng = Rng::new(14);
    for (k, (rows, cols)) in SHAPES.into_iter().enumerate() {
        // Wide enough that exp overflows f32 without the maximum subtracted.
        let x = to_real::<T>(&rng.values(rows * cols, -100.0, 100.0));
        let want = values(&tensor(rows, cols, &to_f64s(&x)).logsumexp_cols().unwrap());
        for launch in reduce_plan(rows, k) {
            let mut out = nans::<T>(rows);
            unsafe {
                T::logsumexp_cols(
                    launch,
                    x.as_ptr(),
                    out.as_mut_ptr(),
                    rows as u64,
                    cols as u64,
                )
            };
            // The maximum is exact; the log of the sum (at least 1) is off by its rounding.
            let what = format!("logsumexp_cols {rows}x{cols} {launch:?}");
            assert_close(&what, &out, &want, |_, w| T::RTOL * (w.abs() + 1.0));
        }
    }
}

fn softmax_cols<T: Real>() {
    let mut rng = Rng::new(15);
    for (k, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let x = to_real::<T>(&rng.values(rows * cols, -100.0, 100.0));
        let want = values(&tensor(rows, cols, &to_f64s(&x)).softmax_cols().unwrap());
        for launch in reduce_plan(rows, k) {
            let mut out = nans::<T>(rows * cols);
            unsafe {
                T::softmax_cols(
                    launch,
                    x.as_ptr(),
                    out.as_mut_ptr(),
                    rows as u64,
                    cols as u64,
                )
            };
            // `x - max` rounds at the scale of |x| (up to 200 here), and exp turns that
            // into a relative error; below f32's normal range results are absolute.
            let what = format!("softmax_cols {rows}x{cols} {launch:?}");
            assert_close(&what, &out, &want, |_, w| {
                T::RTOL * (w.abs() * 201.0 + 1e-30)
            });
        }
    }
}

/// Rows (and, transposed, columns) with infinities, NaN and signed zeros, and what each
/// reduction makes of them: as the CPU backend does.
fn non_finite<T: Real>() {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let rows: [[f64; 5]; 9] = [
        [1.0, inf, 2.0, 3.0, 4.0],        // sum inf, max inf
        [inf, -inf, 1.0, 2.0, 3.0],       // sum NaN
        [nan, 1.0, 2.0, 3.0, 4.0],        // max skips NaN; argmax takes a NaN first entry
        [-inf; 5],                        // max -inf, argmax the first
        [nan; 5],                         // max -inf
        [1.0, nan, 5.0, 5.0, -0.0],       // argmax the first of equal maxima
        [-0.0, 0.0, -1.0, -2.0, -3.0],    // zeros of both signs are equal
        [-inf, -inf, -inf, -inf, 7.0],    // the maximum last
        [3.0e30, -3.0e30, 1.0, 2.0, 3.0], // cancelling terms
    ];
    let (r, c) = (rows.len(), 5);
    let x = to_real::<T>(&rows.concat());
    let xt = to_real::<T>(&(0..c * r).map(|i| rows[i % r][i / r]).collect::<Vec<_>>());
    let t = tensor(r, c, &to_f64s(&x));
    let tt = tensor(c, r, &to_f64s(&xt));
    let big = |w: f64| T::RTOL * (w.abs() + 1e31);
    for launch in [Launch::new(1, 32), Launch::new(3, 64), Launch::new(2, 256)] {
        for (op, rop) in [(SUM, ReduceOp::Sum), (MAX, ReduceOp::Max)] {
            let what = format!("{rop:?} of non-finite rows {launch:?}");
            let mut out = nans::<T>(r);
            unsafe { T::reduce_cols(launch, x.as_ptr(), out.as_mut_ptr(), r as u64, c as u64, op) };
            let want = values(&t.reduce(rop, Axis::Cols).unwrap());
            assert_close(&format!("reduce_cols {what}"), &out, &want, |_, w| big(w));
            let mut out = nans::<T>(r);
            unsafe {
                T::reduce_rows(
                    launch,
                    xt.as_ptr(),
                    out.as_mut_ptr(),
                    c as u64,
                    r as u64,
                    op,
                )
            };
            let want = values(&tt.reduce(rop, Axis::Rows).unwrap());
            assert_close(&format!("reduce_rows {what}"), &out, &want, |_, w| big(w));
            for (k, row) in x.chunks_exact(c).enumerate() {
                let (_, total) = reduce_all_two_pass(row, op, launch, 32);
                let want = values(&tensor(1, c, &to_f64s(row)).reduce(rop, Axis::All).unwrap());
                assert_close(
                    &format!("reduce_all {what}: row {k}"),
                    &[total],
                    &want,
                    |_, w| big(w),
                );
            }
        }
        let mut out = nans::<T>(r * c);
        unsafe { T::argmax_mask(launch, x.as_ptr(), out.as_mut_ptr(), r as u64, c as u64, 1) };
        let want = values(&t.argmax_mask(Axis::Cols).unwrap());
        assert_same(
            &format!("argmax_mask per row of non-finite rows {launch:?}"),
            &out,
            &want,
        );
        let mut out = nans::<T>(r * c);
        unsafe { T::argmax_mask(launch, xt.as_ptr(), out.as_mut_ptr(), c as u64, r as u64, 0) };
        let want = values(&tt.argmax_mask(Axis::Rows).unwrap());
        assert_same(
            &format!("argmax_mask per column of non-finite columns {launch:?}"),
            &out,
            &want,
        );
        let mut out = nans::<T>(r);
        unsafe { T::logsumexp_cols(launch, x.as_ptr(), out.as_mut_ptr(), r as u64, c as u64) };
        let want = values(&t.logsumexp_cols().unwrap());
        assert_close(
            &format!("logsumexp_cols of non-finite rows {launch:?}"),
            &out,
            &want,
            |_, w| T::RTOL * (w.abs() + 1.0),
        );
        let mut out = nans::<T>(r * c);
        unsafe { T::softmax_cols(launch, x.as_ptr(), out.as_mut_ptr(), r as u64, c as u64) };
        let want = values(&t.softmax_cols().unwrap());
        assert_close(
            &format!("softmax_cols of non-finite rows {launch:?}"),
            &out,
            &want,
            |_, w| T::RTOL * (w.abs() + 1e-30),
        );
    }
}

/// No rows, or no columns: sums of nothing are 0, maxima -inf, logsumexp -inf.
fn empty_dimensions<T: Real>() {
    let x: Vec<T> = Vec::new();
    let launch = Launch::new(3, 64);
    for (op, rop) in [(SUM, ReduceOp::Sum), (MAX, ReduceOp::Max)] {
        let want = values(
            &Tensor::from_vec(&cpu(), (0, 7), vec![])
                .unwrap()
                .reduce(rop, Axis::Rows)
                .unwrap(),
        );
        let mut out = nans::<T>(7);
        unsafe { T::reduce_rows(launch, x.as_ptr(), out.as_mut_ptr(), 0, 7, op) };
        assert_same(&format!("reduce_rows {rop:?} of 0x7"), &out, &want);
        let want = values(
            &Tensor::from_vec(&cpu(), (7, 0), vec![])
                .unwrap()
                .reduce(rop, Axis::Cols)
                .unwrap(),
        );
        let mut out = nans::<T>(7);
        unsafe { T::reduce_cols(launch, x.as_ptr(), out.as_mut_ptr(), 7, 0, op) };
        assert_same(&format!("reduce_cols {rop:?} of 7x0"), &out, &want);
        let (partials, total) = reduce_all_two_pass(&x, op, launch, 32);
        let want = if op == SUM { 0.0 } else { f64::NEG_INFINITY };
        assert_same(
            &format!("reduce_all {rop:?} of nothing"),
            &partials,
            &[want; 3],
        );
        assert_same(&format!("reduce_all {rop:?} of nothing"), &[total], &[want]);
    }
    let want = values(
        &Tensor::from_vec(&cpu(), (7, 0), vec![])
            .unwrap()
            .logsumexp_cols()
            .unwrap(),
    );
    let mut out = nans::<T>(7);
    unsafe { T::logsumexp_cols(launch, x.as_ptr(), out.as_mut_ptr(), 7, 0) };
    assert_same("logsumexp_cols of 7x0", &out, &want);
}

both_types!(
    reduce_rows,
    reduce_cols,
    reduce_all,
    argmax_mask,
    logsumexp_cols,
    softmax_cols,
    non_finite,
    empty_dimensions
);

/// A plain f32 sum as `threads` threads would make it without compensation: thread `t` adds
/// entries `t, t + threads, ..` in turn, then the partials are added in order.
fn naive_f32_sum(x: &[f32], threads: usize) -> f32 {
    let partial = |t: usize| {
        x.iter()
            .skip(t)
            .step_by(threads)
            .fold(0.0f32, |acc, &v| acc + v)
    };
    (0..threads).map(partial).fold(0.0f32, |acc, p| acc + p)
}

/// f32 sums of 10^6 values against their f64 sum, within a tolerance that plain f32
/// accumulation misses by far (checked here for each launch: the same partition of the
/// values into threads, without compensation): the compensated (Kahan) sums per thread and
/// the compensated merges across threads keep the error at a few f32 roundings.
#[test]
fn long_f32_sums_are_compensated() {
    const N: usize = 1_000_000;
    const TOL: f64 = 1e-6; // relative; f32's own rounding is 6e-8
    let mut rng = Rng::new(16);
    // Values of one size (0.1 and a millionth more): a plain sum's roundings add up.
    let x: Vec<f32> = to_real(&rng.values(N, 0.1, 0.100_001));
    let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
    let rel = |got: f32| (f64::from(got) - exact).abs() / exact;
    // Each check: what the kernel computed, and how many threads shared the sum.
    let mut checks: Vec<(&str, f32, usize)> = Vec::new();

    let (_, total) = reduce_all_two_pass(&x, SUM, Launch::new(2, 32), 32);
    checks.push(("reduce_all on 2 x 32 threads", total, 64));
    let mut out = [f32::NAN];
    let (rows, one) = (N as u64, 1);
    unsafe {
        f32::reduce_rows(
            Launch::new(1, 128),
            x.as_ptr(),
            out.as_mut_ptr(),
            rows,
            one,
            SUM,
        )
    };
    checks.push(("reduce_rows over 10^6 rows, 4 warps", out[0], 4));
    unsafe {
        f32::reduce_cols(
            Launch::new(1, 32),
            x.as_ptr(),
            out.as_mut_ptr(),
            one,
            rows,
            SUM,
        )
    };
    checks.push(("reduce_cols over 10^6 columns, 32 lanes", out[0], 32));
    for (what, got, threads) in checks {
        let naive = naive_f32_sum(&x, threads);
        assert!(rel(got) < TOL, "{what}: off by {:e}", rel(got));
        assert!(
            rel(naive) > 10.0 * TOL,
            "{what}: uncompensated, off by {:e} only",
            rel(naive)
        );
    }

    // Four rows of 250 000: the per-row kernel's lanes merge compensated sums.
    let mut out = [f32::NAN; 4];
    unsafe {
        f32::reduce_cols(
            Launch::new(2, 64),
            x.as_ptr(),
            out.as_mut_ptr(),
            4,
            (N / 4) as u64,
            SUM,
        )
    };
    for (r, &got) in out.iter().enumerate() {
        let row = &x[r * N / 4..(r + 1) * N / 4];
        let exact: f64 = row.iter().map(|&v| f64::from(v)).sum();
        let err = (f64::from(got) - exact).abs() / exact;
        assert!(err < TOL, "reduce_cols row {r}: off by {err:e}");
        let naive = naive_f32_sum(row, 32);
        assert!((f64::from(naive) - exact).abs() / exact > 10.0 * TOL);
    }
}
