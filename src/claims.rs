//! The paper's claims against committed results: `skillit claims FILE` reads a TOML list of claims
//! (`[[claim]]` tables), tests each on the results folder it names, and renders one Markdown table
//! (the headline of results/README.md).
//!
//! Every claim of the paper (docs/paper.md §10) says that a method does better than another: a
//! higher mean accuracy or a lower loss at an evaluation step, or fewer steps to reach a level of
//! the metric (the paper's "reaches loss 0.01 in 38% fewer steps"). A claim here names its folder,
//! the two methods, and either `step` (the per-seed value is the metric at that step, mean over
//! skills or one `skill`) or `threshold` (the per-seed value is the first evaluated step at which
//! the metric reaches it; a seed that never does counts at its last evaluated step, a lower bound
//! of what it needs). Per claim: each method's mean and 95% t-interval over seeds, Welch's
//! two-sided t-test, and Holm's correction over every testable claim of the file (one family).
//!
//! The verdict: **agree** when the difference lies in the paper's direction with Holm p < 0.05;
//! **not** when it lies the other way with Holm p < 0.05 (`the reverse`) or when no difference is
//! shown (Holm p ≥ 0.05; five seeds cannot show that two methods are *equal*, only fail to
//! separate them); **not testable** when a threshold is reached by no seed of either method (a
//! question of speed about a skill neither learns), or either method has fewer than 2 seeds.
//! Two methods that each give one value on every seed, different values, differ beyond any test
//! (p = 0).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::common::read_toml;
use crate::results::{group_runs, read_metrics, MetricsRow};
use crate::stats::{
    find_method, holm, mean, run_curve, sd, steps_to_threshold, t_interval, welch, Metric,
};
use crate::{Error, Result};

/// The significance level of the verdicts (after Holm's correction).
pub const ALPHA: f64 = 0.05;

/// A claims file: `[[claim]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsFile {
    #[serde(rename = "claim", default)]
    pub claims: Vec<ClaimSpec>,
}

/// One claim of the paper and where our results test it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// The experiment, as the table's first column names it (e.g. `LEGO k = 5 pre-training`).
    pub experiment: String,
    /// The claim in words (e.g. `Skill-It ahead of stratified at step 3,000`).
    pub claim: String,
    /// The paper's numbers, as the paper gives them (e.g. `84.2 vs 75.9%`).
    pub paper: String,
    /// The results folder (holding metrics.csv), relative to the claims file's folder.
    pub folder: PathBuf,
    /// The method the paper says does better: a method name or a `method[params]` label.
    pub method: String,
    /// The method it does better than.
    pub baseline: String,
    /// The metric compared (default accuracy).
    #[serde(default = "default_metric")]
    pub metric: Metric,
    /// Compare the metric at this evaluation step (exactly one of `step` and `threshold`).
    pub step: Option<u64>,
    /// Compare the steps to reach this level of the metric (≥ for accuracy, ≤ for loss).
    pub threshold: Option<f64>,
    /// One skill (1-based) instead of the mean over skills.
    pub skill: Option<usize>,
    /// The setting (`pretrain`, `finetune`) where the folder holds several.
    pub setting: Option<String>,
    /// A remark printed after the verdict.
    pub note: Option<String>,
}

fn default_metric() -> Metric {
    Metric::Accuracy
}

/// What a claim compares per seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// The metric at this evaluation step.
    At(u64),
    /// The steps to reach this level of the metric.
    Reach(f64),
}

impl ClaimSpec {
    /// The claim's measure; `None` unless exactly one of `step` and `threshold` is given.
    pub fn measure(&self) -> Option<Measure> {
        match (self.step, self.threshold) {
            (Some(s), None) => Some(Measure::At(s)),
            (None, Some(t)) => Some(Measure::Reach(t)),
            _ => None,
        }
    }
}

/// What was measured for one method of a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// The method's label in the results (`method[params]`).
    pub label: String,
    /// One value per seed, in seed order: the metric at the step, or the steps to the threshold.
    pub values: Vec<f64>,
    /// Threshold claims: how many seeds reached it.
    pub reached: Option<usize>,
}

