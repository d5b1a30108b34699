//! A task from a JSONL file: what `skillit generate` writes trains back through `--data` and learns
//! what `--task` learns; answers of several tokens are learned and scored as wholes; a sweep over
//! such a task runs and reports; a run records the file it read.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use skillit::config::Preset;
use skillit::device::{select, DeviceKind};
use skillit::synthetic::{stream_rng, Jsonl, Purpose, Task, ValidationSet};

fn skillit(args: &[&str], dir: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "skillit {args:?}: {stderr}");
    String::from_utf8(o.stdout).unwrap()
}

/// The (accuracy, loss) of each skill at the last evaluation of a run's metrics.csv.
fn last_evaluation(dir: &Path) -> Vec<(f64, f64)> {
    let mut reader = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let last_step = rows.last().unwrap()[6].to_string();
    rows.iter()
        .filter(|r| r[6] == *last_step)
        .map(|r| (r[9].parse().unwrap(), r[8].parse().unwrap()))
        .collect()
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/own_skills")
}

#[test]
fn generated_lego_trains_back_through_data_and_learns_s1_as_the_task_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = skillit(
        &[
            "generate", "--task", "lego", "--k", "3", "--split", "train", "--n", "3000",
        ],
        dir,
    );
    let val = skillit(
        &[
            "generate", "--task", "lego", "--k", "3", "--split", "val", "--n", "100",
        ],
        dir,
    );
    std::fs::write(dir.join("t.jsonl"), train + &val).unwrap();
    // The laptop preset's 1,000 steps, from the same seed, on the file and on the generator.
    skillit(&["train", "--data", "t.jsonl", "--out", "from_file"], dir);
    skillit(&["train", "--task", "lego", "--out", "from_task"], dir);
    let file = last_evaluation(&dir.join("from_file"));
    let task = last_evaluation(&dir.join("from_task"));
    assert_eq!(file.len(), 3);
    assert!(task[0].0 >= 0.9, "--task lego s1: {task:?}");
    assert!(
        file[0].0 >= 0.9,
        "--data s1: {file:?} (--task lego: {task:?})"
    );

    // The run records its file: the hash, the rows, the skills, the epochs, and the vocabulary.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("from_file/manifest.json")).unwrap())
            .unwrap();
    let data: skillit::train::DataRecord =
        serde_json::from_value(manifest["data"].clone()).unwrap();
    let opened = Jsonl::open(&dir.join("t.jsonl")).unwrap();
    assert_eq!(data.sha256, opened.data().sha256());
    assert_eq!(data.rows, 9300);
    assert_eq!(data.skills, ["s1", "s2", "s3"]);
    // 1,000 steps × 32 stratified over 3 skills ≈ 10,667 rows of each skill's 3,000: epoch 4.
    assert_eq!(data.epochs, [4, 4, 4]);
    let vocab = std::fs::read_to_string(dir.join("from_file/vocab.txt")).unwrap();
    assert_eq!(vocab.lines().count(), data.vocab_size);
    assert_eq!(
        vocab.lines().take(2).collect::<Vec<_>>(),
        ["<pad>", "<unk>"]
    );
    // The validation set is the file's `val` rows: exactly what `generate --split val` wrote.
    let validation = ValidationSet::standard(&opened, 100).unwrap();
    let val_prompts: Vec<String> = val
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["prompt"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let vocab = opened.vocab();
    assert!(validation
        .iter()
        .all(|e| val_prompts.contains(&e.prompt(vocab))));
    // `skillit rerun` trains it again from its manifest and gets every number.
    skillit(&["rerun", "from_file"], dir);
}

