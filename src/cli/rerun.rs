//! `skillit rerun`: train a recorded run again from its manifest.json and check that every number
//! of its metrics.csv comes out the same.

use super::*;

#[derive(clap::Args)]
pub struct RerunArgs {
    /// The run folder holding manifest.json and metrics.csv.
    pub run: PathBuf,
    /// Where the rerun's files go.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The backend (default: flex).
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceKind,
}

impl RerunArgs {
    pub fn run(self) -> skillit::Result<()> {
        let RerunArgs { run, out, device } = self;
        let out = out.unwrap_or_else(|| run.join("rerun"));
        let recorded = skillit::train::read_manifest(&run)?;
        let selected = skillit::device::select_for_process(device)?;
        eprintln!(
            "rerunning {} (recorded on {}, git {}) on {} into {}",
            recorded.run_id,
            recorded.backend,
            recorded.git_revision,
            selected.backend,
            out.display()
        );
        let manifest = train(
            &recorded.config,
            &selected,
            &out,
            Some(&recorded.run_id),
            &mut |_| Flow::Continue,
        )?;
        let before = read_metrics(&run)?;
        let after = read_metrics(&out)?;
        let check = skillit::results::diff_metrics(&before, &after);
        emit(&format!("{check}\n"))?;
        if !check.identical() && recorded.packed_steps > 0 {
            // The rerun trains alone: a packed run's numbers are not expected to the bit.
            eprintln!(
                "the recorded run took {} of its steps in a pack with other runs; an unpacked \
                 rerun differs from it by float rounding, which training amplifies \
                 (docs/performance.md, \"Packed runs\")",
                recorded.packed_steps
            );
            return Ok(());
        }
        if !check.identical() && manifest.backend == recorded.backend {
            return Err(skillit::Error::Check {
                origin: out.display().to_string(),
                message: format!(
                    "the rerun on the same backend ({}) does not reproduce the recorded metrics",
                    recorded.backend
                ),
            });
        }
        Ok(())
    }
}
