//! The GPU figures of issue 13 that `flows bench` does not give, on `CudaBackend<f32>` beside
//! `Cpu<f32>` in the same run (scripts/cuda-check runs it on a GPU machine):
//!
//! 1. the fused affine coupling alone (`Tensor::affine_coupling`, one launch) at batch 2^20
//!    on two-moons-shaped rows (d = 2, d2 = 1), against the bytes it must move at the
//!    device's bandwidth;
//! 2. `log_prob` of the seed model (normflows' RealNVP: 2 coupling blocks of MLP [1, 64, 64,
//!    2], swap permutations, DiagGaussian base) at batch 2^20.
//!
//! Each figure is the median over `--repeats` runs (default 5) of `--iters` calls, each run
//! ended by `synchronize`. Prints one line per figure and a JSON object per figure.
//!
//! ```sh
//! cargo run --release -p flow-cuda --example gpu_figures -- --bandwidth-tb-s 4.8
//! ```

use flow_core::{Backend, CouplingScale, Cpu, Direction, Tensor};
use flow_cuda::CudaBackend;
use flow_datasets::ToyDensity;
use flow_layers::{NormalizingFlow, RealNvpConfig};
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

struct Args {
    iters: usize,
    repeats: usize,
    rows: usize,
    /// The device's memory bandwidth in TB/s (an H200: about 4.8, HBM3e; 4.3 measured).
    bandwidth_tb_s: f64,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        iters: 20,
        repeats: 5,
        rows: 1 << 20,
        bandwidth_tb_s: 4.3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--iters" => args.iters = value.parse()?,
            "--repeats" => args.repeats = value.parse()?,
            "--rows" => args.rows = value.parse()?,
            "--bandwidth-tb-s" => args.bandwidth_tb_s = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

/// Median seconds per call of `f` over `repeats` runs of `iters` calls, each run ended by
/// the backend's `synchronize` (after two calls to warm up: compilation, allocations).
fn time<B: Backend>(
    backend: &B,
    args: &Args,
    mut f: impl FnMut() -> Result<(), Error>,
) -> Result<f64, Error> {
    for _ in 0..2 {
        f()?;
    }
    backend.synchronize()?;
    let mut per_call = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats.max(1) {
        let start = Instant::now();
        for _ in 0..args.iters.max(1) {
            f()?;
        }
        backend.synchronize()?;
        per_call.push(start.elapsed().as_secs_f64() / args.iters.max(1) as f64);
    }
    per_call.sort_by(f64::total_cmp);
    Ok(per_call[per_call.len() / 2])
}

fn report(what: &str, device: &str, rows: usize, seconds: f64, bytes: Option<f64>, args: &Args) {
    let mut line = format!("{what} on {device}, {rows} rows: {:.3} ms", seconds * 1e3);
    let mut bound = None;
    if let Some(bytes) = bytes {
        let limit = bytes / (args.bandwidth_tb_s * 1e12);
        bound = Some(seconds / limit);
        line += &format!(
            " ({:.0} GB/s moved; {:.2}x the time at {} TB/s)",
            bytes / seconds / 1e9,
            seconds / limit,
            args.bandwidth_tb_s
        );
    }
    println!("{line}");
    println!(
        "{{\"what\": {what:?}, \"device\": {device:?}, \"rows\": {rows}, \"median_s\": {seconds}, \
         \"bytes\": {}, \"times_bandwidth_limit\": {}}}",
        bytes.map_or("null".into(), |b| format!("{b}")),
        bound.map_or("null".into(), |b| format!("{b}"))
    );
}

/// The fused coupling alone: rows `v` (`n x 2`), interleaved parameters (`n x 2`).
fn coupling<B: Backend<Elem = f32>>(backend: &B, device: &str, args: &Args) -> Result<(), Error> {
    let n = args.rows;
    let mut rng = flow_core::rng(1);
    let v = Tensor::randn(backend, (n, 2), &mut rng)?;
    let params = Tensor::randn(backend, (n, 2), &mut rng)?;
    let seconds = time(backend, args, || {
        v.affine_coupling(&params, CouplingScale::Exp, Direction::Forward)?;
        Ok(())
    })?;
    // Read v and params, write the output and the log-dets: 4-byte values.
    let bytes = (n * (2 + 2 + 2 + 1) * 4) as f64;
    report(
        "fused affine coupling",
        device,
        n,
        seconds,
        Some(bytes),
        args,
    );
    Ok(())
}

/// `log_prob` of the seed model (fresh parameters: the speed does not depend on them).
fn log_prob<B: Backend<Elem = f32>>(backend: &B, device: &str, args: &Args) -> Result<(), Error> {
    let n = args.rows;
    let model = NormalizingFlow::new(backend, RealNvpConfig::default().spec()?, 0)?;
    let points = flow_datasets::TwoMoons.sample(n, &mut flow_core::rng(2));
    let x = Tensor::from_f64s(backend, (n, 2), &points)?;
    let seconds = time(backend, args, || {
        model.log_prob(&x, None)?;
        Ok(())
    })?;
    report("seed model log_prob", device, n, seconds, None, args);
    Ok(())
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let gpu = CudaBackend::<f32>::new(0)?;
    println!("device: {}", gpu.device_name()?);
    let cpu = Cpu::<f32>::new();
    coupling(&gpu, "cuda", &args)?;
    coupling(&cpu, "cpu", &args)?;
    log_prob(&gpu, "cuda", &args)?;
    log_prob(&cpu, "cpu", &args)?;
    Ok(())
}
