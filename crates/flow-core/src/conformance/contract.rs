//! The backend methods that are not ops on values, held to their contracts rather than to
//! the reference's numbers: index storage read back unchanged, `synchronize`, finiteness
//! probes, and random draws (a device may use its own generator, so its draws are checked
//! for their distribution, their reproducibility per seed and the stream they advance, not
//! against the CPU's numbers).

use super::{randn, round, At, Check, ConformanceError, Failure, Side, Suite, AWKWARD_SHAPES};
use crate::backend::Backend;
use crate::element::Element;
use crate::index::IndexTensor;
use crate::random::rng;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Draws for the distribution checks: 640 x 313 = 200,320 values.
const LARGE: (usize, usize) = (640, 313);

/// The Kolmogorov-Smirnov statistic's bound at a false-alarm rate of 1e-4 is
/// `sqrt(ln(2 / 1e-4) / 2) / sqrt(n)`.
const KS_COEFFICIENT: f64 = 2.226;

/// Moments must lie within this many standard errors.
const STANDARD_ERRORS: f64 = 5.0;

impl<B: Backend> Suite<'_, B> {
    /// A check that compares no tensors: a property that held.
    fn held(&mut self, op: &'static str, case: &str, what: &str, shape: Shape) {
        self.held_within(op, case, what, shape, 0.0, 0.0);
    }

    /// A statistic that held: `error` of an allowed `allowed`.
    fn held_within(
        &mut self,
        op: &'static str,
        case: &str,
        what: &str,
        shape: Shape,
        error: f64,
        allowed: f64,
    ) {
        self.report.checks.push(Check {
            op,
            case: case.to_string(),
            what: what.to_string(),
            shape,
            max_abs_error: error,
            worst_ratio: if allowed > 0.0 { error / allowed } else { 0.0 },
        });
    }

    /// Index lists uploaded and read back unchanged (`upload_index`, `download_index`).
    pub(super) fn indices(&mut self) -> Result<(), ConformanceError> {
        let mut r = rng(0x1d3);
        let long: Vec<usize> = (0..4099)
            .map(|_| rand::Rng::random_range(&mut r, 0..70_000))
            .collect();
        let lists: [Vec<usize>; 4] = [vec![0], vec![3, 1, 2, 0], (0..65).rev().collect(), long];
        for list in lists {
            let case = format!(
                "{} indices below {}",
                list.len(),
                list.iter().max().unwrap() + 1
            );
            let at = At {
                op: "upload_index",
                case: &case,
                what: "indices read back by download_index".into(),
            };
            let got = IndexTensor::new(self.backend, &list)
                .and_then(|index| index.to_vec())
                .map_err(|e| at.fail(Side::Backend, e))?;
            let shape = Shape::new(1, list.len());
            if let Some(k) = (0..list.len()).find(|&k| got.get(k) != Some(&list[k])) {
                return Err(at.error(Failure::Mismatch {
                    shape,
                    index: k,
                    row: 0,
                    col: k,
                    value: got.get(k).map_or(f64::NAN, |&v| v as f64),
                    reference: list[k] as f64,
                    allowed: 0.0,
                }));
            }
            if got.len() != list.len() {
                return Err(at.error(Failure::Shape {
                    shape: Shape::new(1, got.len()),
                    reference: shape,
                }));
            }
            self.held(at.op, &case, &at.what, shape);
        }
        Ok(())
    }

    /// `synchronize` returns once the work issued so far is done, without an error.
    pub(super) fn synchronize(&mut self) -> Result<(), ConformanceError> {
        let at = At {
            op: "synchronize",
            case: "after uploads and a product",
            what: "returns without an error".into(),
        };
        let x = Tensor::full(self.backend, Shape::new(65, 33), B::Elem::of(0.5))
            .and_then(|x| x.matmul_t(false, &x, true))
            .map_err(|e| at.fail(Side::Backend, e))?;
        self.backend
            .synchronize()
            .map_err(|e| at.fail(Side::Backend, e))?;
        self.held(at.op, at.case, &at.what, x.shape());
        Ok(())
    }

    /// `finite_probe`: finite for finite entries, not finite when any entry is NaN or
    /// infinite, wherever it is.
    pub(super) fn finite_probes(&mut self) -> Result<(), ConformanceError> {
        for (k, (r, c)) in AWKWARD_SHAPES.into_iter().enumerate() {
            let shape = Shape::new(r, c);
            let values = randn(0xf1e + k as u64, &[shape], round::<B::Elem>).remove(0);
            let n = values.len();
            let mut positions = vec![0, n / 2, n - 1];
            positions.dedup();
            let mut variants = vec![(None, "finite entries")];
            for &position in &positions {
                for (bad, name) in [
                    (f64::NAN, "NaN"),
                    (f64::INFINITY, "+inf"),
                    (f64::NEG_INFINITY, "-inf"),
                ] {
                    variants.push((Some((position, bad)), name));
                }
            }
            for (bad, name) in variants {
                let mut entries = values.clone();
                let case = match bad {
                    None => format!("{name} on {shape}"),
                    Some((position, value)) => {
                        entries[position] = value;
                        format!("{name} at entry {position} of {shape}")
                    }
                };
                let at = At {
                    op: "finite_probe",
                    case: &case,
                    what: "finiteness of the probe".into(),
                };
                let probe = Tensor::from_f64s(self.backend, shape, &entries)
                    .and_then(|t| t.finite_probe())
                    .and_then(|p| p.to_f64s())
                    .map_err(|e| at.fail(Side::Backend, e))?;
                let finite = probe.len() == 1 && probe[0].is_finite();
                if finite != bad.is_none() {
                    return Err(at.error(Failure::Property(format!(
                        "the probe is {probe:?}, which should be {}",
                        if bad.is_none() {
                            "finite"
                        } else {
                            "NaN or infinite"
                        }
                    ))));
                }
                self.held(at.op, &case, &at.what, Shape::SCALAR);
            }
        }
        Ok(())
    }

    /// Random draws: shapes, reproducibility per seed, the stream advanced past them, and
    /// the distribution of a large draw (mean, variance, Kolmogorov-Smirnov, no repeats).
    pub(super) fn draws(&mut self) -> Result<(), ConformanceError> {
        for distribution in [Draw::Normal, Draw::Uniform(-1.5, 2.5)] {
            let op = distribution.op();
            for (k, (r, c)) in AWKWARD_SHAPES.into_iter().chain([LARGE]).enumerate() {
                let shape = Shape::new(r, c);
                let seed = 0xd4a + k as u64;
                let case = format!("{} on {shape}, seed {seed}", distribution.describe());
                let at = |what: &str| At {
                    op,
                    case: &case,
                    what: what.into(),
                };
                let mut stream = rng(seed);
                let first = distribution
                    .draw(self.backend, shape, &mut stream)
                    .map_err(|e| at("draw").fail(Side::Backend, e))?;
                if first.shape() != shape {
                    return Err(at("shape of the draw").error(Failure::Shape {
                        shape: first.shape(),
                        reference: shape,
                    }));
                }
                let position = stream.get_word_pos();
                let second = distribution
                    .draw(self.backend, shape, &mut stream)
                    .map_err(|e| at("draw").fail(Side::Backend, e))?;
                let again = distribution
                    .draw(self.backend, shape, &mut rng(seed))
                    .map_err(|e| at("draw").fail(Side::Backend, e))?;
                let [first, second, again] = [first, second, again].map(|t| t.to_f64s());
                let (first, second, again) = (
                    first.map_err(|e| at("download").fail(Side::Backend, e))?,
                    second.map_err(|e| at("download").fail(Side::Backend, e))?,
                    again.map_err(|e| at("download").fail(Side::Backend, e))?,
                );

                let what = "the same seed draws the same values";
                if let Some(i) =
                    (0..first.len()).find(|&i| first[i].to_bits() != again[i].to_bits())
                {
                    return Err(at(what).error(Failure::Mismatch {
                        shape,
                        index: i,
                        row: i / shape.cols,
                        col: i % shape.cols,
                        value: again[i],
                        reference: first[i],
                        allowed: 0.0,
                    }));
                }
                self.held(op, &case, what, shape);

                let what = "the stream advances past the draw: a second draw does not repeat it";
                let (offset, repeated) = most_common_offset(&first, &second);
                if position == 0 || repeated * 10 > first.len().max(1) {
                    return Err(at(what).error(Failure::Property(format!(
                        "after the first draw the stream is at word {position}, and {repeated} of \
                         the second draw's {} values repeat the first's, shifted by {offset} \
                         entries",
                        first.len()
                    ))));
                }
                self.held(op, &case, what, shape);

                let what = "every draw finite and within the support";
                if let Some(i) = first.iter().position(|&v| !distribution.supports(v)) {
                    return Err(
                        at(what).error(Failure::Property(format!("entry {i} is {:e}", first[i])))
                    );
                }
                self.held(op, &case, what, shape);

                if (r, c) == LARGE {
                    self.distribution(&distribution, &case, shape, first)?;
                }
            }
        }
        Ok(())
    }

    /// The large draw's mean and variance within `STANDARD_ERRORS` of the distribution's,
    /// its Kolmogorov-Smirnov distance to the distribution's CDF below the bound, and no more
    /// repeated values than the element type's resolution explains.
    fn distribution(
        &mut self,
        distribution: &Draw,
        case: &str,
        shape: Shape,
        mut values: Vec<f64>,
    ) -> Result<(), ConformanceError> {
        let op = distribution.op();
        let at = |what: &str| At {
            op,
            case,
            what: what.into(),
        };
        let n = values.len() as f64;
        let (mean, variance) = distribution.moments();
        let sample_mean = values.iter().sum::<f64>() / n;
        let sample_variance = values
            .iter()
            .map(|v| (v - sample_mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        // The variance of a sample variance is (kurtosis - 1) variance^2 / n; a normal's
        // kurtosis is 3, a uniform's 1.8.
        let kurtosis = distribution.kurtosis();
        for (what, got, want, error) in [
            ("mean", sample_mean, mean, (variance / n).sqrt()),
            (
                "variance",
                sample_variance,
                variance,
                variance * ((kurtosis - 1.0) / n).sqrt(),
            ),
        ] {
            if (got - want).abs() > STANDARD_ERRORS * error {
                return Err(at(what).error(Failure::Property(format!(
                    "the {what} of {n} draws is {got:.6}, the distribution's {want} (standard \
                     error {error:.2e})"
                ))));
            }
            self.held_within(
                op,
                case,
                what,
                shape,
                (got - want).abs(),
                STANDARD_ERRORS * error,
            );
        }

        values.sort_by(f64::total_cmp);
        let what = "Kolmogorov-Smirnov distance to the distribution";
        let distance = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let cdf = distribution.cdf(v);
                (cdf - i as f64 / n)
                    .abs()
                    .max(((i + 1) as f64 / n - cdf).abs())
            })
            .fold(0.0, f64::max);
        let bound = KS_COEFFICIENT / n.sqrt();
        if distance > bound {
            return Err(at(what).error(Failure::Property(format!(
                "{distance:.5} over {n} draws, above the bound {bound:.5}"
            ))));
        }
        self.held_within(op, case, what, shape, distance, bound);

        // n draws among M equally likely values repeat about n^2 / (2M) times; a generator
        // with 2^23 values per binade (f32's mantissa) gives M >= 2^23 over an interval of
        // width 4 or a normal's bulk, so three times that count is allowed, and 10 more for
        // f64, whose M is astronomical.
        let what = "no more repeated values than rounding explains";
        let resolution = 1.0 / <B::Elem as num_traits::Float>::epsilon().as_f64();
        let allowed = 3.0 * n * n / (2.0 * resolution) + 10.0;
        let repeats = values.windows(2).filter(|w| w[0] == w[1]).count() as f64;
        if repeats > allowed {
            return Err(at(what).error(Failure::Property(format!(
                "{repeats} of {n} draws repeat the one before them in sorted order, more than \
                 the {allowed:.0} that rounding to the element type explains"
            ))));
        }
        self.held_within(op, case, what, shape, repeats, allowed);
        Ok(())
    }
}

