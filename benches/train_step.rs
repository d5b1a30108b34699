//! One training step (forward, backward, global-norm clipping, AdamW) and one evaluation pass of
//! each preset's LEGO model at batch 32, on flex and, where an adapter exists, on wgpu.
//! `cargo bench --bench train_step`; docs/performance.md records the figures.

use burn::module::Module;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use skillit::config::Preset;
use skillit::device::{select, DeviceKind};
use skillit::synthetic::{stream_rng, Example, Purpose, ValidationSet};
use skillit::train::{evaluate, optimizer, train_step};

fn bench_train_step(c: &mut Criterion) {
    // The allocator as the binary sets it.
    skillit::device::keep_freed_pages();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20);
    let mut devices = vec![DeviceKind::Flex];
    // wgpu only where an adapter answers (a GPU, or lavapipe).
    if std::panic::catch_unwind(|| select(DeviceKind::Wgpu).map(|s| s.adapter))
        .is_ok_and(|r| r.is_ok())
    {
        devices.push(DeviceKind::Wgpu);
    }
    for kind in devices {
        for preset in [Preset::Laptop, Preset::Paper] {
            let config = preset.config("lego");
            let task = config.task.build().expect("preset task");
            let selected = select(kind).expect("device");
            let device = selected.device.clone().autodiff();
            let mut init = stream_rng(0, Purpose(99), 0);
            let mut model = config.model.init(task.vocab().len(), &mut init, &device);
            let mut optim = optimizer(&model, &config.training);
            let mut rng = stream_rng(0, Purpose::TRAIN, 1);
            let k = task.num_skills();
            let examples: Vec<Example> = (0..config.training.batch_size)
                .map(|i| task.example(1 + i % k, &mut rng))
                .collect();
            let batch: Vec<&Example> = examples.iter().collect();
            let name = format!("{}/{}", kind.as_str(), preset.as_str());
            group.bench_function(format!("{name}/step"), |b| {
                b.iter(|| {
                    let (m, loss) = train_step(
                        model.clone(),
                        &mut optim,
                        &batch,
                        &config.training,
                        1e-3,
                        &device,
                    );
                    model = m;
                    loss
                })
            });
            let validation = ValidationSet::standard(task.as_ref(), config.training.val_per_skill)
                .expect("validation set");
            let validation: Vec<Example> = validation.iter().cloned().collect();
            let plain = model.valid();
            group.bench_function(format!("{name}/eval"), |b| {
                b.iter(|| evaluate(&plain, &validation, k, &selected.device, 0))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_train_step);
criterion_main!(benches);
