//! Sweeps: one TOML file → a plan of runs (methods × parameter grids × seeds) → runs executed
//! resumably into one results folder → the combined `metrics.csv` and `runs.csv`.
//!
//! ```toml
//! name = "smoke"
//! preset = "laptop"                 # optional starting point, as in a run file
//! seeds = [0, 1, 2]
//! setting = "pretrain"
//! [task]
//! name = "lego"
//! k = 3
//! [training]
//! steps = 200
//! [[methods]]
//! name = "stratified"
//! [[methods]]
//! name = "skill_it"
//! grid = { eta = [0.1, 0.5] }       # each combination of the grid is its own method entry
//! ```
//!
//! Each run lives in `DIR/runs/RUN_ID/` (the files of `skillit train`); a finished run is skipped
//! and an unfinished one resumes from its checkpoint. `DIR/sweep.toml` keeps a copy of the sweep
//! file: pointing another sweep at the folder is refused. `--reuse OTHER` takes over the finished
//! runs of another sweep folder that have the same run id and config (a copy, with `reused_from`
//! in its manifest) instead of training them again: training is deterministic, so they are the
//! runs this sweep would train.
//!
//! A `[base]` table adds a stage every run starts from, as the paper's runs start from a
//! pretrained model: one base run per seed (`runs/base-METHOD-sS/`, trained first, on every skill
//! of the task, with the sweep's model) whose final weights are each run's `init`. The table is a
//! method entry (name and parameters) with an optional `[base.training]` over the sweep's
//! `[training]`:
//!
//! ```toml
//! [base]
//! name = "class_curriculum"
//! [base.training]
//! steps = 6000
//! steps_per_round = 1200
//! ```
//!
//! The base runs' rows are in `metrics.csv` under the setting `base`, so `compare` and `report`
//! show them apart from the methods compared, and `runs.csv` has their cost.
//!
//! `init = "bases/NAME"` (top level) starts every run from a committed base (its model and
//! weights; with a `[base]` stage, the stage's runs start from it).
//!
//! `baseline = "LABEL"` (top level) names the method `skillit report` tests the others against
//! (default: stratified): a method name that one entry has, or a label `method[params]` as in
//! `metrics.csv` (`skill_it[eta=0.5;window=3;unit=evaluations]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{read_toml, set_method_field, Preset, RunConfig};
use crate::method::MethodSpec;
use crate::results::{read_metrics, write_atomic, MetricsRow, METRICS_COLUMNS};
use crate::{Error, Result};

/// A sweep file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: String,
    #[serde(default)]
    preset: Option<Preset>,
    seeds: Vec<u64>,
    #[serde(default)]
    setting: Option<String>,
    #[serde(default)]
    target: Option<usize>,
    task: skillit_synthetic::TaskSpec,
    #[serde(default)]
    model: Option<toml::Table>,
    #[serde(default)]
    training: Option<toml::Table>,
    methods: Vec<toml::Table>,
    #[serde(default)]
    base: Option<toml::Table>,
    /// What every run starts from: a base folder (`bases/NAME`, which also gives the model) or a
    /// run's model.bpk. With a `[base]` stage, the stage's runs start from it.
    #[serde(default)]
    init: Option<PathBuf>,
    /// How the runs are trained, not what they are: `pack = R` trains up to R runs that can
    /// share a pack as one model (issue 24; `--pack` overrides it).
    #[serde(default)]
    execution: Option<Execution>,
    /// The method `skillit report` tests the others against: a label
    /// (`skill_it[eta=0.5;window=3;unit=evaluations]`) or a method name that one entry has
    /// (default: stratified).
    #[serde(default)]
    baseline: Option<String>,
}

/// A sweep file's `[execution]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Execution {
    #[serde(default)]
    pack: Option<usize>,
}

/// One planned run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRun {
    pub run_id: String,
    pub method: String,
    pub params: String,
    pub seed: u64,
    /// A base run (trained before the others; its rows get the setting `base`).
    #[serde(skip)]
    pub is_base: bool,
    #[serde(skip)]
    pub config: RunConfig,
}

