//! Mixture methods: what proportion of each skill the next round of training draws.
//!
//! A method observes the step, the round, every evaluation so far (per-skill validation loss and
//! accuracy) and returns the mixture over the training skills for the next round
//! (docs/paper.md §6). Its whole state serialises, so a run can resume exactly. A new method is one
//! file plus one line in [`build`].

mod aioli;
mod curriculum;
mod doremi;
mod fixed;
mod odm;
mod skill_curriculum;
mod skill_it;
mod stratified;
mod target_only;

pub use aioli::{Aioli, AioliConfig};
pub use curriculum::{Curriculum, PacingConfig, PoolOrder};
pub use doremi::{Doremi, DoremiConfig, DoremiStage};
pub use fixed::Fixed;
pub use odm::{Odm, OdmConfig, OdmReward};
pub use skill_curriculum::{SkillCurriculum, SkillCurriculumConfig};
pub use skill_it::{exp_weights, Aggregate, SkillIt, SkillItConfig, WindowUnit};
pub use stratified::Stratified;
pub use target_only::TargetOnly;

pub use crate::common::Evaluation;
use crate::graph::SkillsGraph;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a method may observe before a round.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Optimizer steps taken so far.
    pub step: u64,
    /// The round about to start (0-based).
    pub round: usize,
    /// The number of skills of the task (the mixture's length).
    pub num_skills: usize,
    /// The skills the setting trains on (1-based ids): all of them in pre-training, the target and
    /// its prerequisites in fine-tuning.
    pub train_skills: &'a [usize],
    /// Optimizer steps per round (the config's; a method may set its own round lengths).
    pub steps_per_round: u64,
    /// The run's whole budget in optimizer steps.
    pub total_steps: u64,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Every evaluation so far, oldest first (the first is at step 0, before any training). A method
    /// that [`MixtureMethod::wants_probe`] also sees one at the current step.
    pub evaluations: &'a [Evaluation],
    /// Each skill's mean training loss (the loss the run trains on) over the previous round's
    /// examples, `None` where the round had none; empty before the first round.
    pub train_losses: &'a [Option<f64>],
}

/// A finished run a method learns from ([`MixtureMethod::reference`]).
#[derive(Debug, Clone)]
pub struct ReferenceRun {
    /// Its folder (`model.bpk` holds its final weights).
    pub dir: std::path::PathBuf,
    /// Its evaluations, every `eval_every` steps, step 0 included.
    pub evaluations: Vec<Evaluation>,
    /// Its method's final state (the manifest's `method_state`).
    pub method_state: serde_json::Value,
}

/// What a method asks the next round to train on.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Examples drawn from the training streams with these skill proportions (length k).
    Mixture(Vec<f64>),
    /// These examples of the scored pool (indices into it), in this order.
    Pool(Vec<usize>),
}

/// The pool the example-level curricula choose from: `n` examples drawn stratified over the train
/// skills, scored by the initial model's answer-token loss.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPool {
    /// Each example's skill (1-based).
    pub skills: Vec<usize>,
    /// Each example's answer-token cross-entropy under the initial model (nats); empty for a
    /// method that does not [`MixtureMethod::scores_pool`].
    pub losses: Vec<f64>,
    /// Each example's answer token (an id of the task's vocabulary).
    pub answers: Vec<u32>,
    /// The run's own stream for any random order a method puts on the pool (the same on resume).
    pub rng: rand_chacha::ChaCha8Rng,
}

/// A way of choosing the training data mixture.
pub trait MixtureMethod: Send {
    /// The method's registry name.
    fn name(&self) -> &'static str;

    /// The method's parameters as one string (`eta=0.5,window=3`), empty for none: the `params`
    /// column of metrics.csv.
    fn params(&self) -> String;

    /// The proportions of each training skill for the next round; non-negative, summing to 1.
    fn mixture(&mut self, observation: &Observation) -> Vec<f64>;

