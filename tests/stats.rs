//! Every statistic of `skillit compare` against values computed independently with scipy and
//! statsmodels: `python3 tests/data/stats_reference.py` makes tests/data/results_small/metrics.csv
//! and prints the reference numbers pinned below (scipy 1.17.1, statsmodels 0.15.0).

use std::path::Path;
use std::process::Command;

use skillit::results::read_metrics;
use skillit::stats::{self, compare, CompareOptions, Comparison, MethodSummary, Metric};

fn results_small() -> Vec<skillit::results::MetricsRow> {
    read_metrics(Path::new("tests/data/results_small")).expect("the hand-made results folder")
}

fn options(metric: Metric) -> CompareOptions {
    CompareOptions {
        metric,
        baseline: None,
        step: None,
        skill: None,
        threshold: None,
    }
}

fn method<'a>(c: &'a Comparison, label: &str) -> &'a MethodSummary {
    c.methods
        .iter()
        .find(|m| m.method == label)
        .unwrap_or_else(|| panic!("{label} in the comparison"))
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

fn close_opt(actual: Option<f64>, expected: f64) {
    close(actual.expect("a value"), expected);
}

#[test]
fn summaries_and_tests_match_scipy() {
    let rows = results_small();
    let cs = compare(&rows, &options(Metric::Accuracy)).unwrap();
    assert_eq!(cs.len(), 1);
    let c = &cs[0];
    assert_eq!(
        c.baseline.as_deref(),
        Some("stratified"),
        "stratified is the default baseline"
    );
    assert_eq!(
        c.methods[0].method, "stratified",
        "the baseline row comes first"
    );

    // scipy: mean, std(ddof=1), t.interval(0.95, n-1, loc=mean, scale=sem), trim_mean(x, 0.25)
    let s = method(c, "stratified");
    assert_eq!(s.n, 5);
    close(s.mean, 0.8800000000000001);
    close(s.sd, 0.02549509756796387);
    close(s.ci_low, 0.848343655219167);
    close(s.ci_high, 0.9116563447808332);
    close(s.iqm, 0.8766666666666666);
    close(s.auc, 0.69);
    assert!(
        s.welch_p.is_none() && s.paired_p.is_none() && s.holm_p.is_none() && s.p_improve.is_none()
    );

    // Welch (ttest_ind equal_var=False), paired (ttest_rel), U/(n·m) (mannwhitneyu), Holm
    // (statsmodels multipletests method="holm").
    let k = method(c, "skill_it[eta=0.5]");
    close(k.mean, 0.974);
    close(k.ci_low, 0.9628942195792088);
    close(k.ci_high, 0.9851057804207911);
    close(k.iqm, 0.9766666666666666);
    close(k.auc, 0.737);
    close_opt(k.welch_t, 7.779495352862261);
    close_opt(k.welch_p, 0.0005773736199125252);
    close_opt(k.paired_p, 0.0018764201853514663);
    close_opt(k.p_improve, 1.0);
    close_opt(k.holm_p, 0.0017321208597375756);

    // Unequal n (4 vs 5) for Welch; 4 seed pairs for the paired test; ties in P(improve): two of
    // random's seeds equal two of stratified's.
    let r = method(c, "random");
    assert_eq!(r.n, 4);
    close(r.mean, 0.7975000000000001);
    close(r.sd, 0.10045728777279765);
    close(r.ci_low, 0.6376500378443191);
    close(r.ci_high, 0.9573499621556811);
    close(r.iqm, 0.8350000000000001);
    close(r.auc, 0.64875);
    close_opt(r.welch_t, -1.6017404543545954);
    close_opt(r.welch_p, 0.1990079437919568);
    close_opt(r.paired_p, 0.274599468190392);
    close_opt(r.p_improve, 0.1);
    close_opt(r.holm_p, 0.1990079437919568);

    // Holm's order: skill_it (×3), curriculum (×2), random (×1).
    let cu = method(c, "curriculum");
    close(cu.mean, 0.788);
    close(cu.ci_low, 0.7428881066740192);
    close(cu.ci_high, 0.8331118933259809);
    close(cu.iqm, 0.7866666666666667);
    close(cu.auc, 0.6439999999999999);
    close_opt(cu.welch_t, -4.634893041110886);
    close_opt(cu.welch_p, 0.0022379987355158376);
    close_opt(cu.paired_p, 0.0029889007042158077);
    close_opt(cu.p_improve, 0.0);
    close_opt(cu.holm_p, 0.004475997471031675);
}

