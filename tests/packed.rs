//! Packed runs (issue 24): R runs trained as one model with a leading run axis give each run the
//! losses and weights it gets trained alone.

use skillit::config::{LossKind, TrainingConfig};
use skillit::device::{select, DeviceKind};
use skillit::model::packed::PackedTransformer;
use skillit::model::{Model, ModelConfig};
use skillit::synthetic::{stream_rng, Example, LegoGraph, Purpose, Task, TaskSpec};
use skillit::train::{
    batches_can_pack, example_losses, optimizer, packed_optimizer, packed_train_step, train_step,
};

const RUNS: usize = 3;
const STEPS: usize = 12;
const BATCH: usize = 8;

fn model_config() -> ModelConfig {
    // Two blocks with the convolution: every packed layer kind is on the path.
    ModelConfig {
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        d_ff: 64,
        dropout: 0.0,
        context: 64,
        conv_kernel: 3,
        ..ModelConfig::default()
    }
}

/// Run r's batch at step s: its own stream, a different mixture of skills in each run, example i
/// drawn from `tasks[i % tasks.len()]` (tasks of one vocabulary; of several lengths, the rows
/// are of several lengths).
fn batch(tasks: &[Box<dyn Task>], r: usize, s: usize) -> Vec<Example> {
    let mut rng = stream_rng(r as u64, Purpose::TRAIN, s as u64);
    (0..BATCH)
        .map(|i| {
            let task = &tasks[i % tasks.len()];
            task.example(1 + (i * (r + 1)) % task.num_skills(), &mut rng)
        })
        .collect()
}

/// Trains RUNS runs alone and as one pack under `loss`, each model a prefix LM or causal; asserts
/// that every step's per-example losses and the final weights (as the answer log-probabilities
/// they give on fresh examples) agree within `tol`.
fn packed_matches_alone(specs: &[TaskSpec], prefix_lm: bool, loss: LossKind, tol: f64) {
    let tasks: Vec<Box<dyn Task>> = specs.iter().map(|s| s.build().unwrap()).collect();
    let vocab = tasks[0].vocab().len();
    assert!(tasks.iter().all(|t| t.vocab().len() == vocab));
    let device = select(DeviceKind::Flex).unwrap().device.autodiff();
    // Weight decay on, and a clipping norm small enough that every run's step is clipped: a
    // norm shared across the pack, or decay on the wrong parameters, would show.
    let t = TrainingConfig {
        loss,
        weight_decay: 0.1,
        grad_clip: 0.05,
        ..TrainingConfig::default()
    };
    let lr = 3e-3;
    let initial: Vec<Model> = (0..RUNS)
        .map(|r| {
            let mut init = stream_rng(r as u64, Purpose(99), 0);
            ModelConfig {
                prefix_lm,
                ..model_config()
            }
            .init(vocab, &mut init, &device)
        })
        .collect();

    let mut alone_losses = vec![Vec::new(); RUNS];
    let mut alone = Vec::new();
    for (r, model) in initial.iter().enumerate() {
        let mut model = model.clone();
        let mut optim = optimizer(&model, &t);
        for s in 0..STEPS {
            let examples = batch(&tasks, r, s);
            let refs: Vec<&Example> = examples.iter().collect();
            let losses: Vec<f64> = example_losses(&model, &refs, loss, &device)
                .into_data()
                .iter::<f32>()
                .map(f64::from)
                .collect();
            alone_losses[r].push(losses);
            model = train_step(model, &mut optim, &refs, &t, lr, &device).0;
        }
        alone.push(model);
    }

    let mut pack = PackedTransformer::stack(&initial.iter().collect::<Vec<_>>());
    assert_eq!(pack.runs(), RUNS);
    let mut optim = packed_optimizer(&pack, &t);
    for s in 0..STEPS {
        let examples: Vec<Vec<Example>> = (0..RUNS).map(|r| batch(&tasks, r, s)).collect();
        let refs: Vec<Vec<&Example>> = examples.iter().map(|b| b.iter().collect()).collect();
        assert!(batches_can_pack(&refs, loss));
        let (next, losses) = packed_train_step(pack, &mut optim, &refs, &t, lr, &device);
        pack = next;
        for (r, (alone, packed)) in alone_losses.iter().zip(&losses).enumerate() {
            for (a, b) in alone[s].iter().zip(packed) {
                assert!(
                    (a - b).abs() < tol,
                    "run {r}, step {s}: loss {b} packed, {a} alone"
                );
            }
        }
    }

    let probe = batch(&tasks, 7, 99);
    let probe: Vec<&Example> = probe.iter().collect();
    let positions: Vec<usize> = probe.iter().map(|e| e.answer_pos).collect();
    let tokens = |m: &Model| {
        let seq = probe.iter().map(|e| e.tokens.len()).max().unwrap();
        let data: Vec<i64> = probe
            .iter()
            .flat_map(|e| {
                let row = e.tokens.iter().map(|&t| i64::from(t));
                row.chain(std::iter::repeat_n(0, seq - e.tokens.len()))
            })
            .collect();
        m.answer_log_probs(
            burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(data, [probe.len(), seq]),
                &device,
            ),
            &positions,
        )
    };
    let mut moved = 0.0f64;
    for r in 0..RUNS {
        let mut unpacked = initial[r].clone();
        pack.unstack_into(r, &mut unpacked);
        let packed: Vec<f32> = tokens(&unpacked).into_data().try_to_vec::<f32>().unwrap();
        let own: Vec<f32> = tokens(&alone[r]).into_data().try_to_vec::<f32>().unwrap();
        let start: Vec<f32> = tokens(&initial[r]).into_data().try_to_vec::<f32>().unwrap();
        for ((p, o), s) in packed.iter().zip(&own).zip(&start) {
            assert!(
                f64::from((p - o).abs()) < tol,
                "run {r}: log-prob {p} from the pack, {o} alone"
            );
            moved = moved.max(f64::from((o - s).abs()));
        }
    }
    // The runs did train: the comparison is not between two untouched initialisations.
    assert!(moved > 0.05, "weights moved by {moved} only");
}

