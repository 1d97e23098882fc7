//! TwoMoons: its normaliser and entropy by quadrature, its sampler against its density.

use flow_core::{Cpu, Tape, Target, Tensor};
use flow_datasets::{ToyDensity, TwoMoons};

/// Midpoint rule on [-3, 3]^2 with `n` cells per axis: (log Z, entropy).
fn quadrature(n: usize) -> (f64, f64) {
    let h = 6.0 / n as f64;
    let (mut z, mut plogp) = (0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            let (x0, x1) = (-3.0 + (i as f64 + 0.5) * h, -3.0 + (j as f64 + 0.5) * h);
            let lp = TwoMoons::log_prob_unnormalized(x0, x1);
            z += lp.exp() * h * h;
            plogp += lp.exp() * lp * h * h;
        }
    }
    // H = -E[log p] with p = p~/Z: -(E~[log p~] / Z - log Z)
    (z.ln(), -(plogp / z - z.ln()))
}

#[test]
fn normaliser_and_entropy_match_the_documented_values() {
    let (log_z, entropy) = quadrature(3000);
    assert!((log_z - TwoMoons::LOG_Z).abs() < 5e-5, "log Z = {log_z}");
    assert!(
        (entropy - TwoMoons::ENTROPY).abs() < 5e-5,
        "entropy = {entropy}"
    );
}

#[test]
fn unnormalised_density_never_exceeds_zero() {
    // The rejection sampler accepts with probability exp(log p~): it must be <= 1 (up to
    // the 2.3e-10 the bridge term can add near z0 = 0).
    let n = 1200;
    let max = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            TwoMoons::log_prob_unnormalized(
                -3.0 + 6.0 * i as f64 / n as f64,
                -3.0 + 6.0 * j as f64 / n as f64,
            )
        })
        .fold(f64::MIN, f64::max);
    assert!(max <= 3e-10, "max log p~ = {max}");
}

#[test]
fn samples_have_the_density_entropy() {
    // The mean of -log p over samples estimates the entropy; 20000 samples give a standard
    // error of about 0.007 nats.
    let x = TwoMoons.sample(20000, &mut flow_core::rng(7));
    let nll: Vec<f64> = x
        .chunks(2)
        .map(|p| -ToyDensity::log_prob(&TwoMoons, p).unwrap())
        .collect();
    let mean = nll.iter().sum::<f64>() / nll.len() as f64;
    let sd = (nll.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / nll.len() as f64).sqrt();
    let se = sd / (nll.len() as f64).sqrt();
    assert!(
        (mean - TwoMoons::ENTROPY).abs() < 4.0 * se,
        "mean NLL {mean} +- {se}"
    );
    // Both moons are populated equally.
    let right = x.chunks(2).filter(|p| p[0] > 0.0).count() as f64 / 20000.0;
    assert!((right - 0.5).abs() < 0.02, "{right}");
}

#[test]
fn sampling_is_reproducible_from_a_seed() {
    let a = TwoMoons.sample(100, &mut flow_core::rng(3));
    let b = TwoMoons.sample(100, &mut flow_core::rng(3));
    let c = TwoMoons.sample(100, &mut flow_core::rng(4));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn tape_log_prob_matches_the_scalar_one() {
    let cpu = Cpu::<f64>::new();
    let pts = vec![0.3, -1.2, 2.0, 0.1, -1.7, 0.8, 0.0, 0.0];
    let tape = Tape::new(&cpu);
    let v = Target::log_prob(
        &TwoMoons,
        &tape.constant(Tensor::from_vec(&cpu, (4, 2), pts.clone()).unwrap()),
    )
    .unwrap();
    for (k, p) in pts.chunks(2).enumerate() {
        let want = TwoMoons::log_prob_unnormalized(p[0], p[1]);
        assert!((v.value().to_vec().unwrap()[k] - want).abs() < 1e-12);
    }
}
