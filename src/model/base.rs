//! A base: a scratch model pretrained by skillit on a corpus of generic in-context abilities, saved
//! in a folder that runs start from (`init = "bases/NAME"`), as the paper's runs start from a
//! pretrained LM (docs/paper.md §12). The folder holds
//!
//! - `model.bpk`: the weights;
//! - `base.json`: the [`BaseManifest`]: the model's shape, the vocabulary it reads, the recipe and
//!   each stage's record, the weights' SHA-256, and its step-0 accuracy on the tasks it serves.
//!
//! Opening a base checks the weights against the manifest's fingerprint, so a run never starts
//! from weights other than the ones the manifest describes. `skillit base build` writes the folder
//! (src/pretrain.rs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ModelConfig;
use crate::{Error, Result};

/// The manifest file of a base folder.
pub const MANIFEST: &str = "base.json";
/// The weights file of a base folder.
pub const WEIGHTS: &str = "model.bpk";

/// One stage of a base's pretraining, as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage's task (`recall k=5`).
    pub task: String,
    /// The mixture method and its parameters (`fixed[weights=1:0]`).
    pub method: String,
    pub steps: u64,
    /// Training examples per skill (1-based skill order): the skills the stage trained on.
    pub examples_per_skill: Vec<u64>,
    /// The last evaluation's per-skill validation loss and accuracy.
    pub final_loss: Vec<f64>,
    pub final_accuracy: Vec<f64>,
    /// The loss every skill the stage trained on had to reach for it to count as converged.
    pub converged_loss: f64,
    pub wall_time_s: f64,
    pub ms_per_step: f64,
}

/// A served task's per-skill validation accuracy and loss of the base itself (step 0 of a run
/// that starts from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepZero {
    /// The task (`lego k=5 graph=chain`).
    pub task: String,
    pub accuracy: Vec<f64>,
    pub loss: Vec<f64>,
}

/// `base.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseManifest {
    pub name: String,
    /// The model every run from this base has (its shape fields).
    pub model: ModelConfig,
    /// The vocabulary the base reads (`lego`): a run's task must use it.
    pub vocab: String,
    /// SHA-256 (hex) and size of `model.bpk`.
    pub sha256: String,
    pub bytes: u64,
    /// The recipe file's text, verbatim: what `skillit base build` ran.
    pub recipe: String,
    pub seed: u64,
    pub stages: Vec<StageRecord>,
    pub step_zero: Vec<StepZero>,
    /// The sum of the stages' wall times, and the machine they ran on.
    pub wall_time_s: f64,
    pub backend: String,
    pub git_revision: String,
    pub burn_version: String,
}

/// An opened base folder: its manifest, checked against its weights.
#[derive(Debug, Clone)]
pub struct Base {
    pub dir: PathBuf,
    pub manifest: BaseManifest,
}

impl Base {
    /// Whether `path` is a base folder (it holds `base.json`).
    pub fn is_base(path: &Path) -> bool {
        path.join(MANIFEST).is_file()
    }

    /// Reads `dir/base.json` and checks `dir/model.bpk` against its fingerprint.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let origin = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| Error::Invalid {
            origin: origin.clone(),
            field: "init".into(),
            message: format!("cannot be read ({e}): give a base folder of `skillit base build`"),
        })?;
        let manifest: BaseManifest =
            serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
                origin: origin.clone(),
                field: "manifest".into(),
                message: format!("is not a skillit base manifest: {e}"),
            })?;
        let weights = dir.join(WEIGHTS);
        let (sha256, _) = super::sha256_file(&weights).map_err(|_| Error::Invalid {
            origin: weights.display().to_string(),
            field: "init".into(),
            message: "cannot be read: a base folder holds its weights as model.bpk".into(),
        })?;
        if sha256 != manifest.sha256 {
            return Err(Error::Invalid {
                origin: weights.display().to_string(),
                field: "sha256".into(),
                message: format!(
                    "is {sha256}, but {MANIFEST} records {}: the weights are not the base's",
                    manifest.sha256
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The weights file runs load.
    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS)
    }

    /// Checks that a run of task `task` (its name and vocabulary) can start from this base.
    pub fn check_vocab(&self, task: &str, vocab: &str) -> Result<()> {
        if vocab == self.manifest.vocab {
            return Ok(());
        }
        Err(Error::Invalid {
            origin: self.dir.display().to_string(),
            field: "init".into(),
            message: format!(
                "the base '{}' reads the {} vocabulary; {task} uses the {vocab} vocabulary",
                self.manifest.name, self.manifest.vocab
            ),
        })
    }
}

/// What an `init` path names: a base folder, opened (its weights checked against its manifest),
/// or `None` for a weights file (an earlier run's `model.bpk`); a folder without a manifest is an
/// error.
pub fn open_init(path: &Path) -> Result<Option<Base>> {
    if Base::is_base(path) {
        Ok(Some(Base::open(path)?))
    } else if path.is_dir() {
        Err(Error::Invalid {
            origin: path.display().to_string(),
            field: "init".into(),
            message: format!(
                "is a folder without {MANIFEST}: give a base folder or a run's model.bpk"
            ),
        })
    } else {
        Ok(None)
    }
}

/// The weights file an `init` path names: a base folder's `model.bpk` (checked against its
/// manifest), or the path itself.
pub fn init_weights(path: &Path) -> Result<PathBuf> {
    Ok(open_init(path)?.map_or_else(|| path.to_path_buf(), |base| base.weights()))
}
