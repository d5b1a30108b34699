//! Generation throughput: tokenized examples per second, LEGO (k = 5, chain) and addition (k = 3),
//! one core. Goal (issue 3): at least 1 M tokenized LEGO examples per second.
//!
//! `example`: one draw of the generator (names, bits, clause order, tokens).
//! `stream`: the deduplicated training stream (the generator plus the per-skill dedup and the
//! validation check), what a training run actually pays per example.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use skillit::synthetic::{stream_rng, Purpose, TaskSpec, TrainStream, ValidationSet};
use std::hint::black_box;

fn bench_generate(c: &mut Criterion) {
    let tasks = [
        (
            "lego",
            TaskSpec::Lego {
                k: 5,
                graph: Default::default(),
                dense: false,
                shuffled: false,
                shared_vocab: false,
            },
        ),
        (
            "addition",
            TaskSpec::Addition {
                k: 3,
                shared_vocab: false,
            },
        ),
    ];
    let mut group = c.benchmark_group("generate");
    for (name, spec) in tasks {
        let task = spec.build().expect("valid task");
        let k = task.num_skills();
        let batch = 10_000u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("{name}/example"), |b| {
            let mut rng = stream_rng(0, Purpose::TRAIN, 1);
            b.iter(|| {
                for i in 0..batch {
                    black_box(task.example(1 + (i as usize % k), &mut rng));
                }
            })
        });
        let validation = ValidationSet::standard(task.as_ref(), 100).expect("validation set");
        group.bench_function(format!("{name}/stream"), |b| {
            let mut seed = 0;
            b.iter_batched(
                || {
                    seed += 1;
                    TrainStream::new(task.as_ref(), seed, &validation)
                },
                |mut stream| {
                    for i in 0..batch {
                        black_box(stream.next(1 + (i as usize % k)).expect("room"));
                    }
                    stream
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_generate);
criterion_main!(benches);
