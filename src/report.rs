//! Tables and plots from results: the output formats of `skillit compare` and the Markdown report
//! with SVG figures of `skillit report`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::results::{group_runs, read_metrics, write_atomic, MetricsRow};
use crate::stats::{self, compare, mean, t_interval, CompareOptions, Comparison, Metric};
use crate::{Error, Result};

/// How `skillit compare` prints a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for the terminal.
    Table,
    /// One row per method, with the context columns first.
    Csv,
    /// A Markdown table per (task, setting).
    Markdown,
    /// The comparisons as a JSON array.
    Json,
}

/// The CSV columns of a comparison: context, then the per-method statistics.
pub const COMPARE_COLUMNS: [&str; 29] = [
    "task",
    "setting",
    "metric",
    "step",
    "skill",
    "baseline",
    "method",
    "n",
    "mean",
    "sd",
    "ci_low",
    "ci_high",
    "welch_t",
    "welch_p",
    "paired_p",
    "holm_p",
    "p_improve",
    "iqm",
    "iqm_low",
    "iqm_high",
    "auc",
    "auc_low",
    "auc_high",
    "threshold",
    "reached",
    "steps_mean",
    "steps_low",
    "steps_high",
    "seeds",
];

fn csv_num(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        v.to_string()
    }
}

fn csv_opt(v: Option<f64>) -> String {
    v.map(csv_num).unwrap_or_default()
}

/// A number for people: 4 decimals, or 3 significant digits in scientific notation below 1e-3.
fn show(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        format!("{v:.4}")
    }
}

fn show_opt(v: Option<f64>) -> String {
    v.map(show).unwrap_or_else(|| "–".into())
}

fn interval(lo: f64, hi: f64) -> String {
    if lo.is_nan() {
        "–".into()
    } else {
        format!("[{}, {}]", show(lo), show(hi))
    }
}

/// Renders comparisons in `format`.
pub fn render_comparisons(comparisons: &[Comparison], format: Format) -> Result<String> {
    Ok(match format {
        Format::Json => {
            serde_json::to_string_pretty(comparisons).map_err(|e| Error::Invalid {
                origin: "json".into(),
                field: "comparison".into(),
                message: e.to_string(),
            })? + "\n"
        }
        Format::Csv => comparisons_csv(comparisons),
        Format::Markdown => comparisons
            .iter()
            .map(|c| format!("### {}\n\n{}", heading(c), markdown_table(c)))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Table => comparisons
            .iter()
            .map(|c| format!("{}\n{}", heading(c), text_table(c)))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn comparisons_csv(comparisons: &[Comparison]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = "writing CSV to memory cannot fail";
    w.write_record(COMPARE_COLUMNS).expect(io);
    for c in comparisons {
        for m in &c.methods {
            let seeds: Vec<String> = m.values.keys().map(u64::to_string).collect();
            w.write_record([
                c.task.clone(),
                c.setting.clone(),
                c.metric.name().into(),
                c.step
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "last".into()),
                c.skill
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "mean".into()),
                c.baseline.clone().unwrap_or_default(),
                m.method.clone(),
                m.n.to_string(),
                csv_num(m.mean),
                csv_num(m.sd),
                csv_num(m.ci_low),
                csv_num(m.ci_high),
                csv_opt(m.welch_t),
                csv_opt(m.welch_p),
                csv_opt(m.paired_p),
                csv_opt(m.holm_p),
                csv_opt(m.p_improve),
                csv_num(m.iqm),
                csv_num(m.iqm_low),
                csv_num(m.iqm_high),
                csv_num(m.auc),
                csv_num(m.auc_low),
                csv_num(m.auc_high),
                csv_opt(c.threshold),
                m.reached.map(|r| r.to_string()).unwrap_or_default(),
                csv_opt(m.steps_mean),
                csv_opt(m.steps_low),
                csv_opt(m.steps_high),
                seeds.join(" "),
            ])
            .expect(io);
        }
    }
    String::from_utf8(w.into_inner().expect(io)).expect("CSV of UTF-8 fields is UTF-8")
}

/// What a comparison shows, in words.
pub fn heading(c: &Comparison) -> String {
    let at = c
        .step
        .map(|s| format!("step {s}"))
        .unwrap_or_else(|| "the last step".into());
    let over = c
        .skill
        .map(|s| format!("skill s{s}"))
        .unwrap_or_else(|| "mean over skills".into());
    let base = c
        .baseline
        .as_deref()
        .map(|b| format!("tests against {b}"))
        .unwrap_or_else(|| "no baseline, no tests".into());
    format!(
        "{} / {}: validation {} at {at}, {over}; {base}",
        c.task,
        c.setting,
        c.metric.name()
    )
}

fn table_rows(c: &Comparison) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = [
        "method",
        "n",
        "mean",
        "sd",
        "95% CI",
        "Welch p",
        "paired p",
        "Holm p",
        "P(improve)",
        "IQM",
        "IQM 95% CI",
        "AUC",
    ]
    .map(String::from)
    .to_vec();
    if let Some(t) = c.threshold {
        header.push(format!("steps to {t} (reached)"));
    }
    let rows = c
        .methods
        .iter()
        .map(|m| {
            let mut row = vec![
                m.method.clone(),
                m.n.to_string(),
                show(m.mean),
                show(m.sd),
                interval(m.ci_low, m.ci_high),
                show_opt(m.welch_p),
                show_opt(m.paired_p),
                show_opt(m.holm_p),
                show_opt(m.p_improve),
                show(m.iqm),
                interval(m.iqm_low, m.iqm_high),
                show(m.auc),
            ];
            if c.threshold.is_some() {
                row.push(steps_cell(
                    m.steps_mean,
                    m.steps_low,
                    m.steps_high,
                    m.reached,
                    m.values.len(),
                ));
            }
            row
        })
        .collect();
    (header, rows)
}

