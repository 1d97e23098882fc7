//! Hand-written kernels for thin matrix products, where `gemm`'s packing and blocking cost
//! far more than the arithmetic: the products of small MLPs on wide batches (`x @ W^T` with
//! one input feature, the two-column output layer, the gradients of those layers); see
//! [`is_thin`].
//!
//! After the small operand has been copied, transposed where needed, into the layout its
//! loop reads, two loop shapes cover every case:
//! - [`sweep`]: output lines `init + sum_p coef(r, p) * src[p, ..]` over contiguous rows of
//!   `src`, summed in order of `p`, in blocks of registers. For small `k` (a line is an
//!   output row), and for small `n` with `a` read transposed (a line is an output column).
//! - [`dot_rows`]: dot products of contiguous rows. For small `n` with `a` not transposed,
//!   and small `m` with `b` transposed.
//!
//! Each kernel has a portable version and, on x86-64, an AVX2 version in explicit intrinsics
//! (autovectorized, these loops come out anywhere from full-width to scalar depending on the
//! surrounding code), picked at run time. Every output element is the same fixed sequence of
//! `c + a * b` steps on both (never a fused multiply-add), and the dot products are split
//! into lanes and added up in the same fixed order, so both give bit-identical results.

use crate::element::Element;
#[cfg(target_arch = "x86_64")]
use std::any::TypeId;
use std::mem::{size_of, MaybeUninit};

/// The largest `k` for the small-`k` kernel.
const MAX_K: usize = 4;

/// The largest `n` for the small-`n` kernels, and `m` for the small-`m` one.
const MAX_MN: usize = 8;

/// Whether `op(a) @ op(b)` (`m x k` by `k x n`) is thin enough for these kernels to beat
/// `gemm`: small `k`, small `n`, or small `m` with `b` read transposed. Without fused
/// multiply-adds they take twice the arithmetic instructions of `gemm`'s kernels, so where
/// the arithmetic dominates `gemm` catches up: measured on 512 x 64 f32 products, at `k` = 6
/// to 8, `n` = 12, and for small `m` with `b` not transposed (`g^T @ h`, the 2 x 64 weight
/// gradient of a two-unit layer, which `gemm` runs well).
pub(crate) fn is_thin(m: usize, n: usize, k: usize, tb: bool) -> bool {
    m.min(n).min(k) >= 1 && (k <= MAX_K || n <= MAX_MN || (m <= MAX_MN && tb))
}

/// `op(a) @ op(b)`, plus `init` (a bias row of length `n`) broadcast over the rows when
/// given, for row-major `a` (`m x k`, or `k x m` when `ta`) and `b` (`k x n`, or `n x k` when
/// `tb`) of a product that [`is_thin`]. Returns the row-major `m x n` result.
pub(crate) fn thin_matmul<E: Element>(
    a: &[E],
    ta: bool,
    b: &[E],
    tb: bool,
    mnk: (usize, usize, usize),
    init: Option<&[E]>,
) -> Vec<E> {
    thin_matmul_with(true, a, ta, b, tb, mnk, init)
}

/// Whether to run the AVX2 kernels: `simd` asked for them and the CPU has AVX2 and FMA
/// (detected once).
fn use_avx2(simd: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd && super::simd::has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = simd;
        false
    }
}

