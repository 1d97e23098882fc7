//! The seed example end to end with `flows train`'s defaults (normflows' RealNVP on two
//! moons, Adam 5e-4, 3201 iterations at batch 512): every loss finite, and a held-out test
//! NLL of at most 1.63 nats (normflows reaches 1.6285 with this configuration).
//!
//! One run's test NLL varies with its seed by about 0.008 nats (normflows' too: the
//! trajectory, not the estimate, is what varies; 100,000 held-out samples put the
//! estimate's standard error at 0.003). So the bound is checked on the median of five seeds,
//! which is what "this configuration reaches" can mean without choosing a lucky seed.

use flow_core::Cpu;
use flow_datasets::TwoMoons;
use flow_layers::{NormalizingFlow, RealNvpConfig};
use flow_train::train::{test_nll, test_rng, train, TrainConfig};

fn run(seed: u64) -> f64 {
    let config = TrainConfig {
        seed,
        ..TrainConfig::default()
    };
    let spec = RealNvpConfig::default().spec().unwrap();
    let mut model = NormalizingFlow::new(&Cpu::<f32>::new(), spec, config.seed).unwrap();
    let report = train(&mut model, &TwoMoons, &config, |_, _| Ok(())).unwrap();
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
        let handles: Vec<_> = (0..5u64).map(|seed| s.spawn(move || run(seed))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    nlls.sort_by(f64::total_cmp);
    let median = nlls[2];
    assert!(
        median <= 1.63,
        "median test NLL over seeds 0-4 is {median} ({nlls:?})"
    );
}
