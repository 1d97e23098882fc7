//! `reverse_kld` (normflows' semantics: `mean(log q(x)) - beta * mean(log p(x))` over model
//! samples, reparametrised): zero when the model is the target, and minimising it moves a
//! flow towards an unnormalised target.

use flow_core::{Axis, Backend, Cpu, Tape, Var};
use flow_datasets::TwoMoons;
use flow_layers::{NormalizingFlow, RealNvpConfig, Target};
use flow_train::optim::{Adam, Optimizer};

type B = Cpu<f64>;
const CPU: B = Cpu::new();

/// The standard normal in 2-D, normalised.
struct StandardNormal;

impl<Bk: Backend> Target<Bk> for StandardNormal {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &Var<Bk>) -> flow_core::Result<Var<Bk>> {
        let c = -(2.0 * std::f64::consts::PI).ln();
        x.square()?.sum(Axis::Cols)?.mul_scalar(-0.5)?.add_scalar(c)
    }
}

#[test]
fn reverse_kld_is_zero_when_the_model_is_the_target() {
    // Zero-initialised conditioners: the flow is the identity and q is the standard normal.
    let model = NormalizingFlow::new(&CPU, RealNvpConfig::default().spec().unwrap(), 0).unwrap();
    let tape = Tape::new(&CPU);
    let kld = model
        .reverse_kld(&tape, &StandardNormal, 256, 1.0, &mut flow_core::rng(1))
        .unwrap();
    assert!(kld.scalar_value().unwrap().abs() < 1e-12);
}

#[test]
fn minimising_reverse_kld_fits_two_moons() {
    let mut model =
        NormalizingFlow::new(&CPU, RealNvpConfig::default().spec().unwrap(), 0).unwrap();
    let mut adam = Adam::new(1e-3, 0.0);
    let mut rng = flow_core::rng(2);
    let mut losses = Vec::new();
    for _ in 0..400 {
        let tape = Tape::new(&CPU);
        let loss = model
            .reverse_kld(&tape, &TwoMoons, 256, 1.0, &mut rng)
            .unwrap();
        losses.push(loss.scalar_value().unwrap());
        let grads = tape.backward(&loss).unwrap();
        adam.step(model.params_mut(), &grads).unwrap();
    }
    let first: f64 = losses[..20].iter().sum::<f64>() / 20.0;
    let last: f64 = losses[losses.len() - 20..].iter().sum::<f64>() / 20.0;
    // The reverse KL to the unnormalised target is KL(q||p) - log Z >= -log Z = -0.804.
    assert!(last >= -TwoMoons::LOG_Z - 0.05, "{last}");
    assert!(last < first - 1.0, "reverse KL went from {first} to {last}");
}
