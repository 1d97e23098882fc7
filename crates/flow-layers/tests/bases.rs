//! The base distributions beyond the diagonal Gaussian: normflows' `GaussianMixture` and
//! `Uniform`. The mixture's log-density against a direct f64 sum of component densities,
//! its normalisation by quadrature in 1-D and 2-D, its samples' moments and component
//! frequencies, its gradients against central differences; the uniform box inside, on the
//! boundary and outside (with `-inf` never turning into a NaN gradient); whole flows with each
//! base; specs and their JSON.

use flow_core::gradcheck::GradCheck;
use flow_core::{Cpu, ParamStore, Tape, Tensor};
use flow_layers::{
    Base, BaseSpec, FlowSpec, GaussianMixture, MafConfig, NormalizingFlow, RealNvpConfig, Uniform,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::f64::consts::PI;

mod common;
use common::*;

// ------------------------------------------------------------------ helpers

/// A mixture's values, row-major: `loc` and `log_scale` `k x d`, `scores` `k`.
#[derive(Clone, Debug)]
struct MixtureValues {
    d: usize,
    k: usize,
    loc: Vec<f64>,
    log_scale: Vec<f64>,
    scores: Vec<f64>,
}

impl MixtureValues {
    fn weights(&self) -> Vec<f64> {
        let total: f64 = self.scores.iter().map(|s| s.exp()).sum();
        self.scores.iter().map(|s| s.exp() / total).collect()
    }

    fn mean(&self, k: usize, j: usize) -> f64 {
        self.loc[k * self.d + j]
    }

    fn sd(&self, k: usize, j: usize) -> f64 {
        self.log_scale[k * self.d + j].exp()
    }

    /// The density at `z` as the plain sum over components of weight times the product of
    /// 1-D normal densities (no logs, no shifts): independent of the library's log-sum-exp.
    fn density(&self, z: &[f64]) -> f64 {
        let w = self.weights();
        (0..self.k)
            .map(|k| {
                w[k] * (0..self.d)
                    .map(|j| {
                        let (m, s) = (self.mean(k, j), self.sd(k, j));
                        (-0.5 * ((z[j] - m) / s).powi(2)).exp() / (s * (2.0 * PI).sqrt())
                    })
                    .product::<f64>()
            })
            .sum()
    }

    /// The log-density by a log-sum-exp written out here, for points where `density`
    /// underflows.
    fn log_density_shifted(&self, z: &[f64]) -> f64 {
        let w = self.weights();
        let terms: Vec<f64> = (0..self.k)
            .map(|k| {
                w[k].ln()
                    + (0..self.d)
                        .map(|j| {
                            let (m, s) = (self.mean(k, j), self.sd(k, j));
                            -0.5 * ((z[j] - m) / s).powi(2) - s.ln() - 0.5 * (2.0 * PI).ln()
                        })
                        .sum::<f64>()
            })
            .collect();
        let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
    }

    /// The mixture's mean and covariance (`d x d`, row-major).
    fn moments(&self) -> (Vec<f64>, Vec<f64>) {
        let (d, w) = (self.d, self.weights());
        let mean: Vec<f64> = (0..d)
            .map(|j| (0..self.k).map(|k| w[k] * self.mean(k, j)).sum())
            .collect();
        let mut cov = vec![0.0; d * d];
        for (k, wk) in w.iter().enumerate() {
            for i in 0..d {
                for j in 0..d {
                    let a = (self.mean(k, i) - mean[i]) * (self.mean(k, j) - mean[j]);
                    let v = if i == j { self.sd(k, i).powi(2) } else { 0.0 };
                    cov[i * d + j] += wk * (a + v);
                }
            }
        }
        (mean, cov)
    }

    /// The variance of `(x_i - mean_i)(x_j - mean_j)` under the mixture: what the standard
    /// error of a covariance estimate is computed from.
    fn product_variance(&self, i: usize, j: usize, mean: &[f64], cov: &[f64]) -> f64 {
        let w = self.weights();
        let second: f64 = (0..self.k)
            .map(|k| {
                let (ai, si) = (self.mean(k, i) - mean[i], self.sd(k, i));
                let (aj, sj) = (self.mean(k, j) - mean[j], self.sd(k, j));
                let m = if i == j {
                    // E[(a + s e)^4]
                    ai.powi(4) + 6.0 * ai * ai * si * si + 3.0 * si.powi(4)
                } else {
                    (ai * ai + si * si) * (aj * aj + sj * sj)
                };
                w[k] * m
            })
            .sum();
        second - cov[i * self.d + j].powi(2)
    }

    /// A store holding the mixture's parameters under normflows' names, and the mixture.
    fn build(&self, trainable: bool) -> (ParamStore<B>, GaussianMixture) {
        let mut params = ParamStore::new();
        let mixture = GaussianMixture::new(
            &mut params,
            &CPU,
            self.d,
            self.k,
            trainable,
            &mut flow_core::rng(0),
        )
        .unwrap();
        self.store_into(&mut params);
        (params, mixture)
    }

    fn store_into(&self, params: &mut ParamStore<B>) {
        let (d, k) = (self.d, self.k);
        for (name, shape, values) in [
            ("q0.loc", (k, d), &self.loc),
            ("q0.log_scale", (k, d), &self.log_scale),
            ("q0.weight_scores", (1, k), &self.scores),
        ] {
            let id = params.id(name).unwrap();
            params
                .set(id, Tensor::from_vec(&CPU, shape, values.clone()).unwrap())
                .unwrap();
        }
    }

    fn tensors(&self) -> [Tensor<B>; 3] {
        let (d, k) = (self.d, self.k);
        [
            Tensor::from_vec(&CPU, (k, d), self.loc.clone()).unwrap(),
            Tensor::from_vec(&CPU, (k, d), self.log_scale.clone()).unwrap(),
            Tensor::from_vec(&CPU, (1, k), self.scores.clone()).unwrap(),
        ]
    }
}

/// Random mixtures: 1 to `max_k` components over `dims`, means in [-3, 3], scales in
/// [e^-1, e^0.7], scores in [-2, 2].
fn mixture_values(
    dims: std::ops::RangeInclusive<usize>,
    max_k: usize,
) -> impl Strategy<Value = MixtureValues> {
    (dims, 1..=max_k).prop_flat_map(|(d, k)| {
        (
            prop::collection::vec(-3.0f64..3.0, k * d),
            prop::collection::vec(-1.0f64..0.7, k * d),
            prop::collection::vec(-2.0f64..2.0, k),
        )
            .prop_map(move |(loc, log_scale, scores)| MixtureValues {
                d,
                k,
                loc,
                log_scale,
                scores,
            })
    })
}

fn log_prob_values(params: &ParamStore<B>, mixture: &GaussianMixture, z: &Tensor<B>) -> Vec<f64> {
    let tape = Tape::new(&CPU);
    mixture
        .log_prob(params, &tape.constant(z.clone()))
        .unwrap()
        .value()
        .to_vec()
        .unwrap()
}

fn points(d: usize, values: Vec<f64>) -> Tensor<B> {
    Tensor::from_vec(&CPU, (values.len() / d, d), values).unwrap()
}

/// `n x d` points on the midpoint grid of `[lo, hi]^d` with `m` cells a side, and the cell
/// volume.
fn grid(d: usize, lo: f64, hi: f64, m: usize) -> (Tensor<B>, f64) {
    let h = (hi - lo) / m as f64;
    let axis: Vec<f64> = (0..m).map(|i| lo + (i as f64 + 0.5) * h).collect();
    let mut values = Vec::with_capacity(m.pow(d as u32) * d);
    let mut index = vec![0usize; d];
    for _ in 0..m.pow(d as u32) {
        values.extend(index.iter().map(|&i| axis[i]));
        for slot in index.iter_mut().rev() {
            *slot += 1;
            if *slot < m {
                break;
            }
            *slot = 0;
        }
    }
    (points(d, values), h.powi(d as i32))
}

/// The quadrature of the mixture's density over a box reaching 12 of its widest scales
/// beyond every mean.
fn mass(values: &MixtureValues, cells: usize) -> f64 {
    let (params, mixture) = values.build(true);
    let widest = values
        .log_scale
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .exp();
    let lo = values.loc.iter().copied().fold(f64::MAX, f64::min) - 12.0 * widest;
    let hi = values.loc.iter().copied().fold(f64::MIN, f64::max) + 12.0 * widest;
    let (z, volume) = grid(values.d, lo, hi, cells);
    log_prob_values(&params, &mixture, &z)
        .iter()
        .map(|l| l.exp() * volume)
        .sum()
}

fn realnvp_or_maf(dim: usize, maf: bool, seed: u64, base: BaseSpec) -> FlowSpec {
    let mut spec = if maf || dim < 2 {
        MafConfig {
            dim,
            transforms: 2,
            hidden: vec![8],
            seed,
            ..Default::default()
        }
        .spec()
        .unwrap()
    } else {
        RealNvpConfig {
            dim,
            transforms: 2,
            hidden: vec![8],
            seed,
            ..Default::default()
        }
        .spec()
        .unwrap()
    };
    spec.base = base;
    spec
}

fn base_spec() -> impl Strategy<Value = BaseSpec> {
    prop_oneof![
        Just(BaseSpec::DiagGaussian),
        (1usize..=4, any::<bool>()).prop_map(|(components, trainable)| {
            BaseSpec::GaussianMixture {
                components,
                trainable,
            }
        }),
        (-3.0f64..0.0, 0.1f64..3.0).prop_map(|(low, width)| BaseSpec::Uniform {
            low,
            high: low + width,
        }),
    ]
}

// ------------------------------------------------------------------ mixture: density

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// log_prob against the log of the direct sum of weighted component densities.
    #[test]
    fn mixture_log_prob_matches_the_direct_sum(
        values in mixture_values(1..=4, 4),
        z in prop::collection::vec(-4.0f64..4.0, 1..=24),
    ) {
        let d = values.d;
        let rows = z.len() / d;
        prop_assume!(rows > 0);
        let z = points(d, z[..rows * d].to_vec());
        let (params, mixture) = values.build(true);
        let got = log_prob_values(&params, &mixture, &z);
        let want: Vec<f64> = z.to_vec()?.chunks(d).map(|row| values.density(row).ln()).collect();
        prop_assert_eq!(got.len(), rows);
        assert_close(&got, &want, 1e-10, "mixture log_prob vs direct sum")?;
    }

    /// First and second derivatives in the point, loc, log_scale and weight_scores, against
    /// central differences (flow_core's gradcheck through a random projection).
    #[test]
    fn mixture_gradients_match_finite_differences(
        values in mixture_values(1..=3, 3),
        z in prop::collection::vec(-3.0f64..3.0, 3..=9),
    ) {
        let d = values.d;
        let rows = z.len() / d;
        prop_assume!(rows > 0);
        let [loc, log_scale, scores] = values.tensors();
        let inputs = [points(d, z[..rows * d].to_vec()), loc, log_scale, scores];
        let f = |v: &[flow_core::Var<B>]| GaussianMixture::log_density(&v[0], &v[1], &v[2], &v[3]);
        let check = GradCheck { rtol: 1e-5, atol: 1e-6, ..GradCheck::default() };
        prop_assert!(check.check(&CPU, &inputs, f).is_ok(), "{:?}", check.check(&CPU, &inputs, f));
        let second = GradCheck { eps: 1e-5, rtol: 1e-4, atol: 1e-5, ..GradCheck::default() };
        let report = second.check_second_order(&CPU, &inputs, f);
        prop_assert!(report.is_ok(), "{:?}", report);
    }
}

