//! `skillit claims` on the hand-made results of tests/data/results_small (tests/data/stats_reference.py:
//! k = 2, evaluations at steps 0, 50, 100, 150, 200; run (method, seed) has accuracy
//! 0.5 + (final − 0.5) · step / 200 on each skill, so its mean over skills is the same line through
//! the mean `m` of its two finals).

use std::path::{Path, PathBuf};

use skillit::claims::{evaluate_file, render, Verdict};

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

fn claim(claim: &str, method: &str, baseline: &str, measure: &str) -> String {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/results_small");
    format!(
        "[[claim]]\nexperiment = \"small\"\nclaim = \"{claim}\"\npaper = \"–\"\nfolder = {:?}\nmethod = \"{method}\"\nbaseline = \"{baseline}\"\n{measure}\n\n",
        folder.display().to_string()
    )
}

fn write_claims(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn claims_are_tested_with_welch_and_holm_over_the_file() {
    let text = [
        claim(
            "A: Skill-It ahead at the end",
            "skill_it",
            "stratified",
            "step = 200",
        ),
        claim(
            "B: the reverse claim",
            "stratified",
            "skill_it",
            "step = 200",
        ),
        claim(
            "C: Skill-It reaches 0.8 sooner",
            "skill_it",
            "stratified",
            "threshold = 0.8",
        ),
        claim(
            "D: a level no one reaches",
            "curriculum",
            "stratified",
            "threshold = 0.95",
        ),
        claim(
            "E: a level stratified reaches once",
            "skill_it",
            "stratified",
            "threshold = 0.9",
        ),
        claim("F: random ahead", "random", "stratified", "step = 200"),
    ]
    .concat();
    let (_dir, path) = write_claims(&text);
    let results = evaluate_file(&path).unwrap();
    assert_eq!(results.len(), 6);
    let [a, b, c, d, e, f] = &results[..] else {
        unreachable!()
    };

    // A and B: Welch's p of skill_it against stratified at the last step, scipy's value pinned in
    // tests/stats.rs; B asks for the opposite direction of the same difference.
    close(a.p, 0.0005773736199125252);
    close(b.p, a.p);
    assert_eq!(a.verdict, Verdict::Agree);
    assert_eq!(b.verdict, Verdict::Reverse);
    assert_eq!(a.method.label, "skill_it[eta=0.5]");

    // C: steps to mean accuracy 0.8 reach 0.5 + (m − 0.5)·s/200 ≥ 0.8, i.e. s ≥ 60 / (m − 0.5),
    // at the next evaluation. skill_it's m = 0.98, 0.98, 0.96, 0.98, 0.97: 122–130 → 150 on every
    // seed. stratified's m = 0.85, 0.88, 0.87, 0.88, 0.92: 171, 158, 162, 158 → 200 and 143 → 150.
    // Welch: skill_it has no spread; stratified's mean 190, squared deviations 4 × 100 + 1,600,
    // sd² = 2,000 / 4 = 500, se² = 500 / 5 = 100, t = (150 − 190) / 10 = −4, df = 100² / (100² / 4)
    // = 4. For 4 degrees of freedom P(|T| < t) = sin θ (1 + cos² θ / 2) with tan θ = t / 2, so
    // sin θ = 2/√5, cos² θ = 1/5 and p = 1 − (2/√5)(1.1) = 0.0161300899.
    assert_eq!(c.method.values, vec![150.0; 5]);
    assert_eq!(c.baseline.values, vec![200.0, 200.0, 200.0, 200.0, 150.0]);
    assert_eq!((c.method.reached, c.baseline.reached), (Some(5), Some(5)));
    close(c.p, 1.0 - 2.2 / 5f64.sqrt());

    // D: curriculum's m ≤ 0.83 and stratified's ≤ 0.92: no seed reaches 0.95.
    assert!(matches!(d.verdict, Verdict::NotTestable(_)));
    assert!(d.p.is_nan() && d.holm_p.is_nan());

    // E: 0.9 needs s ≥ 80 / (m − 0.5): skill_it 167–174 → 200 on every seed; of stratified only
    // seed 4 (m = 0.92: 190.5 → 200) reaches it, the others count at their last step, 200. One
    // value on every seed each, the same: no difference (p = 1).
    assert_eq!(e.baseline.values, vec![200.0; 5]);
    assert_eq!(e.baseline.reached, Some(1));
    assert_eq!(e.p, 1.0);
    assert_eq!(e.verdict, Verdict::NoDifference);

    // F: random (mean 0.7975) behind stratified (0.874), Welch p 0.199 (tests/stats.rs): not
    // significant, so no difference shown rather than the reverse.
    close(f.p, 0.1990079437919568);
    assert_eq!(f.verdict, Verdict::NoDifference);

    // Holm over the 5 testable p-values: A and B 5.77e-4 (× 5 and × 4, the running maximum
    // carries A's), C 0.01613 × 3 = 0.04839 (still < 0.05: agree), F 0.199 × 2, E 1 × 1.
    close(a.holm_p, 5.0 * 0.0005773736199125252);
    close(b.holm_p, a.holm_p);
    close(c.holm_p, 3.0 * (1.0 - 2.2 / 5f64.sqrt()));
    assert_eq!(c.verdict, Verdict::Agree);
    close(f.holm_p, 2.0 * 0.1990079437919568);
    assert_eq!(e.holm_p, 1.0);

    let table = render(&results, &path);
    assert!(table.contains("Holm's correction over the 5 testable claims"));
    // C: 1 − 150/190 = 21% fewer steps; E: stratified's one seed of five.
    assert!(table.contains("| 21% fewer steps |"), "{table}");
    assert!(
        table.contains("stratified 200 [200, 200] (1/5 reached)"),
        "{table}"
    );
    assert!(table.contains("not testable: no seed of either reaches the threshold"));
    assert!(
        table.contains("| mean accuracy @200 |")
            && table.contains("| steps to mean accuracy ≥ 0.8 |")
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| small")).count(),
        6
    );
}

#[test]
fn the_committed_claims_tables_are_what_the_code_computes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("results")).unwrap() {
        let toml = entry.unwrap().path();
        let name = toml.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("claims") && name.ends_with(".toml")) {
            continue;
        }
        let md = toml.with_extension("md");
        let committed = std::fs::read_to_string(&md)
            .unwrap_or_else(|e| panic!("{}: {e} (run `skillit claims`)", md.display()));
        // The table names its file as given on the command line: relative to the repository.
        let relative = Path::new("results").join(&name);
        let results = evaluate_file(&toml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            render(&results, &relative),
            committed,
            "{} is stale: run `skillit claims {} --out {}`",
            md.display(),
            relative.display(),
            Path::new("results").join(md.file_name().unwrap()).display()
        );
        checked += 1;
    }
    assert!(checked > 0, "results/ holds a claims file");
}
