//! A run whose loss stays NaN or infinite stops with an error that says so, instead of
//! skipping steps until the end.

use flow_core::Cpu;
use flow_datasets::TwoMoons;
use flow_layers::{NormalizingFlow, RealNvpConfig};
use flow_train::error::Error;
use flow_train::train::{train, Progress, TrainConfig};

#[test]
fn a_run_of_non_finite_losses_stops_training() {
    let config = TrainConfig {
        iters: 2000,
        batch: 64,
        lr: 1e6, // steps of about 1e6 per parameter: exp(scale) overflows at once
        max_nonfinite_streak: 20,
        ..TrainConfig::default()
    };
    let spec = RealNvpConfig::default().spec().unwrap();
    let mut model = NormalizingFlow::new(&Cpu::<f32>::new(), spec, 0).unwrap();
    let mut seen = 0;
    let err = train(&mut model, &TwoMoons, &config, |p: &Progress<'_, _>| {
        seen = p.step + 1;
        Ok(())
    })
    .unwrap_err();
    match &err {
        Error::Diverged { at, first, steps } => {
            assert_eq!(*steps, 20);
            assert_eq!(at + 1 - first, 20);
            assert_eq!(seen, at + 1, "stopped right at the 20th non-finite loss");
            assert!(*at < 1000, "stopped late, at {at}");
        }
        other => panic!("expected Diverged, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("NaN or infinite") && message.contains("20 iterations"),
        "{message}"
    );

    // The default configuration never trips it.
    let config = TrainConfig {
        iters: 300,
        ..TrainConfig::default()
    };
    let spec = RealNvpConfig::default().spec().unwrap();
    let mut model = NormalizingFlow::new(&Cpu::<f32>::new(), spec, 0).unwrap();
    assert_eq!(
        train(&mut model, &TwoMoons, &config, |_: &Progress<'_, _>| Ok(()))
            .unwrap()
            .skipped,
        0
    );
}