/// `cases` deterministic mixtures of dimension `d` and at most `k` components integrate to
/// one within `tol` (midpoint rule on a grid of `cells` per axis).
fn assert_mixtures_integrate_to_one(d: usize, k: usize, cases: usize, cells: usize, tol: f64) {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..cases {
        let values = mixture_values(d..=d, k)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let total = mass(&values, cells);
        assert!((total - 1.0).abs() < tol, "{values:?}: mass {total}");
    }
}

/// In 1-D the density integrates to one (midpoint rule on a fine grid).
#[test]
fn mixture_integrates_to_one_in_1d() {
    assert_mixtures_integrate_to_one(1, 5, 16, 20_000, 1e-9);
}

/// In 2-D too (a 600 x 600 grid).
#[test]
fn mixture_integrates_to_one_in_2d() {
    assert_mixtures_integrate_to_one(2, 4, 4, 600, 1e-8);
}

/// Far from every component (|z| ~ 1e3) the density underflows to zero but its log is the
/// log-sum-exp, finite, with finite gradients in every input; f32 stays finite too.
#[test]
fn mixture_is_stable_far_from_its_components() -> std::result::Result<(), Box<dyn std::error::Error>>
{
    let values = MixtureValues {
        d: 2,
        k: 3,
        loc: vec![-1.0, 0.5, 2.0, 2.0, 0.0, -3.0],
        log_scale: vec![0.2, -0.5, 0.0, 0.3, -1.0, 0.1],
        scores: vec![0.5, -1.0, 0.2],
    };
    let far = vec![1e3, -1e3, -1e3, 1e3, 1e3, 1e3, -1.2e3, 3.0, 0.0, 0.0];
    let (params, mixture) = values.build(true);
    let z = points(2, far.clone());
    let got = log_prob_values(&params, &mixture, &z);
    let want: Vec<f64> = far
        .chunks(2)
        .map(|r| values.log_density_shifted(r))
        .collect();
    assert!(got.iter().all(|l| l.is_finite()), "{got:?}");
    assert_close(&got, &want, 1e-12, "far log_prob").unwrap();

    let tape = Tape::new(&CPU);
    let zv = tape.input(z);
    let loss = mixture.log_prob(&params, &zv).unwrap().sum_all()?;
    let grads = tape.backward(&loss).unwrap();
    for name in ["q0.loc", "q0.log_scale", "q0.weight_scores"] {
        let g = grads.param(params.id(name).unwrap()).unwrap().to_vec()?;
        assert!(g.iter().all(|v| v.is_finite()), "{name}: {g:?}");
    }
    let gz = grads.get(&zv).unwrap().to_vec()?;
    assert!(gz.iter().all(|v| v.is_finite()), "{gz:?}");

    let cpu32 = Cpu::<f32>::new();
    let mut params32 = ParamStore::new();
    let mixture32 =
        GaussianMixture::new(&mut params32, &cpu32, 2, 3, true, &mut flow_core::rng(0)).unwrap();
    let tape = Tape::new(&cpu32);
    let z32 = tape.input(Tensor::from_f64s(&cpu32, (5, 2), &far).unwrap());
    let log_q = mixture32.log_prob(&params32, &z32).unwrap();
    assert!(log_q.value().to_f64s()?.iter().all(|l| l.is_finite()));
    let grads = tape.backward(&log_q.sum_all()?).unwrap();
    for (id, _, _) in params32.iter() {
        assert!(grads
            .param(id)
            .unwrap()
            .to_f64s()?
            .iter()
            .all(|v| v.is_finite()));
    }
    Ok(())
}