/// [`thin_matmul`] on the portable kernels, or on the fastest the CPU supports if `simd`.
fn thin_matmul_with<E: Element>(
    simd: bool,
    a: &[E],
    ta: bool,
    b: &[E],
    tb: bool,
    (m, n, k): (usize, usize, usize),
    init: Option<&[E]>,
) -> Vec<E> {
    assert!(is_thin(m, n, k, tb), "not a thin product");
    assert!(a.len() == m * k && b.len() == k * n);
    assert!(init.is_none_or(|row| row.len() == n));
    let len = m * n;
    let mut out = Vec::with_capacity(len);
    let dst = &mut out.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        // An element the kernels failed to write reads as NaN in the tests.
        dst.iter_mut().for_each(|d| {
            d.write(E::nan());
        });
    }
    let bias = init.map_or(Init::Zero, Init::Row);
    if k <= MAX_K {
        // Row i is init + sum_p A'[i, p] * B'[p, :], over contiguous rows of B' (k x n).
        let bt;
        let rows_b: &[E] = if tb {
            bt = transposed(b, n, k);
            &bt
        } else {
            b
        };
        // A'[i, p] is a[i * k + p], or a[p * m + i] when `ta`.
        let (coef_line, coef_p) = if ta { (1, m) } else { (k, 1) };
        let sw = Sweep {
            lines: m,
            coef: a,
            coef_line,
            coef_p,
            src: rows_b,
            stride: n,
            cols: n,
            k,
            init: bias,
            layout: Layout { line: n, col: 1 },
        };
        sweep(simd, sw, dst);
    } else if n <= MAX_MN && !ta {
        // Output (i, j) is the dot product of row i of a with row j of B'^T.
        let bt;
        let ys: &[E] = if tb {
            b
        } else {
            bt = transposed(b, k, n);
            &bt
        };
        let layout = Layout { line: 1, col: n };
        dot_rows(simd, a, ys, k, init, false, layout, dst);
    } else if n <= MAX_MN {
        // `ta`: column j is init[j] + sum_p B'[p, j] * a[p, :], over the rows of a (k x m).
        let bt;
        let coef: &[E] = if tb {
            bt = transposed(b, n, k);
            &bt
        } else {
            b
        };
        let sw = Sweep {
            lines: n,
            coef,
            coef_line: 1,
            coef_p: n,
            src: a,
            stride: m,
            cols: m,
            k,
            init: init.map_or(Init::Zero, Init::PerLine),
            layout: Layout { line: 1, col: n },
        };
        sweep(simd, sw, dst);
    } else {
        // m <= MAX_MN and `tb`: output (i, j) is the dot product of row i of A' with row
        // j of b.
        let at;
        let ys: &[E] = if ta {
            at = transposed(a, k, m);
            &at
        } else {
            a
        };
        let layout = Layout { line: n, col: 1 };
        dot_rows(simd, b, ys, k, init, true, layout, dst);
    }
    // SAFETY: the capacity is at least `len`, and each branch above writes all `m x n`
    // elements of `dst`: `sweep` every column of every line, `dot_rows` every pair of rows,
    // and the lines and columns (or rows) of each are the rows and columns of the output.
    unsafe { out.set_len(len) };
    out
}

/// `s` as a slice of `T`, which is `E`.
#[cfg(target_arch = "x86_64")]
fn retyped<E: 'static, T: 'static>(s: &[E]) -> &[T] {
    assert!(TypeId::of::<E>() == TypeId::of::<T>());
    // SAFETY: `T` and `E` are the same type (same `TypeId`), so this is `s` itself.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<T>(), s.len()) }
}

/// `s` as a mutable slice of `T`, which is `E`.
#[cfg(target_arch = "x86_64")]
fn retyped_mut<E: 'static, T: 'static>(s: &mut [MaybeUninit<E>]) -> &mut [MaybeUninit<T>] {
    assert!(TypeId::of::<E>() == TypeId::of::<T>());
    // SAFETY: `T` and `E` are the same type (same `TypeId`), so this is `s` itself.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<MaybeUninit<T>>(), s.len()) }
}

/// `a` read transposed: the `cols x rows` row-major copy of a `rows x cols` matrix.
fn transposed<E: Copy>(a: &[E], rows: usize, cols: usize) -> Vec<E> {
    let mut out = Vec::with_capacity(rows * cols);
    for c in 0..cols {
        out.extend((0..rows).map(|r| a[r * cols + c]));
    }
    out
}

/// Where a kernel's output goes: line `r`, column `c` is `dst[r * line + c * col]`.
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

#[cfg(target_arch = "x86_64")]
impl<'a, E: 'static> Init<'a, E> {
    fn retyped<T: 'static>(self) -> Init<'a, T> {
        match self {
            Init::Zero => Init::Zero,
            Init::Row(row) => Init::Row(retyped(row)),
            Init::PerLine(per_line) => Init::PerLine(retyped(per_line)),
        }
    }
}

/// Output line `r < lines`, column `c < cols` is `init(r, c) + sum_{p < k}
/// coef[r * coef_line + p * coef_p] * src[p * stride + c]`, summed in order of `p`.
#[derive(Clone, Copy)]
struct Sweep<'a, E> {
    lines: usize,
    coef: &'a [E],
    coef_line: usize,
    coef_p: usize,
    src: &'a [E],
    stride: usize,
    cols: usize,
    k: usize,
    init: Init<'a, E>,
    layout: Layout,
}

