//! What the end-to-end tests share: running the `flows` binary, reading what it wrote, and
//! comparing a checkpoint's tensors bit for bit.
#![allow(dead_code)]

use flow_train::checkpoint::TensorFile;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What one run of `flows` did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Run {
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit status 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        &self.stdout
    }

    /// Asserts a clean failure (non-zero exit, `error: ...` on stderr, no panic) whose message
    /// contains every one of `needles`.
    pub fn fails_with(&self, needles: &[&str]) {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a failure: {}",
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "the error is a panic, not a message: {}",
            self.describe()
        );
        assert!(
            self.stderr.starts_with("error: "),
            "stderr should start with `error: `: {}",
            self.describe()
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr should mention `{needle}`: {}",
                self.describe()
            );
        }
    }
}

pub fn flows<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_flows"))
        .args(&args)
        .output()
        .expect("the flows binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
        what: format!("flows {}", args.join(OsStr::new(" ")).to_string_lossy()),
    }
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// Reads a CSV written by `flows train`: its header and its rows, each parsed as numbers.
pub fn read_numeric_csv(path: &Path) -> (String, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} is unreadable: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let rows = lines
        .map(|line| {
            line.split(',')
                .map(|c| {
                    c.parse::<f64>()
                        .unwrap_or_else(|_| panic!("{}: `{line}` is not numeric", path.display()))
                })
                .collect()
        })
        .collect();
    (header, rows)
}

/// The tensors of a checkpoint by name, bit for bit.
pub fn checkpoint_bits(path: &Path) -> Vec<(String, Vec<u64>)> {
    TensorFile::read(path)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(name, (_, values))| (name, values.iter().map(|v| v.to_bits()).collect()))
        .collect()
}
