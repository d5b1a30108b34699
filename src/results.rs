//! The on-disk schema of results: the long-format `metrics.csv` every run writes, and atomic
//! writes (temp file + rename) so that a killed process never leaves a torn file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The columns of `metrics.csv`, in order: one row per evaluation × skill.
pub const METRICS_COLUMNS: [&str; 11] = [
    "run_id", "task", "setting", "method", "params", "seed", "step", "skill", "loss", "accuracy",
    "weight",
];

/// One row of `metrics.csv`: skill `skill`'s validation loss (answer-token cross-entropy, nats) and
/// greedy accuracy (fraction in [0, 1]) after `step` optimizer steps, and the skill's mixture
/// proportion `weight` at that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub run_id: String,
    pub task: String,
    pub setting: String,
    pub method: String,
    /// The method's parameters as written in the sweep (e.g. `eta=0.5`); empty for none.
    pub params: String,
    pub seed: u64,
    pub step: u64,
    pub skill: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub weight: f64,
}

impl MetricsRow {
    /// The name under which a method's runs are compared: `method`, or `method[params]` when the
    /// method has parameters, so that the same method with other parameters is a distinct row.
    pub fn method_label(&self) -> String {
        if self.params.is_empty() {
            self.method.clone()
        } else {
            format!("{}[{}]", self.method, self.params)
        }
    }
}

/// Where a results folder keeps its combined metrics.
pub fn metrics_path(dir: &Path) -> PathBuf {
    dir.join("metrics.csv")
}

/// Reads a `metrics.csv` (or `DIR/metrics.csv` when `path` is a folder). A missing column, a
/// malformed or truncated row, or a non-finite number where one is required is a bad-input error
/// that names the file, the line and the column.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let file = if path.is_dir() {
        metrics_path(path)
    } else {
        path.to_path_buf()
    };
    let origin = file.display().to_string();
    let bytes = fs::read(&file).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::Invalid {
                origin: origin.clone(),
                field: "file".into(),
                message: "does not exist (a results folder holds metrics.csv)".into(),
            }
        } else {
            Error::Io {
                path: file.clone(),
                source,
            }
        }
    })?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| invalid(&origin, "header", e.to_string()))?
        .clone();
    for column in METRICS_COLUMNS {
        if !headers.iter().any(|h| h == column) {
            return Err(invalid(
                &origin,
                "header",
                format!(
                    "missing column '{column}'; metrics.csv needs {}",
                    METRICS_COLUMNS.join(", ")
                ),
            ));
        }
    }
    let mut rows = Vec::new();
    for (i, record) in reader.deserialize::<MetricsRow>().enumerate() {
        // Line numbers are 1-based and the header is line 1.
        let line = format!("line {}", i + 2);
        let row = record.map_err(|e| invalid(&origin, &line, csv_message(&e)))?;
        if row.skill == 0 {
            return Err(invalid(&origin, &line, "skill must be at least 1".into()));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(invalid(
            &origin,
            "rows",
            "no metrics rows after the header".into(),
        ));
    }
    Ok(rows)
}

fn invalid(origin: &str, field: &str, message: String) -> Error {
    Error::Invalid {
        origin: origin.to_string(),
        field: field.to_string(),
        message,
    }
}

/// The csv crate's message without its own position prefix (we name the line ourselves).
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(f) => format!("column {}: {}", f + 1, err.kind()),
            None => err.kind().to_string(),
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len} (a truncated row?)"),
        _ => e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, flushed to disk, then
/// renamed over `path`. Readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// The runs of a metrics file, keyed by run id, each with its rows sorted by (step, skill).
pub fn group_runs(rows: &[MetricsRow]) -> BTreeMap<&str, Vec<&MetricsRow>> {
    let mut runs: BTreeMap<&str, Vec<&MetricsRow>> = BTreeMap::new();
    for row in rows {
        runs.entry(row.run_id.as_str()).or_default().push(row);
    }
    for rows in runs.values_mut() {
        rows.sort_by_key(|r| (r.step, r.skill));
    }
    runs
}
