//! Statistics across seeds: interval estimates, tests against a baseline, and sample efficiency.
//!
//! Everything here works on the per-seed values of one metric, so it knows nothing of training. The
//! conventions follow scipy.stats and rliable (Agarwal et al. 2021):
//! - `t_interval`: mean ± t(0.975, n − 1) · sd / √n, sd with n − 1 in the denominator;
//! - `welch`: Welch's unequal-variance t-test, two-sided (scipy `ttest_ind(equal_var=False)`);
//! - `paired`: the paired t-test on seeds present for both methods (scipy `ttest_rel`);
//! - `holm`: Holm's step-down adjustment of a family of p-values;
//! - `prob_improvement`: P(X better than Y) = U / (n·m), ties counting ½ (rliable);
//! - `iqm`: the interquartile mean, scipy `trim_mean(x, 0.25)`, with a percentile bootstrap interval
//!   from a fixed seed (one task, so the stratified bootstrap resamples seeds within the method);
//! - `steps_to_threshold` and `auc` on a metric-vs-step curve.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::results::{group_runs, MetricsRow};
use crate::{Error, Result};

/// Which column of metrics.csv a comparison reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Greedy accuracy on the validation set (higher is better).
    Accuracy,
    /// Answer-token cross-entropy on the validation set, nats (lower is better).
    Loss,
}

impl Metric {
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Accuracy)
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Loss => "loss",
        }
    }

    /// The metric's value in a metrics row.
    pub fn of(self, row: &MetricsRow) -> f64 {
        match self {
            Metric::Accuracy => row.accuracy,
            Metric::Loss => row.loss,
        }
    }

    /// Whether `value` has reached `threshold` (≥ for accuracy, ≤ for loss).
    pub fn reached(self, value: f64, threshold: f64) -> bool {
        if self.higher_is_better() {
            value >= threshold
        } else {
            value <= threshold
        }
    }
}

/// The arithmetic mean (NaN for no values).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The sample standard deviation (n − 1 in the denominator; NaN for fewer than 2 values).
pub fn sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// The two-sided `level` quantile of Student's t with `df` degrees of freedom (e.g. 2.776 for
/// level 0.95 and df 4).
fn t_quantile(level: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.inverse_cdf(0.5 + level / 2.0),
        Err(_) => f64::NAN,
    }
}

/// The two-sided p-value of statistic `t` under Student's t with `df` degrees of freedom.
fn t_p_value(t: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) if t.is_finite() => 2.0 * dist.cdf(-t.abs()),
        _ => f64::NAN,
    }
}

/// The `level` t-interval of the mean: (NaN, NaN) for fewer than 2 values.
pub fn t_interval(xs: &[f64], level: f64) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let half = t_quantile(level, n - 1.0) * sd(xs) / n.sqrt();
    (mean(xs) - half, mean(xs) + half)
}

/// A test statistic and its two-sided p-value. NaN where the test is undefined (too few values,
/// zero variance).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TTest {
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

const UNDEFINED: TTest = TTest {
    t: f64::NAN,
    df: f64::NAN,
    p: f64::NAN,
};

/// Welch's t-test of mean(xs) − mean(ys), two-sided, with Welch–Satterthwaite degrees of freedom.
pub fn welch(xs: &[f64], ys: &[f64]) -> TTest {
    if xs.len() < 2 || ys.len() < 2 {
        return UNDEFINED;
    }
    let (vx, vy) = (
        sd(xs).powi(2) / xs.len() as f64,
        sd(ys).powi(2) / ys.len() as f64,
    );
    let se2 = vx + vy;
    // Identical values up to float round-off (e.g. 0.6567 − 0.6567 ≈ 1e-16) have no spread.
    if se2.sqrt() <= 1e-12 * mean(xs).abs().max(mean(ys).abs()).max(1.0) {
        return UNDEFINED;
    }
    let t = (mean(xs) - mean(ys)) / se2.sqrt();
    let df =
        se2.powi(2) / (vx.powi(2) / (xs.len() - 1) as f64 + vy.powi(2) / (ys.len() - 1) as f64);
    TTest {
        t,
        df,
        p: t_p_value(t, df),
    }
}

/// The paired t-test of the differences `xs[i] − ys[i]`, two-sided.
pub fn paired(xs: &[f64], ys: &[f64]) -> TTest {
    assert_eq!(xs.len(), ys.len(), "paired samples have equal length");
    let d: Vec<f64> = xs.iter().zip(ys).map(|(x, y)| x - y).collect();
    let s = sd(&d);
    if d.len() < 2 || s <= 1e-12 * mean(xs).abs().max(1.0) {
        return UNDEFINED;
    }
    let df = (d.len() - 1) as f64;
    let t = mean(&d) / (s / (d.len() as f64).sqrt());
    TTest {
        t,
        df,
        p: t_p_value(t, df),
    }
}

