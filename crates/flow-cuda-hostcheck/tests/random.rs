//! `random.cu`: Philox4x32-10 against the Random123 known-answer vectors (through the probe
//! kernel of `cpp/philox_probe.cu`), every draw of `randn` and `rand_uniform` derived from
//! those words as `KERNELS.md` lays them out (counter `offset + c` gives draws `c P .. c P +
//! P`, `P` = 4 in f32, 2 in f64), the same draws whatever the grid and block, fresh ones for
//! another seed, stream or offset, exactly `n` entries written, uniforms inside `[low,
//! high)`, and the moments and Kolmogorov-Smirnov statistics of 10^6 draws (with the bound
//! shown to reject slightly wrong transforms). There is no CPU reference: the CPU backend
//! draws from ChaCha, the device from Philox.

use flow_cuda_hostcheck::check::{nans, Real};
use flow_cuda_hostcheck::{both_types, Kernels, Launch};

/// Draws per Philox counter.
fn per_counter<T: Real>() -> usize {
    if T::NAME == "f32" {
        4
    } else {
        2
    }
}

/// The four words of `flow_philox(counter, stream, seed)` for each triple.
fn philox(triples: &[(u64, u64, u64)]) -> Vec<[u32; 4]> {
    let counters: Vec<u64> = triples.iter().map(|t| t.0).collect();
    let streams: Vec<u64> = triples.iter().map(|t| t.1).collect();
    let seeds: Vec<u64> = triples.iter().map(|t| t.2).collect();
    let mut out = vec![0xDEAD_BEEF_u32; 4 * triples.len()];
    unsafe {
        f64::philox_words(
            Launch::new(2, 32),
            counters.as_ptr(),
            streams.as_ptr(),
            seeds.as_ptr(),
            out.as_mut_ptr(),
            triples.len() as u64,
        )
    };
    out.chunks_exact(4)
        .map(|w| [w[0], w[1], w[2], w[3]])
        .collect()
}

/// The Random123 known-answer vectors of philox4x32_10 (`kat_vectors`): counter words
/// `c0..c3`, key words `k0, k1`, and the four output words. `flow_philox(counter, stream,
/// seed)` packs `c0, c1` = counter lo, hi; `c2, c3` = stream lo, hi; `k0, k1` = seed lo, hi.
#[test]
fn philox_matches_the_random123_known_answers() {
    let vectors: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0, 0, 0, 0],
            [0, 0],
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
        ),
        (
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0],
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
        ),
    ];
    let pack = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    let triples: Vec<(u64, u64, u64)> = vectors
        .iter()
        .map(|(c, k, _)| (pack(c[0], c[1]), pack(c[2], c[3]), pack(k[0], k[1])))
        .collect();
    for ((c, k, want), got) in vectors.iter().zip(philox(&triples)) {
        let differ: Vec<usize> = (0..4).filter(|&i| got[i] != want[i]).collect();
        assert!(
            differ.is_empty(),
            "philox4x32_10 of counter {c:08x?} key {k:08x?}: {got:08x?}, the reference \
             {want:08x?} (words {differ:?} differ)"
        );
    }
}

/// `n` draws of `randn` (or of `rand_uniform` on `[low, high)` where `uniform` is given)
/// into a buffer of `n + 8` NaN, checked to leave the 8 past `n` untouched.
fn draws<T: Real>(
    launch: Launch,
    n: usize,
    (seed, stream, offset): (u64, u64, u64),
    uniform: Option<(f64, f64)>,
) -> Vec<T> {
    let mut out = nans::<T>(n + 8);
    let n64 = n as u64;
    match uniform {
        None => unsafe { T::randn(launch, out.as_mut_ptr(), n64, seed, stream, offset) },
        Some((low, high)) => unsafe {
            T::rand_uniform(
                launch,
                out.as_mut_ptr(),
                n64,
                seed,
                stream,
                offset,
                T::of(low),
                T::of(high),
            )
        },
    }
    let what = if uniform.is_some() {
        "rand_uniform"
    } else {
        "randn"
    };
    for (i, x) in out[..n].iter().enumerate() {
        assert!(
            !x.to_f64().is_nan(),
            "{what} ({}): entry {i} of {n} not written ({launch:?})",
            T::NAME
        );
    }
    for (i, x) in out[n..].iter().enumerate() {
        assert!(
            x.to_f64().is_nan(),
            "{what} ({}): entry {} past n = {n} written ({launch:?})",
            T::NAME,
            n + i
        );
    }
    out.truncate(n);
    out
}

