//! Learning a skills graph from data (docs/paper.md §1, §8): short probe trainings from the same
//! initialisation, each a sweep run of the `fixed` method, measured on the validation sets.
//!
//! - **linear** (the paper's linear approximation): for each skill i, train on i alone for H
//!   steps; A[i][j] = (L_j(0) − L_j(after i)) / L_j(0), the relative drop of every skill j's loss.
//! - **brute** (brute force): for each skill j, train on j alone for H steps; for each ordered pair
//!   i ≠ j, train on a 50/50 mix of i and j for H steps; A[i][j] = (L_j(j alone) − L_j(i and j)) /
//!   L_j(0): how much lower j's loss ends when half of its examples are replaced by i's (positive: i
//!   helps j more than j's own extra examples do). The diagonal is j alone's relative drop.
//!
//! Every probe of one seed starts from the same model and draws each skill's examples from the same
//! stream. That model is the run config's `init` (a committed base) or else the seed's fresh
//! initialisation, or with `warm_start` W > 0 a *base run* from it
//! trained W steps on the stratified mixture (as the paper probes a pretrained model): from a fresh
//! model every probe first learns the answer format (the loss over the whole vocabulary falls from
//! ln V for every skill whatever is trained), which links every skill to every other. The weighted matrix is the mean over seeds; the graph
//! Skill-It uses keeps the diagonal at 1 and puts [`EDGE_WEIGHT`] (0.5, as the published graphs) on
//! each edge i → j (i ≠ j) that passes the threshold rule τ (`threshold`, default 0.05):
//! - linear: A[i][j] > τ: training on i alone lowers j's loss by more than τ of its start;
//! - brute, rule `serves` (the default): A[i][j] > −τ and A[j][j] > τ: j learns from its own
//!   examples within H steps (its loss drops by more than τ), and replacing half of them by i's
//!   raises j's final loss by less than τ of its start (i serves j about as well as j's own data; an
//!   unrelated skill costs far more). Where j learns nothing in H steps, nothing can be said of what
//!   helps it: no edge.
//! - brute, rule `gain` (`--rule gain`): A[i][j] > τ: the mix lowers j's loss more than j alone,
//!   by more than τ of its start: i helps j more than j's own extra examples do. This is the first
//!   clause of the paper's rule (docs/paper.md §8: "the mix lowers j's loss more, or reaches j's
//!   target loss with fewer examples of j"); its second clause needs the probes' curves, which the
//!   measurements do not keep. It finds what `serves` cannot: a j that learns nothing alone in H
//!   steps but learns with i (from `bases/chains8p`, s2 makes s4 learnable: results/graphs/).
//!
//! The authors published no graph-learning code, so neither rule has a code default to follow;
//! `serves` stays the default because the committed graphs (and the sweeps that use them) were
//! judged by it. `skillit graph rethreshold` judges a learned graph's measurements again under
//! another rule or threshold without training anything.
//!
//! An edge is *stable* when it passes in every seed.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::graph::{SkillsGraph, EDGE_WEIGHT};
use crate::method::MethodSpec;
use crate::sweep::PlannedRun;
use crate::{Error, Result};

/// How the graph is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// Pairs: i and j mixed vs j alone.
    Brute,
    /// Each skill alone, every skill's loss measured.
    Linear,
}

/// What to learn.
#[derive(Debug, Clone)]
pub struct LearnRequest {
    /// Task, model and training settings of the probes (the method and steps are set per probe).
    pub base: RunConfig,
    pub how: How,
    /// Steps H of each probe.
    pub steps: u64,
    pub seeds: Vec<u64>,
    /// The relative loss change an edge must exceed.
    pub threshold: f64,
    /// Which entries make an edge.
    pub rule: Rule,
    /// Steps of the stratified base run the probes start from (0: the config's `init`, or a fresh
    /// model, directly).
    pub warm_start: u64,
}

impl How {
    /// How the graph file `text` (as [`Learned::graph_toml`] wrote it) was measured: its
    /// description names the way, `(Brute)` or `(Linear)`.
    pub fn of_graph_file(text: &str) -> Self {
        if text.contains("(Brute)") {
            How::Brute
        } else {
            How::Linear
        }
    }
}

/// Which measured entries make an edge (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A[i][j] > τ: training with i lowers j's loss by more than τ of its start (linear: more
    /// than nothing; brute: more than j's own examples do).
    Gain,
    /// Brute only: A[i][j] > −τ where A[j][j] > τ: i serves j about as well as j's own data.
    Serves,
}

