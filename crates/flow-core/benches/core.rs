//! `cargo bench -p flow-core --bench core`: the 512x64 @ 64x64 matrix product (ours through
//! `gemm`, and ndarray's default `dot` as the peer measured in the same run) and one
//! forward + backward pass of an MLP 1-64-64-2 at batch 512 with ReLU (normflows' conditioner
//! shape). Throughput is reported in FLOP as "elements": criterion's Kelem/s are kFLOP/s.
//! `spline_*` times the fused rational-quadratic spline op (8 bins) on a 512 x 2 batch, the
//! size of one NSF layer on two moons: forward alone, and forward with backward through a
//! tape; throughput in spline entries.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flow_core::{rng, Cpu, Direction, ParamId, ParamStore, RationalQuadratic, Tape, Tensor};
use std::hint::black_box;

type B = Cpu<f32>;
const CPU: B = Cpu::new();

fn matmul(c: &mut Criterion) {
    let mut r = rng(0);
    let a = Tensor::<B>::randn(&CPU, (512, 64), &mut r).unwrap();
    let b = Tensor::<B>::randn(&CPU, (64, 64), &mut r).unwrap();
    let flops = 2 * 512 * 64 * 64;
    let mut group = c.benchmark_group("matmul_512x64_64x64_f32");
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("flow-core (gemm)", |bench| {
        bench.iter(|| black_box(a.matmul(&b).unwrap()))
    });
    let (na, nb) = (a.as_array().clone(), b.as_array().clone());
    group.bench_function("ndarray dot", |bench| bench.iter(|| black_box(na.dot(&nb))));
    group.finish();
}

/// Matrix-product FLOP of one forward + backward pass (input gradients of the first layer
/// are not needed: its input is data).
fn mlp_flops(batch: usize, sizes: &[usize]) -> u64 {
    let mut total = 0;
    for (i, w) in sizes.windows(2).enumerate() {
        let layer = 2 * batch * w[0] * w[1];
        total += layer * if i == 0 { 2 } else { 3 };
    }
    total as u64
}

fn mlp(c: &mut Criterion) {
    let sizes = [1, 64, 64, 2];
    let batch = 512;
    let mut r = rng(1);
    let mut store = ParamStore::<B>::new();
    let layers: Vec<(ParamId, ParamId)> = sizes
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let bound = 1.0 / (w[0] as f64).sqrt();
            let wt = Tensor::rand_uniform(&CPU, (w[1], w[0]), -bound, bound, &mut r).unwrap();
            let bt = Tensor::rand_uniform(&CPU, (1, w[1]), -bound, bound, &mut r).unwrap();
            (
                store.add(format!("{i}.w"), wt).unwrap(),
                store.add(format!("{i}.b"), bt).unwrap(),
            )
        })
        .collect();
    let x = Tensor::<B>::randn(&CPU, (batch, 1), &mut r).unwrap();
    let y = Tensor::<B>::randn(&CPU, (batch, 2), &mut r).unwrap();
    let mut group = c.benchmark_group("mlp_1-64-64-2_batch512_fwd_bwd_f32");
    group.throughput(Throughput::Elements(mlp_flops(batch, &sizes)));
    group.bench_function("flow-core", |bench| {
        bench.iter(|| {
            let tape = Tape::new(&CPU);
            let mut h = tape.constant(x.clone());
            for (i, &(w, b)) in layers.iter().enumerate() {
                h = h
                    .linear(
                        &tape.param(&store, w).unwrap(),
                        &tape.param(&store, b).unwrap(),
                    )
                    .unwrap();
                if i + 1 < layers.len() {
                    h = h.relu().unwrap();
                }
            }
            let loss = h
                .sub(&tape.constant(y.clone()))
                .unwrap()
                .square()
                .unwrap()
                .mean_all()
                .unwrap();
            black_box(tape.backward(&loss).unwrap())
        })
    });
    group.finish();
}

fn spline(c: &mut Criterion) {
    let spec = RationalQuadratic {
        bins: 8,
        tail_bound: 5.0,
        min_bin_width: 1e-3,
        min_bin_height: 1e-3,
        min_derivative: 1e-3,
    };
    let (rows, cols) = (512, 2);
    let mut r = rng(2);
    // Inputs across the bound (about 1 in 11 outside), parameters of unit scale.
    let x = Tensor::<B>::rand_uniform(&CPU, (rows, cols), -5.5, 5.5, &mut r).unwrap();
    let params =
        Tensor::<B>::randn(&CPU, (rows, cols * spec.params_per_feature()), &mut r).unwrap();
    for direction in [Direction::Forward, Direction::Inverse] {
        let mut group = c.benchmark_group(format!("spline_512x2_8bins_{direction:?}_f32"));
        group.throughput(Throughput::Elements((rows * cols) as u64));
        group.bench_function("forward", |bench| {
            bench.iter(|| black_box(x.rational_quadratic(&params, &spec, direction).unwrap()))
        });
        group.bench_function("forward + backward", |bench| {
            bench.iter(|| {
                let tape = Tape::new(&CPU);
                let (xv, pv) = (tape.input(x.clone()), tape.input(params.clone()));
                let (y, log_det) = xv.rational_quadratic(&pv, &spec, direction).unwrap();
                let loss = y
                    .sum_all()
                    .unwrap()
                    .add(&log_det.sum_all().unwrap())
                    .unwrap();
                black_box(tape.backward(&loss).unwrap())
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = matmul, mlp, spline
}
criterion_main!(benches);
