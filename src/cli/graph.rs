//! `skillit graph`: learn a skills graph from short probe trainings, or show a learned one.

use super::*;

#[derive(clap::Subcommand)]
pub enum GraphCommand {
    /// Learn a graph: `linear` trains on each skill alone for --steps H and measures every skill's
    /// relative loss drop; `brute` also trains every pair 50/50 and measures how much lower j's
    /// loss ends than with j alone. Probes of one seed share the initial model.
    ///
    /// Writes FILE (the graph Skill-It reads: `graph = "FILE"`), FILE's stem + `.csv` (every
    /// seed's measurements), + `.svg` (a drawing), and the probe runs in stem + `_probes/`
    /// (resumable: a rerun skips finished probes).
    Learn(LearnArgs),
    /// Print a learned graph: the matrix, and with the measurements CSV beside it, each entry's
    /// mean ± sd over seeds and which edges are stable (above the threshold in every seed).
    Show(ShowArgs),
    /// Judge a learned graph's measurements (the CSV beside FILE) again under another rule or
    /// threshold, training nothing: writes OUT, its `.csv` and `.svg` as `learn` does, and prints
    /// the table.
    Rethreshold(RethresholdArgs),
}

#[derive(clap::Args)]
pub struct LearnArgs {
    /// The task (default lego).
    #[arg(long, value_enum)]
    pub task: Option<TaskName>,
    /// Train on your own skill-labelled rows: a JSONL file of `{"skill", "prompt", "answer"[,
    /// "split"]}` objects, the format `skillit generate` writes (README "Your own skills").
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "task")]
    pub data: Option<PathBuf>,
    /// How to measure.
    #[arg(long, value_enum)]
    pub how: skillit::graph_learn::How,
    /// Steps H of each probe.
    #[arg(long, default_value_t = 500)]
    pub steps: u64,
    /// Seeds, as `0..3` (0, 1, 2) or a list `0,1,2`.
    #[arg(long, default_value = "0..3")]
    pub seeds: String,
    /// The relative loss change an edge must exceed.
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f64,
    /// Which entries make an edge: gain (A[i][j] > τ; linear's rule, and with brute the first
    /// clause of the paper's) or serves (brute's default: A[i][j] > −τ where j learns alone).
    #[arg(long, value_enum)]
    pub rule: Option<skillit::graph_learn::Rule>,
    /// Steps of the stratified base run the probes start from, itself started from the config's
    /// `init` or a fresh model (0: the probes start from that model directly; from a fresh model,
    /// or a base that answers in other words, every probe first learns the answer format).
    #[arg(long, default_value_t = 1000)]
    pub warm_start: u64,
    /// Model and training settings: laptop (default) or paper.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// A TOML run file for the model and training settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The backend, as for `train`.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceKind,
    /// Probe runs trained at the same time (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Train up to R probe runs as one pack, as `sweep --pack` (default 1: none).
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub pack: usize,
    /// The graph file to write (TOML).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct RethresholdArgs {
    /// The learned graph file, with its measurements CSV beside it.
    pub file: PathBuf,
    /// Which entries make an edge (as `learn --rule`).
    #[arg(long, value_enum)]
    pub rule: skillit::graph_learn::Rule,
    /// The relative loss change an edge must exceed.
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f64,
    /// The graph file to write (TOML); its `.csv` and `.svg` go beside it.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The graph file.
    pub file: PathBuf,
    /// The threshold to judge stability by.
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f64,
}

impl GraphCommand {
    pub fn run(self) -> skillit::Result<()> {
        match self {
            GraphCommand::Learn(args) => args.run(),
            GraphCommand::Show(args) => args.run(),
            GraphCommand::Rethreshold(args) => args.run(),
        }
    }
}