/// The words by which a graph file's `# Rule:` line names the `serves` rule.
const SERVES_WORDS: &str = "where column j's own entry is above";

impl Rule {
    /// The rule a way of measuring uses unless told otherwise: `gain` for linear, `serves` for
    /// brute.
    pub fn default_for(how: How) -> Self {
        match how {
            How::Linear => Rule::Gain,
            How::Brute => Rule::Serves,
        }
    }

    /// Whether the rule applies to `how`: `serves` compares with j alone, which only brute
    /// measures.
    pub fn check(self, how: How) -> Result<()> {
        if self == Rule::Serves && how == How::Linear {
            return Err(Error::flag(
                "--rule",
                "serves compares the mix with j trained alone, which only --how brute measures: \
                 use gain with linear",
            ));
        }
        Ok(())
    }

    /// The rule the graph file `text` (as [`Learned::graph_toml`] wrote it) was judged by, from
    /// its `# Rule:` line.
    pub fn of_graph_file(text: &str) -> Self {
        if text.contains(SERVES_WORDS) {
            Rule::Serves
        } else {
            Rule::Gain
        }
    }
}

/// One measured entry of one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub seed: u64,
    /// Train skill i (row).
    pub from: usize,
    /// Eval skill j (column).
    pub to: usize,
    /// L_j at step 0.
    pub loss_start: f64,
    /// L_j after the probe that measures the entry (i alone, or i and j mixed).
    pub loss_probe: f64,
    /// L_j after the baseline probe (brute: j alone; linear: the start again).
    pub loss_baseline: f64,
    /// The entry: (loss_baseline − loss_probe) / loss_start.
    pub value: f64,
}

/// A learned graph.
#[derive(Debug, Clone)]
pub struct Learned {
    pub how: How,
    pub k: usize,
    pub measurements: Vec<Measurement>,
    /// Mean over seeds of each entry, k × k.
    pub mean: Vec<Vec<f64>>,
    /// The graph Skill-It uses (threshold rule).
    pub graph: SkillsGraph,
    pub threshold: f64,
    pub rule: Rule,
}

impl LearnRequest {
    /// Checks the request: H ≥ 1, at least one seed, a finite threshold, a valid base config.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::flag("--steps", "H must be at least 1"));
        }
        if self.seeds.is_empty() {
            return Err(Error::flag("--seeds", "give at least one seed"));
        }
        check_threshold(self.threshold)?;
        self.rule.check(self.how)?;
        self.base.validate("command line")
    }

    /// A run of the base config with `weights` for `steps` steps.
    fn run(&self, name: &str, seed: u64, weights: Vec<f64>, steps: u64) -> Result<PlannedRun> {
        let mut config = self.base.clone();
        config.setting = "pretrain".into();
        config.target = None;
        config.train_skills = None;
        config.eval_skills = None;
        // The config's `init` (a committed base, a run's weights) stays: the base runs, and the
        // probes without a warm start, start from it.
        config.seed = seed;
        config.method = MethodSpec::Fixed { weights };
        let t = &mut config.training;
        t.steps = steps;
        t.eval_every = steps;
        t.steps_per_round = steps;
        t.warmup = t.warmup.min(steps / 10);
        config.validate("graph probe")?;
        Ok(PlannedRun {
            run_id: format!("{name}-seed{seed}"),
            method: "fixed".into(),
            params: name.to_string(),
            seed,
            is_base: false,
            config,
        })
    }

    /// The base runs the probes start from (none without a warm start): stratified, one per seed.
    pub fn base_runs(&self) -> Result<Vec<PlannedRun>> {
        if self.warm_start == 0 {
            return Ok(Vec::new());
        }
        let k = self.base.task.build()?.num_skills();
        self.seeds
            .iter()
            .map(|&seed| self.run("base", seed, vec![1.0; k], self.warm_start))
            .collect()
    }

    /// The probe runs: one per mixture and seed, named by what they train on; with a warm start
    /// each starts from its seed's base run in `dir`.
    pub fn probes(&self, dir: &Path) -> Result<Vec<PlannedRun>> {
        let k = self.base.task.build()?.num_skills();
        let mut mixtures: Vec<(String, Vec<f64>)> = Vec::new();
        let one_hot = |i: usize| -> Vec<f64> { (1..=k).map(|s| f64::from(s == i)).collect() };
        for j in 1..=k {
            mixtures.push((format!("only-s{j}"), one_hot(j)));
        }
        if self.how == How::Brute {
            for i in 1..=k {
                for j in 1..=k {
                    if i < j {
                        let w = (1..=k).map(|s| f64::from(s == i || s == j)).collect();
                        mixtures.push((format!("mix-s{i}-s{j}"), w));
                    }
                }
            }
        }
        let mut runs = Vec::new();
        for &seed in &self.seeds {
            for (name, weights) in &mixtures {
                let mut run = self.run(name, seed, weights.clone(), self.steps)?;
                if self.warm_start > 0 {
                    let base = crate::sweep::run_dir(dir, &format!("base-seed{seed}"));
                    run.config.init = Some(base.join("model.bpk"));
                }
                runs.push(run);
            }
        }
        Ok(runs)
    }
}