    /// What the next round trains on: by default, a round drawn with [`MixtureMethod::mixture`]'s
    /// proportions. `rng` is the round's own stream.
    /// `n` is the number of examples the round holds.
    fn plan(
        &mut self,
        observation: &Observation,
        _n: usize,
        _rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Plan {
        Plan::Mixture(self.mixture(observation))
    }

    /// How many optimizer steps the next round lasts (`default`: the config's steps per round).
    fn round_steps(&mut self, _observation: &Observation, default: u64) -> u64 {
        default
    }

    /// Whether the method needs the scored pool ([`MixtureMethod::set_pool`]) before round 0.
    fn wants_pool(&self) -> bool {
        false
    }

    /// Whether the pool needs the initial model's scores; without them
    /// [`ScoredPool::losses`] is empty and the loop skips scoring the pool.
    fn scores_pool(&self) -> bool {
        true
    }

    /// The pool's skill proportions, one weight per skill of the task (`None`: uniform over the
    /// training skills). Skills the setting does not train on get none.
    fn pool_mixture(&self) -> Option<Vec<f64>> {
        None
    }

    /// Receives the scored pool.
    fn set_pool(&mut self, _pool: ScoredPool) {}

    /// Whether the method needs the validation losses at the start of every round: the loop then
    /// evaluates there when no evaluation falls on that step (a *probe*: seen by the method and
    /// kept in the checkpoint, not written to metrics.csv).
    fn wants_probe(&self) -> bool {
        false
    }

    /// A method that learns from another run names it here: the folder inside the run's that
    /// holds it and its method. The loop trains that run first (same config and seed; a finished
    /// one is kept) and hands it to [`MixtureMethod::set_reference`].
    fn reference(&self) -> Option<(&'static str, MethodSpec)> {
        None
    }

    /// Receives the run named by [`MixtureMethod::reference`], once it has finished.
    fn set_reference(&mut self, _reference: ReferenceRun) -> Result<()> {
        Ok(())
    }

    /// Whether the loop also runs the reference run's final model on every training batch, for
    /// [`MixtureMethod::weigh_step`].
    fn wants_reference_model(&self) -> bool {
        false
    }

    /// Called at every optimizer step between the forward and the backward pass, with each
    /// example's skill (1-based), training loss and, where [`MixtureMethod::wants_reference_model`],
    /// the reference model's loss on it (else empty). `Some(w)`: the step minimizes Σ_e w_e·l_e
    /// instead of the batch's mean loss.
    fn weigh_step(
        &mut self,
        _skills: &[usize],
        _losses: &[f64],
        _reference: &[f64],
    ) -> Option<Vec<f64>> {
        None
    }

    /// The method's state, to resume a run exactly.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores a state saved by [`MixtureMethod::state`] at a checkpoint, after the rounds before
    /// it were replayed: only a method whose state changes outside [`MixtureMethod::mixture`] and
    /// [`MixtureMethod::plan`] (in [`MixtureMethod::weigh_step`]) needs it.
    fn load_state(&mut self, _state: serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// A method and its parameters as a config file writes them:
/// `method = { name = "fixed", weights = [1, 1, 1, 3, 5] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodSpec {
    /// Uniform over skills.
    Stratified,
    /// Given weights, normalised (the paper's `random` baseline is LEGO 1:1:1:3:5, addition
    /// 13:14:18).
    Fixed { weights: Vec<f64> },
    /// Skill-It (Algorithm 1) with the published graph of the task and setting, or `graph`.
    SkillIt {
        #[serde(flatten)]
        config: SkillItConfig,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        graph: Option<GraphSource>,
    },
    /// Skill-It with A = I: sampling ∝ exp(η · loss) (fine-tuning: A = eye(k)[:, target]).
    NoGraph {
        #[serde(flatten)]
        config: SkillItConfig,
    },
    /// Skill-It with T = 1: the fixed mixture softmax(η · A · 1).
    Static {
        #[serde(flatten)]
        config: SkillItConfig,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        graph: Option<GraphSource>,
    },
    /// Only the target skill (fine-tuning).
    TargetOnly,
    /// Examples of the pool from the lowest initial loss up, linear pacing over the rounds.
    Curriculum {
        #[serde(flatten)]
        config: PacingConfig,
    },
    /// The same from the highest initial loss down.
    Anticurriculum {
        #[serde(flatten)]
        config: PacingConfig,
    },
    /// The same pacing over the pool grouped by answer token, the groups in a seeded random order
    /// (no model scores it): early rounds hold few answer classes.
    ClassCurriculum {
        #[serde(flatten)]
        config: PacingConfig,
    },
    /// The same pacing over the pool in a seeded random order: the pacing without any ordering.
    PacedRandom {
        #[serde(flatten)]
        config: PacingConfig,
    },
    /// Skills one after the other from the lowest mean initial loss, then the whole pool.
    SkillCurriculum {
        #[serde(flatten)]
        config: SkillCurriculumConfig,
    },
    /// The same from the highest mean initial loss.
    SkillAnticurriculum {
        #[serde(flatten)]
        config: SkillCurriculumConfig,
    },
    /// Aioli: A re-estimated each round from short probe sub-rounds, exponentiated update.
    Aioli {
        #[serde(flatten)]
        config: AioliConfig,
    },
    /// DoReMi: a stratified reference, a proxy whose loss weights α follow the excess loss over
    /// the reference, and (the default) a final run on the proxy's averaged α.
    Doremi {
        #[serde(flatten)]
        config: DoremiConfig,
    },
    /// Online Data Mixing: EXP3 over the skills with the training loss as reward.
    Odm {
        #[serde(flatten)]
        config: OdmConfig,
    },
}

/// Where Skill-It's graph comes from: a TOML file (`graph = "graphs/lego_pretrain.toml"`, relative to
/// the working directory) or inline (`graph = { train = [...], eval = [...], matrix = [...] }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GraphSource {
    File(std::path::PathBuf),
    Inline(SkillsGraph),
}

impl GraphSource {
    /// A short name for the params column and run ids: the file's stem, or `inline`.
    pub fn label(&self) -> String {
        match self {
            GraphSource::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into()),
            GraphSource::Inline(_) => "inline".into(),
        }
    }
}