/// A sweep's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub runs: Vec<PlannedRun>,
    /// The sweep file's text, copied into the results folder.
    pub source: String,
    /// `[execution] pack`: the most runs trained as one pack (1: none).
    pub pack: usize,
}

/// The cartesian product of a grid: every assignment of one value per key, keys in order.
fn grid_points(grid: &toml::Table) -> Vec<Vec<(String, toml::Value)>> {
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in grid {
        let values = match values {
            toml::Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((key.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    points
}

/// Keeps run ids to letters, digits and `._=-`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The method entry of a sweep file as a [`MethodSpec`], its grid removed (returned apart).
fn method_entry(
    entry: &toml::Table,
    field: &str,
    bad: &dyn Fn(&str, String) -> Error,
) -> Result<(MethodSpec, toml::Table)> {
    let mut entry = entry.clone();
    let grid = match entry.remove("grid") {
        Some(toml::Value::Table(g)) => g,
        Some(_) => return Err(bad(field, "grid must be a table of value lists".into())),
        None => toml::Table::new(),
    };
    let spec = toml::Value::Table(entry)
        .try_into()
        .map_err(|e: toml::de::Error| bad(field, e.message().trim().to_string()))?;
    Ok((spec, grid))
}

/// A run's id: the method's name, its parameters and the seed, kept to file-name characters.
fn run_id(prefix: &str, name: &str, params: &str, seed: u64) -> String {
    sanitize(&if params.is_empty() {
        format!("{prefix}{name}-s{seed}")
    } else {
        format!("{prefix}{name}-{params}-s{seed}")
    })
}

/// A sweep file's task with a JSONL path resolved against the file's folder.
fn task_of(path: &Path, task: skillit_synthetic::TaskSpec) -> skillit_synthetic::TaskSpec {
    task.relative_to(path.parent().unwrap_or(Path::new("")))
}

/// The task of the sweep file at `path` (a JSONL task's path resolved against the file's folder),
/// so that a caller can read its data before [`plan`] does.
pub fn read_task(path: &Path) -> Result<skillit_synthetic::TaskSpec> {
    let file: SweepFile = read_toml(path)?;
    Ok(task_of(path, file.task))
}

/// Reads and expands a sweep file whose runs go to `out`; every run's config is validated before
/// anything runs. With a `[base]`, the base runs come first and every other run starts from its
/// seed's base (`init`).
pub fn plan(path: &Path, out: &Path) -> Result<Plan> {
    let origin = path.display().to_string();
    let mut file: SweepFile = read_toml(path)?;
    file.task = task_of(path, file.task);
    let source = std::fs::read_to_string(path).unwrap_or_default();
    let bad = |field: &str, message: String| Error::Invalid {
        origin: origin.clone(),
        field: field.into(),
        message,
    };
    if file.seeds.is_empty() {
        return Err(bad("seeds", "needs at least one seed".into()));
    }
    if file.methods.is_empty() {
        return Err(bad(
            "methods",
            "needs at least one [[methods]] entry".into(),
        ));
    }
    let pack = file.execution.as_ref().and_then(|e| e.pack).unwrap_or(1);
    if pack == 0 {
        return Err(bad(
            "execution.pack",
            "must be at least 1 (1: no packing)".into(),
        ));
    }
    let base_preset = file
        .preset
        .unwrap_or(Preset::Laptop)
        .config(file.task.name());
    let start = crate::config::start_model(file.init.as_deref(), &base_preset.model)?;
    let shared = Shared {
        file: &file,
        origin: &origin,
        bad: &bad,
        model: crate::config::merge(&start, file.model.clone(), &origin, "model")?,
        training: crate::config::merge(
            &base_preset.training,
            file.training.clone(),
            &origin,
            "training",
        )?,
    };
    let mut runs = plan_bases(&shared)?;
    let bases: BTreeMap<u64, PathBuf> = runs
        .iter()
        .map(|r| (r.seed, run_dir(out, &r.run_id).join("model.bpk")))
        .collect();
    runs.extend(plan_methods(&shared, &bases)?);
    check_baseline(&shared, &runs)?;
    Ok(Plan {
        name: file.name,
        runs,
        source,
        pack,
    })
}

/// What every run of a sweep file shares: the file, the model and the training settings.
struct Shared<'a> {
    file: &'a SweepFile,
    origin: &'a str,
    bad: &'a dyn Fn(&str, String) -> Error,
    model: crate::model::ModelConfig,
    training: crate::config::TrainingConfig,
}

/// The `[base]` runs, one per seed, that the method runs of the same seed start from.
fn plan_bases(shared: &Shared) -> Result<Vec<PlannedRun>> {
    let (file, bad) = (shared.file, shared.bad);
    let Some(entry) = &file.base else {
        return Ok(Vec::new());
    };
    let mut entry = entry.clone();
    let base_training = match entry.remove("training") {
        Some(toml::Value::Table(t)) => Some(t),
        Some(_) => return Err(bad("base.training", "must be a table".into())),
        None => None,
    };
    let (spec, grid) = method_entry(&entry, "base", bad)?;
    if !grid.is_empty() {
        return Err(bad("base.grid", "a base is one method: no grid".into()));
    }
    let origin = shared.origin;
    let training = crate::config::merge(&shared.training, base_training, origin, "base.training")?;
    let mut runs = Vec::new();
    for &seed in &file.seeds {
        let config = RunConfig {
            setting: "pretrain".into(),
            task: file.task.clone(),
            model: shared.model.clone(),
            training: training.clone(),
            method: spec.clone(),
            seed,
            target: None,
            train_skills: None,
            eval_skills: None,
            init: file.init.clone(),
        };
        config.validate(origin).map_err(|e| match e {
            Error::Invalid {
                origin,
                field,
                message,
            } => Error::Invalid {
                origin,
                field: format!("base.{field}"),
                message,
            },
            other => other,
        })?;
        let task = config.task.build()?;
        let method = spec.build(task.as_ref(), "pretrain", None)?;
        let params = method.params();
        runs.push(PlannedRun {
            run_id: run_id("base-", method.name(), &params, seed),
            method: method.name().to_string(),
            params,
            seed,
            is_base: true,
            config,
        });
    }
    Ok(runs)
}

/// The method runs: each `[[methods]]` entry at each point of its grid, for each seed (from the
/// seed's base where the file has one).
fn plan_methods(shared: &Shared, bases: &BTreeMap<u64, PathBuf>) -> Result<Vec<PlannedRun>> {
    let (file, bad) = (shared.file, shared.bad);
    let mut runs = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, entry) in file.methods.iter().enumerate() {
        let field = format!("methods[{}]", i + 1);
        let (spec, grid) = method_entry(entry, &field, bad)?;
        if let Some((key, _)) = grid
            .iter()
            .find(|(_, v)| matches!(v, toml::Value::Array(a) if a.is_empty()))
        {
            return Err(bad(
                &format!("{field}.grid.{key}"),
                "is an empty list: give at least one value".into(),
            ));
        }
        for point in grid_points(&grid) {
            let mut spec = spec.clone();
            for (key, value) in &point {
                spec = set_method_field(&spec, &format!("{key}={value}"))
                    .map_err(|e| bad(&format!("{field}.grid.{key}"), e.to_string()))?;
            }
            for &seed in &file.seeds {
                let config = RunConfig {
                    setting: file.setting.clone().unwrap_or_else(|| "pretrain".into()),
                    task: file.task.clone(),
                    model: shared.model.clone(),
                    training: shared.training.clone(),
                    method: spec.clone(),
                    seed,
                    target: file.target,
                    train_skills: None,
                    eval_skills: None,
                    init: bases.get(&seed).cloned().or_else(|| file.init.clone()),
                };
                config.validate(shared.origin)?;
                let task = config.task.build()?;
                let method = spec.build(task.as_ref(), &config.setting, config.target)?;
                let params = method.params();
                let run_id = run_id("", method.name(), &params, seed);
                if seen.insert(run_id.clone(), ()).is_some() {
                    return Err(bad(
                        &field,
                        format!("run {run_id} appears twice in the plan"),
                    ));
                }
                runs.push(PlannedRun {
                    run_id,
                    method: method.name().to_string(),
                    params,
                    seed,
                    is_base: false,
                    config,
                });
            }
        }
    }
    Ok(runs)
}

/// The sweep file's `baseline` must name exactly one method of the plan.
fn check_baseline(shared: &Shared, runs: &[PlannedRun]) -> Result<()> {
    let Some(name) = &shared.file.baseline else {
        return Ok(());
    };
    let labels: Vec<String> = runs
        .iter()
        .filter(|r| !r.is_base)
        .map(|r| crate::results::method_label(&r.method, &r.params))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    match crate::stats::resolve_baseline(Some(name), labels.iter()) {
        Some(_) => Ok(()),
        None => Err((shared.bad)(
            "baseline",
            format!(
                "{name:?} names no one method of the sweep: one of {}",
                labels.join(", ")
            ),
        )),
    }
}

/// The `baseline` of the sweep file a results folder keeps (`DIR/sweep.toml`), if it has one and
/// `rows` hold that method: a sweep whose baseline runs have not finished yet is compared against
/// the default baseline, as is a metrics.csv named as a file (no sweep file beside it).
pub fn recorded_baseline(dir: &Path, rows: &[MetricsRow]) -> Result<Option<String>> {
    let path = dir.join("sweep.toml");
    if !path.exists() {
        return Ok(None);
    }
    let table: toml::Table = read_toml(&path)?;
    match table.get("baseline") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(crate::stats::find_method(rows, s)),
        Some(_) => Err(Error::Invalid {
            origin: path.display().to_string(),
            field: "baseline".into(),
            message: "must be a method label or name (a string)".into(),
        }),
    }
}

/// The folder of one run of a sweep.
pub fn run_dir(dir: &Path, run_id: &str) -> PathBuf {
    dir.join("runs").join(run_id)
}

/// Claims `dir` for the sweep: records the sweep file there, or checks that the one recorded is
/// the same (`force`: records the new one over it; runs whose config changed then start over,
/// since a checkpoint of another config is refused).
pub fn claim(dir: &Path, plan: &Plan, force: bool) -> Result<()> {
    crate::results::prepare_output_dir(dir, "--out")?;
    let recorded = dir.join("sweep.toml");
    match std::fs::read_to_string(&recorded) {
        Ok(text) if text != plan.source && !force => Err(Error::Invalid {
            origin: dir.display().to_string(),
            field: "sweep.toml".into(),
            message: "holds the results of another sweep file; use another --out (or --force)"
                .into(),
        }),
        Ok(text) if text != plan.source => write_atomic(&recorded, plan.source.as_bytes()),
        Ok(_) => Ok(()),
        Err(_) => write_atomic(&recorded, plan.source.as_bytes()),
    }
}

/// The status of a planned run from its folder: `finished`, `failed`, `stopped`, or `pending`.
pub fn run_status(dir: &Path, run_id: &str) -> String {
    run_status_in(&run_dir(dir, run_id))
}

/// The status recorded in a run folder's manifest (`pending` without one).
fn run_status_in(run_folder: &Path) -> String {
    read_manifest(run_folder)
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(String::from))
        .unwrap_or_else(|| "pending".into())
}

