//! End-to-end tests of the `flows` binary: `train`, `log-prob`, `sample`, `eval`,
//! `import-normflows`, `datasets` and `bench` run as a user would run them, with their files, output and error messages checked.

use flow_train::checkpoint::TensorFile;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

mod common;

use common::{checkpoint_bits, flows, read_numeric_csv, write, Run};

/// A short training run (60 iterations) of the default model on two moons into `out`.
fn train_into(out: &Path) -> Run {
    let run = flows([
        OsStr::new("train"),
        OsStr::new("--iters"),
        OsStr::new("60"),
        OsStr::new("--batch"),
        OsStr::new("128"),
        OsStr::new("--test-samples"),
        OsStr::new("2000"),
        OsStr::new("--snapshots"),
        OsStr::new("0,30"),
        OsStr::new("--quiet"),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    run.ok();
    run
}

/// Trains a model into a subfolder of `dir` and returns its checkpoint.
fn trained_checkpoint(dir: &Path) -> PathBuf {
    let out = dir.join("run");
    train_into(&out);
    let ckpt = out.join("checkpoint.safetensors");
    assert!(ckpt.is_file(), "{} was not written", ckpt.display());
    ckpt
}

fn log_prob(checkpoint: &Path, data: &Path) -> Run {
    flows([
        OsStr::new("log-prob"),
        OsStr::new("--checkpoint"),
        checkpoint.as_os_str(),
        OsStr::new("--data"),
        data.as_os_str(),
    ])
}

/// `flows sample --checkpoint CHECKPOINT -n N --out OUT`.
fn sample_to(checkpoint: &Path, n: &str, out: &Path) -> Run {
    flows([
        OsStr::new("sample"),
        OsStr::new("--checkpoint"),
        checkpoint.as_os_str(),
        OsStr::new("-n"),
        OsStr::new(n),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
}

/// Parses `log-prob` output: one finite number per line, nothing else.
fn parse_values(run: &Run) -> Vec<f64> {
    run.ok()
        .lines()
        .map(|line| {
            let v: f64 = line
                .parse()
                .unwrap_or_else(|_| panic!("`{line}` is not a number: {}", run.describe()));
            assert!(v.is_finite(), "non-finite log-density: {}", run.describe());
            v
        })
        .collect()
}

fn shared_dir() -> PathBuf {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        shared.is_dir(),
        "../shared is missing (looked for {}): the normflows fixtures live there",
        shared.display()
    );
    shared
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

#[test]
fn train_writes_checkpoint_csvs_and_plots_and_reports_test_nll() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = train_into(&out);

    // The test NLL line: a finite number, above zero and not absurd for two moons (whose
    // entropy, the lowest reachable NLL, is 1.57 nats) after 60 iterations.
    let nll_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("test NLL: "))
        .unwrap_or_else(|| panic!("no `test NLL: ` line: {}", run.describe()));
    let nll: f64 = nll_line["test NLL: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after `test NLL: ` in `{nll_line}`"));
    assert!(
        nll.is_finite() && (1.0..8.0).contains(&nll),
        "test NLL {nll} is not plausible: {}",
        run.describe()
    );
    assert!(
        nll_line.contains("2000 held-out samples"),
        "`{nll_line}` should count 2000 held-out samples"
    );

    // loss.csv: header, then iterations 0..60 in order with finite losses that went down.
    let (header, rows) = read_numeric_csv(&out.join("loss.csv"));
    assert_eq!(header, "iteration,loss");
    assert_eq!(rows.len(), 60, "loss.csv should have 60 rows");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 2, "loss.csv row {i}: {row:?}");
        assert_eq!(row[0], i as f64, "loss.csv row {i}: {row:?}");
        assert!(row[1].is_finite(), "loss.csv row {i}: {row:?}");
    }
    let mean = |r: &[Vec<f64>]| r.iter().map(|row| row[1]).sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&rows[..10]), mean(&rows[50..]));
    assert!(
        last < first,
        "training did not lower the loss: first ten average {first}, last ten {last}"
    );

    // samples.csv: 2000 model samples of two finite coordinates.
    let (header, rows) = read_numeric_csv(&out.join("samples.csv"));
    assert_eq!(header, "x0,x1");
    assert_eq!(rows.len(), 2000, "samples.csv should have 2000 rows");
    assert!(
        rows.iter()
            .all(|r| r.len() == 2 && r.iter().all(|v| v.is_finite())),
        "samples.csv holds a row that is not two finite numbers"
    );

    for png in ["loss.png", "density.png", "samples.png"] {
        let bytes =
            std::fs::read(out.join(png)).unwrap_or_else(|e| panic!("{png} was not written: {e}"));
        assert!(
            bytes.starts_with(PNG_MAGIC),
            "{png} does not start with the PNG signature"
        );
        assert!(bytes.len() > 1000, "{png} is only {} bytes", bytes.len());
    }

    // The checkpoint is a flows checkpoint that records the run, including the same test NLL.
    let ckpt = TensorFile::read(&out.join("checkpoint.safetensors")).unwrap();
    let meta = |k: &str| {
        ckpt.metadata
            .get(k)
            .unwrap_or_else(|| panic!("checkpoint metadata has no `{k}`"))
            .clone()
    };
    assert_eq!(meta("format"), "flows-checkpoint");
    assert_eq!(meta("dataset"), "two-moons");
    assert_eq!(meta("iterations"), "60");
    let stored_nll: f64 = meta("test_nll").parse().unwrap();
    assert!(
        (stored_nll - nll).abs() < 1e-4,
        "checkpoint test_nll {stored_nll} differs from the printed {nll}"
    );
    assert!(ckpt.tensors.contains_key("q0.loc"));
}

