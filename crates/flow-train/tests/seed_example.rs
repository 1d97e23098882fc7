//! The seed example end to end with `flows train`'s defaults (normflows' RealNVP on two
//! moons, Adam 5e-4, 3201 iterations at batch 512): every loss finite, and a held-out test
//! NLL of at most 1.63 nats (normflows reaches 1.6285 with this configuration).

use flow_core::Cpu;
use flow_datasets::TwoMoons;
use flow_layers::{NormalizingFlow, RealNvpConfig};
use flow_train::train::{test_nll, test_rng, train, TrainConfig};

#[test]
fn default_configuration_reaches_the_normflows_nll() {
    let config = TrainConfig::default();
    let spec = RealNvpConfig::default().spec().unwrap();
    let mut model = NormalizingFlow::new(&Cpu::<f32>::new(), spec, config.seed).unwrap();
    let report = train(&mut model, &TwoMoons, &config, |_, _| Ok(())).unwrap();
    assert_eq!(report.losses.len(), 3201);
    assert_eq!(report.skipped, 0);
    assert!(report.losses.iter().all(|l| l.is_finite()));
    let (nll, se) = test_nll(&model, &TwoMoons, 100_000, &mut test_rng(config.seed)).unwrap();
    eprintln!(
        "test NLL {nll:.4} +- {se:.4} ({:.0} it/s)",
        report.iters_per_second()
    );
    assert!(nll <= 1.63, "test NLL {nll} +- {se}");
    assert!(
        nll >= TwoMoons::ENTROPY - 4.0 * se,
        "test NLL {nll} below the entropy {}",
        TwoMoons::ENTROPY
    );
}
