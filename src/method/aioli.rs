//! `aioli`: Aioli (Chen, Hu, Lourie, Cho, Ré, ICLR 2025, arXiv 2411.05735), as its code
//! (HazyResearch/aioli, `AioliTrainer`) runs it.
//!
//! Each Aioli round of `update_steps` optimizer steps starts with LearnParams: `lp_rounds` sweeps
//! through the m training skills in a random order, each a sub-round of `lp_steps` steps on a mixture
//! that puts `one_hot_factor` on one skill j and the rest evenly on the others. After each sub-round the
//! validation losses are probed, and column j of the estimate gains the drop in every skill's loss:
//! Â[:, j] += L_before − L_after. Â is divided by `lp_rounds`; unless the mixtures were one-hot, each
//! row i is unmixed by solving W·A[i] = Â[i] (W[j][l] = the weight sub-round j put on skill l). With
//! `normalize`, A is shifted to be non-negative and divided by its sum; with an `ema` factor it is
//! smoothed (A_ema = (1 − ema)·A + ema·A_ema_before; ema = 0 keeps only this round's A). Then the
//! mixture for the rest of the round is p ∝ exp(η · Σ_i A[i][j]) from uniform each round; with
//! `ema = "none"` (the code without `--ema`) p ∝ p_before · exp(η · Σ_i A[i][j]), multiplied over
//! rounds (`trainer/aioli_trainer.py:334–345`). The LearnParams steps train the model too; they
//! count towards the run's steps.
//!
//! The defaults are those of `scripts/arxiv_books_stackexchange/aioli/run.sh` (3 domains, the
//! nearest to our 3–5 skills): η 0.1, 4 sweeps of 6 steps, rounds of 250, one-hot factor 0.5,
//! ema 0.5, normalized. Their other scripts differ: `arxiv_stackexchange/aioli/run.sh` (2 domains)
//! η 0.2, 4 sweeps of 4 steps, ema 0.1; `full/aioli/run.sh` (7 domains) η 1, 2 sweeps of 10 steps,
//! rounds of 200, one-hot factor 0.75, ema 0.1.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{MixtureMethod, Observation, Plan};

/// Aioli's parameters, with the defaults of the authors' scripts (`scripts/*/aioli/run.sh`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AioliConfig {
    /// The step size η of the exponentiated update.
    pub eta: f64,
    /// Sweeps through the skills in each LearnParams.
    pub lp_rounds: usize,
    /// Optimizer steps of each LearnParams sub-round.
    pub lp_steps: u64,
    /// Optimizer steps of one Aioli round (LearnParams included).
    pub update_steps: u64,
    /// The weight a LearnParams sub-round puts on its skill (1 = one-hot).
    pub one_hot_factor: f64,
    /// EMA factor of the estimated A across rounds (0: this round's A alone); `None` (`"none"` in
    /// a config file) for no EMA, the mixture multiplied over rounds.
    #[serde(with = "ema_setting")]
    pub ema: Option<f64>,
    /// Shift A to be non-negative and divide it by its sum before the update.
    pub normalize: bool,
}

impl Default for AioliConfig {
    fn default() -> Self {
        Self {
            eta: 0.1,
            lp_rounds: 4,
            lp_steps: 6,
            update_steps: 250,
            one_hot_factor: 0.5,
            ema: Some(0.5),
            normalize: true,
        }
    }
}

/// `ema` in a config file: a number, or `"none"` for the code without `--ema`.
mod ema_setting {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Factor(f64),
        Word(String),
    }

    pub fn serialize<S: Serializer>(ema: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match ema {
            Some(x) => s.serialize_f64(*x),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Factor(x) => Ok(Some(x)),
            Raw::Word(w) if w == "none" => Ok(None),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "ema must be a number in [0, 1) or \"none\", not \"{w}\""
            ))),
        }
    }
}