#[test]
fn log_prob_prints_one_value_per_row_with_or_without_header() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_checkpoint(dir.path());

    // On a moon, far outside the data, and near the middle of the upper moon.
    let rows = "2.0,0.0\n100,100\n0.0,1.0\n";
    let with_header = write(&dir.path().join("points.csv"), &format!("x0,x1\n{rows}"));
    let without_header = write(&dir.path().join("bare.csv"), rows);

    let run = log_prob(&ckpt, &with_header);
    let values = parse_values(&run);
    assert_eq!(values.len(), 3, "one value per row: {}", run.describe());
    let bare = log_prob(&ckpt, &without_header);
    assert_eq!(
        bare.ok(),
        run.ok(),
        "a header line must not change the values"
    );

    // A point on a moon is far more likely than one a hundred units away.
    let (on_moon, far, other) = (values[0], values[1], values[2]);
    assert!(
        on_moon > far + 100.0,
        "log q([2, 0]) = {on_moon} should be far above log q([100, 100]) = {far}"
    );
    assert!(
        on_moon < 5.0 && other < 5.0,
        "implausibly high densities: {values:?}"
    );
    assert!(
        other > far + 100.0,
        "log q([0, 1]) = {other} vs log q([100, 100]) = {far}"
    );
}

#[test]
fn log_prob_reads_the_samples_train_wrote() {
    // samples.csv (with its header) goes straight back into log-prob: 2000 finite values,
    // whose average (minus the model's entropy estimate) is in a sane range.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_checkpoint(dir.path());
    let samples = ckpt.with_file_name("samples.csv");
    let values = parse_values(&log_prob(&ckpt, &samples));
    assert_eq!(values.len(), 2000);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!(
        (-8.0..0.0).contains(&mean),
        "average log q over the model's own samples is {mean}"
    );
}

#[test]
fn log_prob_rejects_bad_data_with_messages_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = trained_checkpoint(d);

    // A data file that does not exist: the message names it.
    let missing = d.join("no-such-points.csv");
    log_prob(&ckpt, &missing).fails_with(&[&missing.display().to_string()]);

    // A non-numeric cell: file, row (counting the header line) and column.
    let csv = write(&d.join("word.csv"), "x0,x1\n1,2\n3,abc\n");
    log_prob(&ckpt, &csv).fails_with(&["word.csv", "row 3, column 2", "`abc`", "not a number"]);

    // Rows of different lengths.
    let csv = write(&d.join("ragged.csv"), "1,2\n3,4,5\n");
    log_prob(&ckpt, &csv).fails_with(&["ragged.csv", "row 2 has 3 columns", "earlier rows have 2"]);

    // Three columns for a model over two features: both widths named.
    let csv = write(&d.join("wide.csv"), "a,b,c\n1,2,3\n4,5,6\n");
    log_prob(&ckpt, &csv).fails_with(&["wide.csv", "3 columns", "2 features"]);

    // NaN and infinity are refused, not passed to the model.
    let csv = write(&d.join("nan.csv"), "x0,x1\n1,2\nNaN,4\n");
    log_prob(&ckpt, &csv).fails_with(&["nan.csv", "row 3, column 1", "not finite"]);
    let csv = write(&d.join("inf.csv"), "1,inf\n");
    log_prob(&ckpt, &csv).fails_with(&["inf.csv", "row 1, column 2", "not finite"]);

    // A header and nothing else.
    let csv = write(&d.join("empty.csv"), "x0,x1\n");
    log_prob(&ckpt, &csv).fails_with(&["empty.csv", "no data rows"]);
}