/// The bits of two runs' draws are equal.
fn same_bits<T: Real>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits())
}

/// How many entries two runs' draws share.
fn shared_entries<T: Real>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// The uniform in `[0, 1)` of draw `k` of a counter's words, and the one in `(0, 1)` of
/// Box-Muller's logarithm, as `random.cu` forms them (f32: the top 24 bits of word `k`, the
/// open one from its top 23; f64: 53 bits, word `2k` above the top 21 bits of word `2k + 1`,
/// the open one 52 bits), in f64.
fn unit_bits<T: Real>(w: &[u32; 4], k: usize) -> (f64, f64) {
    if T::NAME == "f32" {
        let closed = f64::from(w[k] >> 8) / 16_777_216.0;
        let open = (f64::from(w[k] >> 9) + 0.5) / 8_388_608.0;
        (closed, open)
    } else {
        let closed = (u64::from(w[2 * k]) << 21 | u64::from(w[2 * k + 1] >> 11)) as f64;
        let open = (u64::from(w[2 * k]) << 20 | u64::from(w[2 * k + 1] >> 12)) as f64;
        (
            closed / 9_007_199_254_740_992.0,
            (open + 0.5) / 4_503_599_627_370_496.0,
        )
    }
}

/// The open uniforms are below 1 in T, even from all-ones words.
fn open_uniforms_stay_below_one<T: Real>() {
    let (_, open) = unit_bits::<T>(&[u32::MAX; 4], 0);
    assert!(T::of(open).to_f64() < 1.0, "{}: {open}", T::NAME);
    assert!(open > 0.0);
}

#[test]
fn open_uniforms_stay_below_one_f32() {
    open_uniforms_stay_below_one::<f32>();
}

#[test]
fn open_uniforms_stay_below_one_f64() {
    open_uniforms_stay_below_one::<f64>();
}

/// Every draw from the Philox words of its counter: `rand_uniform` on `[0, 1)` is the
/// uniform of its word(s) exactly; `randn` is Box-Muller on pairs of them (`r cos`, `r sin`
/// with `r = sqrt(-2 ln u1)`, angle `2 pi u2`), within a few roundings of T. On a count
/// that is not a multiple of `P`, an offset past 2^32 (the counter's high word) and seeds
/// and streams with high words.
fn draws_follow_the_philox_words<T: Real>() {
    let p = per_counter::<T>();
    for (n, seed, stream, offset) in [
        (4001_usize, 7, 0, 0),
        (
            999,
            0x1234_5678_9abc_def0,
            0xfedc_ba98_7654_3210,
            (1 << 32) - 100,
        ),
    ] {
        let counters = n.div_ceil(p);
        let triples: Vec<_> = (0..counters)
            .map(|c| (offset + c as u64, stream, seed))
            .collect();
        let words = philox(&triples);
        let key = (seed, stream, offset);
        let uniform = draws::<T>(Launch::new(3, 64), n, key, Some((0.0, 1.0)));
        let normal = draws::<T>(Launch::new(3, 64), n, key, None);
        for i in 0..n {
            let (c, k) = (i / p, i % p);
            let w = &words[c];
            let (closed, _) = unit_bits::<T>(w, k);
            assert_eq!(
                uniform[i].to_f64(),
                closed,
                "rand_uniform ({}): draw {i} of counter {}",
                T::NAME,
                offset + c as u64
            );
            let pair = k / 2;
            // The open uniforms as T holds them.
            let (u1, u2) = (
                unit_bits::<T>(w, 2 * pair).1,
                unit_bits::<T>(w, 2 * pair + 1).1,
            );
            let (u1, u2) = (T::of(u1).to_f64(), T::of(u2).to_f64());
            let r = (-2.0 * u1.ln()).sqrt();
            let angle = std::f64::consts::TAU * u2;
            let want = if k % 2 == 0 {
                r * angle.cos()
            } else {
                r * angle.sin()
            };
            // f32: the f32 logarithm, square root, angle (2 pi rounded to f32, times u2),
            // product and sine or cosine; f64: the same operations as here.
            let tol = if T::NAME == "f32" { 2e-6 } else { 1e-14 } * (1.0 + r);
            let got = normal[i].to_f64();
            assert!(
                (got - want).abs() <= tol,
                "randn ({}): draw {i} of counter {} is {got:e}, Box-Muller of its words \
                 {want:e}",
                T::NAME,
                offset + c as u64
            );
        }
    }
}