fn steps_cell(
    mean: Option<f64>,
    lo: Option<f64>,
    hi: Option<f64>,
    reached: Option<usize>,
    n: usize,
) -> String {
    let reached = reached.unwrap_or(0);
    match mean {
        None => format!("not reached (0/{n})"),
        Some(m) => {
            let ci = match (lo, hi) {
                (Some(l), Some(h)) => format!(" [{l:.0}, {h:.0}]"),
                _ => String::new(),
            };
            format!("{m:.0}{ci} ({reached}/{n})")
        }
    }
}

/// Steps to the threshold per method (mean over skills' curve): "mean [95% CI] (reached/n)".
fn steps_table(c: &Comparison) -> String {
    let mut out = "| method | steps (reached/n) | AUC [95% CI] |\n|---|---|---|\n".to_string();
    for m in &c.methods {
        out += &format!(
            "| {} | {} | {} {} |\n",
            m.method,
            steps_cell(
                m.steps_mean,
                m.steps_low,
                m.steps_high,
                m.reached,
                m.values.len()
            ),
            show(m.auc),
            interval(m.auc_low, m.auc_high)
        );
    }
    out
}

fn text_table(c: &Comparison) -> String {
    let (header, rows) = table_rows(c);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&header) + "\n";
    for r in &rows {
        out += &(line(r) + "\n");
    }
    out
}

fn markdown_table(c: &Comparison) -> String {
    let (header, rows) = table_rows(c);
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        out += &format!("| {} |\n", r.join(" | "));
    }
    out
}

/// A Markdown report of a results folder, written to `out` with its figures beside it in
/// `<out stem>_figures/`.
pub struct Report {
    pub markdown: String,
    /// (file name, SVG) of each figure, relative to the figures folder.
    pub figures: Vec<(String, String)>,
    pub figures_dir: String,
}

/// The accuracy a skill counts as learned at, for the steps-to-threshold table.
pub const ACCURACY_THRESHOLD: f64 = 0.95;
/// The loss the paper's ordered-skills experiments count steps to (docs/paper.md §10).
pub const LOSS_THRESHOLD: f64 = 0.01;

