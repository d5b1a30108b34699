//! The training loop: AdamW with a no-decay group, linear warm-up and decay, global gradient-norm
//! clipping, rounds whose mixture a method chooses, per-skill evaluation, and the run's outputs
//! (metrics.csv, manifest.json, the final weights).
//!
//! A run proceeds in rounds (SPEC §6): before each round the method returns the mixture, the round's
//! examples are drawn with exact counts (floor(p_i·n), the last skill takes the remainder) from the
//! run's deduplicated training streams and shuffled, then trained on in batches. Evaluation happens
//! at step 0, every `eval_every` steps and at the end: per skill, the answer token's cross-entropy
//! over the whole vocabulary and the greedy accuracy on the fixed validation sets.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use skillit_synthetic::{stream_rng, Example, Purpose, Task, TrainStream, ValidationSet};

use crate::config::{LossKind, RunConfig};
use crate::device::Selected;
use crate::method::{Evaluation, MixtureMethod, Observation, Plan, ReferenceRun, ScoredPool};
use crate::model::Model;
use crate::results::{write_atomic, MetricsRow, METRICS_COLUMNS};
use crate::{Error, Result};

/// The burn release skillit is built against (pinned with `=` in Cargo.toml).
pub const BURN_VERSION: &str = "0.22.1";

/// Random streams of the training loop, beside the task crate's (validation, train).
const PURPOSE_INIT: Purpose = Purpose(Purpose::FIRST_FREE);
const PURPOSE_SHUFFLE: Purpose = Purpose(Purpose::FIRST_FREE + 1);
const PURPOSE_POOL_ORDER: Purpose = Purpose(Purpose::FIRST_FREE + 2);

/// What the loop reports to its caller (the CLI draws a progress bar from it).
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// A training step finished with this batch loss.
    Step { step: u64, loss: f64 },
    /// An evaluation finished; `accuracy` is the mean over skills.
    Eval { step: u64, accuracy: f64, loss: f64 },
    /// A round finished and its checkpoint is on disk; answering [`Flow::Stop`] ends the run here
    /// (status `stopped`), and training the same config into the same folder resumes it.
    RoundEnd { round: usize, step: u64 },
}

/// Whether the loop goes on after a [`Progress`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The state saved at every round boundary (with the model and optimizer files it names), so that a
/// run resumes exactly: the examples and mixtures of the rounds before are re-derived from the
/// seed and the recorded evaluations.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    /// The run config, to refuse resuming a folder of another run.
    config: RunConfig,
    step: u64,
    round: usize,
    evaluations: Vec<(Evaluation, Vec<f64>)>,
    /// The evaluations a probing method asked for between the regular ones.
    #[serde(default)]
    probes: Vec<Evaluation>,
    /// Each round's per-skill mean training loss, as the next round's plan observed it.
    #[serde(default)]
    round_train_losses: Vec<Vec<Option<f64>>>,
    trained: Vec<u64>,
    train_time: f64,
    eval_time: f64,
    /// Wall time from the run's start to this checkpoint, over every process that trained it
    /// (absent in checkpoints of older versions: 0).
    #[serde(default)]
    wall_time: f64,
    /// The method's state ([`MixtureMethod::load_state`]), for a method whose state the replayed
    /// rounds do not rebuild (absent in older checkpoints: null).
    #[serde(default)]
    method_state: serde_json::Value,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    Finished,
    Failed {
        reason: String,
        step: u64,
    },
    /// Stopped at a round boundary by the caller; the checkpoint resumes it.
    Stopped {
        step: u64,
    },
}

/// What a finished (or failed) run recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub run_id: String,
    #[serde(flatten)]
    pub status: RunStatus,
    pub config: RunConfig,
    pub method: String,
    pub params: String,
    pub skillit_version: &'static str,
    pub git_revision: &'static str,
    pub burn_version: &'static str,
    pub backend: String,
    pub adapter: String,
    /// Wall time of the run: a resumed run adds its checkpoint's (the work up to it) to this
    /// process's, so the time lost to a kill after the last checkpoint is not counted twice.
    pub wall_time_s: f64,
    pub train_time_s: f64,
    pub eval_time_s: f64,
    pub ms_per_step: f64,
    pub steps_done: u64,
    /// Training examples trained on per skill (1-based skill order).
    pub examples_per_skill: Vec<u64>,
    pub num_params: usize,
    pub evaluations: Vec<Evaluation>,
    /// What the method reports of itself at the end (e.g. DoReMi's averaged mixture); null for most.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub method_state: serde_json::Value,
    /// A pretrained model's weights, config and tokenizer, fingerprinted (absent for the scratch
    /// model and for `random_init`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<crate::model::gpt_neo::WeightsRecord>,
}

/// What a rerun needs from a recorded run's manifest.json.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRun {
    pub run_id: String,
    pub config: RunConfig,
    pub backend: String,
    pub git_revision: String,
    pub burn_version: String,
    pub status: String,
    #[serde(default)]
    pub evaluations: Vec<Evaluation>,
    #[serde(default)]
    pub method_state: serde_json::Value,
}

/// Reads the manifest.json of the run folder `dir`.
pub fn read_manifest(dir: &Path) -> Result<RecordedRun> {
    let path = dir.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::Invalid {
        origin: path.display().to_string(),
        field: "manifest".into(),
        message: format!("cannot be read ({e}): give a run folder of skillit train or sweep"),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
        origin: path.display().to_string(),
        field: "manifest".into(),
        message: format!("is not a skillit manifest: {e}"),
    })
}

/// The run's identifier in results: `task-method-s<seed>` unless given.
pub fn default_run_id(config: &RunConfig, method: &dyn MixtureMethod) -> String {
    format!("{}-{}-s{}", config.task.name(), method.name(), config.seed)
}

