//! One optimizer step for a pack of runs (issue 24; the model in `model::packed`): each run's own
//! batch, one forward/backward over all of them, each run's gradient clipped by its own global
//! norm, AdamW on the stacked parameters (element-wise, so exact per run).

use super::*;
use crate::model::packed::{param_shapes, PackedTransformer};
use std::collections::{BTreeMap, HashMap};

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
    let scale = optim::clip_scale(total, max_norm);
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
    let values = optim::host_values(per_example.clone());
    let values: Vec<Vec<f64>> = values.chunks(batch).map(<[f64]>::to_vec).collect();
    // The sum of the runs' batch means: run r's slice gets run r's own gradient.
    let loss = per_example.mean_dim(1).sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if t.grad_clip > 0.0 {
        clip_run_norms(&model, &mut grads, t.grad_clip);
    }
    (optim.step(lr, model, grads), values)
}

/// The pack's parameter ids beside the run model's, parameter by parameter: the packed model
/// mirrors the scratch transformer field for field, so their visit orders align; checked here
/// by shape (each packed shape is `[R]` followed by the run's).
pub(crate) fn aligned_ids(pack: &PackedTransformer, model: &Model) -> Vec<(u64, u64)> {
    let packed = param_shapes(pack);
    let own = param_shapes(model);
    assert_eq!(packed.len(), own.len(), "a pack mirrors its runs' models");
    packed
        .iter()
        .zip(&own)
        .map(|((p, ps), (o, os))| {
            assert_eq!(&ps[1..], &os[..], "a pack mirrors its runs' models");
            (p.val(), o.val())
        })
        .collect()
}

fn record_error(e: impl std::fmt::Debug) -> Error {
    Error::Invalid {
        origin: "packed optimizer state".into(),
        field: "record".into(),
        message: format!("cannot be converted: {e:?}"),
    }
}

/// One tensor of an optimizer's state: name, dtype, shape, parameter id, bytes.
type StateTensor = (
    String,
    burn_pack::DType,
    Vec<usize>,
    Option<u64>,
    burn_pack::Bytes,
);

/// An optimizer's state as burnpack parts, keyed by parameter id (`{id}.…`): each tensor's
/// name, dtype, shape, parameter id and bytes, and the scalars (step counts, `__rank`).
pub(crate) struct OptimizerParts {
    tensors: Vec<StateTensor>,
    scalars: BTreeMap<String, burn_pack::Scalar>,
}

impl OptimizerParts {
    fn of(optim: &ModuleOptimizer) -> Result<Self> {
        let bytes = optim.into_bytes().map_err(record_error)?;
        let reader = burn_pack::Reader::from_bytes(bytes).map_err(record_error)?;
        let scalars = reader.scalars().clone();
        let tensors = reader
            .into_tensors()
            .map_err(record_error)?
            .into_iter()
            .map(|t| {
                let (name, dtype, shape, id, bytes) = t.into_parts().map_err(record_error)?;
                Ok((name, dtype, shape.to_vec(), id, bytes))
            })
            .collect::<Result<_>>()?;
        Ok(Self { tensors, scalars })
    }

    /// `optim` loaded with these parts.
    fn load_into(self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let tensors = self
            .tensors
            .into_iter()
            .map(|(name, dtype, shape, id, bytes)| {
                burn_pack::Tensor::new(name, dtype, shape, id, bytes)
            })
            .collect();
        let mut writer = burn_pack::Writer::new(tensors);
        for (key, value) in &self.scalars {
            writer = writer.with_scalar(key, *value);
        }
        let bytes = writer.into_bytes().map_err(record_error)?;
        optim.from_bytes(bytes).map_err(record_error)
    }
}

/// The optimizer state keyed by `{id}.…` renamed to `{to}.…` for each `(id, to)` of `ids`.
fn rename(key: &str, ids: &HashMap<u64, u64>) -> Option<String> {
    let (id, rest) = key.split_once('.')?;
    let to = ids.get(&id.parse::<u64>().ok()?)?;
    Some(format!("{to}.{rest}"))
}

/// A scalar of the optimizer state under `key`, a parameter's `__rank` shifted by `delta` (a
/// packed parameter has one axis more than a run's).
fn shift_rank(key: &str, value: burn_pack::Scalar, delta: i64) -> burn_pack::Scalar {
    match (key.ends_with(".__rank"), value) {
        (true, burn_pack::Scalar::UInt(n)) => {
            burn_pack::Scalar::UInt(n.checked_add_signed(delta).expect("a rank"))
        }
        (true, burn_pack::Scalar::Int(n)) => burn_pack::Scalar::Int(n + delta),
        _ => value,
    }
}

