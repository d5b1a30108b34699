//! `target_only`: fine-tuning on the target skill alone (docs/paper.md §9).

use super::{MixtureMethod, Observation};

/// All the data from the target skill.
#[derive(Debug, Clone)]
pub struct TargetOnly {
    target: usize,
}

impl TargetOnly {
    /// `target` is the 1-based target skill.
    pub fn new(target: usize) -> Self {
        Self { target }
    }
}

impl MixtureMethod for TargetOnly {
    fn name(&self) -> &'static str {
        "target_only"
    }

    fn params(&self) -> String {
        format!("target={}", self.target)
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        let mut p = vec![0.0; observation.num_skills];
        p[self.target - 1] = 1.0;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_on_the_target() {
        let obs = Observation {
            step: 0,
            round: 0,
            num_skills: 5,
            train_skills: &[1, 2, 3],
            steps_per_round: 500,
            total_steps: 1000,
            batch_size: 32,
            evaluations: &[],
            train_losses: &[],
        };
        assert_eq!(
            TargetOnly::new(3).mixture(&obs),
            vec![0.0, 0.0, 1.0, 0.0, 0.0]
        );
    }
}
