//! The binary end to end: `skillit generate`'s JSONL records, one-line errors with exit status 2, and
//! the help text.

use std::process::{Command, Output};

fn skillit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(args)
        .output()
        .expect("run skillit")
}

fn records(args: &[&str]) -> Vec<serde_json::Value> {
    let out = skillit(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn jsonl_records_hold_every_field() {
    let recs = records(&["generate", "--task", "lego", "--n", "3", "--seed", "4"]);
    assert_eq!(recs.len(), 15, "3 per skill × 5 skills");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["task"], "lego");
        assert_eq!(r["split"], "train");
        assert_eq!(r["skill"], (i / 3 + 1) as u64);
        let text = r["text"].as_str().unwrap();
        let prompt = r["prompt"].as_str().unwrap();
        let answer = r["answer"].as_str().unwrap();
        assert_eq!(text, format!("{prompt} {answer}"));
        let tokens = r["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 31);
        assert_eq!(r["answer_pos"], 30);
        assert!(answer == "0" || answer == "1");
    }
}

#[test]
fn one_skill_of_the_validation_set_is_the_fixed_one() {
    let a = records(&[
        "generate", "--task", "addition", "--split", "val", "--skill", "2", "--n", "5",
    ]);
    let b = records(&[
        "generate", "--task", "addition", "--split", "val", "--skill", "2", "--n", "5", "--seed",
        "420",
    ]);
    assert_eq!(a, b, "the validation seed of addition is 420");
    assert!(a.iter().all(|r| r["skill"] == 2 && r["split"] == "val"));
    assert!(a
        .iter()
        .all(|r| r["text"].as_str().unwrap().contains(", A 1 = ?")));
}

#[test]
fn text_format_is_one_example_per_line() {
    let out = skillit(&[
        "generate", "--task", "addition", "--k", "4", "--format", "text", "--n", "2",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().all(|l| l.starts_with("Input: A = ")));
}

#[test]
fn bad_input_is_one_line_exit_2_and_nothing_on_stdout() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["generate", "--task", "lego", "--k", "0"],
            "error: command line: --k:",
        ),
        (
            &["generate", "--task", "lego", "--k", "27"],
            "error: command line: --k:",
        ),
        (
            &["generate", "--task", "addition", "--k", "19"],
            "error: command line: --k:",
        ),
        (
            &["generate", "--task", "lego", "--skill", "9"],
            "error: command line: --skill:",
        ),
        (
            &["generate", "--task", "lego", "--skill", "0"],
            "error: command line: --skill:",
        ),
        (
            &["generate", "--task", "lego", "--graph", "tree"],
            "error: command line: --k:",
        ),
        (
            &["generate", "--task", "lego", "--n", "0"],
            "error: command line: --n:",
        ),
        (
            &["generate", "--task", "addition", "--graph", "chain"],
            "error: command line: --graph:",
        ),
        (
            &["generate", "--task", "addition", "--k", "1"],
            "error: command line: --k:",
        ),
        (
            &["generate", "--task", "addition", "--k", "2", "--n", "9800"],
            "error: command line: --n:",
        ),
        (
            &[
                "generate", "--task", "addition", "--k", "1", "--split", "val", "--n", "82",
            ],
            "error: command line: --n:",
        ),
        (
            &["generate", "--task", "chess"],
            "error: invalid value 'chess' for '--task",
        ),
        (
            &["generate", "--task", "lego", "--graph", "star"],
            "error: invalid value 'star'",
        ),
        (
            &["generate", "--task", "lego", "--skill", "two"],
            "error: invalid value 'two'",
        ),
        (&["generate", "--task", "lego", "--seed", "-1"], "error: "),
        (&["generate"], "error: the following required arguments"),
        (&["frobnicate"], "error: unrecognized subcommand"),
    ];
    for (args, start) in cases {
        let out = skillit(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr}"
        );
        assert!(
            stderr.starts_with(start),
            "{args:?}: '{stderr}' should start with '{start}'"
        );
        assert!(!stderr.contains("panicked"), "{args:?}");
    }
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args([
            "generate", "--task", "lego", "--n", "20000", "--format", "text",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn train_help_names_every_method_of_the_registry() {
    // The list is generated from skillit::method::NAMES, so a new method shows up by itself.
    let out = skillit(&["train", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let line = help
        .lines()
        .find(|l| l.contains("The mixture method, one of:"))
        .expect("--method's help");
    for name in skillit::method::NAMES {
        assert!(
            line.contains(&format!(" {name},")) || line.contains(&format!(" {name} (")),
            "{name}: {line}"
        );
    }
}
