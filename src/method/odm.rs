//! `odm`: Online Data Mixing (Albalak, Pan, Raffel, Wang, 2023, arXiv 2312.02406): the skills are the
//! arms of an EXP3 bandit whose reward is the training loss.
//!
//! The default is the authors' code (alon-albalak/online-data-mixing,
//! `megatron/data/data_sampling_utils.py`, `Exp3WeightUpdater.group_update`, lines 421–453, called
//! by `megatron/training.py:1267` once per optimizer step with each domain's mean loss in that
//! step's mixed minibatch; `scripts/train_1B_exp3_mixed_minibatches.sh` sets the warm-up to 2,000
//! steps and the update frequency to 1). After step s (s = 1, 2, …), when s > `warmup_steps` and
//! `update_every` divides s, with K skills and π the policy that drew the step's batch:
//!
//!   ε_prev ← ε;  ε ← min(1/K, √(ln K / (K·s)))            (ε starts at 1/K)
//!   R̂_i ← R̂_i + (L_i / 10) / π_i   for each skill i in the step's batch (L_i its mean loss)
//!   π_i = (1 − K·ε) · exp(ε_prev·R̂_i) / Σ_j exp(ε_prev·R̂_j) + ε
//!
//! (the `/ 10` is theirs, line 429: "scale down reward so that cumulative reward doesn't explode").
//! Before the first update π is uniform over the training skills. Named variants (`reward`):
//! - `smoothed_exp`: their `SmoothedMeanWeightUpdater.group_update` (lines 501–527):
//!   R̂_i ← α·R̂_i + (1 − α)·exp(L_i), no importance weight, and π_i = (1 − K·ε)·R̂_i / Σ_j R̂_j + ε
//!   (their group update normalizes linearly; its exponentiated line is commented out);
//! - `smoothed_iw`: skillit's rule before 2026-11-28, R̂_i ← α·R̂_i + (1 − α)·L_i / π_i with the
//!   exponential policy above (it matches no variant of theirs; kept so old results can be redone).
//!
//! With `update_every` > 1 a round holds `update_every` steps and the reward is the round's mean
//! loss per skill, where the authors' code uses the loss of the updating step alone.

use serde::{Deserialize, Serialize};

use super::{MixtureMethod, Observation};

/// The authors' reward scale: each loss is divided by 10 before it is added (`Exp3WeightUpdater`,
/// data_sampling_utils.py:383 and :429).
const REWARD_SCALE: f64 = 10.0;

/// How the reward estimate R̂ and the policy follow from the losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdmReward {
    /// The authors' EXP3: cumulative importance-weighted loss / 10, exponential policy.
    Exp3,
    /// The authors' smoothed mean of exp(loss), linear policy.
    SmoothedExp,
    /// skillit's former rule: smoothed importance-weighted loss, exponential policy.
    SmoothedIw,
}

impl OdmReward {
    fn label(self) -> &'static str {
        match self {
            OdmReward::Exp3 => "exp3",
            OdmReward::SmoothedExp => "smoothed_exp",
            OdmReward::SmoothedIw => "smoothed_iw",
        }
    }
}

/// ODM's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OdmConfig {
    /// The reward estimate (`exp3`, the authors' default).
    pub reward: OdmReward,
    /// The smoothing α of the smoothed rewards (unused by `exp3`).
    pub alpha: f64,
    /// Optimizer steps between updates: the authors' `data_sampling_update_frequency` (1).
    pub update_every: u64,
    /// Steps with the initial, uniform policy before the first update: the authors'
    /// `data_sampling_warmup_steps` (2,000 in every script of theirs).
    pub warmup_steps: u64,
}

impl Default for OdmConfig {
    fn default() -> Self {
        Self {
            reward: OdmReward::Exp3,
            alpha: 0.9,
            update_every: 1,
            warmup_steps: 2000,
        }
    }
}

/// ε after `step` optimizer steps: min(1/K, √(ln K / (K·step))).
pub fn exploration(k: usize, step: u64) -> f64 {
    let k = k as f64;
    (1.0 / k).min((k.ln() / (k * step as f64)).sqrt())
}

/// π = (1 − K·ε)·softmax(ε_prev·R̂) + ε (EXP3 with the exploration floor ε).
pub fn exp3_policy(rewards: &[f64], eps: f64, eps_prev: f64) -> Vec<f64> {
    let k = rewards.len() as f64;
    let max = rewards
        .iter()
        .fold(f64::NEG_INFINITY, |m, &r| m.max(eps_prev * r));
    // Subtracting the maximum leaves the softmax unchanged and keeps exp finite.
    let w: Vec<f64> = rewards.iter().map(|r| (eps_prev * r - max).exp()).collect();
    let total: f64 = w.iter().sum();
    w.iter()
        .map(|x| (1.0 - k * eps) * x / total + eps)
        .collect()
}

