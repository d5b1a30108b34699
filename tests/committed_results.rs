//! The committed results cannot drift from the code: every report.md committed under results/ (with
//! its figures) is exactly what `skillit report` makes from the committed metrics.csv beside it, so
//! its tables are what `skillit compare` computes from those metrics.

use std::path::Path;

#[test]
fn committed_reports_are_what_the_code_computes_from_committed_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The reports git tracks (a local results/smoke from the README's main job is not committed).
    let listed = std::process::Command::new("git")
        .args(["ls-files", "results"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let reports: Vec<&str> = listed
        .lines()
        .filter(|l| l.ends_with("/report.md"))
        .collect();
    for report in &reports {
        let dir = Path::new(report).parent().unwrap();
        let committed = std::fs::read_to_string(root.join(report)).unwrap();
        // The report names its folder as given on the command line: relative to the repository.
        let cwd = std::env::current_dir().unwrap();
        std::env::set_current_dir(root).unwrap();
        let built = skillit::report::build_report(dir, "report_figures");
        std::env::set_current_dir(cwd).unwrap();
        let built = built.unwrap_or_else(|e| panic!("{report}: {e}"));
        assert_eq!(
            built.markdown,
            committed,
            "{report} is stale: run `skillit report {}`",
            dir.display()
        );
        for (name, svg) in &built.figures {
            let path = root.join(dir).join("report_figures").join(name);
            let file = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(&file, svg, "{} is stale", path.display());
        }
    }
    eprintln!("{} committed reports checked", reports.len());
}