#[test]
fn log_prob_rejects_bad_checkpoints_with_messages_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = trained_checkpoint(d);
    let data = write(&d.join("points.csv"), "2.0,0.0\n");

    // A text file in place of a checkpoint.
    let text = write(
        &d.join("notes.txt"),
        "this is a text file, not a safetensors checkpoint\n",
    );
    log_prob(&text, &data).fails_with(&["notes.txt", "safetensors"]);

    // The real checkpoint cut to half its bytes.
    let bytes = std::fs::read(&ckpt).unwrap();
    let truncated = d.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    log_prob(&truncated, &data).fails_with(&["truncated.safetensors", "safetensors"]);

    // A checkpoint that does not exist.
    let missing = d.join("missing.safetensors");
    log_prob(&missing, &data).fails_with(&["missing.safetensors"]);

    // A normflows state_dict is not a flows checkpoint: the message points to the importer.
    let state_dict = shared_dir().join("fixtures/normflows/normflows_realnvp_swap2.safetensors");
    log_prob(&state_dict, &data).fails_with(&[
        "normflows_realnvp_swap2.safetensors",
        "not a flows checkpoint",
        "import-normflows",
    ]);
}

#[test]
fn train_rejects_an_unknown_dataset_and_lists_the_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let run = flows([
        OsStr::new("train"),
        OsStr::new("--dataset"),
        OsStr::new("nope"),
        OsStr::new("--quiet"),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    run.fails_with(&["nope", "two-moons"]);
    assert!(
        !out.exists(),
        "a run that cannot start should not create its output folder"
    );
}

fn import(weights: &Path, out: &Path) -> Run {
    flows([
        OsStr::new("import-normflows"),
        weights.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
}

#[test]
fn import_normflows_converts_the_reference_model() {
    let fixtures = shared_dir().join("fixtures/normflows");
    let weights = fixtures.join("normflows_realnvp_swap2.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported.safetensors");

    let run = import(&weights, &out);
    let stdout = run.ok();
    assert!(
        stdout.contains("over 2 features") && stdout.contains("8840 parameters"),
        "unexpected import summary: {}",
        run.describe()
    );
    assert!(out.is_file(), "{} was not written", out.display());

    // log-prob on the imported checkpoint matches what normflows itself computed for the
    // first points of its reference set (float32 weights: 1e-4 relative).
    let reference =
        TensorFile::read(&fixtures.join("normflows_realnvp_swap2.reference.safetensors")).unwrap();
    let (x_shape, x) = &reference.tensors["x"];
    assert_eq!(x_shape[1], 2);
    let (_, want) = &reference.tensors["log_prob"];
    // Ten points on the moons and ten of the uniform ones at the end.
    let picked: Vec<usize> = (0..10).chain(x_shape[0] - 10..x_shape[0]).collect();
    let mut csv = String::from("x0,x1\n");
    for &i in &picked {
        csv.push_str(&format!("{:?},{:?}\n", x[2 * i], x[2 * i + 1]));
    }
    let data = write(&dir.path().join("points.csv"), &csv);
    let got = parse_values(&log_prob(&out, &data));
    assert_eq!(got.len(), picked.len());
    for (g, &i) in got.iter().zip(&picked) {
        let w = want[i];
        assert!(
            (g - w).abs() / w.abs().max(1.0) < 1e-4,
            "point {i} ({}, {}): flows gives {g}, normflows {w}",
            x[2 * i],
            x[2 * i + 1]
        );
    }
}

#[test]
fn import_normflows_rejects_files_that_are_not_state_dicts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out.safetensors");

    let text = write(&d.join("weights.csv"), "1,2\n3,4\n");
    import(&text, &out).fails_with(&["weights.csv", "safetensors"]);
    import(&d.join("absent.safetensors"), &out).fails_with(&["absent.safetensors"]);
    assert!(!out.exists(), "a failed import should not write its output");
}

#[test]
fn import_normflows_refuses_a_flows_checkpoint() {
    // A flows checkpoint uses normflows' tensor names, so it would parse as a state_dict,
    // but the importer would have to guess what its metadata records (slope, scale map,
    // shuffles): it refuses, and names the file, instead of silently changing the model.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    flows([
        OsStr::new("train"),
        OsStr::new("--iters"),
        OsStr::new("30"),
        OsStr::new("--batch"),
        OsStr::new("64"),
        OsStr::new("--test-samples"),
        OsStr::new("100"),
        OsStr::new("--snapshots"),
        OsStr::new("0"),
        OsStr::new("--leaky"),
        OsStr::new("0.3"),
        OsStr::new("--scale-map"),
        OsStr::new("sigmoid"),
        OsStr::new("--quiet"),
        OsStr::new("--out"),
        run_dir.as_os_str(),
    ])
    .ok();
    let ckpt = run_dir.join("checkpoint.safetensors");
    let out = dir.path().join("reimported.safetensors");
    import(&ckpt, &out).fails_with(&["checkpoint.safetensors", "already a flows checkpoint"]);
    assert!(!out.exists());
}

