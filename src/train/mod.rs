//! The training loop: AdamW with a no-decay group, linear warm-up and decay, global gradient-norm
//! clipping, rounds whose mixture a method chooses, per-skill evaluation, and the run's outputs
//! (metrics.csv, manifest.json, the final weights).
//!
//! A run proceeds in rounds (docs/paper.md §6): before each round the method returns the mixture,
//! the round's examples are drawn with exact counts (floor(p_i·n), the last skill takes the
//! remainder) from the run's deduplicated training streams and shuffled, then trained on in
//! batches. Evaluation happens at step 0, every `eval_every` steps and at the end: per skill, the
//! answer token's cross-entropy over the whole vocabulary and the greedy accuracy on the fixed
//! validation sets.

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

mod checkpoint;
mod eval;
mod optim;
mod packed;
mod record;
mod speed;

use checkpoint::*;
pub use checkpoint::{save_module, tidy_run, RunPaths};
pub use eval::{batch_loss, evaluate, example_losses, score};
pub use optim::{learning_rate, optimizer, train_step, train_step_weighted};
pub use packed::{
    batches_can_pack, packed_example_losses, packed_optimizer, packed_train_step, Pack, PackSlot,
};
use record::*;
pub use record::{read_manifest, DataRecord, Manifest, RecordedRun, RunStatus};
pub use speed::{measure_packed_speed, measure_speed, PackedSpeed, Speed};

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
/// positive weight takes the remainder (docs/paper.md §6; the authors' `_generate_data_segment`,
/// whose skill list holds only the skills being trained).
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