/// Builds the report of the results in `dir` (its `metrics.csv`), testing every method against the
/// `baseline` of the sweep file kept there (`DIR/sweep.toml`), else stratified.
pub fn build_report(dir: &Path, figures_dir: &str) -> Result<Report> {
    let rows = read_metrics(dir)?;
    let mut md = String::new();
    let runs = group_runs(&rows);
    let methods: BTreeSet<String> = rows.iter().map(|r| r.method_label()).collect();
    let seeds: BTreeSet<u64> = rows.iter().map(|r| r.seed).collect();
    let _ = writeln!(md, "# skillit report: {}\n", dir.display());
    let _ = writeln!(
        md,
        "Made by skillit {} from `metrics.csv`: {} runs, {} methods ({}), seeds {}. Accuracy is greedy \
         accuracy on the fixed validation sets (fraction), loss the answer-token cross-entropy (nats). \
         Intervals are 95%: t-intervals over seeds for means, percentile bootstrap ({} resamples, seed \
         {:#x}) for the IQM. Tests compare each method with the baseline across seeds: Welch's t-test, \
         the paired t-test (paired by seed), Holm's correction of the Welch p-values, and the probability \
         of improvement P(method beats baseline). AUC is the area under the metric-vs-step curve of the \
         whole run divided by its length (the mean level over training). Steps to a threshold count \
         only the seeds that reach it; the others are counted as not reached.\n",
        env!("CARGO_PKG_VERSION"),
        runs.len(),
        methods.len(),
        methods.iter().cloned().collect::<Vec<_>>().join(", "),
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        stats::BOOTSTRAP_REPS,
        stats::BOOTSTRAP_SEED,
    );
    let baseline = crate::sweep::recorded_baseline(dir, &rows)?;
    let mut figures = Vec::new();
    let groups: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.task.clone(), r.setting.clone()))
        .collect();
    for (task, setting) in groups {
        let group_rows: Vec<MetricsRow> = rows
            .iter()
            .filter(|r| r.task == task && r.setting == setting)
            .cloned()
            .collect();
        md += &group_section(
            &task,
            &setting,
            &group_rows,
            &baseline,
            figures_dir,
            &mut figures,
        )?;
    }
    md += &runs_section(dir)?;
    Ok(Report {
        markdown: md,
        figures,
        figures_dir: figures_dir.to_string(),
    })
}

/// One (task, setting)'s part of the report: its tables (accuracy at the end and halfway, loss,
/// steps to the thresholds) and its figures, added to `figures`.
fn group_section(
    task: &str,
    setting: &str,
    group_rows: &[MetricsRow],
    baseline: &Option<String>,
    figures_dir: &str,
    figures: &mut Vec<(String, String)>,
) -> Result<String> {
    let mut md = String::new();
    let _ = writeln!(md, "## {task} / {setting}\n");
    let last = common_last_step(group_rows);
    let half = halfway_step(group_rows, last);
    let base = CompareOptions {
        metric: Metric::Accuracy,
        baseline: baseline.clone(),
        step: Some(last),
        skill: None,
        threshold: None,
    };
    let sections = [
        (Metric::Accuracy, Some(last), None),
        (Metric::Accuracy, Some(half), None),
        (Metric::Loss, Some(last), None),
        (Metric::Accuracy, None, Some(ACCURACY_THRESHOLD)),
        (Metric::Loss, None, Some(LOSS_THRESHOLD)),
    ];
    for (metric, step, threshold) in sections {
        let options = CompareOptions {
            metric,
            step,
            threshold,
            ..base.clone()
        };
        for c in compare(group_rows, &options)? {
            if threshold.is_some() {
                let _ = writeln!(
                    md,
                    "### Steps to {} {} {} (mean over skills; per skill below)\n",
                    metric.name(),
                    if metric.higher_is_better() {
                        "≥"
                    } else {
                        "≤"
                    },
                    threshold.unwrap_or_default()
                );
                md += &steps_table(&c);
                md += "\n";
                md += &per_skill_steps(group_rows, metric, threshold.unwrap_or_default());
            } else {
                let _ = writeln!(md, "### {}\n", heading(&c));
                md += &markdown_table(&c);
            }
            md += "\n";
        }
    }
    let prefix = format!("{task}_{setting}");
    let group_figures = [
        (
            format!("{prefix}_accuracy.svg"),
            curves_svg(group_rows, Metric::Accuracy)?,
        ),
        (
            format!("{prefix}_loss.svg"),
            curves_svg(group_rows, Metric::Loss)?,
        ),
        (format!("{prefix}_weights.svg"), weights_svg(group_rows)?),
        (
            format!("{prefix}_final_accuracy.svg"),
            final_svg(group_rows, last)?,
        ),
    ];
    let _ = writeln!(md, "### Figures\n");
    for (name, svg) in group_figures {
        let _ = writeln!(md, "![{name}]({figures_dir}/{name})\n");
        figures.push((name, svg));
    }
    Ok(md)
}