/// The method names the registry knows, for error messages.
pub const NAMES: [&str; 16] = [
    "stratified",
    "fixed",
    "random",
    "skill_it",
    "no_graph",
    "static",
    "target_only",
    "curriculum",
    "anticurriculum",
    "class_curriculum",
    "paced_random",
    "skill_curriculum",
    "skill_anticurriculum",
    "aioli",
    "doremi",
    "odm",
];

impl MethodSpec {
    /// A method by name with its default parameters (`fixed` needs weights: `random` preset).
    pub fn from_name(name: &str, num_skills: usize, task: &str) -> Result<Self> {
        match name {
            "stratified" => Ok(MethodSpec::Stratified),
            "random" | "fixed" => Ok(MethodSpec::Fixed {
                weights: paper_random_weights(task, num_skills),
            }),
            "skill_it" => Ok(MethodSpec::SkillIt {
                config: SkillItConfig::default(),
                graph: None,
            }),
            "no_graph" => Ok(MethodSpec::NoGraph {
                config: SkillItConfig::default(),
            }),
            "static" => Ok(MethodSpec::Static {
                config: SkillItConfig::default(),
                graph: None,
            }),
            "target_only" => Ok(MethodSpec::TargetOnly),
            "curriculum" | "anticurriculum" | "class_curriculum" | "paced_random" => {
                let config = PacingConfig::default();
                Ok(match name {
                    "curriculum" => MethodSpec::Curriculum { config },
                    "anticurriculum" => MethodSpec::Anticurriculum { config },
                    "class_curriculum" => MethodSpec::ClassCurriculum { config },
                    _ => MethodSpec::PacedRandom { config },
                })
            }
            "skill_curriculum" => Ok(MethodSpec::SkillCurriculum {
                config: SkillCurriculumConfig::default(),
            }),
            "aioli" => Ok(MethodSpec::Aioli {
                config: AioliConfig::default(),
            }),
            "doremi" => Ok(MethodSpec::Doremi {
                config: DoremiConfig::default(),
            }),
            "odm" => Ok(MethodSpec::Odm {
                config: OdmConfig::default(),
            }),
            "skill_anticurriculum" => Ok(MethodSpec::SkillAnticurriculum {
                config: SkillCurriculumConfig::default(),
            }),
            other => Err(Error::flag(
                "--method",
                format!("unknown method '{other}' (known: {})", NAMES.join(", ")),
            )),
        }
    }

    /// The graph Skill-It uses for `task` in `setting`: the spec's own, else the published one,
    /// else (pre-training) the task's prerequisite graph, else an error naming the field.
    pub fn graph(
        &self,
        task: &dyn skillit_synthetic::Task,
        setting: &str,
        origin: &str,
    ) -> Result<SkillsGraph> {
        let k = task.num_skills();
        let given = match self {
            MethodSpec::SkillIt { graph, .. } | MethodSpec::Static { graph, .. } => match graph {
                Some(GraphSource::File(path)) => Some(SkillsGraph::read(path, k)?),
                Some(GraphSource::Inline(g)) => Some(g.clone()),
                None => None,
            },
            MethodSpec::NoGraph { .. } => return Ok(SkillsGraph::identity(k)),
            _ => None,
        };
        let structural = || match setting {
            "pretrain" => SkillsGraph::prerequisites(task),
            _ => None,
        };
        match given
            .or_else(|| SkillsGraph::published(task.name(), setting, k))
            .or_else(structural)
        {
            Some(g) => {
                g.validate(origin, k)?;
                Ok(g)
            }
            None => Err(Error::Invalid {
                origin: origin.into(),
                field: "method.graph".into(),
                message: format!(
                    "the paper publishes no graph for {} {setting} with k = {k}; give one \
                     (train, eval, matrix), e.g. a file that `skillit graph learn` wrote",
                    task.name()
                ),
            }),
        }
    }

