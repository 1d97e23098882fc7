//! A run's metrics as JSON lines (`metrics.jsonl`): one object per training iteration
//! (`{"step", "loss", "lr"}`), per validation (`{"step", "val_nll", "val_se", "best"}`) and
//! for the final test (`{"step", "test_nll", "test_se", "model"}`). A non-finite number is
//! written as `null`. A resumed run keeps the lines of the steps before its checkpoint.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
}

/// The history a resumed run read back: losses by step and validations.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub losses: Vec<f64>,
    pub validation: Vec<(usize, f64)>,
}

impl MetricsLog {
    /// A fresh log at `path` (an existing one is replaced).
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Reopens the log of a run resumed before update `step`: the lines of earlier steps are
    /// kept (and returned), later ones, written after the checkpoint, dropped.
    pub fn resume(path: &Path, step: usize) -> Result<(Self, History)> {
        let mut history = History::default();
        let mut kept = String::new();
        if path.exists() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| Error::io(path, e))?;
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    // A line cut short by the kill: everything after it is dropped too.
                    if n > 0 {
                        break;
                    }
                    return Err(Error::format(path, format!("line {}: not JSON", n + 1)));
                };
                let Some(s) = value.get("step").and_then(Value::as_u64) else {
                    continue;
                };
                let s = s as usize;
                // The validation at `step` came before the checkpoint; the loss of `step` and
                // the test, after it.
                let before = s < step || (s == step && value.get("val_nll").is_some());
                if !before || value.get("test_nll").is_some() {
                    continue;
                }
                if let Some(loss) = value.get("loss") {
                    if s == history.losses.len() {
                        history.losses.push(loss.as_f64().unwrap_or(f64::NAN));
                    }
                } else if let Some(v) = value.get("val_nll") {
                    history.validation.push((s, v.as_f64().unwrap_or(f64::NAN)));
                }
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        crate::checkpoint::write_atomically(path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok((
            MetricsLog {
                path: path.to_path_buf(),
                out: BufWriter::new(file),
            },
            history,
        ))
    }

    pub fn loss(&mut self, step: usize, loss: f64, lr: f64) -> Result<()> {
        self.line(json!({"step": step, "loss": number(loss), "lr": number(lr)}))
    }

    pub fn validation(&mut self, step: usize, nll: f64, se: f64, best: bool) -> Result<()> {
        self.line(json!({"step": step, "val_nll": number(nll), "val_se": number(se), "best": best}))
    }

    pub fn test(&mut self, step: usize, nll: f64, se: f64, model: &str) -> Result<()> {
        self.line(
            json!({"step": step, "test_nll": number(nll), "test_se": number(se), "model": model}),
        )
    }

    /// Pushes buffered lines to the file (before a checkpoint, so the log is never behind it).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn line(&mut self, value: Value) -> Result<()> {
        writeln!(self.out, "{value}").map_err(|e| Error::io(&self.path, e))
    }
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}