fn lego(k: usize, shared_vocab: bool) -> TaskSpec {
    TaskSpec::Lego {
        k,
        graph: LegoGraph::Chain,
        dense: false,
        shuffled: false,
        shared_vocab,
    }
}

#[test]
fn a_pack_trains_each_run_as_alone_answer_loss() {
    packed_matches_alone(&[lego(5, false)], false, LossKind::Answer, 1e-4);
}

#[test]
fn a_pack_trains_each_run_as_alone_whole_sequence_loss() {
    let addition = TaskSpec::Addition {
        k: 3,
        shared_vocab: false,
    };
    packed_matches_alone(&[addition], false, LossKind::Full, 1e-4);
}

#[test]
fn a_pack_of_prefix_lms_trains_each_run_as_alone() {
    // LEGO k = 3 and k = 5 in the shared vocabulary, alternating within every batch: the
    // prompts end at several positions, so the prefix masks of rows of one pack differ
    // (a k = 3 prompt is shorter than a k = 5 one) and the short rows are padded.
    let (short, long) = (lego(3, true), lego(5, true));
    let (a, b) = (short.build().unwrap(), long.build().unwrap());
    let (e, f) = (
        a.example(1, &mut stream_rng(0, Purpose::TRAIN, 0)),
        b.example(1, &mut stream_rng(0, Purpose::TRAIN, 0)),
    );
    assert!(
        e.answer_pos < f.answer_pos,
        "{} {}",
        e.answer_pos,
        f.answer_pos
    );
    packed_matches_alone(&[short, long], true, LossKind::Answer, 1e-4);
}

/// `skillit bench --pack R` measures the pack beside the single run: R runs per packed step.
#[test]
fn bench_measures_a_pack_beside_one_run() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_skillit"))
        .args([
            "bench", "--preset", "laptop", "--pack", "3", "--warmup", "1", "--steps", "3",
            "--evals", "1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let one = json["ms_per_step"].as_f64().unwrap();
    assert!(
        (json["runs_steps_per_s"].as_f64().unwrap() - 1000.0 / one).abs() < 1e-9,
        "{json}"
    );
    let packed = &json["packed"];
    assert_eq!(packed["runs"], 3, "{json}");
    let ms = packed["ms_per_packed_step"].as_f64().unwrap();
    assert!(ms > 0.0, "{json}");
    assert!(
        (packed["runs_steps_per_s"].as_f64().unwrap() - 3000.0 / ms).abs() < 1e-9,
        "{json}"
    );
}

#[test]
fn prefix_lms_pack_with_prefix_lms_only() {
    // Prefix LMs pack with each other and causal models with each other, never one beside the
    // other: the pack has one attention pattern.
    let device = select(DeviceKind::Flex).unwrap().device.autodiff();
    let init = |prefix_lm: bool| {
        ModelConfig {
            prefix_lm,
            ..model_config()
        }
        .init(20, &mut stream_rng(0, Purpose(99), 0), &device)
    };
    let (causal, prefix) = (init(false), init(true));
    assert!(PackedTransformer::can_pack(&[&causal, &init(false)]));
    assert!(!PackedTransformer::can_pack(&[&causal, &prefix]));
    assert!(PackedTransformer::can_pack(&[&prefix, &init(true)]));
}
