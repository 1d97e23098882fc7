//! `columns.cu` against `Cpu<f64>`: slices, concatenations, gathers and scatter-adds of
//! columns, entries taken and put per row, and the sorted search along rows; on the shapes
//! of `check::SHAPES` (and rows of 4099 columns), several grids and blocks, outputs filled
//! with NaN (or `u32::MAX`) first.

use flow_core::{IndexTensor, Tensor};
use flow_cuda_hostcheck::both_types;
use flow_cuda_hostcheck::check::{
    assert_close, assert_same, cpu, nans, nth, plan, tensor, to_f64s, to_real, values, Real, Rng,
};

/// The shapes of the checks: those of `check::SHAPES` and rows of 4099 columns.
const SHAPES: [(usize, usize); 5] = [(1, 300), (300, 1), (333, 5), (100_000, 3), (7, 4099)];

/// Index storage as the kernels read it.
fn to_u32(index: &[usize]) -> Vec<u32> {
    index.iter().map(|&i| u32::try_from(i).unwrap()).collect()
}

fn slice_cols<T: Real>() {
    let mut rng = Rng::new(20);
    for (rows, cols) in SHAPES {
        let x = to_real::<T>(&rng.values(rows * cols, -3.0, 3.0));
        let t = tensor(rows, cols, &to_f64s(&x));
        let launches = plan(rows * cols);
        let ranges = [
            (0, cols),
            (cols / 3, cols - cols / 3),
            (cols - 1, 1),
            (cols / 2, 0),
        ];
        for (k, (start, len)) in ranges.into_iter().enumerate() {
            let want = values(&t.slice_cols(start, len).unwrap());
            for launch in [nth(&launches, k), nth(&launches, k + 4)] {
                let mut out = nans::<T>(rows * len);
                let (r, c) = (rows as u64, cols as u64);
                let (s, l) = (start as u64, len as u64);
                unsafe { T::slice_cols(launch, x.as_ptr(), out.as_mut_ptr(), r, c, s, l) };
                let what = format!("slice_cols {start}..+{len} of {rows}x{cols} {launch:?}");
                assert_same(&what, &out, &want);
            }
        }
    }
}

fn copy_cols<T: Real>() {
    let mut rng = Rng::new(21);
    for (rows, cols) in SHAPES {
        // Three parts: a column, the shape's width, two columns.
        let widths = [1, cols, 2];
        let parts: Vec<Vec<T>> = widths
            .iter()
            .map(|&w| to_real::<T>(&rng.values(rows * w, -3.0, 3.0)))
            .collect();
        let tensors: Vec<_> = parts
            .iter()
            .zip(widths)
            .map(|(p, w)| tensor(rows, w, &to_f64s(p)))
            .collect();
        let want = values(&Tensor::concat_cols(&tensors.iter().collect::<Vec<_>>()).unwrap());
        let out_cols: usize = widths.iter().sum();
        let launches = plan(rows * cols);
        for k in 0..3 {
            let mut out = nans::<T>(rows * out_cols);
            let mut offset = 0;
            for (j, (part, w)) in parts.iter().zip(widths).enumerate() {
                let launch = nth(&launches, k * 3 + j);
                let (r, w, oc, off) = (rows as u64, w as u64, out_cols as u64, offset as u64);
                unsafe { T::copy_cols(launch, part.as_ptr(), out.as_mut_ptr(), r, w, oc, off) };
                offset += w as usize;
            }
            let what = format!("copy_cols of {widths:?} columns, {rows} rows (plan {k})");
            assert_same(&what, &out, &want);
        }
    }
}

fn gather_cols<T: Real>() {
    let mut rng = Rng::new(22);
    for (rows, cols) in SHAPES {
        let x = to_real::<T>(&rng.values(rows * cols, -3.0, 3.0));
        let t = tensor(rows, cols, &to_f64s(&x));
        // A reversal, repeats, and a single column.
        let indices = [
            (0..cols).rev().collect::<Vec<_>>(),
            rng.indices(cols + 2, cols),
            vec![cols - 1],
        ];
        let launches = plan(rows * cols);
        for (k, index) in indices.iter().enumerate() {
            let want = values(
                &t.gather_cols(&IndexTensor::new(&cpu(), index).unwrap())
                    .unwrap(),
            );
            let idx = to_u32(index);
            let n = index.len();
            for launch in [nth(&launches, k), nth(&launches, k + 5)] {
                let mut out = nans::<T>(rows * n);
                let (r, c) = (rows as u64, cols as u64);
                unsafe {
                    T::gather_cols(
                        launch,
                        x.as_ptr(),
                        idx.as_ptr(),
                        out.as_mut_ptr(),
                        r,
                        c,
                        n as u64,
                    )
                };
                assert_same(
                    &format!("gather_cols of {n} from {rows}x{cols} {launch:?}"),
                    &out,
                    &want,
                );
            }
        }
    }
}