#[test]
fn train_rejects_empty_runs_before_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [("--iters", "0"), ("--batch", "0"), ("--test-samples", "1")] {
        let out = dir.path().join(format!("run{flag}"));
        flows([
            OsStr::new("train"),
            OsStr::new(flag),
            OsStr::new(value),
            OsStr::new("--quiet"),
            OsStr::new("--out"),
            out.as_os_str(),
        ])
        .fails_with(&[flag, "must be at least"]);
        assert!(!out.exists(), "{flag} {value} created {}", out.display());
    }
}

#[test]
fn only_the_first_line_can_be_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_checkpoint(dir.path());
    let data = write(&dir.path().join("two_headers.csv"), "x0,x1\nfoo,bar\n1,2\n");
    log_prob(&ckpt, &data).fails_with(&["row 2, column 1", "`foo`"]);
}

#[test]
fn bench_reports_each_run_and_the_median_rate() {
    let run = flows(["bench", "--iters", "20", "--batch", "64", "--repeats", "2"]);
    let stdout = run.ok();
    let runs = stdout.lines().filter(|l| l.starts_with("run ")).count();
    assert_eq!(runs, 2, "one line per repeat: {}", run.describe());
    let summary = stdout
        .lines()
        .find(|l| l.contains("median") && l.contains("it/s"))
        .unwrap_or_else(|| panic!("no median line: {}", run.describe()));
    let rate: f64 = summary
        .split("median ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no rate after `median` in `{summary}`"));
    assert!(
        rate.is_finite() && rate > 0.0,
        "median rate {rate} in `{summary}`"
    );
    assert!(
        summary.contains("batch 64") && summary.contains("over 2 runs"),
        "`{summary}`"
    );
}

#[test]
fn datasets_lists_every_built_in_density_with_its_dimension() {
    let run = flows(["datasets"]);
    let table = run.ok();
    assert!(table.starts_with("name"), "{}", run.describe());
    for name in flow_datasets::NAMES {
        let density = flow_datasets::by_name(name).unwrap();
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing: {}", run.describe()));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], density.dim().to_string(), "{line}");
        match density.entropy() {
            Some(h) => assert!(line.ends_with(&format!("{h:.4}")), "{line}"),
            None => assert!(line.ends_with("unknown"), "{line}"),
        }
    }
}

#[test]
fn sample_writes_n_rows_and_eval_reports_their_mean_nll() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_checkpoint(dir.path());
    let samples = dir.path().join("drawn.csv");
    let args = |seed: &str| {
        vec![
            OsStr::new("sample").to_owned(),
            OsStr::new("--checkpoint").to_owned(),
            ckpt.as_os_str().to_owned(),
            OsStr::new("-n").to_owned(),
            OsStr::new("300").to_owned(),
            OsStr::new("--seed").to_owned(),
            OsStr::new(seed).to_owned(),
            OsStr::new("--out").to_owned(),
            samples.as_os_str().to_owned(),
        ]
    };
    flows(args("3")).ok();
    let (header, rows) = read_numeric_csv(&samples);
    assert_eq!(header, "x0,x1");
    assert_eq!(rows.len(), 300);
    assert!(rows
        .iter()
        .all(|r| r.len() == 2 && r.iter().all(|v| v.is_finite())));
    // Seeded: the same seed draws the same points, another seed others.
    flows(args("3")).ok();
    assert_eq!(read_numeric_csv(&samples).1, rows);
    flows(args("4")).ok();
    assert_ne!(read_numeric_csv(&samples).1, rows);

    let lp = parse_values(&log_prob(&ckpt, &samples));
    let run = flows([
        OsStr::new("eval"),
        OsStr::new("--checkpoint"),
        ckpt.as_os_str(),
        OsStr::new("--data"),
        samples.as_os_str(),
    ]);
    let line = run.ok().trim().to_string();
    let mean_nll = -lp.iter().sum::<f64>() / lp.len() as f64;
    let reported: f64 = line
        .strip_prefix("test NLL: ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {}", run.describe()));
    assert!(
        (reported - mean_nll).abs() < 1e-4,
        "{line} vs mean {mean_nll}"
    );
    assert!(
        line.contains("standard error") && line.contains("300 rows"),
        "{line}"
    );
}

