//! `skillit sweep`: run a sweep file: every method × grid point × seed into DIR/runs/RUN_ID,
//! resumably, then DIR/metrics.csv and DIR/runs.csv.

use super::*;

#[derive(clap::Args)]
pub struct SweepArgs {
    /// The sweep file (TOML).
    pub file: PathBuf,
    /// The results folder.
    #[arg(long)]
    pub out: PathBuf,
    /// The backend, as for `train`.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceKind,
    /// Print the plan (one row per run, with its status) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Runs trained at the same time, each on one thread (default: the machine's cores; flex
    /// runs one thread per run, so on 2 cores 2 jobs train about twice as fast as 1).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Run only shard K of N (1-based): the runs whose plan index is K-1 modulo N, so N
    /// machines share a sweep (with a `[base]`, each shard also trains its seeds' bases).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Use DIR even though it holds another sweep file's results.
    #[arg(long)]
    pub force: bool,
    /// Another sweep folder whose finished runs of the same run id and config are copied
    /// rather than trained again (training is deterministic); may be given more than once.
    #[arg(long, value_name = "DIR")]
    pub reuse: Vec<PathBuf>,
    /// Run the failed (diverged) runs again; by default a failed run is done, since the same
    /// config fails the same way.
    #[arg(long)]
    pub retry_failed: bool,
    /// Train up to R runs that can share a pack (a scratch model of one shape, one task, one
    /// step budget and schedule; not DoReMi) as one model, one thread per run (issue 24;
    /// default: the sweep file's `[execution] pack`, else 1). Their folders are those of
    /// unpacked runs. On flex it gains 5-10% (docs/performance.md); it is meant for GPUs.
    #[arg(long, value_name = "R")]
    pub pack: Option<usize>,
}

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use skillit::sweep::{PlannedRun, SweepEvent};

impl SweepArgs {
    pub fn run(self) -> skillit::Result<()> {
        read_data(&skillit::sweep::read_task(&self.file)?)?;
        let plan = skillit::sweep::plan(&self.file, &self.out)?;
        skillit::sweep::check_reuse_dirs(&self.reuse)?;
        let shard = self
            .shard
            .as_deref()
            .map(skillit::sweep::parse_shard)
            .transpose()?;
        let mine = skillit::sweep::shard_runs(&plan, shard);
        let jobs = self
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if jobs == 0 {
            return Err(skillit::Error::flag("--jobs", "must be at least 1"));
        }
        if self.dry_run {
            return self.print_plan(&plan, &mine, shard, jobs);
        }
        // The device first: a bad `--device` or BURN_DEVICE must leave no folder behind.
        let selected = skillit::device::select_for_process(self.device)?;
        skillit::sweep::claim(&self.out, &plan, self.force)?;
        skillit::sweep::tidy(&self.out, &mine);
        let reused = skillit::sweep::reuse(&self.out, &mine, &self.reuse)?;
        if !reused.is_empty() {
            eprintln!(
                "reused {} finished runs of the same config: {}",
                reused.len(),
                reused.join(", ")
            );
        }
        let todo: Vec<&PlannedRun> = mine
            .into_iter()
            .filter(|r| !skillit::sweep::is_done(&self.out, &r.run_id, self.retry_failed))
            .collect();
        let pack = check_pack(self.pack.unwrap_or(plan.pack))?;
        let bars = SweepBars::new(&todo, jobs * pack);
        skillit::sweep::execute(&self.out, &todo, &selected, jobs, pack, &|e| {
            bars.on_event(e)
        })?;
        bars.finish();
        let (n_runs, n_rows) = skillit::sweep::collect(&self.out, &plan)?;
        eprintln!(
            "{n_runs} runs, {n_rows} metrics rows in {}",
            self.out.join("metrics.csv").display()
        );
        Ok(())
    }