/// A run folder's manifest.json as JSON, if it has a readable one.
fn read_manifest(run_folder: &Path) -> Option<serde_json::Value> {
    read_json(&run_folder.join("manifest.json"))
}

/// A JSON file's value, if it is there and reads.
fn read_json(path: &Path) -> Option<serde_json::Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Whether a run is done: finished, or failed (a diverged run fails the same way again; pass
/// `retry_failed` to run it anyway).
pub fn is_done(dir: &Path, run_id: &str, retry_failed: bool) -> bool {
    match run_status(dir, run_id).as_str() {
        "finished" => true,
        "failed" => !retry_failed,
        _ => false,
    }
}

/// A finished run in one of `from` (sweep folders) that `run` can take over: the folder
/// `FROM/runs/RUN_ID` whose manifest is finished and whose config is `run`'s to the last field
/// (training is deterministic, so training it again would give the same metrics). The first
/// folder of `from` that has one wins; with it comes its manifest.
pub fn reusable(run: &PlannedRun, from: &[PathBuf]) -> Option<(PathBuf, serde_json::Value)> {
    // Both sides go through JSON text, so that floats compare as they were written.
    let wanted = serde_json::to_string(&run.config)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())?;
    from.iter().find_map(|d| {
        let folder = run_dir(d, &run.run_id);
        let manifest = read_manifest(&folder)?;
        (manifest.get("status").and_then(|s| s.as_str()) == Some("finished")
            && manifest.get("config") == Some(&wanted))
        .then_some((folder, manifest))
    })
}

