//! The commands of the `skillit` binary, one file each: its clap arguments and a `run` that
//! calls the library and prints. `main.rs` only parses, dispatches and maps errors to exit
//! codes.

pub mod base;
pub mod bench;
pub mod claims;
pub mod collect;
pub mod compare;
pub mod generate;
pub mod graph;
pub mod report;
pub mod rerun;
pub mod sweep;
pub mod train;

pub(crate) use clap::builder::TypedValueParser;
pub(crate) use skillit::config::{LossKind, Preset, RunConfig};
pub(crate) use skillit::data::{GenerateRequest, SkillSelection, Split, TaskName};
pub(crate) use skillit::device::DeviceKind;
pub(crate) use skillit::method::MethodSpec;
pub(crate) use skillit::report::{
    build_report, render_comparisons, write_report, Format as CompareFormat,
};
pub(crate) use skillit::results::read_metrics;
pub(crate) use skillit::stats::{compare, CompareOptions, Metric};
pub(crate) use skillit::synthetic::LegoGraph;
pub(crate) use skillit::train::{train, Flow, Progress, RunStatus};
pub(crate) use std::io::{self, Write};
pub(crate) use std::path::PathBuf;

/// Parses `--seeds`: `A..B` (B exclusive) or a comma-separated list.
pub(crate) fn parse_seeds(s: &str) -> skillit::Result<Vec<u64>> {
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
pub(crate) enum Format {
    /// One JSON object per line: task, params, split, seed, skill, text, prompt, answer, tokens,
    /// answer_pos.
    Jsonl,
    /// The text of each example, one per line.
    Text,
}

/// `--pack R` checked: at least 1 (1 trains every run alone).
pub(crate) fn check_pack(pack: usize) -> skillit::Result<usize> {
    match pack {
        0 => Err(skillit::Error::flag(
            "--pack",
            "must be at least 1 (1: no packing)",
        )),
        r => Ok(r),
    }
}

/// Writes to stdout; a closed pipe comes back as an I/O error that `main` treats as success.
pub(crate) fn emit(text: &str) -> skillit::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| skillit::Error::Io {
            path: "<stdout>".into(),
            source,
        })
}

/// The run config of `train` and `bench` before their flags: --preset (default laptop), then
/// --config FILE, then --task (the file's task unless --task names another one). Returns the config
/// and the task's name.
pub(crate) fn base_config(
    task: Option<TaskName>,
    data: Option<&std::path::Path>,
    preset: Option<Preset>,
    config: Option<&std::path::Path>,
) -> skillit::Result<(RunConfig, &'static str)> {
    let task_name = match data {
        Some(_) => "jsonl",
        None => task.map_or("lego", TaskName::as_str),
    };
    let mut run = match config {
        Some(path) => RunConfig::from_file(path, preset, task_name)?,
        None => preset.unwrap_or(Preset::Laptop).config(task_name),
    };
    if let Some(path) = data {
        run.task = skillit_synthetic::TaskSpec::Jsonl {
            path: path.display().to_string(),
        };
    } else if task.is_some() && run.task.name() != task_name {
        run.task = preset.unwrap_or(Preset::Laptop).config(task_name).task;
    }
    read_data(&run.task)?;
    let name = run.task.name();
    Ok((run, name))
}

/// Reads a JSONL task's file with a progress bar (bytes), so that every later use of the task in
/// this process finds it read.
pub(crate) fn read_data(task: &skillit_synthetic::TaskSpec) -> skillit::Result<()> {
    let skillit_synthetic::TaskSpec::Jsonl { path } = task else {
        return Ok(());
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) reading {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(path.clone());
    let opened = skillit_synthetic::Jsonl::open_with_progress(
        std::path::Path::new(path),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    opened.map(drop).map_err(Into::into)
}

/// The progress bar of training `len` steps (`train`, `base build`): elapsed, steps, rate, eta
/// and a message.
pub(crate) fn steps_bar(len: u64) -> indicatif::ProgressBar {
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
pub(crate) fn set_model(
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

/// Any panic left is a bug: one line that says so, never a backtrace dump on bad input.
pub(crate) fn report_panics_as_bugs() {
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
}

/// `--method`'s help: every method of the registry, so the list cannot drift from the code.
pub(crate) fn methods_help() -> String {
    format!(
        "The mixture method, one of: {} (`random` is the paper's fixed imbalanced mixture; \
         parameters with --set or --method-config; README \"Mixture methods\")",
        skillit::method::NAMES.join(", ")
    )
}