/// The shift `k` for which most entries `j` of `second` equal entry `j + k` of `first` (0:
/// the same position), and how many do: a stream not advanced far enough repeats the first
/// draw shifted.
fn most_common_offset(first: &[f64], second: &[f64]) -> (isize, usize) {
    let mut position = std::collections::HashMap::with_capacity(first.len());
    for (i, v) in first.iter().enumerate() {
        position.entry(v.to_bits()).or_insert(i);
    }
    let mut counts = std::collections::HashMap::new();
    for (j, v) in second.iter().enumerate() {
        if let Some(&i) = position.get(&v.to_bits()) {
            *counts.entry(i as isize - j as isize).or_insert(0usize) += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(offset, count)| (count, std::cmp::Reverse(offset.unsigned_abs())))
        .unwrap_or((0, 0))
}

/// Which random draw.
enum Draw {
    Normal,
    /// On `[low, high)`.
    Uniform(f64, f64),
}

impl Draw {
    fn op(&self) -> &'static str {
        match self {
            Draw::Normal => "randn",
            Draw::Uniform(..) => "rand_uniform",
        }
    }

    fn describe(&self) -> String {
        match self {
            Draw::Normal => "standard normal".into(),
            Draw::Uniform(low, high) => format!("uniform on [{low}, {high})"),
        }
    }

    fn draw<B: Backend>(
        &self,
        backend: &B,
        shape: Shape,
        stream: &mut crate::FlowRng,
    ) -> crate::Result<Tensor<B>> {
        match *self {
            Draw::Normal => Tensor::randn(backend, shape, stream),
            Draw::Uniform(low, high) => Tensor::rand_uniform(backend, shape, low, high, stream),
        }
    }

    fn supports(&self, v: f64) -> bool {
        match *self {
            Draw::Normal => v.is_finite(),
            // Rounding a draw just below `high` to the element type may give `high` itself.
            Draw::Uniform(low, high) => low <= v && v <= high,
        }
    }

    /// Mean and variance.
    fn moments(&self) -> (f64, f64) {
        match *self {
            Draw::Normal => (0.0, 1.0),
            Draw::Uniform(low, high) => ((low + high) / 2.0, (high - low).powi(2) / 12.0),
        }
    }

    fn kurtosis(&self) -> f64 {
        match self {
            Draw::Normal => 3.0,
            Draw::Uniform(..) => 1.8,
        }
    }

    fn cdf(&self, v: f64) -> f64 {
        match *self {
            Draw::Normal => 0.5 * erfc(-v / std::f64::consts::SQRT_2),
            Draw::Uniform(low, high) => ((v - low) / (high - low)).clamp(0.0, 1.0),
        }
    }
}

/// The complementary error function, to a relative error below 1.2e-7 (Numerical Recipes'
/// Chebyshev fit): ample for a distance bound near 5e-3.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::erfc;

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299207050285, erfc(-2) = 1.995322265018953.
        for (x, want) in [
            (0.0, 1.0),
            (1.0, 0.157_299_207_050_285),
            (-2.0, 1.995_322_265_018_953),
            (3.0, 2.209_049_699_858_544e-5),
        ] {
            assert!(
                ((erfc(x) - want) / want).abs() < 2e-7,
                "erfc({x}) = {}",
                erfc(x)
            );
        }
    }
}