/// The LearnParams mixture of sub-round j over m skills: `f` on j, (1 − f)/(m − 1) on the others.
pub fn probe_mixture(j: usize, m: usize, f: f64) -> Vec<f64> {
    if m == 1 {
        return vec![1.0];
    }
    (0..m)
        .map(|l| {
            if l == j {
                f
            } else {
                (1.0 - f) / (m - 1) as f64
            }
        })
        .collect()
}

/// Solves W·x = b for a small square W by Gaussian elimination with partial pivoting.
fn solve(mut w: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&a, &c| w[a][col].abs().total_cmp(&w[c][col].abs()))
            .unwrap_or(col);
        w.swap(col, pivot);
        b.swap(col, pivot);
        let (top, below) = w.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, r) in below.iter_mut().enumerate() {
            let factor = r[col] / pivot_row[col];
            for (x, p) in r.iter_mut().zip(pivot_row).skip(col) {
                *x -= factor * p;
            }
            b[col + 1 + offset] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|c| w[row][c] * x[c]).sum();
        x[row] = (b[row] - tail) / w[row][row];
    }
    x
}

/// A from LearnParams' accumulated loss drops `drops` (rows: skills whose loss dropped, columns:
/// the sub-round's skill), as the code's `learn_params_subroutine`: averaged over the sweeps and,
/// for mixtures that are not one-hot, unmixed row by row.
pub fn estimate_a(drops: &[Vec<f64>], lp_rounds: usize, one_hot_factor: f64) -> Vec<Vec<f64>> {
    let m = drops.len();
    let averaged: Vec<Vec<f64>> = drops
        .iter()
        .map(|row| row.iter().map(|d| d / lp_rounds as f64).collect())
        .collect();
    if one_hot_factor == 1.0 || m == 1 {
        return averaged;
    }
    let w: Vec<Vec<f64>> = (0..m)
        .map(|j| probe_mixture(j, m, one_hot_factor))
        .collect();
    averaged
        .into_iter()
        .map(|row| solve(w.clone(), row))
        .collect()
}

/// The code's `aioli_normalize_A`: subtract the smallest entry if it is negative, then divide by the
/// sum of all entries.
pub fn normalize_a(a: &mut [Vec<f64>]) {
    let min = a.iter().flatten().fold(f64::INFINITY, |m, &x| m.min(x));
    if min < 0.0 {
        a.iter_mut().flatten().for_each(|x| *x -= min);
    }
    let total: f64 = a.iter().flatten().sum();
    if total > 0.0 {
        a.iter_mut().flatten().for_each(|x| *x /= total);
    }
}

/// Aioli's state across rounds.
#[derive(Debug, Clone)]
pub struct Aioli {
    config: AioliConfig,
    /// Unnormalised weights over the training skills.
    weights: Vec<f64>,
    ema_a: Option<Vec<Vec<f64>>>,
    /// Position within the current Aioli round: 0..n_lp are LearnParams sub-rounds, n_lp the rest.
    phase: usize,
    /// The skills (indices into the training skills) of this round's sub-rounds, in order.
    order: Vec<usize>,
    /// Accumulated loss drops, rows: skill whose loss fell, columns: the sub-round's skill.
    drops: Vec<Vec<f64>>,
    before: Vec<f64>,
    /// Each Aioli round's estimated A (after normalisation and EMA), for inspection.
    pub estimates: Vec<Vec<Vec<f64>>>,
}

impl Aioli {
    pub fn new(config: AioliConfig, num_train_skills: usize) -> Self {
        Self {
            config,
            weights: vec![1.0; num_train_skills],
            ema_a: None,
            phase: 0,
            order: Vec::new(),
            drops: Vec::new(),
            before: Vec::new(),
            estimates: Vec::new(),
        }
    }

    /// Resizes to the setting's `m` training skills before the first round.
    fn fit(&mut self, m: usize) {
        if self.weights.len() != m {
            self.weights = vec![1.0; m];
        }
    }