/// The temp folder a run's copy by [`reuse`] goes through.
fn reuse_tmp(out: &Path, run_id: &str) -> PathBuf {
    out.join("runs").join(format!(".{run_id}.reuse.tmp"))
}

/// Opens (creating it empty if need be) the file an advisory lock is taken on.
fn open_lock_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// A run's advisory lock (`runs/.RUN_ID.lock`): whoever holds it alone may train, copy or tidy
/// the run's folder, so two processes pointed at one sweep folder (a requeued Slurm job while the
/// old one still runs, two shells) never train a run twice or tear its files. The OS releases it
/// when the holder exits, killed or not; the empty lock file stays.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes `run_id`'s lock in the sweep folder `out`, or `None` while another process holds it.
    pub fn try_take(out: &Path, run_id: &str) -> Result<Option<Self>> {
        let runs = out.join("runs");
        let path = runs.join(format!(".{run_id}.lock"));
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&runs).map_err(io)?;
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// Checks the `--reuse` folders: each must be a sweep folder (one with `runs/`).
pub fn check_reuse_dirs(from: &[PathBuf]) -> Result<()> {
    match from.iter().find(|d| !d.join("runs").is_dir()) {
        Some(d) => Err(Error::flag(
            "--reuse",
            format!("{} is not a sweep folder (it has no runs/)", d.display()),
        )),
        None => Ok(()),
    }
}

