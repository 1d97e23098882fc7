//! What one training step asks of its backend, counted with `flow_core::backend::Counted`
//! on the CPU: on a GPU each call is at least one kernel launch or transfer, and each read
//! back waits for the device, so these counts are what a step costs there before any
//! arithmetic. The seed example and an NSF are held to the counts measured when this test
//! was written (fewer is better: lower the bounds when a change saves calls), and to one
//! upload (the batch) and three reads (the batch's finiteness, the loss, the gradients'
//! finiteness) per step.

use flow_core::backend::{Calls, Counted};
use flow_core::Cpu;
use flow_datasets::TwoMoons;
use flow_layers::{FlowSpec, NormalizingFlow, NsfConfig, RealNvpConfig};
use flow_train::train::{train, Progress, TrainConfig};

/// The calls of one step: the difference between runs of 40 and 20 iterations over 20,
/// after a run that fills the backend's constants (kept per process).
fn calls_per_step(spec: &FlowSpec) -> Calls {
    let backend = Counted::new(Cpu::<f32>::new());
    let run = |iters: usize| {
        let config = TrainConfig {
            iters,
            ..TrainConfig::default()
        };
        let mut model = NormalizingFlow::new(&backend, spec.clone(), 0).unwrap();
        let before = backend.calls();
        train(&mut model, &TwoMoons, &config, |_: &Progress<'_, _>| Ok(())).unwrap();
        backend.calls().since(&before)
    };
    run(5);
    let (short, long) = (run(20), run(40));
    let step = Calls(
        long.0
            .iter()
            .map(|(&method, &n)| {
                let extra = n - short.get(method);
                assert_eq!(extra % 20, 0, "{method}: {extra} calls over 20 steps");
                (method, extra / 20)
            })
            .filter(|&(_, n)| n > 0)
            .collect(),
    );
    println!("{step}");
    step
}

fn check(name: &str, step: &Calls, most: u64) {
    assert_eq!(step.writes(), 1, "{name}: uploads per step: {step}");
    assert_eq!(step.reads(), 3, "{name}: reads per step: {step}");
    assert!(step.total() <= most, "{name}: {step} (at most {most})");
}

#[test]
fn a_training_step_makes_few_backend_calls() {
    let seed = calls_per_step(&RealNvpConfig::default().spec().unwrap());
    check("the seed example", &seed, 101);
    let nsf = NsfConfig {
        dim: 2,
        transforms: 3,
        hidden: vec![64, 64],
        ..NsfConfig::default()
    };
    check("NSF 3 x 64-64", &calls_per_step(&nsf.spec().unwrap()), 158);
}