// ------------------------------------------------------------------ mixture: parameters

/// The gradients the store's parameters get through `log_prob` (what training sees) against
/// central differences of the store's values; a fixed (`trainable: false`) mixture gives them
/// none.
#[test]
fn mixture_parameter_gradients_through_the_store(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let values = MixtureValues {
        d: 2,
        k: 3,
        loc: vec![-1.0, 0.5, 2.0, 2.0, 0.0, -3.0],
        log_scale: vec![0.2, -0.5, 0.0, 0.3, -1.0, 0.1],
        scores: vec![0.5, -1.0, 0.2],
    };
    let z = points(2, vec![0.3, -0.2, 1.5, 1.0, -2.0, -2.5, 4.0, 0.1]);
    let weights = [0.7, -1.3, 0.4, 2.0];
    let objective = |params: &ParamStore<B>, mixture: &GaussianMixture| -> f64 {
        log_prob_values(params, mixture, &z)
            .iter()
            .zip(weights)
            .map(|(l, w)| l * w)
            .sum()
    };
    let (params, mixture) = values.build(true);
    let tape = Tape::new(&CPU);
    let log_q = mixture
        .log_prob(&params, &tape.constant(z.clone()))
        .unwrap();
    let w = tape.constant(Tensor::from_vec(&CPU, (4, 1), weights.to_vec()).unwrap());
    let grads = tape.backward(&log_q.mul(&w).unwrap().sum_all()?).unwrap();
    let eps = 1e-6;
    for (id, name, _) in params.iter() {
        let analytic = grads.param(id).unwrap().to_vec()?;
        for (i, a) in analytic.iter().enumerate() {
            let at = |delta: f64| {
                let mut moved = values.clone();
                match name {
                    "q0.loc" => moved.loc[i] += delta,
                    "q0.log_scale" => moved.log_scale[i] += delta,
                    _ => moved.scores[i] += delta,
                }
                let (p, m) = moved.build(true);
                objective(&p, &m)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (a - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{name}[{i}]: {a} vs {numeric}"
            );
        }
    }

    let (fixed_params, fixed) = values.build(false);
    assert!(!fixed.trainable());
    let tape = Tape::new(&CPU);
    let zv = tape.input(z.clone());
    let log_q = fixed.log_prob(&fixed_params, &zv).unwrap();
    assert_eq!(
        log_q.value().to_vec()?,
        log_prob_values(&params, &mixture, &z)
    );
    let grads = tape.backward(&log_q.sum_all()?).unwrap();
    for (id, name, _) in fixed_params.iter() {
        assert!(grads.param(id).is_none(), "{name} got a gradient");
    }
    assert!(grads.get(&zv).is_some());
    Ok(())
}

/// Draws are reparametrised: with the rng reseeded the components and the normal draws
/// repeat, so the samples and their log-densities are smooth functions of loc and log_scale,
/// and autodiff's gradients match central differences.
#[test]
fn mixture_samples_are_reparametrised() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let values = MixtureValues {
        d: 2,
        k: 3,
        loc: vec![-1.0, 0.5, 2.0, 2.0, 0.0, -3.0],
        log_scale: vec![0.2, -0.5, 0.0, 0.3, -1.0, 0.1],
        scores: vec![0.5, -1.0, 0.2],
    };
    let n = 7;
    let wz: Vec<f64> = (0..n * 2)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
        .collect();
    let wq: Vec<f64> = (0..n).map(|i| ((i * 13 % 7) as f64 - 3.0) / 2.0).collect();
    let objective_on = |tape: &Tape<B>, params: &ParamStore<B>, mixture: &GaussianMixture| {
        let (z, log_q) = mixture
            .sample(params, tape, n, &mut flow_core::rng(99))
            .unwrap();
        let wz = tape.constant(Tensor::from_vec(&CPU, (n, 2), wz.clone()).unwrap());
        let wq = tape.constant(Tensor::from_vec(&CPU, (n, 1), wq.clone()).unwrap());
        z.mul(&wz)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&log_q.mul(&wq).unwrap().sum_all().unwrap())
            .unwrap()
    };
    let (params, mixture) = values.build(true);
    let tape = Tape::new(&CPU);
    let grads = tape
        .backward(&objective_on(&tape, &params, &mixture))
        .unwrap();
    let eps = 1e-6;
    for name in ["q0.loc", "q0.log_scale"] {
        let id = params.id(name).unwrap();
        let analytic = grads.param(id).unwrap().to_vec()?;
        for (i, a) in analytic.iter().enumerate() {
            let at = |delta: f64| {
                let mut moved = values.clone();
                let v = if name == "q0.loc" {
                    &mut moved.loc
                } else {
                    &mut moved.log_scale
                };
                v[i] += delta;
                let (p, m) = moved.build(true);
                let tape = Tape::new(&CPU);
                objective_on(&tape, &p, &m).scalar_value().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (a - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{name}[{i}]: {a} vs {numeric}"
            );
        }
    }
    Ok(())
}

