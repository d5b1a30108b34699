//! # skillit-synthetic
//!
//! The two synthetic tasks of *Skill-it!* (Chen et al., NeurIPS 2023), as pure-Rust generators that
//! give the same examples on every platform from a seed:
//!
//! - [`Lego`]: chains of variable assignments; skill *i* asks the value of the variable at depth *i*
//!   (docs/paper.md §2).
//! - [`Addition`]: *k*-digit addition; skill *i* asks the *i*-th digit of the sum from the ones digit
//!   (docs/paper.md §3).
//! - [`Recall`]: the pre-training corpus of a base model: one-hop lookup in LEGO's clause format,
//!   with and without operators, and no chains (docs/paper.md §12).
//! - [`Chains`]: a base corpus in the [`SHARED`] vocabulary: digits added along chains of
//!   variables, every variable asked.
//! - [`Jsonl`]: a user's own skill-labelled rows from a JSON Lines file.
//!
//! Every example is a sequence of word-level tokens from the task's [`Vocab`]; a generator's answer
//! is one token, a JSONL row's may be several. [`ValidationSet`] and [`TrainStream`] build the datasets: fixed validation sets, and per-skill
//! training streams that never repeat an example and never yield a validation example.
//!
//! Randomness comes only from ChaCha8 streams derived from (seed, purpose, skill) by [`stream_rng`], so
//! the examples do not depend on thread count, request order across skills, or platform.

mod addition;
mod chains;
mod dataset;
mod jsonl;
mod lego;
mod recall;
mod vocab;

pub use addition::Addition;
pub use chains::Chains;
pub use dataset::{stream_rng, Purpose, TrainStream, ValidationSet};
pub use jsonl::{Jsonl, JsonlRows};
pub use lego::{Lego, LegoGraph};
pub use recall::{ChainOrder, Recall};
pub use vocab::{Vocab, PAD, SHARED, UNK};

use serde::{Deserialize, Serialize};

/// The fixed vocabulary called `name` (`lego`, `addition`, `shared`), if there is one.
pub fn vocab_named(name: &str) -> Option<&'static Vocab> {
    [lego::VOCAB, addition::VOCAB, SHARED]
        .into_iter()
        .find(|v| v.name() == name)
}

/// The random number generator every generator draws from (ChaCha8: fast, portable, seekable).
pub type TaskRng = rand_chacha::ChaCha8Rng;

/// Errors of task construction and dataset generation.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A task parameter is outside what the task allows.
    #[error("{field} = {value} is not allowed for {task}: {allowed}")]
    InvalidParameter {
        task: &'static str,
        field: &'static str,
        value: String,
        allowed: String,
    },
    /// A skill id outside 1..=k.
    #[error("skill {skill} does not exist in {task}: skills are 1..={k}")]
    UnknownSkill {
        task: &'static str,
        skill: usize,
        k: usize,
    },
    /// Every distinct example of a skill has been used (training stream plus validation set).
    #[error("{task} skill {skill} has only {capacity} distinct examples")]
    Exhausted {
        task: String,
        skill: usize,
        capacity: u128,
    },
    /// A JSONL task's file, or one of its lines (line 0: the file as a whole, written `FILE:`).
    #[error("{path}{}: {message}", at_line(*line))]
    Jsonl {
        path: String,
        line: u64,
        message: String,
    },
    /// Text with a word outside the vocabulary.
    #[error("'{word}' is not a word of the {vocab} vocabulary")]
    UnknownWord { vocab: &'static str, word: String },
}

/// `:N` for line N of a file, nothing for the file as a whole (0).
fn at_line(line: u64) -> String {
    match line {
        0 => String::new(),
        n => format!(":{n}"),
    }
}

/// P(n, r) = n! / (n − r)!, the ordered draws of r of n distinct things, saturating at
/// `u128::MAX` (the count of name assignments in LEGO and recall).
pub(crate) fn permutations(n: u128, r: u128) -> u128 {
    (0..r).fold(1u128, |acc, i| acc.saturating_mul(n - i))
}

/// One skill of a task. Ids are 1-based, as in the paper (s1..sk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    pub id: usize,
    pub name: String,
}

/// One example: a token sequence whose answer is `answer_len` tokens at `answer_pos` (one token for
/// every generator; a JSONL task's answers may be longer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Example {
    /// The skill this example exercises (1-based).
    pub skill: usize,
    /// The whole sequence, answer included, as ids of the task's vocabulary.
    pub tokens: Vec<u32>,
    /// The index of the answer's first token in `tokens`. The model predicts it from position
    /// `answer_pos - 1`; the prompt is `tokens[..answer_pos]`.
    pub answer_pos: usize,
    /// The answer's length in tokens; answer token j is predicted from position
    /// `answer_pos + j - 1` (teacher forcing).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub answer_len: usize,
}

