//! The `skillit` command line: parse, call the library, print. No logic lives here.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand};
use skillit::config::{LossKind, Preset, RunConfig};
use skillit::data::{GenerateRequest, SkillSelection, Split, TaskName};
use skillit::device::DeviceKind;
use skillit::method::MethodSpec;
use skillit::report::{build_report, render_comparisons, write_report, Format as CompareFormat};
use skillit::results::read_metrics;
use skillit::stats::{compare, CompareOptions, Metric};
use skillit::synthetic::LegoGraph;
use skillit::train::{train, Flow, Progress, RunStatus};

// burn allocates and frees many short-lived tensor buffers; mimalloc keeps them instead of handing
// them back to the kernel as glibc's malloc does (16–25% of a training step, docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// skillit: the synthetic experiments of Skill-it! (Chen et al., NeurIPS 2023), reproducible.
#[derive(Parser)]
#[command(name = "skillit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write examples of a task to stdout, one per line (JSONL or plain text).
    ///
    /// LEGO: `Input: b = not y , r = val 1 , m = val b , q = val m , y = not r . Output: b = val 1`;
    /// skill i asks the variable at depth i. Addition: `Input: A = 1 0 6 + 0 7 1 , A 0 = ? Output: 7`;
    /// skill i asks digit i-1 of the sum (from the ones digit). The train split is the training
    /// stream of run seed --seed: no repeats within a skill, never a validation example (100 per
    /// skill are held out). The val split is the fixed validation set (seed 42 for LEGO, 420 for
    /// addition, unless --seed is given).
    Generate {
        /// The task.
        #[arg(long, value_enum)]
        task: TaskName,
        /// Variables (LEGO, 2..=26, default 5) or digits (addition, 1..=18, default 3).
        #[arg(long)]
        k: Option<usize>,
        /// LEGO's dependency graph: chain (default), tree (k = 4 only) or disconnected.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["chain", "tree", "disconnected"])
            .try_map(|s| s.parse::<LegoGraph>()))]
        graph: Option<LegoGraph>,
        /// One skill id (1..=k) or `all` (then --n examples of each skill).
        #[arg(long, default_value = "all")]
        skill: SkillSelection,
        /// The training stream or the fixed validation set.
        #[arg(long, value_enum, default_value = "train")]
        split: Split,
        /// Examples per skill.
        #[arg(long, default_value_t = 10)]
        n: usize,
        /// Run seed (train, default 0) or validation seed (val, default 42 / 420).
        #[arg(long)]
        seed: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
    },
    /// Compare methods across seeds: mean, 95% interval, tests against a baseline, IQM, sample
    /// efficiency.
    ///
    /// Reads DIR/metrics.csv. Per method (methods with other params are other rows:
    /// `method[params]`), the per-seed value of the metric is its mean over skills (or --skill I)
    /// at each run's last step (or --step S). Then: n, mean, sd, 95% t-interval; against the
    /// baseline (default: the `baseline` of the sweep file kept in DIR, else stratified, where
    /// present): Welch's t-test, the paired t-test over the
    /// seeds both have, Holm's correction of the Welch p-values, and the probability of improvement
    /// (Mann-Whitney U / n·m); the IQM with a stratified-bootstrap 95% interval (fixed seed); the
    /// normalised area under the metric-vs-step curve; and with --threshold X, the steps to reach X
    /// (≥ for accuracy, ≤ for loss; seeds that never reach it are counted, not averaged).
    Compare {
        /// A results folder (holding metrics.csv) or a metrics.csv file.
        dir: PathBuf,
        /// The metric to compare.
        #[arg(long, value_enum, default_value = "accuracy")]
        metric: Metric,
        /// The method to test the others against (a method name or a `method[params]` label).
        #[arg(long)]
        baseline: Option<String>,
        /// Compare only these methods (repeatable; a name or a label, as for --baseline), so
        /// that Holm's correction runs over them alone: e.g. each η of an ablation on its own.
        #[arg(long = "method", value_name = "METHOD")]
        methods: Vec<String>,
        /// The evaluation step to compare at (default: each run's last step).
        #[arg(long)]
        step: Option<u64>,
        /// One skill (1-based) instead of the mean over skills.
        #[arg(long)]
        skill: Option<usize>,
        /// The level of the metric whose steps-to-reach to report.
        #[arg(long)]
        threshold: Option<f64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: CompareFormat,
    },
    /// Train one model from scratch and evaluate every skill along the way.
    ///
    /// Writes OUT/metrics.csv (one row per evaluation × skill: run_id, task, setting, method,
    /// params, seed, step, skill, loss, accuracy, weight), OUT/manifest.json (the full config,
    /// seed, git revision, backend and adapter, burn version, times, examples per skill) and the
    /// final weights OUT/model.bpk. Settings come from --preset (default laptop), then --config
    /// FILE, then the flags.
    Train {
        /// The task (default: the config's, else lego).
        #[arg(long, value_enum)]
        task: Option<TaskName>,
        /// The mixture method: stratified, random (the paper's fixed imbalanced mixture), skill_it,
        /// no_graph, static.
        #[arg(long)]
        method: Option<String>,
        /// Optimizer steps.
        #[arg(long)]
        steps: Option<u64>,
        /// The run seed (model initialisation, training examples, shuffling).
        #[arg(long)]
        seed: Option<u64>,
        /// Peak learning rate.
        #[arg(long)]
        lr: Option<f64>,
        /// Training loss: full (whole sequence) or answer (answer token only).
        #[arg(long, value_enum)]
        loss: Option<LossKind>,
        /// Where the run's files go.
        #[arg(long)]
        out: PathBuf,
        /// The backend: flex (pure-Rust CPU, default), wgpu, vulkan, metal, cuda, cpu, auto.
        #[arg(long, value_enum, default_value = "flex")]
        device: DeviceKind,
        /// A TOML run file (see `config.rs`): any of preset, setting, [task], [model], [training],
        /// [method], seed.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The starting point: laptop (small, quick) or paper (LEGO k = 5 / addition k = 3).
        #[arg(long, value_enum)]
        preset: Option<Preset>,
        /// A TOML file holding the method's table (`name = "skill_it"`, `eta = 0.2`, ...).
        #[arg(long)]
        method_config: Option<PathBuf>,
        /// Set one method parameter, e.g. `--set eta=0.2 --set window=1` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The model: scratch (the small transformer, shaped by the preset or config) or gpt-neo
        /// (a pretrained GPT-Neo from --weights; the paper's model is GPT-Neo-125M).
        #[arg(long, value_enum)]
        model: Option<skillit::model::ModelKind>,
        /// A Hugging Face snapshot folder of a pretrained model: config.json, model.safetensors
        /// (or pytorch_model.bin) and tokenizer.json, e.g. from `huggingface-cli download
        /// EleutherAI/gpt-neo-125m --local-dir DIR`. Implies --model gpt-neo.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// gpt-neo: the architecture of the folder's config.json with fresh weights drawn from the
        /// seed instead of the pretrained ones (the paper's model trained from scratch).
        #[arg(long)]
        random_init: bool,
        /// Start from a base folder (`bases/NAME`, e.g. `bases/recall8`: its model and weights) or
        /// an earlier run's model.bpk of the same shape, instead of a fresh initialisation.
        #[arg(long, value_name = "PATH")]
        init: Option<PathBuf>,
    },
    /// Run a sweep file: every method × grid point × seed into DIR/runs/RUN_ID, resumably, then
    /// DIR/metrics.csv and DIR/runs.csv.
    ///
    /// A finished run is skipped and an unfinished one resumes from its last round checkpoint, so
    /// rerunning the same command continues a killed sweep. DIR keeps a copy of the sweep file and
    /// refuses another one. See src/sweep.rs for the format.
    Sweep {
        /// The sweep file (TOML).
        file: PathBuf,
        /// The results folder.
        #[arg(long)]
        out: PathBuf,
        /// The backend, as for `train`.
        #[arg(long, value_enum, default_value = "flex")]
        device: DeviceKind,
        /// Print the plan (one row per run, with its status) and stop.
        #[arg(long)]
        dry_run: bool,
        /// Runs trained at the same time, each on one thread (default: the machine's cores; flex
        /// runs one thread per run, so on 2 cores 2 jobs train about twice as fast as 1).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only shard K of N (1-based): the runs whose plan index is K-1 modulo N, so N
        /// machines share a sweep (with a `[base]`, each shard also trains its seeds' bases).
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// Use DIR even though it holds another sweep file's results.
        #[arg(long)]
        force: bool,
        /// Another sweep folder whose finished runs of the same run id and config are copied
        /// rather than trained again (training is deterministic); may be given more than once.
        #[arg(long, value_name = "DIR")]
        reuse: Vec<PathBuf>,
        /// Run the failed (diverged) runs again; by default a failed run is done, since the same
        /// config fails the same way.
        #[arg(long)]
        retry_failed: bool,
    },
    /// Train a recorded run again from its manifest.json and check that every number of its
    /// metrics.csv comes out the same.
    ///
    /// RUN is a run folder (`DIR/runs/RUN_ID`, or a `skillit train --out` folder). The rerun goes
    /// to --out (default RUN/rerun); exit status 1 when the metrics differ on the same backend.
    Rerun {
        /// The run folder holding manifest.json and metrics.csv.
        run: PathBuf,
        /// Where the rerun's files go.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The backend (default: flex).
        #[arg(long, value_enum, default_value = "flex")]
        device: DeviceKind,
    },
    /// Measure a model's training step and evaluation pass on a device (ms, medians).
    ///
    /// The step is what a run does per batch: forward, backward, global-norm clipping, AdamW, and
    /// the loss read back to the host. The first --warmup steps (on a GPU: compiling kernels) are
    /// not timed. Prints one JSON object: backend, adapter, parameters, batch, sequence length,
    /// ms per step, ms per evaluation pass, and examples per second.
    Bench {
        /// The task (default: the config's, else lego).
        #[arg(long, value_enum)]
        task: Option<TaskName>,
        /// The starting point: laptop or paper (default laptop).
        #[arg(long, value_enum)]
        preset: Option<Preset>,
        /// A TOML run file, as for `train`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The backend, as for `train`.
        #[arg(long, value_enum, default_value = "flex")]
        device: DeviceKind,
        /// Untimed steps first.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// Timed evaluation passes.
        #[arg(long, default_value_t = 3)]
        evals: usize,
        /// Examples per step (default: the config's, 32).
        #[arg(long)]
        batch_size: Option<usize>,
        /// A pretrained model's folder, as for `train` (implies --model gpt-neo).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// gpt-neo: the architecture of the folder's config.json with random weights (the folder
        /// then needs no weights file: speed does not depend on the values).
        #[arg(long)]
        random_init: bool,
    },
    /// Learn a skills graph from short probe trainings, or show a learned one.
    #[command(subcommand)]
    Graph(GraphCommand),
    /// Pretrain a base (the analogue of the paper's pretrained LM) that runs start from with
    /// `--init bases/NAME`, or show one.
    #[command(subcommand)]
    Base(BaseCommand),
    /// Rebuild DIR/metrics.csv and DIR/runs.csv from a sweep's run folders.
    Collect {
        /// A sweep's results folder (holding sweep.toml).
        dir: PathBuf,
    },
    /// Write a Markdown report of a results folder with SVG figures.
    ///
    /// Comparison tables at the last and the halfway step, loss at the last step, steps to
    /// accuracy 0.95 and to loss 0.01 (per skill too), and figures: per-skill accuracy and loss
    /// curves (mean over seeds, 95% band, one colour per method), the mixture weights over steps
    /// per method, and the final accuracy per method with intervals. The figures go to
    /// <out stem>_figures/ beside the report.
    Report {
        /// A results folder (holding metrics.csv).
        dir: PathBuf,
        /// The report file (default: DIR/report.md).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BaseCommand {
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

#[derive(Subcommand)]
enum GraphCommand {
    /// Learn a graph: `linear` trains on each skill alone for --steps H and measures every skill's
    /// relative loss drop; `brute` also trains every pair 50/50 and measures how much lower j's
    /// loss ends than with j alone. Probes of one seed share the initial model.
    ///
    /// Writes FILE (the graph Skill-It reads: `graph = "FILE"`), FILE's stem + `.csv` (every
    /// seed's measurements), + `.svg` (a drawing), and the probe runs in stem + `_probes/`
    /// (resumable: a rerun skips finished probes).
    Learn {
        /// The task (default lego).
        #[arg(long, value_enum)]
        task: Option<TaskName>,
        /// How to measure.
        #[arg(long, value_enum)]
        how: skillit::graph_learn::How,
        /// Steps H of each probe.
        #[arg(long, default_value_t = 500)]
        steps: u64,
        /// Seeds, as `0..3` (0, 1, 2) or a list `0,1,2`.
        #[arg(long, default_value = "0..3")]
        seeds: String,
        /// The relative loss change an edge must exceed.
        #[arg(long, default_value_t = 0.05)]
        threshold: f64,
        /// Steps of the stratified base run the probes start from (0: a fresh model, whose
        /// probes all learn the answer format first).
        #[arg(long, default_value_t = 1000)]
        warm_start: u64,
        /// Model and training settings: laptop (default) or paper.
        #[arg(long, value_enum)]
        preset: Option<Preset>,
        /// A TOML run file for the model and training settings.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The backend, as for `train`.
        #[arg(long, value_enum, default_value = "flex")]
        device: DeviceKind,
        /// Probe runs trained at the same time (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// The graph file to write (TOML).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a learned graph: the matrix, and with the measurements CSV beside it, each entry's
    /// mean ± sd over seeds and which edges are stable (above the threshold in every seed).
    Show {
        /// The graph file.
        file: PathBuf,
        /// The threshold to judge stability by.
        #[arg(long, default_value_t = 0.05)]
        threshold: f64,
    },
}

/// Parses `--seeds`: `A..B` (B exclusive) or a comma-separated list.
fn parse_seeds(s: &str) -> skillit::Result<Vec<u64>> {
    let bad = || skillit::Error::flag("--seeds", format!("'{s}' is not A..B or a list like 0,1,2"));
    let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
        let (a, b): (u64, u64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        (a..b).collect()
    } else {
        s.split(',')
            .map(|x| x.trim().parse().map_err(|_| bad()))
            .collect::<skillit::Result<_>>()?
    };
    if seeds.is_empty() {
        return Err(skillit::Error::flag(
            "--seeds",
            format!("'{s}' holds no seed"),
        ));
    }
    Ok(seeds)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// One JSON object per line: task, params, split, seed, skill, text, prompt, answer, tokens,
    /// answer_pos.
    Jsonl,
    /// The text of each example, one per line.
    Text,
}

/// Status for bad input (flags, files): the user can fix it.
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // Any panic left is a bug: one line that says so, never a backtrace dump on bad input.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error (a bug in skillit; please report it with the command that \
             caused it): {}{place}",
            message.replace('\n', " ")
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`skillit generate ... | head`) is the reader's choice, not a failure.
        Err(skillit::Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_bad_input() { BAD_INPUT } else { 1 })
        }
    }
}

