//! `curriculum` and `anticurriculum` (docs/paper.md §9; the authors' `curriculum_trainer.py`):
//! score every example of a pool by the initial model's answer-token loss, sort ascending
//! (curriculum) or descending (anticurriculum), and in round r (1-based) draw the round's n
//! examples uniformly without replacement from the first r·n of the sorted pool (linear pacing,
//! their `_get_pacing`, curriculum_trainer.py:16–19: the pool holds the whole budget, so the last
//! round may draw from all of it). `ramp` < 1 (ours) admits the pool faster, the first r·n / ramp,
//! so that only the first `ramp` of the run is paced.
//!
//! The defaults are the authors' scripts (HazyResearch/skill-it, `scripts/*/pt/run_curriculum.sh`
//! and `run_anticurriculum.sh`): in pre-training the pool is drawn with the paper's imbalanced
//! mixture (`--sample_rule mixture --proportions 1 1 1 3 5` for LEGO k = 5, `13 14 18` for addition
//! k = 3; [`super::paper_random_weights`]), and a round lasts their `--update_steps` (1,000 steps for
//! LEGO, 2,000 for addition: 6 and 3 rounds of a 6,000-step run). `pool = [...]` gives other pool
//! proportions (`[1, 1, 1, 1, 1]`: skillit's stratified pool before 2026-11-28), `update_steps` other
//! rounds. In fine-tuning (no script of theirs) the pool is uniform over the training skills and a
//! round is the run's `steps_per_round`. The pool is drawn with exact per-skill counts where their
//! generator draws each example's skill at random with those proportions.
//!
//! Two controls of ours share the pacing and change only the order, to find out why the curricula
//! teach addition from scratch where every skill-level method stays at chance (results/README.md):
//! `class_curriculum` groups the pool by answer token, the groups in a seeded random order (early
//! rounds hold few answer classes, as the curricula's do when the random model's loss depends mostly
//! on the answer), and `paced_random` puts the pool in a seeded random order (the pacing, and its
//! repetition of early examples, without any order).

use std::collections::BTreeMap;

use rand::seq::{index, SliceRandom};
use serde::{Deserialize, Serialize};

use super::{MixtureMethod, Observation, Plan, ScoredPool};

/// The pacing's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingConfig {
    /// The fraction of the budget over which the admitted part of the pool grows to all of it
    /// (1: the authors' linear pacing over the whole run). With `ramp` = 0.2, the first fifth of
    /// the rounds admit the pool step by step and the later ones draw from all of it.
    pub ramp: f64,
    /// The pool's skill proportions, one weight per skill of the task (empty: the authors' for the
    /// task and setting, see the module docs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<f64>,
    /// Optimizer steps per round (absent: the authors' for the task, else the run's
    /// `steps_per_round`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_steps: Option<u64>,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            ramp: 1.0,
            pool: Vec::new(),
            update_steps: None,
        }
    }
}

impl PacingConfig {
    /// Fills what the config leaves open with the authors' choices for `task` in `setting`: the
    /// paper's imbalanced pool and their `--update_steps` in pre-training (LEGO k = 5: 1,000,
    /// `scripts/lego/pt/run_curriculum.sh`; addition k = 3: 2,000,
    /// `scripts/addition/pt/run_curriculum.sh`), a uniform pool and the run's rounds otherwise.
    pub fn resolved(&self, task: &str, num_skills: usize, setting: &str) -> Self {
        let pretrain = setting == "pretrain";
        let mut c = self.clone();
        if c.pool.is_empty() {
            c.pool = match pretrain {
                true => super::paper_random_weights(task, num_skills),
                false => vec![1.0; num_skills],
            };
        }
        if c.update_steps.is_none() && pretrain {
            c.update_steps = match (task, num_skills) {
                ("lego", 5) => Some(1000),
                ("addition", 3) => Some(2000),
                _ => None,
            };
        }
        c
    }
}

/// How the pool is ordered before the pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolOrder {
    /// By the initial model's answer loss, lowest first (`curriculum`).
    Loss,
    /// Highest first (`anticurriculum`).
    LossDescending,
    /// Grouped by answer token, the groups in a random order (`class_curriculum`).
    AnswerClass,
    /// A random order (`paced_random`).
    Random,
}