impl Example {
    /// An example whose answer is its last token.
    pub fn answer_last(skill: usize, tokens: Vec<u32>) -> Self {
        Self {
            skill,
            answer_pos: tokens.len() - 1,
            tokens,
            answer_len: 1,
        }
    }

    /// An example whose answer is every token from `answer_pos` to the end (teacher-forced).
    pub fn answer_from(skill: usize, tokens: Vec<u32>, answer_pos: usize) -> Self {
        Self {
            skill,
            answer_len: tokens.len() - answer_pos,
            answer_pos,
            tokens,
        }
    }

    /// The answer's first token id (the whole answer for every generator).
    pub fn answer_token(&self) -> u32 {
        self.tokens[self.answer_pos]
    }

    /// The answer's token ids.
    pub fn answer_tokens(&self) -> &[u32] {
        &self.tokens[self.answer_pos..self.answer_pos + self.answer_len]
    }

    /// The tokens before the answer.
    pub fn prompt_tokens(&self) -> &[u32] {
        &self.tokens[..self.answer_pos]
    }

    /// The whole text, `prompt + " " + answer` (plus anything after the answer, for tasks that have it).
    pub fn text(&self, vocab: &Vocab) -> String {
        vocab.decode(&self.tokens)
    }

    /// The text cut just before the answer.
    pub fn prompt(&self, vocab: &Vocab) -> String {
        vocab.decode(self.prompt_tokens())
    }

    /// The answer as text (its words joined by single spaces).
    pub fn answer(&self, vocab: &Vocab) -> String {
        vocab.decode(self.answer_tokens())
    }
}

/// A skill-structured synthetic task.
pub trait Task: Send + Sync {
    /// The task's name (`lego`, `addition`, `recall`).
    fn name(&self) -> &'static str;

    /// The number of skills k; skill ids are 1..=k.
    fn num_skills(&self) -> usize;

    /// The name of skill `id` (1-based), e.g. `s3 (depth 3)`.
    fn skill_name(&self, id: usize) -> String;

    /// The skills, in id order.
    fn skills(&self) -> Vec<Skill> {
        (1..=self.num_skills())
            .map(|id| Skill {
                id,
                name: self.skill_name(id),
            })
            .collect()
    }

    /// The task's vocabulary (fixed for a generator, built from the file for a JSONL task).
    fn vocab(&self) -> &Vocab;

    /// The length in tokens of the task's longest example (a generator's examples all have it).
    fn seq_len(&self) -> usize;

    /// The seed of the fixed validation sets (docs/paper.md §2–3: 42 for LEGO, 420 for addition).
    fn default_val_seed(&self) -> u64;

    /// Draws one example of `skill` (1-based) from `rng`. `skill` must be in 1..=k.
    fn example(&self, skill: usize, rng: &mut TaskRng) -> Example;

    /// How many distinct examples `skill` has (saturating at `u128::MAX`): a training stream plus
    /// validation set can hold at most this many.
    fn capacity(&self, skill: usize) -> u128;

    /// A short description of the task's parameters, e.g. `lego k=5 graph=chain`.
    fn describe(&self) -> String;

    /// The task's own prerequisite edges `(i, j)`: skill j's answer is computed from skill i's
    /// (LEGO: a variable's parent; addition: the carry into the next digit). Empty for a task
    /// whose skills do not build on each other.
    fn prerequisites(&self) -> Vec<(usize, usize)> {
        Vec::new()
    }

    /// The fixed rows of a task read from a file, which [`ValidationSet`] and [`TrainStream`] split
    /// and walk epoch by epoch instead of drawing from [`Task::example`]. `None` for a generator.
    fn rows(&self) -> Option<&JsonlRows> {
        None
    }

    /// Checks that `skill` is a skill id of this task.
    fn check_skill(&self, skill: usize) -> Result<(), Error> {
        if skill == 0 || skill > self.num_skills() {
            Err(Error::UnknownSkill {
                task: self.name(),
                skill,
                k: self.num_skills(),
            })
        } else {
            Ok(())
        }
    }
}