/// The validation losses of a finished probe at step 0 and at its end.
fn probe_losses(dir: &Path, run: &PlannedRun) -> Result<(Vec<f64>, Vec<f64>)> {
    let folder = crate::sweep::run_dir(dir, &run.run_id);
    let recorded = crate::train::read_manifest(&folder)?;
    let bad = |message: &str| Error::Invalid {
        origin: folder.display().to_string(),
        field: "manifest".into(),
        message: message.into(),
    };
    if recorded.status != "finished" {
        return Err(bad(&format!(
            "the probe run is {}, not finished",
            recorded.status
        )));
    }
    let first = recorded
        .evaluations
        .first()
        .ok_or_else(|| bad("has no evaluations"))?;
    let last = recorded
        .evaluations
        .last()
        .ok_or_else(|| bad("has no evaluations"))?;
    Ok((first.loss.clone(), last.loss.clone()))
}

/// Turns the finished probes in `dir` into the learned graph.
pub fn assemble(request: &LearnRequest, dir: &Path, probes: &[PlannedRun]) -> Result<Learned> {
    let k = request.base.task.build()?.num_skills();
    let find = |name: &str, seed: u64| -> Result<(Vec<f64>, Vec<f64>)> {
        let run = probes
            .iter()
            .find(|r| r.params == name && r.seed == seed)
            .expect("every probe is planned");
        probe_losses(dir, run)
    };
    let mut measurements = Vec::new();
    for &seed in &request.seeds {
        let alone: Vec<(Vec<f64>, Vec<f64>)> = (1..=k)
            .map(|j| find(&format!("only-s{j}"), seed))
            .collect::<Result<_>>()?;
        for i in 1..=k {
            for j in 1..=k {
                let start = alone[j - 1].0[j - 1];
                let (probe, baseline) = match request.how {
                    How::Linear => (alone[i - 1].1[j - 1], start),
                    How::Brute if i == j => (alone[j - 1].1[j - 1], start),
                    How::Brute => {
                        let (a, b) = (i.min(j), i.max(j));
                        let mixed = find(&format!("mix-s{a}-s{b}"), seed)?;
                        (mixed.1[j - 1], alone[j - 1].1[j - 1])
                    }
                };
                measurements.push(Measurement {
                    seed,
                    from: i,
                    to: j,
                    loss_start: start,
                    loss_probe: probe,
                    loss_baseline: baseline,
                    value: (baseline - probe) / start,
                });
            }
        }
    }
    Ok(from_measurements(
        request.how,
        request.rule,
        k,
        measurements,
        request.threshold,
    ))
}

/// Trains what is not finished of the base runs and then the probes in `dir` (`jobs` at a time,
/// in packs of up to `pack` runs where they can share one, resumably: finished runs are kept),
/// and assembles the learned graph.
pub fn learn(
    request: &LearnRequest,
    dir: &Path,
    selected: &crate::device::Selected,
    jobs: usize,
    pack: usize,
    on_event: &(dyn Fn(crate::sweep::SweepEvent) + Sync),
) -> Result<Learned> {
    let bases = request.base_runs()?;
    let probes = request.probes(dir)?;
    let unfinished = |runs: &[PlannedRun]| -> Vec<PlannedRun> {
        runs.iter()
            .filter(|r| crate::sweep::run_status(dir, &r.run_id) != "finished")
            .cloned()
            .collect()
    };
    let stages = [unfinished(&bases), unfinished(&probes)];
    let all: Vec<&PlannedRun> = stages.iter().flatten().collect();
    crate::sweep::tidy(dir, &all);
    // The bases first: the probes start from their weights.
    for stage in &stages {
        let runs: Vec<&PlannedRun> = stage.iter().collect();
        crate::sweep::execute(dir, &runs, selected, jobs, pack, on_event)?;
    }
    assemble(request, dir, &probes)
}

