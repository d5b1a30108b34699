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
    let k = task.num_skills();
    for r in 0..runs as u64 {
        let mut init = stream_rng(r, Purpose(99), 0);
        let (model, codec) = config.model.build(task.vocab(), &mut init, &device)?;
        models.push(model);
        let mut rng = stream_rng(r, Purpose::TRAIN, 1);
        let examples: Vec<Example> = (0..t.batch_size)
            .map(|i| task.example(1 + i % k, &mut rng))
            .collect();
        batches.push(codec.encode(examples)?);
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
    let mut pack = crate::model::packed::PackedTransformer::stack(&refs);
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
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps.max(1) {
        let t0 = Instant::now();
        pack = packed_train_step(pack, &mut optim, &batch, t, t.lr, &device).0;
        if i >= warmup {
            times.push(1000.0 * t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2];
    Ok(PackedSpeed {
        runs,
        ms_per_packed_step: ms,
        runs_steps_per_s: 1000.0 * runs as f64 / ms,
    })
}