/// A pool's mixture over all `k` skills: `weights` (one per skill) kept on the training skills and
/// normalized, uniform over them where no weights are given or none falls on a training skill.
pub fn pool_mixture(weights: Option<Vec<f64>>, train_skills: &[usize], k: usize) -> Vec<f64> {
    let on_train: Vec<f64> = match weights {
        Some(w) => train_skills.iter().map(|&s| w[s - 1]).collect(),
        None => vec![1.0; train_skills.len()],
    };
    let total: f64 = on_train.iter().sum();
    let normalized: Vec<f64> = match total > 0.0 {
        true => on_train.iter().map(|w| w / total).collect(),
        false => vec![1.0 / train_skills.len() as f64; train_skills.len()],
    };
    crate::method::expand(&normalized, train_skills, k)
}

/// Exact per-skill counts for `n` examples under `mixture`: floor(p_i·n), the last skill with a
/// positive weight takes the remainder (SPEC §6; the authors' `_generate_data_segment`, whose skill
/// list holds only the skills being trained).
pub fn exact_counts(mixture: &[f64], n: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = mixture
        .iter()
        .map(|p| (p * n as f64).floor() as usize)
        .collect();
    let last = mixture
        .iter()
        .rposition(|&p| p > 0.0)
        .unwrap_or(counts.len() - 1);
    let assigned: usize = counts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != last)
        .map(|(_, c)| c)
        .sum();
    counts[last] = n.saturating_sub(assigned);
    counts
}

/// The learning rate at 0-based `step`: linear warm-up then linear decay to 0 at `total`, as the
/// authors' Hugging Face `get_linear_schedule_with_warmup` (whose first step has factor 0).
pub fn learning_rate(peak: f64, step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        peak * step as f64 / warmup as f64
    } else {
        peak * (total.saturating_sub(step)) as f64 / (total - warmup).max(1) as f64
    }
}

/// The examples' tokens `[batch, longest]`, shorter rows padded on the right with id 0 (a padded
/// position is never read: attention is causal and the losses mask it).
fn tokens_tensor(examples: &[&Example], device: &Device) -> Tensor<2, Int> {
    let seq = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(0);
    let data: Vec<i64> = examples
        .iter()
        .flat_map(|e| {
            let pad = seq - e.tokens.len();
            e.tokens
                .iter()
                .map(|&t| i64::from(t))
                .chain(std::iter::repeat_n(0, pad))
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [examples.len(), seq]), device)
}

/// Collects the ids of the rank-1 parameters (biases, LayerNorm γ and β): no weight decay on them.
#[derive(Default)]
struct VectorParams(Vec<ParamId>);

impl ModuleVisitor for VectorParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 1 {
            self.0.push(param.id);
        }
    }
}

/// Sums the squared gradients of every parameter into one device scalar.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies every gradient by a device scalar.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    scale: Tensor<1>,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let scale = self.scale.clone().reshape([1; D]);
            self.grads.register::<D>(param.id, g * scale);
        }
    }
}

/// Clips the global L2 norm of all gradients to `max_norm` (PyTorch's `clip_grad_norm_`, which the
/// authors' trainer applies; burn's own clipping works per parameter). Stays on the device.
fn clip_global_norm(model: &Model, grads: &mut GradientsParams, max_norm: f64) {
    let mut norm = SquaredNorm { grads, total: None };
    model.visit(&mut norm);
    let Some(total) = norm.total else { return };
    let scale = total
        .sqrt()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    model.visit(&mut ScaleGrads { grads, scale });
}

/// The per-skill validation loss and accuracy of `model`.
pub fn evaluate(
    model: &Model,
    validation: &[Example],
    num_skills: usize,
    device: &Device,
    step: u64,
) -> Evaluation {
    let all: Vec<&Example> = validation.iter().collect();
    let (nll, correct) = answer_scores(model, &all, device);
    let mut loss = vec![0.0; num_skills];
    let mut accuracy = vec![0.0; num_skills];
    let mut count = vec![0usize; num_skills];
    for ((e, l), c) in all.iter().zip(&nll).zip(&correct) {
        let s = e.skill - 1;
        loss[s] += l;
        accuracy[s] += f64::from(u8::from(*c));
        count[s] += 1;
    }
    for s in 0..num_skills {
        loss[s] /= count[s].max(1) as f64;
        accuracy[s] /= count[s].max(1) as f64;
    }
    Evaluation {
        step,
        loss,
        accuracy,
    }
}

/// Each example's answer-token cross-entropy under `model` and whether its greedy answer is right,
/// in batches of 512 (one forward each).
fn answer_scores(model: &Model, examples: &[&Example], device: &Device) -> (Vec<f64>, Vec<bool>) {
    const CHUNK: usize = 512;
    let mut nll = Vec::with_capacity(examples.len());
    let mut correct = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(CHUNK) {
        let positions: Vec<usize> = chunk.iter().map(|e| e.answer_pos).collect();
        let lp = model.answer_log_probs(tokens_tensor(chunk, device), &positions);
        let answers: Vec<i64> = chunk.iter().map(|e| i64::from(e.answer_token())).collect();
        let answers =
            Tensor::<2, Int>::from_data(TensorData::new(answers, [chunk.len(), 1]), device);
        let picked = lp.clone().gather(1, answers.clone()).reshape([chunk.len()]);
        let hit = lp.argmax(1).equal(answers).reshape([chunk.len()]);
        nll.extend(picked.into_data().iter::<f64>().map(|x| -x));
        correct.extend(hit.into_data().iter::<bool>());
    }
    (nll, correct)
}

