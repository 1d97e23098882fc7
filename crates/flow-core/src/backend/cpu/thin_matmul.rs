//! Hand-written kernels for thin matrix products, where `gemm`'s packing and blocking cost
//! far more than the arithmetic: the products of small MLPs on wide batches, with one of
//! `m`, `n`, `k` at most [`THIN`] (`x @ W^T` with one input feature, the two-column output
//! layer, the weight gradients of those layers).
//!
//! Every output element is a fixed sequence of `c + a * b` steps (never a fused
//! multiply-add), and the sums that are split into lanes are split the same way on every
//! CPU, so the AVX2 path and the portable path give bit-identical results.
//!
//! Two loop shapes cover every case, after the small operand has been copied, transposed
//! where needed, into the layout its loop reads:
//! - [`sweep`]: `R <= THIN` output lines built together as `init + sum_p coef[p] * src[p, ..]`
//!   over contiguous rows of `src`, summed in order of `p`, with `R x W` accumulators held in
//!   registers. Used for small `k` (one output row at a time), and for small `m` or `n` when
//!   the other operand's rows run along the output's long side.
//! - [`dots`]: dot products of contiguous rows with [`lanes`] independent accumulators and a
//!   fixed-order final reduction, up to four sharing each load of the long row. Used for small
//!   `m` or `n` when both operands' rows run along `k`.

use crate::element::Element;
use std::mem::{size_of, MaybeUninit};

/// Products with `min(m, n, k)` at most this go through these kernels; the rest through
/// `gemm`.
pub(crate) const THIN: usize = 8;

/// `op(a) @ op(b)`, plus `init` (a bias row of length `n`) broadcast over the rows when given,
/// for row-major `a` (`m x k`, or `k x m` when `ta`) and `b` (`k x n`, or `n x k` when `tb`)
/// with `1 <= min(m, n, k) <= THIN`. Returns the row-major `m x n` result.
pub(crate) fn thin_matmul<E: Element>(
    a: &[E],
    ta: bool,
    b: &[E],
    tb: bool,
    (m, n, k): (usize, usize, usize),
    init: Option<&[E]>,
) -> Vec<E> {
    assert!(m.min(n).min(k) >= 1);
    assert!(a.len() == m * k && b.len() == k * n);
    assert!(init.is_none_or(|row| row.len() == n));
    let p = Product {
        a,
        ta,
        b,
        tb,
        m,
        n,
        k,
        init,
    };
    let len = m * n;
    let mut out = Vec::with_capacity(len);
    let dst = &mut out.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        // An element the kernels failed to write would read as NaN in the tests.
        dst.iter_mut().for_each(|d| {
            d.write(E::nan());
        });
    }
    dispatch(&p, dst);
    // SAFETY: the capacity is at least `len`, and `run` writes each of the `m x n` elements
    // of `dst` (every path loops over all output rows and, within each, all columns).
    unsafe { out.set_len(len) };
    out
}

/// The operands of one product, as [`thin_matmul`] takes them.
#[derive(Clone, Copy)]
struct Product<'a, E> {
    a: &'a [E],
    ta: bool,
    b: &'a [E],
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    init: Option<&'a [E]>,
}

