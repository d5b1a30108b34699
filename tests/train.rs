//! The model and the training loop: it can fit, it learns a skill, it is deterministic, flex and wgpu
//! agree, and bad configs are one line with exit status 2.

use std::path::Path;
use std::process::Command;

use skillit::config::{LossKind, Preset, RunConfig, TrainingConfig};
use skillit::device::{select, DeviceKind};
use skillit::method::MethodSpec;
use skillit::model::ModelConfig;
use skillit::synthetic::{
    stream_rng, Example, LegoGraph, Purpose, TaskSpec, TrainStream, ValidationSet,
};
use skillit::train::{optimizer, train, train_step, Flow, Progress, RunStatus};

fn lego(k: usize) -> TaskSpec {
    TaskSpec::Lego {
        k,
        graph: LegoGraph::Chain,
        dense: false,
        shuffled: false,
        shared_vocab: false,
    }
}

fn tiny_model() -> ModelConfig {
    ModelConfig {
        d_model: 32,
        n_layers: 1,
        n_heads: 2,
        d_ff: 64,
        dropout: 0.0,
        context: 32,
        ..ModelConfig::default()
    }
}

#[test]
fn the_model_overfits_a_tiny_fixed_batch() {
    // Eight fixed LEGO sequences, answer-token loss: a model that can learn drives the loss of the
    // very batch it trains on towards 0 by memorising the eight answers. (The whole-sequence loss
    // cannot reach 0 here: after the shared prefix `Input:` the eight first names are a draw of
    // entropy up to ln 8.)
    let task = lego(3).build().unwrap();
    let mut rng = stream_rng(1, Purpose::TRAIN, 1);
    let examples: Vec<Example> = (0..8).map(|i| task.example(1 + i % 3, &mut rng)).collect();
    let batch: Vec<&Example> = examples.iter().collect();
    let device = select(DeviceKind::Flex).unwrap().device.autodiff();
    let mut init = stream_rng(0, Purpose(99), 0);
    let mut model = ModelConfig {
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        d_ff: 128,
        ..tiny_model()
    }
    .init(task.vocab().len(), &mut init, &device);
    let t = TrainingConfig {
        loss: LossKind::Answer,
        weight_decay: 0.0,
        ..TrainingConfig::default()
    };
    let mut optim = optimizer(&model, &t);
    let mut first = f64::NAN;
    let mut last = f64::NAN;
    for step in 0..300 {
        let (m, loss) = train_step(model, &mut optim, &batch, &t, 1e-2, &device);
        model = m;
        if step == 0 {
            first = loss;
        }
        last = loss;
    }
    // Chance over 36 tokens is ln 36 ≈ 3.58.
    assert!(first > 3.0, "starts near chance: {first}");
    assert!(last < 0.01, "fits the batch: loss {last} after 300 steps");
}

fn short_run(out: &Path, device: DeviceKind, steps: u64) -> skillit::train::Manifest {
    short_run_with(out, device, steps, 0, false)
}

fn short_run_with(
    out: &Path,
    device: DeviceKind,
    steps: u64,
    conv_kernel: usize,
    prefix_lm: bool,
) -> skillit::train::Manifest {
    // Only skill 1 (the root, whose bit is the only literal in the input): learnable in a few
    // hundred steps by a small model.
    let config = RunConfig {
        setting: "pretrain".into(),
        task: lego(3),
        model: ModelConfig {
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            d_ff: 128,
            conv_kernel,
            prefix_lm,
            ..tiny_model()
        },
        training: TrainingConfig {
            steps,
            lr: 3e-3,
            warmup: 5,
            loss: LossKind::Answer,
            eval_every: 50,
            val_per_skill: 50,
            ..TrainingConfig::default()
        },
        method: MethodSpec::Fixed {
            weights: vec![1.0, 0.0, 0.0],
        },
        seed: 3,
        target: None,
        train_skills: None,
        eval_skills: None,
        init: None,
    };
    let selected = select(device).unwrap();
    train(&config, &selected, out, None, &mut |_| Flow::Continue).unwrap()
}

#[test]
fn a_short_lego_run_on_flex_learns_skill_1_and_repeats_exactly() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let m = short_run(a.path(), DeviceKind::Flex, 300);
    assert_eq!(m.status, RunStatus::Finished);
    let last = m.evaluations.last().unwrap();
    assert_eq!(last.step, 300);
    assert!(
        last.accuracy[0] >= 0.95,
        "skill 1 accuracy {:?}",
        last.accuracy
    );
    assert_eq!(m.examples_per_skill, vec![300 * 32, 0, 0]);
    let metrics = std::fs::read_to_string(a.path().join("metrics.csv")).unwrap();
    // 7 evaluations (steps 0, 50, ..., 300) × 3 skills + the header.
    assert_eq!(metrics.lines().count(), 7 * 3 + 1);
    for f in ["manifest.json", "model.bpk"] {
        assert!(a.path().join(f).exists(), "{f}");
    }
    // The same seed twice gives the same metrics, byte for byte.
    short_run(b.path(), DeviceKind::Flex, 300);
    let again = std::fs::read_to_string(b.path().join("metrics.csv")).unwrap();
    assert_eq!(metrics, again);
}

