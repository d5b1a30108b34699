//! The mixture update of each method: one round's decision (the mixture, or the curricula's
//! ordering of a scored pool) for LEGO k = 5 in pre-training, after 120 evaluations (a paper run's
//! history at evaluation every 50 steps). `cargo bench --profile dev --bench methods`;
//! docs/performance.md records the figures.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use skillit::method::{Evaluation, MethodSpec, Observation, ScoredPool};

fn bench_methods(c: &mut Criterion) {
    let k = 5;
    let task = skillit::synthetic::Lego::new(k, Default::default()).expect("LEGO k = 5");
    let history: Vec<Evaluation> = (0..=120u64)
        .map(|i| Evaluation {
            step: 50 * i,
            loss: (0..k)
                .map(|s| 0.7 / (1.0 + (i + s as u64) as f64 * 0.01))
                .collect(),
            accuracy: (0..k)
                .map(|s| (0.5 + 0.004 * (i + s as u64) as f64).min(1.0))
                .collect(),
        })
        .collect();
    let train_skills: Vec<usize> = (1..=k).collect();
    let observation = Observation {
        step: 6000,
        round: 5,
        num_skills: k,
        train_skills: &train_skills,
        steps_per_round: 1000,
        total_steps: 6000,
        batch_size: 32,
        evaluations: &history,
        train_losses: &[],
    };
    // A paper run's pool: 6,000 steps × 32 examples, stratified, with losses.
    let n = 6000 * 32;
    let pool = ScoredPool {
        skills: (0..n).map(|i| 1 + i % k).collect(),
        losses: (0..n)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect(),
        answers: (0..n).map(|i| (i % 10) as u32).collect(),
        rng: SeedableRng::seed_from_u64(0),
    };
    let mut group = c.benchmark_group("method_update");
    // `random` is `fixed` with the paper's weights; target_only needs fine-tuning's target.
    for name in skillit::method::NAMES.iter().filter(|n| **n != "random") {
        let (setting, target) = match *name {
            "target_only" => ("finetune", Some(3)),
            _ => ("pretrain", None),
        };
        let spec = MethodSpec::from_name(name, k, "lego").expect("a registered method");
        let mut method = spec.build(&task, setting, target).expect("builds");
        if method.wants_pool() {
            method.set_pool(pool.clone());
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        group.bench_function(*name, |b| {
            b.iter(|| method.plan(&observation, 1000 * 32, &mut rng))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_methods);
criterion_main!(benches);