#[test]
fn answers_of_several_tokens_are_learned_and_right_only_when_every_token_is() {
    let tmp = tempfile::tempdir().unwrap();
    let data = example_dir().join("data.jsonl");
    let out = tmp.path().join("run");
    skillit(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "400",
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    // Skills: last (1-token answers), copy and reverse (2..3 tokens). From chance (loss ≈ ln 45 ≈ 3.8)
    // all three are learned; measured at step 400: 1.00/0.014, 0.64/0.330, 0.76/0.244.
    let end = last_evaluation(&out);
    assert!(end[0].0 >= 0.9, "{end:?}");
    for (accuracy, loss) in &end[1..] {
        assert!(*accuracy >= 0.5 && *loss < 1.0, "{end:?}");
    }

    // Accuracy counts an answer right only when every token is: recompute it from the logits of
    // the trained model (whose answers are often partly right), token by token, and compare with
    // `evaluate`.
    let task = Jsonl::open(&data).unwrap();
    let validation = ValidationSet::standard(&task, 100).unwrap();
    let device = select(DeviceKind::Flex).unwrap().device.autodiff();
    let model = Preset::Laptop
        .config("jsonl")
        .model
        .init(
            task.vocab().len(),
            &mut stream_rng(3, Purpose(99), 0),
            &device,
        )
        .try_load_file(out.join("model.bpk"))
        .unwrap();
    let examples: Vec<_> = validation.iter().cloned().collect();
    let eval = skillit::train::evaluate(&model, &examples, task.num_skills(), &device, 0);
    let nll = skillit::train::score(&model, &examples, &device);
    let mut right = [0usize; 3];
    let mut partly_right = 0;
    for (i, e) in examples.iter().enumerate() {
        let tokens: Vec<i64> = e.tokens.iter().map(|&t| i64::from(t)).collect();
        let input =
            Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, e.tokens.len()]), &device);
        let logits = model.forward(input);
        let [_, seq, vocab] = logits.dims();
        let lp = burn::tensor::activation::log_softmax(logits.reshape([seq, vocab]), 1);
        let rows: Vec<f32> = lp.into_data().iter::<f32>().collect();
        let mut hits = Vec::new();
        let mut total = 0.0;
        for j in 0..e.answer_len {
            let row = &rows[(e.answer_pos + j - 1) * vocab..(e.answer_pos + j) * vocab];
            let target = e.tokens[e.answer_pos + j] as usize;
            let best = (0..vocab)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap();
            hits.push(best == target);
            total -= f64::from(row[target]);
        }
        // The loss is the mean over the answer's tokens.
        let mean = total / e.answer_len as f64;
        assert!(
            (nll[i] - mean).abs() < 1e-4,
            "example {i}: {} vs {mean}",
            nll[i]
        );
        right[e.skill - 1] += usize::from(hits.iter().all(|&h| h));
        partly_right += usize::from(hits[0] && !hits.iter().all(|&h| h));
    }
    assert!(
        partly_right > 0,
        "no answer with its first token right and another wrong"
    );
    for (s, right) in right.iter().enumerate() {
        assert!(
            (eval.accuracy[s] - *right as f64 / 100.0).abs() < 1e-9,
            "skill {}",
            s + 1
        );
    }
    assert!(
        examples.iter().any(|e| e.answer_len == 3) && examples.iter().any(|e| e.answer_len == 2)
    );
}

#[test]
fn a_sweep_over_a_jsonl_task_runs_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("own");
    let sweep = example_dir().join("sweep.toml");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    skillit(
        &[
            "sweep",
            sweep.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--jobs",
            "2",
        ],
        root,
    );
    skillit(&["report", out.to_str().unwrap()], root);
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 1 + 4, "{runs}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## jsonl / pretrain"), "{report}");
    assert!(report.contains("| stratified | 2 |"), "{report}");
}

#[test]
fn bench_measures_a_jsonl_task_and_reports_peak_memory() {
    let data = example_dir().join("data.jsonl");
    let out = skillit(
        &[
            "bench",
            "--data",
            data.to_str().unwrap(),
            "--warmup",
            "1",
            "--steps",
            "3",
            "--evals",
            "1",
        ],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        json["task"].as_str().unwrap().starts_with("jsonl "),
        "{json}"
    );
    assert!(json["ms_per_step"].as_f64().unwrap() > 0.0, "{json}");
    // The process holds at least its binary and a model: tens of MiB, well under a GiB here.
    let rss = json["peak_rss_mib"].as_f64().unwrap();
    assert!((10.0..1024.0).contains(&rss), "{json}");
}