impl LearnArgs {
    pub fn run(self) -> skillit::Result<()> {
        let LearnArgs {
            task,
            data,
            how,
            steps,
            seeds,
            threshold,
            rule,
            warm_start,
            preset,
            config,
            device,
            jobs,
            pack,
            out,
        } = self;
        let (base, task_name) = base_config(task, data.as_deref(), preset, config.as_deref())?;
        let request = skillit::graph_learn::LearnRequest {
            base,
            how,
            steps,
            seeds: parse_seeds(&seeds)?,
            threshold,
            rule: rule.unwrap_or(skillit::graph_learn::Rule::default_for(how)),
            warm_start,
        };
        request.validate()?;
        let stem = out.with_extension("");
        let probe_dir = PathBuf::from(format!("{}_probes", stem.display()));
        let jobs =
            jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if jobs == 0 {
            return Err(skillit::Error::flag("--jobs", "must be at least 1"));
        }
        let pack = check_pack(pack)?;
        // The device first: a bad `--device` or BURN_DEVICE must leave no probe folder behind.
        let selected = skillit::device::select_for_process(device)?;
        skillit::results::prepare_output_dir(&probe_dir, "--out")?;
        let k = request.base.task.build()?.num_skills();
        let runs_per_seed = k + if how == skillit::graph_learn::How::Brute {
            k * (k - 1) / 2
        } else {
            0
        };
        eprintln!(
            "learning the {task_name} graph ({how:?}) on {}: per seed a {warm_start}-step base run and {runs_per_seed} probe runs of {steps} steps, {jobs} at a time",
            selected.backend
        );
        let started = std::time::Instant::now();
        let bar = indicatif::ProgressBar::new(skillit::graph_learn::steps_to_train(
            &request, &probe_dir,
        )?);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} probe steps (eta {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        let last = std::sync::Mutex::new(std::collections::HashMap::new());
        let on_event = |event: skillit::sweep::SweepEvent| {
            if let skillit::sweep::SweepEvent::Step { run, step } = event {
                if let Ok(mut last) = last.lock() {
                    let before = last.insert(run.run_id.clone(), step).unwrap_or(0);
                    let was = bar.position();
                    bar.inc(step.saturating_sub(before));
                    say_progress(&bar, was, "probes");
                }
            }
        };
        let learned =
            skillit::graph_learn::learn(&request, &probe_dir, &selected, jobs, pack, &on_event)?;
        bar.finish_and_clear();
        let description = format!(
            "{} ({how:?}), H = {steps} steps from a {warm_start}-step stratified base, seeds {seeds}, {}",
            request.base.task.build()?.describe(),
            model_words(&request.base)
        );
        write_learned(&out, &learned, &description)?;
        eprintln!(
            "wrote {} ({:.0} s)",
            out.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl ShowArgs {
    pub fn run(self) -> skillit::Result<()> {
        let ShowArgs { file, threshold } = self;
        let text = skillit::common::read_text(&file)?;
        let graph: skillit::graph::SkillsGraph =
            toml::from_str(&text).map_err(|e| skillit::Error::Invalid {
                origin: file.display().to_string(),
                field: "graph".into(),
                message: e.message().trim().to_string(),
            })?;
        let k = graph.train_skills.len().max(graph.eval_skills.len());
        graph.validate(
            &file.display().to_string(),
            k.max(
                graph
                    .train_skills
                    .iter()
                    .chain(&graph.eval_skills)
                    .copied()
                    .max()
                    .unwrap_or(0),
            ),
        )?;
        let mut out = format!(
            "{}: train {:?} × eval {:?}\n",
            file.display(),
            graph.train_skills,
            graph.eval_skills
        );
        for (s, row) in graph.train_skills.iter().zip(&graph.matrix) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:5.2}")).collect();
            out += &format!("  s{s:<3} {}\n", cells.join(" "));
        }
        match skillit::graph_learn::Learned::of_graph_file(&file, &text, threshold)? {
            Some((learned, _)) => out += &learned.table(),
            None => out += "no measurements beside it (a published or hand-written graph)\n",
        }
        emit(&out)
    }
}

impl RethresholdArgs {
    pub fn run(self) -> skillit::Result<()> {
        let RethresholdArgs {
            file,
            rule,
            threshold,
            out,
        } = self;
        skillit::graph_learn::check_threshold(threshold)?;
        let text = skillit::common::read_text(&file)?;
        let Some((learned, description)) =
            skillit::graph_learn::Learned::of_graph_file(&file, &text, threshold)?
        else {
            return Err(skillit::Error::Invalid {
                origin: file.display().to_string(),
                field: "file".into(),
                message: format!(
                    "has no measurements beside it ({} is missing): only a graph learned by \
                     `skillit graph learn` can be judged again",
                    file.with_extension("csv").display()
                ),
            });
        };
        rule.check(learned.how)?;
        if out.with_extension("") == file.with_extension("") {
            return Err(skillit::Error::flag(
                "--out",
                "is the graph being judged: write the new one beside it",
            ));
        }
        let learned = skillit::graph_learn::from_measurements(
            learned.how,
            rule,
            learned.k,
            learned.measurements,
            threshold,
        );
        let description = format!(
            "{description}; edges judged again from {} by `skillit graph rethreshold`",
            file.with_extension("csv").display()
        );
        write_learned(&out, &learned, &description)
    }
}

/// Writes a learned graph: `out` (the graph Skill-It reads), its stem + `.csv` (the measurements)
/// and + `.svg` (a drawing), each atomically, and prints the table.
fn write_learned(
    out: &std::path::Path,
    learned: &skillit::graph_learn::Learned,
    description: &str,
) -> skillit::Result<()> {
    let stem = out.with_extension("");
    skillit::results::write_atomic(out, learned.graph_toml(description).as_bytes())?;
    skillit::results::write_atomic(
        &PathBuf::from(format!("{}.csv", stem.display())),
        &learned.measurements_csv(),
    )?;
    skillit::results::write_atomic(
        &PathBuf::from(format!("{}.svg", stem.display())),
        learned.svg(description)?.as_bytes(),
    )?;
    emit(&learned.table())
}

/// The model a graph was learned on, for its description: its shape, and the weights it started
/// from (the name of a preset says nothing of a `--config`'s model).
fn model_words(run: &RunConfig) -> String {
    let m = &run.model;
    let mut words = match m.kind {
        skillit::model::ModelKind::Scratch => {
            format!("model d_model {} × {} layers", m.d_model, m.n_layers)
        }
        kind => format!("model {kind:?}"),
    };
    if m.conv_kernel > 0 {
        words += &format!(", conv {}", m.conv_kernel);
    }
    if m.prefix_lm {
        words += ", prefix LM";
    }
    if let Some(init) = &run.init {
        words += &format!(", from {}", init.display());
    }
    words
}
