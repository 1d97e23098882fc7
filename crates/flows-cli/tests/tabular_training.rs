//! `flows train --data FILE` on CSV and .npy tables: splits, standardisation and
//! dequantisation stored with the model, validation and early stopping, the best model, the
//! metrics log, and `eval` / `log-prob` reading the files back; bad input refused by name.

mod common;

use common::{flows, read_numeric_csv, write};
use flow_datasets::tabular::{write_npy, Table};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// 1,000 rows of three correlated features, the last integer-valued, as CSV with a header
/// and a text column that training leaves out.
fn write_table(dir: &Path) -> PathBuf {
    let mut rng = flow_core::rng(11);
    let mut text = String::from("a,label,b,count\n");
    for i in 0..1000 {
        let a: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
        let e: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
        let b = 3.0 + 2.0 * a + 0.5 * e;
        let count = (10.0 + 4.0 * a).round().max(0.0);
        text.push_str(&format!("{a},row{i},{b},{count}\n"));
    }
    write(&dir.join("table.csv"), &text)
}

fn args(list: &[&str], paths: &[(&str, &Path)]) -> Vec<OsString> {
    let mut out: Vec<OsString> = list.iter().map(OsString::from).collect();
    for (flag, path) in paths {
        out.push(OsString::from(flag));
        out.push(path.as_os_str().to_owned());
    }
    out
}

/// (step, val_nll) of every validation line of a run's metrics log.
fn validations(out: &Path) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Some((
                v.get("step")?.as_u64()? as usize,
                v.get("val_nll")?.as_f64()?,
            ))
        })
        .collect()
}