/// Each example's answer-token cross-entropy under `model` (the curricula's difficulty score).
pub fn score(model: &Model, examples: &[Example], device: &Device) -> Vec<f64> {
    let refs: Vec<&Example> = examples.iter().collect();
    answer_scores(model, &refs, device).0
}

/// One batch's training loss (a scalar tensor on the autodiff device).
pub fn batch_loss(model: &Model, batch: &[&Example], kind: LossKind, device: &Device) -> Tensor<1> {
    example_losses(model, batch, kind, device).mean()
}

/// Each example's training loss `[batch]`: the cross-entropy of its answer token, or the mean
/// next-token cross-entropy over its whole sequence.
pub fn example_losses(
    model: &Model,
    batch: &[&Example],
    kind: LossKind,
    device: &Device,
) -> Tensor<1> {
    let tokens = tokens_tensor(batch, device);
    let [b, seq] = tokens.dims();
    match kind {
        LossKind::Full => {
            let logits = model.forward(tokens.clone().narrow(1, 0, seq - 1));
            let targets = tokens.narrow(1, 1, seq - 1).reshape([b, seq - 1, 1]);
            let lp = log_softmax(logits, 2);
            let nll: Tensor<2> = lp.gather(2, targets).reshape([b, seq - 1]).neg();
            if batch.iter().all(|e| e.tokens.len() == seq) {
                return nll.mean_dim(1).reshape([b]);
            }
            // Rows of different lengths: each row's mean over its own next-token predictions.
            let mask: Vec<f32> = batch
                .iter()
                .flat_map(|e| (1..seq).map(move |i| f32::from(u8::from(i < e.tokens.len()))))
                .collect();
            let counts: Vec<f32> = batch.iter().map(|e| (e.tokens.len() - 1) as f32).collect();
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, seq - 1]), device);
            let counts = Tensor::<1>::from_data(TensorData::new(counts, [b]), device);
            (nll * mask).sum_dim(1).reshape([b]) / counts
        }
        LossKind::Answer => {
            let positions: Vec<usize> = batch.iter().map(|e| e.answer_pos).collect();
            let lp = model.answer_log_probs(tokens, &positions);
            let answers: Vec<i64> = batch.iter().map(|e| i64::from(e.answer_token())).collect();
            let targets = Tensor::<2, Int>::from_data(TensorData::new(answers, [b, 1]), device);
            lp.gather(1, targets).reshape([b]).neg()
        }
    }
}

/// AdamW with decoupled weight decay on the matrices and none on the rank-1 parameters (biases,
/// LayerNorm), as the authors' Hugging Face trainer groups them.
pub fn optimizer(model: &Model, t: &crate::config::TrainingConfig) -> ModuleOptimizer {
    let mut no_decay = VectorParams::default();
    model.visit(&mut no_decay);
    let adamw = || AdamWConfig::new().with_epsilon(t.eps as f32);
    adamw()
        .with_weight_decay(t.weight_decay as f32)
        .init()
        .with_group(
            ParamGroup::from_ids(no_decay.0),
            adamw().with_weight_decay(0.0).build(),
            None,
        )
}

/// One optimizer step on `batch` at learning rate `lr`, clipping the global gradient norm to
/// `grad_clip` (0 = none); returns the updated model and the batch loss.
pub fn train_step(
    model: Model,
    optim: &mut ModuleOptimizer,
    batch: &[&Example],
    t: &crate::config::TrainingConfig,
    lr: f64,
    device: &Device,
) -> (Model, f64) {
    let (model, losses) = train_step_losses(model, optim, batch, t, lr, device);
    let mean = losses.iter().sum::<f64>() / losses.len() as f64;
    (model, mean)
}

/// [`train_step`], returning each example's loss (read back to the host in one transfer).
pub fn train_step_losses(
    model: Model,
    optim: &mut ModuleOptimizer,
    batch: &[&Example],
    t: &crate::config::TrainingConfig,
    lr: f64,
    device: &Device,
) -> (Model, Vec<f64>) {
    train_step_weighted(model, optim, batch, t, lr, device, &mut |_| None)
}

/// [`train_step_losses`] whose loss `weigh` may set from the examples' losses: `Some(w)` makes
/// the step minimize Σ_e w_e·l_e instead of the batch mean (DoReMi's proxy).
pub fn train_step_weighted(
    model: Model,
    optim: &mut ModuleOptimizer,
    batch: &[&Example],
    t: &crate::config::TrainingConfig,
    lr: f64,
    device: &Device,
    weigh: &mut dyn FnMut(&[f64]) -> Option<Vec<f64>>,
) -> (Model, Vec<f64>) {
    let per_example = example_losses(&model, batch, t.loss, device);
    let values: Vec<f64> = per_example
        .clone()
        .into_data()
        .iter::<f32>()
        .map(f64::from)
        .collect();
    if !values.iter().all(|v| v.is_finite()) {
        return (model, values);
    }
    let loss = match weigh(&values) {
        Some(w) => {
            let w: Vec<f32> = w.iter().map(|&x| x as f32).collect();
            let w = Tensor::<1>::from_data(TensorData::new(w, [batch.len()]), device);
            (per_example * w).sum()
        }
        None => per_example.mean(),
    };
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if t.grad_clip > 0.0 {
        clip_global_norm(&model, &mut grads, t.grad_clip);
    }
    (optim.step(lr, model, grads), values)
}

/// A run config's measured speed on a device: the median of timed training steps (after warm-up
/// steps, which on a GPU include compiling the kernels) and of timed evaluation passes.
#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    pub backend: String,
    pub adapter: String,
    pub num_params: usize,
    pub batch_size: usize,
    pub seq_len: usize,
    pub ms_per_step: f64,
    pub ms_per_eval: f64,
    /// Validation sequences per evaluation pass.
    pub eval_sequences: usize,
}

