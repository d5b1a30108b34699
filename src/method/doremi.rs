//! `doremi`: DoReMi (Xie et al., NeurIPS 2023, arXiv 2305.10429), online.
//!
//! A reference model is trained first with the stratified mixture (same config and seed; the loop
//! trains it into `reference/` in the run's folder, as [`MixtureMethod::reference`] asks). The run
//! itself is DoReMi's proxy: before each round of `update_every` steps, with λ_i = max(L_i − L_ref,i,
//! 0) the excess validation loss of skill i over the reference's at the same step (the reference's
//! last evaluation at or before it),
//!
//!   α ← (1 − c) · softmax(log α + η·λ) + c / m,
//!
//! from α = uniform, and the round trains on α. The paper's final mixture, the average of the α over
//! the updates, is recorded in the manifest (`method_state.average`) for a second run with `fixed`.
//! Differences from the paper: λ uses the validation sets' per-skill losses (the loop's evaluations)
//! instead of the training batch's per-token losses, and α changes once a round, not every step.

use serde::{Deserialize, Serialize};

use super::{Evaluation, MethodSpec, MixtureMethod, Observation};

/// DoReMi's parameters (the paper's η = 1, c = 10⁻³).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoremiConfig {
    /// The step size η of the exponentiated update.
    pub eta: f64,
    /// The smoothing c towards uniform.
    pub smoothing: f64,
    /// Optimizer steps between updates (a round).
    pub update_every: u64,
}

impl Default for DoremiConfig {
    fn default() -> Self {
        Self {
            eta: 1.0,
            smoothing: 1e-3,
            update_every: 50,
        }
    }
}

/// One DoReMi update of `alpha` with excess losses `excess` (already clipped at 0).
pub fn doremi_update(alpha: &[f64], excess: &[f64], eta: f64, smoothing: f64) -> Vec<f64> {
    let logits: Vec<f64> = alpha
        .iter()
        .zip(excess)
        .map(|(a, l)| a.ln() + eta * l)
        .collect();
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    let w: Vec<f64> = logits.iter().map(|x| (x - max).exp()).collect();
    let total: f64 = w.iter().sum();
    let m = alpha.len() as f64;
    w.iter()
        .map(|x| (1.0 - smoothing) * x / total + smoothing / m)
        .collect()
}

/// DoReMi's state.
#[derive(Debug, Clone)]
pub struct Doremi {
    config: DoremiConfig,
    alpha: Vec<f64>,
    sum: Vec<f64>,
    updates: usize,
    reference: Vec<Evaluation>,
}

impl Doremi {
    pub fn new(config: DoremiConfig, num_train_skills: usize) -> Self {
        let m = num_train_skills;
        Self {
            config,
            alpha: vec![1.0 / m as f64; m],
            sum: vec![0.0; m],
            updates: 0,
            reference: Vec::new(),
        }
    }

    /// Resizes to the setting's `m` training skills before the first round (the reference run's
    /// evaluations stay).
    fn fit(&mut self, m: usize) {
        if self.alpha.len() != m {
            let reference = std::mem::take(&mut self.reference);
            *self = Self::new(self.config.clone(), m);
            self.reference = reference;
        }
    }

    /// The average of the mixtures so far (the paper's output).
    pub fn average(&self) -> Vec<f64> {
        if self.updates == 0 {
            return self.alpha.clone();
        }
        self.sum.iter().map(|s| s / self.updates as f64).collect()
    }
}

impl MixtureMethod for Doremi {
    fn name(&self) -> &'static str {
        "doremi"
    }

    fn params(&self) -> String {
        let c = &self.config;
        format!(
            "eta={};smoothing={};update_every={}",
            c.eta, c.smoothing, c.update_every
        )
    }

    fn wants_probe(&self) -> bool {
        true
    }

    fn reference(&self) -> Option<MethodSpec> {
        Some(MethodSpec::Stratified)
    }

    fn set_reference(&mut self, evaluations: Vec<Evaluation>) {
        self.reference = evaluations;
    }

    fn round_steps(&mut self, _observation: &Observation, _default: u64) -> u64 {
        self.config.update_every
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        self.fit(observation.train_skills.len());
        let now = observation
            .evaluations
            .iter()
            .rev()
            .find(|e| e.step == observation.step);
        let reference = self
            .reference
            .iter()
            .rev()
            .find(|e| e.step <= observation.step);
        if let (Some(now), Some(reference), true) = (now, reference, observation.round > 0) {
            let excess: Vec<f64> = observation
                .train_skills
                .iter()
                .map(|&s| (now.loss[s - 1] - reference.loss[s - 1]).max(0.0))
                .collect();
            self.alpha =
                doremi_update(&self.alpha, &excess, self.config.eta, self.config.smoothing);
        }
        for (s, a) in self.sum.iter_mut().zip(&self.alpha) {
            *s += a;
        }
        self.updates += 1;
        super::expand(
            &self.alpha,
            observation.train_skills,
            observation.num_skills,
        )
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "alpha": self.alpha, "average": self.average() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn the_update_is_a_smoothed_exponentiated_gradient_step() {
        // α = [0.5, 0.5], λ = [ln 3, 0], η = 1: softmax(log α + λ) = [3·0.5, 0.5]/2 = [0.75, 0.25];
        // smoothed with c = 0.1: 0.9·[0.75, 0.25] + 0.05 = [0.725, 0.275].
        let a = doremi_update(&[0.5, 0.5], &[3f64.ln(), 0.0], 1.0, 0.1);
        close(&a, &[0.725, 0.275]);
        // No excess loss leaves α where it was (but for smoothing: c = 0 → unchanged).
        close(
            &doremi_update(&[0.2, 0.8], &[0.0, 0.0], 1.0, 0.0),
            &[0.2, 0.8],
        );
    }

    #[test]
    fn excess_loss_is_against_the_reference_at_the_same_step() {
        let eval = |step, loss: Vec<f64>| Evaluation {
            step,
            accuracy: vec![0.0; loss.len()],
            loss,
        };
        let config = DoremiConfig {
            eta: 2.0,
            smoothing: 0.0,
            update_every: 50,
        };
        let mut d = Doremi::new(config, 2);
        d.set_reference(vec![eval(0, vec![1.0, 1.0]), eval(50, vec![0.5, 0.8])]);
        let history = [eval(0, vec![1.0, 1.0]), eval(50, vec![0.9, 0.7])];
        let obs = |round, step| Observation {
            step,
            round,
            num_skills: 2,
            train_skills: &[1, 2],
            steps_per_round: 50,
            total_steps: 100,
            batch_size: 32,
            evaluations: &history,
            train_losses: &[],
        };
        // Round 0: uniform.
        close(&d.mixture(&obs(0, 0)), &[0.5, 0.5]);
        // Round 1 at step 50: λ = [max(0.9 − 0.5, 0), max(0.7 − 0.8, 0)] = [0.4, 0];
        // α ∝ [0.5·e^{0.8}, 0.5] → α_1 = e^{0.8} / (e^{0.8} + 1).
        let p = d.mixture(&obs(1, 50));
        let a1 = 0.8f64.exp() / (0.8f64.exp() + 1.0);
        close(&p, &[a1, 1.0 - a1]);
        // The average of the two mixtures.
        close(&d.average(), &[(0.5 + a1) / 2.0, (0.5 + 1.0 - a1) / 2.0]);
    }
}