    /// Checks the parameters against the number of training skills.
    pub fn validate(&self, num_skills: usize, origin: &str) -> Result<()> {
        let check = Check { origin };
        match self {
            MethodSpec::SkillIt { config, .. }
            | MethodSpec::NoGraph { config }
            | MethodSpec::Static { config, .. } => {
                check.at_least(0.0, "eta", config.eta)?;
                check.at_least_one("window", config.window as u64)
            }
            MethodSpec::SkillCurriculum { config } | MethodSpec::SkillAnticurriculum { config } => {
                check.at_least(0.0, "frac", config.frac)
            }
            MethodSpec::Curriculum { config }
            | MethodSpec::Anticurriculum { config }
            | MethodSpec::ClassCurriculum { config }
            | MethodSpec::PacedRandom { config } => {
                check.fraction("ramp", config.ramp, 0.0)?;
                if let Some(steps) = config.update_steps {
                    check.at_least_one("update_steps", steps)?;
                }
                match config.pool.is_empty() {
                    true => Ok(()),
                    false => check.weights("pool", &config.pool, num_skills),
                }
            }
            MethodSpec::Aioli { config } => {
                check.at_least(0.0, "eta", config.eta)?;
                check.at_least_one("lp_rounds", config.lp_rounds as u64)?;
                check.at_least_one("lp_steps", config.lp_steps)?;
                check.at_least_one("update_steps", config.update_steps)?;
                // Unmixing needs the probe mixtures independent: f ≠ 1/m, so f > 1/m.
                let low = 1.0 / num_skills as f64;
                check.fraction("one_hot_factor", config.one_hot_factor, low)?;
                match config.ema {
                    Some(e) if !(e.is_finite() && (0.0..1.0).contains(&e)) => {
                        check.fail("ema", format!("{e} must be in [0, 1) or \"none\""))
                    }
                    _ => Ok(()),
                }
            }
            MethodSpec::Doremi { config } => {
                check.at_least(0.0, "eta", config.eta)?;
                let c = config.smoothing;
                match c.is_finite() && (0.0..=1.0).contains(&c) {
                    true => Ok(()),
                    false => check.fail("smoothing", format!("{c} must be in [0, 1]")),
                }
            }
            MethodSpec::Odm { config } => {
                let a = config.alpha;
                if !(a.is_finite() && (0.0..1.0).contains(&a)) {
                    return check.fail("alpha", format!("{a} must be in [0, 1)"));
                }
                check.at_least_one("update_every", config.update_every)
            }
            MethodSpec::Fixed { weights } => check.weights("weights", weights, num_skills),
            MethodSpec::Stratified | MethodSpec::TargetOnly => Ok(()),
        }
    }

    /// Builds the method for `task` in `setting`; `target` is the fine-tuning target skill.
    pub fn build(
        &self,
        task: &dyn skillit_synthetic::Task,
        setting: &str,
        target: Option<usize>,
    ) -> Result<Box<dyn MixtureMethod>> {
        let origin = "method";
        let k = task.num_skills();
        // Sized for all k skills; fitted to the setting's training skills at the first round.
        let train_count = k;
        Ok(match self {
            MethodSpec::TargetOnly => match target {
                Some(t) => Box::new(TargetOnly::new(t)),
                None => {
                    return Err(Error::Invalid {
                        origin: origin.into(),
                        field: "target".into(),
                        message: "target_only needs a target skill (setting = \"finetune\", \
                                  target = N)"
                            .into(),
                    })
                }
            },
            MethodSpec::Curriculum { config }
            | MethodSpec::Anticurriculum { config }
            | MethodSpec::ClassCurriculum { config }
            | MethodSpec::PacedRandom { config } => {
                let order = match self {
                    MethodSpec::Curriculum { .. } => PoolOrder::Loss,
                    MethodSpec::Anticurriculum { .. } => PoolOrder::LossDescending,
                    MethodSpec::ClassCurriculum { .. } => PoolOrder::AnswerClass,
                    _ => PoolOrder::Random,
                };
                Box::new(Curriculum::new(order).with_pacing(config.resolved(
                    task.name(),
                    k,
                    setting,
                )))
            }
            MethodSpec::SkillCurriculum { config } => {
                Box::new(SkillCurriculum::new(false, config.clone()))
            }
            MethodSpec::SkillAnticurriculum { config } => {
                Box::new(SkillCurriculum::new(true, config.clone()))
            }
            MethodSpec::Stratified => Box::new(Stratified),
            MethodSpec::Aioli { config } => Box::new(Aioli::new(config.clone(), train_count)),
            MethodSpec::Doremi { config } => Box::new(Doremi::new(config.clone(), train_count)),
            MethodSpec::Odm { config } => Box::new(Odm::new(config.clone(), train_count)),
            MethodSpec::Fixed { weights } => Box::new(Fixed::new(weights.clone())),
            MethodSpec::SkillIt { config, graph } => Box::new(
                SkillIt::new(
                    "skill_it",
                    config.for_setting(setting),
                    self.graph(task, setting, origin)?,
                )
                .with_graph_label(graph.as_ref().map(GraphSource::label)),
            ),
            MethodSpec::NoGraph { config } => {
                let m = SkillIt::new(
                    "no_graph",
                    config.for_setting(setting),
                    SkillsGraph::identity(k),
                );
                match (setting, target) {
                    ("finetune", Some(t)) => Box::new(m.with_target_column(t)),
                    _ => Box::new(m),
                }
            }
            MethodSpec::Static { config, graph } => Box::new(
                SkillIt::new(
                    "static",
                    config.for_setting(setting).with_update(false),
                    self.graph(task, setting, origin)?,
                )
                .with_graph_label(graph.as_ref().map(GraphSource::label)),
            ),
        })
    }
}