/// The same (seed, stream, offset) gives the same bits whatever the grid and block; a
/// launch at offset `o + 1` continues one at `o`; another seed (its high word alone too),
/// stream (its high word alone too) or offset (by 2^32 too: the counter's high word) gives
/// other numbers.
fn draws_depend_on_seed_stream_and_position_only<T: Real>() {
    let p = per_counter::<T>();
    let launches = [
        Launch::new(1, 32),
        Launch::new(3, 64),
        Launch::new(7, 256),
        Launch::new(64, 128),
        Launch::new(1, 1024),
    ];
    let (n, key) = (4099, (42, 3, 17));
    for uniform in [None, Some((-2.0, 3.0))] {
        let first = draws::<T>(launches[0], n, key, uniform);
        for &launch in &launches[1..] {
            assert!(
                same_bits(&draws::<T>(launch, n, key, uniform), &first),
                "{} {uniform:?}: other draws on {launch:?} than on {:?}",
                T::NAME,
                launches[0]
            );
        }
        // Offsets count counters: one more skips the first P draws.
        for skip in [1, 5] {
            let later = draws::<T>(
                Launch::new(3, 64),
                n - skip * p,
                (42, 3, 17 + skip as u64),
                uniform,
            );
            assert!(
                same_bits(&later, &first[skip * p..]),
                "{} {uniform:?}: offset + {skip} does not continue the draws at offset",
                T::NAME
            );
        }
        let high = 1 << 32;
        for other in [
            (43, 3, 17),
            (42 + high, 3, 17),
            (42, 4, 17),
            (42, 3 + high, 17),
            (42, 3, 18 + n as u64),
            (42, 3, 17 + high),
        ] {
            let b = draws::<T>(Launch::new(3, 64), n, other, uniform);
            // Equal draws by chance: a few among 4099 in f32 uniforms (24 bits), none else.
            let shared = shared_entries(&first, &b);
            assert!(
                shared <= 2,
                "{} {uniform:?}: (seed, stream, offset) {other:?} shares {shared} draws with \
                 {key:?}",
                T::NAME
            );
        }
    }
}

/// Counts that are not a multiple of P: exactly `n` entries written (checked by `draws`),
/// and they are the first `n` of a longer run's.
fn draws_write_exactly_n<T: Real>() {
    let key = (5, 6, 7);
    for uniform in [None, Some((0.0, 1.0))] {
        let long = draws::<T>(Launch::new(2, 32), 64, key, uniform);
        for n in [0, 1, 2, 3, 5, 6, 7, 9, 33] {
            for launch in [Launch::new(1, 32), Launch::new(3, 64)] {
                let short = draws::<T>(launch, n, key, uniform);
                assert!(
                    same_bits(&short, &long[..n]),
                    "{} {uniform:?}: {n} draws are not the first {n} of 64",
                    T::NAME
                );
            }
        }
    }
}

/// Uniforms on `[low, high)`, never `high`, on ranges whose rounding reaches `high`
/// (`[1, 1 + 1e-6)` in f32 and `[1, 1 + 8 eps)` are 8 ulps wide), and taking more than one
/// value.
fn uniforms_stay_in_range<T: Real>() {
    let eps = if T::NAME == "f32" {
        f64::from(f32::EPSILON)
    } else {
        f64::EPSILON
    };
    let ranges = [
        (0.0, 1.0),
        (-3.0, 5.0),
        (1.0, 1.0 + 1e-6),
        (1.0, 1.0 + 8.0 * eps),
        (-2.0, -2.0 + 4.0 * eps),
        (-1e-30, 1e-30),
        (1e6, 1e6 + 1.0),
    ];
    for (k, (low, high)) in ranges.into_iter().enumerate() {
        let n = 100_000;
        let x = draws::<T>(Launch::new(4, 256), n, (9, k as u64, 0), Some((low, high)));
        let (lo, hi) = (T::of(low), T::of(high));
        for (i, &v) in x.iter().enumerate() {
            assert!(
                v >= lo && v < hi,
                "rand_uniform ({}) on [{low}, {high}): draw {i} is {v:?}",
                T::NAME
            );
        }
        let mut distinct: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(
            distinct.len() > 1,
            "rand_uniform ({}) on [{low}, {high}): one value only",
            T::NAME
        );
    }
}

