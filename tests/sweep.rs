//! `skillit sweep` end to end: the plan, the runs, resuming, the combined results, and refusing a
//! folder of another sweep.

use std::path::Path;
use std::process::{Command, Output};

fn skillit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(args)
        .output()
        .expect("run skillit")
}

const SWEEP: &str = r#"name = "tiny"
seeds = [0, 1]
[task]
name = "lego"
k = 3
[model]
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 64
[training]
steps = 20
warmup = 5
steps_per_round = 10
eval_every = 10
val_per_skill = 20
[[methods]]
name = "stratified"
[[methods]]
name = "no_graph"
grid = { eta = [0.1, 0.5] }
"#;

/// Runs `skillit sweep FILE --out OUT`, which must succeed, and reads the combined metrics.
fn sweep_ok(file: &str, out: &Path) -> Vec<skillit::results::MetricsRow> {
    let run = skillit(&["sweep", file, "--out", &out.display().to_string()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    skillit::results::read_metrics(out).unwrap()
}

/// The tiny sweep with each `(from, to)` replaced in turn.
fn tiny(edits: &[(&str, &str)]) -> String {
    edits
        .iter()
        .fold(SWEEP.to_string(), |text, (from, to)| text.replace(from, to))
}

/// Runs `skillit sweep FILE --out OUT --pack R --jobs 1`, which must succeed, and reads the
/// combined metrics.
fn sweep_packed(file: &str, out: &Path, pack: usize) -> Vec<skillit::results::MetricsRow> {
    let out_arg = out.display().to_string();
    let pack = pack.to_string();
    let o = skillit(&[
        "sweep", file, "--out", &out_arg, "--pack", &pack, "--jobs", "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    skillit::results::read_metrics(out).unwrap()
}

/// A packed sweep's rows are the unpacked one's: the same rows in the same order, accuracies
/// exactly, losses and mixture weights within float rounding of the batched arithmetic.
fn assert_rows_match(
    alone: &[skillit::results::MetricsRow],
    packed: &[skillit::results::MetricsRow],
) {
    assert_eq!(alone.len(), packed.len());
    for (a, p) in alone.iter().zip(packed) {
        let at = format!("{} step {} skill {}", a.run_id, a.step, a.skill);
        assert_eq!((&a.run_id, a.step, a.skill), (&p.run_id, p.step, p.skill));
        assert_eq!(a.accuracy, p.accuracy, "{at}");
        assert!((a.loss - p.loss).abs() < 1e-4, "{at}");
        assert!((a.weight - p.weight).abs() < 1e-4, "{at}");
    }
}

/// A JSON file (a manifest, a checkpoint's state) as a JSON value.
fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn a_sweep_runs_resumes_and_collects() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tiny.toml", SWEEP);
    let out = dir.path().join("out");
    let out_s = out.display().to_string();

    // The plan: (stratified + 2 grid points of no_graph) × 2 seeds = 6 runs.
    let plan = skillit(&["sweep", &file, "--out", &out_s, "--dry-run"]);
    assert!(plan.status.success());
    let text = String::from_utf8(plan.stdout).unwrap();
    assert!(text.starts_with("sweep tiny: 6 runs"), "{text}");
    assert!(
        text.contains("estimated time for the 6 unfinished runs"),
        "{text}"
    );
    assert!(text.contains("no_graph-eta=0.5-window=3-unit=evaluations-s1"));
    assert!(!out.exists(), "a dry run writes nothing");

    let rows = sweep_ok(&file, &out);
    // 6 runs × 3 evaluations (steps 0, 10, 20) × 3 skills.
    assert_eq!(rows.len(), 6 * 3 * 3);
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 7);
    assert_eq!(runs.matches(",finished,").count(), 6);
    // Every run records the machine it ran on (CPU model, logical CPUs, OS, architecture).
    assert!(runs.lines().next().unwrap().ends_with(",adapter,machine"));
    assert_eq!(
        runs.matches(&skillit::device::machine()).count(),
        6,
        "{runs}"
    );

    // Rerunning skips the finished runs: their metrics stay byte for byte.
    let before = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let manifest = out.join("runs/stratified-s0/manifest.json");
    let stamp = std::fs::metadata(&manifest).unwrap().modified().unwrap();
    assert!(skillit(&["sweep", &file, "--out", &out_s]).status.success());
    assert_eq!(
        std::fs::metadata(&manifest).unwrap().modified().unwrap(),
        stamp
    );
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.csv")).unwrap(),
        before
    );

    // A lost combined file comes back from the run folders.
    std::fs::remove_file(out.join("metrics.csv")).unwrap();
    assert!(skillit(&["collect", &out_s]).status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.csv")).unwrap(),
        before
    );

    // The comparison reads the sweep's folder directly.
    let cmp = skillit(&["compare", &out_s, "--format", "csv"]);
    assert!(cmp.status.success());
    assert_eq!(
        String::from_utf8(cmp.stdout).unwrap().lines().count(),
        1 + 3
    );

    // Another sweep file is refused for this folder.
    let other = write(
        dir.path(),
        "other.toml",
        &tiny(&[("seeds = [0, 1]", "seeds = [0, 1, 2]")]),
    );
    let refused = skillit(&["sweep", &other, "--out", &out_s]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another sweep file"));
    // Unless forced: the new file's extra seed runs, the others are kept.
    let forced = skillit(&["sweep", &other, "--out", &out_s, "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(
        std::fs::metadata(&manifest).unwrap().modified().unwrap(),
        stamp
    );
    assert_eq!(
        skillit::results::read_metrics(&out).unwrap().len(),
        9 * 3 * 3
    );
}

#[test]
fn reuse_copies_the_finished_runs_of_the_same_config_and_trains_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let first_s = first.display().to_string();
    let first_rows = sweep_ok(&write(dir.path(), "tiny.toml", SWEEP), &first);

    // A second sweep: stratified and no_graph η 0.5 as before (4 runs to reuse), η 0.8 new (2).
    let second_file = write(
        dir.path(),
        "second.toml",
        &tiny(&[
            ("name = \"tiny\"", "name = \"second\""),
            ("eta = [0.1, 0.5]", "eta = [0.5, 0.8]"),
        ]),
    );
    let second = dir.path().join("second");
    let second_s = second.display().to_string();
    let with_reuse = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            &second_file,
            "--out",
            &second_s,
            "--reuse",
            &first_s,
        ];
        args.extend_from_slice(extra);
        skillit(&args)
    };
    let text = String::from_utf8(with_reuse(&["--dry-run"]).stdout).unwrap();
    let source = first.join("runs/no_graph-eta=0.5-window=3-unit=evaluations-s1");
    assert!(
        text.contains(&format!("reuse {}", source.display())),
        "{text}"
    );
    assert!(
        text.contains("estimated time for the 2 unfinished runs"),
        "{text}"
    );

    let run = with_reuse(&[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("reused 4 finished runs of the same config: stratified-s0, stratified-s1"),
        "{stderr}"
    );
    let rows = skillit::results::read_metrics(&second).unwrap();
    // 6 runs × 3 evaluations × 3 skills; the reused runs' rows are the first sweep's, to the bit.
    assert_eq!(rows.len(), 6 * 3 * 3);
    let shared = |rows: &[skillit::results::MetricsRow]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.method == "stratified" || r.params.contains("eta=0.5"))
            .map(|r| format!("{r:?}"))
            .collect()
    };
    assert_eq!(shared(&rows), shared(&first_rows));
    assert_eq!(shared(&rows).len(), 4 * 3 * 3);
    let manifest =
        json(&second.join("runs/no_graph-eta=0.5-window=3-unit=evaluations-s1/manifest.json"));
    assert_eq!(manifest["reused_from"], source.display().to_string());
    assert_eq!(manifest["status"], "finished");
    assert!(second
        .join("runs/no_graph-eta=0.8-window=3-unit=evaluations-s0/manifest.json")
        .exists());
    // The temp folder of a copy that a kill cut off goes when the sweep next starts, though the
    // run it was for is trained (here: already finished) instead of copied.
    let stale = second.join("runs/.no_graph-eta=0.8-window=3-unit=evaluations-s0.reuse.tmp");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("metrics.csv"), "run_id\n").unwrap();
    assert!(with_reuse(&[]).status.success());
    assert!(!stale.exists());

    // A config that differs in one field (the steps) is trained, not reused.
    let third_file = write(
        dir.path(),
        "third.toml",
        &tiny(&[("steps = 20", "steps = 30")]),
    );
    let third = dir.path().join("third");
    let run = skillit(&[
        "sweep",
        &third_file,
        "--out",
        &third.display().to_string(),
        "--reuse",
        &first_s,
        "--dry-run",
    ]);
    let text = String::from_utf8(run.stdout).unwrap();
    assert!(!text.contains("reuse "), "{text}");
    assert!(
        text.contains("estimated time for the 6 unfinished runs"),
        "{text}"
    );
}

