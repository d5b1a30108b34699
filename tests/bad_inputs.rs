//! The bad-input corpus: every case of tests/bad_inputs/cases.toml runs the skillit binary in a
//! fresh folder and must exit with its status (2) and one line on stderr that starts with its
//! message, nothing on stdout, no panic, and no file written where the case says none may be.
//!
//! A case: `args` (the command line; `{dir}` is the case's folder), `files` (path → text written
//! into the folder first; `{dir}` is replaced there too), `status`, `message` (the start of the
//! line), `unwritten` (paths under the folder that must not exist afterwards), `readonly` (folders
//! made read-only first; the case is skipped where the user can write them anyway, e.g. root).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    args: Vec<String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    status: i32,
    message: String,
    #[serde(default)]
    unwritten: Vec<String>,
    #[serde(default)]
    readonly: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

/// Whether `dir` refuses a new file (false for root, who writes through permissions).
fn refuses_writes(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    let refused = std::fs::write(&probe, "").is_err();
    let _ = std::fs::remove_file(&probe);
    refused
}

#[test]
fn every_bad_input_is_one_line_and_its_exit_status() {
    let corpus_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_inputs/cases.toml");
    let corpus: Corpus = toml::from_str(&std::fs::read_to_string(&corpus_path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", corpus_path.display()));
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for case in &corpus.case {
        assert!(names.insert(&case.name), "case '{}' twice", case.name);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().display().to_string();
        let fill = |s: &str| s.replace("{dir}", &dir);
        for (path, text) in &case.files {
            let p = tmp.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, fill(text)).unwrap();
        }
        for folder in &case.readonly {
            use std::os::unix::fs::PermissionsExt;
            let p = tmp.path().join(folder);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o555)).unwrap();
            if !refuses_writes(&p) {
                skipped.push(case.name.clone());
            }
        }
        if skipped.last() == Some(&case.name) {
            continue;
        }
        let args: Vec<String> = case.args.iter().map(|a| fill(a)).collect();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_skillit"))
            .args(&args)
            .envs(&case.env)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let expected = fill(&case.message);
        let mut problems = Vec::new();
        if o.status.code() != Some(case.status) {
            problems.push(format!(
                "exit status {:?}, not {}",
                o.status.code(),
                case.status
            ));
        }
        if stderr.trim_end().lines().count() != 1 {
            problems.push("stderr is not one line".to_string());
        }
        if !stderr.starts_with(&expected) {
            problems.push(format!("stderr does not start with '{expected}'"));
        }
        if stderr.contains("panicked") || stderr.contains("internal error") {
            problems.push("a panic".to_string());
        }
        if !o.stdout.is_empty() {
            problems.push("output on stdout".to_string());
        }
        for path in &case.unwritten {
            if tmp.path().join(path).exists() {
                problems.push(format!("{path} was written"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} (stderr: {})",
                case.name,
                problems.join("; "),
                stderr.trim_end()
            ));
        }
    }
    eprintln!(
        "{} bad inputs tried, {} skipped (folders this user can write anyway: {skipped:?}), {} failed",
        corpus.case.len() - skipped.len(),
        skipped.len(),
        failures.len()
    );
    assert!(
        corpus.case.len() >= 40,
        "the corpus holds at least 40 cases"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