/// One-line errors about a method's fields (`method.FIELD`) in the file `origin`.
struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    fn fail(&self, field: &str, message: String) -> Result<()> {
        Err(Error::Invalid {
            origin: self.origin.into(),
            field: format!("method.{field}"),
            message,
        })
    }

    /// A finite number ≥ `low`.
    fn at_least(&self, low: f64, field: &str, value: f64) -> Result<()> {
        match value.is_finite() && value >= low {
            true => Ok(()),
            false => self.fail(field, format!("{value} must be a finite number ≥ {low}")),
        }
    }

    fn at_least_one(&self, field: &str, value: u64) -> Result<()> {
        match value {
            0 => self.fail(field, "must be at least 1".into()),
            _ => Ok(()),
        }
    }

    /// A number in (low, 1].
    fn fraction(&self, field: &str, value: f64, low: f64) -> Result<()> {
        match value.is_finite() && value > low && value <= 1.0 {
            true => Ok(()),
            false => self.fail(field, format!("{value} must be in ({low}, 1]")),
        }
    }

    /// One finite, non-negative weight per skill, not all zero.
    fn weights(&self, field: &str, weights: &[f64], num_skills: usize) -> Result<()> {
        if weights.len() != num_skills {
            let n = weights.len();
            return self.fail(field, format!("{n} weights for {num_skills} skills"));
        }
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return self.fail(field, "weights must be finite and non-negative".into());
        }
        match weights.iter().sum::<f64>() > 0.0 {
            true => Ok(()),
            false => self.fail(field, "weights must not all be zero".into()),
        }
    }
}

/// Spreads `over_train` (one weight per train skill, in `train_skills` order) into a mixture over
/// all `k` skills, zero outside the train skills.
pub fn expand(over_train: &[f64], train_skills: &[usize], k: usize) -> Vec<f64> {
    let mut mixture = vec![0.0; k];
    for (&skill, &p) in train_skills.iter().zip(over_train) {
        mixture[skill - 1] = p;
    }
    mixture
}

/// The paper's imbalanced `random` mixture (docs/paper.md §9): LEGO 1:1:1:3:5, addition 13:14:18.
/// For other k: LEGO puts weight 1 on every skill but the last two (3 and 5), addition is uniform.
pub fn paper_random_weights(task: &str, k: usize) -> Vec<f64> {
    match (task, k) {
        ("addition", 3) => vec![13.0, 14.0, 18.0],
        ("lego", k) if k >= 3 => {
            let mut w = vec![1.0; k];
            w[k - 2] = 3.0;
            w[k - 1] = 5.0;
            w
        }
        (_, k) => vec![1.0; k],
    }
}

/// An observation for the methods' unit tests: `num_skills` skills, all trained unless
/// `train_skills` says otherwise, rounds of 100 steps in a budget of 1,000, batches of 32.
#[cfg(test)]
pub(crate) fn test_observation<'a>(
    step: u64,
    round: usize,
    train_skills: &'a [usize],
    num_skills: usize,
    evaluations: &'a [Evaluation],
    train_losses: &'a [Option<f64>],
) -> Observation<'a> {
    Observation {
        step,
        round,
        num_skills,
        train_skills,
        steps_per_round: 100,
        total_steps: 1000,
        batch_size: 32,
        evaluations,
        train_losses,
    }
}
