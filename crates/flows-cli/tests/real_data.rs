//! Training briefly on the built-in real data sets lowers the validation NLL: the shipped
//! wine-quality table and a slice of Fashion-MNIST (Debian's `dataset-fashion-mnist`, which
//! `.ci/run` installs).

mod common;

use common::flows;
use std::ffi::OsString;
use std::path::Path;

fn train(dataset: &str, out: &Path, extra: &[&str]) -> String {
    let mut args: Vec<OsString> = ["train", "--dataset", dataset, "--quiet", "--out"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(out.as_os_str().to_owned());
    args.extend(extra.iter().map(OsString::from));
    let run = flows(args);
    run.ok().to_string()
}

/// The validation NLLs of a run's metrics log, in order.
fn validation_nlls(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_nll"].as_f64())
        .collect()
}

fn assert_falls(v: &[f64], by: f64, what: &str) {
    let best = v.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        v.len() >= 2 && best < v[0] - by,
        "{what}: validation NLL did not fall by {by}: {v:?}"
    );
}

#[test]
fn training_on_wine_quality_lowers_the_validation_nll() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wine");
    let stdout = train(
        "wine-quality",
        &out,
        &[
            "--iters",
            "300",
            "--batch",
            "128",
            "--lr",
            "1e-3",
            "--validate-every",
            "25",
        ],
    );
    assert!(
        stdout.contains("11 features; 1279 training, 160 validation, 160 test rows"),
        "{stdout}"
    );
    assert_falls(&validation_nlls(&out), 2.0, "wine-quality");
    assert!(
        out.join("pairs.png").is_file(),
        "pairwise marginals missing"
    );
    let header = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    assert!(
        header.starts_with("fixed acidity,volatile acidity,"),
        "samples.csv header"
    );
}

#[test]
fn training_on_a_slice_of_fashion_mnist_lowers_the_validation_nll() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fashion");
    let stdout = train(
        "fashion-mnist",
        &out,
        &[
            "--limit",
            "1000",
            "--iters",
            "60",
            "--batch",
            "32",
            "--hidden",
            "64",
            "--lr",
            "1e-3",
            "--validate-every",
            "20",
        ],
    );
    assert!(
        stdout.contains("28x28 images; 889 training, 111 validation, 1000 test"),
        "{stdout}"
    );
    assert!(stdout.contains("bits per dimension"), "{stdout}");
    assert_falls(&validation_nlls(&out), 50.0, "fashion-mnist");
    for png in ["samples.png", "data.png", "loss.png"] {
        assert!(out.join(png).is_file(), "{png} missing");
    }

    // eval reads IDX files (here 100 test images, gzip-compressed) and reports bits/dim.
    let test = flow_datasets::images::fashion_mnist(flow_datasets::Part::Test).unwrap();
    let bytes = flow_datasets::images::idx_images_bytes(&test.take(100));
    let idx = dir.path().join("t100-images-idx3-ubyte.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    std::fs::write(&idx, gz.finish().unwrap()).unwrap();
    let eval = flows([
        OsString::from("eval"),
        OsString::from("--checkpoint"),
        out.join("best.safetensors").into_os_string(),
        OsString::from("--data"),
        idx.clone().into_os_string(),
    ]);
    let line = eval.ok();
    assert!(
        line.contains("100 rows") && line.contains("bits per dimension"),
        "{line}"
    );
    let bpd: f64 = line
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no bits per dimension in `{line}`"));
    assert!(
        (1.0..8.0).contains(&bpd),
        "bits per dimension {bpd} out of range"
    );
}

#[test]
fn datasets_lists_the_real_data_sets() {
    let run = flows(["datasets"]);
    let out = run.ok();
    for (name, rows, dim) in [
        ("wine-quality", "1599", "11"),
        ("fashion-mnist", "60000", "784"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{out}"));
        assert!(line.contains(rows) && line.contains(dim), "{line}");
    }
}