/// The outcome of a claim's test.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The paper's direction, Holm p < 0.05.
    Agree,
    /// The other direction, Holm p < 0.05.
    Reverse,
    /// Holm p ≥ 0.05 (or the methods give the same value on every seed).
    NoDifference,
    /// Nothing to test, and why.
    NotTestable(String),
}

/// One claim tested.
#[derive(Debug, Clone)]
pub struct ClaimResult {
    pub spec: ClaimSpec,
    pub method: Side,
    pub baseline: Side,
    /// Welch's two-sided p (NaN where not testable).
    pub p: f64,
    /// `p` after Holm's correction over the file's testable claims.
    pub holm_p: f64,
    pub verdict: Verdict,
}

impl ClaimResult {
    /// Whether the method's mean lies on the paper's side of the baseline's.
    fn in_paper_direction(&self) -> bool {
        let (m, b) = (mean(&self.method.values), mean(&self.baseline.values));
        let higher_is_better = self.spec.threshold.is_none() && self.spec.metric.higher_is_better();
        if higher_is_better {
            m > b
        } else {
            m < b
        }
    }
}

/// Reads a claims file and tests every claim on its folder (relative to the file's folder).
pub fn evaluate_file(path: &Path) -> Result<Vec<ClaimResult>> {
    let file: ClaimsFile = read_toml(path)?;
    let origin = path.display().to_string();
    if file.claims.is_empty() {
        return Err(invalid(
            &origin,
            "claim",
            "the file holds no [[claim]] table",
        ));
    }
    let root = path.parent().unwrap_or(Path::new(""));
    let mut results = Vec::new();
    // Claims on the same folder read its metrics once.
    let mut folders: std::collections::BTreeMap<PathBuf, Vec<MetricsRow>> = Default::default();
    for (i, spec) in file.claims.iter().enumerate() {
        let field = |name: &str| format!("claim[{i}].{name}");
        let measure = check_spec(spec, &origin, &field)?;
        let folder = root.join(&spec.folder);
        let rows = match folders.entry(folder) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let rows = read_metrics(e.key())?;
                e.insert(rows)
            }
        };
        results.push(evaluate(spec, measure, rows, &origin, &field)?);
    }
    adjust(&mut results);
    Ok(results)
}

fn invalid(origin: &str, field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        origin: origin.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// Exactly one of `step` and `threshold`, a finite threshold, a skill from 1.
fn check_spec(spec: &ClaimSpec, origin: &str, field: &dyn Fn(&str) -> String) -> Result<Measure> {
    let measure = spec.measure().ok_or_else(|| {
        invalid(
            origin,
            &field("step"),
            "give exactly one of `step` (compare the metric there) and `threshold` (compare the steps to reach it)",
        )
    })?;
    if let Measure::Reach(t) = measure {
        if !t.is_finite() {
            return Err(invalid(
                origin,
                &field("threshold"),
                format!("{t} is not a finite number"),
            ));
        }
    }
    if spec.skill == Some(0) {
        return Err(invalid(origin, &field("skill"), "skills count from 1"));
    }
    Ok(measure)
}

/// Tests one claim on a folder's rows (Holm's column is filled by [`adjust`]).
pub fn evaluate(
    spec: &ClaimSpec,
    measure: Measure,
    rows: &[MetricsRow],
    origin: &str,
    field: &dyn Fn(&str) -> String,
) -> Result<ClaimResult> {
    let settings: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.setting.as_str()).collect();
    let setting = match (&spec.setting, settings.len()) {
        (Some(s), _) if settings.contains(s.as_str()) => s.clone(),
        (None, 1) => settings
            .iter()
            .next()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        (named, _) => {
            let list = settings.iter().copied().collect::<Vec<_>>().join(", ");
            let message = match named {
                Some(s) => format!(
                    "'{s}' is not in {} (settings: {list})",
                    spec.folder.display()
                ),
                None => format!(
                    "{} holds several settings ({list}): name one",
                    spec.folder.display()
                ),
            };
            return Err(invalid(origin, &field("setting"), message));
        }
    };
    let rows: Vec<MetricsRow> = rows
        .iter()
        .filter(|r| r.setting == setting)
        .cloned()
        .collect();
    if let Some(s) = spec.skill {
        let k = rows.iter().map(|r| r.skill).max().unwrap_or(0);
        if s > k {
            return Err(invalid(
                origin,
                &field("skill"),
                format!("skill {s} is not in the results (skills 1..={k})"),
            ));
        }
    }
    let method = side(spec, measure, &rows, "method", origin, field)?;
    let baseline = side(spec, measure, &rows, "baseline", origin, field)?;
    let mut result = ClaimResult {
        spec: spec.clone(),
        method,
        baseline,
        p: f64::NAN,
        holm_p: f64::NAN,
        verdict: Verdict::NoDifference,
    };
    let (xs, ys) = (&result.method.values, &result.baseline.values);
    if xs.len() < 2 || ys.len() < 2 {
        result.verdict = Verdict::NotTestable("fewer than 2 seeds".into());
    } else if result.method.reached == Some(0) && result.baseline.reached == Some(0) {
        result.verdict = Verdict::NotTestable("no seed of either reaches the threshold".into());
    } else if sd(xs) == 0.0 && sd(ys) == 0.0 {
        // One value on every seed each: equal values show no difference, different ones differ
        // beyond any test.
        result.p = if mean(xs) == mean(ys) { 1.0 } else { 0.0 };
    } else {
        let w = welch(xs, ys);
        result.p = if w.p.is_nan() { 1.0 } else { w.p };
    }
    Ok(result)
}