#[test]
fn the_report_tests_against_the_baseline_the_sweep_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("baseline = \"no_graph[eta=0.5;window=3;unit=evaluations]\"\n{SWEEP}");
    let out = dir.path().join("out");
    sweep_ok(&write(dir.path(), "tiny.toml", &text), &out);
    let out_s = out.display().to_string();
    // `skillit report` on the folder, which must succeed: its report.md.
    let report_md = || {
        let report = skillit(&["report", &out_s]);
        assert!(
            report.status.success(),
            "{}",
            String::from_utf8_lossy(&report.stderr)
        );
        std::fs::read_to_string(out.join("report.md")).unwrap()
    };
    let md = report_md();
    assert!(
        md.contains("mean over skills; tests against no_graph[eta=0.5;window=3;unit=evaluations]"),
        "{md}"
    );
    assert!(!md.contains("no baseline, no tests"), "{md}");
    // `compare` on the folder takes the same baseline unless --baseline names another.
    let compare_csv = |extra: &[&str]| {
        let mut args = vec!["compare", &out_s, "--format", "csv"];
        args.extend_from_slice(extra);
        String::from_utf8(skillit(&args).stdout).unwrap()
    };
    let csv = compare_csv(&[]);
    assert_eq!(
        csv.matches(",no_graph[eta=0.5;window=3;unit=evaluations],")
            .count(),
        3,
        "{csv}"
    );
    let csv = compare_csv(&["--baseline", "stratified"]);
    assert_eq!(csv.matches(",stratified,").count(), 3, "{csv}");
    // --method keeps the methods named, and Holm's correction runs over them alone: with one
    // method tested, the corrected p is its Welch p (columns 14 and 16).
    let csv = compare_csv(&[
        "--method",
        "stratified",
        "--method",
        "no_graph[eta=0.1;window=3;unit=evaluations]",
    ]);
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(rows[0][6], "stratified");
    assert_eq!(rows[1][6], "no_graph[eta=0.1;window=3;unit=evaluations]");
    assert_eq!(rows[1][13], rows[1][15], "{csv}");
    // A sweep whose baseline runs have not finished (their rows dropped from metrics.csv) is
    // reported against the default baseline, as `compare` does, instead of failing.
    let metrics = out.join("metrics.csv");
    let kept: String = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("no_graph-eta=0.5"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&metrics, kept).unwrap();
    let md = report_md();
    assert!(
        md.contains("mean over skills; tests against stratified"),
        "{md}"
    );
    assert!(
        !md.contains("no_graph[eta=0.5;window=3;unit=evaluations]"),
        "{md}"
    );
}