#[test]
fn sample_and_eval_reject_bad_requests_with_messages_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_checkpoint(dir.path());
    let out = dir.path().join("never.csv");
    flows([
        OsStr::new("sample"),
        OsStr::new("--checkpoint"),
        ckpt.as_os_str(),
        OsStr::new("-n"),
        OsStr::new("0"),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
    .fails_with(&["-n"]);
    assert!(!out.exists());
    let wide = write(&dir.path().join("wide.csv"), "1,2,3\n4,5,6\n");
    flows([
        OsStr::new("eval"),
        OsStr::new("--checkpoint"),
        ckpt.as_os_str(),
        OsStr::new("--data"),
        wide.as_os_str(),
    ])
    .fails_with(&["wide.csv", "3 columns", "2 features"]);
    let missing = dir.path().join("absent.safetensors");
    flows([
        OsStr::new("sample"),
        OsStr::new("--checkpoint"),
        missing.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
    .fails_with(&["absent.safetensors"]);
}

#[test]
fn train_takes_optimizer_schedule_and_clipping_flags_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [
        &[
            "--optimizer",
            "adamw",
            "--schedule",
            "cosine",
            "--warmup",
            "10",
        ][..],
        &[
            "--optimizer",
            "sgd",
            "--lr",
            "1e-2",
            "--nesterov",
            "--clip-grad-norm",
            "1.0",
        ][..],
    ] {
        let out = dir.path().join(extra[1]);
        let mut args: Vec<&OsStr> = ["train", "--iters", "40", "--batch", "64"]
            .iter()
            .map(OsStr::new)
            .collect();
        args.extend(["--test-samples", "500", "--snapshots", "0", "--quiet"].map(OsStr::new));
        args.extend(extra.iter().map(OsStr::new));
        args.extend([OsStr::new("--out"), out.as_os_str()]);
        let run = flows(args);
        assert!(run.ok().contains("test NLL"), "{}", run.describe());
    }
    for (bad, needle) in [
        (&["--clip-grad-norm", "0"][..], "--clip-grad-norm"),
        (&["--lr=-1"][..], "--lr"),
        (&["--nesterov"][..], "--nesterov"),
    ] {
        let out = dir.path().join("never");
        let mut args: Vec<&OsStr> = ["train", "--quiet"].iter().map(OsStr::new).collect();
        args.extend(bad.iter().map(OsStr::new));
        args.extend([OsStr::new("--out"), out.as_os_str()]);
        flows(args).fails_with(&[needle]);
        assert!(!out.exists(), "{bad:?} created its output folder");
    }
}

#[test]
fn a_diverging_run_fails_and_keeps_its_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // A good run's checkpoint, then a diverging run into the same folder.
    train_into(&out);
    let ckpt = out.join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let run = flows([
        OsStr::new("train"),
        OsStr::new("--lr=1e6"),
        OsStr::new("--iters"),
        OsStr::new("400"),
        OsStr::new("--batch"),
        OsStr::new("64"),
        OsStr::new("--checkpoint-every"),
        OsStr::new("1"),
        OsStr::new("--quiet"),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    run.fails_with(&["NaN or infinite", "in a row"]);
    // Every model after the first step was broken, so nothing replaced the good checkpoint.
    assert!(
        std::fs::read(&ckpt).unwrap() == before,
        "the good checkpoint was overwritten"
    );
    let lp = log_prob(&ckpt, &write(&dir.path().join("p.csv"), "0.5,0.5\n"));
    parse_values(&lp);
}

#[test]
fn train_sample_and_eval_maf_and_iaf() {
    let dir = tempfile::tempdir().unwrap();
    for flow in ["maf", "iaf"] {
        let out = dir.path().join(flow);
        let run = flows([
            OsStr::new("train"),
            OsStr::new("--flow"),
            OsStr::new(flow),
            OsStr::new("--transforms"),
            OsStr::new("3"),
            OsStr::new("--hidden"),
            OsStr::new("16,16"),
            OsStr::new("--ordering"),
            OsStr::new("random"),
            OsStr::new("--iters"),
            OsStr::new("40"),
            OsStr::new("--test-samples"),
            OsStr::new("500"),
            OsStr::new("--quiet"),
            OsStr::new("--out"),
            out.as_os_str(),
        ]);
        assert!(
            run.ok().contains(&format!("training {flow}")),
            "{}",
            run.describe()
        );
        let ckpt = out.join("checkpoint.safetensors");
        let drawn = dir.path().join(format!("{flow}.csv"));
        sample_to(&ckpt, "50", &drawn).ok();
        // The model's own samples have a finite density under it, read back from the file.
        let eval = flows([
            OsStr::new("eval"),
            OsStr::new("--checkpoint"),
            ckpt.as_os_str(),
            OsStr::new("--data"),
            drawn.as_os_str(),
        ]);
        assert!(eval.ok().contains("50 rows"), "{}", eval.describe());
    }
}

/// The number after `test NLL: ` in a run's output.
fn test_nll_of(run: &Run) -> f64 {
    run.ok()
        .lines()
        .find_map(|l| l.strip_prefix("test NLL: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `test NLL: ` number: {}", run.describe()))
}

/// `flows train` with `flags`, on two moons into `out`, quietly.
fn train_with(flags: &[&str], out: &Path) -> Run {
    let mut args: Vec<&OsStr> = vec![OsStr::new("train")];
    args.extend(flags.iter().map(OsStr::new));
    args.extend([OsStr::new("--quiet"), OsStr::new("--out"), out.as_os_str()]);
    flows(args)
}

#[test]
fn train_glow_on_two_moons_writes_its_outputs_and_beats_the_untrained_model() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--flow",
        "glow",
        "--transforms",
        "4",
        "--hidden",
        "32,32",
        "--batch",
        "128",
        "--test-samples",
        "2000",
        "--snapshots",
        "0,100",
    ];
    let out = dir.path().join("glow");
    // Initialised from the first batch, Glow starts at that batch's Gaussian fit, a saddle
    // of the likelihood that its zero-initialised couplings leave slowly (60 iterations gain
    // about 0.03 nats); 200 iterations at a higher rate are well past it (about 1.8 nats).
    let trained = train_with(
        &[&common[..], &["--iters", "200", "--lr", "5e-3"]].concat(),
        &out,
    );
    assert!(
        trained.ok().contains("training glow ("),
        "{}",
        trained.describe()
    );
    let nll = test_nll_of(&trained);
    // The same model after one step of a negligible learning rate: its ActNorms initialised
    // from the first batch, nothing learnt; tested on the same held-out samples.
    let untrained = train_with(
        &[&common[..], &["--iters", "1", "--lr", "1e-9"]].concat(),
        &dir.path().join("untrained"),
    );
    let untrained_nll = test_nll_of(&untrained);
    assert!(
        nll.is_finite() && nll < untrained_nll - 0.5,
        "trained glow's test NLL {nll} vs the untrained model's {untrained_nll}"
    );

    let (header, rows) = read_numeric_csv(&out.join("loss.csv"));
    assert_eq!(header, "iteration,loss");
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|r| r[1].is_finite()));
    let (_, samples) = read_numeric_csv(&out.join("samples.csv"));
    assert_eq!(samples.len(), 2000);
    assert!(samples.iter().flatten().all(|v| v.is_finite()));
    for png in ["loss.png", "density.png", "samples.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert!(bytes.starts_with(PNG_MAGIC), "{png}");
    }
    // The checkpoint holds the Glow steps (latent to data: coupling, LU linear, ActNorm) and
    // the ActNorms' initialised parameters.
    let ckpt = TensorFile::read(&out.join("checkpoint.safetensors")).unwrap();
    let spec = flow_layers::FlowSpec::from_json(&ckpt.metadata["architecture"]).unwrap();
    assert_eq!(spec.layers.len(), 12);
    assert!(spec.layers[2].is::<flow_layers::ActNorm>());
    let log_scale = &ckpt.tensors["flows.11.log_scale"].1;
    assert!(log_scale.iter().all(|v| v.is_finite() && *v != 0.0));
    // ActNorm needs a spread to standardise: a batch of one row is refused up front.
    let never = dir.path().join("never");
    train_with(&["--flow", "glow", "--batch", "1"], &never).fails_with(&["--batch", "ActNorm"]);
    assert!(!never.exists());
    // log-prob and eval read it back.
    let points = write(&dir.path().join("points.csv"), "x0,x1\n2.0,0.0\n0.0,1.0\n");
    assert_eq!(
        parse_values(&log_prob(&out.join("checkpoint.safetensors"), &points)).len(),
        2
    );
}

