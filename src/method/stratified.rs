//! `stratified`: uniform over the training skills (docs/paper.md §9).

use super::{MixtureMethod, Observation};

/// Uniform sampling over skills.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stratified;

impl MixtureMethod for Stratified {
    fn name(&self) -> &'static str {
        "stratified"
    }

    fn params(&self) -> String {
        String::new()
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        let n = observation.train_skills.len() as f64;
        let uniform = vec![1.0 / n; observation.train_skills.len()];
        super::expand(&uniform, observation.train_skills, observation.num_skills)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_over_five_skills() {
        let obs = Observation {
            step: 0,
            round: 0,
            num_skills: 5,
            train_skills: &[1, 2, 3, 4, 5],
            steps_per_round: 100,
            total_steps: 1000,
            batch_size: 32,
            evaluations: &[],
            train_losses: &[],
        };
        assert_eq!(Stratified.mixture(&obs), vec![0.2; 5]);
        // Fine-tuning on s3 with prerequisites s1, s2: uniform over those three.
        let obs = Observation {
            train_skills: &[1, 2, 3],
            ..obs
        };
        let third = 1.0 / 3.0;
        assert_eq!(
            Stratified.mixture(&obs),
            vec![third, third, third, 0.0, 0.0]
        );
    }
}