/// Copies into `out` each unfinished run of `runs` that a folder of `from` holds finished with the
/// same config ([`reusable`]): its files go to a temp folder that then replaces the run's folder
/// (and any checkpoint of it), so a killed copy leaves the run pending; its manifest gains
/// `reused_from`, the folder copied. Returns the run ids copied.
pub fn reuse(out: &Path, runs: &[&PlannedRun], from: &[PathBuf]) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for run in runs {
        if is_done(out, &run.run_id, false) {
            continue;
        }
        let Some((source, mut manifest)) = reusable(run, from) else {
            continue;
        };
        // Another process training or copying the run has it.
        let Some(_lock) = RunLock::try_take(out, &run.run_id)? else {
            continue;
        };
        let target = run_dir(out, &run.run_id);
        let tmp = reuse_tmp(out, &run.run_id);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for name in ["metrics.csv", "model.bpk"] {
            let file = source.join(name);
            if file.exists() {
                let bytes = std::fs::read(&file).map_err(io(&file))?;
                write_atomic(&tmp.join(name), &bytes)?;
            }
        }
        if let Some(fields) = manifest.as_object_mut() {
            fields.insert("reused_from".into(), source.display().to_string().into());
        }
        let text = serde_json::to_vec_pretty(&manifest).expect("a JSON value serializes");
        write_atomic(&tmp.join("manifest.json"), &text)?;
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        copied.push(run.run_id.clone());
    }
    Ok(copied)
}

/// Clears what killed processes left in a sweep folder: in the folders of `runs` (this process's
/// share of the plan), every temp file and stale checkpoint file, and the temp folder of a copy by
/// [`reuse`] that was cut off (the run may be trained instead this time); at the top, the temp
/// files of writers that are gone.
pub fn tidy(dir: &Path, runs: &[&PlannedRun]) {
    crate::results::remove_stale_temps(dir, false);
    for run in runs {
        // A run another process holds is not left over: its files are in use.
        let Ok(Some(_lock)) = RunLock::try_take(dir, &run.run_id) else {
            continue;
        };
        let _ = std::fs::remove_dir_all(reuse_tmp(dir, &run.run_id));
        let folder = run_dir(dir, &run.run_id);
        if folder.exists() {
            crate::train::tidy_run(&folder);
        }
    }
}

