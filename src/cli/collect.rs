//! `skillit collect`: rebuild DIR/metrics.csv and DIR/runs.csv from a sweep's run folders.

use super::*;

#[derive(clap::Args)]
pub struct CollectArgs {
    /// A sweep's results folder (holding sweep.toml).
    pub dir: PathBuf,
}

impl CollectArgs {
    pub fn run(self) -> skillit::Result<()> {
        let CollectArgs { dir } = self;
        let plan = skillit::sweep::plan(&dir.join("sweep.toml"), &dir)?;
        let (n_runs, n_rows) = skillit::sweep::collect(&dir, &plan)?;
        eprintln!(
            "{n_runs} runs, {n_rows} metrics rows in {}",
            dir.join("metrics.csv").display()
        );
        Ok(())
    }
}
