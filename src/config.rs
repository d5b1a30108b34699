//! Every file format we read, as serde structs with validation that names the file, the field and
//! what is allowed. A run config (`skillit train --config run.toml`):
//!
//! ```toml
//! preset = "laptop"            # optional: start from a preset, then override below
//! setting = "pretrain"
//! [task]
//! name = "lego"                # or "addition"
//! k = 5
//! [model]
//! d_model = 128                # the scratch transformer's shape, or a pretrained model:
//! n_layers = 2                 # kind = "gpt-neo", weights = "DIR" (a Hugging Face snapshot)
//! [training]
//! steps = 6000
//! lr = 1e-3
//! [method]
//! name = "stratified"          # or { name = "fixed", weights = [1, 1, 1, 3, 5] }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skillit_synthetic::TaskSpec;

pub use crate::common::read_toml;
use crate::method::MethodSpec;
use crate::model::ModelConfig;
use crate::{Error, Result};

/// Which tokens the training loss covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Next-token cross-entropy over the whole sequence (the authors' default, docs/paper.md §4).
    #[default]
    Full,
    /// Cross-entropy of the answer token only.
    Answer,
}

/// The optimisation of one run (docs/paper.md §5 for the authors' values; the defaults here are
/// ours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    /// Linear warm-up steps, then linear decay to 0 at `steps`.
    pub warmup: u64,
    /// AdamW's decoupled weight decay, on matrices only (none on biases and LayerNorm).
    pub weight_decay: f64,
    /// AdamW's ε.
    pub eps: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub grad_clip: f64,
    /// Which tokens the loss covers.
    pub loss: LossKind,
    /// Evaluate every this many steps (and at step 0 and at the end).
    pub eval_every: u64,
    /// Steps per round: the mixture method chooses the mixture before each round
    /// (docs/paper.md §6). 0 = one round for the whole run.
    pub steps_per_round: u64,
    /// Validation examples per skill.
    pub val_per_skill: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            steps: 6000,
            batch_size: 32,
            lr: 1e-3,
            warmup: 50,
            weight_decay: 0.01,
            eps: 1e-8,
            grad_clip: 1.0,
            loss: LossKind::Full,
            eval_every: 50,
            steps_per_round: 0,
            val_per_skill: 100,
        }
    }
}

/// One training run, complete: a run config alone reproduces the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The experimental setting recorded with the metrics (`pretrain`, `finetune`, ...).
    #[serde(default = "default_setting")]
    pub setting: String,
    pub task: TaskSpec,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub training: TrainingConfig,
    #[serde(default = "default_method")]
    pub method: MethodSpec,
    #[serde(default)]
    pub seed: u64,
    /// Fine-tuning's target skill (1-based); required by `setting = "finetune"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<usize>,
    /// The skills the run trains on (1-based). Default: all of them in pre-training; in fine-tuning
    /// the published graph's (the target and its prerequisites), else skills 1..=target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_skills: Option<Vec<usize>>,
    /// Out-of-domain's evaluation skills (1-based), disjoint from the train skills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_skills: Option<Vec<usize>>,
    /// Weights to start from instead of a fresh initialisation: a base folder (`bases/NAME`, whose
    /// model the run then has) or the `model.bpk` of an earlier run of the same model shape and
    /// vocabulary (continual training; the optimizer starts fresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

/// The settings of docs/paper.md §1: `pretrain` (train skills = eval skills), `finetune` (a target
/// and its prerequisites), `out_of_domain` (train and eval skills disjoint; Skill-It needs a k×m
/// graph).
pub const SETTINGS: [&str; 3] = ["pretrain", "finetune", "out_of_domain"];