/// Rebuilds `DIR/metrics.csv` (every run's rows, in plan order) and `DIR/runs.csv` (one row per
/// run: status, wall time, backend, git revision, adapter, machine) from the run folders.
pub fn collect(dir: &Path, plan: &Plan) -> Result<(usize, usize)> {
    // One collector at a time: of two sweeps on one folder, the later one reads the run folders
    // after the earlier one wrote, so the last files written are the newest (never a partial
    // collect racing past a complete one).
    let lock_path = dir.join(".collect.lock");
    let lock = open_lock_file(&lock_path)?;
    lock.lock().map_err(|source| Error::Io {
        path: lock_path.clone(),
        source,
    })?;
    crate::results::remove_stale_temps(dir, false);
    let mut metrics = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let io = "writing CSV to memory cannot fail";
    metrics.write_record(METRICS_COLUMNS).expect(io);
    let mut runs = csv::Writer::from_writer(Vec::new());
    runs.write_record([
        "run_id",
        "method",
        "params",
        "seed",
        "status",
        "wall_time_s",
        "ms_per_step",
        "backend",
        "git_revision",
        "steps_done",
        "reason",
        "adapter",
        "machine",
    ])
    .expect(io);
    let mut n_rows = 0;
    for run in &plan.runs {
        let folder = run_dir(dir, &run.run_id);
        let status = run_status(dir, &run.run_id);
        let manifest = read_manifest(&folder).unwrap_or(serde_json::Value::Null);
        let field = |k: &str| {
            manifest
                .get(k)
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        runs.write_record([
            run.run_id.clone(),
            run.method.clone(),
            run.params.clone(),
            run.seed.to_string(),
            status.clone(),
            field("wall_time_s"),
            field("ms_per_step"),
            field("backend"),
            field("git_revision"),
            field("steps_done"),
            field("reason"),
            field("adapter"),
            field("machine"),
        ])
        .expect(io);
        if folder.join("metrics.csv").exists() {
            for mut row in read_metrics(&folder)? {
                if run.is_base {
                    row.setting = "base".into();
                }
                metrics.serialize(row).expect(io);
                n_rows += 1;
            }
        }
    }
    write_atomic(&dir.join("metrics.csv"), &metrics.into_inner().expect(io))?;
    write_atomic(&dir.join("runs.csv"), &runs.into_inner().expect(io))?;
    Ok((plan.runs.len(), n_rows))
}

/// The runs of shard K of N (1-based; all of them without a shard): the runs compared whose plan
/// index among them is K-1 modulo N, and the base runs of their seeds (a shard on its own machine
/// trains the bases it needs; shards sharing one folder should not run at the same time).
pub fn shard_runs(plan: &Plan, shard: Option<(usize, usize)>) -> Vec<&PlannedRun> {
    let compared: Vec<&PlannedRun> = plan
        .runs
        .iter()
        .filter(|r| !r.is_base)
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|(k, n)| i % n == k - 1))
        .map(|(_, r)| r)
        .collect();
    let seeds: std::collections::BTreeSet<u64> = compared.iter().map(|r| r.seed).collect();
    plan.runs
        .iter()
        .filter(|r| r.is_base && seeds.contains(&r.seed))
        .chain(compared)
        .collect()
}

/// Parses `--shard K/N` (1 ≤ K ≤ N).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::flag("--shard", format!("'{s}' is not K/N with 1 ≤ K ≤ N"));
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// A sweep's estimated duration from a short measurement on the chosen device.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub ms_per_step: f64,
    pub ms_per_eval: f64,
    /// How many copies were timed at once: as many runs as the sweep trains at once.
    pub at_once: usize,
    /// Wall time of the runs, `at_once` at a time (the curricula's pool scoring not included).
    pub seconds: f64,
}

