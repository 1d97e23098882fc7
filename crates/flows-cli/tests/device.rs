//! `--device`: `cpu` (the default) or `cuda`. Without a GPU, `--device cuda` is a clean
//! failure that prints the CUDA backend's error; with one, a short run trains on it.

mod common;

use common::flows;
use std::ffi::OsStr;
use std::path::Path;

fn gpu_present() -> bool {
    flow_cuda::CudaBackend::<f32>::new(0).is_ok()
}

fn tiny_run(out: &Path, device: &str) -> Vec<std::ffi::OsString> {
    [
        "train",
        "--iters",
        "20",
        "--batch",
        "64",
        "--hidden",
        "8",
        "--test-samples",
        "100",
        "--validation-samples",
        "100",
        "--snapshots",
        "0",
        "--quiet",
        "--device",
        device,
        "--out",
    ]
    .iter()
    .map(|s| OsStr::new(s).to_owned())
    .chain([out.as_os_str().to_owned()])
    .collect()
}

#[test]
fn device_cuda_without_a_gpu_prints_the_backend_error() {
    if gpu_present() {
        println!("skipped: a GPU is present (the next test trains on it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let missing = dir.path().join("missing.safetensors");
    let data = dir.path().join("missing.csv");
    let (m, d, o) = (
        missing.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let runs = [
        flows(tiny_run(&out, "cuda")),
        flows(["eval", "--device", "cuda", "--checkpoint", m, "--data", d]),
        flows([
            "log-prob",
            "--device",
            "cuda",
            "--checkpoint",
            m,
            "--data",
            d,
        ]),
        flows(["sample", "--device", "cuda", "--checkpoint", m, "--out", o]),
        flows([
            "bench",
            "--device",
            "cuda",
            "--iters",
            "2",
            "--repeats",
            "1",
        ]),
    ];
    for run in &runs {
        // The backend's own error: what is missing, from the CUDA backend.
        run.fails_with(&["cuda:0-f32: "]);
        assert!(
            run.stderr.contains("cannot load") || run.stderr.contains("no CUDA device"),
            "the error should say what is missing: {}",
            run.describe()
        );
    }
    assert!(
        !out.exists(),
        "nothing is written when the device cannot start"
    );
}

#[test]
fn device_cpu_is_the_default_and_a_run_may_resume_on_another_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    flows(tiny_run(&out, "cpu")).ok();
    let ckpt = out.join("checkpoint.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let csv = out.join("samples.csv");
    let csv = csv.to_str().unwrap();
    let explicit = flows([
        "log-prob",
        "--device",
        "cpu",
        "--checkpoint",
        ckpt,
        "--data",
        csv,
    ]);
    let default = flows(["log-prob", "--checkpoint", ckpt, "--data", csv]);
    assert_eq!(explicit.ok(), default.ok());
    // --device is not part of the run's stored configuration.
    let resumed = flows([
        OsStr::new("train"),
        OsStr::new("--resume"),
        out.as_os_str(),
        OsStr::new("--device"),
        OsStr::new("cpu"),
        OsStr::new("--quiet"),
    ]);
    resumed.ok();
    flows(["bench", "--device", "gpu", "--iters", "2"])
        .fails_with(&["gpu", "possible values: cpu, cuda"]);
}

#[test]
fn device_cuda_trains_and_evaluates_on_a_gpu() {
    if !gpu_present() {
        println!("skipped: no GPU present");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    flows(tiny_run(&out, "cuda")).ok();
    let ckpt = out.join("checkpoint.safetensors");
    let csv = out.join("samples.csv");
    let (ckpt, csv) = (ckpt.to_str().unwrap(), csv.to_str().unwrap());
    let on_gpu = flows([
        "eval",
        "--device",
        "cuda",
        "--checkpoint",
        ckpt,
        "--data",
        csv,
    ]);
    let on_cpu = flows([
        "eval",
        "--device",
        "cpu",
        "--checkpoint",
        ckpt,
        "--data",
        csv,
    ]);
    assert!(
        on_gpu.ok().starts_with("test NLL: "),
        "{}",
        on_gpu.describe()
    );
    assert!(
        on_cpu.ok().starts_with("test NLL: "),
        "{}",
        on_cpu.describe()
    );
}