    /// `--dry-run`: one row per run of this shard with its status, and the time the unfinished
    /// ones will take, measured on the device.
    fn print_plan(
        &self,
        plan: &skillit::sweep::Plan,
        mine: &[&PlannedRun],
        shard: Option<(usize, usize)>,
        jobs: usize,
    ) -> skillit::Result<()> {
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
        let mut pending: Vec<&PlannedRun> = Vec::new();
        for r in mine {
            let done = skillit::sweep::is_done(&self.out, &r.run_id, self.retry_failed);
            let reusable = (!done)
                .then(|| skillit::sweep::reusable(r, &self.reuse))
                .flatten();
            let status = match &reusable {
                Some((from, _)) => format!("reuse {}", from.display()),
                None => skillit::sweep::run_status(&self.out, &r.run_id),
            };
            if !done && reusable.is_none() {
                pending.push(r);
            }
            text += &format!(
                "{:<40} {:<12} {:>5} {:>8}  {status}\n",
                r.run_id, r.method, r.seed, r.config.training.steps,
            );
        }
        let selected = skillit::device::select_for_process(self.device)?;
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
        emit(&text)
    }
}

/// The sweep's progress: one bar for all the steps to train, a line per run in flight, and the
/// runs left to another process on the same folder.
struct SweepBars {
    multi: indicatif::MultiProgress,
    bar: indicatif::ProgressBar,
    run_style: indicatif::ProgressStyle,
    jobs: usize,
    n_todo: usize,
    runs_done: AtomicUsize,
    /// Each active run's line and the last step it reported.
    lines: Mutex<HashMap<String, (indicatif::ProgressBar, u64)>>,
    elsewhere: Mutex<Vec<String>>,
}

impl SweepBars {
    fn new(todo: &[&PlannedRun], jobs: usize) -> Self {
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
        bar.set_message(format!("0/{} runs, {jobs} at a time", todo.len()));
        Self {
            multi,
            bar,
            run_style: indicatif::ProgressStyle::with_template("  {msg} {pos}/{len}")
                .expect("a valid template"),
            jobs,
            n_todo: todo.len(),
            runs_done: AtomicUsize::new(0),
            lines: Mutex::new(HashMap::new()),
            elsewhere: Mutex::new(Vec::new()),
        }
    }

    fn on_event(&self, event: SweepEvent) {
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        let bar = &self.bar;
        match event {
            SweepEvent::Started { run } => {
                let line = self
                    .multi
                    .add(indicatif::ProgressBar::new(run.config.training.steps));
                line.set_style(self.run_style.clone());
                line.set_message(run.run_id.clone());
                log_line(bar, &format!("{}: started", run.run_id));
                lines.insert(run.run_id.clone(), (line, 0u64));
            }
            SweepEvent::Step { run, step } => {
                if let Some((line, last)) = lines.get_mut(&run.run_id) {
                    bar.inc(step - *last);
                    line.set_position(step);
                    if let Some(progress) = progress_line(line, *last) {
                        log_line(bar, &format!("{}: {progress}", run.run_id));
                    }
                    *last = step;
                }
            }
            SweepEvent::Done { run, manifest } => {
                if let Some((line, last)) = lines.remove(&run.run_id) {
                    line.finish_and_clear();
                    bar.inc(run.config.training.steps - last);
                }
                let ended = match &manifest.status {
                    RunStatus::Failed { reason, .. } => {
                        say(bar, &format!("{}: failed: {reason}", run.run_id));
                        None
                    }
                    RunStatus::Finished => Some("finished"),
                    RunStatus::Stopped { .. } => Some("stopped"),
                };
                if let Some(ended) = ended {
                    let (steps, secs) = (manifest.steps_done, manifest.wall_time_s);
                    log_line(
                        bar,
                        &format!("{}: {ended}, {steps} steps, {secs:.0} s", run.run_id),
                    );
                }
                let done = self.runs_done.fetch_add(1, Ordering::SeqCst) + 1;
                bar.set_message(format!(
                    "{done}/{} runs, {} at a time",
                    self.n_todo, self.jobs
                ));
            }
            SweepEvent::Elsewhere { run } => {
                bar.inc(run.config.training.steps);
                log_line(bar, &format!("{}: left to another process", run.run_id));
                if let Ok(mut e) = self.elsewhere.lock() {
                    e.push(run.run_id.clone());
                }
            }
        }
    }

    /// Ends the bars and says how many runs this process trained and which it left to another.
    fn finish(self) {
        self.bar.finish();
        let elsewhere = self.elsewhere.into_inner().unwrap_or_default();
        eprintln!(
            "trained {} runs here; {} left to another process on this folder{}",
            self.runs_done.load(Ordering::SeqCst),
            elsewhere.len(),
            match elsewhere.is_empty() {
                true => String::new(),
                false => format!(": {}", elsewhere.join(", ")),
            }
        );
    }
}
