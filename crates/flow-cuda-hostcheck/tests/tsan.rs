//! ThreadSanitizer on the host build: `tsan/driver.cpp`, compiled here with
//! `-fsanitize=thread` together with `kernels/reduce.cu` and `tsan/tree_reduce.cu` (the
//! whole program instrumented, as ThreadSanitizer needs for reliable reports), runs
//! - the `reduce.cu` kernels that use `__syncthreads()` and warp shuffles, and a tree
//!   reduction with its barriers: no report;
//! - the same tree reduction with the barrier between its steps deleted: a data race
//!   reported, which shows that these runs catch a missing barrier.
//!
//! Needs g++ (12, with libtsan): without it these tests fail, saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The driver, compiled once per test run.
fn driver() -> &'static Path {
    static DRIVER: OnceLock<PathBuf> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let kernels = here.join("../flow-cuda/kernels");
        let tsan = here.join("tsan");
        let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flow-cuda-tsan-driver");
        let output = Command::new("g++")
            .args([
                "-std=c++20",
                "-DFLOW_HOST",
                "-DFLOW_T=double",
                "-DFLOW_SUFFIX=f64",
            ])
            .args(["-fsanitize=thread", "-O1", "-g", "-pthread"])
            .arg("-I")
            .arg(&kernels)
            .args(["-x", "c++"])
            .arg(kernels.join("reduce.cu"))
            .arg(tsan.join("tree_reduce.cu"))
            .arg(tsan.join("driver.cpp"))
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "could not run g++ ({e}): the ThreadSanitizer checks need g++ 12 with libtsan"
                )
            });
        assert!(
            output.status.success(),
            "g++ -fsanitize=thread failed (is libtsan installed?):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        exe
    })
}

/// Runs the driver in `mode`: its exit status, standard output and error.
fn run(mode: &str) -> (Output, String, String) {
    let output = Command::new(driver())
        .arg(mode)
        // Every report, then ThreadSanitizer's own exit code (66) if there was one.
        .env("TSAN_OPTIONS", "halt_on_error=0 exitcode=66")
        .output()
        .expect("running the ThreadSanitizer driver");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

#[test]
fn barriers_and_shuffles_of_reduce_kernels_have_no_data_race() {
    let (output, stdout, stderr) = run("clean");
    assert!(
        !stderr.contains("ThreadSanitizer"),
        "ThreadSanitizer reported on the reduce.cu kernels:\n{stderr}"
    );
    assert!(
        output.status.success() && stdout.contains("clean kernels ran, 0 wrong"),
        "the driver failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[test]
fn a_deleted_barrier_is_reported_as_a_data_race() {
    let (output, stdout, stderr) = run("broken");
    assert!(
        stdout.contains("broken_tree_sum ran"),
        "the driver failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("WARNING: ThreadSanitizer: data race")
            && stderr.contains("broken_tree_sum_f64"),
        "ThreadSanitizer did not report the missing barrier ({}):\n{stderr}",
        output.status
    );
    assert_eq!(
        output.status.code(),
        Some(66),
        "ThreadSanitizer's exit code"
    );
}
