//! `skill_curriculum` and `skill_anticurriculum` (docs/paper.md §9; the authors'
//! `group_curriculum_trainer.py`): order the train skills by the initial model's mean loss on the
//! scored pool (ascending, or descending for the anticurriculum) and train on them in turn, each
//! phase mixing in a fraction `frac` of every earlier skill; a final phase samples the whole pool
//! uniformly. With pool sizes n_i and m skills, skill i (0-based in the order) is seen in its phase,
//! `frac` of it in each of the m − i − 1 later phases and once more in the final phase, so the
//! budget N (steps × batch) is shared with scale = N / Σ_i n_i·(2 + (m − i − 1)·frac): phase i holds
//! ⌊scale·n_i⌋ examples of its skill plus ⌊scale·frac·n_j⌋ of each earlier skill j, and the final
//! phase the rest. With frac = 0 (the code's default; the paper uses 0.4) the skill phases take half
//! the budget.

use serde::{Deserialize, Serialize};

use super::{MixtureMethod, Observation, ScoredPool};

/// The skill curricula's parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkillCurriculumConfig {
    /// The fraction of each earlier skill mixed into a phase (code 0.0, paper 0.4).
    pub frac: f64,
}

impl Default for SkillCurriculumConfig {
    fn default() -> Self {
        Self { frac: 0.0 }
    }
}

impl SkillCurriculumConfig {
    /// The defaults, for the builder shape `SkillCurriculumConfig::new().with_frac(0.4)`.
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_frac(mut self, frac: f64) -> Self {
        self.frac = frac;
        self
    }
}

/// One phase: its length in steps and its mixture over all k skills.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub steps: u64,
    pub mixture: Vec<f64>,
}

/// Skills in turn, ordered by initial loss.
#[derive(Debug, Clone)]
pub struct SkillCurriculum {
    descending: bool,
    config: SkillCurriculumConfig,
    pool: Option<ScoredPool>,
    phases: Vec<Phase>,
}

impl SkillCurriculum {
    /// `descending`: the anticurriculum.
    pub fn new(descending: bool, config: SkillCurriculumConfig) -> Self {
        Self {
            descending,
            config,
            pool: None,
            phases: Vec::new(),
        }
    }

    /// The train skills ordered by their mean initial loss on the pool.
    pub fn order(pool: &ScoredPool, descending: bool) -> Vec<usize> {
        let mut skills: Vec<usize> = pool.skills.clone();
        skills.sort_unstable();
        skills.dedup();
        let mean = |s: usize| {
            let l: Vec<f64> = pool
                .skills
                .iter()
                .zip(&pool.losses)
                .filter(|(k, _)| **k == s)
                .map(|(_, l)| *l)
                .collect();
            l.iter().sum::<f64>() / l.len() as f64
        };
        skills.sort_by(|&a, &b| mean(a).total_cmp(&mean(b)));
        if descending {
            skills.reverse();
        }
        skills
    }

    /// The phases for a budget of `total_steps` steps of `batch` examples over `k` skills.
    pub fn phases(
        &self,
        pool: &ScoredPool,
        k: usize,
        total_steps: u64,
        batch: usize,
    ) -> Vec<Phase> {
        let order = Self::order(pool, self.descending);
        let size = |s: usize| pool.skills.iter().filter(|&&k| k == s).count() as f64;
        let m = order.len();
        let budget = total_steps as f64 * batch as f64;
        let unscaled: f64 = order
            .iter()
            .enumerate()
            .map(|(i, &s)| size(s) * (2.0 + (m - i - 1) as f64 * self.config.frac))
            .sum();
        let scale = budget / unscaled;
        let mut phases = Vec::new();
        let mut used = 0u64;
        for (i, &s) in order.iter().enumerate() {
            let mut counts = vec![0.0; k];
            counts[s - 1] = (scale * size(s)).floor();
            for &prev in &order[..i] {
                counts[prev - 1] = (scale * self.config.frac * size(prev)).floor();
            }
            let n: f64 = counts.iter().sum();
            let steps = ((n / batch as f64).round() as u64).max(1);
            used += steps;
            phases.push(Phase {
                steps,
                mixture: counts.iter().map(|c| c / n).collect(),
            });
        }
        // The final phase: the rest of the budget, uniform over the pool.
        let mut uniform = vec![0.0; k];
        for &s in &pool.skills {
            uniform[s - 1] += 1.0 / pool.skills.len() as f64;
        }
        phases.push(Phase {
            steps: total_steps.saturating_sub(used).max(1),
            mixture: uniform,
        });
        phases
    }
}

