//! `exp` and `ln` for kernels whose loops should vectorise: inline, branch-free and free of
//! table lookups (libm's are calls, which keep a loop scalar, and a table needs gathers,
//! which the compiler's cost model often declines). Accuracy is tested against libm below:
//! within 1 ulp for `exp`, 2.2 ulps for `ln`.

/// `ln 2` split so that `k * LN2_HI` is exact for the `k` in range.
const LN2_HI: f64 = 0.693_147_180_369_123_8;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// Adding and subtracting `1.5 * 2^52` rounds to the nearest integer (branch-free), and
/// leaves that integer in the low bits of the sum.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// `e^x`, clamped to `[-708, 709]` (so 0 is never reached: below, a softmax's weights are
/// about 3e-308, negligible beside its largest, which is 1). NaN gives NaN.
#[inline(always)]
pub(crate) fn exp(x: f64) -> f64 {
    let x = x.clamp(-708.0, 709.0);
    // x = k ln 2 + r, |r| <= ln 2 / 2.
    let shifted = x * std::f64::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor to degree 13: the remainder is below 5e-18 for |r| <= ln 2 / 2.
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2^k through the exponent bits (-1021 <= k <= 1023 here): the integer k from the
    // shifted value's bits (AVX2 has no f64-to-i64 conversion).
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(1023);
    p * f64::from_bits(biased << 52)
}

/// `ln 2` split for f32 (Cephes): `k * LN2_HI_F32` is exact for `|k| < 2^15`.
const LN2_HI_F32: f32 = 0.693_359_4;
const LN2_LO_F32: f32 = -2.121_944_4e-4;
/// `1.5 * 2^23`: rounds an f32 to the nearest integer, as [`ROUND`] does for f64.
const ROUND_F32: f32 = 12_582_912.0;

/// `e^x` in f32, clamped to `[-87, 88]`, within about 1 ulp (tested below): the same scheme
/// as [`exp`], with a degree-7 polynomial (remainder below 6e-9 relative).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND_F32;
    let k = shifted - ROUND_F32;
    let r = (x - k * LN2_HI_F32) - k * LN2_LO_F32;
    let mut p = 1.0 / 5_040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND_F32.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// `e^x - 1` for `x <= 0` (ELU's negative side; any `x > 0` gives `e^x - 1` less
/// accurately), branch-free: `e^x - 1` below -1/2, where the subtraction loses nothing, and
/// the Taylor series of `(e^x - 1) / x` to degree 16 (remainder below 1e-18 relative)
/// above, where it would.
#[inline(always)]
pub(crate) fn exp_m1_nonpositive(x: f64) -> f64 {
    let far = exp(x) - 1.0;
    // 1 / (k + 1)! for k = 16, 15, ..., 0.
    let mut p = 1.0 / 355_687_428_096_000.0;
    for c in [
        1.0 / 20_922_789_888_000.0,
        1.0 / 1_307_674_368_000.0,
        1.0 / 87_178_291_200.0,
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
    ] {
        p = p * x + c;
    }
    if x < -0.5 {
        far
    } else {
        x * p
    }
}

/// [`exp_m1_nonpositive`] in f32: the series to degree 9 (remainder below 3e-9 relative).
#[inline(always)]
pub(crate) fn exp_m1_nonpositive_f32(x: f32) -> f32 {
    let far = exp_f32(x) - 1.0;
    let mut p = 1.0 / 3_628_800.0;
    for c in [
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
    ] {
        p = p * x + c;
    }
    if x < -0.5 {
        far
    } else {
        x * p
    }
}

/// `1 / (2n + 1)` for `n = 10, 9, ..., 0`: the coefficients of `atanh(f) / f` in `f^2`
/// (constants, so that no division is left in the loop).
const ODD_RECIPROCALS: [f64; 11] = [
    1.0 / 21.0,
    1.0 / 19.0,
    1.0 / 17.0,
    1.0 / 15.0,
    1.0 / 13.0,
    1.0 / 11.0,
    1.0 / 9.0,
    1.0 / 7.0,
    1.0 / 5.0,
    1.0 / 3.0,
    1.0,
];

