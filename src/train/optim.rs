//! The optimizer step: AdamW with a no-decay group for the rank-1 parameters, the learning-rate
//! schedule (linear warm-up and decay), global gradient-norm clipping, and one training step.

use super::*;

/// The learning rate at 0-based `step`: linear warm-up then linear decay to 0 at `total`, as the
/// authors' Hugging Face `get_linear_schedule_with_warmup` (whose first step has factor 0).
pub fn learning_rate(peak: f64, step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        peak * step as f64 / warmup as f64
    } else {
        peak * (total.saturating_sub(step)) as f64 / (total - warmup).max(1) as f64
    }
}

/// Collects the ids of the parameters of rank `rank` (one run's rank-1 parameters: biases,
/// LayerNorm γ and β; rank 2 in a pack): no weight decay on them.
pub(crate) struct VectorParams {
    rank: usize,
    ids: Vec<ParamId>,
}

impl ModuleVisitor for VectorParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == self.rank {
            self.ids.push(param.id);
        }
    }
}

/// Sums the squared gradients of every parameter into one device scalar.
pub(crate) struct SquaredNorm<'a> {
    pub(crate) grads: &'a GradientsParams,
    pub(crate) total: Option<Tensor<1>>,
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
pub(crate) struct ScaleGrads<'a> {
    pub(crate) grads: &'a mut GradientsParams,
    pub(crate) scale: Tensor<1>,
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
pub(crate) fn clip_global_norm(model: &Model, grads: &mut GradientsParams, max_norm: f64) {
    let mut norm = SquaredNorm { grads, total: None };
    model.visit(&mut norm);
    let Some(total) = norm.total else { return };
    let scale = clip_scale(total, max_norm);
    model.visit(&mut ScaleGrads { grads, scale });
}

/// The factor `min(1, max_norm / (‖g‖ + 1e-6))` for each squared norm of `squared_norms`.
pub(crate) fn clip_scale(squared_norms: Tensor<1>, max_norm: f64) -> Tensor<1> {
    squared_norms
        .sqrt()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0)
}

/// AdamW with decoupled weight decay on the matrices and none on the rank-1 parameters (biases,
/// LayerNorm), as the authors' Hugging Face trainer groups them.
pub fn optimizer(model: &Model, t: &crate::config::TrainingConfig) -> ModuleOptimizer {
    grouped_adamw(model, t, 1)
}

/// [`optimizer`] for any module whose no-decay parameters are those of rank `vector_rank`.
pub(crate) fn grouped_adamw<M: Module>(
    model: &M,
    t: &crate::config::TrainingConfig,
    vector_rank: usize,
) -> ModuleOptimizer {
    let mut no_decay = VectorParams {
        rank: vector_rank,
        ids: Vec::new(),
    };
    model.visit(&mut no_decay);
    let adamw = || AdamWConfig::new().with_epsilon(t.eps as f32);
    adamw()
        .with_weight_decay(t.weight_decay as f32)
        .init()
        .with_group(
            ParamGroup::from_ids(no_decay.ids),
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
    let (model, losses) = train_step_weighted(model, optim, batch, t, lr, device, &mut |_| None);
    let mean = losses.iter().sum::<f64>() / losses.len() as f64;
    (model, mean)
}

/// [`train_step`], returning each example's loss (read back to the host in one transfer), whose
/// loss `weigh` may set from the examples' losses: `Some(w)` makes the step minimize Σ_e w_e·l_e
/// instead of the batch mean (DoReMi's proxy).
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
    let values = host_values(per_example.clone());
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

/// A tensor's values read back to the host (one transfer), as f64.
pub(crate) fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().iter::<f32>().map(f64::from).collect()
}