/// ODM's state.
#[derive(Debug, Clone)]
pub struct Odm {
    config: OdmConfig,
    rewards: Vec<f64>,
    policy: Vec<f64>,
    /// ε as of the last update (1/K before any).
    eps: f64,
}

impl Odm {
    pub fn new(config: OdmConfig, num_train_skills: usize) -> Self {
        let k = num_train_skills;
        Self {
            config,
            rewards: vec![0.0; k],
            policy: vec![1.0 / k as f64; k],
            eps: 1.0 / k as f64,
        }
    }

    /// One update after `step` steps from each training skill's loss (`None`: not in the batch).
    fn update(&mut self, step: u64, losses: &[Option<f64>]) {
        let k = self.rewards.len();
        let eps_prev = self.eps;
        self.eps = exploration(k, step);
        let a = self.config.alpha;
        for (i, loss) in losses.iter().enumerate() {
            let Some(loss) = *loss else { continue };
            let r = &mut self.rewards[i];
            *r = match self.config.reward {
                OdmReward::Exp3 => *r + loss / REWARD_SCALE / self.policy[i],
                OdmReward::SmoothedExp => a * *r + (1.0 - a) * loss.exp(),
                OdmReward::SmoothedIw => a * *r + (1.0 - a) * loss / self.policy[i],
            };
        }
        self.policy = match self.config.reward {
            OdmReward::SmoothedExp => {
                let total: f64 = self.rewards.iter().sum();
                let floor = 1.0 - k as f64 * self.eps;
                self.rewards
                    .iter()
                    .map(|r| floor * r / total + self.eps)
                    .collect()
            }
            _ => exp3_policy(&self.rewards, self.eps, eps_prev),
        };
    }
}