/// Times 3 training steps (after one warm-up) and one evaluation of the first run's model, as many
/// copies at once as the sweep will train runs at once (`jobs`, at most the runs), so that the
/// times hold their contention for the cores or the GPU; then scales the slowest copy's times to
/// the runs' steps and evaluations, that many runs at a time.
pub fn estimate(
    runs: &[&PlannedRun],
    selected: &crate::device::Selected,
    jobs: usize,
) -> Result<Option<Estimate>> {
    let Some(first) = runs.first() else {
        return Ok(None);
    };
    let at_once = jobs.min(runs.len()).max(1);
    let speeds = std::thread::scope(|scope| {
        let copies: Vec<_> = (0..at_once)
            .map(|_| scope.spawn(|| crate::train::measure_speed(&first.config, selected, 1, 3, 1)))
            .collect();
        copies
            .into_iter()
            .map(|c| c.join().expect("a speed measurement does not panic"))
            .collect::<Result<Vec<_>>>()
    })?;
    let slowest = |f: fn(&crate::train::Speed) -> f64| speeds.iter().map(f).fold(0.0, f64::max);
    let (ms_per_step, ms_per_eval) = (slowest(|s| s.ms_per_step), slowest(|s| s.ms_per_eval));
    let (step_time, eval_time) = (ms_per_step / 1000.0, ms_per_eval / 1000.0);
    let total: f64 = runs
        .iter()
        .map(|r| {
            let t = &r.config.training;
            t.steps as f64 * step_time + (t.steps / t.eval_every + 1) as f64 * eval_time
        })
        .sum();
    Ok(Some(Estimate {
        ms_per_step,
        ms_per_eval,
        at_once,
        seconds: total / at_once as f64,
    }))
}

/// What a running sweep reports (the CLI draws its progress bars from it).
pub enum SweepEvent<'a> {
    /// A run started (or resumed).
    Started { run: &'a PlannedRun },
    /// A run finished an optimizer step.
    Step { run: &'a PlannedRun, step: u64 },
    /// A run ended (finished or failed: see the manifest).
    Done {
        run: &'a PlannedRun,
        manifest: &'a crate::train::Manifest,
    },
    /// A run another process is training (it holds the run's lock) or has finished since this
    /// sweep planned: left to it.
    Elsewhere { run: &'a PlannedRun },
}

/// Trains `runs` into `out`, `jobs` at a time, one thread each, taking runs from a shared queue in
/// plan order: the base runs first, all of them, then the others. A diverging run is recorded as
/// failed and the others go on (a run whose base failed then fails to load it: an error); an error
/// (a file that cannot be written, ...) stops the sweep after the runs in flight and is returned.
/// With `pack` > 1 a job takes up to `pack` runs that can share a pack ([`pack_key`]) and
/// trains them as one model (issue 24), one thread per run.
pub fn execute(
    out: &Path,
    runs: &[&PlannedRun],
    selected: &crate::device::Selected,
    jobs: usize,
    pack: usize,
    on_event: &(dyn Fn(SweepEvent) + Sync),
) -> Result<()> {
    let (bases, others): (Vec<&PlannedRun>, Vec<&PlannedRun>) =
        runs.iter().copied().partition(|r| r.is_base);
    execute_queue(out, &packs(&bases, pack), selected, jobs, on_event)?;
    execute_queue(out, &packs(&others, pack), selected, jobs, on_event)
}

/// What runs must share to be trained as one pack, or `None` for a run that trains alone: a
/// scratch model without dropout, of one shape (a prefix LM or not); one task; the settings of
/// every optimizer step (step budget, schedule, batch, loss, clipping, decay); a method without a
/// reference run (DoReMi weighs its steps by one); answers of one token (a JSONL task under the
/// answer loss may have longer ones).
pub fn pack_key(run: &PlannedRun) -> Option<String> {
    let c = &run.config;
    if c.model.kind != crate::model::ModelKind::Scratch || c.model.dropout > 0.0 {
        return None;
    }
    if matches!(c.task, skillit_synthetic::TaskSpec::Jsonl { .. })
        && c.training.loss == crate::config::LossKind::Answer
    {
        return None;
    }
    let task = c.task.build().ok()?;
    if c.method
        .build(task.as_ref(), &c.setting, c.target)
        .ok()?
        .reference()
        .is_some()
    {
        return None;
    }
    let step = crate::config::TrainingConfig {
        eval_every: 0,
        steps_per_round: 0,
        val_per_skill: 0,
        ..c.training.clone()
    };
    serde_json::to_string(&(&c.model, &c.task, &step)).ok()
}

/// `runs` as the queue's items: with `pack` > 1, the runs of one [`pack_key`] in plan order in
/// groups of up to `pack`, each group placed where its first run was; otherwise one run each.
fn packs<'a>(runs: &[&'a PlannedRun], pack: usize) -> Vec<Vec<&'a PlannedRun>> {
    let mut items: Vec<Vec<&PlannedRun>> = Vec::new();
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for &run in runs {
        let key = (pack > 1).then(|| pack_key(run)).flatten();
        match key.as_ref().and_then(|k| open.get(k)) {
            Some(&i) if items[i].len() < pack => items[i].push(run),
            _ => {
                if let Some(k) = key {
                    open.insert(k, items.len());
                }
                items.push(vec![run]);
            }
        }
    }
    items
}

