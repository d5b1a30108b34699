//! `stratified`: uniform over the training skills (SPEC §9).

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
        vec![1.0 / observation.num_skills as f64; observation.num_skills]
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
            steps_per_round: 100,
            evaluations: &[],
        };
        assert_eq!(Stratified.mixture(&obs), vec![0.2; 5]);
    }
}