/// Writes `report` to `out` and its figures to `out`'s folder / `report.figures_dir`, atomically.
pub fn write_report(report: &Report, out: &Path) -> Result<()> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fig_dir = parent.join(&report.figures_dir);
    std::fs::create_dir_all(&fig_dir).map_err(|source| Error::Io {
        path: fig_dir.clone(),
        source,
    })?;
    for (name, svg) in &report.figures {
        write_atomic(&fig_dir.join(name), svg.as_bytes())?;
    }
    write_atomic(out, report.markdown.as_bytes())
}

/// One run's row of `runs.csv`, as the report reads it (columns a folder from before a column
/// existed lacks read as empty).
struct RunCost {
    status: String,
    wall_time_s: Option<f64>,
    ms_per_step: Option<f64>,
    /// (backend, adapter, machine), each "not recorded" where empty.
    device: (String, String, String),
    revision: String,
}

/// The report's closing section, from a sweep folder's `runs.csv` (empty where there is none, as in
/// a `skillit train` folder): the runs by status, their summed and median wall time, and per
/// backend, adapter and machine the runs and their median ms/step; the revisions that ran them.
fn runs_section(dir: &Path) -> Result<String> {
    let path = dir.join("runs.csv");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(String::new());
    };
    let origin = path.display().to_string();
    let bad = |field: String, message: String| Error::Invalid {
        origin: origin.clone(),
        field,
        message,
    };
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| bad("header".into(), e.to_string()))?
        .clone();
    // The columns' positions, found once (`None` for a column the file predates).
    let columns: BTreeMap<&str, usize> = headers.iter().enumerate().map(|(i, h)| (h, i)).collect();
    let mut runs = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("line {}", i + 2), e.to_string()))?;
        let get = |name: &str| {
            columns
                .get(name)
                .and_then(|&c| record.get(c))
                .unwrap_or("")
                .to_string()
        };
        let recorded = |v: String| {
            if v.is_empty() {
                "not recorded".to_string()
            } else {
                v
            }
        };
        runs.push(RunCost {
            status: get("status"),
            wall_time_s: get("wall_time_s").parse().ok(),
            ms_per_step: get("ms_per_step").parse().ok().filter(|v: &f64| *v > 0.0),
            device: (
                recorded(get("backend")),
                recorded(get("adapter")),
                recorded(get("machine")),
            ),
            revision: get("git_revision"),
        });
    }
    if runs.is_empty() {
        return Ok(String::new());
    }
    let mut md = String::from("## Runs: time and machine\n\n");
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &runs {
        *statuses.entry(r.status.as_str()).or_default() += 1;
    }
    let walls: Vec<f64> = runs
        .iter()
        .filter(|r| r.status == "finished")
        .filter_map(|r| r.wall_time_s)
        .collect();
    let total: f64 = runs.iter().filter_map(|r| r.wall_time_s).sum();
    let _ = writeln!(
        md,
        "From `runs.csv`: {} runs ({}); {:.1} hours of run time in all (each run's wall time, summed: \
         runs side by side overlap in time), {:.0} s per finished run (median).\n",
        runs.len(),
        statuses
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        total / 3600.0,
        stats::median(&walls),
    );
    let mut devices: BTreeMap<&(String, String, String), Vec<Option<f64>>> = BTreeMap::new();
    // The runs that ran (a pending run has no manifest, so nothing to say of its device).
    for r in runs.iter().filter(|r| r.wall_time_s.is_some()) {
        devices.entry(&r.device).or_default().push(r.ms_per_step);
    }
    md += "| backend | adapter | machine | runs | ms per step (median) |\n|---|---|---|---|---|\n";
    for ((backend, adapter, machine), ms) in devices {
        let n = ms.len();
        let ms: Vec<f64> = ms.into_iter().flatten().collect();
        let median = stats::median(&ms);
        let _ = writeln!(
            md,
            "| {backend} | {adapter} | {machine} | {n} | {} |",
            if median.is_nan() {
                "–".to_string()
            } else {
                format!("{median:.0}")
            }
        );
    }
    let mut revisions: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs.iter().filter(|r| !r.revision.is_empty()) {
        let short = match r.revision.split_once('-') {
            Some((hash, rest)) => format!("{}-{rest}", &hash[..hash.len().min(7)]),
            None => r.revision[..r.revision.len().min(7)].to_string(),
        };
        *revisions.entry(short).or_default() += 1;
    }
    if !revisions.is_empty() {
        let _ = writeln!(
            md,
            "\nskillit revisions: {}.",
            revisions
                .iter()
                .map(|(rev, n)| format!("`{rev}` ({n} run{})", if *n == 1 { "" } else { "s" }))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(md)
}

/// The last step every run reached (the smallest of the runs' last steps).
fn common_last_step(rows: &[MetricsRow]) -> u64 {
    group_runs(rows)
        .values()
        .map(|r| r.last().map(|x| x.step).unwrap_or(0))
        .min()
        .unwrap_or(0)
}

/// The evaluation step closest to half of `last` (the paper quotes step 3000 of 6000).
fn halfway_step(rows: &[MetricsRow], last: u64) -> u64 {
    let steps: BTreeSet<u64> = rows.iter().map(|r| r.step).collect();
    steps
        .into_iter()
        .min_by_key(|s| (2 * *s).abs_diff(last))
        .unwrap_or(0)
}

/// Steps to `threshold` per method and skill: "mean (reached/n)".
fn per_skill_steps(rows: &[MetricsRow], metric: Metric, threshold: f64) -> String {
    let skills: BTreeSet<usize> = rows.iter().map(|r| r.skill).collect();
    let mut by_method: BTreeMap<String, Vec<Vec<&MetricsRow>>> = BTreeMap::new();
    for run in group_runs(rows).into_values() {
        by_method
            .entry(run[0].method_label())
            .or_default()
            .push(run);
    }
    let mut out = format!(
        "| method | {} |\n|---|{}\n",
        skills
            .iter()
            .map(|s| format!("s{s}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(skills.len())
    );
    for (method, runs) in by_method {
        let cells: Vec<String> = skills
            .iter()
            .map(|&s| {
                let steps: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| {
                        stats::steps_to_threshold(
                            &stats::run_curve(r, metric, Some(s)),
                            threshold,
                            metric,
                        )
                    })
                    .map(|x| x as f64)
                    .collect();
                let (lo, hi) = t_interval(&steps, 0.95);
                let finite = |v: f64| (!v.is_nan()).then_some(v);
                steps_cell(
                    finite(mean(&steps)),
                    finite(lo),
                    finite(hi),
                    Some(steps.len()),
                    runs.len(),
                )
            })
            .collect();
        out += &format!("| {method} | {} |\n", cells.join(" | "));
    }
    out
}

/// Ten distinguishable colours (matplotlib's tab10), one per method in label order.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid {
        origin: "report".into(),
        field: "figure".into(),
        message: format!("drawing failed: {e}"),
    }
}

