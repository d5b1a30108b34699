//! Datasets: fixed validation sets and deduplicated per-skill training streams.
//!
//! Every random draw comes from a ChaCha8 stream derived from (seed, purpose, skill) by
//! [`stream_rng`]: the validation set of a skill is the same whichever run seed trains against it, and
//! a run's training examples of skill i do not depend on how many examples of other skills were drawn
//! before, nor on the thread that draws them.
//!
//! A task with fixed rows (a JSONL file, [`Task::rows`]) is split instead: the validation set is its
//! `val` rows or a seeded holdout per skill, and the training stream walks each skill's other rows
//! in a shuffled order drawn from the same streams, a new shuffle for each epoch.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::{Error, Example, Task, TaskRng};

/// What a random stream is used for; the purpose is part of the stream id, so streams of different
/// purposes never overlap even under the same seed. Other crates may define their own purposes
/// above [`Purpose::FIRST_FREE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purpose(pub u32);

impl Purpose {
    /// The fixed validation sets.
    pub const VALIDATION: Purpose = Purpose(1);
    /// The training stream of a run.
    pub const TRAIN: Purpose = Purpose(2);
    /// The first id not used by this crate.
    pub const FIRST_FREE: u32 = 16;
}

/// The random stream for (seed, purpose, index): ChaCha8 keyed by `seed` (expanded as
/// `SeedableRng::seed_from_u64` does, which is specified and portable), on stream
/// `purpose << 32 | index`. The same arguments give the same bytes on every platform.
pub fn stream_rng(seed: u64, purpose: Purpose, index: u64) -> TaskRng {
    let mut rng = TaskRng::seed_from_u64(seed);
    rng.set_stream((u64::from(purpose.0) << 32) | (index & 0xffff_ffff));
    rng
}

/// The dedup key of an example: its tokens as bytes (every vocabulary has fewer than 256 words).
fn key(tokens: &[u32]) -> Box<[u8]> {
    tokens
        .iter()
        .map(|&t| {
            debug_assert!(t < 256);
            t as u8
        })
        .collect()
}

fn check_capacity(task: &dyn Task, skill: usize, wanted: u128) -> Result<(), Error> {
    let capacity = task.capacity(skill);
    if wanted > capacity {
        return Err(Error::Exhausted {
            task: task.describe(),
            skill,
            capacity,
        });
    }
    Ok(())
}

/// The fixed validation examples of every skill: `n` distinct examples per skill drawn from
/// `stream_rng(seed, VALIDATION, skill)`.
#[derive(Debug, Clone)]
pub struct ValidationSet {
    seed: u64,
    per_skill: Vec<Vec<Example>>,
    keys: HashSet<Box<[u8]>>,
    /// A task with fixed rows: each skill's training rows (the ones not held out).
    train_rows: Option<Vec<Vec<u32>>>,
}

impl ValidationSet {
    /// `n` distinct examples of each skill of `task`, from `seed`. A task with fixed rows gives its
    /// `val` rows, or `n` rows per skill drawn from `seed` when it has no `split` field.
    pub fn new(task: &dyn Task, n: usize, seed: u64) -> Result<Self, Error> {
        if let Some(rows) = task.rows() {
            let (val, train) = rows.partition(n, |skill| {
                stream_rng(seed, Purpose::VALIDATION, skill as u64)
            })?;
            let per_skill = val
                .iter()
                .map(|v| v.iter().map(|&i| rows.example(i)).collect())
                .collect();
            return Ok(Self {
                seed,
                per_skill,
                keys: HashSet::new(),
                train_rows: Some(train),
            });
        }
        let mut per_skill = Vec::with_capacity(task.num_skills());
        let mut keys = HashSet::new();
        for skill in 1..=task.num_skills() {
            check_capacity(task, skill, n as u128)?;
            let mut rng = stream_rng(seed, Purpose::VALIDATION, skill as u64);
            let mut seen = HashSet::with_capacity(n);
            let mut examples = Vec::with_capacity(n);
            while examples.len() < n {
                let ex = task.example(skill, &mut rng);
                let k = key(&ex.tokens);
                if seen.insert(k.clone()) {
                    keys.insert(k);
                    examples.push(ex);
                }
            }
            per_skill.push(examples);
        }
        Ok(Self {
            seed,
            per_skill,
            keys,
            train_rows: None,
        })
    }

    /// The validation set at the task's own seed (docs/paper.md §2–3: 42 for LEGO, 420 for
    /// addition).
    pub fn standard(task: &dyn Task, n: usize) -> Result<Self, Error> {
        Self::new(task, n, task.default_val_seed())
    }

