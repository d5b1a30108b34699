//! What a run records: its status, `manifest.json`, the `metrics.csv` rows after every
//! evaluation, and the history a method observes.

use super::*;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    Finished,
    Failed {
        reason: String,
        step: u64,
    },
    /// Stopped at a round boundary by the caller; the checkpoint resumes it.
    Stopped {
        step: u64,
    },
}

/// What a finished (or failed) run recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub run_id: String,
    #[serde(flatten)]
    pub status: RunStatus,
    pub config: RunConfig,
    pub method: String,
    pub params: String,
    pub skillit_version: &'static str,
    pub git_revision: &'static str,
    pub burn_version: &'static str,
    pub backend: String,
    pub adapter: String,
    /// The machine it ran on (`device::machine`: CPU model, logical CPUs, OS, architecture).
    pub machine: String,
    /// Wall time of the run: a resumed run adds its checkpoint's (the work up to it) to this
    /// process's, so the time lost to a kill after the last checkpoint is not counted twice.
    pub wall_time_s: f64,
    pub train_time_s: f64,
    pub eval_time_s: f64,
    pub ms_per_step: f64,
    pub steps_done: u64,
    /// Training examples trained on per skill (1-based skill order).
    pub examples_per_skill: Vec<u64>,
    pub num_params: usize,
    pub evaluations: Vec<Evaluation>,
    /// What the method reports of itself at the end (e.g. DoReMi's averaged mixture); null for most.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub method_state: serde_json::Value,
    /// A pretrained model's weights, config and tokenizer, fingerprinted (absent for the scratch
    /// model and for `random_init`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<crate::model::gpt_neo::WeightsRecord>,
    /// A JSONL task's file, fingerprinted, and the epochs of each skill's rows begun (absent for
    /// the generators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataRecord>,
    /// The steps taken in a pack with other runs (`sweep --pack`; absent when none): their
    /// numbers differ from an unpacked run's by float rounding, which training amplifies.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub packed_steps: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// A JSONL task's file as a run read it: `data.json` in the run folder (written when the run
/// starts, so a resumed run can refuse a changed file) and the manifest's `data`; the vocabulary's
/// words, one a line in id order, are `vocab.txt` beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    pub path: String,
    pub sha256: String,
    pub rows: usize,
    /// The skills' names in id order (`s1`, … for integer skills).
    pub skills: Vec<String>,
    pub vocab_size: usize,
    /// Per skill, the epochs of its training rows begun by the end of the run (0 in `data.json`).
    #[serde(default)]
    pub epochs: Vec<u64>,
}

impl DataRecord {
    /// The record of `task`'s file, or `None` for a generator.
    pub fn of(task: &dyn Task) -> Option<Self> {
        let rows = task.rows()?;
        Some(Self {
            path: rows.path().to_string(),
            sha256: rows.sha256().to_string(),
            rows: rows.len(),
            skills: rows.skill_names().to_vec(),
            vocab_size: rows.vocab().len(),
            epochs: vec![0; rows.num_skills()],
        })
    }

    /// Refuses a run folder whose `data.json` names another file content (a resumed run whose
    /// file changed); returns whether the folder has one.
    pub fn check(&self, dir: &Path) -> Result<bool> {
        let path = dir.join("data.json");
        let Some(before) =
            crate::common::read_json_record::<DataRecord>(&path, "data", "a skillit data record")?
        else {
            return Ok(false);
        };
        if before.sha256 != self.sha256 {
            return Err(Error::Invalid {
                origin: self.path.clone(),
                field: "task.path".into(),
                message: format!(
                    "has changed since the run in {} began (sha256 {} then, {} now): \
                     restore the file or train into a new folder",
                    dir.display(),
                    before.sha256.get(..12).unwrap_or(&before.sha256),
                    &self.sha256[..12]
                ),
            });
        }
        Ok(true)
    }

    /// Writes `data.json` and `vocab.txt` into a run folder that has none yet, after
    /// [`DataRecord::check`].
    pub fn claim(&self, task: &dyn Task, dir: &Path) -> Result<()> {
        if self.check(dir)? {
            return Ok(());
        }
        let words = task.vocab().words().join("\n") + "\n";
        write_atomic(&dir.join("vocab.txt"), words.as_bytes())?;
        let json = serde_json::to_vec_pretty(self).expect("a data record serializes");
        write_atomic(&dir.join("data.json"), &json)
    }
}

/// What a rerun needs from a recorded run's manifest.json.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRun {
    pub run_id: String,
    pub config: RunConfig,
    pub backend: String,
    pub git_revision: String,
    pub burn_version: String,
    pub status: String,
    #[serde(default)]
    pub evaluations: Vec<Evaluation>,
    #[serde(default)]
    pub method_state: serde_json::Value,
    #[serde(default)]
    pub packed_steps: u64,
}