/// Measures `config`'s training step (forward, backward, clipping, AdamW, the loss read back to
/// the host as every step of a run does) and evaluation pass on `selected`: `warmup` untimed
/// steps, then the median of `steps` timed ones, and the median of `evals` evaluations.
pub fn measure_speed(
    config: &RunConfig,
    selected: &Selected,
    warmup: usize,
    steps: usize,
    evals: usize,
) -> Result<Speed> {
    let task = config.task.build()?;
    let t = &config.training;
    let device = selected.device.clone().autodiff();
    let mut init = stream_rng(0, Purpose(99), 0);
    let (mut model, codec) = config.model.build(task.vocab(), &mut init, &device)?;
    let num_params = model.num_params();
    let mut optim = optimizer(&model, t);
    let mut rng = stream_rng(0, Purpose::TRAIN, 1);
    let k = task.num_skills();
    let examples: Vec<Example> = (0..t.batch_size)
        .map(|i| task.example(1 + i % k, &mut rng))
        .collect();
    let examples = codec.encode(examples)?;
    let batch: Vec<&Example> = examples.iter().collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps.max(1) {
        let t0 = Instant::now();
        let (m, _) = train_step(model, &mut optim, &batch, t, t.lr, &device);
        model = m;
        if i >= warmup {
            times.push(1000.0 * t0.elapsed().as_secs_f64());
        }
    }
    let ms_per_step = median(times);
    let validation = ValidationSet::standard(task.as_ref(), t.val_per_skill)?;
    let validation = codec.encode(validation.iter().cloned().collect())?;
    let plain = model.valid();
    evaluate(&plain, &validation, k, &selected.device, 0);
    let eval_times: Vec<f64> = (0..evals.max(1))
        .map(|_| {
            let t0 = Instant::now();
            evaluate(&plain, &validation, k, &selected.device, 0);
            1000.0 * t0.elapsed().as_secs_f64()
        })
        .collect();
    Ok(Speed {
        backend: selected.backend.clone(),
        adapter: selected.adapter.clone(),
        num_params,
        batch_size: t.batch_size,
        // In the model's tokens (a pretrained tokenizer's lengths vary: the longest of the batch).
        seq_len: batch.iter().map(|e| e.tokens.len()).max().unwrap_or(0),
        ms_per_step,
        ms_per_eval: median(eval_times),
        eval_sequences: validation.len(),
    })
}

/// Where a run writes its outputs.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub dir: PathBuf,
}

impl RunPaths {
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }
    fn checkpoint_state(&self) -> PathBuf {
        self.checkpoint_dir().join("state.json")
    }
    fn checkpoint_model(&self, step: u64) -> PathBuf {
        self.checkpoint_dir().join(format!("model-{step}.bpk"))
    }
    fn checkpoint_optim(&self, step: u64) -> PathBuf {
        self.checkpoint_dir().join(format!("optim-{step}.bpk"))
    }
}

fn metrics_csv(
    run_id: &str,
    config: &RunConfig,
    task: &dyn Task,
    method: &dyn MixtureMethod,
    evaluations: &[(Evaluation, Vec<f64>)],
) -> Vec<u8> {
    // The header is written explicitly, so the file has it even before the first row.
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let io = "writing CSV to memory cannot fail";
    w.write_record(METRICS_COLUMNS).expect(io);
    for (eval, weights) in evaluations {
        for skill in 1..=task.num_skills() {
            w.serialize(MetricsRow {
                run_id: run_id.to_string(),
                task: task.name().to_string(),
                setting: config.setting.clone(),
                method: method.name().to_string(),
                params: method.params(),
                seed: config.seed,
                step: eval.step,
                skill,
                loss: eval.loss[skill - 1],
                accuracy: eval.accuracy[skill - 1],
                weight: weights[skill - 1],
            })
            .expect(io);
        }
    }
    w.into_inner().expect(io)
}

