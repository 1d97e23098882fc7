//! Where a training step of the seed example spends its time: sampling, forward, backward,
//! Adam, and dropping the tape, in microseconds per iteration over 3201 iterations.
//!
//! `cargo run --release -p flows-cli --example phases`

use flow_core::{Cpu, Tape, Tensor};
use flow_datasets::{ToyDensity, TwoMoons};
use flow_layers::{NormalizingFlow, RealNvpConfig};
use flow_train::optim::{Adam, Optimizer};
use std::time::Instant;

// The allocator the `flows` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cpu = Cpu::<f32>::new();
    let mut model =
        NormalizingFlow::new(&cpu, RealNvpConfig::default().spec().unwrap(), 0).unwrap();
    let mut opt = Adam::new(5e-4, 1e-5);
    let mut rng = flow_core::rng(0);
    let mut t = [0.0f64; 5];
    for _ in 0..3201 {
        let a = Instant::now();
        let data = TwoMoons.sample(512, &mut rng);
        let b = Instant::now();
        let x = Tensor::from_f64s(&cpu, (512, 2), &data).unwrap();
        let tape = Tape::new(&cpu);
        let loss = model.forward_kld(&tape.constant(x), None).unwrap();
        let c = Instant::now();
        let g = tape.backward(&loss).unwrap();
        let d = Instant::now();
        // As the training loop: the tape goes first, so that Adam updates in place.
        drop((loss, tape));
        opt.step(model.params_mut(), &g).unwrap();
        let e = Instant::now();
        drop(g);
        let f = Instant::now();
        for (k, (p, q)) in [(a, b), (b, c), (c, d), (d, e), (e, f)].iter().enumerate() {
            t[k] += (*q - *p).as_secs_f64();
        }
    }
    for (n, v) in ["sample", "forward", "backward", "adam", "drop grads"]
        .iter()
        .zip(t)
    {
        println!("{n}: {:.1} us/it", v / 3201.0 * 1e6);
    }
}
