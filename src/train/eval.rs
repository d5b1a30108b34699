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

/// The log-probabilities `[n, vocab]` of every answer token of `batch` and the tokens `[n, 1]`
/// (one per example when every answer is one token, the model's fast path; else each example's
/// answer tokens in turn, teacher-forced).
fn answer_token_log_probs(
    model: &Model,
    batch: &[&Example],
    device: &Device,
) -> (Tensor<2>, Tensor<2, Int>) {
    let tokens = tokens_tensor(batch, device);
    let (lp, answers): (Tensor<2>, Vec<i64>) = if batch.iter().all(|e| e.answer_len == 1) {
        let positions: Vec<usize> = batch.iter().map(|e| e.answer_pos).collect();
        let answers = batch.iter().map(|e| i64::from(e.answer_token())).collect();
        (model.answer_log_probs(tokens, &positions), answers)
    } else {
        let at: Vec<(usize, usize)> = batch
            .iter()
            .enumerate()
            .flat_map(|(b, e)| (0..e.answer_len).map(move |j| (b, e.answer_pos + j - 1)))
            .collect();
        let answers = batch
            .iter()
            .flat_map(|e| e.answer_tokens().iter().map(|&t| i64::from(t)))
            .collect();
        (model.next_token_log_probs(tokens, &at), answers)
    };
    let n = answers.len();
    let answers = Tensor::<2, Int>::from_data(TensorData::new(answers, [n, 1]), device);
    (lp, answers)
}

/// Each example's mean over its answer tokens of `per_token` `[n]` (laid out as
/// [`answer_token_log_probs`] lays them): a `[batch, n]` averaging matrix times the column.
fn per_example_mean(per_token: Tensor<1>, batch: &[&Example], device: &Device) -> Tensor<1> {
    let n = per_token.dims()[0];
    if n == batch.len() {
        return per_token;
    }
    let mut m = vec![0f32; batch.len() * n];
    let mut column = 0;
    for (b, e) in batch.iter().enumerate() {
        for _ in 0..e.answer_len {
            m[b * n + column] = 1.0 / e.answer_len as f32;
            column += 1;
        }
    }
    let m = Tensor::<2>::from_data(TensorData::new(m, [batch.len(), n]), device);
    m.matmul(per_token.reshape([n, 1])).reshape([batch.len()])
}

/// Per example, whether all of its `answer_len` answer tokens are right, from `hit` laid out as
/// [`answer_token_log_probs`] lays the tokens (each example's slice consumed whole, whatever its
/// first miss).
fn every_token_right(hit: &[bool], batch: &[&Example]) -> Vec<bool> {
    let mut start = 0;
    batch
        .iter()
        .map(|e| {
            let own = &hit[start..start + e.answer_len];
            start += e.answer_len;
            own.iter().all(|&h| h)
        })
        .collect()
}

/// Each example's answer cross-entropy under `model` (the mean over its answer tokens) and whether
/// its greedy answer is right (every answer token, teacher-forced), in batches of 512 (one forward
/// each).
pub(crate) fn answer_scores(
    model: &Model,
    examples: &[&Example],
    device: &Device,
) -> (Vec<f64>, Vec<bool>) {
    const CHUNK: usize = 512;
    let mut nll = Vec::with_capacity(examples.len());
    let mut correct = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(CHUNK) {
        let (lp, answers) = answer_token_log_probs(model, chunk, device);
        let n = answers.dims()[0];
        let picked = lp.clone().gather(1, answers.clone()).reshape([n]);
        let hit: Vec<bool> = lp
            .argmax(1)
            .equal(answers)
            .reshape([n])
            .into_data()
            .iter::<bool>()
            .collect();
        let per_example = per_example_mean(picked.neg(), chunk, device);
        nll.extend(per_example.into_data().iter::<f64>());
        correct.extend(every_token_right(&hit, chunk));
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

/// Each example's training loss `[batch]`: the cross-entropy of its answer (the mean over its
/// answer tokens), or the mean next-token cross-entropy over its whole sequence.
pub fn example_losses(
    model: &Model,
    batch: &[&Example],
    kind: LossKind,
    device: &Device,
) -> Tensor<1> {
    match kind {
        LossKind::Full => {
            let tokens = tokens_tensor(batch, device);
            let [b, seq] = tokens.dims();
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
            let (lp, answers) = answer_token_log_probs(model, batch, device);
            let n = answers.dims()[0];
            per_example_mean(lp.gather(1, answers).reshape([n]).neg(), batch, device)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_right_only_when_each_of_its_own_tokens_is() {
        // Answers of 2, 1 and 3 tokens; hits laid out example after example:
        // [miss, hit | miss | hit, hit, hit] → wrong, wrong, right. A reader that stopped at the
        // first example's miss would take its second token (hit) for the second example's and
        // give wrong, right, wrong.
        let e = |answer_len| Example {
            skill: 1,
            tokens: vec![1; 6],
            answer_pos: 1,
            answer_len,
        };
        let (a, b, c) = (e(2), e(1), e(3));
        let hit = [false, true, false, true, true, true];
        assert_eq!(every_token_right(&hit, &[&a, &b, &c]), [false, false, true]);
        let all = [true; 6];
        assert_eq!(every_token_right(&all, &[&a, &b, &c]), [true, true, true]);
    }
}