#[test]
fn wgpu_agrees_with_flex() {
    // The same 20 steps on wgpu (lavapipe in CI) and flex: the same initial weights (drawn on the
    // host) and data, so the validation losses agree to float32 round-off accumulated over 20
    // AdamW steps. Tolerance: 2e-3 absolute on losses near 0.7.
    // wgpu opens its adapter lazily: probe it with one tensor. CI (CI=true) installs lavapipe and
    // must run this test; elsewhere a machine without any Vulkan driver skips it, saying so.
    let probe = std::panic::catch_unwind(|| {
        let device = select(DeviceKind::Wgpu).unwrap().device;
        burn::tensor::Tensor::<1>::zeros([1], &device).into_data()
    });
    if probe.is_err() {
        let message = "no wgpu adapter: install a Vulkan driver (Debian: mesa-vulkan-drivers)";
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("skipped: {message}");
        return;
    }
    // Without and with the causal convolution (conv_kernel 4), and the prefix LM: LEGO's answers
    // share one position, so its prompt attends unmasked in both directions (the per-row mask of
    // mixed prompt lengths is checked on flex, src/model/mod.rs).
    for (conv_kernel, prefix_lm) in [(0, false), (4, false), (4, true)] {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let flex = short_run_with(a.path(), DeviceKind::Flex, 20, conv_kernel, prefix_lm);
        let wgpu = short_run_with(b.path(), DeviceKind::Wgpu, 20, conv_kernel, prefix_lm);
        assert_eq!(flex.evaluations.len(), wgpu.evaluations.len());
        for (f, g) in flex.evaluations.iter().zip(&wgpu.evaluations) {
            for (lf, lg) in f.loss.iter().zip(&g.loss) {
                assert!(
                    (lf - lg).abs() < 2e-3,
                    "conv_kernel {conv_kernel}, prefix_lm {prefix_lm}, step {}: flex {lf} vs \
                     wgpu {lg}",
                    f.step
                );
            }
        }
    }
}

#[test]
fn the_convolution_model_is_causal_and_the_convolution_is_used() {
    // Changing token t changes no output before t; the convolution reaches t + 1..t + 3 through
    // its taps (and everything after through attention).
    let device = select(DeviceKind::Flex).unwrap().device.autodiff();
    let config = ModelConfig {
        conv_kernel: 4,
        n_layers: 2,
        ..tiny_model()
    };
    let vocab = 36;
    let tokens: Vec<i64> = (0..24).map(|i| (i * 7 + 3) % vocab).collect();
    let logits = |config: &ModelConfig, tokens: &[i64]| -> Vec<f32> {
        let mut init = stream_rng(5, Purpose(99), 0);
        let model = config.init(vocab as usize, &mut init, &device);
        let input = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(tokens.to_vec(), [2, 12]),
            &device,
        );
        model
            .forward(input)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let before = logits(&config, &tokens);
    let t = 6;
    let mut changed = tokens.clone();
    changed[t] = (changed[t] + 1) % vocab; // row 0, position 6
    let after = logits(&config, &changed);
    let per_position = vocab as usize;
    for pos in 0..12 {
        let row0 = |v: &[f32]| v[pos * per_position..(pos + 1) * per_position].to_vec();
        let row1 = |v: &[f32]| v[(12 + pos) * per_position..(13 + pos) * per_position].to_vec();
        if pos < t {
            assert_eq!(row0(&before), row0(&after), "position {pos} saw the future");
        } else {
            assert_ne!(
                row0(&before),
                row0(&after),
                "position {pos} ignores token {t}"
            );
        }
        // The other row of the batch is untouched.
        assert_eq!(row1(&before), row1(&after));
    }
    // The convolution changes the model: the same seed without it computes other logits.
    let plain = logits(
        &ModelConfig {
            conv_kernel: 0,
            ..config.clone()
        },
        &tokens,
    );
    assert_ne!(before, plain);
}

#[test]
fn fused_causal_attention_matches_the_masked_softmax() {
    // burn's attention op with is_causal (used by the model) against softmax(QKᵀ/√d + mask)·V, on
    // flex with and without autodiff (training takes the autodiff path, evaluation the plain one).
    use burn::tensor::activation::softmax;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Bool, Distribution, Tensor};
    let flex = select(DeviceKind::Flex).unwrap().device;
    for device in [flex.clone(), flex.autodiff()] {
        let [b, h, t, d] = [2, 2, 5, 4];
        let draw = || Tensor::<4>::random([b, h, t, d], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (draw(), draw(), draw());
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let fused = attention(q.clone(), k.clone(), v.clone(), None, None, options);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (d as f64).sqrt());
        // tril_mask is true above the diagonal: the future positions to hide.
        let mask = Tensor::<2, Bool>::tril_mask([t, t], 0, &device).reshape([1, 1, t, t]);
        let manual = softmax(scores.mask_fill(mask.expand([b, h, t, t]), -1e9), 3).matmul(v);
        let diff: f32 = (fused - manual).abs().max().into_scalar();
        assert!(diff < 1e-5, "max difference {diff}");
    }
}

#[test]
fn the_validation_set_is_the_fixed_one() {
    // Runs evaluate on the task's standard validation set (seed 42 for LEGO), whatever their seed.
    let task = lego(3).build().unwrap();
    let v = ValidationSet::standard(task.as_ref(), 100).unwrap();
    let mut s = TrainStream::new(task.as_ref(), 0, &v);
    assert!(!v.contains(&s.next(1).unwrap().tokens));
}

