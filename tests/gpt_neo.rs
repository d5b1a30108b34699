//! GPT-Neo from Hugging Face files (issue 11), against the fixture that
//! tests/data/make_gpt_neo_fixture.py made with PyTorch `transformers` (no download; CI needs no
//! Python): the same logits to 1e-4 from model.safetensors and from pytorch_model.bin, the same
//! token ids, a few training steps on LEGO that lower the loss, and one clear line for a wrong or
//! missing file.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use skillit::config::{LossKind, RunConfig, TrainingConfig};
use skillit::device::{select, DeviceKind};
use skillit::model::{gpt_neo, Codec, Model, ModelConfig, ModelKind, TextCodec};
use skillit::synthetic::Example;
use skillit::synthetic::{stream_rng, LegoGraph, Purpose, Task, TaskSpec, ValidationSet};
use skillit::train::{example_losses, train, Flow};

/// `sha256sum tests/data/gpt_neo_tiny/model.safetensors`.
const SHA256_SAFETENSORS: &str = "7afc5a787649656ff0f217f912042147e01d651bfa1bd7ff5d054262b8f82657";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpt_neo_tiny")
}

/// A temporary folder holding copies of some of the fixture's files.
fn fixture_copy(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(fixture().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

struct Reference {
    text: String,
    ids: Vec<u32>,
    /// `[seq, vocab]`, row-major.
    logits: Vec<f32>,
}

fn references() -> Vec<Reference> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(fixture().join("reference.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let view = tensors.tensor(&format!("logits_{i}")).unwrap();
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            Reference {
                text: input["text"].as_str().unwrap().to_string(),
                ids: input["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect(),
                logits: view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            }
        })
        .collect()
}

/// The largest |ours − reference| over every logit of every reference input, on flex.
fn max_logit_error(dir: &Path) -> f32 {
    max_logit_error_on(dir, DeviceKind::Flex)
}

fn max_logit_error_on(dir: &Path, kind: DeviceKind) -> f32 {
    let device = select(kind).unwrap().device;
    let (model, config) = gpt_neo::load(dir, &device).unwrap();
    let model = Model::GptNeo(model);
    let mut worst = 0.0f32;
    for r in references() {
        let ids: Vec<i64> = r.ids.iter().map(|&i| i64::from(i)).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, r.ids.len()]), &device);
        let logits = model.forward(tokens);
        assert_eq!(logits.dims(), [1, r.ids.len(), config.vocab_size]);
        let ours: Vec<f32> = logits.into_data().iter::<f32>().collect();
        assert_eq!(ours.len(), r.logits.len());
        for (a, b) in ours.iter().zip(&r.logits) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("{}: max |logit error| {worst:e}", dir.display());
    worst
}

#[test]
fn safetensors_weights_give_the_reference_logits() {
    let err = max_logit_error(&fixture());
    // The logits span several units (initializer range 0.2): 1e-4 is float32 round-off.
    assert!(err <= 1e-4, "max |logit error| = {err}");
}

#[test]
fn wgpu_gives_the_reference_logits() {
    // The GPU path (lavapipe in CI, which installs it and must run this; elsewhere a machine with
    // no Vulkan driver skips it, saying so): the local attention's mask and the tied head included.
    let probe = std::panic::catch_unwind(|| {
        let device = select(DeviceKind::Wgpu).unwrap().device;
        Tensor::<1>::zeros([1], &device).into_data()
    });
    if probe.is_err() {
        let message = "no wgpu adapter: install a Vulkan driver (Debian: mesa-vulkan-drivers)";
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("skipped: {message}");
        return;
    }
    let err = max_logit_error_on(&fixture(), DeviceKind::Wgpu);
    assert!(err <= 1e-4, "max |logit error| on wgpu = {err}");
    // And training: the same 40 steps on both backends end at the same validation losses, to
    // float32 round-off accumulated over 40 AdamW steps (measured on lavapipe: 4e-7).
    let config = neo_run(&fixture());
    let last = |kind| {
        let out = tempfile::tempdir().unwrap();
        let selected = select(kind).unwrap();
        let m = train(&config, &selected, out.path(), None, &mut |_| {
            Flow::Continue
        })
        .unwrap();
        m.evaluations.last().unwrap().loss.clone()
    };
    let (flex, wgpu) = (last(DeviceKind::Flex), last(DeviceKind::Wgpu));
    for (f, g) in flex.iter().zip(&wgpu) {
        eprintln!("validation loss after 40 steps: flex {f} wgpu {g}");
        assert!((f - g).abs() < 1e-4, "flex {f} vs wgpu {g}");
    }
}

