//! `fixed`: a given mixture, the same every round; the paper's imbalanced `random` baseline is
//! `fixed` with LEGO 1:1:1:3:5 or addition 13:14:18 (docs/paper.md §9).

use super::{MixtureMethod, Observation};

/// Fixed proportions, normalised to sum to 1.
#[derive(Debug, Clone)]
pub struct Fixed {
    weights: Vec<f64>,
}

impl Fixed {
    /// `weights` must be non-negative with a positive sum ([`super::MethodSpec::validate`]).
    pub fn new(weights: Vec<f64>) -> Self {
        Self { weights }
    }
}

impl MixtureMethod for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn params(&self) -> String {
        let w: Vec<String> = self.weights.iter().map(|w| w.to_string()).collect();
        format!("weights={}", w.join(":"))
    }

    fn mixture(&mut self, _observation: &Observation) -> Vec<f64> {
        let total: f64 = self.weights.iter().sum();
        self.weights.iter().map(|w| w / total).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_random_lego_mixture() {
        // 1:1:1:3:5 over a total of 11 → [1/11, 1/11, 1/11, 3/11, 5/11]
        let mut m = Fixed::new(vec![1.0, 1.0, 1.0, 3.0, 5.0]);
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
        let p = m.mixture(&obs);
        let expected = [1.0 / 11.0, 1.0 / 11.0, 1.0 / 11.0, 3.0 / 11.0, 5.0 / 11.0];
        for (a, e) in p.iter().zip(expected) {
            assert!((a - e).abs() < 1e-15);
        }
        assert_eq!(m.params(), "weights=1:1:1:3:5");
    }
}