#[test]
fn every_method_runs_end_to_end_and_records_its_mixture() {
    // LEGO k = 5 (the published graph's size), a tiny model, 300 steps in rounds of 100;
    // target_only in fine-tuning on s3 (trained on s3 alone), the others in pre-training.
    for name in skillit::method::NAMES {
        let dir = tempfile::tempdir().unwrap();
        let finetune = name == "target_only";
        let config = RunConfig {
            setting: if finetune { "finetune" } else { "pretrain" }.into(),
            task: lego(5),
            model: tiny_model(),
            training: TrainingConfig {
                steps: 300,
                warmup: 5,
                steps_per_round: 100,
                eval_every: 50,
                val_per_skill: 20,
                ..TrainingConfig::default()
            },
            // DoReMi whole: reference, proxy, and the final run on the proxy's average.
            method: match name {
                "doremi" => MethodSpec::from_name(name, 5, "lego").unwrap(),
                _ => short_rounds(name),
            },
            seed: 1,
            target: finetune.then_some(3),
            train_skills: None,
            eval_skills: None,
            init: None,
        };
        let m = train(
            &config,
            &select(DeviceKind::Flex).unwrap(),
            dir.path(),
            None,
            &mut |_| Flow::Continue,
        )
        .unwrap();
        assert_eq!(m.status, RunStatus::Finished, "{name}");
        assert_eq!(m.examples_per_skill.iter().sum::<u64>(), 300 * 32, "{name}");
        let rows = skillit::results::read_metrics(dir.path()).unwrap();
        assert_eq!(rows.len(), 7 * 5, "{name}: 7 evaluations × 5 skills");
        for step in [0, 50, 100, 150, 200, 250, 300] {
            let total: f64 = rows
                .iter()
                .filter(|r| r.step == step)
                .map(|r| r.weight)
                .sum();
            assert!(
                (total - 1.0).abs() < 1e-9,
                "{name}: weights at step {step} sum to {total}"
            );
        }
        if finetune {
            assert_eq!(m.examples_per_skill, vec![0, 0, 300 * 32, 0, 0]);
        }
        if name.contains("curriculum") {
            // The weight column records what each round drew; every round's weights sum to 1.
            assert!(
                rows.iter().any(|r| r.weight > 0.0 && r.weight < 1.0) || name.starts_with("skill")
            );
        }
        let at_step_0: Vec<f64> = rows
            .iter()
            .filter(|r| r.step == 0)
            .map(|r| r.weight)
            .collect();
        match name {
            // The first LearnParams sub-round: 0.5 on one skill, (1 − 0.5)/4 on the others.
            "aioli" => {
                let mut w = at_step_0.clone();
                w.sort_by(f64::total_cmp);
                assert_eq!(w, vec![0.125, 0.125, 0.125, 0.125, 0.5], "{name}");
            }
            // DoReMi trained its stratified reference, then the proxy against it, and the run
            // itself trains on the proxy's averaged α.
            "doremi" => {
                let read = |sub: &str| skillit::train::read_manifest(&dir.path().join(sub));
                assert_eq!(read("proxy/reference").unwrap().status, "finished");
                let proxy = read("proxy").unwrap();
                assert_eq!(proxy.status, "finished");
                let average: Vec<f64> =
                    serde_json::from_value(proxy.method_state["average"].clone()).unwrap();
                let total: f64 = average.iter().sum();
                assert!((total - 1.0).abs() < 1e-9, "{name}: {average:?}");
                assert_ne!(average, vec![0.2; 5], "the proxy's α moved");
                for (w, a) in at_step_0.iter().zip(&average) {
                    assert!((w - a).abs() < 1e-12, "{at_step_0:?} vs {average:?}");
                }
            }
            // EXP3's first policy: ε_1 = min(1/5, √(ln 5 / 5)) = 1/5 → uniform.
            "odm" => {
                for w in &at_step_0 {
                    assert!((w - 0.2).abs() < 1e-12, "{name}: {at_step_0:?}");
                }
            }
            _ => {}
        }
        if name == "skill_it" {
            // Round 0: the published graph's initial mixture, s2 at 0.3461 (docs/paper.md §6).
            let s2 = rows.iter().find(|r| r.step == 0 && r.skill == 2).unwrap();
            assert!((s2.weight - 0.3461).abs() < 1e-4);
        }
    }
}

#[test]
fn fine_tuning_trains_the_target_and_its_prerequisites() {
    // LEGO fine-tuning on s3: the published graph's train skills are s1, s2, s3 (docs/paper.md §7),
    // so stratified spreads 60 steps × 32 = 1,920 examples over them (per round of 640: 1/3·640 =
    // 213.33 → 213, 213 and the remainder 214 to s3), none of s4, s5.
    let dir = tempfile::tempdir().unwrap();
    let config = RunConfig {
        setting: "finetune".into(),
        task: lego(5),
        model: tiny_model(),
        training: TrainingConfig {
            steps: 60,
            warmup: 5,
            steps_per_round: 20,
            eval_every: 20,
            val_per_skill: 20,
            ..TrainingConfig::default()
        },
        method: MethodSpec::Stratified,
        seed: 2,
        target: Some(3),
        train_skills: None,
        eval_skills: None,
        init: None,
    };
    let m = train(
        &config,
        &select(DeviceKind::Flex).unwrap(),
        dir.path(),
        None,
        &mut |_| Flow::Continue,
    )
    .unwrap();
    assert_eq!(m.examples_per_skill, vec![639, 639, 642, 0, 0]);
    // Skill-It in fine-tuning starts from [0.2543, 0.3265, 0.4192] (docs/paper.md §6).
    let skill_it = RunConfig {
        method: MethodSpec::from_name("skill_it", 5, "lego").unwrap(),
        ..config.clone()
    };
    let dir2 = tempfile::tempdir().unwrap();
    train(
        &skill_it,
        &select(DeviceKind::Flex).unwrap(),
        dir2.path(),
        None,
        &mut |_| Flow::Continue,
    )
    .unwrap();
    let rows = skillit::results::read_metrics(dir2.path()).unwrap();
    let w: Vec<f64> = rows
        .iter()
        .filter(|r| r.step == 0)
        .map(|r| r.weight)
        .collect();
    for (a, e) in w.iter().zip([0.2543, 0.3265, 0.4192, 0.0, 0.0]) {
        assert!((a - e).abs() < 1e-4, "{w:?}");
    }
    // A fine-tuning run without a target is a config error.
    let bad = RunConfig {
        target: None,
        ..config
    };
    assert!(bad
        .validate("test")
        .unwrap_err()
        .to_string()
        .contains("target"));
}