#[test]
fn pytorch_weights_give_the_reference_logits() {
    let dir = fixture_copy(&["config.json", "tokenizer.json", "pytorch_model.bin"]);
    let err = max_logit_error(dir.path());
    assert!(err <= 1e-4, "max |logit error| = {err}");
}

#[test]
fn the_local_layer_sees_only_its_window() {
    // The fixture's second layer is local with window 7 and the inputs are ~36 tokens long: a
    // model whose local layer attended globally would miss the reference, so make one and check.
    let dir = fixture_copy(&["tokenizer.json", "model.safetensors"]);
    let config = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let global = config.replace("\"local\"", "\"global\"");
    assert_ne!(config, global);
    std::fs::write(dir.path().join("config.json"), global).unwrap();
    let err = max_logit_error(dir.path());
    assert!(
        err > 1e-2,
        "global attention everywhere still matched (err {err})"
    );
}

#[test]
fn the_tokenizer_gives_the_reference_ids() {
    let codec = TextCodec::read(
        &fixture().join("tokenizer.json"),
        TaskSpec::Lego {
            k: 5,
            graph: LegoGraph::Chain,
            dense: false,
            shuffled: false,
            shared_vocab: false,
        }
        .build()
        .unwrap()
        .vocab(),
        64,
    )
    .unwrap();
    for r in references() {
        assert_eq!(codec.ids(&r.text).unwrap(), r.ids, "{}", r.text);
        assert_eq!(codec.decode(&r.ids).unwrap(), r.text);
    }
}

#[test]
fn task_examples_become_the_tokenizers_ids_with_the_answer_after_the_prompt() {
    for spec in [
        TaskSpec::Lego {
            k: 5,
            graph: LegoGraph::Chain,
            dense: false,
            shuffled: false,
            shared_vocab: false,
        },
        TaskSpec::Addition {
            k: 3,
            shared_vocab: false,
        },
    ] {
        let task = spec.build().unwrap();
        let vocab = task.vocab();
        let codec = TextCodec::read(&fixture().join("tokenizer.json"), vocab, 64).unwrap();
        let validation = ValidationSet::standard(task.as_ref(), 20).unwrap();
        for e in validation.iter() {
            let encoded = codec.encode(e).unwrap();
            assert_eq!(encoded.skill, e.skill);
            assert_eq!(
                codec.ids(&e.prompt(vocab)).unwrap(),
                encoded.prompt_tokens()
            );
            assert_eq!(
                codec.decode(&[encoded.answer_token()]).unwrap().trim(),
                e.answer(vocab)
            );
            assert_eq!(codec.decode(&encoded.tokens).unwrap(), e.text(vocab));
        }
    }
}

fn neo_run(dir: &Path) -> RunConfig {
    RunConfig {
        task: TaskSpec::Lego {
            k: 3,
            graph: LegoGraph::Chain,
            dense: false,
            shuffled: false,
            shared_vocab: false,
        },
        model: ModelConfig {
            kind: ModelKind::GptNeo,
            weights: Some(dir.to_path_buf()),
            ..ModelConfig::default()
        },
        training: TrainingConfig {
            steps: 40,
            batch_size: 16,
            lr: 3e-3,
            warmup: 5,
            loss: LossKind::Full,
            eval_every: 40,
            steps_per_round: 0,
            val_per_skill: 30,
            ..TrainingConfig::default()
        },
        ..skillit::config::Preset::Laptop.config("lego")
    }
}

#[test]
fn a_few_steps_on_lego_lower_the_loss() {
    let out = tempfile::tempdir().unwrap();
    let config = neo_run(&fixture());
    let selected = select(DeviceKind::Flex).unwrap();
    let manifest = train(&config, &selected, out.path(), None, &mut |_| {
        Flow::Continue
    })
    .unwrap();
    let first = &manifest.evaluations[0];
    let last = manifest.evaluations.last().unwrap();
    assert_eq!(last.step, 40);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // The random fixture starts far from the answers (loss ≈ 6 over 300 tokens); 40 steps of the
    // whole-sequence loss teach it the answer format at least.
    assert!(
        mean(&last.loss) < 0.7 * mean(&first.loss),
        "validation loss {:?} → {:?}",
        first.loss,
        last.loss
    );
    // The run is recorded as a gpt-neo run, and its weights are saved.
    let text = std::fs::read_to_string(out.path().join("manifest.json")).unwrap();
    assert!(text.contains("\"kind\": \"gpt-neo\""), "{text}");
    // With the fingerprint of the weights it started from (sha256sum of the fixture's files).
    let pretrained = &manifest.pretrained.as_ref().unwrap();
    assert_eq!(pretrained.bytes, 150_624);
    assert_eq!(pretrained.sha256, SHA256_SAFETENSORS);
    assert!(out.path().join("model.bpk").is_file());
}