/// Run r's share of a pack's AdamW state (`packed`: its parts), loaded into `fresh` (the
/// optimizer [`optimizer`] builds for run r's model): each packed moment's slice r under run r's
/// parameter id, the step counts as they are. `ids`: [`aligned_ids`] for run r.
pub(crate) fn unstack_optimizer(
    packed: &OptimizerParts,
    ids: &[(u64, u64)],
    r: usize,
    fresh: ModuleOptimizer,
) -> Result<ModuleOptimizer> {
    let to_run: HashMap<u64, u64> = ids.iter().copied().collect();
    let mut tensors = Vec::with_capacity(packed.tensors.len());
    for (name, dtype, dims, param_id, bytes) in &packed.tensors {
        let (Some(name), Some(id)) = (rename(name, &to_run), param_id) else {
            continue;
        };
        let per_run = bytes.len() / dims[0];
        let slice = bytes[r * per_run..(r + 1) * per_run].to_vec();
        tensors.push((
            name,
            *dtype,
            dims[1..].to_vec(),
            to_run.get(id).copied(),
            burn_pack::Bytes::from_bytes_vec(slice),
        ));
    }
    let scalars = packed
        .scalars
        .iter()
        .filter_map(|(key, value)| Some((rename(key, &to_run)?, shift_rank(key, *value, -1))))
        .collect();
    OptimizerParts { tensors, scalars }.load_into(fresh)
}

/// The pack's AdamW state from its runs' own (`runs[r]`: run r's optimizer and [`aligned_ids`]),
/// loaded into `fresh` (the pack's [`packed_optimizer`]): each moment stacked on the run axis.
/// The runs must be at the same step (their step counts agree).
pub(crate) fn stack_optimizers(
    runs: &[(&ModuleOptimizer, Vec<(u64, u64)>)],
    fresh: ModuleOptimizer,
) -> Result<ModuleOptimizer> {
    let mut parts = Vec::with_capacity(runs.len());
    for (optim, ids) in runs {
        let to_pack: HashMap<u64, u64> = ids.iter().map(|&(p, o)| (o, p)).collect();
        let own = OptimizerParts::of(optim)?;
        let mut by_name = BTreeMap::new();
        for (name, dtype, dims, _, bytes) in own.tensors {
            if let Some(name) = rename(&name, &to_pack) {
                by_name.insert(name, (dtype, dims, bytes));
            }
        }
        let scalars: BTreeMap<String, burn_pack::Scalar> = own
            .scalars
            .iter()
            .filter_map(|(k, v)| Some((rename(k, &to_pack)?, *v)))
            .collect();
        parts.push((by_name, scalars));
    }
    let (first_tensors, first_scalars) = &parts[0];
    if parts
        .iter()
        .any(|(t, s)| t.keys().ne(first_tensors.keys()) || s != first_scalars)
    {
        return Err(record_error(
            "the runs' optimizer states differ in shape or step",
        ));
    }
    let mut tensors = Vec::with_capacity(first_tensors.len());
    for (name, (dtype, dims, _)) in first_tensors {
        let mut bytes = Vec::new();
        for (t, _) in &parts {
            bytes.extend_from_slice(&t[name].2);
        }
        let mut shape = vec![runs.len()];
        shape.extend(dims);
        let id = name
            .split_once('.')
            .and_then(|(id, _)| id.parse::<u64>().ok());
        tensors.push((
            name.clone(),
            *dtype,
            shape,
            id,
            burn_pack::Bytes::from_bytes_vec(bytes),
        ));
    }
    let scalars = first_scalars
        .iter()
        .map(|(key, value)| (key.clone(), shift_rank(key, *value, 1)))
        .collect();
    OptimizerParts { tensors, scalars }.load_into(fresh)
}

/// A pack being trained: R runs, each in its own thread running [`train_in_pack`], that meet
/// once a step. Each run hands in its batch; the last to arrive takes the packed step for all and
/// wakes the others with their losses. A run joins with its model and optimizer at its first
/// step (all of a pack's runs start at the same step) and leaves when it ends, for whatever
/// reason; the others go on, the slot of a run that left training a copy of another's batch.
pub struct Pack {
    runs: usize,
    /// The training settings the pack's runs share (the sweep packs only runs that do).
    training: crate::config::TrainingConfig,
    device: Device,
    state: std::sync::Mutex<PackState>,
    turn: std::sync::Condvar,
}

