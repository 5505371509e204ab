use criterion::{criterion_group, criterion_main, Criterion};
use jido_core::tree::{plan, Member, DEFAULT_FANOUT};
use std::hint::black_box;

/// 1,000 members; every 20th unhealthy.
fn members(labelled: bool) -> Vec<Member<String>> {
    (0..1000)
        .map(|i| {
            let healthy = i % 20 != 7;
            if labelled {
                // 5 regions of 3 zones each, interleaved in the input.
                let region = format!("region-{}", i % 5);
                let zone = format!("zone-{}", (i / 5) % 3);
                Member::new(Some(region), Some(zone), healthy)
            } else {
                Member::new(None, None, healthy)
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let flat = members(false);
    let labelled = members(true);
    c.bench_function("plan 1000 nodes unlabelled", |b| {
        b.iter(|| plan(black_box(&flat), 0, DEFAULT_FANOUT).unwrap())
    });
    c.bench_function("plan 1000 nodes 5 regions x 3 zones", |b| {
        b.iter(|| plan(black_box(&labelled), 0, DEFAULT_FANOUT).unwrap())
    });
    // Worst shape for the region logic: the root alone in its region and
    // 999 single-node regions, so almost every head overflows.
    let scattered: Vec<Member<u32>> = (0..1000)
        .map(|i| Member::new(Some(i), None, true))
        .collect();
    c.bench_function("plan 1000 nodes 1000 regions", |b| {
        b.iter(|| plan(black_box(&scattered), 0, DEFAULT_FANOUT).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
