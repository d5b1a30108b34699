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
