//! `skillit base build`: pretrain a base from a recipe and write its folder (model/base.rs).
//!
//! A recipe is a TOML file: the model, a seed, and stages trained one after the other, each from
//! the one before (the first from the seed's fresh model), each a run of `skillit train` on a
//! corpus task (`recall`: one-hop lookup, docs/paper.md §12), plus the tasks the base serves, whose
//! step-0 accuracy is recorded:
//!
//! ```toml
//! name = "recall8"
//! seed = 0
//! # init = "bases/OTHER"                       # optional: continue another base
//! [model]
//! n_layers = 8
//! conv_kernel = 4
//! [[stages]]
//! task = { name = "recall", k = 5 }
//! method = { name = "fixed", weights = [1, 0] }   # literal recall first
//! converged_loss = 0.05                           # every skill's validation loss must reach it
//! training = { steps = 1500, lr = 1e-3 }
//! [[serves]]
//! name = "lego"
//! k = 5
//! ```
//!
//! Each stage's run lives in `OUT/stages/N-TASK/` and resumes like any run; a finished stage of
//! the same config is not trained again while every stage before it was kept, so the command
//! continues a killed build, also in a base folder that was moved. A stage whose final validation
//! loss is above its `converged_loss` on any skill it trained on stops the build with an error: a
//! base is only written from stages that converged (the lookup stage is the fragile part,
//! docs/paper.md §12).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use skillit_synthetic::{Task, TaskSpec, ValidationSet};

use crate::config::{merge, read_toml, RunConfig, TrainingConfig};
use crate::device::Selected;
use crate::method::MethodSpec;
use crate::model::base::{BaseManifest, StageRecord, StepZero, MANIFEST, WEIGHTS};
use crate::model::ModelConfig;
use crate::results::write_atomic;
use crate::train::{Flow, Progress};
use crate::{Error, Result};

/// A recipe file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    name: String,
    #[serde(default)]
    seed: u64,
    /// A base folder (or a run's model.bpk) the first stage starts from; a base also gives the
    /// model, as for a run.
    #[serde(default)]
    init: Option<PathBuf>,
    #[serde(default)]
    model: Option<toml::Table>,
    stages: Vec<StageFile>,
    #[serde(default)]
    serves: Vec<TaskSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    task: TaskSpec,
    #[serde(default = "stratified")]
    method: MethodSpec,
    #[serde(default)]
    training: Option<toml::Table>,
    converged_loss: f64,
}

fn stratified() -> MethodSpec {
    MethodSpec::Stratified
}

/// A checked recipe: the run config of every stage, in order.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub seed: u64,
    pub model: ModelConfig,
    /// Each stage's run config and its convergence threshold. The first stage's `init` is the
    /// recipe's (a fresh model from the seed when `None`); a later stage's is the stage before's
    /// weights, filled in by [`build`].
    pub stages: Vec<(RunConfig, f64)>,
    pub serves: Vec<TaskSpec>,
    /// The file's text, kept in the manifest.
    pub source: String,
}