/// The empirical mean and covariance of 200 000 seeded draws against the mixture's, within
/// five standard errors computed from the sample size and the mixture's fourth moments; the
/// returned log-density is the mixture's at the drawn points.
#[test]
fn mixture_samples_match_its_moments() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let values = MixtureValues {
        d: 2,
        k: 3,
        loc: vec![-2.0, 1.0, 1.5, 2.5, 0.5, -2.0],
        log_scale: vec![-0.3, 0.2, 0.1, -0.6, 0.4, 0.0],
        scores: vec![0.3, -0.4, 0.8],
    };
    let n = 200_000;
    let (params, mixture) = values.build(true);
    let tape = Tape::new(&CPU);
    let (z, log_q) = mixture
        .sample(&params, &tape, n, &mut flow_core::rng(2024))
        .unwrap();
    let z = z.value();
    let data = z.to_vec()?;
    let d = 2;
    let (mean, cov) = values.moments();
    let emp_mean: Vec<f64> = (0..d)
        .map(|j| data.iter().skip(j).step_by(d).sum::<f64>() / n as f64)
        .collect();
    for j in 0..d {
        let se = (cov[j * d + j] / n as f64).sqrt();
        assert!(
            (emp_mean[j] - mean[j]).abs() < 5.0 * se,
            "mean[{j}]: {} vs {} (se {se})",
            emp_mean[j],
            mean[j]
        );
    }
    for i in 0..d {
        for j in 0..d {
            let emp: f64 = data
                .chunks(d)
                .map(|r| (r[i] - emp_mean[i]) * (r[j] - emp_mean[j]))
                .sum::<f64>()
                / (n - 1) as f64;
            let se = (values.product_variance(i, j, &mean, &cov) / n as f64).sqrt();
            assert!(
                (emp - cov[i * d + j]).abs() < 5.0 * se,
                "cov[{i}][{j}]: {emp} vs {} (se {se})",
                cov[i * d + j]
            );
        }
    }
    let again = log_prob_values(&params, &mixture, &z);
    assert_close(&log_q.value().to_vec()?, &again, 1e-12, "sample log q").unwrap();
    Ok(())
}

