//! Micro-benchmarks of hot paths that need no kernel or server: slice resolution, record codecs,
//! block keys, metadata operations on SQLite and memkv volumes (and memkv under contention), a block read from the memory cache. Run with `make bench` (`cargo bench`). Side-by-side numbers against juicefs come
//! from `scripts/bench_compare.py`, not from here.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use tidefs_meta::slice::{decode_all, encode_all, resolve, Slice};
use tidefs_meta::Admin;

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

/// create + lookup + getattr of one file per iteration on a temporary SQLite volume and on
/// memkv: each engine's cost per operation without the kernel round trip.
fn metadata(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let sqlite = format!("sqlite3://{}/meta.db", dir.path().display());
    for (group, url) in [
        ("meta_sqlite", sqlite.as_str()),
        ("meta_memkv", "memkv://bench"),
    ] {
        engine_ops(c, group, url);
    }
    // TiKV through the real client and gRPC, against the stand-in (a test double, not TiKV:
    // what this measures is the client's and the protocol's cost, not a cluster's)
    if let Some(addr) = standin() {
        engine_ops(c, "meta_tikv_standin", &format!("tikv://{addr}/bench"));
    }
    contended(c);
}

/// The TiKV stand-in on a thread and runtime of its own; its address.
fn standin() -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Runtime::new() else {
            return;
        };
        rt.block_on(async {
            match tikv_standin::StandIn::start("127.0.0.1:0").await {
                Ok((_s, addr)) => {
                    let _ = tx.send(addr.to_string());
                    std::future::pending::<()>().await;
                }
                Err(e) => eprintln!("meta_tikv_standin: the stand-in did not start: {e}"),
            }
        });
    });
    rx.recv().ok()
}

fn engine_ops(c: &mut Criterion, group: &str, url: &str) {
    use tidefs_meta::{Ctx, FileType, Format, ROOT_INODE};
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return;
    };
    let meta = match rt.block_on(async {
        let m = tidefs_meta::open(url).await?;
        m.init(&Format::new("bench", "file", "/unused/"), false)
            .await?;
        m.load().await?;
        Ok::<_, tidefs_meta::Error>(m)
    }) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{group}: cannot set up the volume: {e}");
            return;
        }
    };
    let ctx = Ctx::root();
    let mut g = c.benchmark_group(group);
    let mut n = 0u64;
    g.bench_function("create", |b| {
        b.iter(|| {
            n += 1;
            let name = format!("c{n}");
            rt.block_on(meta.mknod(
                &ctx,
                ROOT_INODE,
                name.as_bytes(),
                FileType::File,
                0o644,
                0,
                0,
                b"",
            ))
        })
    });
    let _ = rt.block_on(meta.mknod(&ctx, ROOT_INODE, b"probe", FileType::File, 0o644, 0, 0, b""));
    g.bench_function("lookup", |b| {
        b.iter(|| rt.block_on(meta.lookup(&ctx, ROOT_INODE, black_box(b"probe"))))
    });
    g.bench_function("getattr", |b| {
        b.iter(|| rt.block_on(meta.getattr(black_box(ROOT_INODE))))
    });
    g.finish();
}

/// Creates in one directory by 2 clients (two engines over one memkv store) x 4 tasks each,
/// 8 creates per iteration; prints the conflict restarts per 1 000 transactions at the end.
fn contended(c: &mut Criterion) {
    use std::sync::Arc;
    use tidefs_meta::kv::{keys::Keys, mem::MemKv, KvMeta};
    use tidefs_meta::{Ctx, FileType, Format, Meta, ROOT_INODE};
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    else {
        return;
    };
    let store = Arc::new(MemKv::new());
    let clients: Vec<Arc<KvMeta>> = (0..2)
        .map(|_| Arc::new(KvMeta::over(store.clone(), Keys::new("b"), "memkv".into())))
        .collect();
    let ready = rt.block_on(async {
        clients[0]
            .init(&Format::new("bench", "file", "/unused/"), false)
            .await?;
        for m in &clients {
            m.load().await?;
        }
        Ok::<_, tidefs_meta::Error>(())
    });
    if ready.is_err() {
        return;
    }
    let ctx = Ctx::root();
    let mut n = 0u64;
    c.bench_function("meta_memkv/contended_create_2x4", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(async {
                let mut jobs = Vec::new();
                for (ci, m) in clients.iter().enumerate() {
                    for t in 0..4 {
                        let (m, ctx) = (m.clone(), ctx.clone());
                        let name = format!("n{n}-c{ci}-t{t}");
                        jobs.push(tokio::spawn(async move {
                            m.mknod(
                                &ctx,
                                ROOT_INODE,
                                name.as_bytes(),
                                FileType::File,
                                0o644,
                                0,
                                0,
                                b"",
                            )
                            .await
                        }));
                    }
                }
                for j in jobs {
                    let _ = j.await;
                }
            })
        })
    });
    let (txns, restarts) = clients.iter().fold((0, 0), |(t, r), m| {
        let s = m.txn_stats();
        (t + s.txns, r + s.restarts)
    });
    eprintln!(
        "meta_memkv/contended_create_2x4: {restarts} restarts in {txns} transactions ({:.1} per 1 000)",
        restarts as f64 * 1000.0 / txns.max(1) as f64
    );
}

/// A 4 MiB block read that the memory cache answers.
fn cached_block(c: &mut Criterion) {
    use tidefs_chunk::{ChunkStore, Compression, LocalDir, StoreConfig};
    let (Ok(rt), Ok(dir)) = (tokio::runtime::Runtime::new(), tempfile::tempdir()) else {
        return;
    };
    let Ok(bucket) = LocalDir::open(&dir.path().to_string_lossy()) else {
        return;
    };
    let store = ChunkStore::new(
        tidefs_chunk::Bucket::Local(bucket),
        StoreConfig {
            name: "bench".into(),
            block_size: 4 << 20,
            compression: Compression::None,
            hash_prefix: false,
            mem_cache_bytes: 64 << 20,
        },
    );
    let block = bytes::Bytes::from(vec![7u8; 4 << 20]);
    if rt.block_on(store.put_block(1, 0, block)).is_err() {
        return;
    }
    let _ = rt.block_on(store.read_block(1, 0, 4 << 20));
    c.bench_function("cached_block_read_4MiB", |b| {
        b.iter(|| rt.block_on(store.read_block(black_box(1), 0, 4 << 20)))
    });
}

criterion_group!(benches, slices, keys, metadata, cached_block);
criterion_main!(benches);
