//! Classification throughput on one core, over every sample in `events/` (SQS batches excluded).
//! Run: `cargo bench -p gameforge-signals --bench classify`.

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn samples() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "sqs" || c.as_os_str() == "expected"))
        .map(|p| std::fs::read(p).expect("read sample"))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("events dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
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
