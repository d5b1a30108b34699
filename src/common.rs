//! What config, graph and method share, below all three so that imports run one way: reading a
//! TOML file (one bad-input line naming the file and the line), reading a JSON record a run left,
//! and the record of one evaluation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One evaluation: after `step` optimizer steps, each skill's validation loss (answer-token
/// cross-entropy, nats) and greedy accuracy, in skill order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub step: u64,
    pub loss: Vec<f64>,
    pub accuracy: Vec<f64>,
}

/// Reads a text file; a missing or unreadable one is one bad-input line naming the file.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Invalid {
        origin: path.display().to_string(),
        field: "file".into(),
        message: format!("cannot be read: {e}"),
    })
}

/// Reads and parses a TOML file; a missing file or a parse error is one bad-input line naming the
/// file and the line.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let origin = path.display().to_string();
    let text = read_text(path)?;
    toml::from_str(&text).map_err(|e| Error::Invalid {
        origin,
        field: e
            .span()
            // The line the span starts on (an error at the end of the text: its last line).
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!("line {}", line.min(text.lines().count().max(1)))
            })
            .unwrap_or_else(|| "toml".into()),
        message: e.message().trim().to_string(),
    })
}

/// Reads the JSON record at `path` if there is one (`None` when it cannot be read); one that does
/// not parse is one bad-input line naming the file, `field` and what it should have been.
pub fn read_json_record<T: serde::de::DeserializeOwned>(
    path: &Path,
    field: &str,
    what: &str,
) -> Result<Option<T>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Invalid {
            origin: path.display().to_string(),
            field: field.into(),
            message: format!("is not {what}: {e}"),
        })
}