    fn n_lp(&self) -> usize {
        self.weights.len() * self.config.lp_rounds
    }

    /// The training skills' validation losses at the observation's step (the probe the loop took).
    fn losses_now(observation: &Observation) -> Vec<f64> {
        let latest = observation
            .evaluations
            .iter()
            .rev()
            .find(|e| e.step == observation.step)
            .or(observation.evaluations.last());
        match latest {
            Some(e) => observation
                .train_skills
                .iter()
                .map(|&s| e.loss[s - 1])
                .collect(),
            None => vec![0.0; observation.train_skills.len()],
        }
    }

    /// Ends LearnParams: A from the drops, then the exponentiated update of the weights.
    fn update(&mut self) {
        let c = &self.config;
        let mut a = estimate_a(&self.drops, c.lp_rounds, c.one_hot_factor);
        if c.normalize {
            normalize_a(&mut a);
        }
        let m = self.weights.len();
        let column_sums = |a: &[Vec<f64>]| -> Vec<f64> {
            (0..m).map(|j| a.iter().map(|row| row[j]).sum()).collect()
        };
        if let Some(ema) = c.ema {
            let smoothed = match &self.ema_a {
                None => a,
                Some(prev) => a
                    .iter()
                    .zip(prev)
                    .map(|(r, p)| {
                        r.iter()
                            .zip(p)
                            .map(|(x, y)| (1.0 - ema) * x + ema * y)
                            .collect()
                    })
                    .collect(),
            };
            let sums = column_sums(&smoothed);
            self.weights = sums.iter().map(|s| (c.eta * s).exp()).collect();
            self.ema_a = Some(smoothed.clone());
            self.estimates.push(smoothed);
        } else {
            let sums = column_sums(&a);
            for (w, s) in self.weights.iter_mut().zip(&sums) {
                *w *= (c.eta * s).exp();
            }
            self.estimates.push(a);
        }
        // Keep the weights in range: only their ratios matter.
        let max = self.weights.iter().fold(0.0f64, |m, &w| m.max(w));
        if max > 0.0 && max.is_finite() {
            self.weights.iter_mut().for_each(|w| *w /= max);
        }
    }

    fn normalized(&self) -> Vec<f64> {
        let total: f64 = self.weights.iter().sum();
        self.weights.iter().map(|w| w / total).collect()
    }
}

