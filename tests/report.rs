//! `skillit report` on a small hand-made results folder: the Markdown links every figure, and every
//! figure is valid SVG with one series per method.

use std::path::Path;
use std::process::Command;

fn svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    text
}

/// Texts of the SVG's <text> elements.
fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect()
}

/// Polylines drawn with each stroke colour.
fn polylines_by_stroke(doc: &roxmltree::Document) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for n in doc.descendants().filter(|n| n.has_tag_name("polyline")) {
        if let Some(s) = n.attribute("stroke") {
            *out.entry(s.to_uppercase()).or_insert(0) += 1;
        }
    }
    out
}

const METHODS: [&str; 4] = ["curriculum", "random", "skill_it[eta=0.5]", "stratified"];
// tab10, in label order.
const COLOURS: [&str; 4] = ["#1F77B4", "#FF7F0E", "#2CA02C", "#D62728"];

#[test]
fn report_renders_tables_and_valid_figures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "tests/data/results_small/metrics.csv",
        dir.path().join("metrics.csv"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(["report", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.contains("validation accuracy at step 200"),
        "the last step"
    );
    assert!(
        md.contains("validation accuracy at step 100"),
        "the halfway step"
    );
    assert!(md.contains("### Steps to accuracy ≥ 0.95"));
    assert!(md.contains("### Steps to loss ≤ 0.01"));
    assert!(md.contains("not reached (0/5)"));

    let figures = dir.path().join("report_figures");
    for name in ["accuracy", "loss", "weights", "final_accuracy"] {
        let file = format!("lego_pretrain_{name}.svg");
        assert!(
            md.contains(&format!("](report_figures/{file})")),
            "{file} is linked"
        );
        svg(&figures.join(&file));
    }

    for metric in ["accuracy", "loss"] {
        let text = svg(&figures.join(format!("lego_pretrain_{metric}.svg")));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let labels = texts(&doc);
        let strokes = polylines_by_stroke(&doc);
        for (method, colour) in METHODS.iter().zip(COLOURS) {
            assert_eq!(
                labels.iter().filter(|t| t == method).count(),
                1,
                "{metric}: legend of {method}"
            );
            // One line per skill panel (2) plus its legend mark.
            assert_eq!(
                strokes.get(colour),
                Some(&3),
                "{metric}: series of {method}"
            );
        }
        assert_eq!(
            labels
                .iter()
                .filter(|t| t.ends_with(metric) && t.starts_with('s'))
                .count(),
            2,
            "one panel per skill"
        );
    }

    let text = svg(&figures.join("lego_pretrain_weights.svg"));
    let doc = roxmltree::Document::parse(&text).unwrap();
    let labels = texts(&doc);
    for method in METHODS {
        assert!(
            labels.contains(&format!("{method}: mixture")),
            "a panel for {method}"
        );
    }
    // Two skills: one line each in each of 4 panels, plus 2 legend marks.
    let strokes = polylines_by_stroke(&doc);
    assert_eq!(strokes.get(COLOURS[0]), Some(&5));
    assert_eq!(strokes.get(COLOURS[1]), Some(&5));

    let text = svg(&figures.join("lego_pretrain_final_accuracy.svg"));
    let doc = roxmltree::Document::parse(&text).unwrap();
    let labels = texts(&doc);
    for method in METHODS {
        assert!(
            labels.iter().any(|t| t == method),
            "an interval for {method}"
        );
    }
    let circles = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!(circles, METHODS.len(), "one point per method");
}

/// A sweep folder's report ends with its runs' cost and machine, read from `runs.csv`; a folder
/// without one (a `skillit train` folder) has no such section.
#[test]
fn report_closes_with_the_runs_time_and_machine() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "tests/data/results_small/metrics.csv",
        dir.path().join("metrics.csv"),
    )
    .unwrap();
    let bare = skillit::report::build_report(dir.path(), "figures").unwrap();
    assert!(!bare.markdown.contains("## Runs: time and machine"));

    // Two finished runs on one CPU (100 s and 300 s; 10 and 30 ms/step), one failed on a GPU
    // (50 s, 20 ms/step), one pending (no manifest yet: every recorded column empty).
    std::fs::write(
        dir.path().join("runs.csv"),
        "run_id,method,params,seed,status,wall_time_s,ms_per_step,backend,git_revision,steps_done,reason,adapter,machine\n\
         r1,stratified,,0,finished,100,10,flex,0123456789abcdef-dirty,200,,Device<Flex(Cpu)>,\"CPU X, 2 logical CPUs, linux x86_64\"\n\
         r2,stratified,,1,finished,300,30,flex,0123456789abcdef-dirty,200,,Device<Flex(Cpu)>,\"CPU X, 2 logical CPUs, linux x86_64\"\n\
         r3,stratified,,2,failed,50,20,wgpu,fedcba9876543210,120,diverged,NVIDIA H100,\"CPU Y, 16 logical CPUs, linux x86_64\"\n\
         r4,stratified,,3,pending,,,,,,,,\n",
    )
    .unwrap();
    let md = skillit::report::build_report(dir.path(), "figures")
        .unwrap()
        .markdown;
    let section = &md[md.find("## Runs: time and machine").expect("the section")..];
    // 100 + 300 + 50 = 450 s = 0.125 h; the finished runs' median wall time (100 + 300) / 2.
    assert!(
        section.contains(
            "From `runs.csv`: 4 runs (1 failed, 2 finished, 1 pending); 0.1 hours of run time in all"
        ),
        "{section}"
    );
    assert!(
        section.contains("200 s per finished run (median)"),
        "{section}"
    );
    // The median ms/step of the two CPU runs is (10 + 30) / 2; the pending run has no row.
    assert!(section.contains(
        "| flex | Device<Flex(Cpu)> | CPU X, 2 logical CPUs, linux x86_64 | 2 | 20 |\n\
         | wgpu | NVIDIA H100 | CPU Y, 16 logical CPUs, linux x86_64 | 1 | 20 |\n"
    ));
    assert!(section.contains("skillit revisions: `0123456-dirty` (2 runs), `fedcba9` (1 run)."));
}