/// Writes to stdout; a closed pipe comes back as an I/O error that `main` treats as success.
fn emit(text: &str) -> skillit::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| skillit::Error::Io {
            path: "<stdout>".into(),
            source,
        })
}

/// Help and version go out as clap writes them; a usage error becomes one line and exit status 2.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("{line}");
    ExitCode::from(BAD_INPUT)
}

/// The run config of `train` and `bench` before their flags: --preset (default laptop), then
/// --config FILE, then --task (the file's task unless --task names another one). Returns the config
/// and the task's name.
fn base_config(
    task: Option<TaskName>,
    preset: Option<Preset>,
    config: Option<&std::path::Path>,
) -> skillit::Result<(RunConfig, &'static str)> {
    let task_name = task.map_or("lego", TaskName::as_str);
    let mut run = match config {
        Some(path) => RunConfig::from_file(path, preset, task_name)?,
        None => preset.unwrap_or(Preset::Laptop).config(task_name),
    };
    if task.is_some() && run.task.name() != task_name {
        run.task = preset.unwrap_or(Preset::Laptop).config(task_name).task;
    }
    Ok((run, task_name))
}

/// The progress bar of training `len` steps (`train`, `base build`): elapsed, steps, rate, eta
/// and a message.
fn steps_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The model flags of `train` and `bench` over the config: `--model`, then `--weights` (which
/// implies gpt-neo unless `--model` says otherwise) and `--random-init`.
fn set_model(
    run: &mut RunConfig,
    kind: Option<skillit::model::ModelKind>,
    weights: Option<PathBuf>,
    random_init: bool,
) {
    if let Some(kind) = kind {
        run.model.kind = kind;
    }
    if let Some(dir) = weights {
        if kind.is_none() {
            run.model.kind = skillit::model::ModelKind::GptNeo;
        }
        run.model.weights = Some(dir);
    }
    run.model.random_init |= random_init;
}

fn run(cli: Cli) -> skillit::Result<()> {
    match cli.command {
        Command::Generate {
            task,
            k,
            graph,
            skill,
            split,
            n,
            seed,
            format,
        } => {
            let generation = GenerateRequest {
                task,
                k,
                graph,
                skill,
                split,
                n,
                seed,
            }
            .plan()?;
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            generation.run(|record| {
                match format {
                    Format::Jsonl => serde_json::to_writer(&mut out, record)?,
                    Format::Text => out.write_all(record.text.as_bytes())?,
                }
                out.write_all(b"\n")
            })?;
            out.flush().map_err(|source| skillit::Error::Io {
                path: "<stdout>".into(),
                source,
            })
        }
        Command::Compare {
            dir,
            metric,
            baseline,
            methods,
            step,
            skill,
            threshold,
            format,
        } => {
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
        Command::Train {
            task,
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
        } => {
            let (mut run, task_name) = base_config(task, preset, config.as_deref())?;
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
            skillit::results::prepare_output_dir(&out, "--out")?;
            let selected = skillit::device::select(device)?;
            let task = run.task.build()?;
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
                        bar.set_position(step);
                        bar.set_message(format!("loss {loss:.4}, val acc {last_acc:.3}"));
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
        Command::Sweep {
            file,
            out,
            device,
            dry_run,
            jobs,
            shard,
            force,
            reuse,
            retry_failed,
        } => {
            let plan = skillit::sweep::plan(&file, &out)?;
            skillit::sweep::check_reuse_dirs(&reuse)?;
            let shard = shard
                .as_deref()
                .map(skillit::sweep::parse_shard)
                .transpose()?;
            let mine = skillit::sweep::shard_runs(&plan, shard);
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            if jobs == 0 {
                return Err(skillit::Error::flag("--jobs", "must be at least 1"));
            }
            if dry_run {
                let mut text = format!(
                    "sweep {}: {} runs{}\n",
                    plan.name,
                    mine.len(),
                    shard
                        .map(|(k, n)| format!(" (shard {k}/{n} of {})", plan.runs.len()))
                        .unwrap_or_default()
                );
                text += &format!(
                    "{:<40} {:<12} {:>5} {:>8}  status\n",
                    "run_id", "method", "seed", "steps"
                );
                let mut pending: Vec<&skillit::sweep::PlannedRun> = Vec::new();
                for r in &mine {
                    let done = skillit::sweep::is_done(&out, &r.run_id, retry_failed);
                    let reusable = (!done)
                        .then(|| skillit::sweep::reusable(r, &reuse))
                        .flatten();
                    let status = match &reusable {
                        Some((from, _)) => format!("reuse {}", from.display()),
                        None => skillit::sweep::run_status(&out, &r.run_id),
                    };
                    if !done && reusable.is_none() {
                        pending.push(r);
                    }
                    text += &format!(
                        "{:<40} {:<12} {:>5} {:>8}  {status}\n",
                        r.run_id, r.method, r.seed, r.config.training.steps,
                    );
                }
                let selected = skillit::device::select(device)?;
                if let Some(e) = skillit::sweep::estimate(&pending, &selected, jobs)? {
                    text += &format!(
                        "estimated time for the {} unfinished runs: {:.1} min with {jobs} jobs \
                         (measured on {}, {} at once: {:.1} ms/step, {:.0} ms/evaluation; \
                         curricula add their pool scoring)\n",
                        pending.len(),
                        e.seconds / 60.0,
                        selected.backend,
                        e.at_once,
                        e.ms_per_step,
                        e.ms_per_eval
                    );
                }
                emit(&text)?;
                return Ok(());
            }
            skillit::sweep::claim(&out, &plan, force)?;
            skillit::sweep::tidy(&out, &mine);
            let reused = skillit::sweep::reuse(&out, &mine, &reuse)?;
            if !reused.is_empty() {
                eprintln!(
                    "reused {} finished runs of the same config: {}",
                    reused.len(),
                    reused.join(", ")
                );
            }
            let selected = skillit::device::select(device)?;
            let todo: Vec<&skillit::sweep::PlannedRun> = mine
                .into_iter()
                .filter(|r| !skillit::sweep::is_done(&out, &r.run_id, retry_failed))
                .collect();
            let total: u64 = todo.iter().map(|r| r.config.training.steps).sum();
            let multi = indicatif::MultiProgress::new();
            let bar = multi.add(indicatif::ProgressBar::new(total));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} steps (eta {eta}) {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            let runs_done = std::sync::atomic::AtomicUsize::new(0);
            let n_todo = todo.len();
            bar.set_message(format!("0/{n_todo} runs, {jobs} at a time"));
            let run_style = indicatif::ProgressStyle::with_template("  {msg} {pos}/{len}")
                .expect("a valid template");
            // The runs left to another process holding them.
            let elsewhere = std::sync::Mutex::new(Vec::new());
            // Each active run's line and the last step it reported.
            let lines = std::sync::Mutex::new(std::collections::HashMap::new());
            let on_event = |event: skillit::sweep::SweepEvent| {
                use skillit::sweep::SweepEvent;
                let Ok(mut lines) = lines.lock() else { return };
                match event {
                    SweepEvent::Started { run } => {
                        let line =
                            multi.add(indicatif::ProgressBar::new(run.config.training.steps));
                        line.set_style(run_style.clone());
                        line.set_message(run.run_id.clone());
                        lines.insert(run.run_id.clone(), (line, 0u64));
                    }
                    SweepEvent::Step { run, step } => {
                        if let Some((line, last)) = lines.get_mut(&run.run_id) {
                            bar.inc(step - *last);
                            line.set_position(step);
                            *last = step;
                        }
                    }
                    SweepEvent::Done { run, manifest } => {
                        if let Some((line, last)) = lines.remove(&run.run_id) {
                            line.finish_and_clear();
                            bar.inc(run.config.training.steps - last);
                        }
                        if let RunStatus::Failed { reason, .. } = &manifest.status {
                            bar.println(format!("{}: failed: {reason}", run.run_id));
                        }
                        let done = runs_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        bar.set_message(format!("{done}/{n_todo} runs, {jobs} at a time"));
                    }
                    SweepEvent::Elsewhere { run } => {
                        bar.inc(run.config.training.steps);
                        elsewhere
                            .lock()
                            .map(|mut e| e.push(run.run_id.clone()))
                            .ok();
                    }
                }
            };
            skillit::sweep::execute(&out, &todo, &selected, jobs, &on_event)?;
            bar.finish();
            let elsewhere = elsewhere.into_inner().unwrap_or_default();
            eprintln!(
                "trained {} runs here; {} left to another process on this folder{}",
                runs_done.load(std::sync::atomic::Ordering::SeqCst),
                elsewhere.len(),
                match elsewhere.is_empty() {
                    true => String::new(),
                    false => format!(": {}", elsewhere.join(", ")),
                }
            );
            let (n_runs, n_rows) = skillit::sweep::collect(&out, &plan)?;
            eprintln!(
                "{n_runs} runs, {n_rows} metrics rows in {}",
                out.join("metrics.csv").display()
            );
            Ok(())
        }
        Command::Bench {
            task,
            preset,
            config,
            device,
            warmup,
            steps,
            evals,
            batch_size,
            weights,
            random_init,
        } => {
            let (mut run, _) = base_config(task, preset, config.as_deref())?;
            set_model(&mut run, None, weights, random_init);
            if let Some(b) = batch_size {
                run.training.batch_size = b;
            }
            if steps == 0 {
                return Err(skillit::Error::flag("--steps", "must be at least 1"));
            }
            run.validate("command line")?;
            let selected = skillit::device::select(device)?;
            let speed = skillit::train::measure_speed(&run, &selected, warmup, steps, evals)?;
            let mut json = serde_json::to_value(&speed).expect("speed serializes");
            json["task"] = run.task.build()?.describe().into();
            json["examples_per_s"] = (1000.0 * speed.batch_size as f64 / speed.ms_per_step).into();
            emit(&format!("{json}\n"))
        }
        Command::Rerun { run, out, device } => {
            let out = out.unwrap_or_else(|| run.join("rerun"));
            let recorded = skillit::train::read_manifest(&run)?;
            let selected = skillit::device::select(device)?;
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
        Command::Graph(GraphCommand::Learn {
            task,
            how,
            steps,
            seeds,
            threshold,
            warm_start,
            preset,
            config,
            device,
            jobs,
            out,
        }) => {
            let (base, task_name) = base_config(task, preset, config.as_deref())?;
            let request = skillit::graph_learn::LearnRequest {
                base,
                how,
                steps,
                seeds: parse_seeds(&seeds)?,
                threshold,
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
            skillit::results::prepare_output_dir(&probe_dir, "--out")?;
            let selected = skillit::device::select(device)?;
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
                        bar.inc(step.saturating_sub(before));
                    }
                }
            };
            let learned =
                skillit::graph_learn::learn(&request, &probe_dir, &selected, jobs, &on_event)?;
            bar.finish_and_clear();
            let description = format!(
                "{} ({how:?}), H = {steps} steps from a {warm_start}-step stratified base, seeds {seeds}, {} model (d_model {})",
                request.base.task.build()?.describe(),
                preset.map_or("laptop", |p| p.as_str()),
                request.base.model.d_model
            );
            skillit::results::write_atomic(&out, learned.graph_toml(&description).as_bytes())?;
            skillit::results::write_atomic(
                &PathBuf::from(format!("{}.csv", stem.display())),
                &learned.measurements_csv(),
            )?;
            skillit::results::write_atomic(
                &PathBuf::from(format!("{}.svg", stem.display())),
                learned.svg(&description)?.as_bytes(),
            )?;
            emit(&learned.table())?;
            eprintln!(
                "wrote {} ({:.0} s)",
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Base(BaseCommand::Build {
            recipe,
            out,
            device,
        }) => {
            let recipe = skillit::pretrain::Recipe::read(&recipe)?;
            let selected = skillit::device::select(device)?;
            let total: u64 = recipe.stages.iter().map(|(c, _)| c.training.steps).sum();
            let bar = steps_bar(total);
            let mut before = 0;
            let mut last_loss = f64::NAN;
            let manifest =
                skillit::pretrain::build(&recipe, &out, &selected, &mut |event| match event {
                    skillit::pretrain::BuildEvent::Stage { stage, progress } => match progress {
                        Progress::Step { step, loss } => {
                            bar.set_position(before + step);
                            bar.set_message(format!(
                                "stage {stage}: loss {loss:.4}, val loss {last_loss:.4}"
                            ));
                        }
                        Progress::Eval { loss, .. } => last_loss = loss,
                        Progress::RoundEnd { .. } => {}
                    },
                    skillit::pretrain::BuildEvent::StageDone { stage, reused } => {
                        before += recipe.stages[stage - 1].0.training.steps;
                        bar.set_position(before);
                        if reused {
                            bar.println(format!("stage {stage}: finished before, kept"));
                        }
                    }
                })?;
            bar.finish();
            emit(&skillit::report::base_table(&manifest))?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Base(BaseCommand::Show { dir }) => {
            let base = skillit::model::base::Base::open(&dir)?;
            emit(&skillit::report::base_table(&base.manifest))
        }
        Command::Graph(GraphCommand::Show { file, threshold }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| skillit::Error::Invalid {
                origin: file.display().to_string(),
                field: "file".into(),
                message: format!("cannot be read: {e}"),
            })?;
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
            let csv = file.with_extension("csv");
            if csv.exists() {
                let how = if text.contains("(Brute)") {
                    skillit::graph_learn::How::Brute
                } else {
                    skillit::graph_learn::How::Linear
                };
                let learned =
                    skillit::graph_learn::Learned::read_measurements(&csv, how, threshold)?;
                out += &learned.table();
            } else {
                out += "no measurements beside it (a published or hand-written graph)\n";
            }
            emit(&out)
        }
        Command::Collect { dir } => {
            let plan = skillit::sweep::plan(&dir.join("sweep.toml"), &dir)?;
            let (n_runs, n_rows) = skillit::sweep::collect(&dir, &plan)?;
            eprintln!(
                "{n_runs} runs, {n_rows} metrics rows in {}",
                dir.join("metrics.csv").display()
            );
            Ok(())
        }
        Command::Report { dir, out } => {
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
}
