//! `skillit bench`'s measurement of a config's training step and evaluation pass on a device.

use super::*;

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
    let (model, codec) = config.model.build(task.vocab(), &mut init, &device)?;
    let num_params = model.num_params();
    let mut optim = optimizer(&model, t);
    let k = task.num_skills();
    let examples = bench_batch(task.as_ref(), &codec, t.batch_size, 0)?;
    let batch: Vec<&Example> = examples.iter().collect();
    let (model, ms_per_step) = time_steps(model, warmup, steps, |m| {
        train_step(m, &mut optim, &batch, t, t.lr, &device).0
    });
    let validation = ValidationSet::standard(task.as_ref(), t.val_per_skill)?;
    let validation = codec.encode(validation.iter().cloned().collect())?;
    let plain = model.valid();
    let ((), ms_per_eval) = time_steps((), 1, evals, |()| {
        evaluate(&plain, &validation, k, &selected.device, 0);
    });
    Ok(Speed {
        backend: selected.backend.clone(),
        adapter: selected.adapter.clone(),
        num_params,
        batch_size: t.batch_size,
        // In the model's tokens (a pretrained tokenizer's lengths vary: the longest of the batch).
        seq_len: batch.iter().map(|e| e.tokens.len()).max().unwrap_or(0),
        ms_per_step,
        ms_per_eval,
        eval_sequences: validation.len(),
    })
}

/// A pack's measured training speed: R runs stepped together (see `train::packed`).
#[derive(Debug, Clone, Serialize)]
pub struct PackedSpeed {
    pub runs: usize,
    /// The median time of one packed step (all R runs' steps).
    pub ms_per_packed_step: f64,
    /// R × steps per second: the figure to set against one run's 1000 / ms_per_step.
    pub runs_steps_per_s: f64,
}

/// Measures `runs` copies of `config`'s run trained as one pack on `selected`, each with its own
/// weights (drawn from its own seed) and its own batch: `warmup` untimed packed steps, then the
/// median of `steps` timed ones. Fails for a model that cannot be packed (GPT-Neo, dropout).
pub fn measure_packed_speed(
    config: &RunConfig,
    selected: &Selected,
    runs: usize,
    warmup: usize,
    steps: usize,
) -> Result<PackedSpeed> {
    let task = config.task.build()?;
    let t = &config.training;
    let device = selected.device.clone().autodiff();
    let mut models = Vec::with_capacity(runs);
    let mut batches = Vec::with_capacity(runs);
    for r in 0..runs as u64 {
        let mut init = stream_rng(r, Purpose(99), 0);
        let (model, codec) = config.model.build(task.vocab(), &mut init, &device)?;
        models.push(model);
        batches.push(bench_batch(task.as_ref(), &codec, t.batch_size, r)?);
    }
    let refs: Vec<&Model> = models.iter().collect();
    if !crate::model::packed::PackedTransformer::can_pack(&refs) {
        return Err(Error::Invalid {
            origin: "command line".into(),
            field: "--pack".into(),
            message: "packs hold scratch transformers without dropout; this model is not one"
                .into(),
        });
    }
    let pack = crate::model::packed::PackedTransformer::stack(&refs);
    drop(models);
    let mut optim = packed_optimizer(&pack, t);
    let batch: Vec<Vec<&Example>> = batches.iter().map(|b| b.iter().collect()).collect();
    if !batches_can_pack(&batch, t.loss) {
        return Err(Error::Invalid {
            origin: "command line".into(),
            field: "--pack".into(),
            message: "this task's answers are several tokens long: such runs train unpacked".into(),
        });
    }
    let (_, ms) = time_steps(pack, warmup, steps, |p| {
        packed_train_step(p, &mut optim, &batch, t, t.lr, &device).0
    });
    Ok(PackedSpeed {
        runs,
        ms_per_packed_step: ms,
        runs_steps_per_s: 1000.0 * runs as f64 / ms,
    })
}

/// A bench step's batch: `batch_size` examples cycling through the task's skills, from stream
/// `seed` (run r of a pack draws its own).
fn bench_batch(
    task: &dyn Task,
    codec: &crate::model::Codec,
    batch_size: usize,
    seed: u64,
) -> Result<Vec<Example>> {
    let mut rng = stream_rng(seed, Purpose::TRAIN, 1);
    let k = task.num_skills();
    let examples = (0..batch_size)
        .map(|i| task.example(1 + i % k, &mut rng))
        .collect();
    codec.encode(examples)
}

/// Runs `step` on `state` `warmup` times untimed, then `timed` times (at least once) timed;
/// returns the final state and the median time of the timed runs in ms.
fn time_steps<S>(
    mut state: S,
    warmup: usize,
    timed: usize,
    mut step: impl FnMut(S) -> S,
) -> (S, f64) {
    let mut times = Vec::with_capacity(timed.max(1));
    for i in 0..warmup + timed.max(1) {
        let t0 = Instant::now();
        state = step(state);
        if i >= warmup {
            times.push(1000.0 * t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    (state, times[times.len() / 2])
}
