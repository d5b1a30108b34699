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

/// Writes `line` where the user sees it: above `bar` where the bar is drawn, else on stderr after
/// the bar's elapsed time. indicatif hides a bar when stderr is not a terminal and then drops what
/// its `println` writes, so a job under nohup or a batch scheduler would lose the line that says a
/// run failed.
pub(crate) fn say(bar: &indicatif::ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("[{}] {line}", hms(bar.elapsed()));
    } else {
        bar.println(line);
    }
}

/// A line for a log only: `say`'s where `bar` is hidden, nothing where it is drawn (the bars show
/// the same).
pub(crate) fn log_line(bar: &indicatif::ProgressBar, line: &str) {
    if bar.is_hidden() {
        say(bar, line);
    }
}

/// Where `bar` is hidden (stderr is a log, not a terminal), a line each time its position passes
/// a tenth of its length once it has run for half a minute (`before`: its position before the
/// last update): without them a sweep's log says nothing for the hours its runs take. Where the
/// bar is drawn, nothing. The line is `now/len steps, pace, eta`.
pub(crate) fn progress_line(bar: &indicatif::ProgressBar, before: u64) -> Option<String> {
    let (now, len) = (bar.position(), bar.length().unwrap_or(0));
    let tenth = (len / 10).max(1);
    let due = now / tenth > before / tenth && bar.elapsed().as_secs() >= 30;
    if !bar.is_hidden() || !due {
        return None;
    }
    let rate = bar.per_sec();
    Some(match rate > 0.0 {
        true => format!(
            "{now}/{len} steps, {:.2} s/step, eta {}",
            1.0 / rate,
            hms(bar.eta())
        ),
        false => format!("{now}/{len} steps"),
    })
}

/// `progress_line` with the bar's message, written by `say` after `what`.
pub(crate) fn say_progress(bar: &indicatif::ProgressBar, before: u64, what: &str) {
    if let Some(line) = progress_line(bar, before) {
        let message = bar.message();
        let message = match message.is_empty() {
            true => message,
            false => format!(" ({message})"),
        };
        say(bar, &format!("{what}: {line}{message}"));
    }
}

/// A duration as `HH:MM:SS`.
fn hms(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A hidden bar of `len` steps at `pos` that has run for `secs` seconds.
    fn bar(len: u64, pos: u64, secs: u64) -> indicatif::ProgressBar {
        let bar =
            indicatif::ProgressBar::hidden().with_elapsed(std::time::Duration::from_secs(secs));
        bar.set_length(len);
        bar.set_position(pos);
        bar
    }

    #[test]
    fn a_log_gets_a_progress_line_at_each_tenth_once_past_half_a_minute() {
        // 6,000 steps: a tenth is 600. From 550 to 600 passes the first tenth; 600 → 650 and
        // 610 → 1,190 stay within the second; 1,199 → 1,200 passes it.
        let line = progress_line(&bar(6000, 600, 60), 550).unwrap();
        assert!(line.starts_with("600/6000 steps"), "{line}");
        assert_eq!(progress_line(&bar(6000, 650, 60), 600), None);
        assert_eq!(progress_line(&bar(6000, 1190, 60), 610), None);
        assert!(progress_line(&bar(6000, 1200, 60), 1199).is_some());
        // A run younger than 30 s logs no progress, only its start and end.
        assert_eq!(progress_line(&bar(6000, 600, 29), 550), None);
        // Fewer steps than ten: every step is a tenth.
        assert!(progress_line(&bar(5, 3, 60), 2).is_some());
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(hms(std::time::Duration::from_secs(0)), "00:00:00");
        // 2 h 3 min 4 s = 7,384 s.
        assert_eq!(hms(std::time::Duration::from_secs(7384)), "02:03:04");
    }
}