#[cfg(target_arch = "x86_64")]
fn dispatch<E: Element>(p: &Product<'_, E>, dst: &mut [MaybeUninit<E>]) {
    static AVX2_FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let avx2 = *AVX2_FMA.get_or_init(|| {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    });
    if avx2 {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { run_avx2(p, dst) }
    } else {
        run(p, dst)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn dispatch<E: Element>(p: &Product<'_, E>, dst: &mut [MaybeUninit<E>]) {
    run(p, dst)
}

/// [`run`] compiled for AVX2: the same arithmetic, in wider registers.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<E: Element>(p: &Product<'_, E>, dst: &mut [MaybeUninit<E>]) {
    run(p, dst)
}

/// `a` read transposed: the `cols x rows` row-major copy of a `rows x cols` matrix.
fn transposed<E: Copy>(a: &[E], rows: usize, cols: usize) -> Vec<E> {
    (0..cols)
        .flat_map(|c| a[c..].iter().step_by(cols).take(rows).copied())
        .collect()
}

/// Where a kernel's output lines go: line `r`, column `c` is `dst[r * line + c * col]`.
#[derive(Clone, Copy)]
struct Layout {
    line: usize,
    col: usize,
}

/// The starting value of output line `r`, column `c`.
#[derive(Clone, Copy)]
enum Init<'a, E> {
    Zero,
    /// `row[c]` on every line.
    Row(&'a [E]),
    /// `per_line[r]` on every column.
    PerLine(&'a [E]),
}

/// Picks the loop for the product's shape and writes all of `dst` (`m x n`, row-major).
#[inline(always)]
fn run<E: Element>(p: &Product<'_, E>, dst: &mut [MaybeUninit<E>]) {
    let Product {
        a,
        ta,
        b,
        tb,
        m,
        n,
        k,
        init,
    } = *p;
    let bias = init.map_or(Init::Zero, Init::Row);
    if k <= THIN {
        // Row i of the output is init + sum_p A'[i, p] * B'[p, :], over contiguous rows of B'.
        let bt;
        let rows_b: &[E] = if tb {
            bt = transposed(b, n, k);
            &bt
        } else {
            b
        };
        let mut gathered = [E::zero(); THIN];
        for (i, out_row) in dst.chunks_exact_mut(n).enumerate() {
            let coef: &[E] = if ta {
                for (p, g) in gathered[..k].iter_mut().enumerate() {
                    *g = a[p * m + i];
                }
                &gathered[..k]
            } else {
                &a[i * k..(i + 1) * k]
            };
            let layout = Layout { line: 0, col: 1 };
            sweep_any(1, coef, rows_b, n, n, k, bias, layout, out_row);
        }
    } else if n <= THIN && !ta {
        // Output (i, j) is the dot product of row i of a with row j of B'^T.
        let bt;
        let ys: &[E] = if tb {
            b
        } else {
            bt = transposed(b, k, n);
            &bt
        };
        let layout = Layout { line: 1, col: n };
        dot_rows(a, ys, k, init, false, layout, dst);
    } else if m <= THIN && tb {
        // Output (i, j) is the dot product of row i of A' with row j of b.
        let at;
        let ys: &[E] = if ta {
            at = transposed(a, k, m);
            &at
        } else {
            a
        };
        let layout = Layout { line: n, col: 1 };
        dot_rows(b, ys, k, init, true, layout, dst);
    } else if n <= THIN {
        // `ta`: column j of the output is init[j] + sum_p B'[p, j] * a[p, :], over rows of a.
        let bt;
        let coef: &[E] = if tb {
            bt = transposed(b, n, k);
            &bt
        } else {
            b
        };
        let per_line = init.map_or(Init::Zero, Init::PerLine);
        let layout = Layout { line: 1, col: n };
        sweep_any(n, coef, a, m, m, k, per_line, layout, dst);
    } else {
        // m <= THIN and not `tb`: row i is init + sum_p A'[i, p] * b[p, :], over rows of b.
        let at;
        let coef: &[E] = if ta {
            a
        } else {
            at = transposed(a, m, k);
            &at
        };
        let layout = Layout { line: n, col: 1 };
        sweep_any(m, coef, b, n, n, k, bias, layout, dst);
    }
}

/// [`sweep`] with `R = lines` (at most [`THIN`]) and block widths for `E`'s size: about 256
/// bytes of accumulators for one line, less per line for more.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sweep_any<E: Element>(
    lines: usize,
    coef: &[E],
    src: &[E],
    stride: usize,
    cols: usize,
    k: usize,
    init: Init<'_, E>,
    layout: Layout,
    dst: &mut [MaybeUninit<E>],
) {
    macro_rules! go {
        ($r:literal, $w32:literal, $w64:literal) => {
            if size_of::<E>() == 4 {
                sweep::<E, $r, $w32, 8>(coef, src, stride, cols, k, init, layout, dst)
            } else {
                sweep::<E, $r, $w64, 4>(coef, src, stride, cols, k, init, layout, dst)
            }
        };
    }
    match lines {
        1 => go!(1, 64, 32),
        2 => go!(2, 32, 16),
        3 => go!(3, 16, 8),
        4 => go!(4, 16, 8),
        5 => go!(5, 8, 4),
        6 => go!(6, 8, 4),
        7 => go!(7, 8, 4),
        8 => go!(8, 8, 4),
        _ => unreachable!("at most THIN output lines"),
    }
}

/// Output line `r < R`, column `c < cols` is `init(r, c) + sum_{p < k} coef[p * R + r] *
/// src[p * stride + c]`, summed in order of `p`, for columns in blocks of `WIDE`, then
/// `NARROW`, then one.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sweep<E: Element, const R: usize, const WIDE: usize, const NARROW: usize>(
    coef: &[E],
    src: &[E],
    stride: usize,
    cols: usize,
    k: usize,
    init: Init<'_, E>,
    layout: Layout,
    dst: &mut [MaybeUninit<E>],
) {
    assert!(coef.len() >= k * R && cols <= stride && src.len() >= (k - 1) * stride + cols);
    let mut c = 0;
    while c + WIDE <= cols {
        block::<E, R, WIDE>(coef, src, stride, k, c, init, layout, dst);
        c += WIDE;
    }
    while c + NARROW <= cols {
        block::<E, R, NARROW>(coef, src, stride, k, c, init, layout, dst);
        c += NARROW;
    }
    while c < cols {
        block::<E, R, 1>(coef, src, stride, k, c, init, layout, dst);
        c += 1;
    }
}

