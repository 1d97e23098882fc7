//! A conditional neural spline flow learns a density that moves with its context: data
//! `x | c` are two moons turned by the angle `c` (uniform on [0, pi]), the flow is trained by
//! forward KL with `forward_kld`, and then, for contexts it never saw, its samples
//! (`sample`) have the mean and second moments of the turned moons, and `log_prob` of
//! fresh data given the right context beats the wrong one. This is the README's conditional
//! example, run as a test.

use flow_core::{Cpu, Tape, Tensor};
use flow_datasets::{ToyDensity, TwoMoons};
use flow_layers::{NormalizingFlow, NsfConfig};
use flow_train::optim::{Adam, Optimizer};
use rand::Rng;

type B = Cpu<f64>;

/// `n` points of two moons turned by angle `c[r]`, one angle per row.
fn turned_moons(angles: &[f64], rng: &mut flow_core::FlowRng) -> Vec<f64> {
    let moons = TwoMoons.sample(angles.len(), rng);
    angles
        .iter()
        .zip(moons.chunks(2))
        .flat_map(|(&c, p)| {
            let (s, co) = c.sin_cos();
            [co * p[0] - s * p[1], s * p[0] + co * p[1]]
        })
        .collect()
}

#[test]
fn conditional_nsf_learns_a_density_that_turns_with_its_context() {
    let cpu = B::new();
    let spec = NsfConfig {
        dim: 2,
        context: 1,
        transforms: 3,
        hidden: vec![32, 32],
        ..NsfConfig::default()
    }
    .spec()
    .unwrap();
    let mut model = NormalizingFlow::new(&cpu, spec, 0).unwrap();
    let mut opt = Adam::new(3e-3, 0.0);
    let mut rng = flow_core::rng(1);
    let batch = 256;
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..600 {
        let angles: Vec<f64> = (0..batch)
            .map(|_| rng.random::<f64>() * std::f64::consts::PI)
            .collect();
        let x = Tensor::from_f64s(&cpu, (batch, 2), &turned_moons(&angles, &mut rng)).unwrap();
        let c = Tensor::from_f64s(&cpu, (batch, 1), &angles).unwrap();
        let tape = Tape::new(&cpu);
        let loss = model
            .forward_kld(&tape.constant(x), Some(&tape.constant(c)))
            .unwrap();
        let value = loss.scalar_value().unwrap();
        first.get_or_insert(value);
        last = value;
        let grads = tape.backward(&loss).unwrap();
        drop((loss, tape));
        opt.step(model.params_mut(), &grads).unwrap();
    }
    let first = first.unwrap();
    eprintln!("forward KL {first:.3} -> {last:.3} over 600 steps");
    assert!(last < first - 1.0, "loss {first} -> {last}");

    // Contexts between the training angles' draws: samples have the turned moons' mean and
    // second moments (which turn with c: the moons are wider than tall).
    let moments = |v: &[f64]| {
        let n = (v.len() / 2) as f64;
        let mut m = [0.0; 5];
        for p in v.chunks(2) {
            m[0] += p[0] / n;
            m[1] += p[1] / n;
            m[2] += p[0] * p[0] / n;
            m[3] += p[0] * p[1] / n;
            m[4] += p[1] * p[1] / n;
        }
        m
    };
    for &c in &[0.3, 1.4, 2.6] {
        let context = Tensor::from_f64s(&cpu, (1, 1), &[c]).unwrap();
        let (samples, log_q) = model
            .sample(4000, Some(&context), &mut flow_core::rng(7))
            .unwrap();
        assert!(log_q.to_vec().unwrap().iter().all(|v| v.is_finite()));
        let got = moments(&samples.to_vec().unwrap());
        let want = moments(&turned_moons(&[c; 20_000], &mut flow_core::rng(8)));
        eprintln!("context {c}: mean, E[xx], E[xy], E[yy] {got:.3?} vs {want:.3?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 0.2,
                "context {c}: moments {got:?} vs {want:?}"
            );
        }
        // Fresh data given the right context are more likely than given a turned one.
        let x = Tensor::from_f64s(&cpu, (2000, 2), &turned_moons(&[c; 2000], &mut rng)).unwrap();
        let right = Tensor::from_f64s(&cpu, (2000, 1), &[c; 2000]).unwrap();
        let wrong = Tensor::from_f64s(&cpu, (2000, 1), &[c + 1.5; 2000]).unwrap();
        let mean_of = |t: Tensor<B>| t.to_vec().unwrap().iter().sum::<f64>() / 2000.0;
        let (l_right, l_wrong) = (
            mean_of(model.log_prob(&x, Some(&right)).unwrap()),
            mean_of(model.log_prob(&x, Some(&wrong)).unwrap()),
        );
        eprintln!(
            "context {c}: mean log-density given it {l_right:.3}, given {:.1}: {l_wrong:.3}",
            c + 1.5
        );
        assert!(
            l_right > l_wrong + 1.0,
            "context {c}: {l_right} vs {l_wrong}"
        );
    }
}