#[test]
fn a_base_stage_is_trained_first_and_every_run_starts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    // The tiny sweep with a base: stratified for 30 steps, one per seed, then the 3 methods.
    let text = format!(
        "{SWEEP}[base]\nname = \"stratified\"\n[base.training]\nsteps = 30\nsteps_per_round = 30\n"
    );
    let file = write(dir.path(), "base.toml", &text);
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    let plan = skillit(&["sweep", &file, "--out", &out_s, "--dry-run"]);
    let listing = String::from_utf8(plan.stdout).unwrap();
    assert!(listing.starts_with("sweep tiny: 8 runs"), "{listing}");
    assert!(listing.contains("base-stratified-s1"), "{listing}");

    let rows = sweep_ok(&file, &out);
    // 2 bases × 4 evaluations (0, 10, 20, 30) × 3 skills, then 6 runs × 3 × 3.
    assert_eq!(rows.len(), 2 * 4 * 3 + 6 * 3 * 3);
    let base_rows: Vec<_> = rows.iter().filter(|r| r.setting == "base").collect();
    assert_eq!(base_rows.len(), 2 * 4 * 3);
    assert!(base_rows.iter().all(|r| r.run_id.starts_with("base-")));
    // Every run starts from its seed's base: its step-0 evaluation is the base's last one, to
    // the bit (the same weights on the same validation set), and its manifest names the base.
    for r in rows
        .iter()
        .filter(|r| r.setting == "pretrain" && r.step == 0)
    {
        let base = base_rows
            .iter()
            .find(|b| b.seed == r.seed && b.step == 30 && b.skill == r.skill)
            .unwrap();
        assert_eq!(r.loss, base.loss, "{} skill {}", r.run_id, r.skill);
        assert_eq!(r.accuracy, base.accuracy);
    }
    let manifest = std::fs::read_to_string(
        out.join("runs/no_graph-eta=0.1-window=3-unit=evaluations-s1/manifest.json"),
    )
    .unwrap();
    assert!(manifest.contains("base-stratified-s1"), "{manifest}");
    // The base's cost is in runs.csv beside the others.
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.matches(",finished,").count(), 8);
    assert!(runs.contains("base-stratified-s0,stratified,"), "{runs}");
    // compare shows the base apart: one group of 1 method, one of the 3 compared.
    let cmp = skillit(&["compare", &out_s, "--format", "csv"]);
    let table = String::from_utf8(cmp.stdout).unwrap();
    assert_eq!(table.lines().count(), 1 + 1 + 3, "{table}");

    // A shard trains the bases of its own seeds and no others.
    let shard = skillit(&[
        "sweep",
        &file,
        "--out",
        &out_s,
        "--dry-run",
        "--shard",
        "2/6",
    ]);
    let listing = String::from_utf8(shard.stdout).unwrap();
    assert!(listing.starts_with("sweep tiny: 2 runs"), "{listing}");
    assert!(listing.contains("base-stratified-s1") && listing.contains("stratified-s1"));
}