impl MixtureMethod for Aioli {
    fn name(&self) -> &'static str {
        "aioli"
    }

    fn params(&self) -> String {
        let c = &self.config;
        format!(
            "eta={};lp_rounds={};lp_steps={};update_steps={};one_hot_factor={};ema={};normalize={}",
            c.eta,
            c.lp_rounds,
            c.lp_steps,
            c.update_steps,
            c.one_hot_factor,
            c.ema.map_or("none".to_string(), |x| x.to_string()),
            c.normalize
        )
    }

    fn wants_probe(&self) -> bool {
        true
    }

    fn round_steps(&mut self, observation: &Observation, _default: u64) -> u64 {
        self.fit(observation.train_skills.len());
        let lp = self.config.lp_steps;
        if self.phase < self.n_lp() {
            lp
        } else {
            self.config
                .update_steps
                .saturating_sub(self.n_lp() as u64 * lp)
                .max(1)
        }
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        self.fit(observation.train_skills.len());
        super::expand(
            &self.normalized(),
            observation.train_skills,
            observation.num_skills,
        )
    }

    fn plan(
        &mut self,
        observation: &Observation,
        _n: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Plan {
        self.fit(observation.train_skills.len());
        let m = self.weights.len();
        let n_lp = self.n_lp();
        let now = Self::losses_now(observation);
        if self.phase == 0 {
            self.before = now.clone();
            self.drops = vec![vec![0.0; m]; m];
            self.order.clear();
            for _ in 0..self.config.lp_rounds {
                let mut sweep: Vec<usize> = (0..m).collect();
                sweep.shuffle(rng);
                self.order.extend(sweep);
            }
        } else {
            // The sub-round just ended trained mostly on skill `j`.
            let j = self.order[self.phase - 1];
            for (i, row) in self.drops.iter_mut().enumerate() {
                row[j] += self.before[i] - now[i];
            }
            self.before = now;
        }
        let over_train = if self.phase < n_lp {
            let mixture = probe_mixture(self.order[self.phase], m, self.config.one_hot_factor);
            self.phase += 1;
            mixture
        } else {
            self.update();
            self.phase = 0;
            self.normalized()
        };
        Plan::Mixture(super::expand(
            &over_train,
            observation.train_skills,
            observation.num_skills,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::Evaluation;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn unmixing_recovers_a_from_half_one_hot_probes() {
        // m = 2 needs f ≠ 1/2 (both probes would be [0.5, 0.5]); f = 0.75:
        // W = [[0.75, 0.25], [0.25, 0.75]]. With A = [[2, 0], [1, 1]], the drops of row i under
        // probe j are Σ_l W[j][l]·A[i][l]: row 0: [1.5, 0.5], row 1: [1.0, 1.0]. Two sweeps
        // accumulate twice that: [[3, 1], [2, 2]]; estimate_a divides by 2 and unmixes.
        let a = estimate_a(&[vec![3.0, 1.0], vec![2.0, 2.0]], 2, 0.75);
        close(&a[0], &[2.0, 0.0]);
        close(&a[1], &[1.0, 1.0]);
        // One-hot probes: the averaged drops are A itself.
        let a = estimate_a(&[vec![3.0, 1.0], vec![2.0, 2.0]], 2, 1.0);
        close(&a[0], &[1.5, 0.5]);
    }

    #[test]
    fn normalisation_shifts_and_scales() {
        // [[1, -1], [2, 0]]: min −1 → [[2, 0], [3, 1]], sum 6 → [[1/3, 0], [1/2, 1/6]].
        let mut a = vec![vec![1.0, -1.0], vec![2.0, 0.0]];
        normalize_a(&mut a);
        close(&a[0], &[1.0 / 3.0, 0.0]);
        close(&a[1], &[0.5, 1.0 / 6.0]);
    }

    /// A whole Aioli round on 2 skills, one-hot probes, one sweep, no normalisation or EMA.
    #[test]
    fn one_round_updates_by_the_column_sums() {
        use rand::SeedableRng;
        let config = AioliConfig {
            eta: 0.5,
            lp_rounds: 1,
            lp_steps: 10,
            update_steps: 100,
            one_hot_factor: 1.0,
            ema: None,
            normalize: false,
        };
        let mut aioli = Aioli::new(config, 2);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let eval = |step, loss: [f64; 2]| Evaluation {
            step,
            loss: loss.to_vec(),
            accuracy: vec![0.5, 0.5],
        };
        // Losses at steps 0, 10, 20: the first sub-round's skill lowers both losses by 0.2 and
        // 0.1; the second sub-round's skill lowers only its own, by 0.3.
        let mut history = vec![eval(0, [1.0, 1.0])];
        let mut steps = Vec::new();
        let mut plans = Vec::new();
        for (round, step) in [0u64, 10, 20].into_iter().enumerate() {
            let obs = Observation {
                step,
                round,
                num_skills: 2,
                train_skills: &[1, 2],
                steps_per_round: 100,
                total_steps: 1000,
                batch_size: 32,
                evaluations: &history,
                train_losses: &[],
            };
            steps.push(aioli.round_steps(&obs, 100));
            plans.push(aioli.plan(&obs, 320, &mut rng));
            if round == 0 {
                let first = aioli.order[0];
                let mut next = [1.0, 1.0];
                next[first] -= 0.2;
                next[1 - first] -= 0.1;
                history.push(eval(10, next));
                let mut last = next;
                last[1 - first] -= 0.3;
                history.push(eval(20, last));
            }
        }
        // Two sub-rounds of lp_steps, then the rest of the round: 100 − 2·10 = 80 steps.
        assert_eq!(steps, vec![10, 10, 80]);
        let first = aioli.order[0];
        let mut one_hot = [0.0, 0.0];
        one_hot[first] = 1.0;
        assert_eq!(plans[0], Plan::Mixture(one_hot.to_vec()));
        // Column `first` of A holds the drops of the first sub-round, 0.2 (its own skill) + 0.1;
        // column `other` the second's, 0.3: column sums 0.3 and 0.3 → equal weights → [0.5, 0.5].
        let Plan::Mixture(p) = &plans[2] else {
            panic!("a mixture")
        };
        close(p, &[0.5, 0.5]);
        // A second round whose drops favour skill 0 only: drops [[0.4, 0], [0, 0]] → column sums
        // [0.4, 0] → weights ∝ [exp(0.5·0.3)·exp(0.5·0.4), exp(0.5·0.3)] → p0 = 1/(1 + e^−0.2).
        aioli.drops = vec![vec![0.4, 0.0], vec![0.0, 0.0]];
        aioli.update();
        let expected = 1.0 / (1.0 + (-0.2f64).exp());
        close(&aioli.normalized(), &[expected, 1.0 - expected]);
    }

    #[test]
    fn ema_zero_keeps_this_rounds_a_and_none_multiplies() {
        // Two updates on 2 skills, one-hot probes, one sweep, η = 0.5: drops [[0.3, 0], [0, 0.1]]
        // then [[0, 0], [0, 0.4]] (column sums [0.3, 0.1], then [0, 0.4]).
        let run = |ema: Option<f64>| {
            let config = AioliConfig {
                eta: 0.5,
                lp_rounds: 1,
                one_hot_factor: 1.0,
                ema,
                normalize: false,
                ..AioliConfig::default()
            };
            let mut aioli = Aioli::new(config, 2);
            aioli.drops = vec![vec![0.3, 0.0], vec![0.0, 0.1]];
            aioli.update();
            aioli.drops = vec![vec![0.0, 0.0], vec![0.0, 0.4]];
            aioli.update();
            aioli.normalized()[0]
        };
        // ema = 0 (the code's `--ema 0`): from uniform with this round's sums [0, 0.4]:
        // p0 = 1 / (1 + e^0.2) = 0.450166.
        assert!((run(Some(0.0)) - 1.0 / (1.0 + 0.2f64.exp())).abs() < 1e-12);
        // ema = 0.5: A_ema = 0.5·A₂ + 0.5·A₁ = [[0.15, 0], [0, 0.25]] → sums [0.15, 0.25]:
        // p0 = 1 / (1 + e^(0.5·0.1)) = 1 / (1 + e^0.05) = 0.487503.
        assert!((run(Some(0.5)) - 1.0 / (1.0 + 0.05f64.exp())).abs() < 1e-12);
        // none (no `--ema`): multiplied over rounds, sums [0.3, 0.5] in all:
        // p0 = 1 / (1 + e^(0.5·0.2)) = 1 / (1 + e^0.1) = 0.475021.
        assert!((run(None) - 1.0 / (1.0 + 0.1f64.exp())).abs() < 1e-12);
    }

    #[test]
    fn ema_reads_a_number_or_none() {
        let read = |text: &str| toml::from_str::<AioliConfig>(text).map(|c| c.ema);
        assert_eq!(read("ema = 0").unwrap(), Some(0.0));
        assert_eq!(read("ema = 0.1").unwrap(), Some(0.1));
        assert_eq!(read("ema = \"none\"").unwrap(), None);
        assert_eq!(read("").unwrap(), Some(0.5));
        let err = read("ema = \"off\"").unwrap_err().to_string();
        assert!(
            err.contains("ema must be a number in [0, 1) or \"none\""),
            "{err}"
        );
    }
}