/// A task and its parameters, as written in config files (`{ name = "lego", k = 5, graph = "chain" }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskSpec {
    Lego {
        #[serde(default = "default_lego_k")]
        k: usize,
        #[serde(default)]
        graph: LegoGraph,
        /// Every variable asked in reading order, the whole output the answer (a diagnostic).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dense: bool,
        /// Dense, asking the skill's variable first and the others in a uniform order.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shuffled: bool,
        /// The [`SHARED`] vocabulary instead of LEGO's own (the same ids, 55 words): for a model
        /// whose base reads both LEGO and addition.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared_vocab: bool,
    },
    Addition {
        #[serde(default = "default_addition_k")]
        k: usize,
        /// The [`SHARED`] vocabulary instead of addition's own (the same words, other ids).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared_vocab: bool,
    },
    /// The base corpus: one-hop recall over k clauses in LEGO's vocabulary, `queries` variables
    /// asked per sequence.
    Recall {
        #[serde(default = "default_lego_k")]
        k: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        queries: usize,
        /// Every clause asked in reading order, the whole output the answer (needs queries = 1).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dense: bool,
        /// Adds s3, pointer recall (copy the queried clause's letter).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pointers: bool,
        /// With pointers, adds s4..s(hops + 2): follow letter pointers 2..=hops deep.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        hops: usize,
        /// Where a chase's clauses stand in the text (`any`, `queried_first`, `queried_last`).
        #[serde(default, skip_serializing_if = "is_any")]
        order: ChainOrder,
        /// With hops, a chase answers the parity of the clause's distance to its chain's end.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        parity: bool,
    },
    /// A base corpus: digits added along chains of k variables, every variable asked ([`Chains`]).
    Chains {
        #[serde(default = "default_lego_k")]
        k: usize,
        /// The steps a clause adds are uniform in 0..offsets (2..=10).
        #[serde(default = "default_offsets")]
        offsets: u32,
        /// Clauses in LEGO's shape, the step in the operator's slot (`b = 1 q`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lego_syntax: bool,
    },
    /// Skill-labelled rows from a JSONL file ([`Jsonl`]); a relative path is resolved against the
    /// file that names it when that file is read.
    Jsonl { path: String },
}

fn default_lego_k() -> usize {
    lego::DEFAULT_K
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn is_any(order: &ChainOrder) -> bool {
    *order == ChainOrder::Any
}

fn default_offsets() -> u32 {
    chains::DEFAULT_OFFSETS
}

fn default_addition_k() -> usize {
    addition::DEFAULT_K
}

impl TaskSpec {
    /// The task's name (`lego`, `addition`, `recall`), as [`Task::name`] gives it once built.
    pub fn name(&self) -> &'static str {
        match self {
            TaskSpec::Lego { .. } => "lego",
            TaskSpec::Addition { .. } => "addition",
            TaskSpec::Recall { .. } => "recall",
            TaskSpec::Chains { .. } => "chains",
            TaskSpec::Jsonl { .. } => "jsonl",
        }
    }

    /// The spec with a JSONL task's relative path resolved against `dir` (the folder of the file
    /// that names it); other tasks are unchanged.
    pub fn relative_to(self, dir: &std::path::Path) -> Self {
        match self {
            TaskSpec::Jsonl { path } if std::path::Path::new(&path).is_relative() => {
                TaskSpec::Jsonl {
                    path: dir.join(path).display().to_string(),
                }
            }
            other => other,
        }
    }

    /// Builds the task, checking its parameters.
    pub fn build(&self) -> Result<Box<dyn Task>, Error> {
        Ok(match *self {
            TaskSpec::Jsonl { ref path } => Box::new(Jsonl::open(std::path::Path::new(path))?),
            TaskSpec::Lego {
                k,
                graph,
                dense,
                shuffled,
                shared_vocab,
            } => {
                let lego = Lego::new(k, graph)?;
                let lego = if dense { lego.with_dense() } else { lego };
                let lego = if shuffled {
                    lego.with_shuffled()?
                } else {
                    lego
                };
                Box::new(if shared_vocab {
                    lego.with_shared_vocab()
                } else {
                    lego
                })
            }
            TaskSpec::Chains {
                k,
                offsets,
                lego_syntax,
            } => {
                let chains = Chains::new(k, offsets)?;
                Box::new(if lego_syntax {
                    chains.with_lego_syntax()
                } else {
                    chains
                })
            }
            TaskSpec::Addition { k, shared_vocab } => {
                let addition = Addition::new(k)?;
                Box::new(if shared_vocab {
                    addition.with_shared_vocab()
                } else {
                    addition
                })
            }
            TaskSpec::Recall {
                k,
                queries,
                dense,
                pointers,
                hops,
                order,
                parity,
            } => {
                let recall = Recall::with_queries(k, queries)?;
                let recall = if dense { recall.with_dense()? } else { recall };
                let recall = if pointers {
                    recall.with_pointers()?
                } else {
                    recall
                };
                let recall = recall.with_hops(hops)?.with_chain_order(order)?;
                Box::new(if parity {
                    recall.with_parity()?
                } else {
                    recall
                })
            }
        })
    }
}