/// Applies `--set key=value` to a method spec: the value is read as TOML (`0.5`, `true`, `"x"`,
/// `[1, 2]`), else as a string.
pub fn set_method_field(method: &MethodSpec, assignment: &str) -> Result<MethodSpec> {
    let bad = |message: String| Error::flag("--set", message);
    let Some((key, value)) = assignment.split_once('=') else {
        return Err(bad(format!("'{assignment}' is not key=value")));
    };
    let key = key.trim();
    if key == "name" {
        return Err(bad("use --method to choose the method".into()));
    }
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
    let mut table = toml::Table::try_from(method).expect("a method serializes to a table");
    table.insert(key.to_string(), value);
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(format!("{key}: {}", e.message().trim())))
}

/// Reads a method file: a TOML table like the run file's `[method]` section.
pub fn read_method_file(path: &Path) -> Result<MethodSpec> {
    read_toml(path)
}

fn default_setting() -> String {
    "pretrain".into()
}

fn default_method() -> MethodSpec {
    MethodSpec::Stratified
}

/// The named starting points of `--preset` (docs/defaults.md says how they were chosen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Small and quick (LEGO k = 3 or addition k = 3, d_model 64 × 2 layers, answer loss, 1000
    /// steps: about 20 s on one core). It learns LEGO s1 (the root's literal bit); the deeper skills
    /// and addition stay at chance in this budget (docs/defaults.md).
    Laptop,
    /// LEGO k = 5 / addition k = 3 with the d_model 128 × 2 model at the paper's 6000 steps. No
    /// from-scratch recipe has reached the aim yet (docs/defaults.md); this is the paper's budget.
    Paper,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Laptop => "laptop",
            Preset::Paper => "paper",
        }
    }

    /// The preset's run config for `task` (`lego` or `addition`).
    pub fn config(self, task: &str) -> RunConfig {
        let (task, model, training) = match self {
            Preset::Laptop => (
                preset_task(task, 3),
                ModelConfig {
                    d_model: 64,
                    n_layers: 2,
                    n_heads: 4,
                    d_ff: 256,
                    dropout: 0.0,
                    context: 32,
                    ..ModelConfig::default()
                },
                TrainingConfig {
                    steps: 1000,
                    lr: 3e-3,
                    loss: LossKind::Answer,
                    steps_per_round: 200,
                    ..TrainingConfig::default()
                },
            ),
            Preset::Paper => (
                preset_task(task, 5),
                ModelConfig::default(),
                TrainingConfig {
                    steps: 6000,
                    steps_per_round: 1000,
                    ..TrainingConfig::default()
                },
            ),
        };
        RunConfig {
            setting: default_setting(),
            task,
            model,
            training,
            method: MethodSpec::Stratified,
            seed: 0,
            target: None,
            train_skills: None,
            eval_skills: None,
            init: None,
        }
    }
}

/// A preset's task: addition k = 3, recall or LEGO (chain) with `k` clauses.
fn preset_task(task: &str, k: usize) -> TaskSpec {
    match task {
        "addition" => TaskSpec::Addition {
            k: 3,
            shared_vocab: false,
        },
        "recall" => TaskSpec::Recall {
            k,
            queries: 1,
            dense: false,
            pointers: false,
            hops: 1,
            order: skillit_synthetic::ChainOrder::Any,
            parity: false,
        },
        _ => TaskSpec::Lego {
            k,
            graph: Default::default(),
            dense: false,
            shuffled: false,
            shared_vocab: false,
        },
    }
}

/// A TOML run file: a run config whose every section is optional, over an optional preset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    preset: Option<Preset>,
    setting: Option<String>,
    task: Option<TaskSpec>,
    model: Option<toml::Table>,
    training: Option<toml::Table>,
    method: Option<MethodSpec>,
    seed: Option<u64>,
    target: Option<usize>,
    train_skills: Option<Vec<usize>>,
    eval_skills: Option<Vec<usize>>,
    init: Option<PathBuf>,
}

/// Merges `overrides` over the serialized `base` and deserializes the result, so a file may set any
/// subset of a section's fields.
pub(crate) fn merge<T: Serialize + for<'de> Deserialize<'de>>(
    base: &T,
    overrides: Option<toml::Table>,
    origin: &str,
    section: &str,
) -> Result<T> {
    let overrides = overrides.unwrap_or_default();
    let mut table = toml::Table::try_from(base).expect("a config serializes to a TOML table");
    for (k, v) in overrides {
        table.insert(k, v);
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Error::Invalid {
            origin: origin.into(),
            field: format!("[{section}]"),
            message: e.message().trim().to_string(),
        })
}