impl MixtureMethod for Odm {
    fn name(&self) -> &'static str {
        "odm"
    }

    fn params(&self) -> String {
        let c = &self.config;
        let mut p = format!(
            "reward={};update_every={};warmup={}",
            c.reward.label(),
            c.update_every,
            c.warmup_steps
        );
        if c.reward != OdmReward::Exp3 {
            p += &format!(";alpha={}", c.alpha);
        }
        p
    }

    fn round_steps(&mut self, observation: &Observation, _default: u64) -> u64 {
        // One round through the warm-up, then rounds ending where `update_every` divides the step
        // (the steps after which the authors' code updates).
        let (step, every) = (observation.step, self.config.update_every);
        if step < self.config.warmup_steps {
            self.config.warmup_steps - step
        } else {
            every - step % every
        }
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        if self.rewards.len() != observation.train_skills.len() {
            *self = Self::new(self.config.clone(), observation.train_skills.len());
        }
        let step = observation.step;
        if step > self.config.warmup_steps
            && step.is_multiple_of(self.config.update_every)
            && !observation.train_losses.is_empty()
        {
            let losses: Vec<Option<f64>> = observation
                .train_skills
                .iter()
                .map(|&s| observation.train_losses.get(s - 1).copied().flatten())
                .collect();
            self.update(step, &losses);
        }
        super::expand(
            &self.policy,
            observation.train_skills,
            observation.num_skills,
        )
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "rewards": self.rewards, "policy": self.policy, "eps": self.eps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe<'a>(step: u64, losses: &'a [Option<f64>]) -> Observation<'a> {
        crate::method::test_observation(step, 0, &[1, 2], 2, &[], losses)
    }

    fn close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-9, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn exp3_follows_the_authors_group_update_step_by_step() {
        let mut odm = Odm::new(
            OdmConfig {
                warmup_steps: 2,
                ..OdmConfig::default()
            },
            2,
        );
        // Warm-up: one round to step 2, no update at step 2 (their update needs iteration > warmup).
        assert_eq!(odm.round_steps(&observe(0, &[]), 10), 2);
        assert_eq!(odm.mixture(&observe(0, &[])), vec![0.5, 0.5]);
        assert_eq!(
            odm.mixture(&observe(2, &[Some(9.0), Some(9.0)])),
            vec![0.5, 0.5]
        );
        assert_eq!(odm.round_steps(&observe(2, &[]), 10), 1);
        // Step 3, losses [2.0, 1.0] under π = [0.5, 0.5], K = 2 (the same arithmetic as
        // Exp3WeightUpdater.group_update(iteration = 3)):
        //   ε_prev = 1/2; ε = min(1/2, √(ln 2 / 6)) = min(0.5, 0.339889) = 0.339889
        //   R̂ = [0 + 0.2/0.5, 0 + 0.1/0.5] = [0.4, 0.2]
        //   exp(0.5·R̂) = [e^0.2, e^0.1] = [1.221403, 1.105171], sum 2.326574
        //   π = (1 − 2·0.339889)·[0.524979, 0.475021] + 0.339889 = [0.507999, 0.492001]
        odm.mixture(&observe(3, &[Some(2.0), Some(1.0)]));
        close(&odm.rewards, &[0.4, 0.2]);
        let e3 = (2f64.ln() / 6.0).sqrt();
        let s = 0.2f64.exp() / (0.2f64.exp() + 0.1f64.exp());
        let p3 = [(1.0 - 2.0 * e3) * s + e3, (1.0 - 2.0 * e3) * (1.0 - s) + e3];
        close(&odm.policy, &p3);
        assert!((odm.policy[0] - 0.507999).abs() < 1e-6, "{:?}", odm.policy);
        // Step 4, skill 2 absent from the batch: only skill 1's reward grows, by (3.0/10)/π_1.
        //   ε_prev = 0.339889; ε = √(ln 2 / 8) = 0.294353
        //   R̂ = [0.4 + 0.3/0.507999, 0.2] = [0.990552, 0.2]
        odm.mixture(&observe(4, &[Some(3.0), None]));
        let r1 = 0.4 + 0.3 / p3[0];
        close(&odm.rewards, &[r1, 0.2]);
        let e4 = (2f64.ln() / 8.0).sqrt();
        close(&odm.policy, &exp3_policy(&[r1, 0.2], e4, e3));
        let s = (e3 * r1).exp() / ((e3 * r1).exp() + (e3 * 0.2).exp());
        close(
            &odm.policy,
            &[(1.0 - 2.0 * e4) * s + e4, (1.0 - 2.0 * e4) * (1.0 - s) + e4],
        );
        assert_eq!(
            odm.params(),
            "reward=exp3;update_every=1;warmup=2",
            "the label names the rule"
        );
    }

    #[test]
    fn updates_wait_for_a_multiple_of_update_every() {
        let mut odm = Odm::new(
            OdmConfig {
                update_every: 10,
                warmup_steps: 15,
                ..OdmConfig::default()
            },
            2,
        );
        // From step 15 the next update is at 20, then every 10 steps.
        assert_eq!(odm.round_steps(&observe(15, &[]), 1), 5);
        assert_eq!(odm.round_steps(&observe(20, &[]), 1), 10);
        // No update at 15 (not a multiple), one at 20.
        odm.mixture(&observe(15, &[Some(1.0), Some(1.0)]));
        assert_eq!(odm.rewards, vec![0.0, 0.0]);
        odm.mixture(&observe(20, &[Some(1.0), Some(1.0)]));
        close(&odm.rewards, &[0.2, 0.2]);
    }

    #[test]
    fn the_named_variants_follow_their_rules() {
        // smoothed_exp, α = 0.5, step 1 (no warm-up), losses [1, 0]:
        //   R̂ = 0.5·0 + 0.5·[e, 1] = [1.359141, 0.5]; ε = min(1/2, √(ln 2 / 2)) = 0.5
        //   π = (1 − 2·0.5)·R̂/ΣR̂ + 0.5 = [0.5, 0.5]; at step 8, ε = √(ln 2 / 16) = 0.208138
        //   after R̂ = 0.5·R̂ + 0.5·[e, 1] = [2.038711, 0.75]:
        //   π = 0.583724·[0.731069, 0.268931] + 0.208138 = [0.634874, 0.365126]
        let mut odm = Odm::new(
            OdmConfig {
                reward: OdmReward::SmoothedExp,
                alpha: 0.5,
                warmup_steps: 0,
                ..OdmConfig::default()
            },
            2,
        );
        odm.mixture(&observe(1, &[Some(1.0), Some(0.0)]));
        close(&odm.policy, &[0.5, 0.5]);
        odm.mixture(&observe(8, &[Some(1.0), Some(0.0)]));
        let e = 1f64.exp();
        let r = [0.25 * e + 0.5 * e, 0.75];
        close(&odm.rewards, &r);
        let e8 = (2f64.ln() / 16.0).sqrt();
        let total = r[0] + r[1];
        close(
            &odm.policy,
            &[
                (1.0 - 2.0 * e8) * r[0] / total + e8,
                (1.0 - 2.0 * e8) * r[1] / total + e8,
            ],
        );
        assert!((odm.policy[0] - 0.634874).abs() < 1e-6, "{:?}", odm.policy);
        assert_eq!(
            odm.params(),
            "reward=smoothed_exp;update_every=1;warmup=0;alpha=0.5"
        );
        // smoothed_iw, α = 0.9: R̂ = 0.9·0 + 0.1·[1.0/0.5, 0.5/0.5] = [0.2, 0.1].
        let mut odm = Odm::new(
            OdmConfig {
                reward: OdmReward::SmoothedIw,
                warmup_steps: 0,
                ..OdmConfig::default()
            },
            2,
        );
        odm.mixture(&observe(1, &[Some(1.0), Some(0.5)]));
        close(&odm.rewards, &[0.2, 0.1]);
    }

    #[test]
    fn exploration_is_the_authors_epsilon() {
        // K = 5, step 2001: √(ln 5 / (5·2001)) = √(1.609438 / 10005) = 0.012683.
        assert!((exploration(5, 2001) - 0.012683).abs() < 1e-6);
        assert_eq!(exploration(5, 1), 0.2);
    }
}
