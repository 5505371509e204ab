use criterion::{criterion_group, criterion_main, Criterion};
use jido_core::frame::{decode, encode, Compression, DecodeLimits};
use std::hint::black_box;

fn signal(i: usize) -> Vec<u8> {
    format!(
        "{{\"id\":\"{:08x}-0000-4000-8000-{:012x}\",\"source\":\"/agents/{}\",\"type\":\"order.item.added\",\
         \"time\":\"2026-11-26T12:00:00Z\",\"data\":{{\"sku\":\"SKU-{}\",\"qty\":{},\"price\":\"{}.99\",\
         \"currency\":\"EUR\",\"customer\":\"cust-{}\",\"warehouse\":\"wh-{}\",\"note\":\"standard delivery\"}}}}",
        i, i, i % 50, i, i % 7, i % 100, i % 1000, i % 3
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let entries: Vec<Vec<u8>> = (0..1000).map(signal).collect();
    let frame = encode(&entries, Compression::Lz4).unwrap();
    c.bench_function("encode 1000 signals lz4", |b| {
        b.iter(|| encode(black_box(&entries), Compression::Lz4).unwrap())
    });
    c.bench_function("decode 1000 signals lz4", |b| {
        b.iter(|| decode(black_box(&frame), DecodeLimits::default()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