/// Example-level curriculum over a scored pool.
#[derive(Debug, Clone)]
pub struct Curriculum {
    by: PoolOrder,
    pacing: PacingConfig,
    /// Pool indices in the order the pacing admits them.
    order: Vec<usize>,
    skills: Vec<usize>,
    answers: Vec<u32>,
    /// Each round's examples counted by answer token (the manifest's `method_state`: what each
    /// round trained on). A resumed run rebuilds it as it replays the plans of the rounds before.
    drawn: Vec<BTreeMap<u32, usize>>,
}

impl Curriculum {
    pub fn new(by: PoolOrder) -> Self {
        Self {
            by,
            pacing: PacingConfig::default(),
            order: Vec::new(),
            skills: Vec::new(),
            answers: Vec::new(),
            drawn: Vec::new(),
        }
    }

    pub fn with_pacing(mut self, pacing: PacingConfig) -> Self {
        self.pacing = pacing;
        self
    }

    /// The pool indices round `round` (0-based) may draw from, when rounds hold `n` examples:
    /// the first (round + 1)·n / ramp of the ordered pool.
    pub fn eligible(&self, round: usize, n: usize) -> &[usize] {
        let size = (((round + 1) * n) as f64 / self.pacing.ramp).round() as usize;
        &self.order[..size.min(self.order.len())]
    }
}