fn scatter_add_cols<T: Real>() {
    let mut rng = Rng::new(23);
    for (rows, cols) in SHAPES {
        let x = to_real::<T>(&rng.values(rows * cols, -3.0, 3.0));
        let t = tensor(rows, cols, &to_f64s(&x));
        // Repeated indices into a wider output (columns nothing lands in stay zero), and a
        // permutation.
        let indices = [
            (rng.indices(cols, cols.div_ceil(2)), cols.div_ceil(2) + 3),
            ((0..cols).rev().collect::<Vec<_>>(), cols),
        ];
        let launches = plan(rows);
        for (k, (index, width)) in indices.iter().enumerate() {
            let it = IndexTensor::new(&cpu(), index).unwrap();
            let want = values(&t.scatter_add_cols(&it, *width).unwrap());
            // The tolerance: the roundings of the sum of the row's magnitudes.
            let row_abs: Vec<f64> = x
                .chunks_exact(cols)
                .map(|row| row.iter().map(|v| v.to_f64().abs()).sum())
                .collect();
            let idx = to_u32(index);
            for launch in [
                nth(&launches, k),
                nth(&launches, k + 4),
                nth(&launches, k + 8),
            ] {
                let mut out = nans::<T>(rows * width);
                let (r, c, w) = (rows as u64, cols as u64, *width as u64);
                unsafe {
                    T::scatter_add_cols(launch, x.as_ptr(), idx.as_ptr(), out.as_mut_ptr(), r, c, w)
                };
                let what = format!("scatter_add_cols of {rows}x{cols} into {width} {launch:?}");
                assert_close(&what, &out, &want, |i, w| {
                    T::RTOL * (w.abs() + row_abs[i / width])
                });
                if T::NAME == "f64" {
                    // The CPU backend's order of additions: the same bits.
                    assert_same(&what, &out, &want);
                }
            }
        }
    }
}

fn take_per_row<T: Real>() {
    let mut rng = Rng::new(24);
    for (rows, cols) in SHAPES {
        let x = to_real::<T>(&rng.values(rows * cols, -3.0, 3.0));
        let index = rng.indices(rows, cols);
        let it = IndexTensor::new(&cpu(), &index).unwrap();
        let want = values(&tensor(rows, cols, &to_f64s(&x)).take_per_row(&it).unwrap());
        let idx = to_u32(&index);
        for launch in plan(rows) {
            let mut out = nans::<T>(rows);
            let (r, c) = (rows as u64, cols as u64);
            unsafe { T::take_per_row(launch, x.as_ptr(), idx.as_ptr(), out.as_mut_ptr(), r, c) };
            assert_same(
                &format!("take_per_row {rows}x{cols} {launch:?}"),
                &out,
                &want,
            );
        }
    }
}

fn put_per_row<T: Real>() {
    let mut rng = Rng::new(25);
    for (rows, width) in SHAPES {
        let x = to_real::<T>(&rng.values(rows, -3.0, 3.0));
        let index = rng.indices(rows, width);
        let it = IndexTensor::new(&cpu(), &index).unwrap();
        let want = values(
            &tensor(rows, 1, &to_f64s(&x))
                .put_per_row(&it, width)
                .unwrap(),
        );
        let idx = to_u32(&index);
        let launches = plan(rows * width);
        for launch in [nth(&launches, 0), nth(&launches, 4), nth(&launches, 8)] {
            let mut out = nans::<T>(rows * width);
            let (r, w) = (rows as u64, width as u64);
            unsafe { T::put_per_row(launch, x.as_ptr(), idx.as_ptr(), out.as_mut_ptr(), r, w) };
            assert_same(
                &format!("put_per_row {rows}x{width} {launch:?}"),
                &out,
                &want,
            );
        }
    }
}

fn search_sorted_rows<T: Real>() {
    let mut rng = Rng::new(26);
    for (rows, cols) in SHAPES {
        // Ascending rows of half-integers (many repeats), now and then infinite at the ends.
        let mut sorted = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            let mut row: Vec<f64> = (0..cols).map(|_| rng.below(9) as f64 * 0.5 - 2.0).collect();
            row.sort_by(f64::total_cmp);
            if r % 7 == 1 {
                row[0] = f64::NEG_INFINITY;
            }
            if r % 11 == 2 {
                row[cols - 1] = f64::INFINITY;
            }
            sorted.extend(row);
        }
        // Below, above, equal to an entry, between entries, NaN and infinities.
        let x: Vec<f64> = (0..rows)
            .map(|r| match r % 8 {
                0 => sorted[r * cols + rng.below(cols)],
                1 => -3.0,
                2 => 3.0,
                3 => f64::NAN,
                4 => f64::INFINITY,
                5 => f64::NEG_INFINITY,
                _ => rng.uniform(-2.5, 2.5),
            })
            .collect();
        let (sorted, x) = (to_real::<T>(&sorted), to_real::<T>(&x));
        let t = tensor(rows, cols, &to_f64s(&sorted));
        let found = t
            .search_sorted_rows(&tensor(rows, 1, &to_f64s(&x)))
            .unwrap();
        let want = to_u32(&found.to_vec().unwrap());
        for launch in plan(rows) {
            let mut out = vec![u32::MAX; rows];
            let (r, c) = (rows as u64, cols as u64);
            unsafe {
                T::search_sorted_rows(launch, sorted.as_ptr(), x.as_ptr(), out.as_mut_ptr(), r, c)
            };
            assert_eq!(
                out,
                want,
                "search_sorted_rows {rows}x{cols} {launch:?} ({})",
                T::NAME
            );
        }
    }
}

both_types!(
    slice_cols,
    copy_cols,
    gather_cols,
    scatter_add_cols,
    take_per_row,
    put_per_row,
    search_sorted_rows
);