#[cfg(target_arch = "x86_64")]
impl<'a, E: 'static> Sweep<'a, E> {
    fn retyped<T: 'static>(self) -> Sweep<'a, T> {
        Sweep {
            coef: retyped(self.coef),
            src: retyped(self.src),
            init: self.init.retyped(),
            lines: self.lines,
            coef_line: self.coef_line,
            coef_p: self.coef_p,
            stride: self.stride,
            cols: self.cols,
            k: self.k,
            layout: self.layout,
        }
    }
}

/// Runs a [`Sweep`], writing its `lines x cols` outputs.
fn sweep<E: Element>(simd: bool, sw: Sweep<'_, E>, dst: &mut [MaybeUninit<E>]) {
    let Sweep {
        lines,
        coef,
        coef_line,
        coef_p,
        src,
        stride,
        cols,
        k,
        init,
        layout,
    } = sw;
    // The AVX2 kernel reads and writes through pointers within these bounds.
    assert!(k >= 1 && lines >= 1 && cols >= 1 && cols <= stride);
    assert!(coef.len() > (lines - 1) * coef_line + (k - 1) * coef_p);
    assert!(src.len() >= (k - 1) * stride + cols);
    assert!(dst.len() > (lines - 1) * layout.line + (cols - 1) * layout.col);
    match init {
        Init::Zero => {}
        Init::Row(row) => assert!(row.len() >= cols),
        Init::PerLine(per_line) => assert!(per_line.len() >= lines),
    }
    if use_avx2(simd) {
        #[cfg(target_arch = "x86_64")]
        if TypeId::of::<E>() == TypeId::of::<f32>() {
            // SAFETY: the CPU supports AVX2 and FMA, and the sweep is within bounds.
            return unsafe { avx2::sweep::<f32>(sw.retyped(), retyped_mut(dst)) };
        } else if TypeId::of::<E>() == TypeId::of::<f64>() {
            // SAFETY: the CPU supports AVX2 and FMA, and the sweep is within bounds.
            return unsafe { avx2::sweep::<f64>(sw.retyped(), retyped_mut(dst)) };
        }
    }
    for r in 0..lines {
        for c in 0..cols {
            sweep_one(sw, r, c, dst);
        }
    }
}

/// Line `r`, column `c` of a [`Sweep`]: the portable kernel, and the AVX2 kernel's tail.
#[inline(always)]
fn sweep_one<E: Element>(sw: Sweep<'_, E>, r: usize, c: usize, dst: &mut [MaybeUninit<E>]) {
    let mut acc = match sw.init {
        Init::Zero => E::zero(),
        Init::Row(row) => row[c],
        Init::PerLine(per_line) => per_line[r],
    };
    for p in 0..sw.k {
        acc += sw.coef[r * sw.coef_line + p * sw.coef_p] * sw.src[p * sw.stride + c];
    }
    dst[r * sw.layout.line + c * sw.layout.col].write(acc);
}

