//! A run's folder and its checkpoints: where each file goes, writing and reading the state at a
//! round boundary, tidying what a killed process left, and saving weights atomically.

use super::*;

/// The state saved at every round boundary (with the model and optimizer files it names), so that a
/// run resumes exactly: the examples and mixtures of the rounds before are re-derived from the
/// seed and the recorded evaluations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The run config, to refuse resuming a folder of another run.
    pub(crate) config: RunConfig,
    pub(crate) step: u64,
    pub(crate) round: usize,
    pub(crate) evaluations: Vec<(Evaluation, Vec<f64>)>,
    /// The evaluations a probing method asked for between the regular ones.
    #[serde(default)]
    pub(crate) probes: Vec<Evaluation>,
    /// Each round's per-skill mean training loss, as the next round's plan observed it.
    #[serde(default)]
    pub(crate) round_train_losses: Vec<Vec<Option<f64>>>,
    pub(crate) trained: Vec<u64>,
    pub(crate) train_time: f64,
    pub(crate) eval_time: f64,
    /// Wall time from the run's start to this checkpoint, over every process that trained it
    /// (absent in checkpoints of older versions: 0).
    #[serde(default)]
    pub(crate) wall_time: f64,
    /// The method's state ([`MixtureMethod::load_state`]), for a method whose state the replayed
    /// rounds do not rebuild (absent in older checkpoints: null).
    #[serde(default)]
    pub(crate) method_state: serde_json::Value,
    /// The steps taken in a pack so far (absent in older checkpoints: 0).
    #[serde(default)]
    pub(crate) packed_steps: u64,
}

/// Where a run writes its outputs.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub dir: PathBuf,
}

impl RunPaths {
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }
    pub(crate) fn checkpoint_state(&self) -> PathBuf {
        self.checkpoint_dir().join("state.json")
    }
    pub(crate) fn checkpoint_model(&self, step: u64) -> PathBuf {
        self.checkpoint_dir().join(format!("model-{step}.bpk"))
    }
    pub(crate) fn checkpoint_optim(&self, step: u64) -> PathBuf {
        self.checkpoint_dir().join(format!("optim-{step}.bpk"))
    }
}

/// Saves a model's parameters (burnpack) through [`write_atomic`]: the file is whole or absent.
pub fn save_module(model: &Model, path: &Path) -> Result<()> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("{e:?}")),
        })?;
    write_atomic(path, &bytes)
}

/// This run's checkpoint in the folder, if any; a checkpoint of another config is an error.
pub(crate) fn read_checkpoint(paths: &RunPaths, config: &RunConfig) -> Result<Option<Checkpoint>> {
    let path = paths.checkpoint_state();
    let Some(ck) =
        crate::common::read_json_record::<Checkpoint>(&path, "checkpoint", "a skillit checkpoint")?
    else {
        return Ok(None);
    };
    if &ck.config != config {
        return Err(Error::Invalid {
            origin: paths.dir.display().to_string(),
            field: "checkpoint".into(),
            message: "holds a run of another config; use another --out or delete the folder".into(),
        });
    }
    Ok(Some(ck))
}

/// Clears what a killed process left in a run folder that only the caller writes: temp files of
/// interrupted atomic writes, checkpoint files that no state.json names, and the checkpoint of a
/// run whose manifest already says finished.
pub fn tidy_run(dir: &Path) {
    let paths = RunPaths {
        dir: dir.to_path_buf(),
    };
    crate::results::remove_stale_temps(dir, true);
    let checkpoint = paths.checkpoint_dir();
    if !checkpoint.exists() {
        return;
    }
    if read_manifest(dir).is_ok_and(|m| m.status == "finished") {
        let _ = std::fs::remove_dir_all(&checkpoint);
        return;
    }
    crate::results::remove_stale_temps(&checkpoint, true);
    let state: Option<Checkpoint> = std::fs::read(paths.checkpoint_state())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let keep = match &state {
        Some(ck) => vec![
            paths.checkpoint_state(),
            paths.checkpoint_model(ck.step),
            paths.checkpoint_optim(ck.step),
        ],
        None => Vec::new(),
    };
    remove_all_but(&checkpoint, &keep);
}

/// Removes every file in `dir` but those in `keep`.
pub(crate) fn remove_all_but(dir: &Path, keep: &[PathBuf]) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if !keep.contains(&entry.path()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Saves the model and optimizer under step-numbered names, then commits by replacing
/// state.json atomically, then removes older files: a kill at any moment leaves a complete
/// checkpoint.
pub(crate) fn write_checkpoint(
    paths: &RunPaths,
    model: &Model,
    optim: &ModuleOptimizer,
    ck: &Checkpoint,
) -> Result<()> {
    let dir = paths.checkpoint_dir();
    let io = |path: &Path, e: String| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let model_path = paths.checkpoint_model(ck.step);
    save_module(model, &model_path)?;
    let optim_path = paths.checkpoint_optim(ck.step);
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| io(&optim_path, format!("{e:?}")))?;
    write_atomic(&optim_path, &optim_bytes)?;
    let json = serde_json::to_vec(ck).expect("a checkpoint serializes");
    write_atomic(&paths.checkpoint_state(), &json)?;
    remove_all_but(&dir, &[model_path, optim_path, paths.checkpoint_state()]);
    Ok(())
}
