//! Resuming a run after killing the `flows` process: the final parameters equal an
//! uninterrupted run's, bit for bit (flow-train's tests/resume.rs resumes from a checkpoint
//! in the library); resuming refuses other flags and checkpoints of other runs.

mod common;

use common::{checkpoint_bits, flows};
use flow_train::checkpoint::TensorFile;
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

fn read_step(checkpoint: &Path) -> Option<usize> {
    let file = TensorFile::read(checkpoint).ok()?;
    file.metadata.get("iterations")?.parse().ok()
}

fn train_args(out: &Path) -> Vec<std::ffi::OsString> {
    [
        "train",
        "--iters",
        "1500",
        "--batch",
        "128",
        "--hidden",
        "32,32",
        "--checkpoint-every",
        "100",
        "--validate-every",
        "50",
        "--test-samples",
        "500",
        "--snapshots",
        "0",
        "--quiet",
        "--out",
    ]
    .iter()
    .map(|s| OsStr::new(s).to_owned())
    .chain([out.as_os_str().to_owned()])
    .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, killed) = (dir.path().join("straight"), dir.path().join("killed"));
    flows(train_args(&straight)).ok();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flows"))
        .args(train_args(&killed))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = killed.join("checkpoint.safetensors");
    let start = Instant::now();
    // Kill it (SIGKILL: no cleanup) as soon as its first checkpoint is complete.
    while read_step(&ckpt).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at = read_step(&ckpt).unwrap();
    assert!(at < 1500, "killed after the end ({at})");

    // Flags other than --quiet are refused: the stored configuration is the run's.
    flows([
        OsStr::new("train"),
        OsStr::new("--resume"),
        killed.as_os_str(),
        OsStr::new("--iters"),
        OsStr::new("10"),
    ])
    .fails_with(&["--resume", "--iters"]);

    let run = flows([
        OsStr::new("train"),
        OsStr::new("--resume"),
        killed.as_os_str(),
        OsStr::new("--quiet"),
    ]);
    let out = run.ok();
    assert!(
        out.contains(&format!("from iteration {at}")),
        "{}",
        run.describe()
    );
    let name = "checkpoint.safetensors";
    assert_eq!(
        checkpoint_bits(&killed.join(name)),
        checkpoint_bits(&straight.join(name)),
        "parameters and optimizer state after resuming at {at} differ from the uninterrupted run's"
    );
    assert_eq!(
        checkpoint_bits(&killed.join("best.safetensors")),
        checkpoint_bits(&straight.join("best.safetensors"))
    );
    // The metrics log continues where the checkpoint was: no step twice, none missing.
    let log = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let (a, b) = (log(&killed), log(&straight));
    for (n, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        assert_eq!(x, y, "metrics.jsonl line {} differs", n + 1);
    }
    assert_eq!(a.lines().count(), b.lines().count());
}

#[test]
fn resume_without_a_checkpoint_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    flows([
        OsStr::new("train"),
        OsStr::new("--resume"),
        dir.path().as_os_str(),
    ])
    .fails_with(&["checkpoint.safetensors"]);
}

#[test]
fn resume_refuses_a_checkpoint_of_another_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let short = |out: &Path, hidden: &str| {
        flows([
            OsStr::new("train"),
            OsStr::new("--iters"),
            OsStr::new("20"),
            OsStr::new("--hidden"),
            OsStr::new(hidden),
            OsStr::new("--test-samples"),
            OsStr::new("100"),
            OsStr::new("--quiet"),
            OsStr::new("--out"),
            out.as_os_str(),
        ])
        .ok();
    };
    short(&a, "16");
    short(&b, "32");
    // b's checkpoint replaced by a's (a smaller network) under b's stored configuration.
    let ckpt = "checkpoint.safetensors";
    let b_run = TensorFile::read(&b.join(ckpt)).unwrap().metadata["run"].clone();
    let mut swapped = TensorFile::read(&a.join(ckpt)).unwrap();
    swapped.metadata.insert("run".into(), b_run);
    swapped.write(&b.join(ckpt), "f32").unwrap();
    flows([OsStr::new("train"), OsStr::new("--resume"), b.as_os_str()])
        .fails_with(&["different architecture"]);
}
