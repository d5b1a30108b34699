//! Learning a skills graph where the answer is known by construction: LEGO's `disconnected` graph
//! with k = 4 has two halves of two variables; skills 1 and 3 ask each half's root (copy its literal:
//! the same skill twice), skills 2 and 4 the variable one hop from it (the same skill twice). Both
//! ways of learning must link 1 ↔ 3 and 2 ↔ 4 and nothing across.

use skillit::config::{RunConfig, TrainingConfig};
use skillit::device::{select, DeviceKind};
use skillit::graph_learn::{from_measurements, learn, How, LearnRequest, Measurement, Rule};
use skillit::model::ModelConfig;
use skillit::synthetic::{LegoGraph, TaskSpec};

fn request(how: How, seeds: Vec<u64>) -> LearnRequest {
    let base = RunConfig {
        task: TaskSpec::Lego {
            k: 4,
            graph: LegoGraph::Disconnected,
            dense: false,
            shuffled: false,
            shared_vocab: false,
        },
        model: ModelConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            d_ff: 64,
            dropout: 0.0,
            context: 32,
            ..ModelConfig::default()
        },
        training: TrainingConfig {
            val_per_skill: 50,
            ..skillit::config::Preset::Laptop.config("lego").training
        },
        ..skillit::config::Preset::Laptop.config("lego")
    };
    LearnRequest {
        base,
        how,
        steps: 300,
        seeds,
        threshold: 0.05,
        rule: Rule::default_for(how),
        warm_start: 300,
    }
}

fn edges(g: &skillit::graph::SkillsGraph) -> Vec<(usize, usize)> {
    let mut e = Vec::new();
    for (i, row) in g.matrix.iter().enumerate() {
        for (j, &w) in row.iter().enumerate() {
            if i != j && w > 0.0 {
                e.push((i + 1, j + 1));
            }
        }
    }
    e
}

#[test]
fn identical_skills_are_linked_and_unrelated_ones_are_not() {
    let flex = select(DeviceKind::Flex).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let linear = learn(
        &request(How::Linear, vec![0, 1]),
        &dir.path().join("linear"),
        &flex,
        2,
        // The probes of one seed share a pack key: trained in packs of 4 (issue 24).
        4,
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        edges(&linear.graph),
        vec![(1, 3), (2, 4), (3, 1), (4, 2)],
        "\n{}",
        linear.table()
    );
    assert!(linear.stable(1, 3) && linear.stable(3, 1));
    // Training on a root skill makes the one-hop skills worse (they are not copies).
    assert!(linear.mean[0][1] < 0.0, "\n{}", linear.table());
    // Every seed measured every entry: 2 seeds × 16.
    assert_eq!(linear.measurements.len(), 32);
    // The graph file is what Skill-It reads (`graph = "FILE"`).
    let file = dir.path().join("linear.toml");
    std::fs::write(&file, linear.graph_toml("the test's graph")).unwrap();
    assert_eq!(
        skillit::graph::SkillsGraph::read(&file, 4).unwrap(),
        linear.graph
    );

    let brute = learn(
        &request(How::Brute, vec![0]),
        &dir.path().join("brute"),
        &flex,
        2,
        1,
        &|_| {},
    )
    .unwrap();
    let e = edges(&brute.graph);
    for edge in [(1, 3), (3, 1)] {
        assert!(e.contains(&edge), "{edge:?} missing:\n{}", brute.table());
    }
    for edge in [(2, 1), (4, 1), (2, 3), (4, 3)] {
        assert!(!e.contains(&edge), "{edge:?} present:\n{}", brute.table());
    }
    // Finished probes are not trained again: a second call only reassembles.
    let again = learn(
        &request(How::Brute, vec![0]),
        &dir.path().join("brute"),
        &flex,
        2,
        1,
        &|event| {
            assert!(
                !matches!(event, skillit::sweep::SweepEvent::Started { .. }),
                "a finished probe was trained again"
            );
        },
    )
    .unwrap();
    assert_eq!(again.mean, brute.mean);
}

