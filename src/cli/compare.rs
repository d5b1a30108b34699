//! `skillit compare`: compare methods across seeds: mean, 95% interval, tests against a baseline,
//! IQM, sample efficiency.

use super::*;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// A results folder (holding metrics.csv) or a metrics.csv file.
    pub dir: PathBuf,
    /// The metric to compare.
    #[arg(long, value_enum, default_value = "accuracy")]
    pub metric: Metric,
    /// The method to test the others against (a method name or a `method[params]` label).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Compare only these methods (repeatable; a name or a label, as for --baseline), so
    /// that Holm's correction runs over them alone: e.g. each η of an ablation on its own.
    #[arg(long = "method", value_name = "METHOD")]
    pub methods: Vec<String>,
    /// The evaluation step to compare at (default: each run's last step).
    #[arg(long)]
    pub step: Option<u64>,
    /// One skill (1-based) instead of the mean over skills.
    #[arg(long)]
    pub skill: Option<usize>,
    /// The level of the metric whose steps-to-reach to report.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: CompareFormat,
}

impl CompareArgs {
    pub fn run(self) -> skillit::Result<()> {
        let CompareArgs {
            dir,
            metric,
            baseline,
            methods,
            step,
            skill,
            threshold,
            format,
        } = self;
        if let Some(t) = threshold.filter(|t| !t.is_finite()) {
            return Err(skillit::Error::flag(
                "--threshold",
                format!("{t} is not a finite number"),
            ));
        }
        let rows = skillit::stats::select_methods(read_metrics(&dir)?, &methods)?;
        // The baseline of the sweep file kept in DIR, where the rows (after --method) have it.
        let baseline = match baseline {
            Some(b) => Some(b),
            None => skillit::sweep::recorded_baseline(&dir, &rows)?,
        };
        let options = CompareOptions {
            metric,
            baseline,
            step,
            skill,
            threshold,
        };
        let comparisons = compare(&rows, &options)?;
        emit(&render_comparisons(&comparisons, format)?)?;
        Ok(())
    }
}