impl Recipe {
    /// Reads and checks a recipe file: every stage's config is validated before anything runs.
    pub fn read(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let file: RecipeFile = read_toml(path)?;
        let bad = |field: String, message: String| Error::Invalid {
            origin: origin.clone(),
            field,
            message,
        };
        if file.stages.is_empty() {
            return Err(bad(
                "stages".into(),
                "needs at least one [[stages]] entry".into(),
            ));
        }
        let start = crate::config::start_model(file.init.as_deref(), &ModelConfig::default())?;
        let model = merge(&start, file.model, &origin, "model")?;
        if model.kind != crate::model::ModelKind::Scratch {
            return Err(bad(
                "model.kind".into(),
                "a base is a scratch model (gpt-neo is pretrained already)".into(),
            ));
        }
        let mut stages = Vec::new();
        // The vocabulary of the stages so far: its name and words.
        let mut vocab: Option<(&'static str, Vec<String>)> = None;
        for (i, stage) in file.stages.into_iter().enumerate() {
            let field = |f: &str| format!("stages[{}].{f}", i + 1);
            if !(stage.converged_loss.is_finite() && stage.converged_loss > 0.0) {
                return Err(bad(
                    field("converged_loss"),
                    format!("{} must be a positive finite number", stage.converged_loss),
                ));
            }
            let training = merge(
                &TrainingConfig::default(),
                stage.training,
                &origin,
                &field("training"),
            )?;
            let mut config = RunConfig {
                setting: "pretrain".into(),
                task: stage.task,
                // Only the first stage reads init weights of another vocabulary (the recipe's
                // `model.init_vocab`); a later one grows from the stage before, below.
                model: ModelConfig {
                    init_vocab: if i == 0 { model.init_vocab } else { 0 },
                    ..model.clone()
                },
                training,
                method: stage.method,
                seed: file.seed,
                target: None,
                train_skills: None,
                eval_skills: None,
                // The first stage starts from the recipe's `init` (checked here); each later one
                // from the stage before (filled in by `build`).
                init: if i == 0 { file.init.clone() } else { None },
            };
            config.validate(&format!("{origin}: stages[{}]", i + 1))?;
            let task = config.task.build()?;
            let words: Vec<String> = task.vocab().words().into_iter().map(String::from).collect();
            if let Some((name, before)) = &vocab {
                // A stage may extend the vocabulary of the stages before (LEGO's within the
                // shared one): the model grows its embedding and head there (`init_vocab`).
                let extends = words.len() > before.len() && words[..before.len()] == before[..];
                if extends {
                    config.model.init_vocab = before.len();
                } else if words != *before {
                    return Err(bad(
                        field("task"),
                        format!(
                            "uses the {} vocabulary, which neither is nor extends the {name} \
                             vocabulary of the stages before",
                            task.vocab().name()
                        ),
                    ));
                }
            }
            vocab = Some((task.vocab().name(), words));
            stages.push((config, stage.converged_loss));
        }
        let vocab = vocab.map(|(name, _)| name);
        for (i, task) in file.serves.iter().enumerate() {
            let served = task.build()?.vocab().name();
            if Some(served) != vocab {
                return Err(bad(
                    format!("serves[{}]", i + 1),
                    format!(
                        "{} uses the {served} vocabulary; the base reads the {}",
                        task.name(),
                        vocab.unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(Self {
            name: file.name,
            seed: file.seed,
            // The base's model: the last stage's vocabulary, grown from nothing.
            model: ModelConfig {
                init_vocab: 0,
                ..model
            },
            stages,
            serves: file.serves,
            source: std::fs::read_to_string(path).unwrap_or_default(),
        })
    }

    /// The stage folders under `out`, in order.
    pub fn stage_dirs(&self, out: &Path) -> Vec<PathBuf> {
        self.stages
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                out.join("stages")
                    .join(format!("{}-{}", i + 1, c.task.name()))
            })
            .collect()
    }
}

/// What [`build`] reports: a stage's training progress, or that a stage was found finished.
#[derive(Debug, Clone, Copy)]
pub enum BuildEvent {
    Stage { stage: usize, progress: Progress },
    StageDone { stage: usize, reused: bool },
}

/// Trains every stage of `recipe` into `out/stages/` (finished stages are kept), checks that each
/// converged, and writes `out/model.bpk` and `out/base.json`.
pub fn build(
    recipe: &Recipe,
    out: &Path,
    selected: &Selected,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<BaseManifest> {
    crate::results::prepare_output_dir(out, "--out")?;
    let dirs = recipe.stage_dirs(out);
    let mut records = Vec::new();
    let mut previous: Option<PathBuf> = None;
    let mut wall_time = 0.0;
    let mut trained_any = false;
    for (i, ((config, converged_loss), dir)) in recipe.stages.iter().zip(&dirs).enumerate() {
        let mut config = config.clone();
        if previous.is_some() {
            config.init = previous.clone();
        }
        // A stage is kept only while every stage before it was: one trained anew gives the
        // stages after it other starting weights.
        let kept = match trained_any {
            false => finished_stage(dir, &config),
            true => None,
        };
        trained_any |= kept.is_none();
        let manifest = match kept {
            Some(m) => {
                on_event(BuildEvent::StageDone {
                    stage: i + 1,
                    reused: true,
                });
                m
            }
            None => {
                let run_id = format!("stage{}-{}", i + 1, config.task.name());
                let m = crate::train::train(&config, selected, dir, Some(&run_id), &mut |p| {
                    on_event(BuildEvent::Stage {
                        stage: i + 1,
                        progress: p,
                    });
                    Flow::Continue
                })?;
                on_event(BuildEvent::StageDone {
                    stage: i + 1,
                    reused: false,
                });
                let json = serde_json::to_value(&m).expect("a manifest serializes");
                serde_json::from_value(json).expect("a manifest reads back")
            }
        };
        let record = stage_record(&config, &manifest, *converged_loss, dir)?;
        wall_time += record.wall_time_s;
        records.push(record);
        previous = Some(dir.join(WEIGHTS));
    }
    let last = previous.expect("a recipe has a stage");
    let bytes = std::fs::read(&last).map_err(|source| Error::Io {
        path: last.clone(),
        source,
    })?;
    let weights = out.join(WEIGHTS);
    write_atomic(&weights, &bytes)?;
    let (sha256, size) = crate::model::sha256_file(&weights)?;
    let step_zero = recipe
        .serves
        .iter()
        .map(|task| step_zero(&recipe.model, task, &weights, selected))
        .collect::<Result<Vec<_>>>()?;
    let last_task = recipe.stages[recipe.stages.len() - 1].0.task.build()?;
    let manifest = BaseManifest {
        name: recipe.name.clone(),
        model: recipe.model.clone(),
        vocab: last_task.vocab().name().to_string(),
        sha256,
        bytes: size,
        recipe: recipe.source.clone(),
        seed: recipe.seed,
        stages: records,
        step_zero,
        wall_time_s: wall_time,
        backend: selected.backend.clone(),
        git_revision: env!("SKILLIT_GIT_REVISION").to_string(),
        burn_version: crate::train::BURN_VERSION.to_string(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    write_atomic(&out.join(MANIFEST), &json)?;
    Ok(manifest)
}

/// What a stage's manifest must say for the base: its status, times and evaluations.
#[derive(Debug, Clone, Deserialize)]
struct StageManifest {
    status: String,
    config: RunConfig,
    method: String,
    params: String,
    wall_time_s: f64,
    ms_per_step: f64,
    steps_done: u64,
    examples_per_skill: Vec<u64>,
    evaluations: Vec<crate::method::Evaluation>,
}

/// The stage folder's manifest when it holds this stage finished: the same config but for
/// `init`, which names the stage before's weights by a path that changes when the base folder is
/// moved or copied (the caller keeps a stage only while it kept every stage before it).
fn finished_stage(dir: &Path, config: &RunConfig) -> Option<StageManifest> {
    let bytes = std::fs::read(dir.join("manifest.json")).ok()?;
    let m: StageManifest = serde_json::from_slice(&bytes).ok()?;
    let same = RunConfig {
        init: config.init.clone(),
        ..m.config.clone()
    } == *config;
    (m.status == "finished" && same && dir.join(WEIGHTS).is_file()).then_some(m)
}

/// The stage's record, or an error where it did not finish or did not converge.
fn stage_record(
    config: &RunConfig,
    m: &StageManifest,
    converged_loss: f64,
    dir: &Path,
) -> Result<StageRecord> {
    let task = config.task.build()?;
    let origin = dir.display().to_string();
    if m.status != "finished" {
        return Err(Error::Check {
            origin,
            message: format!("the stage on {} ended {}", task.describe(), m.status),
        });
    }
    let last = m.evaluations.last().ok_or_else(|| Error::Check {
        origin: origin.clone(),
        message: "the stage recorded no evaluation".into(),
    })?;
    // Only the skills the stage trained on must converge (a first stage may leave some out).
    if let Some((s, l)) = last
        .loss
        .iter()
        .enumerate()
        .filter(|&(s, _)| m.examples_per_skill.get(s).is_some_and(|&n| n > 0))
        .find(|(_, &l)| l.is_nan() || l > converged_loss)
    {
        return Err(Error::Check {
            origin,
            message: format!(
                "the stage on {} did not converge: skill {} ended at validation loss {l:.4} \
                 > converged_loss = {converged_loss} after {} steps; lengthen its steps or \
                 change its recipe",
                task.describe(),
                s + 1,
                m.steps_done
            ),
        });
    }
    Ok(StageRecord {
        task: task.describe(),
        method: crate::results::method_label(&m.method, &m.params),
        steps: m.steps_done,
        examples_per_skill: m.examples_per_skill.clone(),
        final_loss: last.loss.clone(),
        final_accuracy: last.accuracy.clone(),
        converged_loss,
        wall_time_s: m.wall_time_s,
        ms_per_step: m.ms_per_step,
    })
}

/// The base's per-skill validation accuracy and loss on `task` (step 0 of a run from it).
fn step_zero(
    model: &ModelConfig,
    spec: &TaskSpec,
    weights: &Path,
    selected: &Selected,
) -> Result<StepZero> {
    let task = spec.build()?;
    let eval = evaluate_weights(model, task.as_ref(), weights, selected)?;
    Ok(StepZero {
        task: task.describe(),
        accuracy: eval.accuracy,
        loss: eval.loss,
    })
}

/// The model `model` of `task` with the weights in `weights`, ready for inference on
/// `selected`'s device: built for training (on the autodiff device), as runs build it, then taken
/// off it, so that no forward keeps its graph in memory.
pub fn load_weights(
    model: &ModelConfig,
    task: &dyn Task,
    weights: &Path,
    selected: &Selected,
) -> Result<crate::model::Model> {
    use burn::module::Module;
    let mut rng = skillit_synthetic::stream_rng(0, skillit_synthetic::Purpose(99), 0);
    let (m, _) = model.build(task.vocab(), &mut rng, &selected.device.clone().autodiff())?;
    Ok(m.try_load_file(weights)
        .map_err(|e| Error::Invalid {
            origin: weights.display().to_string(),
            field: "init".into(),
            message: format!("cannot be loaded as a {} model: {e:?}", task.name()),
        })?
        .valid())
}

/// The per-skill evaluation of the scratch model `model` with `weights` on `task`'s standard
/// validation set (100 examples per skill).
pub fn evaluate_weights(
    model: &ModelConfig,
    task: &dyn Task,
    weights: &Path,
    selected: &Selected,
) -> Result<crate::method::Evaluation> {
    let m = load_weights(model, task, weights, selected)?;
    let validation = ValidationSet::standard(task, crate::data::VALIDATION_PER_SKILL)?;
    let examples: Vec<_> = validation.iter().cloned().collect();
    Ok(crate::train::evaluate(
        &m,
        &examples,
        task.num_skills(),
        &selected.device,
        0,
    ))
}
