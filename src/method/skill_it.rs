//! `skill_it`: Skill-It's online data selection (Algorithm 1, docs/paper.md §6), and its ablations
//! `no_graph` (A = I) and `static` (T = 1).
//!
//! Initial mixture p_1[i] ∝ exp(η · Σ_j A[i][j]) (the authors start from losses of 1). Before each
//! later round: p_{t+1}[i] ∝ exp(η · Σ_{τ in window} Σ_j A[i][j] · L_j(τ)), where L_j(τ) is eval
//! skill j's validation loss; the new mixture is *not* multiplied by the old one. The window is
//! summed (the code's pre-training) or averaged (the code's fine-tuning), and holds (`window_unit`):
//! - `evaluations` (the default, the authors' code): the last `window` evaluations made before the
//!   round's first step. Their loop (HazyResearch/skill-it, `trainer/mw_trainer.py:139–169`)
//!   evaluates when the step counter, read before it is incremented, is a multiple of the interval,
//!   and updates once the counter reaches the round's end (`:172–199`): at the boundary after 1,000
//!   steps its window holds the evaluations of counters 850, 900 and 950, not one at 1,000. Each of
//!   theirs follows one more optimizer step than ours of the same counter (their first is after
//!   one step, ours at step 0), an offset of one step that skillit does not reproduce.
//! - `evaluations_with_boundary`: the last `window` evaluations including the one at the round's
//!   start (skillit's rule before 2026-11-28: 900, 950 and 1,000 at that boundary).
//! - `rounds` (the paper's Algorithm 1): the evaluations at the ends of the last `window` rounds.
//!
//! `no_graph` is A = I in pre-training; in fine-tuning the authors' code takes `eye(k)[:, target]`
//! over the skills it trains on (`mw_trainer.py:57–64`): the target's own loss raises the target
//! alone, the other training skills keep weight exp(0).

use serde::{Deserialize, Serialize};

use super::{MixtureMethod, Observation};
use crate::graph::SkillsGraph;

/// Which evaluations the window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowUnit {
    /// The last `window` evaluations before the round's first step (authors' code; the default).
    #[default]
    Evaluations,
    /// The last `window` evaluations, the one at the round's first step included (skillit's
    /// former rule).
    EvaluationsWithBoundary,
    /// The evaluations at the ends of the last `window` rounds (the paper).
    Rounds,
}

/// How the losses in the window combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Summed (authors' code in pre-training).
    Sum,
    /// Averaged (authors' code in fine-tuning).
    Mean,
}

/// Skill-It's parameters, with the authors' defaults (LEGO pre-training: η = 0.5, w = 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkillItConfig {
    /// The learning rate η of the exponentiated update.
    pub eta: f64,
    /// How many evaluations (or rounds) the window holds.
    pub window: usize,
    pub window_unit: WindowUnit,
    /// `None`: as the authors' code, summed in pre-training and averaged in fine-tuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// Update the mixture every round (false: `static`, T = 1).
    pub update: bool,
}

impl Default for SkillItConfig {
    fn default() -> Self {
        Self {
            eta: 0.5,
            window: 3,
            window_unit: WindowUnit::Evaluations,
            aggregate: None,
            update: true,
        }
    }
}

impl SkillItConfig {
    /// The config with `aggregate` resolved as the authors' code does: averaged in fine-tuning,
    /// summed otherwise.
    pub fn for_setting(&self, setting: &str) -> Self {
        let mut c = self.clone();
        if c.aggregate.is_none() {
            c.aggregate = Some(if setting == "finetune" {
                Aggregate::Mean
            } else {
                Aggregate::Sum
            });
        }
        c
    }

    /// The defaults, for the builder shape `SkillItConfig::new().with_eta(0.1)`.
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_eta(mut self, eta: f64) -> Self {
        self.eta = eta;
        self
    }
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }
    pub fn with_window_unit(mut self, unit: WindowUnit) -> Self {
        self.window_unit = unit;
        self
    }
    pub fn with_aggregate(mut self, aggregate: Aggregate) -> Self {
        self.aggregate = Some(aggregate);
        self
    }
    pub fn with_update(mut self, update: bool) -> Self {
        self.update = update;
        self
    }
}

