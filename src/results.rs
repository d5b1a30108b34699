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
        method_label(&self.method, &self.params)
    }
}

/// `method`, or `method[params]` when there are parameters: see [`MetricsRow::method_label`].
pub fn method_label(method: &str, params: &str) -> String {
    if params.is_empty() {
        method.to_string()
    } else {
        format!("{method}[{params}]")
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
        let checks = [
            (
                "loss",
                row.loss,
                row.loss.is_finite() && row.loss >= 0.0,
                "a finite number ≥ 0",
            ),
            (
                "accuracy",
                row.accuracy,
                (0.0..=1.0).contains(&row.accuracy),
                "in [0, 1]",
            ),
            (
                "weight",
                row.weight,
                (0.0..=1.0).contains(&row.weight),
                "in [0, 1]",
            ),
        ];
        if let Some((column, value, _, allowed)) = checks.iter().find(|c| !c.2) {
            return Err(invalid(
                &origin,
                &line,
                format!("{column} is {value}; it must be {allowed}"),
            ));
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

/// This machine's name, as temp files record it (Linux; elsewhere `local`).
fn host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['.', '/'], "_"))
        .unwrap_or_else(|_| "local".into())
}

/// The temp file [`write_atomic`] writes before renaming it to `path`: hidden, in the same folder,
/// named by the writing machine and process so that a leftover one can be told from a live one.
fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.unwrap_or(Path::new("."))
        .join(format!(".{name}.{}-{}.tmp", host(), std::process::id()))
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, flushed to disk, then
/// renamed over `path`. Readers see the old file or the new one, never a part; a process killed
/// in between leaves only the temp file, which [`remove_stale_temps`] clears.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temp_path(path);
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

/// Whether `name` is a temp file of [`write_atomic`] whose writer is gone: `all` counts every
/// one as gone (the caller owns the folder); otherwise one written on this machine by a process
/// that no longer runs (checked in /proc, so on Linux only), or one older than a day.
fn is_stale_temp(path: &Path, all: bool) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if !(name.starts_with('.') && name.ends_with(".tmp")) {
        return false;
    }
    if all {
        return true;
    }
    let writer = name
        .trim_end_matches(".tmp")
        .rsplit_once('.')
        .and_then(|(_, w)| w.rsplit_once('-'));
    if let Some((host_name, pid)) = writer {
        let proc_fs = Path::new("/proc/self").exists();
        if proc_fs && host_name == host() && pid.parse::<u32>().is_ok() {
            return !Path::new("/proc").join(pid).exists();
        }
    }
    let day = std::time::Duration::from_secs(24 * 3600);
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > day)
}

/// Removes the temp files that killed writers left in `dir` (not below it); with `all`, every
/// temp file, for a folder that only the caller writes. Returns how many went.
pub fn remove_stale_temps(dir: &Path, all: bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_stale_temp(p, all) && fs::remove_file(p).is_ok())
        .count()
}

/// Makes sure `dir` exists and can be written, before any work goes into it: `field` names the
/// flag or field that chose it (`--out`), and the error is bad input (exit status 2).
pub fn prepare_output_dir(dir: &Path, field: &str) -> Result<()> {
    let bad = |e: std::io::Error| Error::Invalid {
        origin: dir.display().to_string(),
        field: field.to_string(),
        message: format!("cannot be written: {e}"),
    };
    fs::create_dir_all(dir).map_err(bad)?;
    let probe = temp_path(&dir.join("write-test"));
    fs::File::create(&probe).map_err(bad)?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// How two metrics files of the same run compare, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsDiff {
    pub rows: (usize, usize),
    /// Rows whose key (run, step, skill) or numbers differ.
    pub differing: usize,
    /// The first differing row's (step, skill).
    pub first: Option<(u64, usize)>,
    pub max_loss_diff: f64,
    pub max_accuracy_diff: f64,
}

impl MetricsDiff {
    /// Every row the same, bit for bit.
    pub fn identical(&self) -> bool {
        self.rows.0 == self.rows.1 && self.differing == 0
    }
}

impl std::fmt::Display for MetricsDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.identical() {
            return write!(
                f,
                "identical: all {} metrics rows match exactly",
                self.rows.0
            );
        }
        write!(
            f,
            "different: {} vs {} rows, {} differ",
            self.rows.0, self.rows.1, self.differing
        )?;
        if let Some((step, skill)) = self.first {
            write!(f, ", first at step {step} skill {skill}")?;
        }
        write!(
            f,
            "; max |Δloss| {:.3e}, max |Δaccuracy| {:.3e}",
            self.max_loss_diff, self.max_accuracy_diff
        )
    }
}

/// Compares two runs' metrics rows in order (`a` the recorded, `b` the rerun).
pub fn diff_metrics(a: &[MetricsRow], b: &[MetricsRow]) -> MetricsDiff {
    let mut diff = MetricsDiff {
        rows: (a.len(), b.len()),
        differing: 0,
        first: None,
        max_loss_diff: 0.0,
        max_accuracy_diff: 0.0,
    };
    for (x, y) in a.iter().zip(b) {
        if x != y {
            diff.differing += 1;
            diff.first.get_or_insert((x.step, x.skill));
        }
        if (x.run_id.as_str(), x.step, x.skill) == (y.run_id.as_str(), y.step, y.skill) {
            diff.max_loss_diff = diff.max_loss_diff.max((x.loss - y.loss).abs());
            diff.max_accuracy_diff = diff.max_accuracy_diff.max((x.accuracy - y.accuracy).abs());
        }
    }
    diff
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
