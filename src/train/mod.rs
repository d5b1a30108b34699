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
mod record;
mod speed;

use checkpoint::*;
pub use checkpoint::{save_module, tidy_run, RunPaths};
pub use eval::{batch_loss, evaluate, example_losses, score};
pub use optim::{learning_rate, optimizer, train_step, train_step_losses, train_step_weighted};
use record::*;
pub use record::{read_manifest, Manifest, RecordedRun, RunStatus};
pub use speed::{measure_speed, Speed};

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