/// Reads the manifest.json of the run folder `dir`.
pub fn read_manifest(dir: &Path) -> Result<RecordedRun> {
    let path = dir.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::Invalid {
        origin: path.display().to_string(),
        field: "manifest".into(),
        message: format!("cannot be read ({e}): give a run folder of skillit train or sweep"),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
        origin: path.display().to_string(),
        field: "manifest".into(),
        message: format!("is not a skillit manifest: {e}"),
    })
}

pub(crate) fn metrics_csv(
    run_id: &str,
    config: &RunConfig,
    task: &dyn Task,
    method: &dyn MixtureMethod,
    evaluations: &[(Evaluation, Vec<f64>)],
) -> Vec<u8> {
    // The header is written explicitly, so the file has it even before the first row.
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let io = "writing CSV to memory cannot fail";
    w.write_record(METRICS_COLUMNS).expect(io);
    for (eval, weights) in evaluations {
        for skill in 1..=task.num_skills() {
            w.serialize(MetricsRow {
                run_id: run_id.to_string(),
                task: task.name().to_string(),
                setting: config.setting.clone(),
                method: method.name().to_string(),
                params: method.params(),
                seed: config.seed,
                step: eval.step,
                skill,
                loss: eval.loss[skill - 1],
                accuracy: eval.accuracy[skill - 1],
                weight: weights[skill - 1],
            })
            .expect(io);
        }
    }
    w.into_inner().expect(io)
}

/// Evaluates and records: the history the method observes, and metrics.csv rewritten atomically
/// after every evaluation so that a killed run keeps what it measured.
pub(crate) struct Recorder<'a> {
    pub(crate) paths: &'a RunPaths,
    pub(crate) run_id: &'a str,
    pub(crate) config: &'a RunConfig,
    pub(crate) task: &'a dyn Task,
    pub(crate) validation: &'a [Example],
    pub(crate) device: &'a Device,
    /// Each evaluation with the mixture in force at its step.
    pub(crate) evaluations: Vec<(Evaluation, Vec<f64>)>,
    /// Probes: evaluations a method asked for at round starts, kept out of metrics.csv.
    pub(crate) probes: Vec<Evaluation>,
    pub(crate) eval_time: f64,
}

impl Recorder<'_> {
    pub(crate) fn record(
        &mut self,
        model: &Model,
        step: u64,
        mixture: &[f64],
        method: &dyn MixtureMethod,
        progress: &mut dyn FnMut(Progress) -> Flow,
    ) -> Result<()> {
        let t0 = Instant::now();
        let k = self.task.num_skills();
        let eval = evaluate(&model.valid(), self.validation, k, self.device, step);
        self.eval_time += t0.elapsed().as_secs_f64();
        progress(Progress::Eval {
            step,
            accuracy: crate::stats::mean(&eval.accuracy),
            loss: crate::stats::mean(&eval.loss),
        });
        self.evaluations.push((eval, mixture.to_vec()));
        let csv = metrics_csv(
            self.run_id,
            self.config,
            self.task,
            method,
            &self.evaluations,
        );
        write_atomic(&self.paths.metrics(), &csv)
    }

    /// Evaluates at `step` for a probing method unless an evaluation already falls there.
    pub(crate) fn probe(&mut self, model: &Model, step: u64) {
        let known = |e: &Evaluation| e.step == step;
        if self.evaluations.iter().any(|(e, _)| known(e)) || self.probes.iter().any(known) {
            return;
        }
        let t0 = Instant::now();
        let k = self.task.num_skills();
        let eval = evaluate(&model.valid(), self.validation, k, self.device, step);
        self.eval_time += t0.elapsed().as_secs_f64();
        self.probes.push(eval);
    }

    /// The regular evaluations (those written to metrics.csv).
    pub(crate) fn history(&self) -> Vec<Evaluation> {
        self.evaluations.iter().map(|(e, _)| e.clone()).collect()
    }
}

/// What a method observes up to `step`: the regular evaluations and the probes at or before it, in
/// step order (a regular one first where both fall on one step).
pub(crate) fn observed_history(
    evaluations: &[(Evaluation, Vec<f64>)],
    probes: &[Evaluation],
    step: u64,
) -> Vec<Evaluation> {
    // The regular evaluation at step 0 is taken after the first round's plan.
    let regular = evaluations
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.step <= step && !(step == 0 && e.step == 0));
    let mut all: Vec<Evaluation> = regular
        .chain(probes.iter().filter(|e| e.step <= step))
        .cloned()
        .collect();
    all.sort_by_key(|e| e.step);
    all.dedup_by_key(|e| e.step);
    all
}
