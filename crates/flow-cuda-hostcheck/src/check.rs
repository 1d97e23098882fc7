//! What the tests share: the element types, random inputs, launch shapes, the `Cpu<f64>`
//! reference and comparisons that name the first entry that fails.

use crate::ffi::{Kernels, Launch};
use flow_core::{Cpu, Tensor};
use std::fmt::Debug;

/// f32 or f64, with the kernels of that type.
pub trait Real:
    Kernels<Self> + Copy + Debug + PartialEq + PartialOrd + Send + Sync + 'static
{
    const NAME: &'static str;
    /// Relative tolerance of a few roundings against the exact (f64) result.
    const RTOL: f64;
    /// The nearest value of this type.
    fn of(x: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    const RTOL: f64 = 2e-6;
    fn of(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    const RTOL: f64 = 1e-13;
    fn of(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// `n` NaN: an output buffer whose unwritten entries fail every comparison.
pub fn nans<T: Real>(n: usize) -> Vec<T> {
    vec![T::of(f64::NAN); n]
}

/// `values` rounded to `T`.
pub fn to_real<T: Real>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&x| T::of(x)).collect()
}

/// `values` as f64 (exactly).
pub fn to_f64s<T: Real>(values: &[T]) -> Vec<f64> {
    values.iter().map(|x| x.to_f64()).collect()
}

/// SplitMix64: small, seeded, the same numbers everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform on `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// `n` uniform values on `[low, high)`.
    pub fn values(&mut self, n: usize, low: f64, high: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(low, high)).collect()
    }

    /// `n` indices below `bound`.
    pub fn indices(&mut self, n: usize, bound: usize) -> Vec<usize> {
        (0..n).map(|_| self.below(bound)).collect()
    }
}

/// The reference backend.
pub fn cpu() -> Cpu<f64> {
    Cpu::new()
}

/// A `rows x cols` reference tensor.
pub fn tensor(rows: usize, cols: usize, data: &[f64]) -> Tensor<Cpu<f64>> {
    Tensor::from_vec(&cpu(), (rows, cols), data.to_vec()).expect("length is rows * cols")
}

/// A reference tensor's values.
pub fn values(t: &Tensor<Cpu<f64>>) -> Vec<f64> {
    t.to_vec().expect("the CPU backend does not fail")
}

/// Block sizes of the checks.
pub const BLOCKS: [u32; 3] = [32, 64, 256];

/// Launch shapes for `items` work items: blocks of 32, 64 and 256 threads on one block,
/// three blocks, and enough blocks to give every item its own thread (at most `max_grid`).
pub fn launches(items: usize, max_grid: u32) -> Vec<Launch> {
    let mut all = Vec::new();
    for block in BLOCKS {
        let enough = items.div_ceil(block as usize).clamp(1, max_grid as usize) as u32;
        for grid in [1, 3, enough] {
            all.push(Launch::new(grid, block));
        }
    }
    all
}

/// Fails naming the first entry where `got` is not within `tol(i, want)` of `want`. NaN
/// matches NaN and equal values match (infinities included); anything else, a NaN left in
/// an unwritten output entry among them, must be within the tolerance.
#[track_caller]
pub fn assert_close<T: Real>(what: &str, got: &[T], want: &[f64], tol: impl Fn(usize, f64) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: output length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g.to_f64();
        if g == w || (g.is_nan() && w.is_nan()) {
            continue;
        }
        let t = tol(i, w);
        assert!(
            (g - w).abs() <= t,
            "{what} ({}): entry {i} of {} is {g:e}, the CPU backend's {w:e} (tolerance {t:e})",
            T::NAME,
            got.len()
        );
    }
}

/// [`assert_close`] with `T::RTOL` relative to `|want|` (and to `floor`, for results near
/// zero).
#[track_caller]
pub fn assert_rel<T: Real>(what: &str, got: &[T], want: &[f64], floor: f64) {
    assert_close(what, got, want, |_, w| T::RTOL * (w.abs() + floor));
}

/// The bits of the two slices are equal (results that involve no rounding).
#[track_caller]
pub fn assert_same<T: Real>(what: &str, got: &[T], want: &[f64]) {
    assert_close(what, got, want, |_, _| 0.0);
}

/// The shapes of the checks: one row, one column, rows that are not a multiple of any
/// block, and 100 000 rows.
pub const SHAPES: [(usize, usize); 4] = [(1, 300), (300, 1), (333, 5), (100_000, 3)];

/// The launches for `items` work items: the nine of [`launches`] for up to 50 000 items;
/// small grids above (so that 100 000 rows stay quick on the host).
pub fn plan(items: usize) -> Vec<Launch> {
    if items > 50_000 {
        vec![Launch::new(1, 256), Launch::new(3, 64), Launch::new(5, 32)]
    } else {
        launches(items, 64)
    }
}

/// Inputs with the special values first (zeros of both signs, infinities, NaN, small and
/// whole numbers), then uniform values on `[low, high)`.
pub fn with_specials(rng: &mut Rng, n: usize, low: f64, high: f64) -> Vec<f64> {
    let specials = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e-10,
        -1e-10,
        1.0,
        -2.0,
    ];
    let mut v = rng.values(n, low, high);
    for (x, s) in v.iter_mut().zip(specials) {
        *x = s;
    }
    v
}

/// Generates a `#[test]` per element type for each generic check `name::<T>()`.
#[macro_export]
macro_rules! both_types {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn f32() {
                    super::$name::<f32>();
                }
                #[test]
                fn f64() {
                    super::$name::<f64>();
                }
            }
        )*
    };
}

/// The `k`-th of `launches`, in turn.
pub fn nth(launches: &[Launch], k: usize) -> Launch {
    launches[k % launches.len()]
}

/// The lane counts of the kernels that share a row among `lanes` threads of a warp
/// (`affine_coupling`, `diag_normal_log_prob`).
pub const LANES: [i32; 6] = [1, 2, 4, 8, 16, 32];

/// A launch of a kernel that gives each row `lanes` threads, for `rows` rows, the `k`-th in
/// turn: blocks of 32, 64, 128 and 256 threads; grids of one block, three, and enough for
/// every row (at most 64).
pub fn group_launch(rows: usize, lanes: i32, k: usize) -> Launch {
    let block = [32u32, 64, 128, 256][k % 4];
    let groups = (block / lanes as u32) as usize;
    let enough = rows.div_ceil(groups).clamp(1, 64) as u32;
    let grid = [1, 3, enough][(k / 4) % 3];
    Launch::new(grid, block)
}