/// Mean over seeds and 95% t-band of a per-run curve, per method: method -> [(step, mean, lo, hi)].
type Band = Vec<(u64, f64, f64, f64)>;

fn bands(
    rows: &[MetricsRow],
    value: impl Fn(&MetricsRow) -> f64,
    skill: usize,
) -> BTreeMap<String, Band> {
    let mut per: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.skill == skill) {
        per.entry(r.method_label())
            .or_default()
            .entry(r.step)
            .or_default()
            .push(value(r));
    }
    per.into_iter()
        .map(|(m, steps)| {
            let band = steps
                .into_iter()
                .map(|(s, xs)| {
                    let (lo, hi) = t_interval(&xs, 0.95);
                    let m = mean(&xs);
                    (
                        s,
                        m,
                        if lo.is_nan() { m } else { lo },
                        if hi.is_nan() { m } else { hi },
                    )
                })
                .collect();
            (m, band)
        })
        .collect()
}

type StepChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A panel with steps on x (0..max_step) and `y_desc` on y (0..y_max), its mesh drawn.
fn step_chart<'a, 'b>(
    area: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    max_step: f64,
    y_max: f64,
    y_desc: &str,
) -> Result<StepChart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0f64..max_step, 0f64..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("step")
        .y_desc(y_desc)
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