/// A method by name with rounds short enough for the tests' runs of a few hundred steps: Aioli
/// with one LearnParams sweep of 4 steps per skill in rounds of 40 steps, DoReMi's proxy (its α
/// changes at every step, so a resumed run must restore it), ODM after a warm-up of 10 steps, the
/// curricula in rounds of 20.
fn short_rounds(name: &str) -> MethodSpec {
    use skillit::method::{AioliConfig, DoremiConfig, DoremiStage, OdmConfig};
    match name {
        "aioli" => MethodSpec::Aioli {
            config: AioliConfig {
                lp_rounds: 1,
                lp_steps: 4,
                update_steps: 40,
                ..AioliConfig::default()
            },
        },
        "doremi" => MethodSpec::Doremi {
            config: DoremiConfig {
                stage: DoremiStage::Proxy,
                ..DoremiConfig::default()
            },
        },
        // The curricula's rounds are 1,000 steps for LEGO k = 5 (the authors' scripts).
        "curriculum" | "class_curriculum" => {
            let config = skillit::method::PacingConfig {
                update_steps: Some(20),
                ..Default::default()
            };
            match name {
                "curriculum" => MethodSpec::Curriculum { config },
                _ => MethodSpec::ClassCurriculum { config },
            }
        }
        "odm" => MethodSpec::Odm {
            config: OdmConfig {
                warmup_steps: 10,
                ..OdmConfig::default()
            },
        },
        _ => MethodSpec::from_name(name, 5, "lego").unwrap(),
    }
}

