//! Times every matrix product of a 1-64-64-2 conditioner MLP at batch 512 (forward
//! `x @ W^T + b`, backward `g @ W` and `g^T @ x`), best of 20 x 200 calls: the thin ones run
//! in the hand-written kernels, the 64-wide ones in gemm.
//!
//! `cargo run --release -p flow-core --example mmshapes`

use flow_core::{Cpu, Tensor};
use std::time::Instant;
/// Name, shape of `a`, `ta`, shape of `b`, `tb`.
type Case = (&'static str, (usize, usize), bool, (usize, usize), bool);
fn main() {
    let cpu = Cpu::<f32>::new();
    let mut rng = flow_core::rng(0);
    let r = |s: (usize, usize), rng: &mut _| Tensor::rand_uniform(&cpu, s, -1.0, 1.0, rng).unwrap();
    let cases: Vec<Case> = vec![
        ("fwd L1 x@W1t 512x1 1x64", (512, 1), false, (64, 1), true),
        ("fwd L2 h@W2t", (512, 64), false, (64, 64), true),
        ("fwd L3 h@W3t ->512x2", (512, 64), false, (2, 64), true),
        ("bwd dW3 g3t@h ->2x64", (512, 2), true, (512, 64), false),
        ("bwd dh2 g3@W3 k=2", (512, 2), false, (2, 64), false),
        ("bwd dW2 gt@h ->64x64", (512, 64), true, (512, 64), false),
        ("bwd dh1 g@W2", (512, 64), false, (64, 64), false),
        ("bwd dW1 gt@x ->64x1", (512, 64), true, (512, 1), false),
        ("bwd dx g@W1 ->512x1", (512, 64), false, (64, 1), false),
    ];
    for (name, sa, ta, sb, tb) in cases {
        let a = r(sa, &mut rng);
        let b = r(sb, &mut rng);
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            for _ in 0..200 {
                std::hint::black_box(a.matmul_t(ta, &b, tb).unwrap());
            }
            best = best.min(t.elapsed().as_secs_f64() / 200.0);
        }
        println!("{name:32} {:.2} us", best * 1e6);
    }
}