/// One method's per-seed values for a claim.
fn side(
    spec: &ClaimSpec,
    measure: Measure,
    rows: &[MetricsRow],
    which: &str,
    origin: &str,
    field: &dyn Fn(&str) -> String,
) -> Result<Side> {
    let name = if which == "method" {
        &spec.method
    } else {
        &spec.baseline
    };
    let label = find_method(rows, name).ok_or_else(|| {
        let labels: std::collections::BTreeSet<String> =
            rows.iter().map(|r| r.method_label()).collect();
        invalid(
            origin,
            &field(which),
            format!(
                "'{name}' names no one method of {} (methods: {})",
                spec.folder.display(),
                labels.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let mine: Vec<MetricsRow> = rows
        .iter()
        .filter(|r| r.method_label() == label)
        .cloned()
        .collect();
    let mut by_seed: Vec<(u64, f64, bool)> = Vec::new();
    for (run_id, run_rows) in group_runs(&mine) {
        let curve = run_curve(&run_rows, spec.metric, spec.skill);
        let seed = run_rows[0].seed;
        match measure {
            Measure::At(step) => {
                let v = curve.iter().find(|p| p.0 == step).map(|p| p.1).ok_or_else(|| {
                    let last = curve.last().map_or(0, |p| p.0);
                    invalid(origin, &field("step"), format!("run {run_id} of {} has no evaluation at step {step} (its last: {last})", spec.folder.display()))
                })?;
                by_seed.push((seed, v, true));
            }
            Measure::Reach(t) => match steps_to_threshold(&curve, t, spec.metric) {
                Some(s) => by_seed.push((seed, s as f64, true)),
                None => by_seed.push((seed, curve.last().map_or(0.0, |p| p.0 as f64), false)),
            },
        }
    }
    by_seed.sort_by_key(|s| s.0);
    Ok(Side {
        label,
        values: by_seed.iter().map(|s| s.1).collect(),
        reached: spec
            .threshold
            .map(|_| by_seed.iter().filter(|s| s.2).count()),
    })
}

/// Holm's correction over the testable claims, then the verdicts.
pub fn adjust(results: &mut [ClaimResult]) {
    let adjusted = holm(&results.iter().map(|r| r.p).collect::<Vec<_>>());
    for (r, holm_p) in results.iter_mut().zip(adjusted) {
        r.holm_p = holm_p;
        if matches!(r.verdict, Verdict::NotTestable(_)) {
            continue;
        }
        r.verdict = if holm_p >= ALPHA {
            Verdict::NoDifference
        } else if r.in_paper_direction() {
            Verdict::Agree
        } else {
            Verdict::Reverse
        };
    }
}

/// A number with thousands separators for steps, 3 decimals for metrics.
fn number(v: f64, steps: bool) -> String {
    if v.is_nan() {
        return "–".into();
    }
    if !steps {
        return format!("{v:.3}");
    }
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("−{out}")
    } else {
        out
    }
}

/// A p-value for the table.
fn p_value(p: f64) -> String {
    if p.is_nan() {
        "–".into()
    } else if p != 0.0 && p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// `mean [low, high]`, and for thresholds the seeds that reached it.
fn cell(side: &Side, steps: bool) -> String {
    let (lo, hi) = t_interval(&side.values, 0.95);
    let mut s = format!("{} {} ", side.label, number(mean(&side.values), steps));
    if lo.is_nan() {
        s.push_str("(n = 1)");
    } else {
        let _ = write!(s, "[{}, {}]", number(lo, steps), number(hi, steps));
    }
    if let Some(r) = side.reached {
        let _ = write!(s, " ({r}/{} reached)", side.values.len());
    }
    s
}

/// What a claim measures, in words: `mean accuracy @3,000`, `s3 loss ≤ 0.01: steps`.
fn measure(spec: &ClaimSpec) -> String {
    let of = spec
        .skill
        .map_or_else(|| "mean".to_string(), |s| format!("s{s}"));
    match spec.measure() {
        Some(Measure::At(step)) => {
            format!("{of} {} @{}", spec.metric.name(), number(step as f64, true))
        }
        Some(Measure::Reach(t)) => {
            let op = if spec.metric.higher_is_better() {
                "≥"
            } else {
                "≤"
            };
            format!("steps to {of} {} {op} {t}", spec.metric.name())
        }
        None => String::new(),
    }
}

/// The difference in the paper's terms: `+0.037` at a step, `38% fewer steps` for thresholds.
fn difference(r: &ClaimResult) -> String {
    let (m, b) = (mean(&r.method.values), mean(&r.baseline.values));
    if matches!(r.verdict, Verdict::NotTestable(_)) {
        return "–".into();
    }
    if r.spec.threshold.is_some() {
        if b == 0.0 {
            return "–".into();
        }
        let fewer = 100.0 * (1.0 - m / b);
        if fewer >= 0.0 {
            format!("{fewer:.0}% fewer steps")
        } else {
            format!("{:.0}% more steps", -fewer)
        }
    } else if m - b < 0.0 {
        format!("−{:.3}", b - m)
    } else {
        format!("+{:.3}", m - b)
    }
}

fn verdict(r: &ClaimResult) -> String {
    let v = match &r.verdict {
        Verdict::Agree => "**agree**".to_string(),
        Verdict::Reverse => "not: the reverse".to_string(),
        Verdict::NoDifference => "not: no difference shown".to_string(),
        Verdict::NotTestable(why) => format!("not testable: {why}"),
    };
    match &r.spec.note {
        Some(note) => format!("{v}; {note}"),
        None => v,
    }
}

/// The claims table in Markdown, with a line on how it was made.
pub fn render(results: &[ClaimResult], source: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Made by `skillit claims {}` from the committed metrics: per claim, each method's mean and 95% t-interval over seeds, Welch's two-sided t-test, Holm's correction over the {} testable claims; **agree** = the paper's direction with Holm p < {ALPHA}. Steps to a threshold count a seed that never reaches it at its last evaluated step (a lower bound).",
        source.display(),
        results.iter().filter(|r| !r.p.is_nan()).count()
    );
    out.push('\n');
    out.push_str("| experiment | the paper's claim | the paper | measure | ours: the method | ours: the baseline | difference | p (Holm) | verdict |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        let steps = r.spec.threshold.is_some();
        let _ = writeln!(
            out,
            "| {} (`{}/`) | {} | {} | {} | {} | {} | {} | {} ({}) | {} |",
            r.spec.experiment,
            r.spec.folder.display(),
            r.spec.claim,
            r.spec.paper,
            measure(&r.spec),
            cell(&r.method, steps),
            cell(&r.baseline, steps),
            difference(r),
            p_value(r.p),
            p_value(r.holm_p),
            verdict(r),
        );
    }
    out
}