/// Holm's step-down adjustment: sort the m p-values ascending, multiply the i-th smallest (1-based)
/// by m − i + 1, carry the running maximum, cap at 1. NaN p-values stay NaN and do not count in m.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..ps.len()).filter(|&i| !ps[i].is_nan()).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let m = order.len();
    let mut adjusted = vec![f64::NAN; ps.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The probability that a run of `xs` is better than a run of `ys`: the Mann-Whitney U statistic
/// over n·m, each tie counting ½ (rliable's probability of improvement).
pub fn prob_improvement(xs: &[f64], ys: &[f64], higher_is_better: bool) -> f64 {
    if xs.is_empty() || ys.is_empty() {
        return f64::NAN;
    }
    let mut u = 0.0;
    for &x in xs {
        for &y in ys {
            let better = if higher_is_better { x > y } else { x < y };
            u += if x == y {
                0.5
            } else if better {
                1.0
            } else {
                0.0
            };
        }
    }
    u / (xs.len() * ys.len()) as f64
}

/// The interquartile mean: the mean after cutting ⌊0.25·n⌋ values from each end of the sorted
/// sample (scipy `trim_mean(x, 0.25)`, as rliable computes IQM).
pub fn iqm(xs: &[f64]) -> f64 {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cut = xs.len() / 4;
    mean(&sorted[cut..xs.len() - cut])
}

/// The seed of every bootstrap, so that a report is the same each time it is made.
pub const BOOTSTRAP_SEED: u64 = 0x5eed;
/// Bootstrap resamples per interval.
pub const BOOTSTRAP_REPS: usize = 2000;

/// A percentile bootstrap `level` interval of the IQM: `reps` resamples of the seeds with
/// replacement, from ChaCha8 seeded with `seed`.
pub fn iqm_interval(xs: &[f64], level: f64, reps: usize, seed: u64) -> (f64, f64) {
    if xs.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut stats: Vec<f64> = (0..reps)
        .map(|_| {
            let sample: Vec<f64> = (0..xs.len())
                .map(|_| xs[rng.random_range(0..xs.len() as u32) as usize])
                .collect();
            iqm(&sample)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    (
        quantile(&stats, (1.0 - level) / 2.0),
        quantile(&stats, (1.0 + level) / 2.0),
    )
}

/// The median (numpy's `median`: the mean of the two middle values of an even count); NaN for no
/// values.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5)
}

/// The `q` quantile of sorted values, interpolating linearly (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The first step at which the curve reaches `threshold`, `None` if it never does.
pub fn steps_to_threshold(curve: &[(u64, f64)], threshold: f64, metric: Metric) -> Option<u64> {
    curve
        .iter()
        .find(|&&(_, v)| metric.reached(v, threshold))
        .map(|&(s, _)| s)
}

/// The area under the curve by the trapezoid rule, divided by the span of steps: the curve's mean
/// level over training (for accuracy, in [0, 1]). NaN for fewer than 2 points.
pub fn auc(curve: &[(u64, f64)]) -> f64 {
    if curve.len() < 2 {
        return f64::NAN;
    }
    let area: f64 = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) as f64 * (w[0].1 + w[1].1) / 2.0)
        .sum();
    area / (curve[curve.len() - 1].0 - curve[0].0) as f64
}

/// What a comparison reads and tests.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub metric: Metric,
    /// The method every other is tested against; `None` uses `stratified` where present.
    pub baseline: Option<String>,
    /// The evaluation step to compare at; `None` = each run's last step.
    pub step: Option<u64>,
    /// One skill (1-based); `None` = the mean over skills.
    pub skill: Option<usize>,
    /// For steps-to-threshold: the level of the metric to reach.
    pub threshold: Option<f64>,
}

/// The baseline used when none is named.
pub const DEFAULT_BASELINE: &str = "stratified";

/// One method's row of a comparison. Test columns are `None` for the baseline and where the test
/// is not available (e.g. seeds that don't pair).
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    pub method: String,
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub welch_t: Option<f64>,
    pub welch_p: Option<f64>,
    pub paired_p: Option<f64>,
    pub holm_p: Option<f64>,
    pub p_improve: Option<f64>,
    pub iqm: f64,
    pub iqm_low: f64,
    pub iqm_high: f64,
    /// Mean over seeds of the normalised area under the metric-vs-step curve.
    pub auc: f64,
    pub auc_low: f64,
    pub auc_high: f64,
    /// With a threshold: seeds that reached it, and the mean and t-interval of their steps.
    pub reached: Option<usize>,
    pub steps_mean: Option<f64>,
    pub steps_low: Option<f64>,
    pub steps_high: Option<f64>,
    /// The per-seed values, by seed.
    #[serde(skip)]
    pub values: BTreeMap<u64, f64>,
}