/// Trains one run to completion (or divergence), writing `metrics.csv` after every evaluation and
/// `manifest.json` and the weights at the end. A diverging run (non-finite loss) is recorded as
/// failed and returned as such, not as an error.
///
/// The algorithm of docs/paper.md §6: the method's reference run first (if it learns from one),
/// the model and its optimizer, the scored pool (the example-level curricula), the checkpoint's
/// rounds replayed (a resumed run), then round after round: the method's plan, its examples in
/// batches, evaluations every `eval_every` steps, a checkpoint at the round's end.
pub fn train(
    config: &RunConfig,
    selected: &Selected,
    out: &Path,
    run_id: Option<&str>,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<Manifest> {
    train_in_pack(config, selected, out, run_id, None, progress)
}

/// [`train`], the run's steps taken in `pack` with the other runs of a [`Pack`] when given (issue
/// 24): the run's folder, metrics, manifest and checkpoints are exactly those of [`train`], its
/// numbers within float rounding of them (tests/packed.rs). A method that learns from a
/// reference run (DoReMi) weighs each step by it and cannot be packed.
pub fn train_in_pack(
    config: &RunConfig,
    selected: &Selected,
    out: &Path,
    run_id: Option<&str>,
    pack: Option<PackSlot>,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<Manifest> {
    config.validate("run config")?;
    crate::results::prepare_output_dir(out, "out")?;
    tidy_run(out);
    let started = Instant::now();
    let paths = RunPaths {
        dir: out.to_path_buf(),
    };
    let task = config.task.build()?;
    let data = DataRecord::of(task.as_ref());
    if let Some(d) = &data {
        d.claim(task.as_ref(), out)?;
    }
    let mut method = config
        .method
        .build(task.as_ref(), &config.setting, config.target)?;
    let run_id = run_id
        .map(String::from)
        .unwrap_or_else(|| default_run_id(config, method.as_ref()));
    let validation = ValidationSet::standard(task.as_ref(), config.training.val_per_skill)?;
    let mut stream = TrainStream::new(task.as_ref(), config.seed, &validation);
    let reference = match method.reference() {
        Some((folder, spec)) => {
            let reference = reference_run(config, spec, selected, &out.join(folder), &run_id)?;
            method.set_reference(reference.clone())?;
            Some(reference)
        }
        None => None,
    };
    let train_skills = config.train_skills(task.as_ref());
    let setup = Setup::new(config, selected, &paths, task.as_ref(), &train_skills);
    if pack.is_some() && reference.is_some() {
        return Err(Error::Invalid {
            origin: run_id.clone(),
            field: "pack".into(),
            message: format!(
                "{} weighs its steps by a reference run and cannot be packed",
                method.name()
            ),
        });
    }
    let (mut learner, codec, pretrained) =
        start_learner(&setup, task.as_ref(), method.as_ref(), reference.as_ref())?;
    learner.pack = pack;
    let pool = draw_pool(&setup, method.as_mut(), &mut stream, &learner, &codec)?;
    let encoded_validation = codec.encode(validation.iter().cloned().collect())?;
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
    let mut at = Position::start(setup.k);
    let mut loop_state = LoopState {
        learner: &mut learner,
        method: method.as_mut(),
        stream: &mut stream,
        pool: &pool,
        recorder: &mut recorder,
        at: &mut at,
    };
    if let Some(ck) = read_checkpoint(&paths, config)? {
        resume(&setup, ck, &mut loop_state)?;
    }
    let status = train_rounds(&setup, &mut loop_state, &codec, started, progress)?;
    if status == RunStatus::Finished {
        save_module(learner.model(), &paths.weights())?;
    }
    if let Some(slot) = learner.pack.take() {
        // Out of the pack before the manifest: the others step on without this run.
        drop(slot);
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
        machine: crate::device::machine(),
        wall_time_s: at.wall_before + started.elapsed().as_secs_f64(),
        train_time_s: at.train_time,
        eval_time_s: recorder.eval_time,
        ms_per_step: match at.step {
            0 => 0.0,
            s => 1000.0 * at.train_time / s as f64,
        },
        steps_done: at.step,
        examples_per_skill: at.trained,
        num_params: learner.model().num_params(),
        evaluations: recorder.history(),
        method_state: method.state(),
        pretrained,
        data: data.map(|d| DataRecord {
            epochs: (1..=setup.k).map(|s| stream.epochs(s)).collect(),
            ..d
        }),
        packed_steps: at.packed_steps,
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

/// What stays fixed through a run's rounds.
struct Setup<'a> {
    config: &'a RunConfig,
    selected: &'a Selected,
    paths: &'a RunPaths,
    t: &'a crate::config::TrainingConfig,
    /// The task's number of skills.
    k: usize,
    train_skills: &'a [usize],
    /// The config's round length (the whole run for 0).
    steps_per_round: u64,
    /// The autodiff device the model trains on.
    device: Device,
}

impl<'a> Setup<'a> {
    fn new(
        config: &'a RunConfig,
        selected: &'a Selected,
        paths: &'a RunPaths,
        task: &dyn Task,
        train_skills: &'a [usize],
    ) -> Self {
        let t = &config.training;
        Self {
            config,
            selected,
            paths,
            t,
            k: task.num_skills(),
            train_skills,
            steps_per_round: match t.steps_per_round {
                0 => t.steps,
                n => n,
            },
            device: selected.device.clone().autodiff(),
        }
    }

    /// The context of round `round`, which starts after `step` steps.
    fn round(&self, step: u64, round: usize) -> RoundContext<'_> {
        RoundContext {
            step,
            round,
            k: self.k,
            train_skills: self.train_skills,
            steps_per_round: self.steps_per_round,
            training: self.t,
            seed: self.config.seed,
        }
    }
}

/// The model, its optimizer, and the reference run's model for a method that weighs every step
/// against it.
struct Learner {
    /// Always in place but during a step, which takes it (an optimizer step consumes the model,
    /// and a copy kept alive would stop burn from updating parameters in place).
    model: Option<Model>,
    optim: ModuleOptimizer,
    reference_model: Option<Model>,
    /// The run's place in a pack: once joined, its weights and optimizer state live there and
    /// `model` is a copy refreshed when read (`stale` after each packed step).
    pack: Option<PackSlot>,
    stale: bool,
}

impl Learner {
    fn model(&mut self) -> &Model {
        self.refresh();
        self.model
            .as_ref()
            .expect("the model is in place between steps")
    }

    /// Brings `model` up to date with the run's weights in its pack after packed steps.
    fn refresh(&mut self) {
        if self.stale {
            if let (Some(slot), Some(model)) = (&self.pack, &mut self.model) {
                slot.weights_into(model);
            }
            self.stale = false;
        }
    }

    fn take_model(&mut self) -> Model {
        self.model
            .take()
            .expect("the model is in place between steps")
    }
}

/// Where a run stands: with the model and optimizer, what a checkpoint holds.
struct Position {
    step: u64,
    round: usize,
    /// Training examples per skill so far.
    trained: Vec<u64>,
    train_time: f64,
    /// Wall time before this process: a resumed run's checkpoint's.
    wall_before: f64,
    /// Each finished round's per-skill mean training loss.
    round_train_losses: Vec<Vec<Option<f64>>>,
    last_checkpoint: u64,
    /// Steps taken in a pack.
    packed_steps: u64,
}

impl Position {
    fn start(k: usize) -> Self {
        Self {
            step: 0,
            round: 0,
            trained: vec![0; k],
            train_time: 0.0,
            wall_before: 0.0,
            round_train_losses: Vec::new(),
            last_checkpoint: 0,
            packed_steps: 0,
        }
    }
}

/// What the rounds change.
struct LoopState<'s, 'r> {
    learner: &'s mut Learner,
    method: &'s mut dyn MixtureMethod,
    stream: &'s mut TrainStream<'r>,
    pool: &'s [Example],
    recorder: &'s mut Recorder<'r>,
    at: &'s mut Position,
}

/// The run's model (initialised from the seed, then from `init` where given), its codec, the
/// pretrained weights' record, its optimizer and the reference model.
fn start_learner(
    setup: &Setup,
    task: &dyn Task,
    method: &dyn MixtureMethod,
    reference: Option<&ReferenceRun>,
) -> Result<(
    Learner,
    crate::model::Codec,
    Option<crate::model::gpt_neo::WeightsRecord>,
)> {
    let config = setup.config;
    let mut init_rng = stream_rng(config.seed, PURPOSE_INIT, 0);
    let (mut model, codec) = config
        .model
        .build(task.vocab(), &mut init_rng, &setup.device)?;
    let pretrained = match (&config.model.weights, config.model.random_init) {
        (Some(dir), false) => Some(crate::model::gpt_neo::fingerprint(dir)?),
        _ => None,
    };
    if let Some(path) = &config.init {
        // A base folder was checked (fingerprint, vocabulary) by `validate` above.
        let weights = crate::model::base::init_weights(path)?;
        let load_error = |e| Error::Invalid {
            origin: path.display().to_string(),
            field: "init".into(),
            message: format!("cannot be loaded as this run's model: {e:?}"),
        };
        let (layers, vocab) = (config.model.init_layers, config.model.init_vocab);
        model = if layers == 0 && vocab == 0 {
            model.try_load_file(&weights).map_err(load_error)?
        } else {
            // Weights of fewer blocks or words: load them into a model of their shape, then grow.
            let shallow = crate::model::ModelConfig {
                n_layers: if layers > 0 {
                    layers
                } else {
                    config.model.n_layers
                },
                init_layers: 0,
                init_vocab: 0,
                ..config.model.clone()
            };
            let mut rng = stream_rng(config.seed, PURPOSE_INIT, 1);
            let words = if vocab > 0 { vocab } else { task.vocab().len() };
            let base = shallow
                .init(words, &mut rng, &setup.device)
                .try_load_file(&weights)
                .map_err(load_error)?;
            let base = match vocab {
                0 => base,
                _ => model.clone().vocab_grown_from(base),
            };
            match layers {
                0 => base,
                _ => model.grown_from(base, config.model.freeze_init),
            }
        };
    }
    let optim = optimizer(&model, setup.t);
    let reference_model = match (reference, method.wants_reference_model()) {
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
    let learner = Learner {
        model: Some(model),
        optim,
        reference_model,
        pack: None,
        stale: false,
    };
    Ok((learner, codec, pretrained))
}

/// The pool the example-level curricula choose from: the whole budget, drawn with the method's
/// proportions over the training skills (else stratified) and scored by the initial model where
/// the method orders it by that score. Empty for the other methods.
fn draw_pool(
    setup: &Setup,
    method: &mut dyn MixtureMethod,
    stream: &mut TrainStream,
    learner: &Learner,
    codec: &crate::model::Codec,
) -> Result<Vec<Example>> {
    let mut pool: Vec<Example> = Vec::new();
    if !method.wants_pool() {
        return Ok(pool);
    }
    let t = setup.t;
    let mixture = pool_mixture(method.pool_mixture(), setup.train_skills, setup.k);
    let counts = exact_counts(&mixture, t.steps as usize * t.batch_size);
    for (skill, &c) in counts.iter().enumerate() {
        pool.extend(stream.take(skill + 1, c)?);
    }
    let losses = match method.scores_pool() {
        true => score(
            // Before the first step: the model is the run's own, never stale.
            &learner
                .model
                .as_ref()
                .expect("the model is in place")
                .valid(),
            &codec.encoded(&pool)?,
            &setup.selected.device,
        ),
        false => Vec::new(),
    };
    method.set_pool(ScoredPool {
        skills: pool.iter().map(|e| e.skill).collect(),
        losses,
        answers: pool.iter().map(Example::answer_token).collect(),
        rng: stream_rng(setup.config.seed, PURPOSE_POOL_ORDER, 0),
    });
    Ok(pool)
}

/// Resumes from the checkpoint `ck`: its model and optimizer, then the rounds before replayed
/// (the same plans from the same history and random streams advance the training streams exactly
/// as the interrupted run did), then its record and the method's own state.
fn resume(setup: &Setup, ck: Checkpoint, s: &mut LoopState) -> Result<()> {
    let paths = setup.paths;
    let load_error = |what: &str, e: String| Error::Invalid {
        origin: paths.checkpoint_dir().display().to_string(),
        field: what.into(),
        message: format!("cannot be loaded: {e}"),
    };
    let learner = &mut *s.learner;
    let model = learner
        .take_model()
        .try_load_file(paths.checkpoint_model(ck.step))
        .map_err(|e| load_error("model", format!("{e:?}")))?;
    // The loaded parameters keep their saved ids: build the optimizer's no-decay group from
    // them, then load its state.
    learner.optim = optimizer(&model, setup.t)
        .load(paths.checkpoint_optim(ck.step))
        .map_err(|e| load_error("optimizer", format!("{e:?}")))?;
    learner.model = Some(model);
    let mut replay_step = 0;
    for r in 0..ck.round {
        let history = observed_history(&ck.evaluations, &ck.probes, replay_step);
        let train_losses = match r {
            0 => &[][..],
            _ => &ck.round_train_losses[r - 1][..],
        };
        let (_, _, round_steps, _) = run_round_plan(
            &mut *s.method,
            s.stream,
            s.pool,
            &setup.round(replay_step, r),
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
    *s.at = Position {
        step: ck.step,
        round: ck.round,
        trained: ck.trained,
        train_time: ck.train_time,
        wall_before: ck.wall_time,
        round_train_losses: ck.round_train_losses,
        last_checkpoint: ck.step,
        packed_steps: ck.packed_steps,
    };
    s.recorder.eval_time = ck.eval_time;
    s.recorder.evaluations = ck.evaluations;
    s.recorder.probes = ck.probes;
    s.method.load_state(ck.method_state)
}

/// Round after round until the budget is spent, the loss diverges or the caller stops the run at a
/// checkpoint; returns how the run ended.
fn train_rounds(
    setup: &Setup,
    s: &mut LoopState,
    codec: &crate::model::Codec,
    started: Instant,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<RunStatus> {
    while s.at.step < setup.t.steps {
        if s.method.wants_probe() {
            s.recorder.probe(s.learner.model(), s.at.step);
        }
        let history = observed_history(&s.recorder.evaluations, &s.recorder.probes, s.at.step);
        let last_losses = s.at.round_train_losses.last().map_or(&[][..], |l| &l[..]);
        let (examples, mixture, _, mut round_rng) = run_round_plan(
            &mut *s.method,
            s.stream,
            s.pool,
            &setup.round(s.at.step, s.at.round),
            &history,
            last_losses,
        )?;
        if s.at.step == 0 {
            // The mixture recorded at step 0 is the first round's.
            let model = s.learner.model();
            s.recorder
                .record(model, 0, &mixture, &*s.method, progress)?;
        }
        let mut examples = codec.encode(examples)?;
        examples.shuffle(&mut round_rng);
        if let Some(failed) = train_round(setup, s, &examples, &mixture, progress)? {
            return Ok(failed);
        }
        s.at.round += 1;
        // A checkpoint at the end of a round once `steps_per_round` steps have passed since the
        // last one (every round, unless a method makes its rounds shorter).
        let at = &*s.at;
        if at.step < setup.t.steps && at.step - at.last_checkpoint >= setup.steps_per_round {
            write_round_checkpoint(setup, s, started)?;
            let (round, step) = (s.at.round, s.at.step);
            if progress(Progress::RoundEnd { round, step }) == Flow::Stop {
                return Ok(RunStatus::Stopped { step });
            }
        }
    }
    Ok(RunStatus::Finished)
}

/// One round's examples in batches: a step each, evaluations on schedule, and the round's
/// per-skill mean training loss recorded for the next plan. `Some(failed)` when the loss
/// diverged.
fn train_round(
    setup: &Setup,
    s: &mut LoopState,
    examples: &[Example],
    mixture: &[f64],
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<Option<RunStatus>> {
    let t = setup.t;
    for e in examples {
        s.at.trained[e.skill - 1] += 1;
    }
    // Each skill's summed training loss and count over the round.
    let mut round_loss = vec![(0.0f64, 0usize); setup.k];
    for batch in examples.chunks(t.batch_size) {
        let t0 = Instant::now();
        let batch: Vec<&Example> = batch.iter().collect();
        let step = s.at.step;
        let lr = learning_rate(t.lr, step, t.warmup, t.steps);
        let reference_losses: Vec<f64> = match &s.learner.reference_model {
            Some(m) => {
                optim::host_values(example_losses(m, &batch, t.loss, &setup.selected.device))
            }
            None => Vec::new(),
        };
        let skills: Vec<usize> = batch.iter().map(|e| e.skill).collect();
        let learner = &mut *s.learner;
        let method = &mut *s.method;
        let losses = match &mut learner.pack {
            Some(slot) => {
                if !slot.joined() {
                    let model = learner.model.clone().expect("the model is in place");
                    let fresh = optimizer(&model, t);
                    slot.join(model, std::mem::replace(&mut learner.optim, fresh))?;
                }
                let examples = batch.iter().map(|&e| e.clone()).collect();
                let losses = slot.step(examples, lr)?;
                learner.stale = true;
                s.at.packed_steps += 1;
                losses
            }
            None => {
                let (next, losses) = train_step_weighted(
                    learner.take_model(),
                    &mut learner.optim,
                    &batch,
                    t,
                    lr,
                    &setup.device,
                    &mut |l| method.weigh_step(&skills, l, &reference_losses),
                );
                learner.model = Some(next);
                losses
            }
        };
        let loss_value = losses.iter().sum::<f64>() / losses.len() as f64;
        for (e, l) in batch.iter().zip(&losses) {
            round_loss[e.skill - 1].0 += l;
            round_loss[e.skill - 1].1 += 1;
        }
        if !loss_value.is_finite() {
            return Ok(Some(RunStatus::Failed {
                reason: format!("the training loss became {loss_value} at step {}", step + 1),
                step: step + 1,
            }));
        }
        s.at.step += 1;
        s.at.train_time += t0.elapsed().as_secs_f64();
        let step = s.at.step;
        progress(Progress::Step {
            step,
            loss: loss_value,
        });
        if step.is_multiple_of(t.eval_every) || step == t.steps {
            let model = s.learner.model();
            s.recorder
                .record(model, step, mixture, &*s.method, progress)?;
        }
    }
    s.at.round_train_losses.push(
        round_loss
            .iter()
            .map(|&(sum, n)| (n > 0).then(|| sum / n as f64))
            .collect(),
    );
    Ok(None)
}

/// The checkpoint at a round's end: the model, the optimizer and where the run stands.
fn write_round_checkpoint(setup: &Setup, s: &mut LoopState, started: Instant) -> Result<()> {
    s.at.last_checkpoint = s.at.step;
    let at = &*s.at;
    s.learner.refresh();
    let learner = &*s.learner;
    let model = learner
        .model
        .as_ref()
        .expect("the model is in place between steps");
    // In a pack, the run's own share of the pack's optimizer state.
    let packed_optim = match &learner.pack {
        Some(slot) if slot.joined() => Some(slot.optimizer(optimizer(model, setup.t))?),
        _ => None,
    };
    write_checkpoint(
        setup.paths,
        model,
        packed_optim.as_ref().unwrap_or(&learner.optim),
        &Checkpoint {
            config: setup.config.clone(),
            step: at.step,
            round: at.round,
            evaluations: s.recorder.evaluations.clone(),
            probes: s.recorder.probes.clone(),
            round_train_losses: at.round_train_losses.clone(),
            trained: at.trained.clone(),
            train_time: at.train_time,
            eval_time: s.recorder.eval_time,
            wall_time: at.wall_before + started.elapsed().as_secs_f64(),
            method_state: s.method.state(),
            packed_steps: at.packed_steps,
        },
    )
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
