//! What the base-search examples share: loading the 8-layer, d_model 128, conv-4 model of
//! `results/base_search/configs/` from its weights, for evaluation.

use burn::module::Module;
use burn::tensor::Device;
use skillit::device::{select, DeviceKind};
use skillit::model::{Model, ModelConfig};
use skillit::synthetic::{stream_rng, Purpose};

/// The model (`layers` deep, `heads` heads; a prefix LM when `prefix_lm`) with the weights in
/// `weights`, on flex, and the device to evaluate it on. It is loaded on the autodiff device and
/// returned without autodiff: on the autodiff device every forward's graph stays in memory.
pub fn load(
    weights: &str,
    vocab: usize,
    layers: usize,
    heads: usize,
    prefix_lm: bool,
) -> (Model, Device) {
    let device = select(DeviceKind::Flex).unwrap().device;
    let model = ModelConfig {
        d_model: 128,
        n_layers: layers,
        n_heads: heads,
        d_ff: 512,
        dropout: 0.0,
        context: 64,
        conv_kernel: 4,
        prefix_lm,
        ..ModelConfig::default()
    }
    .init(
        vocab,
        &mut stream_rng(0, Purpose(99), 0),
        &device.clone().autodiff(),
    )
    .try_load_file(weights)
    .expect("weights of this shape")
    .valid();
    (model, device)
}