/// A comparison of every method of one (task, setting) in a results folder.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub task: String,
    pub setting: String,
    pub metric: Metric,
    /// The step compared at (`None`: each run's last step).
    pub step: Option<u64>,
    pub skill: Option<usize>,
    pub threshold: Option<f64>,
    pub baseline: Option<String>,
    pub methods: Vec<MethodSummary>,
    /// Runs left out because they have no evaluation at the requested step.
    pub missing_step: Vec<String>,
}

/// A run of one method: its seed, run id and rows.
type SeedRun<'a> = (u64, String, Vec<&'a MetricsRow>);

/// One run's curve of the metric (mean over skills, or one skill) against the step.
pub fn run_curve(rows: &[&MetricsRow], metric: Metric, skill: Option<usize>) -> Vec<(u64, f64)> {
    let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| skill.is_none_or(|s| r.skill == s)) {
        by_step.entry(r.step).or_default().push(metric.of(r));
    }
    by_step.into_iter().map(|(s, v)| (s, mean(&v))).collect()
}

/// Compares every method in `rows`, one [`Comparison`] per (task, setting). Fails (bad input) only
/// where nothing can be computed: a named baseline that no group has, a skill no run has, a step
/// no run has.
pub fn compare(rows: &[MetricsRow], options: &CompareOptions) -> Result<Vec<Comparison>> {
    check_options(rows, options)?;
    // (task, setting) -> method label -> [(seed, run curve)]
    let mut groups: BTreeMap<(String, String), BTreeMap<String, Vec<SeedRun>>> = BTreeMap::new();
    for (run_id, run_rows) in group_runs(rows) {
        let first = run_rows[0];
        groups
            .entry((first.task.clone(), first.setting.clone()))
            .or_default()
            .entry(first.method_label())
            .or_default()
            .push((first.seed, run_id.to_string(), run_rows));
    }
    let mut comparisons = Vec::new();
    let mut baseline_found = options.baseline.is_none();
    for ((task, setting), methods) in groups {
        let baseline = resolve_baseline(options.baseline.as_deref(), methods.keys());
        baseline_found |= baseline.is_some();
        let mut missing_step = Vec::new();
        let mut summaries = Vec::new();
        for (label, runs) in &methods {
            summaries.push(summarize(label, runs, options, &mut missing_step));
        }
        if let Some(base) = &baseline {
            test_against(&mut summaries, base, options.metric);
            // The baseline first, then the others by label.
            summaries.sort_by_key(|s| s.method != *base);
        }
        comparisons.push(Comparison {
            task,
            setting,
            metric: options.metric,
            step: options.step,
            skill: options.skill,
            threshold: options.threshold,
            baseline,
            methods: summaries,
            missing_step,
        });
    }
    if !baseline_found {
        let all: BTreeSet<String> = rows.iter().map(|r| r.method_label()).collect();
        return Err(Error::flag(
            "--baseline",
            format!(
                "method '{}' is not in the results (methods: {})",
                options.baseline.as_deref().unwrap_or_default(),
                all.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(comparisons)
}

/// One method's summary over its seeds' runs (their values at the step compared, the curves'
/// areas, the steps to the threshold); the runs with no evaluation at that step go to `missing`.
fn summarize(
    label: &str,
    runs: &[SeedRun],
    options: &CompareOptions,
    missing: &mut Vec<String>,
) -> MethodSummary {
    let mut values = BTreeMap::new();
    let mut aucs = Vec::new();
    let mut steps = Vec::new();
    for (seed, run_id, run_rows) in runs {
        let curve = run_curve(run_rows, options.metric, options.skill);
        let at = match options.step {
            Some(s) => curve.iter().find(|(step, _)| *step == s).map(|p| p.1),
            None => curve.last().map(|p| p.1),
        };
        match at {
            Some(v) => {
                values.insert(*seed, v);
            }
            None => missing.push(run_id.clone()),
        }
        aucs.push(auc(&curve));
        if let Some(t) = options.threshold {
            if let Some(s) = steps_to_threshold(&curve, t, options.metric) {
                steps.push(s as f64);
            }
        }
    }
    let xs: Vec<f64> = values.values().copied().collect();
    let (ci_low, ci_high) = t_interval(&xs, 0.95);
    let (iqm_low, iqm_high) = iqm_interval(&xs, 0.95, BOOTSTRAP_REPS, BOOTSTRAP_SEED);
    let (auc_low, auc_high) = t_interval(&aucs, 0.95);
    let (steps_low, steps_high) = t_interval(&steps, 0.95);
    let with_threshold = |v: f64| options.threshold.map(|_| v).filter(|v| !v.is_nan());
    MethodSummary {
        method: label.to_string(),
        n: xs.len(),
        mean: mean(&xs),
        sd: sd(&xs),
        ci_low,
        ci_high,
        welch_t: None,
        welch_p: None,
        paired_p: None,
        holm_p: None,
        p_improve: None,
        iqm: if xs.is_empty() { f64::NAN } else { iqm(&xs) },
        iqm_low,
        iqm_high,
        auc: mean(&aucs),
        auc_low,
        auc_high,
        reached: options.threshold.map(|_| steps.len()),
        steps_mean: with_threshold(mean(&steps)),
        steps_low: with_threshold(steps_low),
        steps_high: with_threshold(steps_high),
        values,
    }
}

/// `--skill` and `--step` must name a skill and a step the results hold.
fn check_options(rows: &[MetricsRow], options: &CompareOptions) -> Result<()> {
    if let Some(s) = options.skill {
        if !rows.iter().any(|r| r.skill == s) {
            let k = rows.iter().map(|r| r.skill).max().unwrap_or(0);
            return Err(Error::flag(
                "--skill",
                format!("skill {s} is not in the results (skills 1..={k})"),
            ));
        }
    }
    if let Some(step) = options.step {
        if !rows.iter().any(|r| r.step == step) {
            let steps: BTreeSet<u64> = rows.iter().map(|r| r.step).collect();
            let last = steps.iter().next_back().copied().unwrap_or(0);
            return Err(Error::flag(
                "--step",
                format!("no run was evaluated at step {step} (evaluations at {} steps, the last {last})", steps.len()),
            ));
        }
    }
    Ok(())
}

/// The rows of the methods `names` names, each a label (`method[params]`) or a method name that
/// one label has (as for the baseline); all rows when `names` is empty. A name that matches no
/// label, or several, is an error naming `--method` and the labels there are.
pub fn select_methods(rows: Vec<MetricsRow>, names: &[String]) -> Result<Vec<MetricsRow>> {
    if names.is_empty() {
        return Ok(rows);
    }
    let labels: BTreeSet<String> = rows.iter().map(|r| r.method_label()).collect();
    let mut chosen = BTreeSet::new();
    for name in names {
        let label = resolve_baseline(Some(name), labels.iter()).ok_or_else(|| {
            Error::flag(
                "--method",
                format!(
                    "'{name}' names no one method of the results (methods: {})",
                    labels.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        chosen.insert(label);
    }
    Ok(rows
        .into_iter()
        .filter(|r| chosen.contains(&r.method_label()))
        .collect())
}

/// The label of the one method of `rows` that `name` names (a label, or a method name that one
/// label has), if there is one.
pub fn find_method(rows: &[MetricsRow], name: &str) -> Option<String> {
    let labels: BTreeSet<String> = rows.iter().map(|r| r.method_label()).collect();
    resolve_baseline(Some(name), labels.iter())
}

/// The label of the baseline among `labels`: the exact label, else the one label whose method name
/// matches; with no name, `stratified` if present.
pub(crate) fn resolve_baseline<'a>(
    name: Option<&str>,
    labels: impl Iterator<Item = &'a String> + Clone,
) -> Option<String> {
    let name = name.unwrap_or(DEFAULT_BASELINE);
    if let Some(l) = labels.clone().find(|l| *l == name) {
        return Some(l.clone());
    }
    let prefix = format!("{name}[");
    let matching: Vec<&String> = labels.filter(|l| l.starts_with(&prefix)).collect();
    (matching.len() == 1).then(|| matching[0].clone())
}

/// Fills the test columns of every non-baseline row, then Holm-adjusts the Welch p-values over
/// those rows.
fn test_against(summaries: &mut [MethodSummary], baseline: &str, metric: Metric) {
    let Some(base) = summaries.iter().find(|s| s.method == baseline).cloned() else {
        return;
    };
    let base_xs: Vec<f64> = base.values.values().copied().collect();
    let finite = |v: f64| (!v.is_nan()).then_some(v);
    let mut tested = Vec::new();
    for (i, s) in summaries.iter_mut().enumerate() {
        if s.method == baseline {
            continue;
        }
        let xs: Vec<f64> = s.values.values().copied().collect();
        let w = welch(&xs, &base_xs);
        s.welch_t = finite(w.t);
        s.welch_p = finite(w.p);
        let common: Vec<(f64, f64)> = s
            .values
            .iter()
            .filter_map(|(seed, x)| base.values.get(seed).map(|y| (*x, *y)))
            .collect();
        let (px, py): (Vec<f64>, Vec<f64>) = common.into_iter().unzip();
        s.paired_p = finite(paired(&px, &py).p);
        s.p_improve = finite(prob_improvement(&xs, &base_xs, metric.higher_is_better()));
        tested.push((i, w.p));
    }
    let adjusted = holm(&tested.iter().map(|t| t.1).collect::<Vec<_>>());
    for ((i, _), p) in tested.into_iter().zip(adjusted) {
        summaries[i].holm_p = finite(p);
    }
}