/// Components are drawn by their weights: with three far-apart components each draw's
/// component is plain, and the counts are within five binomial standard errors.
#[test]
fn mixture_draws_components_by_weight() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let values = MixtureValues {
        d: 1,
        k: 3,
        loc: vec![-20.0, 0.0, 20.0],
        log_scale: vec![0.0, 0.0, 0.0],
        scores: vec![0.2f64.ln(), 0.5f64.ln(), 0.3f64.ln()],
    };
    let n = 50_000;
    let (params, mixture) = values.build(true);
    let tape = Tape::new(&CPU);
    let (z, _) = mixture
        .sample(&params, &tape, n, &mut flow_core::rng(5))
        .unwrap();
    let mut counts = [0usize; 3];
    for v in z.value().to_vec()? {
        counts[if v < -10.0 {
            0
        } else if v < 10.0 {
            1
        } else {
            2
        }] += 1;
    }
    let weights = mixture.weights(&params).unwrap();
    for k in 0..3 {
        let w = weights[k];
        let se = (w * (1.0 - w) / n as f64).sqrt();
        let freq = counts[k] as f64 / n as f64;
        assert!((freq - w).abs() < 5.0 * se, "component {k}: {freq} vs {w}");
    }
    // A component of zero weight is never drawn.
    let mut zero = values.clone();
    zero.scores = vec![0.0, f64::MIN, 0.0];
    let (params, mixture) = zero.build(true);
    let (z, log_q) = mixture
        .sample(&params, &tape, 2_000, &mut flow_core::rng(6))
        .unwrap();
    assert!(z.value().to_vec()?.iter().all(|v| v.abs() > 10.0));
    assert!(log_q.value().to_vec()?.iter().all(|l| l.is_finite()));
    Ok(())
}

