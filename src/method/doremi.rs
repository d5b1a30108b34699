//! `doremi`: DoReMi (Xie et al., NeurIPS 2023, arXiv 2305.10429), as the Aioli authors' code runs
//! it (HazyResearch/aioli, `trainer/doremi_trainer.py`; `scripts/*/doremi/run_reference.sh`,
//! `run_proxy.sh`, `run_final.sh`). Three runs, each trained into the folder of the one after it:
//!
//! 1. the *reference* (`proxy/reference/`): the same config with the stratified mixture, trained
//!    to the end; its final weights are the reference model;
//! 2. the *proxy* (`proxy/`, `stage = "proxy"`): stratified data; at every optimizer step, with
//!    L_i the proxy's mean loss on the batch's examples of skill i and R_i the reference model's
//!    on the same examples (`train_step`, lines 114–131),
//!
//!    ```text
//!    λ_i = max(L_i − R_i, 0)                      (lines 74–81)
//!    α ← (1 − c) · softmax(log α + η·λ) + c / m   (lines 83–86; α starts uniform)
//!    ```
//!
//!    (a skill absent from the batch, an excess of exactly 0, keeps its previous λ, which starts
//!    at 10⁻⁶: line 166), and the step minimizes Σ_i α_i · L_i (each skill's mean loss weighted
//!    by the new α, lines 93–96) instead of the batch mean. Its output is the average of the
//!    post-update α over all steps (`avg_dw / dw_update_steps`, lines 89 and 231), in its
//!    manifest's `method_state.average`;
//! 3. the *final* run (the run itself, the default `stage = "final"`): trained on that average
//!    as a fixed mixture (`run_final.sh`'s `--proportions`).
//!
//! η is their scripts' `--doremi_mu 0.01`, c their `reweight_eps` 10⁻³. Where skillit differs:
//! the losses are the run's training loss (answer token or whole sequence) rather than next-token
//! loss over every token; their clipping of the gradient norm after each skill's backward pass is
//! one global clip of the summed gradient here; their proxy runs twice the reference's steps with
//! batches of 4 × 2 accumulated (the λ of the last micro-batch), ours the run's steps and batch.

use serde::{Deserialize, Serialize};

use super::{MethodSpec, MixtureMethod, Observation, ReferenceRun};
use crate::{Error, Result};

/// Which of DoReMi's runs this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoremiStage {
    /// The proxy: stratified data, the loss weighted by the online α.
    Proxy,
    /// A run on the proxy's averaged α (the proxy and its reference trained first).
    Final,
}

/// DoReMi's parameters, with the authors' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoremiConfig {
    /// The step size η of the exponentiated update (`--doremi_mu`).
    pub eta: f64,
    /// The smoothing c towards uniform (`reweight_eps`).
    pub smoothing: f64,
    /// The run this is: `final` (default) or `proxy`.
    pub stage: DoremiStage,
}

