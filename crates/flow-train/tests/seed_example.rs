//! The seed example end to end with `flows train`'s defaults (normflows' RealNVP on two
//! moons, Adam 5e-4, 3201 iterations at batch 512): every loss finite, and a held-out test
//! NLL at normflows' level (normflows reaches 1.6285 with this configuration).
//!
//! One run's test NLL varies with its seed (the trajectory varies, not the estimate: 100,000
//! held-out samples put its standard error at 0.003). normflows itself, measured on this
//! machine with the same 100,000-sample protocol (`bench/normflows_two_moons.py --seed S
//! --test-samples 100000`), gave 1.6289, 1.6146, 1.6415, 1.6196, 1.6329, 1.6281, 1.6340,
//! 1.6280, 1.6243 and 1.6334 for seeds 0-9: median 1.6285, mean 1.6285, 6 of 10 at or below
//! 1.63. So the 1.63 is the median of normflows' own distribution and one seed passes
//! or fails it by chance (ours: seed 0 gives 1.6394, seed 9 1.6201). This test checks the
//! median of ten seeds against 1.632: 1.63 plus about half the standard error of a ten-run
//! median of a distribution this wide (sd 0.008). The closing note reports the gap.

use flow_core::Cpu;
use flow_datasets::TwoMoons;
use flow_layers::{NormalizingFlow, RealNvpConfig};
use flow_train::train::{test_nll, test_rng, train, Progress, TrainConfig};

fn run(seed: u64) -> f64 {
    let config = TrainConfig {
        seed,
        ..TrainConfig::default()
    };
    let spec = RealNvpConfig::default().spec().unwrap();
    let mut model = NormalizingFlow::new(&Cpu::<f32>::new(), spec, config.seed).unwrap();
    let report = train(&mut model, &TwoMoons, &config, |_: &Progress<'_, _>| Ok(())).unwrap();
    assert_eq!(report.losses.len(), 3201);
    assert_eq!(report.skipped, 0, "seed {seed}: non-finite losses");
    assert!(report.losses.iter().all(|l| l.is_finite()));
    let (nll, se) = test_nll(&model, &TwoMoons, 100_000, &mut test_rng(config.seed)).unwrap();
    eprintln!(
        "seed {seed}: test NLL {nll:.4} +- {se:.4} ({:.0} it/s)",
        report.iters_per_second()
    );
    assert!(
        nll >= TwoMoons::ENTROPY - 4.0 * se,
        "test NLL {nll} below the entropy {}",
        TwoMoons::ENTROPY
    );
    nll
}

#[test]
fn default_configuration_reaches_the_normflows_nll() {
    let mut nlls: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10u64).map(|seed| s.spawn(move || run(seed))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    nlls.sort_by(f64::total_cmp);
    let median = 0.5 * (nlls[4] + nlls[5]);
    assert!(
        median <= 1.632,
        "median test NLL over seeds 0-9 is {median} ({nlls:?})"
    );
}
