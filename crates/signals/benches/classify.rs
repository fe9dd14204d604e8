//! Classification throughput on one core, over every sample in `events/` (SQS batches excluded).
//! Run: `cargo bench -p gameforge-signals --bench classify`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn samples() -> Vec<Vec<u8>> {
    gameforge_localaws::tools::event_samples().into_iter().map(|p| std::fs::read(p).expect("read sample")).collect()
}

fn bench(c: &mut Criterion) {
    let samples = samples();
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("every_sample_from_json", |b| {
        b.iter(|| {
            for sample in &samples {
                std::hint::black_box(gameforge_signals::classify_json(sample).expect("sample is an event"));
            }
        })
    });
    let parsed: Vec<_> =
        samples.iter().map(|s| gameforge_signals::EventEnvelope::from_json(s).expect("sample is an event")).collect();
    group.bench_function("every_sample_parsed", |b| {
        b.iter(|| {
            for event in &parsed {
                std::hint::black_box(gameforge_signals::classify(event));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