#[test]
fn holm_is_step_down_with_a_running_maximum() {
    // p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03,
    // 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06. statsmodels gives the same:
    // multipletests([0.01, 0.04, 0.03, 0.005], method="holm")[1] = [0.03, 0.06, 0.06, 0.02].
    let adj = stats::holm(&[0.01, 0.04, 0.03, 0.005]);
    let expected = [0.03, 0.06, 0.06, 0.02];
    for (a, e) in adj.iter().zip(expected) {
        close(*a, e);
    }
    // Capped at 1; NaN stays NaN and does not count in m.
    let adj = stats::holm(&[0.6, f64::NAN, 0.4]);
    close(adj[0], 0.8);
    assert!(adj[1].is_nan());
    close(adj[2], 0.8);
}

#[test]
fn probability_of_improvement_counts_ties_as_half() {
    // x = [1, 2, 3], y = [2, 2]: pairs x > y: (3,2)×2 = 2; ties: (2,2)×2 = 2 → U = 2 + 1 = 3;
    // 3 / 6 = 0.5. scipy.stats.mannwhitneyu([1,2,3],[2,2]).statistic = 3.0.
    close(
        stats::prob_improvement(&[1.0, 2.0, 3.0], &[2.0, 2.0], true),
        0.5,
    );
    // For a loss, lower is better: x < y pairs: (1,2)×2 = 2, ties 1 → 3/6.
    close(
        stats::prob_improvement(&[1.0, 2.0, 3.0], &[2.0, 2.0], false),
        0.5,
    );
    close(stats::prob_improvement(&[1.0], &[2.0], false), 1.0);
}

#[test]
fn iqm_trims_a_quarter_from_each_end_and_its_interval_is_reproducible() {
    // scipy.stats.trim_mean([1, 2, 3, 4, 100, 5, 6, 7], 0.25) = mean([3, 4, 5, 6]) = 4.5
    close(stats::iqm(&[1.0, 2.0, 3.0, 4.0, 100.0, 5.0, 6.0, 7.0]), 4.5);
    // n = 5 cuts 1 from each end: trim_mean([1, 2, 3, 4, 5], 0.25) = 3
    close(stats::iqm(&[5.0, 1.0, 4.0, 2.0, 3.0]), 3.0);
    let xs = [0.91, 0.95, 0.88, 0.99, 0.93];
    let a = stats::iqm_interval(&xs, 0.95, 2000, stats::BOOTSTRAP_SEED);
    let b = stats::iqm_interval(&xs, 0.95, 2000, stats::BOOTSTRAP_SEED);
    assert_eq!(a, b, "a fixed bootstrap seed gives the same interval");
    assert!(a.0 <= stats::iqm(&xs) && stats::iqm(&xs) <= a.1);
    assert!(a.0 >= 0.88 && a.1 <= 0.99);
}

#[test]
fn steps_to_threshold_and_area_under_the_curve() {
    let curve = [(0, 0.5), (50, 0.7), (100, 0.96), (150, 0.97)];
    assert_eq!(
        stats::steps_to_threshold(&curve, 0.95, Metric::Accuracy),
        Some(100)
    );
    assert_eq!(
        stats::steps_to_threshold(&curve, 0.99, Metric::Accuracy),
        None,
        "never reached"
    );
    let loss = [(0, 0.69), (50, 0.2), (100, 0.009)];
    assert_eq!(
        stats::steps_to_threshold(&loss, 0.01, Metric::Loss),
        Some(100)
    );
    // Trapezoids: 50·(0.5+0.7)/2 + 50·(0.7+0.96)/2 + 50·(0.96+0.97)/2 = 30 + 41.5 + 48.25 = 119.75;
    // over 150 steps: 0.798333…
    close(stats::auc(&curve), 119.75 / 150.0);
}

#[test]
fn thresholds_count_the_seeds_that_never_reach() {
    // Mean accuracy rises linearly from 0.5 at step 0 to the seed's final mean at step 200, so only
    // a final mean ≥ 0.9 reaches 0.9, at step 200. skill_it: all 5; stratified: seed 4 (0.92) only;
    // curriculum: none.
    let rows = results_small();
    let o = CompareOptions {
        threshold: Some(0.9),
        ..options(Metric::Accuracy)
    };
    let c = &compare(&rows, &o).unwrap()[0];
    let k = method(c, "skill_it[eta=0.5]");
    assert_eq!((k.reached, k.steps_mean), (Some(5), Some(200.0)));
    let s = method(c, "stratified");
    assert_eq!((s.reached, s.steps_mean), (Some(1), Some(200.0)));
    let cu = method(c, "curriculum");
    assert_eq!((cu.reached, cu.steps_mean), (Some(0), None));
}