/// LEGO k = 5 with the tiny model, 80 steps in rounds of 20, evaluated every 10: `method` as
/// [`short_rounds`] shapes it, with `seed`.
fn short_run_config(method: &str, seed: u64) -> RunConfig {
    RunConfig {
        setting: "pretrain".into(),
        task: lego(5),
        model: tiny_model(),
        training: TrainingConfig {
            steps: 80,
            warmup: 5,
            steps_per_round: 20,
            eval_every: 10,
            val_per_skill: 20,
            ..TrainingConfig::default()
        },
        method: short_rounds(method),
        seed,
        target: None,
        train_skills: None,
        eval_skills: None,
        init: None,
    }
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_one() {
    // 80 steps in rounds of 20, stopped at the first checkpoint (step 20) and trained again into the same
    // folder: it resumes from the checkpoint, and its metrics equal an uninterrupted run's byte for
    // byte. Methods that depend on the history (skill_it) and on the scored pool (curriculum,
    // skill_curriculum) included.
    for name in [
        "stratified",
        "skill_it",
        "curriculum",
        "class_curriculum",
        "skill_anticurriculum",
        "aioli",
        "doremi",
        "odm",
    ] {
        let config = short_run_config(name, 4);
        resume_repeats_the_whole_run(&config, name);
    }
    // A folder holding another config's checkpoint is refused.
    let dir = tempfile::tempdir().unwrap();
    let config = RunConfig {
        training: TrainingConfig {
            steps: 40,
            warmup: 5,
            steps_per_round: 20,
            eval_every: 20,
            val_per_skill: 20,
            ..TrainingConfig::default()
        },
        model: tiny_model(),
        ..Preset::Laptop.config("lego")
    };
    let flex = select(DeviceKind::Flex).unwrap();
    train(&config, &flex, dir.path(), None, &mut |p| match p {
        Progress::RoundEnd { .. } => Flow::Stop,
        _ => Flow::Continue,
    })
    .unwrap();
    let other = RunConfig { seed: 9, ..config };
    let err = train(&other, &flex, dir.path(), None, &mut |_| Flow::Continue).unwrap_err();
    assert!(err.to_string().contains("another config"), "{err}");
}

/// Trains `config` once uninterrupted and once stopped at its first checkpoint at least 20 steps
/// in and trained again into the same folder, checks that the resumed run's metrics equal the
/// uninterrupted one's byte for byte, and returns both manifests (`name` labels the messages).
fn resume_repeats_the_whole_run(
    config: &RunConfig,
    name: &str,
) -> (skillit::train::Manifest, skillit::train::Manifest) {
    let flex = select(DeviceKind::Flex).unwrap();
    let whole = tempfile::tempdir().unwrap();
    let a = train(config, &flex, whole.path(), None, &mut |_| Flow::Continue).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let stopped = train(config, &flex, parts.path(), None, &mut |p| match p {
        Progress::RoundEnd { step, .. } if step >= 20 => Flow::Stop,
        _ => Flow::Continue,
    })
    .unwrap();
    // The first checkpoint: the end of the first round of 20 steps; methods with their own
    // round lengths checkpoint at the first round end at least 20 steps in.
    let RunStatus::Stopped { step } = stopped.status else {
        panic!("{name}: {:?}", stopped.status);
    };
    assert!(
        step == 20 || (step > 20 && step < 80 && name != "stratified"),
        "{name}: stopped at {step}"
    );
    assert!(parts.path().join("checkpoint/state.json").exists());
    let b = train(config, &flex, parts.path(), None, &mut |_| Flow::Continue).unwrap();
    assert_eq!(b.status, RunStatus::Finished, "{name}");
    let read = |d: &Path| std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    assert_eq!(
        read(whole.path()),
        read(parts.path()),
        "{name}: metrics differ after resuming"
    );
    assert_eq!(a.examples_per_skill, b.examples_per_skill, "{name}");
    assert!(
        !parts.path().join("checkpoint").exists(),
        "a finished run drops its checkpoint"
    );
    (a, b)
}

#[test]
fn a_resumed_jsonl_run_repeats_the_uninterrupted_one_across_epochs() {
    // 50 rows of each of 2 skills, no split: 10 held out, 40 to train on; 80 steps × 32 draw 1,280
    // of each skill, 32 epochs, stopped after the first round of 20 steps and resumed.
    let tmp = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..100 {
        let (skill, a, b) = (1 + i % 2, i % 7, i / 7);
        text += &format!(
            "{{\"skill\": {skill}, \"prompt\": \"s{skill} x{a} y{b} =\", \"answer\": \"x{a} y{b}\"}}\n"
        );
    }
    let data = tmp.path().join("d.jsonl");
    std::fs::write(&data, text).unwrap();
    let short = short_run_config("stratified", 4);
    let config = RunConfig {
        task: TaskSpec::Jsonl {
            path: data.display().to_string(),
        },
        model: ModelConfig {
            context: 16,
            ..tiny_model()
        },
        training: TrainingConfig {
            val_per_skill: 10,
            ..short.training.clone()
        },
        method: MethodSpec::Stratified,
        ..short
    };
    let (a, b) = resume_repeats_the_whole_run(&config, "jsonl");
    let epochs = a.data.as_ref().unwrap().epochs.clone();
    assert_eq!(b.data.unwrap().epochs, epochs);
    // 80 × 32 / 2 = 1,280 rows of each skill from 40: exactly 32 epochs begun.
    assert_eq!(epochs, [32, 32]);
}

#[test]
fn shipped_graph_files_are_the_published_graphs() {
    use skillit::graph::SkillsGraph;
    for (file, task, setting, k) in [
        ("graphs/lego_pretrain.toml", "lego", "pretrain", 5),
        ("graphs/addition_pretrain.toml", "addition", "pretrain", 3),
        ("graphs/lego_finetune_s3.toml", "lego", "finetune", 5),
        (
            "graphs/addition_finetune_s1.toml",
            "addition",
            "finetune",
            3,
        ),
    ] {
        let read = SkillsGraph::read(Path::new(file), k).unwrap();
        assert_eq!(
            Some(read),
            SkillsGraph::published(task, setting, k),
            "{file}"
        );
    }
}

#[test]
fn out_of_domain_runs_skill_it_on_a_k_by_m_graph() {
    // Train on s1, s2; evaluate on s3, s4 (LEGO k = 4) with a 2×2 graph given in the file.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("ood.toml");
    std::fs::write(
        &run,
        "setting = \"out_of_domain\"\ntrain_skills = [1, 2]\neval_skills = [3, 4]\n\
         [task]\nname = \"lego\"\nk = 4\n\
         [model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\n\
         [training]\nsteps = 40\nwarmup = 5\nsteps_per_round = 20\neval_every = 20\nval_per_skill = 20\n\
         [method]\nname = \"skill_it\"\ngraph = { train = [1, 2], eval = [3, 4], matrix = [[1, 0], [0.5, 1]] }\n",
    )
    .unwrap();
    let config = RunConfig::from_file(&run, None, "lego").unwrap();
    let out = dir.path().join("out");
    let m = train(
        &config,
        &select(DeviceKind::Flex).unwrap(),
        &out,
        None,
        &mut |_| Flow::Continue,
    )
    .unwrap();
    assert_eq!(m.status, RunStatus::Finished);
    assert_eq!(
        m.examples_per_skill[2..],
        [0, 0],
        "eval skills get no training data"
    );
    // Round 0: scores A·1 = [1, 1.5], η = 0.5: exp(0.5) = 1.64872, exp(0.75) = 2.11700 → p = [0.43782,
    // 0.56218] over s1, s2.
    let rows = skillit::results::read_metrics(&out).unwrap();
    let w: Vec<f64> = rows
        .iter()
        .filter(|r| r.step == 0)
        .map(|r| r.weight)
        .collect();
    assert!(
        (w[0] - 0.43782).abs() < 1e-5 && (w[1] - 0.56218).abs() < 1e-5,
        "{w:?}"
    );
}

#[test]
fn presets_are_valid_configs() {
    for preset in [Preset::Laptop, Preset::Paper] {
        for task in ["lego", "addition"] {
            preset.config(task).validate(preset.as_str()).unwrap();
        }
    }
}

#[test]
fn every_method_runs_on_every_preset_with_the_tasks_own_graph_where_none_is_published() {
    // Out of the box: every registered method builds and validates on each preset's task (the
    // laptop preset's LEGO k = 3 has no published graph; Skill-It takes the chain's).
    for preset in [Preset::Laptop, Preset::Paper] {
        for task_name in ["lego", "addition"] {
            let mut config = preset.config(task_name);
            let task = config.task.build().unwrap();
            for name in skillit::method::NAMES {
                if name == "target_only" {
                    continue; // fine-tuning only: it needs a target
                }
                config.method = MethodSpec::from_name(name, task.num_skills(), task_name).unwrap();
                config.validate(name).unwrap();
                config
                    .method
                    .build(task.as_ref(), &config.setting, None)
                    .unwrap();
            }
        }
    }
    // The task's prerequisite edges, weight 0.5 (docs/paper.md §7's edge weight), where no graph is
    // published: LEGO's chain 1 → 2 → 3, the tree 1 → 2, 1 → 3, 2 → 4, addition's carries.
    let graph = |task: &dyn skillit::synthetic::Task| {
        MethodSpec::from_name("skill_it", task.num_skills(), task.name())
            .unwrap()
            .graph(task, "pretrain", "test")
            .unwrap()
            .matrix
    };
    let chain = lego(3).build().unwrap();
    assert_eq!(
        graph(chain.as_ref()),
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]
    );
    let tree = TaskSpec::Lego {
        k: 4,
        graph: LegoGraph::Tree,
        dense: false,
        shuffled: false,
        shared_vocab: false,
    }
    .build()
    .unwrap();
    assert_eq!(
        graph(tree.as_ref()),
        [
            [1.0, 0.5, 0.5, 0.0],
            [0.0, 1.0, 0.0, 0.5],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0]
        ]
    );
    let addition = TaskSpec::Addition {
        k: 2,
        shared_vocab: false,
    }
    .build()
    .unwrap();
    assert_eq!(graph(addition.as_ref()), [[1.0, 0.5], [0.0, 1.0]]);
    // The published graph still wins where there is one (LEGO k = 5: s2 → s1, s3, s4).
    let published = lego(5).build().unwrap();
    assert_eq!(graph(published.as_ref())[1], [0.5, 1.0, 0.5, 0.5, 0.0]);
    // The recall corpus has no prerequisites: Skill-It needs a graph given.
    let recall = TaskSpec::Recall {
        k: 5,
        queries: 1,
        dense: false,
        pointers: false,
        hops: 1,
        order: skillit::synthetic::ChainOrder::Any,
        parity: false,
    }
    .build()
    .unwrap();
    let err = MethodSpec::from_name("skill_it", 2, "recall")
        .unwrap()
        .graph(recall.as_ref(), "pretrain", "test")
        .unwrap_err()
        .to_string();
    assert!(err.contains("publishes no graph for recall"), "{err}");
}