/// The model a run starts from before its own `[model]` fields: a base folder's model when `init`
/// names one (its shape is the base's), else the preset's.
pub fn start_model(init: Option<&Path>, preset: &ModelConfig) -> Result<ModelConfig> {
    let base = init
        .map(crate::model::base::open_init)
        .transpose()?
        .flatten();
    Ok(base.map_or_else(|| preset.clone(), |base| base.manifest.model))
}

/// A bad-input error naming the file (`origin`), the field and what is wrong.
fn invalid<T>(origin: &str, field: &str, message: String) -> Result<T> {
    Err(Error::Invalid {
        origin: origin.to_string(),
        field: field.to_string(),
        message,
    })
}

impl TrainingConfig {
    /// The learning rate, step counts and optimizer numbers: each a one-line error naming its
    /// field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |field: &str, message: String| invalid(origin, field, message);
        let t = self;
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad(
                "training.lr",
                format!("{} must be a positive finite number", t.lr),
            );
        }
        if t.steps == 0 {
            return bad("training.steps", "must be at least 1".into());
        }
        if t.batch_size == 0 {
            return bad("training.batch_size", "must be at least 1".into());
        }
        if t.eval_every == 0 {
            return bad("training.eval_every", "must be at least 1".into());
        }
        if t.val_per_skill == 0 {
            return bad("training.val_per_skill", "must be at least 1".into());
        }
        for (field, v) in [
            ("training.weight_decay", t.weight_decay),
            ("training.eps", t.eps),
            ("training.grad_clip", t.grad_clip),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("{v} must be a finite number ≥ 0"));
            }
        }
        if t.warmup >= t.steps {
            return bad(
                "training.warmup",
                format!(
                    "{} warm-up steps leave none of the {} steps to decay",
                    t.warmup, t.steps
                ),
            );
        }
        Ok(())
    }
}

/// The words of the task a run folder's model was trained on: its `vocab.txt` (a JSONL task's),
/// else the task of its `manifest.json`; `None` when neither can be read.
fn recorded_words(dir: &Path) -> Option<Vec<String>> {
    if let Ok(text) = std::fs::read_to_string(dir.join("vocab.txt")) {
        return Some(text.lines().map(String::from).collect());
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).ok()?).ok()?;
    let spec: TaskSpec = serde_json::from_value(manifest["config"]["task"].clone()).ok()?;
    let task = spec.build().ok()?;
    Some(task.vocab().words().into_iter().map(String::from).collect())
}

impl RunConfig {
    /// Starts the run from `path` (a base folder or a run's model.bpk); a base folder also gives
    /// the run its model.
    pub fn start_from(&mut self, path: &Path) -> Result<()> {
        self.model = start_model(Some(path), &self.model)?;
        self.init = Some(path.to_path_buf());
        Ok(())
    }

    /// The skills the run trains on (see [`RunConfig::train_skills`]'s field docs).
    pub fn train_skills(&self, task: &dyn skillit_synthetic::Task) -> Vec<usize> {
        if let Some(s) = &self.train_skills {
            return s.clone();
        }
        match (self.setting.as_str(), self.target) {
            ("finetune", Some(target)) => {
                crate::graph::SkillsGraph::published(task.name(), "finetune", task.num_skills())
                    .filter(|g| g.eval_skills == [target])
                    .map(|g| g.train_skills)
                    .unwrap_or_else(|| (1..=target).collect())
            }
            _ => (1..=task.num_skills()).collect(),
        }
    }