#[test]
fn planar_radial_and_residual_train_and_their_checkpoints_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    // (Residual flows sample through fixed-point inverses and evaluate exact 2-D log-dets.)
    for flow in ["planar", "radial", "residual"] {
        let out = dir.path().join(flow);
        let run = train_with(
            &[
                "--flow",
                flow,
                "--transforms",
                "8",
                "--iters",
                "20",
                "--batch",
                "64",
                "--test-samples",
                "500",
                "--validation-samples",
                "200",
                "--snapshots",
                "0",
            ],
            &out,
        );
        assert!(
            run.ok().contains(&format!("training {flow} (")),
            "{}",
            run.describe()
        );
        assert!(test_nll_of(&run).is_finite());
        let ckpt = out.join("checkpoint.safetensors");
        let drawn = dir.path().join(format!("{flow}.csv"));
        sample_to(&ckpt, "40", &drawn).ok();
        // The density of the model's own samples, through the numerical inverse: finite, one
        // per row, and eval's mean is their mean.
        let lp = parse_values(&log_prob(&ckpt, &drawn));
        assert_eq!(lp.len(), 40);
        let eval = flows([
            OsStr::new("eval"),
            OsStr::new("--checkpoint"),
            ckpt.as_os_str(),
            OsStr::new("--data"),
            drawn.as_os_str(),
        ]);
        let reported: f64 = eval
            .ok()
            .strip_prefix("test NLL: ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}", eval.describe()));
        let mean = -lp.iter().sum::<f64>() / lp.len() as f64;
        assert!(
            (reported - mean).abs() < 1e-3,
            "{flow}: {reported} vs {mean}"
        );
    }
}