/// The legend of the series labelled so far.
fn draw_legend<'a, 'b: 'a>(chart: &mut StepChart<'a, 'b>) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// What the step figures range over: the skills, the method labels (sorted, which fixes their
/// colours) and the last step.
fn axes(rows: &[MetricsRow]) -> (BTreeSet<usize>, Vec<String>, f64) {
    let skills = rows.iter().map(|r| r.skill).collect();
    let methods = rows
        .iter()
        .map(|r| r.method_label())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    (skills, methods, max_step)
}

fn panel_grid(k: usize) -> (usize, usize) {
    let cols = k.min(3);
    (k.div_ceil(cols), cols)
}

/// Per-skill curves of `metric`: one panel per skill, one line (mean over seeds) and 95% band per
/// method, the legend in the first panel.
fn curves_svg(rows: &[MetricsRow], metric: Metric) -> Result<String> {
    let (skills, methods, max_step) = axes(rows);
    let value = |r: &MetricsRow| metric.of(r);
    let y_max = match metric {
        Metric::Accuracy => 1.0,
        Metric::Loss => {
            rows.iter()
                .map(value)
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max)
                .max(1e-6)
                * 1.05
        }
    };
    let (nr, nc) = panel_grid(skills.len());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420 * nc as u32, 300 * nr as u32))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        for (panel, (area, &skill)) in root.split_evenly((nr, nc)).iter().zip(&skills).enumerate() {
            let caption = format!("s{skill} {}", metric.name());
            let mut chart = step_chart(area, &caption, max_step, y_max, metric.name())?;
            let bands = bands(rows, value, skill);
            for (mi, method) in methods.iter().enumerate() {
                let Some(band) = bands.get(method) else {
                    continue;
                };
                let c = color(mi);
                let mut outline: Vec<(f64, f64)> = band.iter().map(|p| (p.0 as f64, p.3)).collect();
                outline.extend(band.iter().rev().map(|p| (p.0 as f64, p.2)));
                chart
                    .draw_series(std::iter::once(Polygon::new(outline, c.mix(0.15).filled())))
                    .map_err(plot_error)?;
                let series = chart
                    .draw_series(LineSeries::new(
                        band.iter().map(|p| (p.0 as f64, p.1)),
                        c.stroke_width(2),
                    ))
                    .map_err(plot_error)?;
                if panel == 0 {
                    series.label(method.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                }
            }
            if panel == 0 {
                draw_legend(&mut chart)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The mixture over skills against the step: one panel per method, one line per skill (mean over
/// seeds).
fn weights_svg(rows: &[MetricsRow]) -> Result<String> {
    let (skills, methods, max_step) = axes(rows);
    let (nr, nc) = panel_grid(methods.len());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420 * nc as u32, 300 * nr as u32))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        for (panel, (area, method)) in root.split_evenly((nr, nc)).iter().zip(&methods).enumerate()
        {
            let method_rows: Vec<MetricsRow> = rows
                .iter()
                .filter(|r| &r.method_label() == method)
                .cloned()
                .collect();
            let caption = format!("{method}: mixture");
            let mut chart = step_chart(area, &caption, max_step, 1.0, "weight")?;
            for (si, &skill) in skills.iter().enumerate() {
                let band = bands(&method_rows, |r| r.weight, skill);
                let Some(b) = band.get(method) else { continue };
                let c = color(si);
                let series = chart
                    .draw_series(LineSeries::new(
                        b.iter().map(|p| (p.0 as f64, p.1)),
                        c.stroke_width(2),
                    ))
                    .map_err(plot_error)?;
                if panel == 0 {
                    series.label(format!("s{skill}")).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                }
            }
            if panel == 0 {
                draw_legend(&mut chart)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Mean accuracy over skills at `step` per method: a point at the mean over seeds (the error bar's
/// marker) and a 95% t-interval bar.
fn final_svg(rows: &[MetricsRow], step: u64) -> Result<String> {
    let options = CompareOptions {
        metric: Metric::Accuracy,
        baseline: None,
        step: Some(step),
        skill: None,
        threshold: None,
    };
    let methods: Vec<stats::MethodSummary> = compare(rows, &options)?
        .into_iter()
        .flat_map(|c| c.methods)
        .collect();
    let n = methods.len();
    // Colours follow the label order, as in the other figures.
    let (_, all_labels, _) = axes(rows);
    let colour_of = |label: &str| color(all_labels.iter().position(|l| l == label).unwrap_or(0));
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, ((160 * n as u32).max(480), 360)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let labels: Vec<String> = methods.iter().map(|m| m.method.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("mean accuracy over skills at step {step} (95% CI)"),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..1f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_labels(n)
            .light_line_style(WHITE)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("accuracy")
            .draw()
            .map_err(plot_error)?;
        for (i, m) in methods.iter().enumerate() {
            let c = colour_of(&m.method);
            let (lo, hi) = if m.ci_low.is_nan() {
                (m.mean, m.mean)
            } else {
                (m.ci_low, m.ci_high)
            };
            chart
                .draw_series(std::iter::once(ErrorBar::new_vertical(
                    i as f64,
                    lo,
                    m.mean,
                    hi,
                    c.filled(),
                    12,
                )))
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The per-skill validation accuracy and loss of a run at its last evaluation (and at 25%, 50% of
/// the budget), as a terminal table.
pub fn skill_table(manifest: &crate::train::Manifest) -> String {
    let evals = &manifest.evaluations;
    let Some(last) = evals.last() else {
        return String::new();
    };
    let at = |frac: f64| {
        let target = (manifest.config.training.steps as f64 * frac) as u64;
        evals.iter().min_by_key(|e| e.step.abs_diff(target))
    };
    let mut out = String::from("skill  acc@25%  acc@50%  acc@end  loss@end\n");
    for s in 0..last.accuracy.len() {
        let cell = |e: Option<&crate::method::Evaluation>| {
            e.map(|e| format!("{:.3}", e.accuracy[s]))
                .unwrap_or_default()
        };
        out += &format!(
            "s{:<5} {:<8} {:<8} {:<8} {:.4}\n",
            s + 1,
            cell(at(0.25)),
            cell(at(0.5)),
            cell(Some(last)),
            last.loss[s]
        );
    }
    out += &format!(
        "mean   {:<8} {:<8} {:<8.3} {:.4}   (step {})\n",
        at(0.25)
            .map(|e| format!("{:.3}", mean(&e.accuracy)))
            .unwrap_or_default(),
        at(0.5)
            .map(|e| format!("{:.3}", mean(&e.accuracy)))
            .unwrap_or_default(),
        mean(&last.accuracy),
        mean(&last.loss),
        last.step
    );
    out
}

/// A base's record as text: its model, each stage's final validation loss and accuracy, and its
/// step-0 accuracy on every task it serves.
pub fn base_table(manifest: &crate::model::base::BaseManifest) -> String {
    let m = &manifest.model;
    let row = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!(
        "base {} ({} vocabulary): d_model {} × {} layers × {} heads, d_ff {}, conv_kernel {}; \
         seed {}; sha256 {}\n",
        manifest.name,
        manifest.vocab,
        m.d_model,
        m.n_layers,
        m.n_heads,
        m.d_ff,
        m.conv_kernel,
        manifest.seed,
        manifest.sha256
    );
    for (i, s) in manifest.stages.iter().enumerate() {
        out += &format!(
            "stage {}: {} with {}, {} steps ({:.0} s, {:.1} ms/step): val loss {} (≤ {}), acc {}\n",
            i + 1,
            s.task,
            s.method,
            s.steps,
            s.wall_time_s,
            s.ms_per_step,
            row(&s.final_loss),
            s.converged_loss,
            row(&s.final_accuracy)
        );
    }
    for z in &manifest.step_zero {
        out += &format!(
            "step 0 on {}: acc {} (loss {})\n",
            z.task,
            row(&z.accuracy),
            row(&z.loss)
        );
    }
    out
}