#[test]
fn batches_of_mixed_lengths_score_each_example_at_its_own_answer() {
    // A pretrained tokenizer can give a task's texts different lengths; the rows are then padded
    // on the right. Scoring and the losses of a mixed batch must equal each example's alone.
    let device = select(DeviceKind::Flex).unwrap().device;
    let task = TaskSpec::Lego {
        k: 3,
        graph: LegoGraph::Chain,
        dense: false,
        shuffled: false,
        shared_vocab: false,
    }
    .build()
    .unwrap();
    let (model, codec) = ModelConfig {
        kind: ModelKind::GptNeo,
        weights: Some(fixture()),
        ..ModelConfig::default()
    }
    .build(task.vocab(), &mut stream_rng(0, Purpose(99), 0), &device)
    .unwrap();
    assert!(matches!(codec, Codec::Text(_)));
    let validation = ValidationSet::standard(task.as_ref(), 4).unwrap();
    let encoded = codec.encode(validation.iter().cloned().collect()).unwrap();
    // Each example, and the same example with its first 2i tokens cut: lengths differ by row.
    let mut examples = Vec::new();
    for (i, e) in encoded.iter().enumerate() {
        examples.push(e.clone());
        let cut = 2 * (i % 5 + 1);
        examples.push(Example {
            skill: e.skill,
            tokens: e.tokens[cut..].to_vec(),
            answer_pos: e.answer_pos - cut,
            answer_len: e.answer_len,
        });
    }
    let lengths: std::collections::BTreeSet<usize> =
        examples.iter().map(|e| e.tokens.len()).collect();
    assert!(lengths.len() >= 5, "{lengths:?}");
    let together = skillit::train::score(&model, &examples, &device);
    let refs: Vec<&Example> = examples.iter().collect();
    let values = |t: Tensor<1>| -> Vec<f32> { t.into_data().iter::<f32>().collect() };
    let full = values(example_losses(&model, &refs, LossKind::Full, &device));
    let answer = values(example_losses(&model, &refs, LossKind::Answer, &device));
    for (i, e) in examples.iter().enumerate() {
        let alone = skillit::train::score(&model, std::slice::from_ref(e), &device)[0];
        assert!(
            (alone - together[i]).abs() < 1e-5,
            "{alone} vs {}",
            together[i]
        );
        assert!((alone as f32 - answer[i]).abs() < 1e-4);
        let full_alone = values(example_losses(&model, &[e], LossKind::Full, &device))[0];
        assert!(
            (full_alone - full[i]).abs() < 1e-5,
            "{full_alone} vs {}",
            full[i]
        );
    }
}