struct PackState {
    /// Each run's model and optimizer, handed in at its first step.
    joining: Vec<Option<(Model, ModuleOptimizer)>>,
    trained: Option<Trained>,
    /// This step's batches, and the learning rate the runs share.
    pending: Vec<Option<Vec<Example>>>,
    lr: f64,
    /// Each run's losses from the last packed step.
    results: Vec<Option<Vec<f64>>>,
    active: Vec<bool>,
    /// Counts packed steps: a waiting run wakes when it moves.
    generation: u64,
    /// Why the pack cannot go on (its optimizer states would not stack), for every run.
    broken: Option<String>,
}

struct Trained {
    model: Option<PackedTransformer>,
    optim: ModuleOptimizer,
    /// `optim`'s state as parts, read once after a step for all the runs' checkpoints (each
    /// takes its slice) and dropped by the next step.
    optim_parts: Option<OptimizerParts>,
    /// Run r's [`aligned_ids`].
    ids: Vec<Vec<(u64, u64)>>,
}

/// One run's place in a [`Pack`]: leaves the pack when dropped.
pub struct PackSlot {
    pack: std::sync::Arc<Pack>,
    r: usize,
    joined: bool,
}

impl Pack {
    /// A pack of `runs` runs sharing `training`'s settings on `device` (the autodiff device
    /// they train on); hand [`Pack::slot`]`(r)` to run r's thread.
    pub fn new(
        runs: usize,
        training: &crate::config::TrainingConfig,
        device: &Device,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            runs,
            training: training.clone(),
            device: device.clone(),
            state: std::sync::Mutex::new(PackState {
                joining: (0..runs).map(|_| None).collect(),
                trained: None,
                pending: vec![None; runs],
                lr: 0.0,
                results: vec![None; runs],
                active: vec![true; runs],
                generation: 0,
                broken: None,
            }),
            turn: std::sync::Condvar::new(),
        })
    }

    /// Run r's slot.
    pub fn slot(self: &std::sync::Arc<Self>, r: usize) -> PackSlot {
        assert!(r < self.runs, "a slot of the pack");
        PackSlot {
            pack: self.clone(),
            r,
            joined: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PackState> {
        // A run thread that panicked while holding the lock leaves a state as good as any: the
        // runs check their own results.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PackState {
    /// Whether every run still in the pack has joined / handed in this step's batch.
    fn all_joined(&self) -> bool {
        (0..self.active.len()).all(|r| !self.active[r] || self.joining[r].is_some())
    }

    fn all_pending(&self) -> bool {
        (0..self.active.len()).all(|r| !self.active[r] || self.pending[r].is_some())
    }

    /// Stacks the joined runs' models and optimizers (a slot whose run left before joining
    /// holds a copy of a joined run's).
    fn stack(&mut self, t: &crate::config::TrainingConfig) -> Result<()> {
        let Some(any) = self.joining.iter().position(Option::is_some) else {
            return Ok(());
        };
        let joined: Vec<&(Model, ModuleOptimizer)> = self
            .joining
            .iter()
            .map(|j| {
                j.as_ref()
                    .unwrap_or_else(|| self.joining[any].as_ref().unwrap())
            })
            .collect();
        let models: Vec<&Model> = joined.iter().map(|j| &j.0).collect();
        let pack = PackedTransformer::stack(&models);
        let ids: Vec<Vec<(u64, u64)>> = models.iter().map(|m| aligned_ids(&pack, m)).collect();
        let optims: Vec<(&ModuleOptimizer, Vec<(u64, u64)>)> = joined
            .iter()
            .zip(&ids)
            .map(|(j, ids)| (&j.1, ids.clone()))
            .collect();
        let optim = stack_optimizers(&optims, packed_optimizer(&pack, t))?;
        self.trained = Some(Trained {
            model: Some(pack),
            optim,
            optim_parts: None,
            ids,
        });
        self.joining = (0..self.active.len()).map(|_| None).collect();
        Ok(())
    }

    /// The packed step on the batches handed in.
    fn step(&mut self, t: &crate::config::TrainingConfig, device: &Device) {
        let any = (0..self.active.len())
            .find(|&r| self.pending[r].is_some())
            .expect("a step has a batch");
        let filler = self.pending[any].clone().unwrap_or_default();
        let batches: Vec<Vec<Example>> = (0..self.active.len())
            .map(|r| self.pending[r].take().unwrap_or_else(|| filler.clone()))
            .collect();
        let refs: Vec<Vec<&Example>> = batches.iter().map(|b| b.iter().collect()).collect();
        let trained = self
            .trained
            .as_mut()
            .expect("the pack is stacked before its steps");
        let model = trained
            .model
            .take()
            .expect("the pack is in place between steps");
        let (next, losses) =
            packed_train_step(model, &mut trained.optim, &refs, t, self.lr, device);
        trained.model = Some(next);
        trained.optim_parts = None;
        for (r, l) in losses.into_iter().enumerate() {
            self.results[r] = self.active[r].then_some(l);
        }
        self.generation += 1;
    }

    /// Stacks once every run still in the pack has joined; a failure breaks the pack.
    fn stack_when_joined(&mut self, t: &crate::config::TrainingConfig) {
        if self.trained.is_none() && self.broken.is_none() && self.all_joined() {
            if let Err(e) = self.stack(t) {
                self.broken = Some(e.to_string());
            }
        }
    }
}

impl PackSlot {
    fn broken(message: &str) -> Error {
        Error::Invalid {
            origin: "packed runs".into(),
            field: "pack".into(),
            message: message.to_string(),
        }
    }

    /// Hands in the run's model and optimizer at its first step and waits until every run of
    /// the pack has (the pack is stacked then).
    pub(crate) fn join(&mut self, model: Model, optim: ModuleOptimizer) -> Result<()> {
        let pack = &*self.pack;
        let mut st = pack.lock();
        st.joining[self.r] = Some((model, optim));
        self.joined = true;
        st.stack_when_joined(&pack.training);
        pack.turn.notify_all();
        while st.trained.is_none() && st.broken.is_none() {
            st = pack.turn.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        match &st.broken {
            Some(m) => Err(Self::broken(m)),
            None => Ok(()),
        }
    }

    /// Whether the run has joined its pack (from then on its weights live in the pack).
    pub(crate) fn joined(&self) -> bool {
        self.joined
    }

    /// One step of the run on `batch` at `lr` (the same for every run of the pack at a step):
    /// waits for the others' batches, then returns the run's examples' losses.
    pub(crate) fn step(&mut self, batch: Vec<Example>, lr: f64) -> Result<Vec<f64>> {
        let pack = &*self.pack;
        let mut st = pack.lock();
        if st.pending.iter().any(Option::is_some) && st.lr != lr {
            return Err(Self::broken(&format!(
                "the runs of a pack must share the learning-rate schedule: {lr} beside {}",
                st.lr
            )));
        }
        st.lr = lr;
        st.pending[self.r] = Some(batch);
        let generation = st.generation;
        if st.all_pending() {
            st.step(&pack.training, &pack.device);
            pack.turn.notify_all();
        }
        while st.generation == generation && st.broken.is_none() {
            st = pack.turn.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(m) = &st.broken {
            return Err(Self::broken(m));
        }
        Ok(st.results[self.r].take().unwrap_or_default())
    }

    /// Writes the run's current weights into its model `into` (ids kept).
    pub(crate) fn weights_into(&self, into: &mut Model) {
        let st = self.pack.lock();
        if let Some(model) = st.trained.as_ref().and_then(|t| t.model.as_ref()) {
            model.unstack_into(self.r, into);
        }
    }

    /// The run's own AdamW state, loaded into `fresh` (the optimizer [`optimizer`] builds for
    /// its model): what its checkpoint saves.
    pub(crate) fn optimizer(&self, fresh: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let mut st = self.pack.lock();
        let Some(t) = &mut st.trained else {
            return Err(Self::broken("the run has not joined its pack"));
        };
        if t.optim_parts.is_none() {
            t.optim_parts = Some(OptimizerParts::of(&t.optim)?);
        }
        let parts = t.optim_parts.as_ref().expect("read above");
        unstack_optimizer(parts, &t.ids[self.r], self.r, fresh)
    }
}

impl Drop for PackSlot {
    /// Leaves the pack: the others no longer wait for this run's batches (or its join).
    fn drop(&mut self) {
        let pack = &*self.pack;
        let mut st = pack.lock();
        st.active[self.r] = false;
        st.pending[self.r] = None;
        st.stack_when_joined(&pack.training);
        let waiting = st.pending.iter().any(Option::is_some);
        if st.trained.is_some() && waiting && st.all_pending() {
            st.step(&pack.training, &pack.device);
        }
        pack.turn.notify_all();
    }
}