/// normflows' initialisation without given values: standard normal means drawn from the
/// model's seed (on a stream apart from the layers'), unit scales, equal weights.
#[test]
fn mixture_initialisation_follows_normflows_and_the_seed(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let spec = |base| FlowSpec {
        dim: 5,
        context: 0,
        base,
        layers: RealNvpConfig {
            dim: 5,
            ..Default::default()
        }
        .spec()
        .unwrap()
        .layers,
    };
    let mixture = BaseSpec::GaussianMixture {
        components: 200,
        trainable: true,
    };
    let model = NormalizingFlow::new(&CPU, spec(mixture.clone()), 11).unwrap();
    let value = |m: &NormalizingFlow<B>, name: &str| {
        m.params()
            .get(m.params().id(name).unwrap())
            .unwrap()
            .clone()
    };
    let loc = value(&model, "q0.loc");
    assert_eq!((loc.rows(), loc.cols()), (200, 5));
    let v = loc.to_vec()?;
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    assert!(mean.abs() < 5.0 / (v.len() as f64).sqrt(), "mean {mean}");
    assert!(
        (var - 1.0).abs() < 5.0 * (2.0 / v.len() as f64).sqrt(),
        "var {var}"
    );
    let log_scale = value(&model, "q0.log_scale");
    assert_eq!((log_scale.rows(), log_scale.cols()), (200, 5));
    assert!(log_scale.to_vec()?.iter().all(|&s| s == 0.0));
    let scores = value(&model, "q0.weight_scores");
    assert_eq!((scores.rows(), scores.cols()), (1, 200));
    assert!(scores
        .to_vec()?
        .iter()
        .all(|&s| (s + 200f64.ln()).abs() < 1e-15));
    let Base::GaussianMixture(m) = model.base() else {
        panic!("not a mixture: {:?}", model.base())
    };
    assert!(m
        .weights(model.params())
        .unwrap()
        .iter()
        .all(|w| (w - 1.0 / 200.0).abs() < 1e-15));

    // The seed decides the means; the layers start the same whatever the base.
    let same = NormalizingFlow::new(&CPU, spec(mixture.clone()), 11).unwrap();
    assert_eq!(value(&same, "q0.loc").to_vec()?, v);
    let other = NormalizingFlow::new(&CPU, spec(mixture), 12).unwrap();
    assert_ne!(value(&other, "q0.loc").to_vec()?, v);
    let gaussian = NormalizingFlow::new_random(&CPU, spec(BaseSpec::DiagGaussian), 11).unwrap();
    let mixed = NormalizingFlow::new_random(
        &CPU,
        spec(BaseSpec::Uniform {
            low: -1.0,
            high: 1.0,
        }),
        11,
    )
    .unwrap();
    let with_mixture = NormalizingFlow::new_random(
        &CPU,
        spec(BaseSpec::GaussianMixture {
            components: 3,
            trainable: false,
        }),
        11,
    )
    .unwrap();
    for (_, name, t) in gaussian.params().iter() {
        if name.starts_with("flows.") {
            for m in [&mixed, &with_mixture] {
                assert_eq!(value(m, name).to_vec()?, t.to_vec()?, "{name}");
            }
        }
    }
    Ok(())
}

#[test]
fn mixture_configuration_errors() {
    let mut params = ParamStore::<B>::new();
    let rng = &mut flow_core::rng(0);
    let err = GaussianMixture::new(&mut params, &CPU, 2, 0, true, rng).unwrap_err();
    assert!(err.to_string().contains("at least one component"), "{err}");
    let err = GaussianMixture::new(&mut params, &CPU, 0, 2, true, rng).unwrap_err();
    assert!(err.to_string().contains("at least one dimension"), "{err}");
    let (params, mixture) = MixtureValues {
        d: 2,
        k: 1,
        loc: vec![0.0, 0.0],
        log_scale: vec![0.0, 0.0],
        scores: vec![0.0],
    }
    .build(true);
    let tape = Tape::new(&CPU);
    assert!(mixture
        .log_prob(
            &params,
            &tape.constant(Tensor::zeros(&CPU, (3, 4)).unwrap())
        )
        .is_err());
}

// ------------------------------------------------------------------ uniform

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `-d ln(high - low)` inside the closed box (boundary included), `-inf` for a row with
    /// any coordinate outside, NaN for a row with a NaN.
    #[test]
    fn uniform_log_prob_inside_and_outside(
        d in 1usize..=4,
        low in -5.0f64..5.0,
        width in 0.01f64..10.0,
        u in prop::collection::vec(-0.5f64..1.5, 4 * 8),
        boundary in prop::collection::vec(0usize..3, 4 * 8),
    ) {
        let high = low + width;
        let base = Uniform::new(d, low, high).unwrap();
        let rows = 8;
        // Coordinates: interior or exterior from u, or exactly on a bound.
        let z: Vec<f64> = (0..rows * d)
            .map(|i| match boundary[i] {
                0 => low,
                1 => high,
                _ => low + width * u[i],
            })
            .collect();
        let tape = Tape::new(&CPU);
        let log_q = base.log_prob(&tape.constant(points(d, z.clone()))).unwrap().value().to_vec()?;
        for (r, row) in z.chunks(d).enumerate() {
            let inside = row.iter().all(|&v| low <= v && v <= high);
            let want = if inside { -(d as f64) * width.ln() } else { f64::NEG_INFINITY };
            prop_assert!(
                log_q[r] == want || (log_q[r] - want).abs() < 1e-12 * (1.0 + want.abs()),
                "row {:?}: {} vs {}", row, log_q[r], want
            );
        }
        let with_nan = points(d, vec![f64::NAN; d]);
        prop_assert!(base.log_prob(&tape.constant(with_nan)).unwrap().value().to_vec()?[0].is_nan());
    }
}