/// The step a run folder's checkpoint resumes from (0 without one).
fn resume_step(out: &Path, run_id: &str) -> u64 {
    let paths = crate::train::RunPaths {
        dir: run_dir(out, run_id),
    };
    read_json(&paths.checkpoint_state())
        .and_then(|v| v["step"].as_u64())
        .unwrap_or(0)
}

/// Trains one queue item: takes its runs' locks (a run held by another process, or finished
/// since, is left to it), then trains the runs that resume from the same step as one pack, each
/// in its own thread (a lone run in this thread, unpacked).
fn train_item(
    out: &Path,
    item: &[&PlannedRun],
    selected: &crate::device::Selected,
    on_event: &(dyn Fn(SweepEvent) + Sync),
) -> Result<()> {
    let mut locks = Vec::new();
    let mut by_step: BTreeMap<u64, Vec<&PlannedRun>> = BTreeMap::new();
    for &run in item {
        let lock = RunLock::try_take(out, &run.run_id)?;
        // Held, or finished by the holder before this process took it.
        if lock.is_none() || run_status(out, &run.run_id) == "finished" {
            on_event(SweepEvent::Elsewhere { run });
            continue;
        }
        locks.push(lock);
        by_step
            .entry(resume_step(out, &run.run_id))
            .or_default()
            .push(run);
    }
    for group in by_step.values() {
        let pack = (group.len() > 1).then(|| {
            let device = selected.device.clone().autodiff();
            crate::train::Pack::new(group.len(), &group[0].config.training, &device)
        });
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = group
                .iter()
                .enumerate()
                .map(|(r, &run)| {
                    let slot = pack.as_ref().map(|p| p.slot(r));
                    scope.spawn(move || train_run(out, run, selected, slot, on_event))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>>>()?;
    }
    drop(locks);
    Ok(())
}

/// Trains one run (in its pack's slot when given), reporting its events.
fn train_run(
    out: &Path,
    run: &PlannedRun,
    selected: &crate::device::Selected,
    slot: Option<crate::train::PackSlot>,
    on_event: &(dyn Fn(SweepEvent) + Sync),
) -> Result<()> {
    on_event(SweepEvent::Started { run });
    let dir = run_dir(out, &run.run_id);
    let manifest = crate::train::train_in_pack(
        &run.config,
        selected,
        &dir,
        Some(&run.run_id),
        slot,
        &mut |p| {
            if let crate::train::Progress::Step { step, .. } = p {
                on_event(SweepEvent::Step { run, step });
            }
            crate::train::Flow::Continue
        },
    )?;
    on_event(SweepEvent::Done {
        run,
        manifest: &manifest,
    });
    Ok(())
}

/// Trains the queue's items, `jobs` at a time, in order (see [`execute`]).
fn execute_queue(
    out: &Path,
    items: &[Vec<&PlannedRun>],
    selected: &crate::device::Selected,
    jobs: usize,
    on_event: &(dyn Fn(SweepEvent) + Sync),
) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()) {
            scope.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) {
                    if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                        break;
                    }
                    if let Err(e) = train_item(out, item, selected, on_event) {
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}