#[test]
fn the_shipped_sweeps_are_valid_plans() {
    let plan_of = |file: &str| skillit::sweep::plan(Path::new(file), Path::new("unused")).unwrap();
    // Every sweep in sweeps/ expands and validates (dry run): the paper's experiments.
    for (file, runs) in [
        ("sweeps/smoke.toml", 8),
        ("sweeps/smoke_scratch.toml", 8),
        ("sweeps/lego_pretrain.toml", 35),
        ("sweeps/addition_pretrain.toml", 35),
        ("sweeps/lego_finetune.toml", 15),
        ("sweeps/addition_finetune.toml", 15),
        ("sweeps/lego_ablations.toml", 60),
        ("sweeps/ordered_skills.toml", 10),
        // 3 bases + 3 methods × 3 seeds.
        ("sweeps/addition_base.toml", 12),
        // From the committed base: 2 methods × 3 seeds.
        ("sweeps/base_lego.toml", 6),
        // From bases/chains8p: 2 methods × 3 seeds, and target-only on s4 × 3 seeds.
        ("sweeps/base_lego_chains.toml", 6),
        ("sweeps/base_lego_target_s4.toml", 3),
        // The same model from scratch: stratified × 3 seeds.
        ("sweeps/scratch_lego_prefix.toml", 3),
        // Addition from bases/chains8p: stratified × 3 seeds.
        ("sweeps/base_addition.toml", 3),
        // The paper's experiments from bases/chains8p (issue 25).
        ("sweeps/base_lego_pretrain.toml", 35),
        ("sweeps/base_lego_finetune.toml", 15),
        ("sweeps/base_ordered_skills.toml", 10),
        ("sweeps/base_lego_ablations.toml", 60),
        // Skill-It with the published graph and the three learned from the base × 5 seeds.
        ("sweeps/base_lego_graphs.toml", 20),
    ] {
        let plan = plan_of(file);
        assert_eq!(plan.runs.len(), runs, "{file}");
        // Run ids are stable: planning twice gives the same ids in the same order.
        let again = plan_of(file);
        let ids =
            |p: &skillit::sweep::Plan| p.runs.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&plan), ids(&again));
    }
    // A sweep's `init = "bases/NAME"` starts every run from the base, with the base's model.
    let plan = plan_of("sweeps/base_lego.toml");
    for run in &plan.runs {
        let config = &run.config;
        assert_eq!(config.init.as_deref(), Some(Path::new("bases/recall8")));
        assert_eq!((config.model.n_layers, config.model.conv_kernel), (8, 4));
    }
    // The paper's 7 methods from the base share one pack key: a GPU trains them as one pack.
    let plan = plan_of("sweeps/base_lego_pretrain.toml");
    let keys: Vec<Option<String>> = plan.runs.iter().map(skillit::sweep::pack_key).collect();
    assert!(keys[0].is_some() && keys.iter().all(|k| k == &keys[0]));
    // The `count` runs of `from` whose ids start with `prefix` are in `of` too, with the same
    // configs: `--reuse` copies them from one folder to the other.
    let twins = |of: &str, from: &skillit::sweep::Plan, prefix: &str, count: usize| {
        let of = plan_of(of);
        let runs: Vec<_> = from
            .runs
            .iter()
            .filter(|r| r.run_id.starts_with(prefix))
            .collect();
        assert_eq!(runs.len(), count, "{prefix}");
        for run in runs {
            let twin = of.runs.iter().find(|a| a.run_id == run.run_id);
            assert_eq!(twin.map(|a| &a.config), Some(&run.config), "{}", run.run_id);
        }
    };
    // Its Skill-It runs are the ablations' at η = 0.5; base_lego_chains' stratified seeds 0..2
    // (the issue-23 runs) are its own.
    twins("sweeps/base_lego_ablations.toml", &plan, "skill_it", 5);
    // ... and the published graph's runs of the learned-graphs sweep.
    twins("sweeps/base_lego_graphs.toml", &plan, "skill_it", 5);
    let chains = plan_of("sweeps/base_lego_chains.toml");
    twins("sweeps/base_lego_pretrain.toml", &chains, "stratified", 3);
    // The main job starts from the base LEGO's chain is learned from, a prefix LM.
    let plan = plan_of("sweeps/smoke.toml");
    for run in &plan.runs {
        let config = &run.config;
        assert_eq!(config.init.as_deref(), Some(Path::new("bases/chains8p")));
        assert!(config.model.prefix_lm);
        assert_eq!(config.model.n_layers, 8);
    }
}