/// Measurements of each seed with the entries `(from, to, value)`, every start loss 1.
fn measured(entries: &[(usize, usize, f64)], seeds: &[u64]) -> Vec<Measurement> {
    seeds
        .iter()
        .flat_map(|&seed| {
            entries.iter().map(move |&(from, to, value)| Measurement {
                seed,
                from,
                to,
                loss_start: 1.0,
                loss_probe: 1.0 - value,
                loss_baseline: 1.0,
                value,
            })
        })
        .collect()
}

/// The table of a graph learned from one seed shows its entries and edges but no sd (one value
/// has none: it printed `± NaN`) and no stability (every edge "passes in every seed" trivially).
#[test]
fn a_one_seed_table_claims_no_sd_and_no_stability() {
    // Brute, k = 2, threshold 0.05: A[1][2] = 0.1 > −0.05 and s2's own entry 0.5 > 0.05, so
    // s1 → s2 is an edge; A[2][1] = −0.2 < −0.05, so s2 → s1 is not.
    let entries = [(1, 1, 0.5), (2, 2, 0.5), (1, 2, 0.1), (2, 1, -0.2)];
    let measured = |seeds: &[u64]| measured(&entries, seeds);
    let one = from_measurements(How::Brute, Rule::Serves, 2, measured(&[0]), 0.05).table();
    assert!(!one.contains("NaN") && !one.contains('±'), "\n{one}");
    assert!(!one.contains("stable") && !one.contains('*'), "\n{one}");
    assert!(one.contains("edges: s1 → s2\n"), "\n{one}");
    assert!(one.contains("+0.100"), "\n{one}");
    // Two seeds with the same values: sd 0, and the edge passes in both.
    let two = from_measurements(How::Brute, Rule::Serves, 2, measured(&[0, 1]), 0.05).table();
    assert!(two.contains("+0.100 ± 0.000*"), "\n{two}");
    assert!(two.contains("edges: s1 → s2 (stable)"), "\n{two}");
}