#[test]
fn bad_configs_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--lr".into(), "0".into()], "training.lr"),
        (vec!["--lr".into(), "NaN".into()], "training.lr"),
        (
            vec![
                "--config".into(),
                write("batch.toml", "[training]\nbatch_size = 0\n"),
            ],
            "training.batch_size",
        ),
        (
            vec![
                "--config".into(),
                write("heads.toml", "[model]\nd_model = 64\nn_heads = 5\n"),
            ],
            "model.n_heads",
        ),
        (
            vec![
                "--config".into(),
                write("ctx.toml", "[model]\ncontext = 8\n"),
            ],
            "model.context",
        ),
        (
            vec![
                "--config".into(),
                write("unknown.toml", "[training]\nsteps = 10\nfoo = 1\n"),
            ],
            "unknown field `foo`",
        ),
        (
            vec!["--config".into(), write("syntax.toml", "[training\n")],
            "syntax.toml",
        ),
        (
            vec![
                "--config".into(),
                write("k.toml", "[task]\nname = \"lego\"\nk = 30\n"),
            ],
            "k must be in 2..=26",
        ),
        (
            vec![
                "--config".into(),
                write(
                    "dense.toml",
                    "[task]\nname = \"recall\"\nqueries = 2\ndense = true\n",
                ),
            ],
            "dense asks every clause: it needs queries = 1",
        ),
        (
            vec![
                "--config".into(),
                write(
                    "parity.toml",
                    "[task]\nname = \"recall\"\npointers = true\nparity = true\n",
                ),
            ],
            "parity answers a chase: it needs hops > 1",
        ),
        (
            vec![
                "--config".into(),
                write("w.toml", "[method]\nname = \"fixed\"\nweights = [1, 2]\n"),
            ],
            "2 weights for 3 skills",
        ),
        (
            vec!["--method".into(), "nonsense".into()],
            "unknown method 'nonsense'",
        ),
        (
            vec![
                "--config".into(),
                dir.path().join("absent.toml").display().to_string(),
            ],
            "cannot be read",
        ),
    ];
    for (extra, needle) in cases {
        let out_dir = dir.path().join("run");
        let mut args = vec![
            "train".to_string(),
            "--out".into(),
            out_dir.display().to_string(),
            "--steps".into(),
            "5".into(),
        ];
        args.extend(extra.clone());
        let out = Command::new(env!("CARGO_BIN_EXE_skillit"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{extra:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{extra:?}: '{stderr}' lacks '{needle}'"
        );
        assert!(
            !out_dir.join("metrics.csv").exists(),
            "{extra:?} wrote results"
        );
    }
}

// ---- packed runs (issue 24) -----------------------------------------------------------------

/// A metrics row: (step, skill) and (loss, accuracy, weight).
type Row = ((u64, usize), (f64, f64, f64));

/// The rows of a run folder's metrics.csv.
fn metrics(dir: &std::path::Path) -> Vec<Row> {
    skillit::results::read_metrics(dir)
        .unwrap()
        .into_iter()
        .map(|r| ((r.step, r.skill), (r.loss, r.accuracy, r.weight)))
        .collect()
}

fn assert_close(alone: &std::path::Path, packed: &std::path::Path, what: &str) {
    let (a, b) = (metrics(alone), metrics(packed));
    assert_eq!(a.len(), b.len(), "{what}: rows");
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb, "{what}");
        assert!(
            (va.0 - vb.0).abs() < 1e-4,
            "{what} at {ka:?}: loss {} vs {}",
            va.0,
            vb.0
        );
        assert_eq!(va.1, vb.1, "{what} at {ka:?}: accuracy");
        // A mixture computed from losses (Aioli's, Skill-It's) moves with them.
        assert!(
            (va.2 - vb.2).abs() < 1e-4,
            "{what} at {ka:?}: weight {} vs {}",
            va.2,
            vb.2
        );
    }
}