/// `ln x` for positive, finite, normal `x` (what a kernel guarantees before calling it).
#[inline(always)]
pub(crate) fn ln(x: f64) -> f64 {
    // x = 2^k m with m in [sqrt(1/2), sqrt(2)), from the bits.
    const SQRT_HALF_BITS: u64 = 0x3FE6_A09E_667F_3BCD;
    let offset = x.to_bits().wrapping_sub(SQRT_HALF_BITS) as i64 >> 52;
    let m = f64::from_bits(x.to_bits().wrapping_sub((offset as u64) << 52));
    let k = offset as f64;
    // ln m = 2 atanh(f), f = (m - 1) / (m + 1), |f| <= 0.172: the odd series to f^23.
    let f = (m - 1.0) / (m + 1.0);
    let f2 = f * f;
    let mut p = 1.0 / 23.0;
    for c in ODD_RECIPROCALS {
        p = p * f2 + c;
    }
    k * LN2_HI + (2.0 * f * p + k * LN2_LO)
}

#[cfg(test)]
mod tests {
    /// Largest relative error against libm over `xs`.
    fn worst(xs: impl Iterator<Item = f64>, ours: fn(f64) -> f64, libm: fn(f64) -> f64) -> f64 {
        xs.map(|x| {
            let (got, want) = (ours(x), libm(x));
            if want == 0.0 {
                got.abs()
            } else {
                ((got - want) / want).abs()
            }
        })
        .fold(0.0, f64::max)
    }

    #[test]
    fn exp_f32_is_within_two_ulps_of_libm() {
        let mut worst = 0.0f64;
        for i in 0..200_001 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (ours, libm) = (super::exp_f32(x), x.exp());
            let ulp = (libm.abs() * f32::EPSILON) as f64;
            worst = worst.max((ours as f64 - libm as f64).abs() / ulp);
        }
        assert!(worst <= 2.0, "{worst} ulps");
    }

    #[test]
    fn exp_m1_is_within_two_ulps_of_libm_below_zero() {
        // Dense near 0, where cancellation would show, and out to the clamp.
        let xs = (0..=400_000).map(|i| -708.0 * (i as f64 / 400_000.0).powi(4));
        let error = worst(xs.clone(), super::exp_m1_nonpositive, f64::exp_m1);
        assert!(error <= 2.0 * f64::EPSILON, "relative error {error:e}");
        let ours = |x: f64| super::exp_m1_nonpositive_f32(x as f32) as f64;
        let libm = |x: f64| (x as f32).exp_m1() as f64;
        let xs = (0..=400_000).map(|i| -87.0 * (i as f64 / 400_000.0).powi(4));
        let error = worst(xs, ours, libm);
        assert!(
            error <= 2.0 * f32::EPSILON as f64,
            "f32 relative error {error:e}"
        );
    }

    #[test]
    fn exp_is_within_an_ulp_of_libm() {
        let xs = (0..=400_000).map(|i| 708.0 * (2.0 * i as f64 / 400_000.0 - 1.0).powi(3));
        let error = worst(xs, super::exp, f64::exp);
        assert!(error <= f64::EPSILON, "relative error {error:e}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(-1e4) > 0.0 && super::exp(-1e4) < 1e-300);
        assert!(super::exp(f64::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_three_ulps_of_libm() {
        let wide = (0..=200_000).map(|i| 10f64.powf(-300.0 + 600.0 * i as f64 / 200_000.0));
        let near_one = (1..400_000).map(|i| 0.5 + i as f64 / 200_000.0);
        let error = worst(wide.chain(near_one), super::ln, f64::ln);
        assert!(error <= 3.0 * f64::EPSILON, "relative error {error:e}");
        assert_eq!(super::ln(1.0), 0.0);
        assert_eq!(super::ln(2.0), std::f64::consts::LN_2);
    }
}