/// The standard normal CDF from erfc: Abramowitz and Stegun 7.1.26 (absolute error below
/// 1.5e-7, far below the KS bound of 10^6 draws, 2e-3).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-z * z).exp();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// The Kolmogorov-Smirnov statistic of `x` against `cdf`.
fn ks(x: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let f = cdf(v);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

/// Mean, variance and the correlation of neighbouring draws.
fn moments(x: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let cov = x
        .windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum::<f64>()
        / (n - 1.0);
    (mean, var, cov / var)
}

const STAT_N: usize = 1_000_000;
/// The KS statistic's bound for 10^6 draws: 1.95 / sqrt(n), exceeded by chance with
/// probability 0.001.
const KS_BOUND: f64 = 1.95e-3;

/// 10^6 normals: mean 0, variance 1 and neighbours uncorrelated within 5 standard errors;
/// the KS statistic against the normal CDF below `KS_BOUND`, which the same draws scaled by
/// 1.02 or shifted by 0.01, and uniforms, exceed.
fn normal_statistics<T: Real>() {
    assert!((normal_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 2e-7);
    assert!((normal_cdf(-1.96) - 0.024_997_895_148_220_435).abs() < 2e-7);
    let x: Vec<f64> = draws::<T>(Launch::new(8, 256), STAT_N, (2024, 1, 0), None)
        .iter()
        .map(|v| v.to_f64())
        .collect();
    let se = 1.0 / (STAT_N as f64).sqrt();
    let (mean, var, corr) = moments(&x);
    let what = format!("randn ({}) of {STAT_N}", T::NAME);
    assert!(mean.abs() < 5.0 * se, "{what}: mean {mean}");
    assert!(
        (var - 1.0).abs() < 5.0 * 2f64.sqrt() * se,
        "{what}: variance {var}"
    );
    assert!(
        corr.abs() < 5.0 * se,
        "{what}: neighbours' correlation {corr}"
    );
    let d = ks(&x, normal_cdf);
    assert!(d < KS_BOUND, "{what}: KS statistic {d} (bound {KS_BOUND})");
    // The bound is meaningful: slightly wrong transforms fail it.
    let scaled: Vec<f64> = x.iter().map(|v| v * 1.02).collect();
    let shifted: Vec<f64> = x.iter().map(|v| v + 0.01).collect();
    let uniforms: Vec<f64> =
        draws::<T>(Launch::new(8, 256), STAT_N, (2024, 1, 0), Some((-2.0, 2.0)))
            .iter()
            .map(|v| v.to_f64())
            .collect();
    for (wrong, y) in [
        ("scaled by 1.02", scaled),
        ("shifted by 0.01", shifted),
        ("uniform", uniforms),
    ] {
        let d = ks(&y, normal_cdf);
        assert!(
            d > KS_BOUND,
            "{what}, {wrong}: KS statistic {d} passes the bound"
        );
    }
}

/// 10^6 uniforms on `[0, 1)`: mean 1/2, variance 1/12 and neighbours uncorrelated within 5
/// standard errors; the KS statistic against the uniform CDF below `KS_BOUND`, which the
/// draws to the power 1.01 and those shifted by 0.003 exceed.
fn uniform_statistics<T: Real>() {
    let x: Vec<f64> = draws::<T>(Launch::new(8, 256), STAT_N, (77, 2, 5), Some((0.0, 1.0)))
        .iter()
        .map(|v| v.to_f64())
        .collect();
    let se = 1.0 / (STAT_N as f64).sqrt();
    let (mean, var, corr) = moments(&x);
    let what = format!("rand_uniform ({}) of {STAT_N}", T::NAME);
    assert!(
        (mean - 0.5).abs() < 5.0 * se / 12f64.sqrt(),
        "{what}: mean {mean}"
    );
    // The variance of (u - 1/2)^2 is 1/180.
    assert!(
        (var - 1.0 / 12.0).abs() < 5.0 * se / 180f64.sqrt(),
        "{what}: variance {var}"
    );
    assert!(
        corr.abs() < 5.0 * se,
        "{what}: neighbours' correlation {corr}"
    );
    let cdf = |v: f64| v.clamp(0.0, 1.0);
    let d = ks(&x, cdf);
    assert!(d < KS_BOUND, "{what}: KS statistic {d} (bound {KS_BOUND})");
    let power: Vec<f64> = x.iter().map(|v| v.powf(1.01)).collect();
    let shifted: Vec<f64> = x.iter().map(|v| v + 0.003).collect();
    for (wrong, y) in [("to the power 1.01", power), ("shifted by 0.003", shifted)] {
        let d = ks(&y, cdf);
        assert!(
            d > KS_BOUND,
            "{what}, {wrong}: KS statistic {d} passes the bound"
        );
    }
}

both_types!(
    draws_follow_the_philox_words,
    draws_depend_on_seed_stream_and_position_only,
    draws_write_exactly_n,
    uniforms_stay_in_range,
    normal_statistics,
    uniform_statistics
);