/// Trains `configs` as one pack, each run in its own thread as the sweep does, into `dirs`;
/// `stop_at`: stop each run at its first round end at or after that step.
fn train_pack(
    configs: &[RunConfig],
    dirs: &[std::path::PathBuf],
    stop_at: Option<u64>,
) -> Vec<skillit::train::Manifest> {
    use skillit::train::{train_in_pack, Pack};
    let flex = select(DeviceKind::Flex).unwrap();
    let pack = Pack::new(
        configs.len(),
        &configs[0].training,
        &flex.device.clone().autodiff(),
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            configs
                .iter()
                .zip(dirs)
                .enumerate()
                .map(|(r, (config, dir))| {
                    let slot = pack.slot(r);
                    let flex = &flex;
                    scope.spawn(move || {
                        train_in_pack(config, flex, dir, None, Some(slot), &mut |p| match (
                            p, stop_at,
                        ) {
                            (Progress::RoundEnd { step, .. }, Some(at)) if step >= at => Flow::Stop,
                            _ => Flow::Continue,
                        })
                        .unwrap()
                    })
                })
                .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn packed_runs_record_what_they_record_alone_and_resume_either_way() {
    let methods = ["stratified", "skill_it", "curriculum", "aioli"];
    let configs: Vec<_> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| short_run_config(m, i as u64))
        .collect();
    let flex = select(DeviceKind::Flex).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = |kind: &str, i: usize| tmp.path().join(format!("{kind}-{}", methods[i]));
    let alone: Vec<_> = (0..methods.len()).map(|i| dir("alone", i)).collect();
    for (config, d) in configs.iter().zip(&alone) {
        train(config, &flex, d, None, &mut |_| Flow::Continue).unwrap();
    }

    // The whole runs packed: the same records.
    let packed: Vec<_> = (0..methods.len()).map(|i| dir("packed", i)).collect();
    for m in train_pack(&configs, &packed, None) {
        assert_eq!(m.status, RunStatus::Finished);
    }
    for i in 0..methods.len() {
        assert_close(&alone[i], &packed[i], methods[i]);
        assert!(packed[i].join("model.bpk").exists());
    }

    // Packed, stopped at a checkpoint, resumed alone: each run's own optimizer state was saved.
    let split: Vec<_> = (0..methods.len())
        .map(|i| dir("packed-then-alone", i))
        .collect();
    for m in train_pack(&configs, &split, Some(20)) {
        assert!(
            matches!(m.status, RunStatus::Stopped { .. }),
            "{:?}",
            m.status
        );
    }
    for (i, (config, d)) in configs.iter().zip(&split).enumerate() {
        train(config, &flex, d, None, &mut |_| Flow::Continue).unwrap();
        assert_close(&alone[i], d, &format!("{}: packed, then alone", methods[i]));
    }

    // Alone, stopped at step 40 (every method's rounds end there), resumed as a pack: the runs'
    // optimizer states stack.
    let joined: Vec<_> = (0..methods.len())
        .map(|i| dir("alone-then-packed", i))
        .collect();
    for (config, d) in configs.iter().zip(&joined) {
        let m = train(config, &flex, d, None, &mut |p| match p {
            Progress::RoundEnd { step, .. } if step >= 40 => Flow::Stop,
            _ => Flow::Continue,
        })
        .unwrap();
        assert_eq!(m.status, RunStatus::Stopped { step: 40 });
    }
    train_pack(&configs, &joined, None);
    for i in 0..methods.len() {
        assert_close(
            &alone[i],
            &joined[i],
            &format!("{}: alone, then packed", methods[i]),
        );
    }
}

#[test]
fn a_model_grown_from_fewer_blocks_starts_where_they_ended() {
    // A 1-block run's weights grown into 3 blocks (`init_layers = 1`): the new blocks start as
    // the identity, so the grown run's step-0 evaluation is the 1-block run's last one; then the
    // new blocks train (the run moves on from there).
    let flex = select(DeviceKind::Flex).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let base = RunConfig {
        model: ModelConfig {
            conv_kernel: 3,
            ..tiny_model()
        },
        ..short_run_config("stratified", 2)
    };
    let first = train(&base, &flex, &tmp.path().join("base"), None, &mut |_| {
        Flow::Continue
    })
    .unwrap();
    let grown = RunConfig {
        model: ModelConfig {
            n_layers: 3,
            init_layers: 1,
            ..base.model.clone()
        },
        init: Some(tmp.path().join("base/model.bpk")),
        ..base.clone()
    };
    let second = train(&grown, &flex, &tmp.path().join("grown"), None, &mut |_| {
        Flow::Continue
    })
    .unwrap();
    let end = first.evaluations.last().unwrap();
    let start = &second.evaluations[0];
    assert_eq!(start.step, 0);
    assert_eq!(start.accuracy, end.accuracy);
    for (a, b) in start.loss.iter().zip(&end.loss) {
        assert!((a - b).abs() < 1e-5, "grown {a} vs base {b}");
    }
    assert!(second.num_params > first.num_params);
    let last = second.evaluations.last().unwrap();
    assert!(last.loss != start.loss, "the grown run trains");
    // Frozen: the init blocks and embeddings come out of training as they went in, the new
    // blocks do not.
    let frozen = RunConfig {
        model: ModelConfig {
            freeze_init: true,
            ..grown.model.clone()
        },
        ..grown.clone()
    };
    let third = train(
        &frozen,
        &flex,
        &tmp.path().join("frozen"),
        None,
        &mut |_| Flow::Continue,
    )
    .unwrap();
    assert_eq!(third.evaluations[0].loss, start.loss);
    assert!(
        third.evaluations.last().unwrap().loss != start.loss,
        "the new blocks train"
    );
    let load = |config: &ModelConfig, dir: &str| {
        let device = flex.device.clone().autodiff();
        let task = base.task.build().unwrap();
        let model = burn::module::Module::load_file(
            config.init(
                task.vocab().len(),
                &mut stream_rng(0, Purpose(99), 0),
                &device,
            ),
            tmp.path().join(dir).join("model.bpk"),
        );
        let mut values = ParamValues(Vec::new());
        burn::module::Module::visit(&model, &mut values);
        values.0
    };
    let before = load(&base.model, "base");
    let after = load(&frozen.model, "frozen");
    let kept = before.len() - 4; // all but the final norm's two and the head's two
    assert_eq!(
        &after[..kept],
        &before[..kept],
        "the init blocks stay as they were"
    );
    // Without init weights there is nothing to grow from.
    let err = train(
        &RunConfig {
            init: None,
            ..grown
        },
        &flex,
        &tmp.path().join("bad"),
        None,
        &mut |_| Flow::Continue,
    )
    .unwrap_err();
    assert!(err.to_string().contains("model.init_layers"), "{err}");
}

#[test]
fn a_model_grown_to_the_shared_vocabulary_learns_its_new_words() {
    // A LEGO run's 36-word model grown to the shared vocabulary's 55 (`init_vocab = 36`) and
    // trained on digit chains, whose answers are digits LEGO lacks: the run starts from the LEGO
    // weights and the chains' loss falls (the new words' rows learn). An init_vocab that is not
    // the init weights' (their run folder's manifest) or not below the task's is one clear line.
    let flex = select(DeviceKind::Flex).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let base = RunConfig {
        model: ModelConfig {
            context: 40,
            ..tiny_model()
        },
        ..short_run_config("stratified", 3)
    };
    train(&base, &flex, &tmp.path().join("base"), None, &mut |_| {
        Flow::Continue
    })
    .unwrap();
    let grown = RunConfig {
        task: TaskSpec::Chains {
            k: 3,
            offsets: 3,
            lego_syntax: false,
        },
        model: ModelConfig {
            init_vocab: 36,
            ..base.model.clone()
        },
        init: Some(tmp.path().join("base/model.bpk")),
        training: TrainingConfig {
            steps: 150,
            lr: 3e-3,
            loss: LossKind::Answer,
            ..base.training.clone()
        },
        ..base.clone()
    };
    let run = train(&grown, &flex, &tmp.path().join("grown"), None, &mut |_| {
        Flow::Continue
    })
    .unwrap();
    let mean = |loss: &[f64]| loss.iter().sum::<f64>() / loss.len() as f64;
    let (start, end) = (&run.evaluations[0], run.evaluations.last().unwrap());
    assert!(
        mean(&end.loss) < mean(&start.loss) - 0.5,
        "the new words are learned: {:?} -> {:?}",
        start.loss,
        end.loss
    );
    // The grown run's task (chains) with an init_vocab it cannot have.
    for init_vocab in [55, 30] {
        let bad = RunConfig {
            model: ModelConfig {
                init_vocab,
                ..grown.model.clone()
            },
            ..grown.clone()
        };
        let err = train(&bad, &flex, &tmp.path().join("bad"), None, &mut |_| {
            Flow::Continue
        })
        .unwrap_err();
        assert!(err.to_string().contains("model.init_vocab"), "{err}");
    }
}

/// Every float parameter's values, in visit order.
struct ParamValues(Vec<Vec<f32>>);

impl burn::module::ModuleVisitor for ParamValues {
    fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<burn::tensor::Tensor<D>>) {
        self.0
            .push(p.val().into_data().try_to_vec::<f32>().unwrap());
    }
}