#[test]
fn a_sweep_trains_the_pretrained_model_named_in_its_model_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("neo.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "neo"
seeds = [0]
model = {{ kind = "gpt-neo", weights = "{}" }}

[task]
name = "lego"
k = 5

[training]
steps = 20
batch_size = 8
lr = 1e-3
warmup = 2
loss = "full"
steps_per_round = 10
eval_every = 10
val_per_skill = 20

[[methods]]
name = "stratified"

[[methods]]
name = "skill_it"
eta = 0.5
"#,
            fixture().display()
        ),
    )
    .unwrap();
    let out = dir.path().join("results");
    let o = skillit(&[
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.matches(",finished,").count(), 2, "{runs}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    // 2 runs × 3 evaluations (steps 0, 10, 20) × 5 skills, and the header.
    assert_eq!(metrics.lines().count(), 1 + 2 * 3 * 5, "{metrics}");
}

#[test]
fn random_init_draws_the_architecture_from_the_seed() {
    let device = select(DeviceKind::Flex).unwrap().device;
    let task = TaskSpec::Lego {
        k: 5,
        graph: LegoGraph::Chain,
        dense: false,
        shuffled: false,
        shared_vocab: false,
    }
    .build()
    .unwrap();
    let config = |random_init| ModelConfig {
        kind: ModelKind::GptNeo,
        weights: Some(fixture()),
        random_init,
        ..ModelConfig::default()
    };
    let logits = |model: &Model| -> Vec<f32> {
        let ids: Vec<i64> = references()[0].ids.iter().map(|&i| i64::from(i)).collect();
        let n = ids.len();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        model.forward(tokens).into_data().iter::<f32>().collect()
    };
    let build = |random_init, seed| {
        config(random_init)
            .build(task.vocab(), &mut stream_rng(seed, Purpose(99), 0), &device)
            .unwrap()
            .0
    };
    let pretrained = build(false, 0);
    let (a, b, c) = (build(true, 0), build(true, 0), build(true, 1));
    assert_eq!(a.num_params(), pretrained.num_params());
    assert_eq!(logits(&a), logits(&b), "the same seed gives the same model");
    assert_ne!(logits(&a), logits(&c));
    assert_ne!(logits(&a), logits(&pretrained));
    // Without a weights file the folder still gives the architecture.
    let dir = fixture_copy(&["config.json", "tokenizer.json"]);
    let bare = ModelConfig {
        weights: Some(dir.path().to_path_buf()),
        ..config(true)
    };
    bare.validate("test").unwrap();
    let (model, _) = bare
        .build(task.vocab(), &mut stream_rng(0, Purpose(99), 0), &device)
        .unwrap();
    assert_eq!(logits(&model), logits(&a));
}

fn skillit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_wrong_or_missing_file_is_one_line() {
    let out = tempfile::tempdir().unwrap();
    let run = |weights: &Path| {
        let o = skillit(&[
            "train",
            "--task",
            "lego",
            "--model",
            "gpt-neo",
            "--weights",
            weights.to_str().unwrap(),
            "--steps",
            "60",
            "--out",
            out.path().join("run").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        // One error line, the last (a torn weights file is found once loading starts, after the
        // line saying what will train).
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert_eq!(stderr.trim().lines().last(), Some(errors[0]), "{stderr}");
        assert!(!stderr.contains("panic"), "{stderr}");
        stderr
    };
    // No folder at all.
    let missing = out.path().join("nowhere");
    assert!(run(&missing).contains("huggingface-cli download"));
    // A folder without weights.
    let dir = fixture_copy(&["config.json", "tokenizer.json"]);
    assert!(run(dir.path()).contains("neither model.safetensors nor pytorch_model.bin"));
    // Weights of another shape than config.json says.
    std::fs::copy(
        fixture().join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("\"hidden_size\": 32", "\"hidden_size\": 64"),
    )
    .unwrap();
    assert!(run(dir.path()).contains("model.safetensors"));
    // A torn weights file.
    std::fs::write(dir.path().join("config.json"), &config).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    assert!(run(dir.path()).contains("model.safetensors"));
    // Not a GPT-Neo.
    std::fs::copy(
        fixture().join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("\"gpt_neo\"", "\"llama\""),
    )
    .unwrap();
    assert!(run(dir.path()).contains("model_type"));
    // No tokenizer.
    std::fs::write(dir.path().join("config.json"), &config).unwrap();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert!(run(dir.path()).contains("tokenizer.json"));
    // A scratch model given weights.
    let o = skillit(&[
        "train",
        "--task",
        "lego",
        "--model",
        "scratch",
        "--weights",
        fixture().to_str().unwrap(),
        "--out",
        out.path().join("run2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("weights"));
}

#[test]
fn a_jsonl_tasks_answer_of_several_words_becomes_every_token_after_the_prompt() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/own_skills/data.jsonl");
    let task = skillit::synthetic::Jsonl::open(&data).unwrap();
    let vocab = task.vocab();
    let codec = TextCodec::read(&fixture().join("tokenizer.json"), vocab, 64).unwrap();
    let validation = ValidationSet::standard(&task, 100).unwrap();
    let mut longest = 0;
    for e in validation.iter() {
        let encoded = codec.encode(e).unwrap();
        assert_eq!(
            encoded.answer_pos + encoded.answer_len,
            encoded.tokens.len()
        );
        assert_eq!(
            codec.ids(&e.prompt(vocab)).unwrap(),
            encoded.prompt_tokens()
        );
        assert_eq!(
            codec.decode(encoded.answer_tokens()).unwrap().trim(),
            e.answer(vocab)
        );
        assert!(encoded.answer_len >= e.answer_len);
        longest = longest.max(encoded.answer_len);
    }
    // `w12 w31 w16` is more tokens than words for this tokenizer.
    assert!(longest > 3, "{longest}");
}