/// A continuous flow trained in a moment: a small field, 4 RK4 steps, 10 iterations.
const QUICK_CONTINUOUS: [&str; 16] = [
    "--hidden",
    "8",
    "--solver",
    "rk4",
    "--steps",
    "4",
    "--iters",
    "10",
    "--batch",
    "64",
    "--test-samples",
    "300",
    "--validation-samples",
    "100",
    "--snapshots",
    "0",
];

#[test]
fn continuous_flows_train_sample_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    for flow in ["cnf", "ffjord", "cfm", "otcfm", "rectified"] {
        let out = dir.path().join(flow);
        let mut args = vec!["--flow", flow];
        args.extend(QUICK_CONTINUOUS);
        let run = train_with(&args, &out);
        assert!(
            run.ok().contains(&format!("training {flow} (")),
            "{}",
            run.describe()
        );
        assert!(test_nll_of(&run).is_finite());
        let ckpt = out.join("checkpoint.safetensors");
        let drawn = dir.path().join(format!("{flow}.csv"));
        sample_to(&ckpt, "30", &drawn).ok();
        let lp = parse_values(&log_prob(&ckpt, &drawn));
        assert_eq!(lp.len(), 30);
        assert!(lp.iter().all(|v| v.is_finite()), "{flow}: {lp:?}");
    }
}

/// RNODE's weights reach the stored layer, and training with them still scores exactly;
/// flow matching, which solves no ODE in training, refuses them.
#[test]
fn rnode_regularisation_trains_and_is_refused_by_flow_matching() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ffjord");
    let mut args = vec![
        "--flow",
        "ffjord",
        "--kinetic-energy",
        "0.01",
        "--jacobian-norm",
        "0.02",
    ];
    args.extend(QUICK_CONTINUOUS);
    let run = train_with(&args, &out);
    assert!(test_nll_of(&run).is_finite(), "{}", run.describe());
    let ckpt = TensorFile::read(&out.join("checkpoint.safetensors")).unwrap();
    let spec = flow_layers::FlowSpec::from_json(&ckpt.metadata["architecture"]).unwrap();
    let layer = spec.layers[0].config::<flow_layers::Cnf>().unwrap();
    assert_eq!((layer.kinetic_energy, layer.jacobian_norm), (0.01, 0.02));
    let mut args = vec!["--flow", "cfm", "--kinetic-energy", "0.01"];
    args.extend(QUICK_CONTINUOUS);
    train_with(&args, &dir.path().join("cfm")).fails_with(&["--kinetic-energy", "do not apply"]);
    let mut args = vec!["--flow", "cnf", "--jacobian-norm=-1"];
    args.extend(QUICK_CONTINUOUS);
    train_with(&args, &dir.path().join("negative")).fails_with(&["jacobian_norm", "at least 0"]);
}