/// Skill-It with a skills graph A (train skills × eval skills).
#[derive(Debug, Clone)]
pub struct SkillIt {
    name: &'static str,
    config: SkillItConfig,
    graph: SkillsGraph,
    /// Where a given graph came from (file stem or `inline`), for the params column; `None` for the
    /// published graph.
    graph_label: Option<String>,
    /// `no_graph` in fine-tuning: the target, whose column `eye(k)[:, target]` over the setting's
    /// training skills becomes the graph at the first round.
    target_column: Option<usize>,
}

/// softmax(η·s): the mixture ∝ exp(η·s_i), computed stably.
pub fn exp_weights(eta: f64, scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().fold(f64::NEG_INFINITY, |m, s| m.max(eta * s));
    let w: Vec<f64> = scores.iter().map(|s| (eta * s - max).exp()).collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}

impl SkillIt {
    /// `name` is the registry name it runs under (`skill_it`, `no_graph`, `static`). An unset
    /// `aggregate` must be resolved by the caller ([`SkillItConfig::for_setting`]); here it sums.
    pub fn new(name: &'static str, config: SkillItConfig, graph: SkillsGraph) -> Self {
        Self {
            name,
            config,
            graph,
            graph_label: None,
            target_column: None,
        }
    }

    /// `no_graph` in fine-tuning on `target`: A = eye(k)[:, target] over the training skills.
    pub fn with_target_column(mut self, target: usize) -> Self {
        self.target_column = Some(target);
        self
    }

    /// Names the graph in the params (`graph=lego_linear`) when it is not the published one.
    pub fn with_graph_label(mut self, label: Option<String>) -> Self {
        self.graph_label = label;
        self
    }

    /// Σ_j A[i][j] · L_j for each train skill i.
    fn scores(&self, losses: &[f64]) -> Vec<f64> {
        self.graph
            .matrix
            .iter()
            .map(|row| row.iter().zip(losses).map(|(a, l)| a * l).sum())
            .collect()
    }

    /// The eval-skill losses in the window, combined.
    fn window_losses(&self, observation: &Observation) -> Vec<f64> {
        let evals: Vec<&super::Evaluation> = match self.config.window_unit {
            WindowUnit::Evaluations => observation
                .evaluations
                .iter()
                .filter(|e| e.step < observation.step)
                .collect(),
            WindowUnit::EvaluationsWithBoundary => observation.evaluations.iter().collect(),
            WindowUnit::Rounds => observation
                .evaluations
                .iter()
                .filter(|e| e.step > 0 && e.step % observation.steps_per_round.max(1) == 0)
                .collect(),
        };
        let window = &evals[evals.len().saturating_sub(self.config.window)..];
        let m = self.graph.eval_skills.len();
        let mut total = vec![0.0; m];
        for e in window {
            for (j, t) in total.iter_mut().enumerate() {
                *t += self.graph.eval_loss(e, j);
            }
        }
        if self.config.aggregate == Some(Aggregate::Mean) && !window.is_empty() {
            for t in &mut total {
                *t /= window.len() as f64;
            }
        }
        total
    }
}