    /// Reads a run file: a preset (file field or `preset` argument, default `laptop`) with the
    /// file's fields over it.
    pub fn from_file(path: &Path, preset: Option<Preset>, task_hint: &str) -> Result<Self> {
        let origin = path.display().to_string();
        let file: RunFile = read_toml(path)?;
        let task_name = match &file.task {
            Some(task) => task.name(),
            None => task_hint,
        };
        let preset = file.preset.or(preset).unwrap_or(Preset::Laptop);
        let base = preset.config(task_name);
        let config = RunConfig {
            setting: file.setting.unwrap_or(base.setting.clone()),
            task: file
                .task
                .map(|t| t.relative_to(path.parent().unwrap_or(Path::new(""))))
                .unwrap_or(base.task.clone()),
            model: merge(
                &start_model(file.init.as_deref(), &base.model)?,
                file.model,
                &origin,
                "model",
            )?,
            training: merge(&base.training, file.training, &origin, "training")?,
            method: file.method.unwrap_or(base.method.clone()),
            seed: file.seed.unwrap_or(base.seed),
            target: file.target,
            train_skills: file.train_skills,
            eval_skills: file.eval_skills,
            init: file.init,
        };
        config.validate(&origin)?;
        Ok(config)
    }

    /// Checks every field; `origin` is the file (or `command line`) named in the message.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |field: &str, message: String| invalid(origin, field, message);
        let task = self.task.build().map_err(|e| Error::Invalid {
            origin: origin.to_string(),
            field: "task".into(),
            message: e.to_string(),
        })?;
        // A folder must be a base whose weights match its manifest, read by this run's task
        // (a file may be a stage's weights that a sweep has yet to train).
        // Opened once: a base's weights are hashed against its manifest.
        let base = match &self.init {
            Some(path) => crate::model::base::open_init(path)?,
            None => None,
        };
        if let Some(base) = &base {
            if self.model.init_vocab == 0 {
                base.check_vocab(task.name(), task.vocab().name())?;
            }
        }
        self.model.validate(origin)?;
        if self.model.prefix_lm && self.training.loss == LossKind::Full {
            return bad(
                "model.prefix_lm",
                "lets the prompt attend in both directions, so a whole-sequence loss would show \
                 each prompt token the token it predicts: set training.loss = \"answer\""
                    .into(),
            );
        }
        if self.model.init_layers > 0 && self.init.is_none() {
            return bad(
                "model.init_layers",
                "grows the model from init weights: give `init` (a run's model.bpk)".into(),
            );
        }
        if self.model.init_vocab > 0 {
            self.check_init_vocab(task.vocab(), base.as_ref(), origin)?;
        }
        // A pretrained model's context comes from its config.json; its tokenizer's lengths are
        // checked against it when the examples are encoded.
        if self.model.kind == crate::model::ModelKind::Scratch
            && self.model.context < task.seq_len()
        {
            let which = match task.rows() {
                Some(rows) => format!("line {} of {}", rows.longest().1, rows.path()),
                None => task.describe(),
            };
            return bad(
                "model.context",
                format!(
                    "{} is shorter than the task's sequences ({} tokens for {which})",
                    self.model.context,
                    task.seq_len(),
                ),
            );
        }
        self.training.validate(origin)?;
        if task.rows().is_some() {
            // A JSONL task's split: every skill needs validation and training rows.
            skillit_synthetic::ValidationSet::standard(task.as_ref(), self.training.val_per_skill)?;
        }
        let train = self.validate_skills(task.as_ref(), origin)?;
        self.method.validate(task.num_skills(), origin)?;
        self.validate_graph(task.as_ref(), &train, origin)
    }

    /// `model.init_vocab` against the task's vocabulary and, where they can be read, the init
    /// weights' words (`base`'s named vocabulary when `init` is a base, else those of the run
    /// folder that holds the `model.bpk`): they must be the first `init_vocab` words of the task's.
    fn check_init_vocab(
        &self,
        vocab: &skillit_synthetic::Vocab,
        base: Option<&crate::model::base::Base>,
        origin: &str,
    ) -> Result<()> {
        let n = self.model.init_vocab;
        let bad = |message: String| {
            Err(Error::Invalid {
                origin: origin.to_string(),
                field: "model.init_vocab".into(),
                message,
            })
        };
        let Some(path) = self.init.as_deref() else {
            return bad("grows the vocabulary of init weights: give `init`".into());
        };
        if n >= vocab.len() {
            return bad(format!(
                "{n} must be fewer than the {} words of the task's {} vocabulary",
                vocab.len(),
                vocab.name()
            ));
        }
        let words: Option<Vec<String>> = match base {
            Some(base) => skillit_synthetic::vocab_named(&base.manifest.vocab)
                .map(|v| v.words().into_iter().map(String::from).collect()),
            None => path.parent().and_then(recorded_words),
        };
        match words {
            Some(words) if words.len() != n || words[..] != vocab.words()[..n] => bad(format!(
                "{n}, but the init weights read {} words ({}), which are not the first {n} of \
                 the task's {} vocabulary",
                words.len(),
                path.display(),
                vocab.name()
            )),
            _ => Ok(()),
        }
    }

    /// The setting, the target and the train and eval skills against the task's k; returns the
    /// skills the run trains on.
    fn validate_skills(
        &self,
        task: &dyn skillit_synthetic::Task,
        origin: &str,
    ) -> Result<Vec<usize>> {
        let bad = |field: &str, message: String| invalid(origin, field, message);
        if !SETTINGS.contains(&self.setting.as_str()) {
            return bad(
                "setting",
                format!("'{}' is not one of {}", self.setting, SETTINGS.join(", ")),
            );
        }
        let k = task.num_skills();
        if let Some(target) = self.target {
            if target == 0 || target > k {
                return bad("target", format!("skill {target} is not in 1..={k}"));
            }
        } else if self.setting == "finetune" {
            return bad(
                "target",
                "fine-tuning needs a target skill (target = N)".into(),
            );
        }
        let train = self.train_skills(task);
        if train.is_empty() || train.iter().any(|&s| s == 0 || s > k) {
            return bad(
                "train_skills",
                format!("{train:?} must be skills in 1..={k}"),
            );
        }
        if self.setting == "out_of_domain" {
            let Some(eval) = &self.eval_skills else {
                return bad(
                    "eval_skills",
                    "out_of_domain needs eval_skills, disjoint from train_skills".into(),
                );
            };
            if self.train_skills.is_none() {
                return bad("train_skills", "out_of_domain needs train_skills".into());
            }
            if eval.is_empty() || eval.iter().any(|&s| s == 0 || s > k || train.contains(&s)) {
                return bad(
                    "eval_skills",
                    format!("{eval:?} must be skills in 1..={k} outside train_skills {train:?}"),
                );
            }
        }
        Ok(train)
    }

    /// Skill-It's graph (and static's) must have the run's train skills as rows and its eval
    /// skills as columns.
    fn validate_graph(
        &self,
        task: &dyn skillit_synthetic::Task,
        train: &[usize],
        origin: &str,
    ) -> Result<()> {
        let bad = |field: &str, message: String| invalid(origin, field, message);
        if matches!(
            self.method,
            MethodSpec::SkillIt { .. } | MethodSpec::Static { .. }
        ) {
            if task.num_skills() < 2 {
                return bad(
                    "method",
                    format!(
                        "{} mixes skills through a graph between them, and {} has one skill: \
                         it needs at least 2",
                        match self.method {
                            MethodSpec::SkillIt { .. } => "skill_it",
                            _ => "static",
                        },
                        task.describe()
                    ),
                );
            }
            let graph = self.method.graph(task, &self.setting, origin)?;
            if graph.train_skills != train {
                return bad(
                    "method.graph",
                    format!(
                        "its train skills {:?} are not the run's {train:?}",
                        graph.train_skills
                    ),
                );
            }
            if let Some(eval) = &self.eval_skills {
                if &graph.eval_skills != eval {
                    return bad(
                        "method.graph",
                        format!(
                            "its eval skills {:?} are not the run's {eval:?}",
                            graph.eval_skills
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}
