//! The `skillit` command line: parse, call the library, print. No logic lives here.

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

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
    Generate(cli::generate::GenerateArgs),
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
    Compare(cli::compare::CompareArgs),
    /// Test the paper's claims on results folders: one Markdown table with each claim, the
    /// paper's numbers, ours with 95% intervals, Welch's test, Holm's correction over the file,
    /// and agree / not / not testable.
    ///
    /// FILE holds `[[claim]]` tables: experiment, claim, paper (text), folder (relative to FILE),
    /// method and baseline (the paper says the method does better), metric (accuracy or loss),
    /// and either step (the metric there, mean over skills or one skill) or threshold (the steps
    /// to reach it; a seed that never does counts at its last evaluation), optional setting and
    /// note. Agree = the paper's direction with Holm p < 0.05; not testable = a threshold no seed
    /// of either method reaches.
    Claims(cli::claims::ClaimsArgs),
    /// Train one model from scratch and evaluate every skill along the way.
    ///
    /// Writes OUT/metrics.csv (one row per evaluation × skill: run_id, task, setting, method,
    /// params, seed, step, skill, loss, accuracy, weight), OUT/manifest.json (the full config,
    /// seed, git revision, backend and adapter, burn version, times, examples per skill) and the
    /// final weights OUT/model.bpk. Settings come from --preset (default laptop), then --config
    /// FILE, then the flags.
    Train(cli::train::TrainArgs),
    /// Run a sweep file: every method × grid point × seed into DIR/runs/RUN_ID, resumably, then
    /// DIR/metrics.csv and DIR/runs.csv.
    ///
    /// A finished run is skipped and an unfinished one resumes from its last round checkpoint, so
    /// rerunning the same command continues a killed sweep. DIR keeps a copy of the sweep file and
    /// refuses another one. See src/sweep.rs for the format.
    Sweep(cli::sweep::SweepArgs),
    /// Train a recorded run again from its manifest.json and check that every number of its
    /// metrics.csv comes out the same.
    ///
    /// RUN is a run folder (`DIR/runs/RUN_ID`, or a `skillit train --out` folder). The rerun goes
    /// to --out (default RUN/rerun); exit status 1 when the metrics differ on the same backend.
    Rerun(cli::rerun::RerunArgs),
    /// Measure a model's training step and evaluation pass on a device (ms, medians).
    ///
    /// The step is what a run does per batch: forward, backward, global-norm clipping, AdamW, and
    /// the loss read back to the host. The first --warmup steps (on a GPU: compiling kernels) are
    /// not timed. Prints one JSON object: backend, adapter, parameters, batch, sequence length,
    /// ms per step, ms per evaluation pass, and examples per second.
    Bench(cli::bench::BenchArgs),
    /// Learn a skills graph from short probe trainings, or show a learned one.
    #[command(subcommand)]
    Graph(cli::graph::GraphCommand),
    /// Pretrain a base (the analogue of the paper's pretrained LM) that runs start from with
    /// `--init bases/NAME`, or show one.
    #[command(subcommand)]
    Base(cli::base::BaseCommand),
    /// Rebuild DIR/metrics.csv and DIR/runs.csv from a sweep's run folders.
    Collect(cli::collect::CollectArgs),
    /// Write a Markdown report of a results folder with SVG figures.
    ///
    /// Comparison tables at the last and the halfway step, loss at the last step, steps to
    /// accuracy 0.95 and to loss 0.01 (per skill too), and figures: per-skill accuracy and loss
    /// curves (mean over seeds, 95% band, one colour per method), the mixture weights over steps
    /// per method, and the final accuracy per method with intervals; in a sweep's folder, the
    /// runs' time and machine (DIR/runs.csv). The figures go to <out stem>_figures/ beside the
    /// report.
    Report(cli::report::ReportArgs),
}

/// Status for bad input (flags, files): the user can fix it.
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    skillit::device::keep_freed_pages();
    cli::report_panics_as_bugs();
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

fn run(cli: Cli) -> skillit::Result<()> {
    match cli.command {
        Command::Generate(args) => args.run(),
        Command::Compare(args) => args.run(),
        Command::Claims(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Sweep(args) => args.run(),
        Command::Rerun(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Graph(args) => args.run(),
        Command::Base(args) => args.run(),
        Command::Collect(args) => args.run(),
        Command::Report(args) => args.run(),
    }
}
