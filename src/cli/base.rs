//! `skillit base`: pretrain a base (the analogue of the paper's pretrained LM) that runs start from
//! with `--init bases/NAME`, or show one.

use super::*;

#[derive(clap::Subcommand)]
pub enum BaseCommand {
    /// Pretrain a base from a recipe (TOML: model, seed, [[stages]] on corpus tasks, [[serves]])
    /// and write OUT/model.bpk and OUT/base.json (the recipe, each stage's record, the weights'
    /// SHA-256, the base's step-0 accuracy on the tasks it serves). Each stage trains in
    /// OUT/stages/N-TASK/ and resumes; a finished stage is kept, so the same command continues a
    /// killed build. A stage that ends above its `converged_loss` stops the build. See
    /// src/pretrain.rs for the format.
    Build {
        /// The recipe file.
        recipe: PathBuf,
        /// The base folder to write (e.g. bases/NAME).
        #[arg(long)]
        out: PathBuf,
        /// The backend, as for `train`.
        #[arg(long, value_enum, default_value = "flex")]
        device: DeviceKind,
    },
    /// Check a base folder's weights against its manifest and print its record.
    Show {
        /// The base folder.
        dir: PathBuf,
    },
}

impl BaseCommand {
    pub fn run(self) -> skillit::Result<()> {
        match self {
            BaseCommand::Build {
                recipe,
                out,
                device,
            } => {
                let recipe = skillit::pretrain::Recipe::read(&recipe)?;
                let selected = skillit::device::select_for_process(device)?;
                let total: u64 = recipe.stages.iter().map(|(c, _)| c.training.steps).sum();
                let bar = steps_bar(total);
                let mut before = 0;
                let mut last_loss = f64::NAN;
                let manifest =
                    skillit::pretrain::build(&recipe, &out, &selected, &mut |event| match event {
                        skillit::pretrain::BuildEvent::Stage { stage, progress } => {
                            match progress {
                                Progress::Step { step, loss } => {
                                    let was = bar.position();
                                    bar.set_position(before + step);
                                    bar.set_message(format!(
                                        "stage {stage}: loss {loss:.4}, val loss {last_loss:.4}"
                                    ));
                                    say_progress(&bar, was, "base");
                                }
                                Progress::Eval { loss, .. } => last_loss = loss,
                                Progress::RoundEnd { .. } => {}
                            }
                        }
                        skillit::pretrain::BuildEvent::StageDone { stage, reused } => {
                            before += recipe.stages[stage - 1].0.training.steps;
                            bar.set_position(before);
                            if reused {
                                say(&bar, &format!("stage {stage}: finished before, kept"));
                            }
                        }
                    })?;
                bar.finish();
                emit(&skillit::report::base_table(&manifest))?;
                eprintln!("wrote {}", out.display());
                Ok(())
            }
            BaseCommand::Show { dir } => {
                let base = skillit::model::base::Base::open(&dir)?;
                emit(&skillit::report::base_table(&base.manifest))
            }
        }
    }
}