#[test]
fn step_skill_and_baseline_select_what_is_compared() {
    let rows = results_small();
    // At step 100 on skill 1, a seed's accuracy is 0.5 + (final_s1 − 0.5)/2: stratified's finals
    // 0.90 0.92 0.88 0.96 0.94 → mean 0.92 → 0.5 + 0.42/2 = 0.71.
    let o = CompareOptions {
        step: Some(100),
        skill: Some(1),
        baseline: Some("random".into()),
        ..options(Metric::Accuracy)
    };
    let c = &compare(&rows, &o).unwrap()[0];
    close(method(c, "stratified").mean, 0.71);
    assert_eq!(c.baseline.as_deref(), Some("random"));
    assert!(method(c, "random").welch_p.is_none());
    assert!(method(c, "stratified").welch_p.is_some());
    // A method name matches its one parameterised label.
    let o = CompareOptions {
        baseline: Some("skill_it".into()),
        ..options(Metric::Loss)
    };
    assert_eq!(
        compare(&rows, &o).unwrap()[0].baseline.as_deref(),
        Some("skill_it[eta=0.5]")
    );
    // Nothing to compute: an unknown baseline, a step or a skill that no run has.
    for bad in [
        CompareOptions {
            baseline: Some("doremi".into()),
            ..options(Metric::Loss)
        },
        CompareOptions {
            step: Some(75),
            ..options(Metric::Loss)
        },
        CompareOptions {
            skill: Some(3),
            ..options(Metric::Loss)
        },
    ] {
        assert!(compare(&rows, &bad).unwrap_err().is_bad_input());
    }
}

#[test]
fn seeds_that_do_not_pair_leave_the_paired_test_empty() {
    // random seed 0 against a baseline that has only seed 9: Welch needs 2 per side, the paired
    // test 2 pairs; neither fails the comparison.
    let mut rows = results_small();
    rows.retain(|r| r.method != "stratified" || r.seed == 0);
    for r in rows.iter_mut().filter(|r| r.method == "stratified") {
        r.seed = 9;
    }
    let c = &compare(&rows, &options(Metric::Accuracy)).unwrap()[0];
    let r = method(c, "random");
    assert!(r.paired_p.is_none() && r.welch_p.is_none());
    assert!(r.p_improve.is_some());
}

fn skillit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(args)
        .output()
        .expect("run skillit")
}

#[test]
fn compare_csv_has_the_documented_columns() {
    let out = skillit(&["compare", "tests/data/results_small", "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "method",
        "n",
        "mean",
        "sd",
        "ci_low",
        "ci_high",
        "welch_t",
        "welch_p",
        "paired_p",
        "holm_p",
        "p_improve",
        "iqm",
        "iqm_low",
        "iqm_high",
    ] {
        assert!(header.contains(&col.to_string()), "column {col}");
    }
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 4);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let base = records
        .iter()
        .find(|r| &r[col("method")] == "stratified")
        .unwrap();
    assert_eq!(
        &base[col("welch_p")],
        "",
        "the baseline row leaves the test columns empty"
    );
    assert_eq!(&base[col("holm_p")], "");
    let json = skillit(&["compare", "tests/data/results_small", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["methods"].as_array().unwrap().len(), 4);
}

#[test]
fn bad_results_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing_col = dir.path().join("missing_col.csv");
    std::fs::write(&missing_col, "run_id,task,setting,method,params,seed,step,skill,loss,accuracy\nr,lego,p,m,,0,0,1,0.5,0.5\n").unwrap();
    let truncated = dir.path().join("truncated.csv");
    let full = std::fs::read_to_string("tests/data/results_small/metrics.csv").unwrap();
    let cut = full.len() - 30;
    std::fs::write(&truncated, &full[..cut]).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["compare".into(), missing_col.display().to_string()],
            "missing column 'weight'",
        ),
        (
            vec!["compare".into(), truncated.display().to_string()],
            "fields where the header has 11",
        ),
        (
            vec![
                "compare".into(),
                dir.path().join("nothing").display().to_string(),
            ],
            "does not exist",
        ),
        (
            vec![
                "compare".into(),
                "tests/data/results_small".into(),
                "--baseline".into(),
                "doremi".into(),
            ],
            "--baseline: method 'doremi'",
        ),
        (
            vec![
                "compare".into(),
                "tests/data/results_small".into(),
                "--step".into(),
                "75".into(),
            ],
            "--step: no run",
        ),
        (
            vec![
                "compare".into(),
                "tests/data/results_small".into(),
                "--threshold".into(),
                "NaN".into(),
            ],
            "--threshold",
        ),
        (
            vec!["report".into(), dir.path().display().to_string()],
            "does not exist",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = skillit(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: '{stderr}' lacks '{needle}'"
        );
    }
}
