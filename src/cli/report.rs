//! `skillit report`: write a Markdown report of a results folder with SVG figures.

use super::*;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A results folder (holding metrics.csv).
    pub dir: PathBuf,
    /// The report file (default: DIR/report.md).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ReportArgs {
    pub fn run(self) -> skillit::Result<()> {
        let ReportArgs { dir, out } = self;
        let out = out.unwrap_or_else(|| dir.join("report.md"));
        let stem = out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into());
        let report = build_report(&dir, &format!("{stem}_figures"))?;
        write_report(&report, &out)?;
        eprintln!(
            "wrote {} and {} figures in {}_figures/",
            out.display(),
            report.figures.len(),
            stem
        );
        Ok(())
    }
}