/// The two brute-force rules judge the same measurements differently where j learns nothing alone.
#[test]
fn the_gain_rule_finds_what_makes_an_unlearnable_skill_learnable() {
    // k = 2, τ = 0.05. s2 learns nothing alone (A[2][2] = 0.0), but mixed with s1 its loss ends
    // 0.3 of its start below s2 alone's (A[1][2] = +0.3); s2 costs s1 a little (A[2][1] = −0.02).
    // serves: 1 → 2 needs A[2][2] = 0.0 > 0.05: no; 2 → 1: −0.02 > −0.05 and A[1][1] = 0.5 >
    //   0.05: edge.
    // gain: 1 → 2: 0.3 > 0.05: edge; 2 → 1: −0.02 > 0.05: no.
    let entries = [(1, 1, 0.5), (2, 2, 0.0), (1, 2, 0.3), (2, 1, -0.02)];
    let measured = measured(&entries, &[0, 1]);
    let serves = from_measurements(How::Brute, Rule::Serves, 2, measured.clone(), 0.05);
    assert_eq!(edges(&serves.graph), vec![(2, 1)]);
    let gain = from_measurements(How::Brute, Rule::Gain, 2, measured, 0.05);
    assert_eq!(edges(&gain.graph), vec![(1, 2)]);
    assert!(
        gain.table().contains("edges: s1 → s2 (stable)"),
        "{}",
        gain.table()
    );
    // Each file names its rule, and reading it back judges it by that rule.
    let dir = tempfile::tempdir().unwrap();
    for learned in [&serves, &gain] {
        let path = dir.path().join(format!("{:?}.toml", learned.rule));
        std::fs::write(&path, learned.graph_toml("LEGO (Brute), H = 5 steps")).unwrap();
        std::fs::write(path.with_extension("csv"), learned.measurements_csv()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(Rule::of_graph_file(&text), learned.rule);
        let (back, description) = skillit::graph_learn::Learned::of_graph_file(&path, &text, 0.05)
            .unwrap()
            .unwrap();
        assert_eq!(back.graph.matrix, learned.graph.matrix);
        assert_eq!(description, "LEGO (Brute), H = 5 steps");
    }
}

/// `skillit graph rethreshold` judges the committed brute-force graph from `bases/chains8p` by the
/// gain rule without training: its measured means (results/graphs/lego_chains8p_base_brute.toml)
/// are above 0.05 exactly at s2 → s3 (+0.29), s2 → s4 (+0.84) and s2 → s5 (+0.30).
#[test]
fn rethreshold_judges_a_committed_graph_again() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gain.toml");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(["graph", "rethreshold", "--rule", "gain", "--out"])
        .arg(&out)
        .arg(root.join("results/graphs/lego_chains8p_base_brute.toml"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let graph = skillit::graph::SkillsGraph::read(&out, 5).unwrap();
    assert_eq!(edges(&graph), vec![(2, 3), (2, 4), (2, 5)]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("(Brute)") && text.contains("judged again from"),
        "{text}"
    );
    assert_eq!(Rule::of_graph_file(&text), Rule::Gain);
    // The measurements travel with it unchanged.
    assert_eq!(
        std::fs::read(out.with_extension("csv")).unwrap(),
        std::fs::read(root.join("results/graphs/lego_chains8p_base_brute.csv")).unwrap()
    );
    assert!(out.with_extension("svg").exists());
}

/// The probes start from the run config's `init` (a committed base, a run's weights): directly
/// without a warm start, through the base run with one. (`init` was once dropped, so a graph
/// "from a base" was learned from a fresh initialisation.)
#[test]
fn probes_start_from_the_configs_init() {
    let init = std::path::PathBuf::from("runs/some-run/model.bpk");
    let mut cold = request(How::Linear, vec![0]);
    cold.base.init = Some(init.clone());
    cold.warm_start = 0;
    let dir = tempfile::tempdir().unwrap();
    let probes = cold.probes(dir.path()).unwrap();
    assert_eq!(probes.len(), 4);
    assert!(probes.iter().all(|p| p.config.init.as_ref() == Some(&init)));
    assert!(cold.base_runs().unwrap().is_empty());
    let mut warm = cold.clone();
    warm.warm_start = 50;
    let bases = warm.base_runs().unwrap();
    assert_eq!(bases.len(), 1);
    assert_eq!(bases[0].config.init.as_ref(), Some(&init));
    // With a warm start every probe starts from its seed's base run, which started from `init`.
    let base_weights = dir.path().join("runs/base-seed0/model.bpk");
    let probes = warm.probes(dir.path()).unwrap();
    assert!(probes
        .iter()
        .all(|p| p.config.init.as_ref() == Some(&base_weights)));
}

/// Every learned graph committed under results/graphs/ is what the threshold rule makes of the
/// measurements committed beside it (its `.csv`), and its header comment holds their mean matrix:
/// a graph file is never edited by hand away from its data.
#[test]
fn committed_learned_graphs_follow_from_their_measurements() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/graphs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // A graph file without measurements beside it (a config, a hand-written graph): skipped.
        let Some((learned, _)) =
            skillit::graph_learn::Learned::of_graph_file(&path, &text, 0.05).unwrap()
        else {
            continue;
        };
        let graph = skillit::graph::SkillsGraph::read(&path, learned.k).unwrap();
        assert_eq!(graph.matrix, learned.graph.matrix, "{}", path.display());
        for line in learned.mean_comment_lines() {
            assert!(text.contains(&line), "{}: no line {line}", path.display());
        }
        checked += 1;
    }
    // lego_, addition_ (linear, brute) and lego_chains8p_ (the fresh and the base's, and the
    // base's brute force judged by the gain rule).
    assert!(checked >= 8, "only {checked} graph files with measurements");
}
