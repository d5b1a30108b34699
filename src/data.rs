//! From a task to examples: the requests of `skillit generate`, validated before anything is written,
//! and the records it writes.

use serde::Serialize;
use skillit_synthetic::{Example, LegoGraph, Task, TaskSpec, TrainStream, ValidationSet};

use crate::{Error, Result};

/// The validation examples per skill that every run holds out (docs/paper.md §2, §3).
pub const VALIDATION_PER_SKILL: usize = 100;

/// The synthetic tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskName {
    Lego,
    Addition,
    /// The base corpus: one-hop recall in LEGO's clause format (no chains).
    Recall,
}

impl TaskName {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskName::Lego => "lego",
            TaskName::Addition => "addition",
            TaskName::Recall => "recall",
        }
    }
}

/// Which examples to draw: a run's training stream or the fixed validation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// One skill or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkillSelection {
    All,
    One(usize),
}

impl std::str::FromStr for SkillSelection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "all" {
            return Ok(SkillSelection::All);
        }
        s.parse::<usize>()
            .map(SkillSelection::One)
            .map_err(|_| format!("'{s}' is neither a skill id (1..=k) nor 'all'"))
    }
}

/// A request for examples, as `skillit generate` takes it.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub task: TaskName,
    /// Variables (LEGO), digits (addition) or clauses (recall); `None` takes the task's default
    /// (5, 3, 5).
    pub k: Option<usize>,
    /// LEGO's dependency graph; `None` is the chain. An error for the other tasks.
    pub graph: Option<LegoGraph>,
    pub skill: SkillSelection,
    pub split: Split,
    /// Examples per selected skill.
    pub n: usize,
    /// The run seed (train) or the validation seed (val; `None` = the task's 42 or 420).
    pub seed: Option<u64>,
}

impl GenerateRequest {
    /// The task this request describes, checked.
    pub fn task_spec(&self) -> Result<TaskSpec> {
        if let (Some(g), false) = (self.graph, self.task == TaskName::Lego) {
            return Err(Error::flag(
                "--graph",
                format!(
                    "'{g}' applies only to --task lego; {} has no graph",
                    self.task.as_str()
                ),
            ));
        }
        Ok(match self.task {
            TaskName::Lego => TaskSpec::Lego {
                k: self.k.unwrap_or(5),
                graph: self.graph.unwrap_or_default(),
                dense: false,
                shuffled: false,
                shared_vocab: false,
            },
            TaskName::Addition => TaskSpec::Addition {
                k: self.k.unwrap_or(3),
                shared_vocab: false,
            },
            TaskName::Recall => TaskSpec::Recall {
                k: self.k.unwrap_or(5),
                queries: 1,
                dense: false,
                pointers: false,
                hops: 1,
                order: skillit_synthetic::ChainOrder::Any,
                parity: false,
            },
        })
    }

    /// Checks every part of the request, so that nothing is written for a request that cannot be met.
    pub fn plan(&self) -> Result<Generation> {
        let task = self.task_spec()?.build().map_err(|e| match e {
            skillit_synthetic::Error::InvalidParameter { field, .. } => {
                Error::flag(&format!("--{field}"), e.to_string())
            }
            other => other.into(),
        })?;
        let skills = match self.skill {
            SkillSelection::All => (1..=task.num_skills()).collect(),
            SkillSelection::One(s) => {
                task.check_skill(s)
                    .map_err(|e| Error::flag("--skill", e.to_string()))?;
                vec![s]
            }
        };
        if self.n == 0 {
            return Err(Error::flag(
                "--n",
                "must be at least 1 (examples per skill)",
            ));
        }
        let (seed, validation) = match self.split {
            Split::Train => {
                let seed = self.seed.unwrap_or(0);
                let validation = ValidationSet::standard(task.as_ref(), VALIDATION_PER_SKILL)
                    .map_err(|e| {
                        Error::flag(
                            "--k",
                            format!(
                                "{e}: fewer than the {VALIDATION_PER_SKILL} per skill held out \
                                 for validation; use a larger k"
                            ),
                        )
                    })?;
                (seed, validation)
            }
            Split::Val => {
                let seed = self.seed.unwrap_or(task.default_val_seed());
                // The set checks every skill's capacity before drawing anything.
                let validation = ValidationSet::new(task.as_ref(), self.n, seed)
                    .map_err(|e| Error::flag("--n", e.to_string()))?;
                (seed, validation)
            }
        };
        if self.split == Split::Train {
            let stream = TrainStream::new(task.as_ref(), seed, &validation);
            for &s in &skills {
                stream.check_room(s, self.n).map_err(|e| {
                    Error::flag(
                        "--n",
                        format!(
                            "{e} ({VALIDATION_PER_SKILL} per skill are held out for validation)"
                        ),
                    )
                })?;
            }
        }
        Ok(Generation {
            task,
            split: self.split,
            seed,
            skills,
            n: self.n,
            validation,
        })
    }
}

/// A checked request, ready to produce its examples.
pub struct Generation {
    task: Box<dyn Task>,
    split: Split,
    seed: u64,
    skills: Vec<usize>,
    n: usize,
    validation: ValidationSet,
}

/// One example as `skillit generate` writes it (a JSONL line).
#[derive(Debug, Serialize)]
pub struct ExampleRecord<'a> {
    pub task: &'static str,
    pub params: String,
    pub split: &'static str,
    pub seed: u64,
    pub skill: usize,
    pub text: String,
    pub prompt: String,
    pub answer: String,
    pub tokens: &'a [u32],
    pub answer_pos: usize,
}

impl Generation {
    /// The task being generated.
    pub fn task(&self) -> &dyn Task {
        self.task.as_ref()
    }

    /// Hands each example, skill by skill (`n` of each), to `emit`. An error of `emit` (e.g. a closed
    /// stdout) stops the generation and is returned.
    pub fn run(&self, mut emit: impl FnMut(&ExampleRecord) -> std::io::Result<()>) -> Result<()> {
        let task = self.task.as_ref();
        let vocab = task.vocab();
        let params = task.describe();
        let mut stream = TrainStream::new(task, self.seed, &self.validation);
        for &skill in &self.skills {
            for i in 0..self.n {
                let owned;
                let example: &Example = match self.split {
                    Split::Val => &self.validation.skill(skill)[i],
                    Split::Train => {
                        owned = stream.next(skill)?;
                        &owned
                    }
                };
                let record = ExampleRecord {
                    task: task.name(),
                    params: params.clone(),
                    split: self.split.as_str(),
                    seed: self.seed,
                    skill,
                    text: example.text(vocab),
                    prompt: example.prompt(vocab),
                    answer: example.answer(vocab),
                    tokens: &example.tokens,
                    answer_pos: example.answer_pos,
                };
                emit(&record).map_err(|source| Error::Io {
                    path: "<stdout>".into(),
                    source,
                })?;
            }
        }
        Ok(())
    }
}