/// Draws lie in the box, uniformly (mean and variance of each coordinate within five standard
/// errors), with the inside log-density.
#[test]
fn uniform_samples_fill_the_box() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (low, high, d, n) = (-0.5, 2.5, 3, 60_000);
    let base = Uniform::new(d, low, high).unwrap();
    let tape = Tape::new(&CPU);
    let (z, log_q) = base.sample(&tape, n, &mut flow_core::rng(3)).unwrap();
    let data = z.value().to_vec()?;
    assert!(data.iter().all(|&v| low <= v && v < high));
    assert!(log_q
        .value()
        .to_vec()?
        .iter()
        .all(|&l| l == -3.0 * 3f64.ln()));
    let w = high - low;
    for j in 0..d {
        let column: Vec<f64> = data.iter().skip(j).step_by(d).copied().collect();
        let mean = column.iter().sum::<f64>() / n as f64;
        let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        let var_true = w * w / 12.0;
        assert!((mean - (low + high) / 2.0).abs() < 5.0 * (var_true / n as f64).sqrt());
        // Var of (x - m)^2 for a uniform: w^4/80 - (w^2/12)^2.
        let se = ((w.powi(4) / 80.0 - var_true * var_true) / n as f64).sqrt();
        assert!((var - var_true).abs() < 5.0 * se, "{var} vs {var_true}");
    }
    // In f32 too every draw stays in the box as f32 rounds it.
    let cpu32 = Cpu::<f32>::new();
    let base = Uniform::new(2, -0.1, 0.1).unwrap();
    let tape = Tape::new(&cpu32);
    let (z, _) = base.sample(&tape, 10_000, &mut flow_core::rng(4)).unwrap();
    let log_q = base.log_prob(&z).unwrap().value().to_f64s()?;
    assert!(log_q.iter().all(|l| l.is_finite()));
    Ok(())
}

/// A flow over a uniform base, with data whose latents fall outside the box: their
/// log-density is `-inf`, the forward KL `+inf`, and every gradient (parameters and data)
/// finite, never NaN.
#[test]
fn uniform_minus_infinity_gives_no_nan_gradients(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut spec = RealNvpConfig {
        dim: 2,
        transforms: 2,
        hidden: vec![8],
        leaky: 0.1,
        ..Default::default()
    }
    .spec()
    .unwrap();
    spec.base = BaseSpec::Uniform {
        low: -1.0,
        high: 1.0,
    };
    let model = NormalizingFlow::new_random(&CPU, spec, 4).unwrap();
    let tape = Tape::new(&CPU);
    // Latents inside and outside, pushed to data space.
    let z = points(2, vec![0.1, 0.2, -0.9, 0.5, 3.0, 0.0, 0.0, -7.0]);
    let x = model.forward(&tape.constant(z), None).unwrap().0.value();
    let tape = Tape::new(&CPU);
    let xv = tape.input(x);
    let log_q = model.log_prob(&xv, None).unwrap();
    let values = log_q.value().to_vec()?;
    assert!(values[..2].iter().all(|l| l.is_finite()), "{values:?}");
    assert!(
        values[2..].iter().all(|&l| l == f64::NEG_INFINITY),
        "{values:?}"
    );
    let loss = model.forward_kld(&xv, None).unwrap();
    assert_eq!(loss.scalar_value().unwrap(), f64::INFINITY);
    let grads = tape.backward(&loss).unwrap();
    let mut checked = 0;
    for (id, name, _) in model.params().iter() {
        let g = grads.param(id).unwrap().to_vec()?;
        assert!(g.iter().all(|v| v.is_finite()), "{name}: {g:?}");
        checked += 1;
    }
    assert!(checked > 0);
    let gx = grads.get(&xv).unwrap().to_vec()?;
    assert!(gx.iter().all(|v| v.is_finite()), "{gx:?}");
    // Second order (as a gradient penalty would use) stays finite as well.
    let gx = tape.grad(&loss, &[&xv], true).unwrap().remove(0);
    let g2 = tape.grad(&gx.square()?.sum_all()?, &[&xv], false).unwrap();
    assert!(g2[0].value().to_vec()?.iter().all(|v| v.is_finite()));
    Ok(())
}

#[test]
fn uniform_configuration_errors() {
    for (low, high) in [
        (1.0, 1.0),
        (2.0, 1.0),
        (f64::NAN, 1.0),
        (0.0, f64::INFINITY),
        (-f64::MAX, f64::MAX),
    ] {
        assert!(Uniform::new(2, low, high).is_err(), "[{low}, {high}]");
    }
    assert!(Uniform::new(0, 0.0, 1.0).is_err());
    // Bounds that f32 cannot tell apart (or hold) are refused when building for f32.
    let cpu32 = Cpu::<f32>::new();
    for (low, high) in [(1.0, 1.0 + 1e-12), (-1e300, 1.0)] {
        let spec = BaseSpec::Uniform { low, high };
        let err = Base::from_spec(&mut ParamStore::new(), &cpu32, 2, &spec, 0).unwrap_err();
        assert!(err.to_string().contains("f32"), "{err}");
        assert!(Base::from_spec(&mut ParamStore::<B>::new(), &CPU, 2, &spec, 0).is_ok());
    }
    let base = Uniform::new(2, 0.0, 1.0).unwrap();
    let tape = Tape::new(&CPU);
    let err = base
        .log_prob(&tape.constant(Tensor::zeros(&CPU, (1, 3)).unwrap()))
        .unwrap_err();
    assert!(err.to_string().contains("expected 2 features"), "{err}");
}