/// Trains one run to completion (or divergence), writing `metrics.csv` after every evaluation and
/// `manifest.json` and the weights at the end. A diverging run (non-finite loss) is recorded as
/// failed and returned as such, not as an error.
pub fn train(
    config: &RunConfig,
    selected: &Selected,
    out: &Path,
    run_id: Option<&str>,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<Manifest> {
    config.validate("run config")?;
    crate::results::prepare_output_dir(out, "out")?;
    tidy_run(out);
    let paths = RunPaths {
        dir: out.to_path_buf(),
    };
    let started = Instant::now();
    let task = config.task.build()?;
    let k = task.num_skills();
    let t = &config.training;
    let mut method = config
        .method
        .build(task.as_ref(), &config.setting, config.target)?;
    let train_skills = config.train_skills(task.as_ref());
    let run_id = run_id
        .map(String::from)
        .unwrap_or_else(|| default_run_id(config, method.as_ref()));
    let validation = ValidationSet::standard(task.as_ref(), t.val_per_skill)?;
    let mut stream = TrainStream::new(task.as_ref(), config.seed, &validation);
    let reference = match method.reference() {
        Some((folder, spec)) => {
            let reference = reference_run(config, spec, selected, &out.join(folder), &run_id)?;
            method.set_reference(reference.clone())?;
            Some(reference)
        }
        None => None,
    };

    let device = selected.device.clone().autodiff();
    let mut init_rng = stream_rng(config.seed, PURPOSE_INIT, 0);
    let (mut model, codec) = config.model.build(task.vocab(), &mut init_rng, &device)?;
    let pretrained = match (&config.model.weights, config.model.random_init) {
        (Some(dir), false) => Some(crate::model::gpt_neo::fingerprint(dir)?),
        _ => None,
    };
    // The validation set in the model's ids (the task's own for the scratch model).
    let encoded_validation = codec.encode(validation.iter().cloned().collect())?;
    if let Some(path) = &config.init {
        // A base folder was checked (fingerprint, vocabulary) by `validate` above.
        let weights = crate::model::base::init_weights(path)?;
        model = model.try_load_file(&weights).map_err(|e| Error::Invalid {
            origin: path.display().to_string(),
            field: "init".into(),
            message: format!("cannot be loaded as this run's model: {e:?}"),
        })?;
    }
    let num_params = model.num_params();
    let mut optim = optimizer(&model, t);
    // The reference run's final model, for a method that weighs each step against it.
    let reference_model = match (&reference, method.wants_reference_model()) {
        (Some(r), true) => {
            let path = RunPaths { dir: r.dir.clone() }.weights();
            let loaded = model
                .clone()
                .try_load_file(&path)
                .map_err(|e| Error::Invalid {
                    origin: path.display().to_string(),
                    field: "reference model".into(),
                    message: format!("cannot be loaded: {e:?}"),
                })?;
            Some(loaded.valid())
        }
        _ => None,
    };

    let steps_per_round = if t.steps_per_round == 0 {
        t.steps
    } else {
        t.steps_per_round
    };
    let mut train_time = 0.0;
    // Wall time before this process: a resumed run's checkpoint's.
    let mut wall_before = 0.0;
    let mut status = RunStatus::Finished;
    let mut step: u64 = 0;
    let mut round = 0usize;
    let mut trained = vec![0u64; k];
    let mut round_train_losses: Vec<Vec<Option<f64>>> = Vec::new();
    let mut last_checkpoint: u64 = 0;

    // The example-level curricula choose from a pool of the whole budget (drawn with the
    // method's proportions over the training skills, else stratified), scored by the initial
    // model where they order it by that score.
    let mut pool: Vec<Example> = Vec::new();
    if method.wants_pool() {
        let mixture = pool_mixture(method.pool_mixture(), &train_skills, k);
        let counts = exact_counts(&mixture, t.steps as usize * t.batch_size);
        for (skill, &c) in counts.iter().enumerate() {
            pool.extend(stream.take(skill + 1, c)?);
        }
        let losses = if method.scores_pool() {
            score(&model.valid(), &codec.encoded(&pool)?, &selected.device)
        } else {
            Vec::new()
        };
        method.set_pool(ScoredPool {
            skills: pool.iter().map(|e| e.skill).collect(),
            losses,
            answers: pool.iter().map(Example::answer_token).collect(),
            rng: stream_rng(config.seed, PURPOSE_POOL_ORDER, 0),
        });
    }

    let mut recorder = Recorder {
        paths: &paths,
        run_id: &run_id,
        config,
        task: task.as_ref(),
        validation: &encoded_validation,
        device: &selected.device,
        evaluations: Vec::new(),
        probes: Vec::new(),
        eval_time: 0.0,
    };

    // Resume from the last round boundary when the folder holds this run's checkpoint.
    if let Some(ck) = read_checkpoint(&paths, config)? {
        let load_error = |what: &str, e: String| Error::Invalid {
            origin: paths.checkpoint_dir().display().to_string(),
            field: what.into(),
            message: format!("cannot be loaded: {e}"),
        };
        model = model
            .try_load_file(paths.checkpoint_model(ck.step))
            .map_err(|e| load_error("model", format!("{e:?}")))?;
        // The loaded parameters keep their saved ids: build the optimizer's no-decay group from
        // them, then load its state.
        optim = optimizer(&model, t)
            .load(paths.checkpoint_optim(ck.step))
            .map_err(|e| load_error("optimizer", format!("{e:?}")))?;
        // Re-derive the rounds before: the same plans from the same history and random streams
        // advance the training streams exactly as the interrupted run did.
        let mut replay_step = 0;
        for r in 0..ck.round {
            let history = observed_history(&ck.evaluations, &ck.probes, replay_step);
            let train_losses = match r {
                0 => &[][..],
                _ => &ck.round_train_losses[r - 1][..],
            };
            let (_, _, round_steps, _) = run_round_plan(
                method.as_mut(),
                &mut stream,
                &pool,
                &RoundContext {
                    step: replay_step,
                    round: r,
                    k,
                    train_skills: &train_skills,
                    steps_per_round,
                    training: t,
                    seed: config.seed,
                },
                &history,
                train_losses,
            )?;
            replay_step += round_steps;
        }
        if replay_step != ck.step {
            return Err(Error::Invalid {
                origin: paths.checkpoint_dir().display().to_string(),
                field: "step".into(),
                message: format!(
                    "the checkpoint is at step {} but its rounds end at step {replay_step}",
                    ck.step
                ),
            });
        }
        step = ck.step;
        round = ck.round;
        trained = ck.trained;
        train_time = ck.train_time;
        wall_before = ck.wall_time;
        recorder.eval_time = ck.eval_time;
        recorder.evaluations = ck.evaluations;
        recorder.probes = ck.probes;
        round_train_losses = ck.round_train_losses;
        last_checkpoint = ck.step;
        method.load_state(ck.method_state)?;
    }

    'rounds: while step < t.steps {
        if method.wants_probe() {
            recorder.probe(&model, step);
        }
        let history = observed_history(&recorder.evaluations, &recorder.probes, step);
        let (examples, mixture, _, mut round_rng) = run_round_plan(
            method.as_mut(),
            &mut stream,
            &pool,
            &RoundContext {
                step,
                round,
                k,
                train_skills: &train_skills,
                steps_per_round,
                training: t,
                seed: config.seed,
            },
            &history,
            round_train_losses.last().map_or(&[][..], |l| &l[..]),
        )?;
        if step == 0 {
            // The mixture recorded at step 0 is the first round's.
            recorder.record(&model, 0, &mixture, method.as_ref(), progress)?;
        }
        let mut examples = codec.encode(examples)?;
        examples.shuffle(&mut round_rng);
        for e in &examples {
            trained[e.skill - 1] += 1;
        }
        // Each skill's summed training loss and count over the round.
        let mut round_loss = vec![(0.0f64, 0usize); k];
        for batch in examples.chunks(t.batch_size) {
            let t0 = Instant::now();
            let batch: Vec<&Example> = batch.iter().collect();
            let lr = learning_rate(t.lr, step, t.warmup, t.steps);
            let reference_losses: Vec<f64> = match &reference_model {
                Some(m) => example_losses(m, &batch, t.loss, &selected.device)
                    .into_data()
                    .iter::<f32>()
                    .map(f64::from)
                    .collect(),
                None => Vec::new(),
            };
            let skills: Vec<usize> = batch.iter().map(|e| e.skill).collect();
            let (next, losses) =
                train_step_weighted(model, &mut optim, &batch, t, lr, &device, &mut |l| {
                    method.weigh_step(&skills, l, &reference_losses)
                });
            model = next;
            let loss_value = losses.iter().sum::<f64>() / losses.len() as f64;
            for (e, l) in batch.iter().zip(&losses) {
                round_loss[e.skill - 1].0 += l;
                round_loss[e.skill - 1].1 += 1;
            }
            if !loss_value.is_finite() {
                status = RunStatus::Failed {
                    reason: format!("the training loss became {loss_value} at step {}", step + 1),
                    step: step + 1,
                };
                break 'rounds;
            }
            step += 1;
            train_time += t0.elapsed().as_secs_f64();
            progress(Progress::Step {
                step,
                loss: loss_value,
            });
            if step.is_multiple_of(t.eval_every) || step == t.steps {
                recorder.record(&model, step, &mixture, method.as_ref(), progress)?;
            }
        }
        round += 1;
        round_train_losses.push(
            round_loss
                .iter()
                .map(|&(sum, n)| (n > 0).then(|| sum / n as f64))
                .collect(),
        );
        // A checkpoint at the end of a round once `steps_per_round` steps have passed since the
        // last one (every round, unless a method makes its rounds shorter).
        if step < t.steps && step - last_checkpoint >= steps_per_round {
            last_checkpoint = step;
            write_checkpoint(
                &paths,
                &model,
                &optim,
                &Checkpoint {
                    config: config.clone(),
                    step,
                    round,
                    evaluations: recorder.evaluations.clone(),
                    probes: recorder.probes.clone(),
                    round_train_losses: round_train_losses.clone(),
                    trained: trained.clone(),
                    train_time,
                    eval_time: recorder.eval_time,
                    wall_time: wall_before + started.elapsed().as_secs_f64(),
                    method_state: method.state(),
                },
            )?;
            if progress(Progress::RoundEnd { round, step }) == Flow::Stop {
                status = RunStatus::Stopped { step };
                break 'rounds;
            }
        }
    }
    if status == RunStatus::Finished {
        save_module(&model, &paths.weights())?;
    }
    let manifest = Manifest {
        run_id: run_id.clone(),
        status,
        config: config.clone(),
        method: method.name().to_string(),
        params: method.params(),
        skillit_version: env!("CARGO_PKG_VERSION"),
        git_revision: env!("SKILLIT_GIT_REVISION"),
        burn_version: BURN_VERSION,
        backend: selected.backend.clone(),
        adapter: selected.adapter.clone(),
        wall_time_s: wall_before + started.elapsed().as_secs_f64(),
        train_time_s: train_time,
        eval_time_s: recorder.eval_time,
        ms_per_step: if step > 0 {
            1000.0 * train_time / step as f64
        } else {
            0.0
        },
        steps_done: step,
        examples_per_skill: trained,
        num_params,
        evaluations: recorder.history(),
        method_state: method.state(),
        pretrained,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    write_atomic(&paths.manifest(), &json)?;
    if manifest.status == RunStatus::Finished {
        // Only now that the manifest says finished does the checkpoint go: a kill before this
        // line resumes from the checkpoint, a kill after it leaves the finished run (a leftover
        // checkpoint folder is removed by the sweep's tidy-up).
        let _ = std::fs::remove_dir_all(paths.checkpoint_dir());
    }
    Ok(manifest)
}

/// Trains (or finds finished) the run a method learns from: `config` with the method `spec`, in
/// `dir`; returns what it recorded.
fn reference_run(
    config: &RunConfig,
    spec: crate::method::MethodSpec,
    selected: &Selected,
    dir: &Path,
    run_id: &str,
) -> Result<ReferenceRun> {
    let mut reference = config.clone();
    reference.method = spec;
    let found = |evaluations, method_state| ReferenceRun {
        dir: dir.to_path_buf(),
        evaluations,
        method_state,
    };
    if let Ok(recorded) = read_manifest(dir) {
        if recorded.status == "finished" && recorded.config == reference {
            return Ok(found(recorded.evaluations, recorded.method_state));
        }
    }
    let folder = dir
        .file_name()
        .map_or("reference".into(), |f| f.to_string_lossy());
    let reference_id = format!("{run_id}-{folder}");
    let manifest = train(&reference, selected, dir, Some(&reference_id), &mut |_| {
        Flow::Continue
    })?;
    match manifest.status {
        RunStatus::Finished => Ok(found(manifest.evaluations, manifest.method_state)),
        RunStatus::Failed { reason, .. } => Err(Error::Diverged {
            run: reference_id,
            reason,
        }),
        RunStatus::Stopped { .. } => unreachable!("the reference run is never asked to stop"),
    }
}

/// Saves a model's parameters (burnpack) through [`write_atomic`]: the file is whole or absent.
pub fn save_module(model: &Model, path: &Path) -> Result<()> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("{e:?}")),
        })?;
    write_atomic(path, &bytes)
}