impl MixtureMethod for SkillCurriculum {
    fn name(&self) -> &'static str {
        if self.descending {
            "skill_anticurriculum"
        } else {
            "skill_curriculum"
        }
    }

    fn params(&self) -> String {
        format!("frac={}", self.config.frac)
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        match self.phases.get(observation.round).or(self.phases.last()) {
            Some(p) => p.mixture.clone(),
            None => vec![1.0 / observation.num_skills as f64; observation.num_skills],
        }
    }

    fn round_steps(&mut self, observation: &Observation, default: u64) -> u64 {
        if self.phases.is_empty() {
            if let Some(pool) = &self.pool {
                self.phases = self.phases(
                    pool,
                    observation.num_skills,
                    observation.total_steps,
                    observation.batch_size,
                );
            }
        }
        self.phases
            .get(observation.round)
            .map_or(default, |p| p.steps)
    }

    fn wants_pool(&self) -> bool {
        true
    }

    fn set_pool(&mut self, pool: ScoredPool) {
        self.pool = Some(pool);
        self.phases.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> ScoredPool {
        // Three skills, 4 pool examples each; mean losses s1 0.6, s2 0.2, s3 0.4.
        ScoredPool {
            skills: vec![1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
            losses: vec![0.6; 4]
                .into_iter()
                .chain(vec![0.2; 4])
                .chain(vec![0.4; 4])
                .collect(),
            answers: vec![0; 12],
            rng: rand::SeedableRng::seed_from_u64(0),
        }
    }

    #[test]
    fn skills_are_ordered_by_mean_initial_loss() {
        assert_eq!(SkillCurriculum::order(&pool(), false), vec![2, 3, 1]);
        assert_eq!(SkillCurriculum::order(&pool(), true), vec![1, 3, 2]);
    }

    #[test]
    fn phases_share_the_budget_as_the_authors_do() {
        // frac = 0: unscaled = 4·2 ·3 = 24; budget 12 steps × 4 = 48 → scale 2: each skill phase holds
        // 8 examples = 2 steps, the final phase 12 − 6 = 6 steps.
        let c = SkillCurriculum::new(false, SkillCurriculumConfig { frac: 0.0 });
        let p = c.phases(&pool(), 3, 12, 4);
        let steps: Vec<u64> = p.iter().map(|p| p.steps).collect();
        assert_eq!(steps, vec![2, 2, 2, 6]);
        assert_eq!(p[0].mixture, vec![0.0, 1.0, 0.0]);
        assert_eq!(p[1].mixture, vec![0.0, 0.0, 1.0]);
        assert_eq!(p[3].mixture, vec![1.0 / 3.0; 3]);
        // frac = 0.5: unscaled = 4·(2 + 2·0.5) + 4·(2 + 0.5) + 4·2 = 12 + 10 + 8 = 30; scale 48/30 = 1.6.
        // Phase 1: ⌊6.4⌋ = 6 of s2 → 6/4 = 1.5 → 2 steps. Phase 2: 6 of s3 + ⌊1.6·0.5·4⌋ = 3 of s2
        // = 9 → 2 steps, mixture s2 3/9, s3 6/9. Phase 3: 6 of s1 + 3 of s2 + 3 of s3 = 12 → 3 steps.
        // Final: 12 − 7 = 5 steps.
        let c = SkillCurriculum::new(false, SkillCurriculumConfig { frac: 0.5 });
        let p = c.phases(&pool(), 3, 12, 4);
        let steps: Vec<u64> = p.iter().map(|p| p.steps).collect();
        assert_eq!(steps, vec![2, 2, 3, 5]);
        assert_eq!(p[1].mixture, vec![0.0, 3.0 / 9.0, 6.0 / 9.0]);
        assert_eq!(p[2].mixture, vec![0.5, 0.25, 0.25]);
    }
}