/// The steps left to train in `dir` (for a progress bar).
pub fn steps_to_train(request: &LearnRequest, dir: &Path) -> Result<u64> {
    let mut runs = request.base_runs()?;
    runs.extend(request.probes(dir)?);
    Ok(runs
        .iter()
        .filter(|r| crate::sweep::run_status(dir, &r.run_id) != "finished")
        .map(|r| r.config.training.steps)
        .sum())
}

/// Checks `--threshold`: a finite number.
pub fn check_threshold(threshold: f64) -> Result<()> {
    if !threshold.is_finite() {
        return Err(Error::flag(
            "--threshold",
            format!("{threshold} is not a finite number"),
        ));
    }
    Ok(())
}

/// Whether a measured entry passes the threshold rule (module docs); `own` is the column skill's
/// own entry A[j][j].
pub fn passes(rule: Rule, value: f64, own: f64, threshold: f64) -> bool {
    match rule {
        Rule::Gain => value > threshold,
        Rule::Serves => value > -threshold && own > threshold,
    }
}

/// The mean matrix and the thresholded graph from per-seed measurements.
pub fn from_measurements(
    how: How,
    rule: Rule,
    k: usize,
    measurements: Vec<Measurement>,
    threshold: f64,
) -> Learned {
    let mut mean = vec![vec![0.0; k]; k];
    let mut count = vec![vec![0usize; k]; k];
    for m in &measurements {
        mean[m.from - 1][m.to - 1] += m.value;
        count[m.from - 1][m.to - 1] += 1;
    }
    for (row, n) in mean.iter_mut().zip(&count) {
        for (v, &c) in row.iter_mut().zip(n) {
            *v /= c.max(1) as f64;
        }
    }
    let matrix = (0..k)
        .map(|i| {
            (0..k)
                .map(
                    |j| match (i == j, passes(rule, mean[i][j], mean[j][j], threshold)) {
                        (true, _) => 1.0,
                        (false, true) => EDGE_WEIGHT,
                        (false, false) => 0.0,
                    },
                )
                .collect()
        })
        .collect();
    Learned {
        how,
        k,
        measurements,
        mean,
        graph: SkillsGraph {
            train_skills: (1..=k).collect(),
            eval_skills: (1..=k).collect(),
            matrix,
        },
        threshold,
        rule,
    }
}

/// How a graph file written by [`Learned::graph_toml`] begins: this, then its description.
const GRAPH_FILE_HEAD: &str = "# A skills graph learned by `skillit graph learn`: ";

/// The description a graph file's first line holds (empty where it has none).
fn description_of(text: &str) -> String {
    text.lines()
        .next()
        .and_then(|line| line.strip_prefix(GRAPH_FILE_HEAD))
        .map(|d| d.strip_suffix('.').unwrap_or(d).to_string())
        .unwrap_or_default()
}

impl Learned {
    /// Whether edge i → j (1-based) exceeds the threshold in every seed, of two or more: one seed
    /// (one measurement of the entry) says nothing about stability.
    pub fn stable(&self, i: usize, j: usize) -> bool {
        let own = |seed: u64| {
            self.measurements
                .iter()
                .find(|m| m.seed == seed && m.from == j && m.to == j)
                .map_or(f64::NAN, |m| m.value)
        };
        let entries: Vec<&Measurement> = self
            .measurements
            .iter()
            .filter(|m| m.from == i && m.to == j)
            .collect();
        entries.len() >= 2
            && entries
                .iter()
                .all(|m| passes(self.rule, m.value, own(m.seed), self.threshold))
    }

    /// The threshold rule in words ([`Rule::of_graph_file`] reads them back).
    fn rule_words(&self) -> String {
        match self.rule {
            Rule::Gain => format!("above {}", self.threshold),
            Rule::Serves => format!(
                "above {} {SERVES_WORDS} {}",
                -self.threshold, self.threshold
            ),
        }
    }