/// torchcfm's model through the command line: imported, then scored with the stored solver
/// and with overrides, against the float64 references (f32 weights and arithmetic: 1e-3).
#[test]
fn import_torchcfm_converts_the_reference_model_and_solvers_can_be_overridden() {
    let fixtures = shared_dir().join("fixtures/torchcfm");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cfm.safetensors");
    let run = flows([
        OsStr::new("import-torchcfm"),
        fixtures.join("torchcfm_icfm_w64.safetensors").as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    assert!(
        run.ok()
            .contains("over 2 features (hidden [64, 64, 64], 8706 parameters)"),
        "{}",
        run.describe()
    );
    let reference =
        TensorFile::read(&fixtures.join("torchcfm_icfm_w64.reference.safetensors")).unwrap();
    let (_, x) = &reference.tensors["x"];
    let (_, want) = &reference.tensors["log_prob"];
    let rows = 20;
    let mut csv = String::from("x0,x1\n");
    for i in 0..rows {
        csv.push_str(&format!("{:?},{:?}\n", x[2 * i], x[2 * i + 1]));
    }
    let data = write(&dir.path().join("points.csv"), &csv);
    let score = |extra: &[&str]| {
        let mut args = vec![
            OsStr::new("log-prob"),
            OsStr::new("--checkpoint"),
            out.as_os_str(),
            OsStr::new("--data"),
            data.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        parse_values(&flows(args))
    };
    // The stored solver (dopri5 at 1e-5) is the least accurate of the three: SELU's kinks.
    let cases: [(&[&str], f64); 3] = [
        (&[], 1e-2),
        (&["--solver", "rk4", "--steps", "400"], 1e-3),
        (&["--rtol", "1e-7", "--atol", "1e-7"], 1e-3),
    ];
    for (extra, tol) in cases {
        let got = score(extra);
        assert_eq!(got.len(), rows);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() / w.abs().max(1.0) < tol,
                "{extra:?}, point {i}: {g} vs {w}"
            );
        }
    }
    // Few Euler steps are visibly less accurate: the override took effect.
    let euler = score(&["--solver", "euler", "--steps", "2"]);
    let worst = euler
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(worst > 1e-2, "2 Euler steps off by only {worst}");
    // A discrete flow has no solver to override.
    let realnvp = dir.path().join("realnvp.safetensors");
    import(
        &shared_dir().join("fixtures/normflows/normflows_realnvp_swap2.safetensors"),
        &realnvp,
    )
    .ok();
    let bad = flows([
        OsStr::new("log-prob"),
        OsStr::new("--checkpoint"),
        realnvp.as_os_str(),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--steps"),
        OsStr::new("10"),
    ]);
    assert!(
        bad.code != Some(0) && bad.stderr.contains("continuous flows only"),
        "{}",
        bad.describe()
    );
}

#[test]
fn glow_planar_radial_residual_and_flow_matching_checkpoints_resume_to_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    // (A residual flow's checkpoint also holds its power-iteration vectors and draw counter;
    // OT-CFM's draws and transport plans follow from the seed and the step.)
    for flow in ["glow", "planar", "radial", "residual", "otcfm"] {
        let transforms = if flow == "otcfm" { "1" } else { "3" };
        let flags = |iters: &'static str| {
            let mut flags = vec![
                "--flow",
                flow,
                "--transforms",
                transforms,
                "--hidden",
                "16,16",
                "--iters",
                iters,
                "--batch",
                "64",
                "--validate-every",
                "10",
                "--validation-samples",
                "200",
                "--test-samples",
                "200",
                "--snapshots",
                "0",
            ];
            if flow == "otcfm" {
                flags.extend(["--solver", "rk4", "--steps", "4"]);
            }
            flags
        };
        let (straight, stopped) = (
            dir.path().join(format!("{flow}-straight")),
            dir.path().join(format!("{flow}-stopped")),
        );
        train_with(&flags("40"), &straight).ok();
        // A run stopped after 20 of its 40 iterations: a 20-iteration run's final checkpoint
        // (its training state included) under the 40-iteration run's configuration.
        train_with(&flags("20"), &stopped).ok();
        let ckpt = stopped.join("checkpoint.safetensors");
        let mut file = TensorFile::read(&ckpt).unwrap();
        let mut run: serde_json::Value = serde_json::from_str(&file.metadata["run"]).unwrap();
        run["iters"] = serde_json::json!(40);
        file.metadata.insert("run".into(), run.to_string());
        file.write(&ckpt, "f32").unwrap();
        let resumed = flows([
            OsStr::new("train"),
            OsStr::new("--resume"),
            stopped.as_os_str(),
            OsStr::new("--quiet"),
        ]);
        assert!(
            resumed.ok().contains(&format!("resuming {flow}"))
                && resumed.ok().contains("from iteration 20"),
            "{}",
            resumed.describe()
        );
        assert_eq!(
            checkpoint_bits(&ckpt),
            checkpoint_bits(&straight.join("checkpoint.safetensors")),
            "{flow}: the resumed run's parameters and optimizer state differ"
        );
        assert_eq!(
            checkpoint_bits(&stopped.join("best.safetensors")),
            checkpoint_bits(&straight.join("best.safetensors")),
            "{flow}: best models differ"
        );
    }
}