impl MixtureMethod for Curriculum {
    fn name(&self) -> &'static str {
        match self.by {
            PoolOrder::Loss => "curriculum",
            PoolOrder::LossDescending => "anticurriculum",
            PoolOrder::AnswerClass => "class_curriculum",
            PoolOrder::Random => "paced_random",
        }
    }

    fn params(&self) -> String {
        let p = &self.pacing;
        let mut s = String::from("pacing=linear");
        if p.ramp != 1.0 {
            s += &format!(",ramp={}", p.ramp);
        }
        if !p.pool.is_empty() {
            let w: Vec<String> = p.pool.iter().map(f64::to_string).collect();
            s += &format!(";pool={}", w.join(":"));
        }
        if let Some(u) = p.update_steps {
            s += &format!(";update_steps={u}");
        }
        s
    }

    fn round_steps(&mut self, _observation: &Observation, default: u64) -> u64 {
        self.pacing.update_steps.unwrap_or(default)
    }

    fn pool_mixture(&self) -> Option<Vec<f64>> {
        (!self.pacing.pool.is_empty()).then(|| self.pacing.pool.clone())
    }

    /// The skill proportions of the whole pool (what the rounds draw from in the end).
    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        let mut p = vec![0.0; observation.num_skills];
        for &s in &self.skills {
            p[s - 1] += 1.0 / self.skills.len() as f64;
        }
        p
    }

    fn wants_pool(&self) -> bool {
        true
    }

    fn scores_pool(&self) -> bool {
        matches!(self.by, PoolOrder::Loss | PoolOrder::LossDescending)
    }

    fn set_pool(&mut self, pool: ScoredPool) {
        let ScoredPool {
            skills,
            losses,
            answers,
            mut rng,
        } = pool;
        let mut order: Vec<usize> = (0..skills.len()).collect();
        // Stable sorts: ties keep pool order, so the order is deterministic.
        match self.by {
            PoolOrder::Loss => order.sort_by(|&a, &b| losses[a].total_cmp(&losses[b])),
            PoolOrder::LossDescending => {
                order.sort_by(|&a, &b| losses[a].total_cmp(&losses[b]));
                order.reverse();
            }
            PoolOrder::AnswerClass => {
                // A random order within each class (the pool is grouped by skill), then the
                // classes in a random order.
                order.shuffle(&mut rng);
                let mut classes: Vec<u32> = answers.clone();
                classes.sort_unstable();
                classes.dedup();
                classes.shuffle(&mut rng);
                // Stable, and each example's class rank looked up once.
                order.sort_by_cached_key(|&i| classes.iter().position(|&c| c == answers[i]));
            }
            PoolOrder::Random => order.shuffle(&mut rng),
        }
        self.order = order;
        self.skills = skills;
        self.answers = answers;
    }

    fn plan(
        &mut self,
        observation: &Observation,
        n: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Plan {
        let eligible = self.eligible(observation.round, n);
        let take = n.min(eligible.len());
        let picked: Vec<usize> = index::sample(rng, eligible.len(), take)
            .into_iter()
            .map(|i| eligible[i])
            .collect();
        let mut counts = BTreeMap::new();
        for &i in &picked {
            *counts.entry(self.answers[i]).or_insert(0) += 1;
        }
        self.drawn.truncate(observation.round);
        self.drawn.push(counts);
        Plan::Pool(picked)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "answers_drawn": self.drawn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn linear_pacing_on_a_tiny_scored_pool() {
        // Six examples with losses [0.9, 0.1, 0.5, 0.3, 0.7, 0.2]; sorted ascending the indices are
        // [1, 5, 3, 2, 4, 0]. Rounds of n = 2: round 1 draws from the first 2 ({1, 5}), round 2 from
        // the first 4 ({1, 5, 3, 2}), round 3 from all 6.
        let pool = ScoredPool {
            skills: vec![1, 1, 2, 2, 3, 3],
            losses: vec![0.9, 0.1, 0.5, 0.3, 0.7, 0.2],
            answers: vec![0; 6],
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(0),
        };
        let mut c = Curriculum::new(PoolOrder::Loss);
        c.set_pool(pool.clone());
        assert_eq!(c.eligible(0, 2), &[1, 5]);
        assert_eq!(c.eligible(1, 2), &[1, 5, 3, 2]);
        assert_eq!(c.eligible(2, 2), &[1, 5, 3, 2, 4, 0]);
        let mut a = Curriculum::new(PoolOrder::LossDescending);
        a.set_pool(pool);
        assert_eq!(
            a.eligible(0, 2),
            &[0, 4],
            "anticurriculum starts from the hardest"
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for round in 0..3 {
            let Plan::Pool(picked) = c.plan(&obs(round), 2, &mut rng) else {
                panic!("a curriculum picks pool examples");
            };
            assert_eq!(picked.len(), 2);
            assert_ne!(picked[0], picked[1], "without replacement");
            assert!(picked.iter().all(|i| c.eligible(round, 2).contains(i)));
        }
        // Round 1 has exactly two eligible examples: it takes both.
        let Plan::Pool(mut first) = c.plan(&obs(0), 2, &mut rng) else {
            unreachable!()
        };
        first.sort();
        assert_eq!(first, vec![1, 5]);
    }

    #[test]
    fn a_short_ramp_admits_the_whole_pool_early() {
        // 12 examples, rounds of n = 2, ramp 0.5: round r (0-based) admits (r + 1)·2 / 0.5 =
        // 4, 8, 12 examples, then all 12 in every later round; the default ramp 1 admits 2, 4, 6.
        let mut c = Curriculum::new(PoolOrder::Random).with_pacing(PacingConfig {
            ramp: 0.5,
            ..PacingConfig::default()
        });
        c.set_pool(class_pool(0));
        let sizes: Vec<usize> = (0..5).map(|r| c.eligible(r, 2).len()).collect();
        assert_eq!(sizes, vec![4, 8, 12, 12, 12]);
        assert_eq!(c.params(), "pacing=linear,ramp=0.5");
        let mut d = Curriculum::new(PoolOrder::Random);
        d.set_pool(class_pool(0));
        let sizes: Vec<usize> = (0..3).map(|r| d.eligible(r, 2).len()).collect();
        assert_eq!(sizes, vec![2, 4, 6]);
        assert_eq!(d.params(), "pacing=linear");
    }

    #[test]
    fn the_authors_pool_and_rounds_by_task_and_setting() {
        // LEGO k = 5 pre-training: run_curriculum.sh's `--proportions 1 1 1 3 5 --update_steps
        // 1000`; addition k = 3: `13 14 18`, `--update_steps 2000`.
        let lego = PacingConfig::default().resolved("lego", 5, "pretrain");
        assert_eq!(lego.pool, vec![1.0, 1.0, 1.0, 3.0, 5.0]);
        assert_eq!(lego.update_steps, Some(1000));
        let addition = PacingConfig::default().resolved("addition", 3, "pretrain");
        assert_eq!(addition.pool, vec![13.0, 14.0, 18.0]);
        assert_eq!(addition.update_steps, Some(2000));
        // Fine-tuning: uniform, the run's rounds; a given pool or round length is kept.
        let ft = PacingConfig::default().resolved("lego", 5, "finetune");
        assert_eq!((ft.pool, ft.update_steps), (vec![1.0; 5], None));
        let given = PacingConfig {
            pool: vec![1.0; 5],
            update_steps: Some(500),
            ..PacingConfig::default()
        }
        .resolved("lego", 5, "pretrain");
        assert_eq!((given.pool, given.update_steps), (vec![1.0; 5], Some(500)));
        let mut c = Curriculum::new(PoolOrder::Loss).with_pacing(lego);
        assert_eq!(c.params(), "pacing=linear;pool=1:1:1:3:5;update_steps=1000");
        assert_eq!(c.round_steps(&obs(0), 200), 1000);
        assert_eq!(c.pool_mixture(), Some(vec![1.0, 1.0, 1.0, 3.0, 5.0]));
    }

    fn obs(round: usize) -> Observation<'static> {
        Observation {
            step: 0,
            round,
            num_skills: 3,
            train_skills: &[1, 2, 3],
            steps_per_round: 1,
            total_steps: 1000,
            batch_size: 32,
            evaluations: &[],
            train_losses: &[],
        }
    }

    /// A pool of 12 examples, 4 per skill, whose answers are 7, 3 and 5, four times each.
    fn class_pool(seed: u64) -> ScoredPool {
        ScoredPool {
            skills: vec![1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
            losses: vec![0.5; 12],
            answers: vec![7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5],
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }

    #[test]
    fn class_curriculum_admits_one_answer_class_at_a_time() {
        // Rounds of n = 4 over 12 examples with 3 answers × 4: round 1 may draw only from the
        // 4 examples of the first class, round 2 from those of two classes (8), round 3 from all.
        let pool = class_pool(1);
        let answers = pool.answers.clone();
        let mut c = Curriculum::new(PoolOrder::AnswerClass);
        c.set_pool(pool);
        let classes = |round| {
            let mut a: Vec<u32> = c.eligible(round, 4).iter().map(|&i| answers[i]).collect();
            a.sort_unstable();
            a.dedup();
            a
        };
        assert_eq!(classes(0).len(), 1, "round 1 holds one answer class");
        assert_eq!(c.eligible(0, 4).len(), 4);
        assert_eq!(classes(1).len(), 2);
        assert!(
            classes(1).contains(&classes(0)[0]),
            "the rounds' sets are nested"
        );
        assert_eq!(classes(2), vec![3, 5, 7]);
        // What each round drew is recorded by answer token: round 1 took the first class's four.
        let first_class = classes(0)[0].to_string();
        let Plan::Pool(_) = c.plan(&obs(0), 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))
        else {
            unreachable!()
        };
        assert_eq!(
            c.state(),
            serde_json::json!({ "answers_drawn": [{ first_class: 4 }] })
        );
        // The class order comes from the pool's stream: some seed puts another class first.
        let first = |seed| {
            let mut c = Curriculum::new(PoolOrder::AnswerClass);
            c.set_pool(class_pool(seed));
            answers[c.eligible(0, 4)[0]]
        };
        assert_eq!(first(1), first(1), "the same seed gives the same order");
        assert!((0..20).any(|seed| first(seed) != first(1)));
    }

    #[test]
    fn paced_random_admits_a_random_prefix_of_every_class() {
        // The same pacing over a shuffled pool: every example is admitted once, and a seed's order
        // is not the pool's own (skill-grouped) order.
        let mut c = Curriculum::new(PoolOrder::Random);
        c.set_pool(class_pool(3));
        let mut all = c.eligible(2, 4).to_vec();
        assert_ne!(all, (0..12).collect::<Vec<_>>(), "shuffled");
        all.sort_unstable();
        assert_eq!(
            all,
            (0..12).collect::<Vec<_>>(),
            "a permutation of the pool"
        );
        assert_eq!(c.name(), "paced_random");
        assert!(
            !c.scores_pool(),
            "the controls order the pool without the model's scores"
        );
        assert!(!Curriculum::new(PoolOrder::AnswerClass).scores_pool());
        assert!(Curriculum::new(PoolOrder::Loss).scores_pool());
        let Plan::Pool(mut picked) =
            c.plan(&obs(0), 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))
        else {
            unreachable!()
        };
        picked.sort_unstable();
        let mut first = c.eligible(0, 4).to_vec();
        first.sort_unstable();
        assert_eq!(picked, first, "round 1 takes its whole eligible prefix");
    }
}