impl Default for DoremiConfig {
    fn default() -> Self {
        Self {
            eta: 0.01,
            smoothing: 1e-3,
            stage: DoremiStage::Final,
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

/// The λ a skill starts with (`perdomain_scores`, doremi_trainer.py:166).
const INITIAL_SCORE: f64 = 1e-6;

/// DoReMi's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doremi {
    #[serde(skip)]
    config: DoremiConfig,
    /// The training skills (1-based), α's order.
    train_skills: Vec<usize>,
    alpha: Vec<f64>,
    /// Σ of the post-update α, and how many updates.
    sum: Vec<f64>,
    updates: usize,
    /// The last λ of each skill.
    scores: Vec<f64>,
    /// The final run's mixture over the training skills: the proxy's average.
    #[serde(skip)]
    fixed: Option<Vec<f64>>,
}

impl Doremi {
    pub fn new(config: DoremiConfig, num_train_skills: usize) -> Self {
        let m = num_train_skills;
        Self {
            config,
            train_skills: (1..=m).collect(),
            alpha: vec![1.0 / m as f64; m],
            sum: vec![0.0; m],
            updates: 0,
            scores: vec![INITIAL_SCORE; m],
            fixed: None,
        }
    }

    /// Fits the state to the setting's training skills before the first round.
    fn fit(&mut self, train_skills: &[usize]) {
        if self.train_skills != train_skills {
            let fixed = self.fixed.take();
            *self = Self::new(self.config.clone(), train_skills.len());
            self.train_skills = train_skills.to_vec();
            self.fixed = fixed;
        }
    }

    /// The average of the post-update α (the proxy's output; α itself before any update).
    pub fn average(&self) -> Vec<f64> {
        if self.updates == 0 {
            return self.alpha.clone();
        }
        self.sum.iter().map(|s| s / self.updates as f64).collect()
    }

    /// One proxy step: updates α from the batch's per-skill excess loss and returns each
    /// example's weight α_i / n_i (skill i's mean loss weighted by α_i).
    fn step(&mut self, skills: &[usize], losses: &[f64], reference: &[f64]) -> Vec<f64> {
        let m = self.train_skills.len();
        let index = |s: usize| self.train_skills.iter().position(|&t| t == s);
        let mut totals = vec![(0.0, 0.0, 0usize); m];
        for ((&s, &l), &r) in skills.iter().zip(losses).zip(reference) {
            if let Some(i) = index(s) {
                totals[i].0 += l;
                totals[i].1 += r;
                totals[i].2 += 1;
            }
        }
        let excess: Vec<f64> = totals
            .iter()
            .zip(&self.scores)
            .map(|(&(l, r, n), &previous)| {
                // Their losses of an absent skill are both 0: an excess of exactly 0.
                let e = if n == 0 { 0.0 } else { (l - r) / n as f64 };
                if e == 0.0 {
                    previous
                } else {
                    e.max(0.0)
                }
            })
            .collect();
        self.scores = excess.clone();
        self.alpha = doremi_update(&self.alpha, &excess, self.config.eta, self.config.smoothing);
        for (s, a) in self.sum.iter_mut().zip(&self.alpha) {
            *s += a;
        }
        self.updates += 1;
        skills
            .iter()
            .map(|&s| match index(s) {
                Some(i) => self.alpha[i] / totals[i].2 as f64,
                None => 0.0,
            })
            .collect()
    }
}

impl MixtureMethod for Doremi {
    fn name(&self) -> &'static str {
        "doremi"
    }

    fn params(&self) -> String {
        let c = &self.config;
        let stage = match c.stage {
            DoremiStage::Proxy => "proxy",
            DoremiStage::Final => "final",
        };
        format!("eta={};smoothing={};stage={stage}", c.eta, c.smoothing)
    }

    fn reference(&self) -> Option<(&'static str, MethodSpec)> {
        Some(match self.config.stage {
            DoremiStage::Proxy => ("reference", MethodSpec::Stratified),
            DoremiStage::Final => (
                "proxy",
                MethodSpec::Doremi {
                    config: DoremiConfig {
                        stage: DoremiStage::Proxy,
                        ..self.config.clone()
                    },
                },
            ),
        })
    }

    fn set_reference(&mut self, reference: ReferenceRun) -> Result<()> {
        if self.config.stage == DoremiStage::Proxy {
            return Ok(());
        }
        let average: Option<Vec<f64>> = reference
            .method_state
            .get("average")
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        match average {
            Some(a) if !a.is_empty() && a.iter().all(|x: &f64| x.is_finite() && *x >= 0.0) => {
                self.fixed = Some(a);
                Ok(())
            }
            _ => Err(Error::Invalid {
                origin: reference.dir.join("manifest.json").display().to_string(),
                field: "method_state.average".into(),
                message: "the DoReMi proxy run records no averaged mixture".into(),
            }),
        }
    }

    fn wants_reference_model(&self) -> bool {
        self.config.stage == DoremiStage::Proxy
    }

    fn weigh_step(
        &mut self,
        skills: &[usize],
        losses: &[f64],
        reference: &[f64],
    ) -> Option<Vec<f64>> {
        (self.config.stage == DoremiStage::Proxy).then(|| self.step(skills, losses, reference))
    }

    fn mixture(&mut self, observation: &Observation) -> Vec<f64> {
        self.fit(observation.train_skills);
        let m = observation.train_skills.len();
        let over_train = match (&self.fixed, self.config.stage) {
            (Some(fixed), DoremiStage::Final) if fixed.len() == m => {
                let total: f64 = fixed.iter().sum();
                fixed.iter().map(|x| x / total).collect()
            }
            // The proxy's data are stratified.
            _ => vec![1.0 / m as f64; m],
        };
        super::expand(
            &over_train,
            observation.train_skills,
            observation.num_skills,
        )
    }

    fn state(&self) -> serde_json::Value {
        match self.config.stage {
            DoremiStage::Proxy => {
                let mut state = serde_json::to_value(self).expect("the state serializes");
                state["average"] = serde_json::json!(self.average());
                state
            }
            DoremiStage::Final => serde_json::json!({ "weights": self.fixed }),
        }
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        if self.config.stage == DoremiStage::Final || state.is_null() {
            return Ok(());
        }
        let loaded: Doremi = serde_json::from_value(state).map_err(|e| Error::Invalid {
            origin: "checkpoint".into(),
            field: "method_state".into(),
            message: format!("is not a DoReMi proxy's state: {e}"),
        })?;
        *self = Doremi {
            config: self.config.clone(),
            fixed: self.fixed.take(),
            ..loaded
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    fn proxy(eta: f64, smoothing: f64) -> Doremi {
        let config = DoremiConfig {
            eta,
            smoothing,
            stage: DoremiStage::Proxy,
        };
        Doremi::new(config, 2)
    }

    #[test]
    fn the_update_is_a_smoothed_exponentiated_gradient_step() {
        // α = [0.5, 0.5], λ = [ln 3, 0], η = 1: softmax(log α + λ) = [3·0.5, 0.5]/2 = [0.75, 0.25];
        // smoothed with c = 0.1: 0.9·[0.75, 0.25] + 0.05 = [0.725, 0.275].
        let a = doremi_update(&[0.5, 0.5], &[3f64.ln(), 0.0], 1.0, 0.1);
        close(&a, &[0.725, 0.275]);
        close(
            &doremi_update(&[0.2, 0.8], &[0.0, 0.0], 1.0, 0.0),
            &[0.2, 0.8],
        );
    }

    #[test]
    fn proxy_steps_follow_the_authors_update_and_weigh_the_loss_by_alpha() {
        let mut d = proxy(1.0, 0.1);
        // Step 1: skills [1, 1, 2], losses [1.0, 2.0, 0.5], reference [0.5, 0.5, 1.0]:
        //   L = [1.5, 0.5], R = [0.5, 1.0], λ = [max(1.0, 0), max(−0.5, 0)] = [1, 0]
        //   softmax(log[0.5, 0.5] + [1, 0]) = [e/(e + 1), 1/(e + 1)] = [0.731059, 0.268941]
        //   α = 0.9·that + 0.05 = [0.707953, 0.292047]
        // The step's weights: α_1/2 on each of skill 1's two examples, α_2 on skill 2's one.
        let w = d
            .weigh_step(&[1, 1, 2], &[1.0, 2.0, 0.5], &[0.5, 0.5, 1.0])
            .unwrap();
        close(&d.alpha, &[0.707953, 0.292047]);
        close(&w, &[0.353976, 0.353976, 0.292047]);
        // Step 2: only skill 2, losses [1, 1], reference [0.2, 0.4]: λ_2 = 1 − 0.3 = 0.7; skill 1
        // is absent and keeps its λ of 1:
        //   log α + λ → ∝ [0.707953·e, 0.292047·e^0.7] = [1.924415, 0.588111] → [0.765928, 0.234072]
        //   α = 0.9·that + 0.05 = [0.739336, 0.260664]
        let w = d.weigh_step(&[2, 2], &[1.0, 1.0], &[0.2, 0.4]).unwrap();
        close(&d.alpha, &[0.739336, 0.260664]);
        close(&w, &[0.130332, 0.130332]);
        // The output: the average of the two post-update α (not the uniform start).
        close(&d.average(), &[0.723644, 0.276356]);
        // The proxy samples stratified whatever α is.
        let obs = crate::method::test_observation(2, 1, &[1, 2], 2, &[], &[]);
        assert_eq!(d.mixture(&obs), vec![0.5, 0.5]);
        // A checkpoint's state restores the proxy exactly.
        let mut resumed = proxy(1.0, 0.1);
        resumed.load_state(d.state()).unwrap();
        close(&resumed.alpha, &d.alpha);
        close(&resumed.average(), &d.average());
        close(&resumed.scores, &[1.0, 0.7]);
        assert_eq!(d.params(), "eta=1;smoothing=0.1;stage=proxy");
    }

    #[test]
    fn the_final_run_trains_on_the_proxys_average() {
        let mut d = Doremi::new(DoremiConfig::default(), 5);
        assert_eq!(d.params(), "eta=0.01;smoothing=0.001;stage=final");
        let (folder, spec) = d.reference().unwrap();
        assert_eq!(folder, "proxy");
        assert!(matches!(
            spec,
            MethodSpec::Doremi { config } if config.stage == DoremiStage::Proxy && config.eta == 0.01
        ));
        assert!(!d.wants_reference_model());
        let reference = |state| ReferenceRun {
            dir: "runs/x/proxy".into(),
            evaluations: Vec::new(),
            method_state: state,
        };
        let err = d
            .set_reference(reference(serde_json::json!({})))
            .unwrap_err();
        assert!(err.to_string().contains("method_state.average"), "{err}");
        d.set_reference(reference(
            serde_json::json!({ "average": [0.1, 0.2, 0.3, 0.2, 0.2] }),
        ))
        .unwrap();
        let obs = crate::method::test_observation(0, 0, &[1, 2, 3, 4, 5], 5, &[], &[]);
        close(&d.mixture(&obs), &[0.1, 0.2, 0.3, 0.2, 0.2]);
        assert!(d.weigh_step(&[1], &[1.0], &[]).is_none(), "a plain mean");
    }
}
