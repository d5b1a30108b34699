//! `curriculum` and `anticurriculum` (SPEC §9; the authors' `curriculum_trainer.py`): score every
//! example of a stratified pool by the initial model's answer-token loss, sort ascending
//! (curriculum) or descending (anticurriculum), and in round r (1-based) draw the round's n examples
//! uniformly without replacement from the first r·n of the sorted pool (linear pacing: the pool
//! holds the whole budget, so the last round may draw from all of it).

use rand::seq::index;

use super::{MixtureMethod, Observation, Plan, ScoredPool};

/// Example-level curriculum over a scored pool.
#[derive(Debug, Clone)]
pub struct Curriculum {
    descending: bool,
    /// Pool indices, easiest first (curriculum) or hardest first (anticurriculum).
    order: Vec<usize>,
    skills: Vec<usize>,
}

impl Curriculum {
    /// `descending`: anticurriculum.
    pub fn new(descending: bool) -> Self {
        Self {
            descending,
            order: Vec::new(),
            skills: Vec::new(),
        }
    }

    /// The pool indices round `round` (0-based) may draw from, when rounds hold `n` examples.
    pub fn eligible(&self, round: usize, n: usize) -> &[usize] {
        let size = ((round + 1) * n).min(self.order.len());
        &self.order[..size]
    }
}

impl MixtureMethod for Curriculum {
    fn name(&self) -> &'static str {
        if self.descending {
            "anticurriculum"
        } else {
            "curriculum"
        }
    }

    fn params(&self) -> String {
        "pacing=linear".into()
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

    fn set_pool(&mut self, pool: ScoredPool) {
        let mut order: Vec<usize> = (0..pool.losses.len()).collect();
        // Stable sort: ties keep pool order, so the order is deterministic.
        order.sort_by(|&a, &b| pool.losses[a].total_cmp(&pool.losses[b]));
        if self.descending {
            order.reverse();
        }
        self.order = order;
        self.skills = pool.skills;
    }

    fn plan(
        &mut self,
        observation: &Observation,
        n: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Plan {
        let eligible = self.eligible(observation.round, n);
        let take = n.min(eligible.len());
        Plan::Pool(
            index::sample(rng, eligible.len(), take)
                .into_iter()
                .map(|i| eligible[i])
                .collect(),
        )
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
        };
        let mut c = Curriculum::new(false);
        c.set_pool(pool.clone());
        assert_eq!(c.eligible(0, 2), &[1, 5]);
        assert_eq!(c.eligible(1, 2), &[1, 5, 3, 2]);
        assert_eq!(c.eligible(2, 2), &[1, 5, 3, 2, 4, 0]);
        let mut a = Curriculum::new(true);
        a.set_pool(pool);
        assert_eq!(
            a.eligible(0, 2),
            &[0, 4],
            "anticurriculum starts from the hardest"
        );
        let obs = |round| Observation {
            step: 0,
            round,
            num_skills: 3,
            train_skills: &[1, 2, 3],
            steps_per_round: 1,
            total_steps: 1000,
            batch_size: 32,
            evaluations: &[],
            train_losses: &[],
        };
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
}
