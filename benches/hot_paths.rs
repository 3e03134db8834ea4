//! Micro-benchmarks of hot paths that need no kernel or server: slice resolution, record codecs,
//! block keys. Run with `make bench` (`cargo bench`). Side-by-side numbers against juicefs come
//! from `scripts/bench_compare.py`, not from here.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use tidefs_meta::slice::{decode_all, encode_all, resolve, Slice};

/// A chunk written as `n` overlapping slices (a random-write pattern).
fn fragmented(n: u32) -> Vec<Slice> {
    (0..n)
        .map(|i| {
            let pos = (i.wrapping_mul(2_654_435_761) % (60 << 20)) & !4095;
            Slice {
                pos,
                id: u64::from(i) + 1,
                size: 1 << 20,
                off: 0,
                len: 1 << 20,
            }
        })
        .collect()
}

fn slices(c: &mut Criterion) {
    let mut g = c.benchmark_group("slice");
    for n in [1u32, 16, 256] {
        let recs = fragmented(n);
        g.bench_with_input(BenchmarkId::new("resolve", n), &recs, |b, r| {
            b.iter(|| resolve(black_box(r)))
        });
        let bytes = encode_all(&recs);
        g.bench_with_input(BenchmarkId::new("decode", n), &bytes, |b, r| {
            b.iter(|| decode_all(black_box(r)))
        });
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    c.bench_function("block_key", |b| {
        b.iter(|| {
            tidefs_chunk::block_key(
                black_box("myvol"),
                false,
                black_box(123_456_789),
                3,
                4 << 20,
            )
        })
    });
}

criterion_group!(benches, slices, keys);
criterion_main!(benches);
