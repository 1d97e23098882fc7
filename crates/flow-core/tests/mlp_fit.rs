//! End to end: an MLP 1-64-64-2 fitted by plain gradient descent, in f32, on a fixed
//! regression task, to 1% of the error of predicting the targets' mean (it reaches about
//! 0.25%). Weight gradients of the wrong sign or scale, a missing layer's contribution or
//! a non-finite step cannot get there (tried by mutating the backward passes); subtler
//! errors that still descend are the per-op gradient checks' job.

use flow_core::{rng, Axis, Cpu, ParamId, ParamStore, Tape, Tensor};

type B = Cpu<f32>;
const CPU: B = Cpu::new();

fn init_linear(
    store: &mut ParamStore<B>,
    name: &str,
    fan_in: usize,
    fan_out: usize,
    seed: u64,
) -> (ParamId, ParamId) {
    // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
    let bound = 1.0 / (fan_in as f64).sqrt();
    let mut r = rng(seed);
    let w = Tensor::rand_uniform(&CPU, (fan_out, fan_in), -bound, bound, &mut r).unwrap();
    let b = Tensor::rand_uniform(&CPU, (1, fan_out), -bound, bound, &mut r).unwrap();
    (
        store.add(format!("{name}.weight"), w).unwrap(),
        store.add(format!("{name}.bias"), b).unwrap(),
    )
}

#[test]
fn mlp_fits_a_regression_task_by_gradient_descent(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n = 256;
    let xs: Vec<f64> = (0..n)
        .map(|i| -2.0 + 4.0 * i as f64 / (n - 1) as f64)
        .collect();
    let ys: Vec<f64> = xs
        .iter()
        .flat_map(|&x| [(2.0 * x).sin(), 0.5 * x * x - 0.6])
        .collect();
    let x = Tensor::<B>::from_f64s(&CPU, (n, 1), &xs).unwrap();
    let y = Tensor::<B>::from_f64s(&CPU, (n, 2), &ys).unwrap();

    let mut store = ParamStore::new();
    let layers = [
        init_linear(&mut store, "net.0", 1, 64, 1),
        init_linear(&mut store, "net.2", 64, 64, 2),
        init_linear(&mut store, "net.4", 64, 2, 3),
    ];

    let mse = |store: &ParamStore<B>, tape: &Tape<B>| {
        let mut h = tape.constant(x.clone());
        for (i, &(w, b)) in layers.iter().enumerate() {
            h = h
                .linear(
                    &tape.param(store, w).unwrap(),
                    &tape.param(store, b).unwrap(),
                )
                .unwrap();
            if i + 1 < layers.len() {
                h = h.tanh()?;
            }
        }
        h.sub(&tape.constant(y.clone()))
            .unwrap()
            .square()?
            .mean_all()
    };

    // Baseline: the mean squared error of predicting each target's mean.
    let mean = y
        .sum(Axis::Rows)?
        .to_f64s()?
        .iter()
        .map(|s| s / n as f64)
        .collect::<Vec<_>>();
    let baseline = ys
        .chunks(2)
        .map(|r| (r[0] - mean[0]).powi(2) + (r[1] - mean[1]).powi(2))
        .sum::<f64>()
        / (2 * n) as f64;

    let lr = Tensor::<B>::scalar(&CPU, 0.1)?;
    let mut loss = f64::INFINITY;
    for _ in 0..3000 {
        let tape = Tape::new(&CPU);
        let l = mse(&store, &tape)?;
        loss = l.scalar_value().unwrap() as f64;
        let grads = tape.backward(&l).unwrap();
        let ids: Vec<ParamId> = store.ids().collect();
        for id in ids {
            let g = grads.param(id).unwrap();
            let p = store.get(id).unwrap().sub(&g.mul(&lr).unwrap()).unwrap();
            store.set(id, p).unwrap();
        }
    }
    eprintln!("final MSE {loss:.3e}, mean-predictor MSE {baseline:.3e}");
    assert!(loss.is_finite());
    assert!(
        loss < 0.01 * baseline,
        "final MSE {loss} vs mean-predictor MSE {baseline}"
    );
    Ok(())
}