/// Where a round starts and what shapes it.
struct RoundContext<'a> {
    step: u64,
    round: usize,
    k: usize,
    train_skills: &'a [usize],
    steps_per_round: u64,
    training: &'a crate::config::TrainingConfig,
    seed: u64,
}

/// Asks the method for the round at `ctx` (its length, then its plan) and draws its examples:
/// returns the examples, the mixture to record, the round's steps and the round's random stream
/// (which then shuffles the examples).
fn run_round_plan(
    method: &mut dyn MixtureMethod,
    stream: &mut TrainStream,
    pool: &[Example],
    ctx: &RoundContext,
    history: &[Evaluation],
    train_losses: &[Option<f64>],
) -> Result<(Vec<Example>, Vec<f64>, u64, rand_chacha::ChaCha8Rng)> {
    let t = ctx.training;
    let observation = Observation {
        step: ctx.step,
        round: ctx.round,
        num_skills: ctx.k,
        train_skills: ctx.train_skills,
        steps_per_round: ctx.steps_per_round,
        total_steps: t.steps,
        batch_size: t.batch_size,
        evaluations: history,
        train_losses,
    };
    let round_steps = method
        .round_steps(&observation, ctx.steps_per_round)
        .clamp(1, t.steps - ctx.step);
    let mut rng = stream_rng(ctx.seed, PURPOSE_SHUFFLE, ctx.round as u64);
    let n = round_steps as usize * t.batch_size;
    let (examples, mixture) = draw_round(method, &observation, n, &mut rng, stream, pool)?;
    Ok((examples, mixture, round_steps, rng))
}