#[test]
fn training_on_a_csv_table_lowers_the_validation_nll_and_stores_its_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_table(dir.path());
    let out = dir.path().join("run");
    let run = flows(args(
        &[
            "train",
            "--columns",
            "a,b,count",
            "--iters",
            "300",
            "--batch",
            "128",
            "--hidden",
            "32,32",
            "--lr",
            "2e-3",
            "--validate-every",
            "50",
            "--quiet",
        ],
        &[("--data", &data), ("--out", &out)],
    ));
    let stdout = run.ok();
    assert!(
        stdout.contains("3 features; 800 training, 100 validation, 100 test rows"),
        "{}",
        run.describe()
    );
    assert!(
        stdout.contains("integer columns [3] dequantised"),
        "{stdout}"
    );
    let v = validations(&out);
    assert_eq!(
        v.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [50, 100, 150, 200, 250, 300]
    );
    let best = v.iter().map(|(_, n)| *n).fold(f64::INFINITY, f64::min);
    assert!(
        best < v[0].1 - 0.3,
        "validation NLL did not fall: {v:?}\n{}",
        run.describe()
    );
    for file in ["checkpoint.safetensors", "best.safetensors", "loss.png"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // Samples come back in the data's units and columns.
    let (header, rows) = read_numeric_csv(&out.join("samples.csv"));
    assert_eq!(header, "a,b,count");
    let mean_b = rows.iter().map(|r| r[1]).sum::<f64>() / rows.len() as f64;
    assert!((mean_b - 3.0).abs() < 0.5, "sample mean of b: {mean_b}");

    // `flows sample` writes the same units and columns.
    let drawn = dir.path().join("drawn.csv");
    flows(args(
        &["sample", "-n", "500"],
        &[
            ("--checkpoint", &out.join("best.safetensors")),
            ("--out", &drawn),
        ],
    ))
    .ok();
    let (header, rows) = read_numeric_csv(&drawn);
    assert_eq!(header, "a,b,count");
    let mean_b = rows.iter().map(|r| r[1]).sum::<f64>() / rows.len() as f64;
    assert!(
        (mean_b - 3.0).abs() < 0.5,
        "`flows sample` mean of b: {mean_b}"
    );

    // eval reads the same file, picks the trained columns by name, and reports the NLL in
    // the data's units (standardisation's log-determinant included).
    let eval = flows(args(
        &["eval"],
        &[
            ("--checkpoint", &out.join("best.safetensors")),
            ("--data", &data),
        ],
    ));
    let line = eval.ok().to_string();
    let nll: f64 = line
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no NLL in `{line}`"));
    assert!(
        (nll - best).abs() < 0.3,
        "eval NLL {nll} far from the best validation NLL {best}"
    );
    // The same rows as .npy (no header: the trained columns by position).
    let table = flow_datasets::tabular::read_csv(
        &data,
        &flow_datasets::tabular::CsvOptions {
            columns: Some(vec!["a".into(), "b".into(), "count".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    let npy = dir.path().join("table.npy");
    write_npy(&npy, &Table::from_values(3, table.data().to_vec()).unwrap()).unwrap();
    let lp = flows(args(
        &["log-prob"],
        &[
            ("--checkpoint", &out.join("best.safetensors")),
            ("--data", &npy),
        ],
    ));
    let values: Vec<f64> = lp.ok().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(values.len(), 1000);
    let mean = -values.iter().sum::<f64>() / 1000.0;
    assert!(
        (mean - nll).abs() < 1e-4,
        "log-prob mean {mean} vs eval {nll}"
    );

    // Training reads .npy too.
    let out2 = dir.path().join("npy-run");
    flows(args(
        &["train", "--iters", "20", "--batch", "64", "--quiet"],
        &[("--data", &npy), ("--out", &out2)],
    ))
    .ok();
    assert!(out2.join("best.safetensors").is_file());
}

#[test]
fn early_stopping_ends_a_run_that_stops_improving() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_table(dir.path());
    let out = dir.path().join("run");
    // A learning rate of 1e-12 leaves f32 parameters unchanged: no validation improves on
    // the first, and the second and third without a new best stop the run.
    let run = flows(args(
        &[
            "train",
            "--columns",
            "a,b",
            "--iters",
            "500",
            "--batch",
            "32",
            "--lr",
            "1e-12",
            "--validate-every",
            "10",
            "--patience",
            "2",
            "--quiet",
        ],
        &[("--data", &data), ("--out", &out)],
    ));
    assert!(
        run.ok().contains("stopped early at iteration 30"),
        "{}",
        run.describe()
    );
    assert_eq!(
        validations(&out)
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        [10, 20, 30]
    );
}

#[test]
fn bad_data_is_refused_with_messages_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let train = |data: &Path, extra: &[&str]| {
        let mut a = vec![
            OsStr::new("train"),
            OsStr::new("--iters"),
            OsStr::new("5"),
            OsStr::new("--quiet"),
            OsStr::new("--out"),
            out.as_os_str(),
            OsStr::new("--data"),
            data.as_os_str(),
        ];
        a.extend(extra.iter().map(OsStr::new));
        flows(a)
    };
    let missing = dir.path().join("absent.csv");
    train(&missing, &[]).fails_with(&["absent.csv"]);
    let empty = write(&dir.path().join("empty.csv"), "");
    train(&empty, &[]).fails_with(&["empty.csv"]);
    let text = write(&dir.path().join("text.csv"), "x,y\n1,2\n3,oops\n");
    train(&text, &[]).fails_with(&["text.csv", "row 3", "column 2", "oops"]);
    let nan = write(&dir.path().join("nan.csv"), "x,y\n1,2\nNaN,4\n");
    train(&nan, &[]).fails_with(&["nan.csv", "row 3", "column 1"]);
    let ragged = write(&dir.path().join("ragged.csv"), "1,2\n3,4,5\n");
    train(&ragged, &[]).fails_with(&["ragged.csv", "row 2"]);
    let small = write(&dir.path().join("small.csv"), "1,2\n3,4\n5,6\n");
    train(&small, &[]).fails_with(&["small.csv", "validation"]);
    let data = write_table(dir.path());
    train(&data, &["--columns", "a,nope"]).fails_with(&["nope"]);
    train(&data, &["--columns", "a,b", "--split", "0.5,0.5"]).fails_with(&["--split"]);
    // Flags of finite data sets are refused for a density (fresh samples every step).
    let run = flows([
        OsStr::new("train"),
        OsStr::new("--dataset"),
        OsStr::new("8gaussians"),
        OsStr::new("--limit"),
        OsStr::new("100"),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    run.fails_with(&["--limit", "8gaussians"]);
    assert!(
        !out.join("checkpoint.safetensors").exists(),
        "no run should have started"
    );
}

#[test]
fn eval_refuses_mismatched_data_and_broken_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_table(dir.path());
    let out = dir.path().join("run");
    flows(args(
        &[
            "train",
            "--columns",
            "a,b,count",
            "--iters",
            "10",
            "--quiet",
        ],
        &[("--data", &data), ("--out", &out)],
    ))
    .ok();
    let ckpt = out.join("checkpoint.safetensors");
    let two = write(&dir.path().join("two.csv"), "1,2\n3,4\n");
    flows(args(
        &["eval"],
        &[("--checkpoint", &ckpt), ("--data", &two)],
    ))
    .fails_with(&["two.csv", "2 columns", "3 features"]);
    // Truncated and corrupted checkpoints name the file; the data are never the problem.
    let bytes = std::fs::read(&ckpt).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    flows(args(
        &["eval"],
        &[("--checkpoint", &cut), ("--data", &data)],
    ))
    .fails_with(&["cut.safetensors"]);
    let mut flipped = bytes.clone();
    flipped[12] ^= 0x55;
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, &flipped).unwrap();
    flows(args(
        &["eval"],
        &[("--checkpoint", &bad), ("--data", &data)],
    ))
    .fails_with(&["bad.safetensors"]);

    // Resuming after the data file changed is refused; the checkpoint stays as it was.
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("0.5,extra,4.0,12\n");
    std::fs::write(&data, text).unwrap();
    flows([OsStr::new("train"), OsStr::new("--resume"), out.as_os_str()]).fails_with(&["changed"]);
    assert_eq!(std::fs::read(&ckpt).unwrap(), bytes);
}