#[test]
fn a_sweep_killed_mid_run_ends_as_if_never_killed() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    // Longer runs than the other tests, so that the kill lands inside a run.
    let file = write(
        dir.path(),
        "kill.toml",
        &tiny(&[
            ("steps = 20\n", "steps = 400\n"),
            ("steps_per_round = 10", "steps_per_round = 50"),
        ]),
    );
    let whole = dir.path().join("whole").display().to_string();
    let killed = dir.path().join("killed").display().to_string();
    assert!(skillit(&["sweep", &file, "--out", &whole, "--jobs", "1"])
        .status
        .success());
    // Start, wait for the first checkpoint of the first run, SIGKILL, restart.
    let mut child = Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(["sweep", &file, "--out", &killed, "--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = Path::new(&killed).join("runs/stratified-s0/checkpoint/state.json");
    let start = std::time::Instant::now();
    while !state.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        state.exists(),
        "the run reached its first checkpoint before the kill"
    );
    let checkpoint = json(&state);
    assert!(skillit(&["sweep", &file, "--out", &killed, "--jobs", "1"])
        .status
        .success());
    let read = |d: &str| std::fs::read_to_string(Path::new(d).join("metrics.csv")).unwrap();
    assert_eq!(read(&whole), read(&killed));
    // The resumed run's wall time counts the killed process's work up to its checkpoint (which
    // records it) and the new process's: at least the checkpoint's plus the training and
    // evaluation time added since.
    let manifest = json(&Path::new(&killed).join("runs/stratified-s0/manifest.json"));
    let time = |k: &str| manifest[k].as_f64().unwrap();
    let at_kill = |k: &str| checkpoint[k].as_f64().unwrap_or(f64::NAN);
    assert!(at_kill("wall_time") >= at_kill("train_time") + at_kill("eval_time"));
    assert!(
        time("wall_time_s")
            >= at_kill("wall_time")
                + (time("train_time_s") - at_kill("train_time"))
                + (time("eval_time_s") - at_kill("eval_time")),
        "{manifest}\n{checkpoint}"
    );
}