/// The examples of one round and the mixture to record for it: drawn from the training streams
/// with exact counts, or taken from the scored pool.
fn draw_round(
    method: &mut dyn MixtureMethod,
    observation: &Observation,
    n: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
    stream: &mut TrainStream,
    pool: &[Example],
) -> Result<(Vec<Example>, Vec<f64>)> {
    let k = observation.num_skills;
    Ok(match method.plan(observation, n, rng) {
        Plan::Mixture(mixture) => {
            let counts = exact_counts(&mixture, n);
            let mut examples = Vec::with_capacity(n);
            for (skill, &c) in counts.iter().enumerate() {
                examples.extend(stream.take(skill + 1, c)?);
            }
            (examples, mixture)
        }
        Plan::Pool(indices) => {
            let examples: Vec<Example> = indices.iter().map(|&i| pool[i].clone()).collect();
            // The weight column records the proportions actually drawn.
            let mut mixture = vec![0.0; k];
            for e in &examples {
                mixture[e.skill - 1] += 1.0 / examples.len() as f64;
            }
            (examples, mixture)
        }
    })
}

/// This run's checkpoint in the folder, if any; a checkpoint of another config is an error.
fn read_checkpoint(paths: &RunPaths, config: &RunConfig) -> Result<Option<Checkpoint>> {
    let path = paths.checkpoint_state();
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let ck: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
        origin: path.display().to_string(),
        field: "checkpoint".into(),
        message: format!("is not a skillit checkpoint: {e}"),
    })?;
    if &ck.config != config {
        return Err(Error::Invalid {
            origin: paths.dir.display().to_string(),
            field: "checkpoint".into(),
            message: "holds a run of another config; use another --out or delete the folder".into(),
        });
    }
    Ok(Some(ck))
}

/// Clears what a killed process left in a run folder that only the caller writes: temp files of
/// interrupted atomic writes, checkpoint files that no state.json names, and the checkpoint of a
/// run whose manifest already says finished.
pub fn tidy_run(dir: &Path) {
    let paths = RunPaths {
        dir: dir.to_path_buf(),
    };
    crate::results::remove_stale_temps(dir, true);
    let checkpoint = paths.checkpoint_dir();
    if !checkpoint.exists() {
        return;
    }
    if read_manifest(dir).is_ok_and(|m| m.status == "finished") {
        let _ = std::fs::remove_dir_all(&checkpoint);
        return;
    }
    crate::results::remove_stale_temps(&checkpoint, true);
    let state: Option<Checkpoint> = std::fs::read(paths.checkpoint_state())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let keep = match &state {
        Some(ck) => vec![
            paths.checkpoint_state(),
            paths.checkpoint_model(ck.step),
            paths.checkpoint_optim(ck.step),
        ],
        None => Vec::new(),
    };
    remove_all_but(&checkpoint, &keep);
}

/// Removes every file in `dir` but those in `keep`.
fn remove_all_but(dir: &Path, keep: &[PathBuf]) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if !keep.contains(&entry.path()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Saves the model and optimizer under step-numbered names, then commits by replacing
/// state.json atomically, then removes older files: a kill at any moment leaves a complete
/// checkpoint.
fn write_checkpoint(
    paths: &RunPaths,
    model: &Model,
    optim: &ModuleOptimizer,
    ck: &Checkpoint,
) -> Result<()> {
    let dir = paths.checkpoint_dir();
    let io = |path: &Path, e: String| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let model_path = paths.checkpoint_model(ck.step);
    save_module(model, &model_path)?;
    let optim_path = paths.checkpoint_optim(ck.step);
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| io(&optim_path, format!("{e:?}")))?;
    write_atomic(&optim_path, &optim_bytes)?;
    let json = serde_json::to_vec(ck).expect("a checkpoint serializes");
    write_atomic(&paths.checkpoint_state(), &json)?;
    remove_all_but(&dir, &[model_path, optim_path, paths.checkpoint_state()]);
    Ok(())
}

