//! `odm`: Online Data Mixing (Albalak, Pan, Raffel, Wang, 2023, arXiv 2312.02406): the skills are the
//! arms of an EXP3 bandit whose reward is the training loss.
//!
//! Before round t (1-based) of `update_every` steps, the previous round's importance-weighted reward
//! updates each skill that was trained: R̂_i ← α·R̂_i + (1 − α)·L_i / π_{t−1,i}, L_i its mean training
//! loss over that round. Then with K skills, ε_t = min(1/K, √(ln K / (K·t))):
//!
//!   π_t,i = (1 − K·ε_t) · exp(ε_{t−1}·R̂_i) / Σ_j exp(ε_{t−1}·R̂_j) + ε_t
//!
//! (ε_0 = 1/K). The paper updates after every step with the batch's losses; here once a round, with
//! the round's mean per-skill losses.

use serde::{Deserialize, Serialize};

use super::{MixtureMethod, Observation};

/// ODM's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OdmConfig {
    /// The smoothing α of the reward estimate.
    pub alpha: f64,
    /// Optimizer steps between updates (a round).
    pub update_every: u64,
}

impl Default for OdmConfig {
    fn default() -> Self {
        Self {
            alpha: 0.9,
            update_every: 10,
        }
    }
}

/// ε_t = min(1/K, √(ln K / (K·t))); ε_0 = 1/K.
pub fn exploration(k: usize, t: usize) -> f64 {
    let k = k as f64;
    if t == 0 {
        return 1.0 / k;
    }
    (1.0 / k).min((k.ln() / (k * t as f64)).sqrt())
}

/// π_t from the rewards R̂ (EXP3 with the exploration floor ε_t).
pub fn odm_policy(rewards: &[f64], t: usize) -> Vec<f64> {
    let k = rewards.len();
    let (eps, eps_prev) = (exploration(k, t), exploration(k, t - 1));
    let max = rewards
        .iter()
        .fold(f64::NEG_INFINITY, |m, &r| m.max(eps_prev * r));
    let w: Vec<f64> = rewards.iter().map(|r| (eps_prev * r - max).exp()).collect();
    let total: f64 = w.iter().sum();
    w.iter()
        .map(|x| (1.0 - k as f64 * eps) * x / total + eps)
        .collect()
}

/// ODM's state.
#[derive(Debug, Clone)]
pub struct Odm {
    config: OdmConfig,
    rewards: Vec<f64>,
    policy: Vec<f64>,
}

impl Odm {
    pub fn new(config: OdmConfig, num_train_skills: usize) -> Self {
        let k = num_train_skills;
        Self {
            config,
            rewards: vec![0.0; k],
            policy: vec![1.0 / k as f64; k],
        }
    }
}

impl MixtureMethod for Odm {
    fn name(&self) -> &'static str {
        "odm"
    }

    fn params(&self) -> String {
        format!(
            "alpha={};update_every={}",
            self.config.alpha, self.config.update_every
        )
    }

    fn round_steps(&mut self, _observation: &Observation, _default: u64) -> u64 {
        self.config.update_every
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        if self.rewards.len() != observation.train_skills.len() {
            *self = Self::new(self.config.clone(), observation.train_skills.len());
        }
        let a = self.config.alpha;
        for (i, &skill) in observation.train_skills.iter().enumerate() {
            if let Some(Some(loss)) = observation.train_losses.get(skill - 1) {
                self.rewards[i] = a * self.rewards[i] + (1.0 - a) * loss / self.policy[i];
            }
        }
        self.policy = odm_policy(&self.rewards, observation.round + 1);
        super::expand(
            &self.policy,
            observation.train_skills,
            observation.num_skills,
        )
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "rewards": self.rewards, "policy": self.policy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_policy_is_uniform_and_rewards_raise_a_skill() {
        // Round 1 (t = 1), K = 2: ε_1 = min(1/2, √(ln 2 / 2)) = min(0.5, 0.5887) = 0.5 →
        // π = (1 − 1)·softmax + 0.5 = [0.5, 0.5], whatever the rewards.
        assert_eq!(odm_policy(&[0.0, 0.0], 1), vec![0.5, 0.5]);
        assert_eq!(odm_policy(&[3.0, 0.0], 1), vec![0.5, 0.5]);
        // t = 4: ε_4 = √(ln 2 / 8) = 0.294353, ε_3 = √(ln 2 / 6) = 0.339889. R̂ = [2, 0]:
        // softmax(ε_3·R̂) = [e^0.679778, 1] / (e^0.679778 + 1) = [0.663689, 0.336311];
        // π = (1 − 2·0.294353)·[0.663689, 0.336311] + 0.294353 = [0.567325, 0.432675].
        let p = odm_policy(&[2.0, 0.0], 4);
        let e4 = (2f64.ln() / 8.0).sqrt();
        let e3 = (2f64.ln() / 6.0).sqrt();
        let s0 = (e3 * 2.0).exp() / ((e3 * 2.0).exp() + 1.0);
        let expected = [
            (1.0 - 2.0 * e4) * s0 + e4,
            (1.0 - 2.0 * e4) * (1.0 - s0) + e4,
        ];
        for (x, y) in p.iter().zip(expected) {
            assert!((x - y).abs() < 1e-12);
        }
        assert!((p[0] - 0.567325).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn the_reward_is_the_importance_weighted_smoothed_loss() {
        let mut odm = Odm::new(
            OdmConfig {
                alpha: 0.9,
                update_every: 10,
            },
            2,
        );
        let obs = |round, losses: &'static [Option<f64>]| Observation {
            step: 10 * round as u64,
            round,
            num_skills: 2,
            train_skills: &[1, 2],
            steps_per_round: 10,
            total_steps: 100,
            batch_size: 32,
            evaluations: &[],
            train_losses: losses,
        };
        assert_eq!(odm.mixture(&obs(0, &[])), vec![0.5, 0.5]);
        // Round 1 saw losses [1.0, 0.5] under π = [0.5, 0.5]:
        // R̂ = 0.9·0 + 0.1·[1.0/0.5, 0.5/0.5] = [0.2, 0.1].
        odm.mixture(&obs(1, &[Some(1.0), Some(0.5)]));
        assert!((odm.rewards[0] - 0.2).abs() < 1e-12 && (odm.rewards[1] - 0.1).abs() < 1e-12);
        // A skill absent from the round keeps its reward.
        odm.mixture(&obs(2, &[None, Some(0.5)]));
        assert!((odm.rewards[0] - 0.2).abs() < 1e-12);
    }
}