// ------------------------------------------------------------------ whole flows, specs

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A whole flow with each base: the log-density returned with a sample is `log_prob` of
    /// the sample; the spec rebuilds the same model through JSON; `num_scalars` counts what
    /// the build allocates.
    #[test]
    fn whole_flow_with_each_base(
        base in base_spec(),
        dim in 1usize..=5,
        maf in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let spec = realnvp_or_maf(dim, maf, seed, base);
        let model = NormalizingFlow::new_random(&CPU, spec.clone(), seed).unwrap();
        let (x, log_q) = model.sample(9, None, &mut flow_core::rng(seed + 1)).unwrap();
        let log_p = model.log_prob(&x, None).unwrap();
        prop_assert!(log_q.to_vec()?.iter().all(|l| l.is_finite()));
        assert_close(&log_p.to_vec()?, &log_q.to_vec()?, TOL, "sample log q vs log_prob")?;
        prop_assert_eq!(model.base().dim(), dim);

        let rebuilt_spec = FlowSpec::from_json(&spec.to_json()).unwrap();
        prop_assert_eq!(&rebuilt_spec, &spec);
        prop_assert_eq!(spec.num_scalars(&Registry::<B>::builtin()).unwrap(), Some(model.params().num_scalars()));
        let mut rebuilt = NormalizingFlow::new(&CPU, rebuilt_spec, seed + 7).unwrap();
        let store = rebuilt.params_mut();
        for (_, name, value) in model.params().iter() {
            let id = store.id(name).unwrap();
            store.set(id, value.clone()).unwrap();
        }
        prop_assert_eq!(rebuilt.params().len(), model.params().len());
        assert_close(&rebuilt.log_prob(&x, None).unwrap().to_vec()?, &log_p.to_vec()?, 1e-12, "rebuilt")?;
    }
}

/// The stored forms of each base, and the one checkpoints already hold.
#[test]
fn base_specs_in_json() {
    let old = r#"{"dim":2,"base":{"type":"diag_gaussian"},"layers":[]}"#;
    let spec = FlowSpec::from_json(old).unwrap();
    assert_eq!(spec.base, BaseSpec::DiagGaussian);
    assert_eq!(
        spec.to_json(),
        r#"{"dim":2,"context":0,"base":{"type":"diag_gaussian"},"layers":[]}"#
    );

    let mixture = FlowSpec::from_json(
        r#"{"dim":2,"base":{"type":"gaussian_mixture","components":4},"layers":[]}"#,
    )
    .unwrap();
    assert_eq!(
        mixture.base,
        BaseSpec::GaussianMixture {
            components: 4,
            trainable: true
        }
    );
    assert!(mixture
        .to_json()
        .contains(r#""base":{"type":"gaussian_mixture","components":4,"trainable":true}"#));
    assert_eq!(
        mixture.num_scalars(&Registry::<B>::builtin()).unwrap(),
        Some(4 * 2 * 2 + 4)
    );

    let fixed = BaseSpec::GaussianMixture {
        components: 2,
        trainable: false,
    };
    let uniform = BaseSpec::Uniform {
        low: -0.25,
        high: 1.5,
    };
    for base in [fixed, uniform] {
        let spec = FlowSpec {
            dim: 3,
            context: 0,
            base,
            layers: vec![],
        };
        assert_eq!(FlowSpec::from_json(&spec.to_json()).unwrap(), spec);
    }
    let uniform = FlowSpec::from_json(
        r#"{"dim":3,"base":{"type":"uniform","low":-1.0,"high":2.0},"layers":[]}"#,
    )
    .unwrap();
    assert_eq!(
        uniform.num_scalars(&Registry::<B>::builtin()).unwrap(),
        Some(0)
    );

    for bad in [
        r#"{"dim":2,"base":{"type":"gaussian_mixture"},"layers":[]}"#,
        r#"{"dim":2,"base":{"type":"uniform","low":0.0},"layers":[]}"#,
        r#"{"dim":2,"base":{"type":"student_t"},"layers":[]}"#,
    ] {
        assert!(FlowSpec::from_json(bad).is_err(), "{bad}");
    }
    // Valid JSON, impossible bases: errors when built, never panics.
    for base in [
        BaseSpec::GaussianMixture {
            components: 0,
            trainable: true,
        },
        BaseSpec::Uniform {
            low: 1.0,
            high: -1.0,
        },
    ] {
        let spec = FlowSpec {
            dim: 2,
            context: 0,
            base,
            layers: vec![],
        };
        assert!(NormalizingFlow::new(&CPU, spec, 0).is_err());
    }
    let huge = FlowSpec {
        dim: 2,
        context: 0,
        base: BaseSpec::GaussianMixture {
            components: usize::MAX,
            trainable: true,
        },
        layers: vec![],
    };
    assert_eq!(huge.num_scalars(&Registry::<B>::builtin()).unwrap(), None);
}