/// Evaluates and records: the history the method observes, and metrics.csv rewritten atomically
/// after every evaluation so that a killed run keeps what it measured.
struct Recorder<'a> {
    paths: &'a RunPaths,
    run_id: &'a str,
    config: &'a RunConfig,
    task: &'a dyn Task,
    validation: &'a [Example],
    device: &'a Device,
    /// Each evaluation with the mixture in force at its step.
    evaluations: Vec<(Evaluation, Vec<f64>)>,
    /// Probes: evaluations a method asked for at round starts, kept out of metrics.csv.
    probes: Vec<Evaluation>,
    eval_time: f64,
}

impl Recorder<'_> {
    fn record(
        &mut self,
        model: &Model,
        step: u64,
        mixture: &[f64],
        method: &dyn MixtureMethod,
        progress: &mut dyn FnMut(Progress) -> Flow,
    ) -> Result<()> {
        let t0 = Instant::now();
        let k = self.task.num_skills();
        let eval = evaluate(&model.valid(), self.validation, k, self.device, step);
        self.eval_time += t0.elapsed().as_secs_f64();
        progress(Progress::Eval {
            step,
            accuracy: crate::stats::mean(&eval.accuracy),
            loss: crate::stats::mean(&eval.loss),
        });
        self.evaluations.push((eval, mixture.to_vec()));
        let csv = metrics_csv(
            self.run_id,
            self.config,
            self.task,
            method,
            &self.evaluations,
        );
        write_atomic(&self.paths.metrics(), &csv)
    }

    /// Evaluates at `step` for a probing method unless an evaluation already falls there.
    fn probe(&mut self, model: &Model, step: u64) {
        let known = |e: &Evaluation| e.step == step;
        if self.evaluations.iter().any(|(e, _)| known(e)) || self.probes.iter().any(known) {
            return;
        }
        let t0 = Instant::now();
        let k = self.task.num_skills();
        let eval = evaluate(&model.valid(), self.validation, k, self.device, step);
        self.eval_time += t0.elapsed().as_secs_f64();
        self.probes.push(eval);
    }

    /// The regular evaluations (those written to metrics.csv).
    fn history(&self) -> Vec<Evaluation> {
        self.evaluations.iter().map(|(e, _)| e.clone()).collect()
    }
}

/// What a method observes up to `step`: the regular evaluations and the probes at or before it, in
/// step order (a regular one first where both fall on one step).
fn observed_history(
    evaluations: &[(Evaluation, Vec<f64>)],
    probes: &[Evaluation],
    step: u64,
) -> Vec<Evaluation> {
    // The regular evaluation at step 0 is taken after the first round's plan.
    let regular = evaluations
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.step <= step && !(step == 0 && e.step == 0));
    let mut all: Vec<Evaluation> = regular
        .chain(probes.iter().filter(|e| e.step <= step))
        .cloned()
        .collect();
    all.sort_by_key(|e| e.step);
    all.dedup_by_key(|e| e.step);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_keeps_its_weights_on_the_training_skills() {
        // 1:1:1:3:5 over all five skills: 1/11, 1/11, 1/11, 3/11, 5/11.
        let w = Some(vec![1.0, 1.0, 1.0, 3.0, 5.0]);
        let all = pool_mixture(w.clone(), &[1, 2, 3, 4, 5], 5);
        assert_eq!(
            all,
            vec![1.0 / 11.0, 1.0 / 11.0, 1.0 / 11.0, 3.0 / 11.0, 5.0 / 11.0]
        );
        // Training s3..s5 only: 1:3:5 of 9, nothing on s1, s2.
        let ft = pool_mixture(w, &[3, 4, 5], 5);
        assert_eq!(ft, vec![0.0, 0.0, 1.0 / 9.0, 3.0 / 9.0, 5.0 / 9.0]);
        assert_eq!(pool_mixture(None, &[2, 4], 4), vec![0.0, 0.5, 0.0, 0.5]);
    }

    #[test]
    fn exact_counts_give_the_remainder_to_the_last_skill() {
        // 1:1:1:3:5 of 32: floor(32/11) = 2, 2, 2, floor(96/11) = 8, remainder 32 − 14 = 18.
        let p: Vec<f64> = [1.0, 1.0, 1.0, 3.0, 5.0].iter().map(|w| w / 11.0).collect();
        assert_eq!(exact_counts(&p, 32), vec![2, 2, 2, 8, 18]);
        assert_eq!(exact_counts(&[0.2; 5], 32_000), vec![6400; 5]);
        // Fine-tuning on s1..s3 of five skills: 1/3 · 640 = 213.33 → 213 for s1 and s2, and the
        // remainder 640 − 426 = 214 goes to s3, the last trained skill, not to s5.
        let third = 1.0 / 3.0;
        assert_eq!(
            exact_counts(&[third, third, third, 0.0, 0.0], 640),
            vec![213, 213, 214, 0, 0]
        );
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        // warm-up 50 of 1000 at peak 1e-3: step 25 → 0.5e-3; step 50 → peak; step 525 → half.
        assert_eq!(learning_rate(1e-3, 0, 50, 1000), 0.0);
        assert!((learning_rate(1e-3, 25, 50, 1000) - 0.5e-3).abs() < 1e-15);
        assert!((learning_rate(1e-3, 50, 50, 1000) - 1e-3).abs() < 1e-15);
        assert!((learning_rate(1e-3, 525, 50, 1000) - 0.5e-3).abs() < 1e-15);
        assert_eq!(learning_rate(1e-3, 1000, 50, 1000), 0.0);
    }
}