    /// The graph file: the thresholded graph Skill-It reads, with the rule and the weighted mean
    /// matrix in comments.
    pub fn graph_toml(&self, description: &str) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "{GRAPH_FILE_HEAD}{description}.");
        let _ = writeln!(
            text,
            "# Rule: diagonal 1; edge i → j at {EDGE_WEIGHT} where the mean over seeds of the \
             measured entry is {} (see src/graph_learn.rs).",
            self.rule_words()
        );
        let _ = writeln!(
            text,
            "# Measured entries (mean over seeds; rows: train skill i):"
        );
        for line in self.mean_comment_lines() {
            let _ = writeln!(text, "{line}");
        }
        let ids = |v: &[usize]| {
            v.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(text, "train = [{}]", ids(&self.graph.train_skills));
        let _ = writeln!(text, "eval = [{}]", ids(&self.graph.eval_skills));
        let _ = writeln!(text, "matrix = [");
        for row in &self.graph.matrix {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:.1}")).collect();
            let _ = writeln!(text, "  [{}],", cells.join(", "));
        }
        let _ = writeln!(text, "]");
        text
    }

    /// The mean matrix as the graph file's header comment holds it, a line a row.
    pub fn mean_comment_lines(&self) -> Vec<String> {
        self.mean
            .iter()
            .map(|row| {
                let cells: Vec<String> = row.iter().map(|v| format!("{v:+.4}")).collect();
                format!("#   [{}]", cells.join(", "))
            })
            .collect()
    }

    /// The per-seed measurements as CSV.
    pub fn measurements_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for m in &self.measurements {
            w.serialize(m).expect("writing CSV to memory cannot fail");
        }
        w.into_inner().expect("writing CSV to memory cannot fail")
    }

    /// The learned graph the graph file `toml` (its text: `text`) holds, from the measurements
    /// CSV beside it, judged by the rule its `# Rule:` line names at `threshold`; `None` without a
    /// CSV (a published or hand-written graph). Also returns the file's description.
    pub fn of_graph_file(
        toml: &Path,
        text: &str,
        threshold: f64,
    ) -> Result<Option<(Self, String)>> {
        let csv = toml.with_extension("csv");
        if !csv.exists() {
            return Ok(None);
        }
        let learned = Self::read_measurements(
            &csv,
            How::of_graph_file(text),
            Rule::of_graph_file(text),
            threshold,
        )?;
        Ok(Some((learned, description_of(text))))
    }

    /// Reads the measurements CSV written beside a graph file.
    pub fn read_measurements(path: &Path, how: How, rule: Rule, threshold: f64) -> Result<Self> {
        let origin = path.display().to_string();
        let mut reader = csv::Reader::from_path(path).map_err(|e| Error::Invalid {
            origin: origin.clone(),
            field: "file".into(),
            message: format!("cannot be read: {e}"),
        })?;
        let measurements: Vec<Measurement> = reader
            .deserialize()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Invalid {
                origin: origin.clone(),
                field: "row".into(),
                message: e.to_string(),
            })?;
        let k = measurements
            .iter()
            .map(|m| m.from.max(m.to))
            .max()
            .unwrap_or(0);
        if k == 0 {
            return Err(Error::Invalid {
                origin,
                field: "rows".into(),
                message: "no measurements".into(),
            });
        }
        Ok(from_measurements(how, rule, k, measurements, threshold))
    }

    /// A table of the measured entries: mean ± sd over seeds, `*` where the edge is stable. With
    /// one seed there is neither an sd nor a stability to show: the entries and edges stand alone.
    pub fn table(&self) -> String {
        let n_seeds = self
            .measurements
            .iter()
            .map(|m| m.seed)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let several = n_seeds >= 2;
        let mut out = if several {
            format!(
                "mean over {n_seeds} seeds of the measured entry (rows: train skill i, columns: \
                 skill j); * = {} in every seed\n{:>6}",
                self.rule_words(),
                "i \\ j"
            )
        } else {
            format!(
                "the measured entry of one seed (rows: train skill i, columns: skill j; no sd and \
                 no stability with one seed)\n{:>6}",
                "i \\ j"
            )
        };
        for j in 1..=self.k {
            let _ = write!(out, " {:>16}", format!("s{j}"));
        }
        out.push('\n');
        for i in 1..=self.k {
            let _ = write!(out, "{:>6}", format!("s{i}"));
            for j in 1..=self.k {
                let values: Vec<f64> = self
                    .measurements
                    .iter()
                    .filter(|m| m.from == i && m.to == j)
                    .map(|m| m.value)
                    .collect();
                let mark = if i != j && self.stable(i, j) {
                    "*"
                } else {
                    " "
                };
                let cell = if several {
                    let sd = crate::stats::sd(&values);
                    format!("{:+.3} ± {sd:.3}{mark}", self.mean[i - 1][j - 1])
                } else {
                    format!("{:+.3}{mark}", self.mean[i - 1][j - 1])
                };
                let _ = write!(out, " {cell:>16}");
            }
            out.push('\n');
        }
        let edges: Vec<String> = (1..=self.k)
            .flat_map(|i| (1..=self.k).map(move |j| (i, j)))
            .filter(|&(i, j)| i != j && self.graph.matrix[i - 1][j - 1] > 0.0)
            .map(|(i, j)| {
                format!(
                    "s{i} → s{j}{}",
                    if self.stable(i, j) { " (stable)" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "edges: {}",
            if edges.is_empty() {
                "none".to_string()
            } else {
                edges.join(", ")
            }
        );
        out
    }

    /// An SVG drawing: skills on a circle, an arrow i → j for every positive off-diagonal mean,
    /// its width ∝ the mean, dark where the edge is in the graph.
    pub fn svg(&self, title: &str) -> Result<String> {
        use plotters::prelude::*;
        let plot_error = |e: &dyn std::fmt::Display| Error::Io {
            path: "<svg>".into(),
            source: std::io::Error::other(e.to_string()),
        };
        let mut svg = String::new();
        {
            let size = 480;
            let root = SVGBackend::with_string(&mut svg, (size, size)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_error(&e))?;
            // The title on two lines: the task and how, then the settings.
            let (head, tail) = title.split_once(", ").unwrap_or((title, ""));
            for (n, line) in [head, tail].iter().enumerate() {
                root.draw(&Text::new(
                    line.to_string(),
                    (10, 8 + 18 * n as i32),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(|e| plot_error(&e))?;
            }
            let (cx, cy, r) = (240.0, 250.0, 170.0);
            let pos = |s: usize| {
                let a = std::f64::consts::TAU * (s - 1) as f64 / self.k as f64
                    - std::f64::consts::FRAC_PI_2;
                (cx + r * a.cos(), cy + r * a.sin())
            };
            let max = self
                .mean
                .iter()
                .enumerate()
                .flat_map(|(i, row)| row.iter().enumerate().filter(move |(j, _)| *j != i))
                .map(|(_, v)| *v)
                .fold(0.0f64, f64::max);
            for i in 1..=self.k {
                for j in 1..=self.k {
                    let v = self.mean[i - 1][j - 1];
                    let in_graph = i != j && self.graph.matrix[i - 1][j - 1] > 0.0;
                    if i == j || !(in_graph || v > 0.0) {
                        continue;
                    }
                    let (a, b) = (pos(i), pos(j));
                    // Shorten to the node rims and offset sideways so i → j and j → i separate.
                    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
                    let len = (dx * dx + dy * dy).sqrt();
                    let (ux, uy) = (dx / len, dy / len);
                    let (ox, oy) = (-uy * 6.0, ux * 6.0);
                    let from = (a.0 + ux * 24.0 + ox, a.1 + uy * 24.0 + oy);
                    let to = (b.0 - ux * 24.0 + ox, b.1 - uy * 24.0 + oy);
                    let colour = if in_graph {
                        RGBColor(200, 40, 40)
                    } else {
                        RGBColor(170, 170, 170)
                    };
                    let width =
                        (1.0 + 7.0 * v.max(0.0) / max.max(f64::MIN_POSITIVE)).round() as u32;
                    let style = ShapeStyle::from(colour).stroke_width(width);
                    let p = |q: (f64, f64)| (q.0.round() as i32, q.1.round() as i32);
                    root.draw(&PathElement::new(vec![p(from), p(to)], style))
                        .map_err(|e| plot_error(&e))?;
                    let head = |sx: f64, sy: f64| (to.0 - ux * 12.0 + sx, to.1 - uy * 12.0 + sy);
                    root.draw(&Polygon::new(
                        vec![
                            p(to),
                            p(head(-uy * 6.0, ux * 6.0)),
                            p(head(uy * 6.0, -ux * 6.0)),
                        ],
                        colour.filled(),
                    ))
                    .map_err(|e| plot_error(&e))?;
                }
            }
            for s in 1..=self.k {
                let (x, y) = pos(s);
                let c = (x.round() as i32, y.round() as i32);
                root.draw(&Circle::new(c, 22, ShapeStyle::from(BLACK).stroke_width(2)))
                    .map_err(|e| plot_error(&e))?;
                root.draw(&Text::new(
                    format!("s{s}"),
                    (c.0 - 9, c.1 - 7),
                    ("sans-serif", 16).into_font(),
                ))
                .map_err(|e| plot_error(&e))?;
            }
        }
        Ok(svg)
    }
}
