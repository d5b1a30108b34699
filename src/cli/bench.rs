//! `skillit bench`: measure a model's training step and evaluation pass on a device (ms, medians).

use super::*;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The task (default: the config's, else lego).
    #[arg(long, value_enum)]
    pub task: Option<TaskName>,
    /// A JSONL task's file, as for `train`.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "task")]
    pub data: Option<PathBuf>,
    /// The starting point: laptop or paper (default laptop).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// A TOML run file, as for `train`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The backend, as for `train`.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceKind,
    /// Untimed steps first.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Timed evaluation passes.
    #[arg(long, default_value_t = 3)]
    pub evals: usize,
    /// Examples per step (default: the config's, 32).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// A pretrained model's folder, as for `train` (implies --model gpt-neo).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// gpt-neo: the architecture of the folder's config.json with random weights (the folder
    /// then needs no weights file: speed does not depend on the values).
    #[arg(long)]
    pub random_init: bool,
    /// Also measure R runs trained as one pack (issue 24): prints `packed` beside the single
    /// run's step, with runs·steps per second for both.
    #[arg(long, value_name = "R")]
    pub pack: Option<usize>,
}

impl BenchArgs {
    pub fn run(self) -> skillit::Result<()> {
        let BenchArgs {
            task,
            data,
            preset,
            config,
            device,
            warmup,
            steps,
            evals,
            batch_size,
            weights,
            random_init,
            pack,
        } = self;
        let (mut run, _) = base_config(task, data.as_deref(), preset, config.as_deref())?;
        set_model(&mut run, None, weights, random_init);
        if let Some(b) = batch_size {
            run.training.batch_size = b;
        }
        if steps == 0 {
            return Err(skillit::Error::flag("--steps", "must be at least 1"));
        }
        let pack = pack.map(check_pack).transpose()?;
        run.validate("command line")?;
        let selected = skillit::device::select_for_process(device)?;
        let speed = skillit::train::measure_speed(&run, &selected, warmup, steps, evals)?;
        let mut json = serde_json::to_value(&speed).expect("speed serializes");
        json["task"] = run.task.build()?.describe().into();
        json["examples_per_s"] = (1000.0 * speed.batch_size as f64 / speed.ms_per_step).into();
        json["runs_steps_per_s"] = (1000.0 / speed.ms_per_step).into();
        if let Some(runs) = pack {
            let packed =
                skillit::train::measure_packed_speed(&run, &selected, runs, warmup, steps)?;
            json["packed"] = serde_json::to_value(&packed).expect("speed serializes");
        }
        json["peak_rss_mib"] = peak_rss_mib().into();
        emit(&format!("{json}\n"))
    }
}

/// This process's peak resident memory in MiB (Linux's `VmHWM`; `None` elsewhere). On a GPU it
/// counts the host side only.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
