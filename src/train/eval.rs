//! Per-skill evaluation (answer-token cross-entropy and greedy accuracy on the validation sets),
//! the curricula's difficulty scores, and each example's training loss.

use super::*;

/// The examples' tokens `[batch, longest]`, shorter rows padded on the right with id 0 (a padded
/// position is never read: attention is causal and the losses mask it).
pub(crate) fn tokens_tensor(examples: &[&Example], device: &Device) -> Tensor<2, Int> {
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
pub(crate) fn answer_scores(
    model: &Model,
    examples: &[&Example],
    device: &Device,
) -> (Vec<f64>, Vec<bool>) {
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