#[test]
fn jobs_and_shards_give_the_same_results_as_one_sequential_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tiny.toml", SWEEP);
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec!["sweep", &file, "--out", out];
        args.extend_from_slice(extra);
        let o = skillit(&args);
        assert!(
            o.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let one = dir.path().join("one").display().to_string();
    let two = dir.path().join("two").display().to_string();
    let sharded = dir.path().join("sharded").display().to_string();
    run(&one, &["--jobs", "1"]);
    run(&two, &["--jobs", "2"]);
    // Two machines' shards into one folder (here: one after the other).
    run(&sharded, &["--shard", "1/2", "--jobs", "1"]);
    let half = std::fs::read_to_string(Path::new(&sharded).join("runs.csv")).unwrap();
    assert_eq!(
        half.matches(",finished,").count(),
        3,
        "shard 1/2 runs runs 1, 3, 5"
    );
    assert_eq!(half.matches(",pending,").count(), 3);
    run(&sharded, &["--shard", "2/2", "--jobs", "1"]);
    let read = |d: &str| std::fs::read_to_string(Path::new(d).join("metrics.csv")).unwrap();
    assert_eq!(read(&one), read(&two), "--jobs does not change any number");
    assert_eq!(
        read(&one),
        read(&sharded),
        "shards add up to the whole sweep"
    );
    for bad in ["0/2", "3/2", "2", "a/b"] {
        let o = skillit(&["sweep", &file, "--out", &one, "--shard", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--shard"));
    }
}

#[test]
fn bad_sweep_files_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (SWEEP.replace("seeds = [0, 1]", "seeds = []"), "seeds"),
        (
            SWEEP.replace("name = \"no_graph\"", "name = \"nonsense\""),
            "methods",
        ),
        (
            SWEEP.replace("eta = [0.1, 0.5]", "eta = [0.1, -0.5]"),
            "method.eta",
        ),
        (SWEEP.replace("steps = 20", "steps = 0"), "training.steps"),
        (
            SWEEP.replace("name = \"tiny\"\n", ""),
            "missing field `name`",
        ),
        (
            SWEEP.replace("eta = [0.1, 0.5]", "eta = []"),
            "methods[2].grid.eta",
        ),
        (
            SWEEP.replace("seeds = [0, 1]", "seeds = [0, \"one\"]"),
            "line 2",
        ),
        (
            SWEEP.replace("seeds = [0, 1]", "seeds = [0, 1]\nlearning = 3"),
            "unknown field `learning`",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.toml"), text);
        let out = dir.path().join(format!("out{i}"));
        let o = skillit(&["sweep", &file, "--out", &out.display().to_string()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{needle}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "'{stderr}' lacks '{needle}'");
        assert!(!out.exists(), "nothing written for a bad sweep");
    }
}

#[test]
fn two_sweeps_on_one_folder_train_each_run_once() {
    // Two processes started on the same folder at once (a requeued job beside the old one): each
    // run is trained by exactly one of them, the other leaves it (its lock is held, or it has
    // finished by the time the lock is free), and the combined results are whole. The 6 runs of
    // the tiny sweep at 200 steps (long enough for the two to overlap), one job each.
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "s.toml",
        &tiny(&[("steps = 20", "steps = 200")]),
    );
    let out = dir.path().join("out");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_skillit"))
            .args(["sweep", &file, "--out", &out.display().to_string()])
            .args(["--jobs", "1"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let trained_here = |child: std::process::Child| {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("trained "))
            .unwrap_or_else(|| panic!("no summary line: {stderr}"));
        let n = line["trained ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap();
        (n, stderr)
    };
    let ((na, log_a), (nb, log_b)) = (trained_here(a), trained_here(b));
    // A run the other process finished before this one planned is not planned again, one it
    // holds or finished since is left: together they trained each run once.
    assert_eq!(na + nb, 6, "each of the 6 runs trained once: {na} + {nb}");
    // stderr is not a terminal, so the progress bars draw nothing: each process logs plain
    // lines instead, `[HH:MM:SS] RUN: started` and `RUN: finished, 200 steps, …` for each run it
    // trained, and each run is logged finished by exactly one of the two.
    for (n, log) in [(na, &log_a), (nb, &log_b)] {
        assert_eq!(log.matches(": started\n").count(), n, "{log}");
        assert_eq!(log.matches(": finished, 200 steps, ").count(), n, "{log}");
    }
    for run in ["stratified-s0", "stratified-s1"] {
        let line = format!("] {run}: finished, 200 steps, ");
        let times = log_a.matches(&line).count() + log_b.matches(&line).count();
        assert_eq!(times, 1, "{run}: {log_a}\n{log_b}");
    }
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.matches(",finished,").count(), 6, "{runs}");
    // The combined results written last are whole: 21 evaluations × 3 skills × 6 runs.
    assert_eq!(
        skillit::results::read_metrics(&out).unwrap().len(),
        21 * 3 * 6
    );
}

#[test]
fn a_packed_sweep_records_what_the_unpacked_one_does() {
    // The tiny sweep's 6 runs share a pack key (one model, task and schedule): `--pack 4` trains
    // them as packs of 4 and 2, `[execution] pack = 6` as one; every row matches the unpacked
    // sweep's (accuracies exactly, losses and Skill-It's loss-driven weights within float
    // rounding of the batched arithmetic).
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tiny.toml", SWEEP);
    let packed_file = write(
        dir.path(),
        "tiny_packed.toml",
        &format!("{SWEEP}\n[execution]\npack = 6\n"),
    );
    let alone = sweep_ok(&file, &dir.path().join("alone"));
    let out = dir.path().join("four");
    let four = sweep_packed(&file, &out, 4);
    let six = sweep_ok(&packed_file, &dir.path().join("six"));
    for packed in [&four, &six] {
        assert_rows_match(&alone, packed);
    }
    // Each packed run records the steps it took in a pack; an unpacked one records none.
    let run = out.join("runs/stratified-s0");
    assert_eq!(json(&run.join("manifest.json"))["packed_steps"], 20);
    let alone_run = dir.path().join("alone/runs/stratified-s0/manifest.json");
    assert!(json(&alone_run).get("packed_steps").is_none());
    // `skillit rerun` retrains it alone and does not call the rounding differences a failure.
    let o = skillit(&["rerun", &run.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = out.display().to_string();
    let o = skillit(&["sweep", &file, "--out", &out, "--pack", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pack"));
}

#[test]
fn runs_from_a_prefix_lm_base_pack_and_record_what_they_do_alone() {
    // The committed base is a prefix LM: its runs share a pack (issue 25's sweeps start from it),
    // each run loading the base's weights before it joins; two seeds packed record the losses
    // and accuracies they record alone (a few steps: the packed backward's rounding has not
    // grown, docs/performance.md).
    let dir = tempfile::tempdir().unwrap();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("bases/chains8p");
    let text = format!(
        "name = \"from_base\"\npreset = \"paper\"\ninit = \"{}\"\nseeds = [0, 1]\n\
         [task]\nname = \"lego\"\nk = 5\nshared_vocab = true\n\
         [training]\nsteps = 6\nwarmup = 2\nsteps_per_round = 3\neval_every = 3\nval_per_skill = 10\n\
         loss = \"answer\"\n[[methods]]\nname = \"stratified\"\n",
        base.display()
    );
    let file = write(dir.path(), "from_base.toml", &text);
    let alone = sweep_ok(&file, &dir.path().join("alone"));
    let out = dir.path().join("packed");
    let packed = sweep_packed(&file, &out, 2);
    // 2 runs × 3 evaluations (steps 0, 3, 6) × 5 skills.
    assert_eq!(alone.len(), 30);
    assert_rows_match(&alone, &packed);
    let manifest = json(&out.join("runs/stratified-s0/manifest.json"));
    assert_eq!(manifest["packed_steps"], 6);
    // The runs did move from the base: step 6's losses differ from step 0's.
    let at = |step: u64| -> Vec<f64> {
        packed
            .iter()
            .filter(|r| r.run_id == "stratified-s0" && r.step == step)
            .map(|r| r.loss)
            .collect()
    };
    assert!(at(0).iter().zip(at(6)).any(|(a, b)| (a - b).abs() > 1e-3));
}