impl MixtureMethod for SkillIt {
    fn name(&self) -> &'static str {
        self.name
    }

    fn params(&self) -> String {
        let mut p = format!("eta={}", self.config.eta);
        if self.config.update {
            let unit = match self.config.window_unit {
                WindowUnit::Evaluations => "evaluations",
                WindowUnit::EvaluationsWithBoundary => "evaluations_with_boundary",
                WindowUnit::Rounds => "rounds",
            };
            p += &format!(";window={};unit={unit}", self.config.window);
        }
        if let Some(label) = &self.graph_label {
            p += &format!(";graph={label}");
        }
        p
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        if let Some(target) = self.target_column {
            let train = observation.train_skills;
            if self.graph.train_skills != train {
                self.graph = SkillsGraph {
                    train_skills: train.to_vec(),
                    eval_skills: vec![target],
                    matrix: train
                        .iter()
                        .map(|&s| vec![if s == target { 1.0 } else { 0.0 }])
                        .collect(),
                };
            }
        }
        let over_train = if observation.round == 0
            || !self.config.update
            || observation.evaluations.is_empty()
        {
            // Losses of 1 everywhere: p ∝ exp(η · Σ_j A[i][j]).
            let ones = vec![1.0; self.graph.eval_skills.len()];
            exp_weights(self.config.eta, &self.scores(&ones))
        } else {
            let losses = self.window_losses(observation);
            exp_weights(self.config.eta, &self.scores(&losses))
        };
        // Skills outside the graph's train skills (fine-tuning) get no data.
        super::expand(
            &over_train,
            &self.graph.train_skills,
            observation.num_skills,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::Evaluation;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < tol, "{a:?} vs {b:?}");
        }
    }

    fn first(graph: SkillsGraph, eta: f64) -> Vec<f64> {
        let config = SkillItConfig {
            eta,
            ..SkillItConfig::default()
        };
        let k = graph.train_skills.len();
        SkillIt::new("skill_it", config, graph).mixture(&Observation {
            step: 0,
            round: 0,
            num_skills: k,
            train_skills: &[1, 2, 3, 4, 5],
            steps_per_round: 1000,
            total_steps: 1000,
            batch_size: 32,
            evaluations: &[],
            train_losses: &[],
        })
    }

    #[test]
    fn initial_mixtures_of_the_paper() {
        // LEGO pre-training, η = 0.5, edges s2 → s1, s3, s4 (weight 0.5): row sums 1, 2.5, 1, 1, 1.
        // exp(0.5) = 1.64872, exp(1.25) = 3.49034; total 4·1.64872 + 3.49034 = 10.08523;
        // p = [0.16348, 0.34608, 0.16348, 0.16348, 0.16348].
        let p = first(SkillsGraph::published("lego", "pretrain", 5).unwrap(), 0.5);
        close(&p, &[0.1635, 0.3461, 0.1635, 0.1635, 0.1635], 5e-5);
        // Addition pre-training, η = 0.1, edge s2 → s1: row sums 1, 1.5, 1. exp(0.1) = 1.10517,
        // exp(0.15) = 1.16183; total 3.37218; p = [0.32773, 0.34454, 0.32773].
        let p = first(
            SkillsGraph::published("addition", "pretrain", 3).unwrap(),
            0.1,
        );
        close(&p, &[0.3277, 0.3445, 0.3277], 5e-5);
        // LEGO fine-tuning on s3 over (s1, s2, s3), column [0, 0.5, 1], η = 0.5: exp(0) = 1,
        // exp(0.25) = 1.28403, exp(0.5) = 1.64872; total 3.93275; p = [0.25427, 0.32650, 0.41923].
        let p = first(SkillsGraph::published("lego", "finetune", 5).unwrap(), 0.5);
        close(&p, &[0.2543, 0.3265, 0.4192], 5e-5);
    }

    #[test]
    fn one_update_from_given_losses() {
        // Addition pre-training graph A = [[1, 0, 0], [0.5, 1, 0], [0, 0, 1]], η = 0.1, window 3
        // evaluations summed. Evaluations (loss per skill): step 0 [2.0, 2.0, 2.0], step 50
        // [1.0, 2.0, 3.0], step 100 [0.5, 1.5, 2.5], step 150 [0.2, 1.0, 2.0]; the round starts at
        // step 150. The authors' window holds the three before it (steps 0, 50, 100): sums
        // L = [3.5, 5.5, 7.5]. Scores A·L = [3.5, 1.75 + 5.5, 7.5] = [3.5, 7.25, 7.5];
        // η·scores = [0.35, 0.725, 0.75]; exp = [1.41907, 2.06473, 2.11700]; total 5.60080;
        // p = [0.25337, 0.36865, 0.37798].
        let graph = SkillsGraph::published("addition", "pretrain", 3).unwrap();
        let config = SkillItConfig::new().with_eta(0.1);
        let mut m = SkillIt::new("skill_it", config.clone(), graph.clone());
        let e = |step, loss: [f64; 3]| Evaluation {
            step,
            loss: loss.to_vec(),
            accuracy: vec![0.0; 3],
        };
        let evals = [
            e(0, [2.0, 2.0, 2.0]),
            e(50, [1.0, 2.0, 3.0]),
            e(100, [0.5, 1.5, 2.5]),
            e(150, [0.2, 1.0, 2.0]),
        ];
        let obs = Observation {
            step: 150,
            round: 1,
            num_skills: 3,
            train_skills: &[1, 2, 3],
            steps_per_round: 150,
            total_steps: 1000,
            batch_size: 32,
            evaluations: &evals,
            train_losses: &[],
        };
        close(&m.mixture(&obs), &[0.25337, 0.36865, 0.37798], 5e-5);
        assert_eq!(m.params(), "eta=0.1;window=3;unit=evaluations");
        // skillit's former window also holds the evaluation at the round's start (steps 50, 100,
        // 150): sums L = [1.7, 4.5, 7.5]. Scores A·L = [1.7, 0.85 + 4.5, 7.5] = [1.7, 5.35, 7.5];
        // η·scores = [0.17, 0.535, 0.75]; exp = [1.18530, 1.70743, 2.11700]; total 5.00973;
        // p = [0.23660, 0.34082, 0.42258].
        let with_boundary = config.with_window_unit(WindowUnit::EvaluationsWithBoundary);
        let mut m1 = SkillIt::new("skill_it", with_boundary, graph);
        close(&m1.mixture(&obs), &[0.23660, 0.34082, 0.42258], 5e-5);
        assert_eq!(
            m1.params(),
            "eta=0.1;window=3;unit=evaluations_with_boundary"
        );
        // Rounds of 50 steps with a window of 2 rounds: the evaluations at steps 100 and 150,
        // averaged: L = [0.35, 1.25, 2.25]; A·L = [0.35, 1.425, 2.25]; η·A·L = [0.035, 0.1425,
        // 0.225]; exp = [1.03562, 1.15315, 1.25232]; total 3.44109; p = [0.30096, 0.33511, 0.36393].
        let mut m2 = SkillIt::new(
            "skill_it",
            SkillItConfig::new()
                .with_eta(0.1)
                .with_window(2)
                .with_window_unit(WindowUnit::Rounds)
                .with_aggregate(Aggregate::Mean),
            SkillsGraph::published("addition", "pretrain", 3).unwrap(),
        );
        let obs = Observation {
            steps_per_round: 50,
            ..obs
        };
        close(&m2.mixture(&obs), &[0.30096, 0.33511, 0.36393], 5e-5);
    }

    #[test]
    fn special_cases() {
        let evals = [Evaluation {
            step: 0,
            loss: vec![0.3, 0.6, 0.9],
            accuracy: vec![0.0; 3],
        }];
        let obs = Observation {
            step: 100,
            round: 1,
            num_skills: 3,
            train_skills: &[1, 2, 3],
            steps_per_round: 100,
            total_steps: 1000,
            batch_size: 32,
            evaluations: &evals,
            train_losses: &[],
        };
        // The complete graph (all ones) gives every skill the same score: stratified.
        let complete = SkillsGraph::from_matrix(vec![vec![1.0; 3]; 3]).unwrap();
        let mut m = SkillIt::new("skill_it", SkillItConfig::default(), complete);
        close(&m.mixture(&obs), &[1.0 / 3.0; 3], 1e-12);
        // A = I (no_graph): softmax(η · loss) = softmax([0.15, 0.3, 0.45]):
        // exp = [1.16183, 1.34986, 1.56831]; total 4.08000; p = [0.28476, 0.33085, 0.38439].
        let mut m = SkillIt::new(
            "no_graph",
            SkillItConfig::default(),
            SkillsGraph::identity(3),
        );
        close(&m.mixture(&obs), &[0.28476, 0.33085, 0.38439], 5e-5);
        // static (T = 1) keeps the initial mixture whatever the losses: A = I gives uniform.
        let mut m = SkillIt::new(
            "static",
            SkillItConfig {
                update: false,
                ..SkillItConfig::default()
            },
            SkillsGraph::identity(3),
        );
        close(&m.mixture(&obs), &[1.0 / 3.0; 3], 1e-12);
    }

    #[test]
    fn no_graph_in_fine_tuning_raises_the_target_alone() {
        // Fine-tuning on s3 over (s1, s2, s3) of 5 skills, A = eye(5)[:, 3] on those rows:
        // [0, 0, 1]. Mean target loss over the window (steps 0, 50: 0.8 and 0.4) = 0.6, η = 0.5:
        // exp(η·A·L) = [1, 1, e^0.3 = 1.34986]; total 3.34986; p = [0.29852, 0.29852, 0.40296],
        // and nothing on s4, s5.
        let e = |step, l3| Evaluation {
            step,
            loss: vec![9.0, 9.0, l3, 9.0, 9.0],
            accuracy: vec![0.0; 5],
        };
        let evals = [e(0, 0.8), e(50, 0.4), e(100, 0.1)];
        let obs = crate::method::test_observation(100, 1, &[1, 2, 3], 5, &evals, &[]);
        let config = SkillItConfig::default().for_setting("finetune");
        let mut m =
            SkillIt::new("no_graph", config, SkillsGraph::identity(5)).with_target_column(3);
        close(
            &m.mixture(&obs),
            &[0.29852, 0.29852, 0.40296, 0.0, 0.0],
            5e-5,
        );
    }
}
