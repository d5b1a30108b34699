//! The plateau of docs/defaults.md: addition's ones digit, (a0 + b0) mod 10, trained alone from
//! scratch (d_model 64 × 2 layers, answer loss, constant lr, batch 32 on flex), printing the mean
//! training loss every 100 steps. It sits at ln 10 ≈ 2.30 for about 1,500 steps at lr 1e-3.
//! `cargo run --example plateau_addition [LR]`

use skillit::config::{LossKind, TrainingConfig};
use skillit::device::{select, DeviceKind};
use skillit::model::ModelConfig;
use skillit::synthetic::{stream_rng, Example, Purpose, TaskSpec};
use skillit::train::{optimizer, train_step};

fn main() {
    let task = TaskSpec::Addition {
        k: 3,
        shared_vocab: false,
    }
    .build()
    .unwrap();
    let device = select(DeviceKind::Flex).unwrap().device.autodiff();
    let mut init = stream_rng(0, Purpose(99), 0);
    let mut model = ModelConfig {
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        d_ff: 256,
        dropout: 0.0,
        context: 32,
        ..ModelConfig::default()
    }
    .init(task.vocab().len(), &mut init, &device);
    let t = TrainingConfig {
        loss: LossKind::Answer,
        ..TrainingConfig::default()
    };
    let mut optim = optimizer(&model, &t);
    let mut rng = stream_rng(0, Purpose::TRAIN, 1);
    let lr: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1e-3);
    let mut avg = 0.0;
    for step in 0..1500 {
        let ex: Vec<Example> = (0..32).map(|_| task.example(1, &mut rng)).collect();
        let batch: Vec<&Example> = ex.iter().collect();
        let (m, loss) = train_step(model, &mut optim, &batch, &t, lr, &device);
        model = m;
        avg += loss / 100.0;
        if step % 100 == 99 {
            println!("step {} loss {:.4}", step + 1, avg);
            avg = 0.0;
        }
    }
}
