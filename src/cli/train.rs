//! `skillit train`: train one model from scratch and evaluate every skill along the way.

use super::*;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// The task (default: the config's, else lego).
    #[arg(long, value_enum)]
    pub task: Option<TaskName>,
    /// Train on your own skill-labelled rows: a JSONL file of `{"skill", "prompt", "answer"[,
    /// "split"]}` objects, the format `skillit generate` writes (README "Your own skills").
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "task")]
    pub data: Option<PathBuf>,
    /// The mixture method (the list comes from the method registry).
    #[arg(long, help = methods_help())]
    pub method: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// The run seed (model initialisation, training examples, shuffling).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Training loss: full (whole sequence) or answer (answer token only).
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,
    /// Where the run's files go.
    #[arg(long)]
    pub out: PathBuf,
    /// The backend: flex (pure-Rust CPU, default), wgpu, vulkan, metal, cuda, cpu, auto.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceKind,
    /// A TOML run file (see `config.rs`): any of preset, setting, [task], [model], [training],
    /// [method], seed.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The starting point: laptop (small, quick) or paper (LEGO k = 5 / addition k = 3).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// A TOML file holding the method's table (`name = "skill_it"`, `eta = 0.2`, ...).
    #[arg(long)]
    pub method_config: Option<PathBuf>,
    /// Set one method parameter, e.g. `--set eta=0.2 --set window=1` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The model: scratch (the small transformer, shaped by the preset or config) or gpt-neo
    /// (a pretrained GPT-Neo from --weights; the paper's model is GPT-Neo-125M).
    #[arg(long, value_enum)]
    pub model: Option<skillit::model::ModelKind>,
    /// A Hugging Face snapshot folder of a pretrained model: config.json, model.safetensors
    /// (or pytorch_model.bin) and tokenizer.json, e.g. from `huggingface-cli download
    /// EleutherAI/gpt-neo-125m --local-dir DIR`. Implies --model gpt-neo.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// gpt-neo: the architecture of the folder's config.json with fresh weights drawn from the
    /// seed instead of the pretrained ones (the paper's model trained from scratch).
    #[arg(long)]
    pub random_init: bool,
    /// Start from a base folder (`bases/NAME`, e.g. `bases/recall8`: its model and weights) or
    /// an earlier run's model.bpk of the same shape, instead of a fresh initialisation.
    #[arg(long, value_name = "PATH")]
    pub init: Option<PathBuf>,
    /// Train again from the start into an --out that holds a finished run (its manifest.json,
    /// metrics.csv and weights are replaced). Without it such a folder is refused, so a finished
    /// run is never overwritten by accident; an unfinished one always resumes.
    #[arg(long)]
    pub force: bool,
}

impl TrainArgs {
    pub fn run(self) -> skillit::Result<()> {
        let TrainArgs {
            task,
            data,
            method,
            steps,
            seed,
            lr,
            loss,
            out,
            device,
            config,
            preset,
            method_config,
            set,
            model,
            weights,
            random_init,
            init,
            force,
        } = self;
        let (mut run, task_name) = base_config(task, data.as_deref(), preset, config.as_deref())?;
        if let Some(path) = &init {
            run.start_from(path)?;
        }
        set_model(&mut run, model, weights, random_init);
        if let Some(m) = method {
            let k = run.task.build()?.num_skills();
            run.method = MethodSpec::from_name(&m, k, task_name)?;
        }
        if let Some(path) = &method_config {
            run.method = skillit::config::read_method_file(path)?;
        }
        for assignment in &set {
            run.method = skillit::config::set_method_field(&run.method, assignment)?;
        }
        if let Some(s) = steps {
            run.training.steps = s;
        }
        if let Some(s) = seed {
            run.seed = s;
        }
        if let Some(l) = lr {
            run.training.lr = l;
        }
        if let Some(l) = loss {
            run.training.loss = l;
        }
        run.validate("command line")?;
        let selected = skillit::device::select_for_process(device)?;
        skillit::results::prepare_output_dir(&out, "--out")?;
        refuse_finished(&out, force)?;
        let task = run.task.build()?;
        if let Some(data) = skillit::train::DataRecord::of(task.as_ref()) {
            data.check(&out)?;
        }
        eprintln!(
            "training {} with {} on {} ({}), {} steps, seed {}",
            task.describe(),
            run.method
                .build(task.as_ref(), &run.setting, run.target)?
                .name(),
            selected.backend,
            selected.adapter,
            run.training.steps,
            run.seed
        );
        let bar = steps_bar(run.training.steps);
        let mut last_acc = f64::NAN;
        let mut on_progress = |p: Progress| {
            match p {
                Progress::Step { step, loss } => {
                    let before = bar.position();
                    bar.set_position(step);
                    bar.set_message(format!("loss {loss:.4}, val acc {last_acc:.3}"));
                    say_progress(&bar, before, "train");
                }
                Progress::Eval { accuracy, .. } => last_acc = accuracy,
                Progress::RoundEnd { .. } => {}
            }
            Flow::Continue
        };
        let manifest = train(&run, &selected, &out, None, &mut on_progress)?;
        bar.finish();
        emit(&skillit::report::skill_table(&manifest))?;
        if let RunStatus::Failed { reason, .. } = &manifest.status {
            return Err(skillit::Error::Diverged {
                run: out.display().to_string(),
                reason: reason.clone(),
            });
        }
        eprintln!(
            "{:.1} ms/step, {:.0} s in all; wrote {}",
            manifest.ms_per_step,
            manifest.wall_time_s,
            out.display()
        );
        Ok(())
    }
}

/// A finished run in `out` is kept unless `force`: then its manifest goes first, so a retraining
/// killed part-way leaves an unfinished run that resumes, never a finished manifest beside the new
/// run's partial metrics.
fn refuse_finished(out: &std::path::Path, force: bool) -> skillit::Result<()> {
    let Ok(recorded) = skillit::train::read_manifest(out) else {
        return Ok(());
    };
    if recorded.status != "finished" {
        return Ok(());
    }
    if !force {
        return Err(skillit::Error::Invalid {
            origin: out.display().to_string(),
            field: "--out".into(),
            message: format!(
                "holds a finished run ({}, {} steps); choose another --out, or pass --force to \
                 train it again from the start",
                recorded.run_id, recorded.config.training.steps
            ),
        });
    }
    std::fs::remove_file(out.join("manifest.json")).map_err(|e| skillit::Error::Invalid {
        origin: out.display().to_string(),
        field: "--force".into(),
        message: format!("its manifest.json cannot be removed: {e}"),
    })
}