/// Columns `c0 .. c0 + W` of [`sweep`], accumulated in `R x W` registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<E: Element, const R: usize, const W: usize>(
    coef: &[E],
    src: &[E],
    stride: usize,
    k: usize,
    c0: usize,
    init: Init<'_, E>,
    layout: Layout,
    dst: &mut [MaybeUninit<E>],
) {
    let mut acc = [[E::zero(); W]; R];
    match init {
        Init::Zero => {}
        Init::Row(row) => {
            let row: &[E; W] = row[c0..c0 + W].try_into().unwrap();
            acc.iter_mut().for_each(|line| *line = *row);
        }
        Init::PerLine(per_line) => {
            for (line, &v) in acc.iter_mut().zip(&per_line[..R]) {
                *line = [v; W];
            }
        }
    }
    for p in 0..k {
        let cf: &[E; R] = coef[p * R..p * R + R].try_into().unwrap();
        let s: &[E; W] = src[p * stride + c0..p * stride + c0 + W]
            .try_into()
            .unwrap();
        for r in 0..R {
            for l in 0..W {
                acc[r][l] = acc[r][l] + cf[r] * s[l];
            }
        }
    }
    for (r, line) in acc.iter().enumerate() {
        let start = r * layout.line + c0 * layout.col;
        if layout.col == 1 {
            for (d, &v) in dst[start..start + W].iter_mut().zip(line) {
                d.write(v);
            }
        } else {
            for (l, &v) in line.iter().enumerate() {
                dst[start + l * layout.col].write(v);
            }
        }
    }
}

/// Output line `y`, column `x` is `init + dot(xs row x, ys row y)` for every row of `xs`
/// and of `ys` (both `k` long), where `init` is `init[x]` if `init_by_x`, else `init[y]`.
#[inline(always)]
fn dot_rows<E: Element>(
    xs: &[E],
    ys: &[E],
    k: usize,
    init: Option<&[E]>,
    init_by_x: bool,
    layout: Layout,
    dst: &mut [MaybeUninit<E>],
) {
    macro_rules! go {
        ($s:literal, $x:expr, $group:expr) => {
            if size_of::<E>() == 4 {
                dots::<E, $s, 16>($x, $group, k)
            } else {
                dots::<E, $s, 8>($x, $group, k)
            }
        };
    }
    let ny = ys.len() / k;
    for (x, xrow) in xs.chunks_exact(k).enumerate() {
        let mut y0 = 0;
        while y0 < ny {
            let group = &ys[y0 * k..];
            let mut sums = [E::zero(); 4];
            let s = (ny - y0).min(4);
            match s {
                4 => sums = go!(4, xrow, group),
                3 => sums[..3].copy_from_slice(&go!(3, xrow, group)),
                2 => sums[..2].copy_from_slice(&go!(2, xrow, group)),
                _ => sums[..1].copy_from_slice(&go!(1, xrow, group)),
            }
            for (y, &sum) in (y0..y0 + s).zip(&sums) {
                let v = match init {
                    Some(row) => row[if init_by_x { x } else { y }] + sum,
                    None => sum,
                };
                dst[y * layout.line + x * layout.col].write(v);
            }
            y0 += s;
        }
    }
}

/// The dot products of `x` (`k` long) with the first `S` rows of `ys` (row-major, rows `k`
/// long), each in `L` lane accumulators: element `p` goes to lane `p % L`, then the lanes are
/// halved pairwise down to one.
#[inline(always)]
fn dots<E: Element, const S: usize, const L: usize>(x: &[E], ys: &[E], k: usize) -> [E; S] {
    let (x, ys) = (&x[..k], &ys[..S * k]);
    let mut acc = [[E::zero(); L]; S];
    let full = k / L;
    for c in 0..full {
        let xc: &[E; L] = x[c * L..c * L + L].try_into().unwrap();
        for (s, lanes) in acc.iter_mut().enumerate() {
            let off = s * k + c * L;
            let yc: &[E; L] = ys[off..off + L].try_into().unwrap();
            for l in 0..L {
                lanes[l] = lanes[l] + xc[l] * yc[l];
            }
        }
    }
    let tail = full * L;
    let mut out = [E::zero(); S];
    for (s, lanes) in acc.iter_mut().enumerate() {
        let yt = &ys[s * k + tail..s * k + k];
        for ((lane, &xv), &yv) in lanes.iter_mut().zip(&x[tail..]).zip(yt) {
            *lane = *lane + xv * yv;
        }
        let mut w = L;
        while w > 1 {
            w /= 2;
            for l in 0..w {
                lanes[l] = lanes[l] + lanes[l + w];
            }
        }
        out[s] = lanes[0];
    }
    out
}