    /// The seed the set was drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The examples of one skill (1-based).
    pub fn skill(&self, skill: usize) -> &[Example] {
        &self.per_skill[skill - 1]
    }

    /// All examples, skill by skill.
    pub fn iter(&self) -> impl Iterator<Item = &Example> {
        self.per_skill.iter().flatten()
    }

    /// Whether an example with these tokens is in the set (under any skill).
    pub fn contains(&self, tokens: &[u32]) -> bool {
        match self.train_rows {
            None => self.keys.contains(&key(tokens)),
            Some(_) => self.iter().any(|e| e.tokens == tokens),
        }
    }
}

/// The training examples of one run: for each skill, an endless stream from
/// `stream_rng(seed, TRAIN, skill)` that skips every example it already yielded for that skill and
/// every validation example, and fails with [`Error::Exhausted`] once the skill has no distinct
/// example left.
pub struct TrainStream<'a> {
    task: &'a dyn Task,
    validation: &'a ValidationSet,
    seed: u64,
    rngs: Vec<TaskRng>,
    /// Per skill, every text that is no longer available: yielded, or found in the validation set.
    used: Vec<HashSet<Box<[u8]>>>,
    yielded: Vec<u64>,
    /// A task with fixed rows: each skill's training rows in this epoch's order, the next one's
    /// index, and the epochs begun.
    epochs: Option<Epochs>,
}

struct Epochs {
    order: Vec<Vec<u32>>,
    next: Vec<usize>,
    begun: Vec<u64>,
}

impl<'a> TrainStream<'a> {
    /// The training stream of run seed `seed`, disjoint from `validation`.
    pub fn new(task: &'a dyn Task, seed: u64, validation: &'a ValidationSet) -> Self {
        let k = task.num_skills();
        Self {
            task,
            validation,
            seed,
            rngs: (1..=k)
                .map(|s| stream_rng(seed, Purpose::TRAIN, s as u64))
                .collect(),
            used: vec![HashSet::new(); k],
            yielded: vec![0; k],
            epochs: validation.train_rows.as_ref().map(|rows| Epochs {
                order: rows.clone(),
                next: vec![0; k],
                begun: vec![0; k],
            }),
        }
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next new example of `skill` (1-based).
    pub fn next(&mut self, skill: usize) -> Result<Example, Error> {
        self.task.check_skill(skill)?;
        if let (Some(e), Some(rows)) = (&mut self.epochs, self.task.rows()) {
            let s = skill - 1;
            if e.begun[s] == 0 || e.next[s] == e.order[s].len() {
                e.order[s].shuffle(&mut self.rngs[s]);
                e.next[s] = 0;
                e.begun[s] += 1;
            }
            e.next[s] += 1;
            self.yielded[s] += 1;
            return Ok(rows.example(e.order[s][e.next[s] - 1]));
        }
        let capacity = self.task.capacity(skill);
        let used = &mut self.used[skill - 1];
        let rng = &mut self.rngs[skill - 1];
        loop {
            // `used` only ever holds texts of this skill, so once it is as large as the skill's space
            // nothing is left (a text of the validation set enters `used` when it is drawn).
            if used.len() as u128 >= capacity {
                return Err(Error::Exhausted {
                    task: self.task.describe(),
                    skill,
                    capacity,
                });
            }
            let ex = self.task.example(skill, rng);
            let k = key(&ex.tokens);
            if used.contains(&k) {
                continue;
            }
            let in_validation = self.validation.keys.contains(&k);
            used.insert(k);
            if !in_validation {
                self.yielded[skill - 1] += 1;
                return Ok(ex);
            }
        }
    }

    /// `n` new examples of `skill`.
    pub fn take(&mut self, skill: usize, n: usize) -> Result<Vec<Example>, Error> {
        (0..n).map(|_| self.next(skill)).collect()
    }

    /// How many examples of `skill` the stream has yielded.
    pub fn yielded(&self, skill: usize) -> u64 {
        self.yielded[skill - 1]
    }

    /// The epochs of `skill`'s rows begun (a task with fixed rows; 0 for a generator, which never
    /// repeats an example).
    pub fn epochs(&self, skill: usize) -> u64 {
        self.epochs.as_ref().map_or(0, |e| e.begun[skill - 1])
    }

    /// Fails early when `n` more examples of `skill` cannot exist, counting the validation set (a
    /// task with fixed rows always has room: it begins another epoch).
    pub fn check_room(&self, skill: usize, n: usize) -> Result<(), Error> {
        self.task.check_skill(skill)?;
        if self.epochs.is_some() {
            return Ok(());
        }
        let wanted = self.yielded[skill - 1] as u128
            + n as u128
            + self.validation.skill(skill).len() as u128;
        check_capacity(self.task, skill, wanted)
    }
}