/// Output line `y`, column `x` is `init + dot(xs row x, ys row y)` for every row of `xs`
/// and of `ys` (both `k` long), where `init` is `init[x]` if `init_by_x`, else `init[y]`.
///
/// A dot product spreads its terms over 32 bytes of lanes, `L` of them (term `p` to lane
/// `p % L`, the tail zero-padded to a whole chunk), then adds neighbouring lanes pairwise,
/// repeatedly, down to one: `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))` for f32.
#[allow(clippy::too_many_arguments)]
fn dot_rows<E: Element>(
    simd: bool,
    xs: &[E],
    ys: &[E],
    k: usize,
    init: Option<&[E]>,
    init_by_x: bool,
    layout: Layout,
    dst: &mut [MaybeUninit<E>],
) {
    let (nx, ny) = (xs.len() / k, ys.len() / k);
    // The AVX2 kernel reads and writes through pointers within these bounds.
    assert!(k >= 1 && nx >= 1 && ny >= 1 && xs.len() == nx * k && ys.len() == ny * k);
    assert!(dst.len() > (ny - 1) * layout.line + (nx - 1) * layout.col);
    assert!(init.is_none_or(|row| row.len() >= if init_by_x { nx } else { ny }));
    if use_avx2(simd) {
        #[cfg(target_arch = "x86_64")]
        if TypeId::of::<E>() == TypeId::of::<f32>() {
            let (xs, ys, dst) = (retyped(xs), retyped(ys), retyped_mut(dst));
            let init = init.map(retyped);
            // SAFETY: the CPU supports AVX2 and FMA, and the rows are within bounds.
            return unsafe { avx2::dot_rows::<f32>(xs, ys, k, init, init_by_x, layout, dst) };
        } else if TypeId::of::<E>() == TypeId::of::<f64>() {
            let (xs, ys, dst) = (retyped(xs), retyped(ys), retyped_mut(dst));
            let init = init.map(retyped);
            // SAFETY: the CPU supports AVX2 and FMA, and the rows are within bounds.
            return unsafe { avx2::dot_rows::<f64>(xs, ys, k, init, init_by_x, layout, dst) };
        }
    }
    for (x, xrow) in xs.chunks_exact(k).enumerate() {
        for (y, yrow) in ys.chunks_exact(k).enumerate() {
            let sum = if size_of::<E>() == 4 {
                dot::<E, 8>(xrow, yrow)
            } else {
                dot::<E, 4>(xrow, yrow)
            };
            let v = match init {
                Some(row) => row[if init_by_x { x } else { y }] + sum,
                None => sum,
            };
            dst[y * layout.line + x * layout.col].write(v);
        }
    }
}

/// The portable dot product of [`dot_rows`], in `L` lanes.
fn dot<E: Element, const L: usize>(x: &[E], y: &[E]) -> E {
    let mut acc = [E::zero(); L];
    let (xc, yc) = (x.chunks_exact(L), y.chunks_exact(L));
    let (xt, yt) = (xc.remainder(), yc.remainder());
    for (xc, yc) in xc.zip(yc) {
        for l in 0..L {
            acc[l] += xc[l] * yc[l];
        }
    }
    if !xt.is_empty() {
        let (mut xp, mut yp) = ([E::zero(); L], [E::zero(); L]);
        xp[..xt.len()].copy_from_slice(xt);
        yp[..yt.len()].copy_from_slice(yt);
        for l in 0..L {
            acc[l] += xp[l] * yp[l];
        }
    }
    let mut w = L;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] = acc[2 * l] + acc[2 * l + 1];
        }
    }
    acc[0]
}

