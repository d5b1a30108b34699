//! One optimizer step for a pack of runs (issue 24; the model in `model::packed`): each run's own
//! batch, one forward/backward over all of them, each run's gradient clipped by its own global
//! norm, AdamW on the stacked parameters (element-wise, so exact per run).

use super::*;
use crate::model::packed::PackedTransformer;

/// Whether batches of these examples can be trained as a pack under `loss`: every example's
/// answer is one token (the synthetic tasks'; multi-token JSONL answers train unpacked).
pub fn batches_can_pack(batches: &[Vec<&Example>], loss: LossKind) -> bool {
    let first = batches.first().map_or(0, |b| b.len());
    batches.iter().all(|b| b.len() == first && first > 0)
        && (loss == LossKind::Full || batches.iter().flatten().all(|e| e.answer_len == 1))
}

/// Tokens `[R, B, S]`, rows padded on the right with 0 to the longest example of any run.
fn packed_tokens(batches: &[Vec<&Example>], device: &Device) -> Tensor<3, Int> {
    let seq = batches
        .iter()
        .flatten()
        .map(|e| e.tokens.len())
        .max()
        .unwrap_or(0);
    let (runs, batch) = (batches.len(), batches[0].len());
    let data: Vec<i64> = batches
        .iter()
        .flatten()
        .flat_map(|e| {
            e.tokens
                .iter()
                .map(|&t| i64::from(t))
                .chain(std::iter::repeat_n(0, seq - e.tokens.len()))
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [runs, batch, seq]), device)
}

/// Each example's training loss `[R, B]` under `kind`, as [`example_losses`] gives it for one
/// run: the answer token's cross-entropy, or the mean next-token cross-entropy over the row.
pub fn packed_example_losses(
    model: &PackedTransformer,
    batches: &[Vec<&Example>],
    kind: LossKind,
    device: &Device,
) -> Tensor<2> {
    let tokens = packed_tokens(batches, device);
    let [runs, batch, seq] = tokens.dims();
    match kind {
        LossKind::Full => {
            let logits = model.forward(tokens.clone().narrow(2, 0, seq - 1));
            let targets = tokens
                .narrow(2, 1, seq - 1)
                .reshape([runs, batch, seq - 1, 1]);
            let nll: Tensor<3> = log_softmax(logits, 3)
                .gather(3, targets)
                .reshape([runs, batch, seq - 1])
                .neg();
            if batches.iter().flatten().all(|e| e.tokens.len() == seq) {
                return nll.mean_dim(2).reshape([runs, batch]);
            }
            let examples = || batches.iter().flatten();
            let mask: Vec<f32> = examples()
                .flat_map(|e| (1..seq).map(move |i| f32::from(u8::from(i < e.tokens.len()))))
                .collect();
            let counts: Vec<f32> = examples().map(|e| (e.tokens.len() - 1) as f32).collect();
            let mask =
                Tensor::<3>::from_data(TensorData::new(mask, [runs, batch, seq - 1]), device);
            let counts = Tensor::<2>::from_data(TensorData::new(counts, [runs, batch]), device);
            (nll * mask).sum_dim(2).reshape([runs, batch]) / counts
        }
        LossKind::Answer => {
            let positions: Vec<usize> = batches.iter().flatten().map(|e| e.answer_pos).collect();
            let answers: Vec<i64> = batches
                .iter()
                .flatten()
                .map(|e| i64::from(e.answer_token()))
                .collect();
            let answers =
                Tensor::<3, Int>::from_data(TensorData::new(answers, [runs, batch, 1]), device);
            let lp = model.answer_log_probs(tokens, &positions);
            lp.gather(2, answers).reshape([runs, batch]).neg()
        }
    }
}

/// Sums each run's squared gradients: one `[R]` device tensor over every packed parameter.
struct RunSquaredNorms<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for RunSquaredNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let runs = g.dims()[0];
            let s = g.powi_scalar(2).reshape([runs as i64, -1]).sum_dim(1);
            let s = s.reshape([runs]);
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies run r's slice of every gradient by `scale[r]`.
struct ScaleRuns<'a> {
    grads: &'a mut GradientsParams,
    scale: Tensor<1>,
}

impl ModuleVisitor for ScaleRuns<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let mut shape = [1; D];
            shape[0] = g.dims()[0];
            let scale = self.scale.clone().reshape(shape);
            self.grads.register::<D>(param.id, g * scale);
        }
    }
}

/// [`clip_global_norm`] for each run of the pack: run r's gradients scaled by
/// `min(1, max_norm / (‖g_r‖ + 1e-6))`, its own norm over its own slices.
fn clip_run_norms(model: &PackedTransformer, grads: &mut GradientsParams, max_norm: f64) {
    let mut norms = RunSquaredNorms { grads, total: None };
    model.visit(&mut norms);
    let Some(total) = norms.total else { return };
    let scale = total
        .sqrt()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    model.visit(&mut ScaleRuns { grads, scale });
}

/// AdamW for a pack, grouped as [`optimizer`] groups one run: no weight decay on the packed
/// rank-1 parameters (biases, LayerNorm), which are rank 2 here.
pub fn packed_optimizer(
    model: &PackedTransformer,
    t: &crate::config::TrainingConfig,
) -> ModuleOptimizer {
    optim::grouped_adamw(model, t, 2)
}

/// One optimizer step of a pack: run r trains on `batches[r]` at learning rate `lr` (the runs of
/// a pack share the schedule); returns the updated pack and each run's examples' losses.
pub fn packed_train_step(
    model: PackedTransformer,
    optim: &mut ModuleOptimizer,
    batches: &[Vec<&Example>],
    t: &crate::config::TrainingConfig,
    lr: f64,
    device: &Device,
) -> (PackedTransformer, Vec<Vec<f64>>) {
    let per_example = packed_example_losses(&model, batches, t.loss, device);
    let batch = batches[0].len();
    let values: Vec<f64> = per_example
        .clone()
        .into_data()
        .iter::<f32>()
        .map(f64::from)
        .collect();
    let values: Vec<Vec<f64>> = values.chunks(batch).map(<[f64]>::to_vec).collect();
    // The sum of the runs' batch means: run r's slice gets run r's own gradient.
    let loss = per_example.mean_dim(1).sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if t.grad_clip > 0.0 {
        clip_run_norms(&model, &mut grads, t.grad_clip);
    }
    (optim.step(lr, model, grads), values)
}
