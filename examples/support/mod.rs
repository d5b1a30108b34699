//! What the base-search examples share: the 8-layer, d_model 128, conv-4 model of
//! `results/base_search/configs/` with its weights, for evaluation.

use std::path::Path;

use burn::tensor::Device;
use skillit::device::{select, DeviceKind};
use skillit::model::{Model, ModelConfig};
use skillit::synthetic::Task;

/// The model of `task` (`layers` deep, `heads` heads; a prefix LM when `prefix_lm`) with the
/// weights in `weights`, on flex without autodiff (`skillit::pretrain::load_weights`), and the
/// device to evaluate it on.
pub fn load(
    weights: &str,
    task: &dyn Task,
    layers: usize,
    heads: usize,
    prefix_lm: bool,
) -> (Model, Device) {
    let selected = select(DeviceKind::Flex).unwrap();
    let config = ModelConfig {
        d_model: 128,
        n_layers: layers,
        n_heads: heads,
        d_ff: 512,
        dropout: 0.0,
        context: 64,
        conv_kernel: 4,
        prefix_lm,
        ..ModelConfig::default()
    };
    let model = skillit::pretrain::load_weights(&config, task, Path::new(weights), &selected)
        .expect("weights of this shape");
    (model, selected.device)
}

/// The clauses `(name, the word it refers to)` of a recall or LEGO text `Input: b = val v , … .
/// Output: …` (the fourth word) or a digit-chains text `Input: b = q + 5 , …` (the third), in
/// reading order, and its output.
#[allow(dead_code)] // not every example reads texts
pub fn clauses(text: &str) -> (Vec<(&str, &str)>, &str) {
    let (input, output) = text.split_once(" . Output: ").expect("an example");
    let clauses = input
        .trim_start_matches("Input: ")
        .split(" , ")
        .map(|c| {
            let w: Vec<&str> = c.split_whitespace().collect();
            match w.get(3) {
                Some(&"+") => (w[0], w[2]),
                _ => (w[0], w[3]),
            }
        })
        .collect();
    (clauses, output)
}