/// The AVX2 kernels, on 256-bit vectors of f32 or f64.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{sweep_one, Init, Layout, Sweep};
    use crate::element::Element;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// An element type with its AVX2 vector: the operations the kernels use. Every method
    /// requires a CPU with AVX2 (and is inlined into kernels compiled for it), and `vload` /
    /// `vstore` a pointer to `LANES` valid elements.
    pub(super) trait Simd: Element {
        type V: Copy;
        /// Elements per vector.
        const LANES: usize;
        unsafe fn vzero() -> Self::V;
        unsafe fn vsplat(x: Self) -> Self::V;
        unsafe fn vload(p: *const Self) -> Self::V;
        unsafe fn vstore(p: *mut Self, v: Self::V);
        unsafe fn vadd(a: Self::V, b: Self::V) -> Self::V;
        unsafe fn vmul(a: Self::V, b: Self::V) -> Self::V;
        /// Writes the lane sums of `acc[0]` .. `acc[7]`, each added up as [`super::dot`]
        /// adds its lanes, to `out[0]` .. `out[7]`, which must be writable.
        unsafe fn sums8(acc: [Self::V; 8], out: *mut Self);
    }

    impl Simd for f32 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn vzero() -> __m256 {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn vsplat(x: f32) -> __m256 {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn vload(p: *const f32) -> __m256 {
            // SAFETY: the caller runs on a CPU with AVX2 and `p` points to 8 valid floats.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn vstore(p: *mut f32, v: __m256) {
            // SAFETY: the caller runs on a CPU with AVX2 and `p` points to 8 writable floats.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn vadd(a: __m256, b: __m256) -> __m256 {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn vmul(a: __m256, b: __m256) -> __m256 {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sums8(acc: [__m256; 8], out: *mut f32) {
            let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
            // SAFETY: the caller runs on a CPU with AVX2 and `out` points to 8 writable
            // floats.
            unsafe {
                // Neighbouring lanes (within each 128-bit half), then neighbouring pairs,
                // then the two halves: [a0 a1 a2 a3 | a4 a5 a6 a7] lane sums.
                let u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
                let u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
                let lo = _mm256_permute2f128_ps::<0x20>(u0, u1);
                let hi = _mm256_permute2f128_ps::<0x31>(u0, u1);
                _mm256_storeu_ps(out, _mm256_add_ps(lo, hi));
            }
        }
    }

    impl Simd for f64 {
        type V = __m256d;
        const LANES: usize = 4;
        #[inline(always)]
        unsafe fn vzero() -> __m256d {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_setzero_pd() }
        }
        #[inline(always)]
        unsafe fn vsplat(x: f64) -> __m256d {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_set1_pd(x) }
        }
        #[inline(always)]
        unsafe fn vload(p: *const f64) -> __m256d {
            // SAFETY: the caller runs on a CPU with AVX2 and `p` points to 4 valid doubles.
            unsafe { _mm256_loadu_pd(p) }
        }
        #[inline(always)]
        unsafe fn vstore(p: *mut f64, v: __m256d) {
            // SAFETY: the caller runs on a CPU with AVX2 and `p` points to 4 writable
            // doubles.
            unsafe { _mm256_storeu_pd(p, v) }
        }
        #[inline(always)]
        unsafe fn vadd(a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_add_pd(a, b) }
        }
        #[inline(always)]
        unsafe fn vmul(a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: the caller runs on a CPU with AVX2.
            unsafe { _mm256_mul_pd(a, b) }
        }
        #[inline(always)]
        unsafe fn sums8(acc: [__m256d; 8], out: *mut f64) {
            let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
            // SAFETY: the caller runs on a CPU with AVX2 and `out` points to 8 writable
            // doubles.
            unsafe {
                // Neighbouring lanes (within each 128-bit half), then the two halves.
                let (t0, t1) = (_mm256_hadd_pd(a0, a1), _mm256_hadd_pd(a2, a3));
                let (t2, t3) = (_mm256_hadd_pd(a4, a5), _mm256_hadd_pd(a6, a7));
                let lo = _mm256_permute2f128_pd::<0x20>(t0, t1);
                let hi = _mm256_permute2f128_pd::<0x31>(t0, t1);
                _mm256_storeu_pd(out, _mm256_add_pd(lo, hi));
                let lo = _mm256_permute2f128_pd::<0x20>(t2, t3);
                let hi = _mm256_permute2f128_pd::<0x31>(t2, t3);
                _mm256_storeu_pd(out.add(4), _mm256_add_pd(lo, hi));
            }
        }
    }

    /// [`super::sweep`] in blocks of eight vectors of columns, then one, then single
    /// columns, each block on every line in turn.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA, and the sweep must pass the bounds checks of
    /// [`super::sweep`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sweep<T: Simd>(sw: Sweep<'_, T>, dst: &mut [MaybeUninit<T>]) {
        let n = T::LANES;
        let mut c = 0;
        while c + 8 * n <= sw.cols {
            for r in 0..sw.lines {
                // SAFETY: as for this function, and columns c .. c + 8 * LANES exist.
                unsafe { block8(sw, r, c, dst) };
            }
            c += 8 * n;
        }
        while c + n <= sw.cols {
            for r in 0..sw.lines {
                // SAFETY: as for this function, and columns c .. c + LANES exist.
                unsafe { block1(sw, r, c, dst) };
            }
            c += n;
        }
        for c in c..sw.cols {
            for r in 0..sw.lines {
                sweep_one(sw, r, c, dst);
            }
        }
    }

    // SAFETY (for the unsafe blocks of `block8`, `block1` and `start`): the CPU supports
    // AVX2. Columns c0 .. c0 + (8 or 1) * LANES are below `cols`, which bounds `row` (checked
    // by `super::sweep`) and is within row p of `src` (checked there: `src` holds (k - 1) *
    // stride + cols elements); the coefficient index is at most (lines - 1) * coef_line +
    // (k - 1) * coef_p, also checked there.

    /// Columns `c0 .. c0 + 8 * LANES` of line `r` of a sweep, in eight vector registers.
    ///
    /// # Safety
    /// As for [`sweep`], and those columns must exist.
    #[inline(always)]
    unsafe fn block8<T: Simd>(sw: Sweep<'_, T>, r: usize, c0: usize, dst: &mut [MaybeUninit<T>]) {
        let n = T::LANES;
        // SAFETY: see above.
        unsafe {
            let mut a0 = start(sw, r, c0);
            let mut a1 = start(sw, r, c0 + n);
            let mut a2 = start(sw, r, c0 + 2 * n);
            let mut a3 = start(sw, r, c0 + 3 * n);
            let mut a4 = start(sw, r, c0 + 4 * n);
            let mut a5 = start(sw, r, c0 + 5 * n);
            let mut a6 = start(sw, r, c0 + 6 * n);
            let mut a7 = start(sw, r, c0 + 7 * n);
            let coef = sw.coef.as_ptr().add(r * sw.coef_line);
            let mut s = sw.src.as_ptr().add(c0);
            for p in 0..sw.k {
                let cf = T::vsplat(*coef.add(p * sw.coef_p));
                a0 = T::vadd(a0, T::vmul(cf, T::vload(s)));
                a1 = T::vadd(a1, T::vmul(cf, T::vload(s.add(n))));
                a2 = T::vadd(a2, T::vmul(cf, T::vload(s.add(2 * n))));
                a3 = T::vadd(a3, T::vmul(cf, T::vload(s.add(3 * n))));
                a4 = T::vadd(a4, T::vmul(cf, T::vload(s.add(4 * n))));
                a5 = T::vadd(a5, T::vmul(cf, T::vload(s.add(5 * n))));
                a6 = T::vadd(a6, T::vmul(cf, T::vload(s.add(6 * n))));
                a7 = T::vadd(a7, T::vmul(cf, T::vload(s.add(7 * n))));
                s = s.wrapping_add(sw.stride);
            }
            finish(sw, r, c0, a0, dst);
            finish(sw, r, c0 + n, a1, dst);
            finish(sw, r, c0 + 2 * n, a2, dst);
            finish(sw, r, c0 + 3 * n, a3, dst);
            finish(sw, r, c0 + 4 * n, a4, dst);
            finish(sw, r, c0 + 5 * n, a5, dst);
            finish(sw, r, c0 + 6 * n, a6, dst);
            finish(sw, r, c0 + 7 * n, a7, dst);
        }
    }

    /// Columns `c0 .. c0 + LANES` of line `r` of a sweep.
    ///
    /// # Safety
    /// As for [`sweep`], and those columns must exist.
    #[inline(always)]
    unsafe fn block1<T: Simd>(sw: Sweep<'_, T>, r: usize, c0: usize, dst: &mut [MaybeUninit<T>]) {
        // SAFETY: see above.
        unsafe {
            let mut a = start(sw, r, c0);
            let coef = sw.coef.as_ptr().add(r * sw.coef_line);
            let mut s = sw.src.as_ptr().add(c0);
            for p in 0..sw.k {
                a = T::vadd(a, T::vmul(T::vsplat(*coef.add(p * sw.coef_p)), T::vload(s)));
                s = s.wrapping_add(sw.stride);
            }
            finish(sw, r, c0, a, dst);
        }
    }

    /// The starting values of columns `c .. c + LANES` of line `r` of a sweep.
    ///
    /// # Safety
    /// As for [`sweep`], and those columns must exist.
    #[inline(always)]
    unsafe fn start<T: Simd>(sw: Sweep<'_, T>, r: usize, c: usize) -> T::V {
        // SAFETY: see above.
        unsafe {
            match sw.init {
                Init::Zero => T::vzero(),
                Init::Row(row) => T::vload(row.as_ptr().add(c)),
                Init::PerLine(per_line) => T::vsplat(per_line[r]),
            }
        }
    }

    /// Writes `v` to columns `c .. c + LANES` of line `r` of a sweep.
    ///
    /// # Safety
    /// As for [`sweep`], and those columns must exist.
    #[inline(always)]
    unsafe fn finish<T: Simd>(
        sw: Sweep<'_, T>,
        r: usize,
        c: usize,
        v: T::V,
        dst: &mut [MaybeUninit<T>],
    ) {
        let n = T::LANES;
        let Layout { line, col } = sw.layout;
        let at = r * line + c * col;
        if col == 1 {
            // SAFETY: the CPU supports AVX2, and columns c .. c + n of line r are within
            // `dst` (checked by `super::sweep`); `MaybeUninit<T>` has the layout of `T`.
            unsafe { T::vstore(dst.as_mut_ptr().add(at).cast::<T>(), v) };
        } else {
            let mut buf = [T::zero(); 8];
            // SAFETY: the CPU supports AVX2, and `buf` holds 8 >= n elements.
            unsafe { T::vstore(buf.as_mut_ptr(), v) };
            for (l, &x) in buf[..n].iter().enumerate() {
                dst[at + l * col].write(x);
            }
        }
    }

    /// [`super::dot_rows`]: eight rows of `xs` at a time against each row of `ys`, sharing
    /// its loads, with the eight products' lanes added up together.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA, and the rows must pass the bounds checks of
    /// [`super::dot_rows`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_rows<T: Simd>(
        xs: &[T],
        ys: &[T],
        k: usize,
        init: Option<&[T]>,
        init_by_x: bool,
        layout: Layout,
        dst: &mut [MaybeUninit<T>],
    ) {
        let nx = xs.len() / k;
        let mut x0 = 0;
        while x0 < nx {
            // Rows x0 .. x0 + 8, the last repeated past the end of `xs` (no closures here:
            // they would be compiled without AVX2).
            let row = |d: usize| (x0 + d).min(nx - 1) * k;
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
            let rows = [
                &xs[r0..r0 + k],
                &xs[r1..r1 + k],
                &xs[r2..r2 + k],
                &xs[r3..r3 + k],
                &xs[r4..r4 + k],
                &xs[r5..r5 + k],
                &xs[r6..r6 + k],
                &xs[r7..r7 + k],
            ];
            let count = (nx - x0).min(8);
            for (y, yrow) in ys.chunks_exact(k).enumerate() {
                let mut sums = [T::zero(); 8];
                // SAFETY: the CPU supports AVX2, all nine rows are k long, and `sums`
                // holds 8 elements.
                unsafe { dot8(rows, yrow, sums.as_mut_ptr()) };
                for (x, &sum) in (x0..x0 + count).zip(&sums) {
                    let v = match init {
                        Some(row) => row[if init_by_x { x } else { y }] + sum,
                        None => sum,
                    };
                    // In bounds (checked by `super::dot_rows`).
                    dst[y * layout.line + x * layout.col].write(v);
                }
            }
            x0 += 8;
        }
    }

    /// Writes the dot products of `xs[0]` .. `xs[7]` with `y` (all of one length) to
    /// `out[0]` .. `out[7]`, each in one vector of lanes.
    ///
    /// # Safety
    /// The CPU must support AVX2, every row must be as long as `y`, and `out` must point to
    /// 8 writable elements.
    #[inline(always)]
    unsafe fn dot8<T: Simd>(xs: [&[T]; 8], y: &[T], out: *mut T) {
        let n = T::LANES;
        let k = y.len();
        assert!(xs.iter().all(|x| x.len() == k));
        let (p0, p1, p2, p3) = (
            xs[0].as_ptr(),
            xs[1].as_ptr(),
            xs[2].as_ptr(),
            xs[3].as_ptr(),
        );
        let (p4, p5, p6, p7) = (
            xs[4].as_ptr(),
            xs[5].as_ptr(),
            xs[6].as_ptr(),
            xs[7].as_ptr(),
        );
        let py = y.as_ptr();
        // SAFETY: the CPU supports AVX2. Chunk i .. i + n is within every row as i + n <= k;
        // the tail reads n-element zero-padded copies.
        unsafe {
            let (mut a0, mut a1, mut a2, mut a3) = (T::vzero(), T::vzero(), T::vzero(), T::vzero());
            let (mut a4, mut a5, mut a6, mut a7) = (T::vzero(), T::vzero(), T::vzero(), T::vzero());
            let full = k / n * n;
            let mut i = 0;
            while i < full {
                let yv = T::vload(py.add(i));
                a0 = T::vadd(a0, T::vmul(T::vload(p0.add(i)), yv));
                a1 = T::vadd(a1, T::vmul(T::vload(p1.add(i)), yv));
                a2 = T::vadd(a2, T::vmul(T::vload(p2.add(i)), yv));
                a3 = T::vadd(a3, T::vmul(T::vload(p3.add(i)), yv));
                a4 = T::vadd(a4, T::vmul(T::vload(p4.add(i)), yv));
                a5 = T::vadd(a5, T::vmul(T::vload(p5.add(i)), yv));
                a6 = T::vadd(a6, T::vmul(T::vload(p6.add(i)), yv));
                a7 = T::vadd(a7, T::vmul(T::vload(p7.add(i)), yv));
                i += n;
            }
            if full < k {
                let mut pad = [[T::zero(); 8]; 9];
                for (buf, row) in pad.iter_mut().zip(xs.iter().chain([&y])) {
                    buf[..k - full].copy_from_slice(&row[full..]);
                }
                let yv = T::vload(pad[8].as_ptr());
                a0 = T::vadd(a0, T::vmul(T::vload(pad[0].as_ptr()), yv));
                a1 = T::vadd(a1, T::vmul(T::vload(pad[1].as_ptr()), yv));
                a2 = T::vadd(a2, T::vmul(T::vload(pad[2].as_ptr()), yv));
                a3 = T::vadd(a3, T::vmul(T::vload(pad[3].as_ptr()), yv));
                a4 = T::vadd(a4, T::vmul(T::vload(pad[4].as_ptr()), yv));
                a5 = T::vadd(a5, T::vmul(T::vload(pad[5].as_ptr()), yv));
                a6 = T::vadd(a6, T::vmul(T::vload(pad[6].as_ptr()), yv));
                a7 = T::vadd(a7, T::vmul(T::vload(pad[7].as_ptr()), yv));
            }
            T::sums8([a0, a1, a2, a3, a4, a5, a6, a7], out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-2, 2).
    fn values<E: Element>(len: usize, seed: u64) -> Vec<E> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                E::of((state >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0)
            })
            .collect()
    }

    /// Every path (and its tails: dimensions around the vector and block widths), every
    /// transpose and bias: the AVX2 kernels agree bit for bit with the portable ones, which
    /// match the triple loop.
    fn paths_agree_and_match_the_loop<E: Element>(tolerance: f64) {
        let dims = [1, 2, 3, 5, 8, 9, 17, 64, 70];
        let mut seed = 0;
        for m in dims {
            for n in dims {
                for k in dims {
                    if !is_thin(m, n, k, true) && !is_thin(m, n, k, false) {
                        continue;
                    }
                    for (ta, tb, biased) in (0..8).map(|f| (f & 1 == 1, f & 2 == 2, f & 4 == 4)) {
                        if !is_thin(m, n, k, tb) {
                            continue;
                        }
                        seed += 1;
                        let (a, b) = (values::<E>(m * k, seed), values::<E>(k * n, !seed));
                        let bias = values::<E>(n, seed << 32);
                        let init = biased.then_some(&bias[..]);
                        let portable = thin_matmul_with(false, &a, ta, &b, tb, (m, n, k), init);
                        let fastest = thin_matmul_with(true, &a, ta, &b, tb, (m, n, k), init);
                        let case = format!("{m}x{k}x{n}, ta {ta}, tb {tb}, bias {biased}");
                        for (p, f) in portable.iter().zip(&fastest) {
                            assert_eq!(p.as_f64().to_bits(), f.as_f64().to_bits(), "{case}");
                        }
                        let ea = |i: usize, p: usize| {
                            if ta { a[p * m + i] } else { a[i * k + p] }.as_f64()
                        };
                        let eb = |p: usize, j: usize| {
                            if tb { b[j * k + p] } else { b[p * n + j] }.as_f64()
                        };
                        for i in 0..m {
                            for j in 0..n {
                                let b0 = if biased { bias[j].as_f64() } else { 0.0 };
                                let terms = (0..k).map(|p| ea(i, p) * eb(p, j));
                                let want = b0 + terms.clone().sum::<f64>();
                                let scale = b0.abs() + terms.map(f64::abs).sum::<f64>();
                                let got = portable[i * n + j].as_f64();
                                assert!(
                                    (got - want).abs() <= tolerance * (1.0 + scale),
                                    "{case}: ({i}, {j}) is {got}, not {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_paths_agree_and_match_the_loop() {
        paths_agree_and_match_the_loop::<f32>(1e-6);
    }

    #[test]
    fn f64_paths_agree_and_match_the_loop() {
        paths_agree_and_match_the_loop::<f64>(1e-14);
    }
}
