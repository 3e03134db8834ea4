//! VFS tests without a kernel: the real SQLite engine and the real local-directory store in a
//! temporary directory, driven through `Vfs` the way the FUSE adapter drives it.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use tidefs_meta::{Ctx, CHUNK_SIZE};

struct Fixture {
    vfs: Vfs,
    _dir: tempfile::TempDir,
}

async fn fixture(block_kib: u32, compression: &str, buffer_size: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).expect("bucket");
    let url = format!("sqlite3://{}/meta.db", dir.path().display());
    let meta = tidefs_meta::open(&url).await.expect("open");
    let mut f = Format::new("vfsvol", "file", &format!("{}/", bucket.display()));
    f.block_size_kib = block_kib;
    f.compression = compression.into();
    f.trash_days = 0;
    meta.init(&f, false).await.expect("format");
    let f = meta.load().await.expect("load");
    let store = ChunkStore::new(
        tidefs_chunk::open_bucket("file", &f.bucket).expect("bucket"),
        tidefs_chunk::StoreConfig {
            name: f.name.clone(),
            block_size: f.block_size() as u32,
            compression: tidefs_chunk::Compression::parse(&f.compression).expect("codec"),
            hash_prefix: false,
            mem_cache_bytes: 4 << 20,
        },
    );
    let cfg = VfsConfig {
        buffer_size,
        ..VfsConfig::default()
    };
    Fixture {
        vfs: Vfs::new(meta, store, f, cfg),
        _dir: dir,
    }
}

fn ctx() -> Ctx {
    Ctx::root()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add((i % 251) as u8))
        .collect()
}

#[tokio::test]
async fn write_read_close_reopen() {
    let fx = fixture(64, "none", 64 << 20).await;
    let v = &fx.vfs;
    let (fh, a) = v
        .create(&ctx(), ROOT_INODE, b"f", 0o644, 0)
        .await
        .expect("create");
    let data = pattern(7, 300_000);
    assert_eq!(v.write(fh, 0, &data).await.expect("write"), 300_000);
    // size is visible before any commit
    assert_eq!(v.getattr(a.ino).await.expect("attr").length, 300_000);
    // and reads see the buffered data
    assert_eq!(
        v.read(fh, 1000, 5000).await.expect("read"),
        data[1000..6000].to_vec()
    );
    v.release(fh).await.expect("close");
    let (fh2, a2, _) = v.open(&ctx(), a.ino, false).await.expect("open");
    assert_eq!(a2.length, 300_000);
    assert_eq!(v.read(fh2, 0, 400_000).await.expect("read all"), data);
    assert!(v.read(fh2, 300_000, 10).await.expect("eof").is_empty());
    v.release(fh2).await.expect("close");
}

#[tokio::test]
async fn holes_read_as_zeros_across_chunks() {
    let fx = fixture(64, "none", 64 << 20).await;
    let v = &fx.vfs;
    let (fh, _) = v
        .create(&ctx(), ROOT_INODE, b"sparse", 0o644, 0)
        .await
        .expect("create");
    let off = CHUNK_SIZE - 10;
    v.write(fh, off, b"0123456789abcdefghij")
        .await
        .expect("write across chunk boundary");
    v.flush(fh).await.expect("flush");
    assert_eq!(
        v.read(fh, off - 5, 30).await.expect("read"),
        b"\0\0\0\0\x000123456789abcdefghij\0\0\0\0\0"[..25].to_vec()
    );
    assert_eq!(v.read(fh, 0, 100).await.expect("hole"), vec![0u8; 100]);
    v.release(fh).await.expect("close");
}

#[tokio::test]
async fn compressed_volumes_round_trip() {
    for codec in ["lz4", "zstd"] {
        let fx = fixture(64, codec, 64 << 20).await;
        let v = &fx.vfs;
        let (fh, _) = v
            .create(&ctx(), ROOT_INODE, b"z", 0o644, 0)
            .await
            .expect("create");
        let data = pattern(3, 200_000);
        v.write(fh, 0, &data).await.expect("write");
        v.write(fh, 70_000, b"overwrite").await.expect("overwrite");
        v.release(fh).await.expect("close");
        let ino = v
            .lookup(&ctx(), ROOT_INODE, b"z")
            .await
            .expect("lookup")
            .ino;
        let (fh, _, _) = v.open(&ctx(), ino, false).await.expect("open");
        let got = v.read(fh, 0, 200_000).await.expect("read");
        let mut want = data.clone();
        want[70_000..70_009].copy_from_slice(b"overwrite");
        assert_eq!(got, want, "{codec}");
        v.release(fh).await.expect("close");
    }
}

#[tokio::test]
async fn buffer_budget_bounds_memory() {
    // 8 MiB budget, 64 KiB blocks: a 40 MiB file never holds much more than the budget
    let fx = fixture(64, "none", 8 << 20).await;
    let v = &fx.vfs;
    let (fh, _) = v
        .create(&ctx(), ROOT_INODE, b"big", 0o644, 0)
        .await
        .expect("create");
    let piece = pattern(9, 1 << 20);
    let mut peak = 0;
    for i in 0..40u64 {
        // random-ish order keeps data in many slices
        let at = ((i * 17) % 40) << 20;
        v.write(fh, at, &piece).await.expect("write");
        peak = peak.max(v.buffered_bytes());
    }
    assert!(peak <= (8 << 20) + (2 << 20), "peak buffered {peak}");
    v.release(fh).await.expect("close");
    assert_eq!(v.buffered_bytes(), 0);
}

#[tokio::test]
async fn read_only_vfs_refuses_writes() {
    let fx = fixture(64, "none", 64 << 20).await;
    let mut cfg = fx.vfs.config().clone();
    cfg.read_only = true;
    let ro = Vfs::new(
        fx.vfs.meta().clone(),
        fx.vfs.store.clone(),
        fx.vfs.format().clone(),
        cfg,
    );
    let e = ro
        .create(&ctx(), ROOT_INODE, b"x", 0o644, 0)
        .await
        .expect_err("read-only");
    assert_eq!(e.meta_kind(), Some(ErrorKind::ReadOnly));
}

/// Create `name` in the root; its handle.
async fn new_file(v: &Vfs, name: &[u8]) -> u64 {
    v.create(&ctx(), ROOT_INODE, name, 0o644, 0)
        .await
        .expect("create")
        .0
}

#[tokio::test]
async fn copy_file_range_copies() {
    let fx = fixture(64, "none", 64 << 20).await;
    let v = &fx.vfs;
    let a = new_file(v, b"a").await;
    let b = new_file(v, b"b").await;
    let data = pattern(5, 150_000);
    v.write(a, 0, &data).await.expect("write");
    assert_eq!(
        v.copy_file_range(a, 1000, b, 10, 100_000)
            .await
            .expect("copy"),
        100_000
    );
    let got = v.read(b, 0, 200_000).await.expect("read");
    assert_eq!(got.len(), 100_010);
    assert_eq!(&got[10..], &data[1000..101_000]);
    // writes still buffered on either side land before the copy, and nothing of them after it
    let late = pattern(9, 300_000);
    v.write(b, 0, &late).await.expect("buffered write to b");
    v.write(a, 0, &late[..5000])
        .await
        .expect("buffered write to a");
    assert_eq!(
        v.copy_file_range(a, 0, b, 100, 20_000)
            .await
            .expect("copy over buffered writes"),
        20_000
    );
    let mut want = late.clone();
    want[100..5100].copy_from_slice(&late[..5000]);
    want[5100..20_100].copy_from_slice(&data[5000..20_000]);
    v.flush(b).await.expect("flush");
    assert!(v.read(b, 0, 400_000).await.expect("read") == want);
}

/// A source fragmented into more runs per chunk than a copy may add is copied as data: the
/// copy reads the same, and its chunk holds a few fresh records, not hundreds of shared ones.
#[tokio::test]
async fn copy_file_range_of_a_fragmented_source_copies_data() {
    let fx = fixture(64, "none", 64 << 20).await;
    let v = &fx.vfs;
    let a = new_file(v, b"a").await;
    let b = new_file(v, b"b").await;
    // one slice, then 300 records over windows of it (as another client's small overwrites
    // with the same bytes would leave them): the bytes stay, the chunk resolves into ~600 runs
    let want = pattern(3, 60_000);
    v.write(a, 0, &want).await.expect("write");
    v.flush(a).await.expect("flush");
    let (ia, ib) = (v.handle(a).expect("a").ino, v.handle(b).expect("b").ino);
    let base = v.meta.read_chunk(ia, 0).await.expect("a's records")[0];
    for i in 0..300u32 {
        let w = tidefs_meta::Slice {
            pos: i * 200 + 50,
            off: i * 200 + 50,
            len: 100,
            ..base
        };
        v.meta
            .write_slice(ia, 0, w, tidefs_meta::Timestamp::now(), &[])
            .await
            .expect("record");
    }
    let n = v
        .copy_file_range(a, 0, b, 0, want.len() as u64)
        .await
        .expect("copy");
    assert_eq!(n, want.len() as u64);
    v.flush(b).await.expect("flush");
    let got = v.read(b, 0, 1 << 20).await.expect("read");
    assert!(got == want[..n as usize], "the copy differs");
    let records = v.meta.read_chunk(ib, 0).await.expect("b's records");
    assert!(
        records.len() < 10,
        "{} records: shared, not copied",
        records.len()
    );
    // a compact source is shared: the copy's records name a's slices
    let c = new_file(v, b"c").await;
    v.copy_file_range(b, 0, c, 0, n).await.expect("copy b");
    let ic = v.handle(c).expect("c").ino;
    let ids = |r: Vec<tidefs_meta::Slice>| {
        r.into_iter()
            .filter(|s| s.id != 0)
            .map(|s| s.id)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        ids(v.meta.read_chunk(ic, 0).await.expect("c's records")),
        ids(records)
    );
}

#[derive(Debug, Clone)]
enum Op {
    Write { off: u64, len: usize, seed: u8 },
    Truncate(u64),
    Flush,
    Reopen,
    Read { off: u64, len: u32 },
}

/// Offsets in two windows: the start of the file and around the first chunk boundary.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..300_000,
        (CHUNK_SIZE - 150_000)..(CHUNK_SIZE + 150_000)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (offset(), 1usize..140_000, any::<u8>()).prop_map(|(off, len, seed)| Op::Write { off, len, seed }),
        1 => offset().prop_map(Op::Truncate),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        3 => (offset(), 1u32..200_000).prop_map(|(off, len)| Op::Read { off, len }),
    ]
}

/// The model: written bytes by offset, and the length.
#[derive(Default)]
struct Model {
    bytes: BTreeMap<u64, u8>,
    len: u64,
}

impl Model {
    fn read(&self, off: u64, len: u32) -> Vec<u8> {
        if off >= self.len {
            return Vec::new();
        }
        let end = (off + u64::from(len)).min(self.len);
        (off..end)
            .map(|i| self.bytes.get(&i).copied().unwrap_or(0))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of writes, truncates, flushes, reopens reads back what a byte array would.
    #[test]
    fn data_path_matches_byte_model(ops in proptest::collection::vec(op(), 1..25), block_kib in prop_oneof![Just(64u32), Just(128u32)]) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let fx = fixture(block_kib, "none", 64 << 20).await;
            let v = &fx.vfs;
            let (mut fh, a) = v.create(&ctx(), ROOT_INODE, b"p", 0o644, 0).await.expect("create");
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Write { off, len, seed } => {
                        let data = pattern(seed, len);
                        v.write(fh, off, &data).await.expect("write");
                        for (i, b) in data.iter().enumerate() {
                            m.bytes.insert(off + i as u64, *b);
                        }
                        m.len = m.len.max(off + len as u64);
                    }
                    Op::Truncate(len) => {
                        v.setattr(&ctx(), a.ino, &SetAttr::default(), Some(len)).await.expect("truncate");
                        m.bytes.retain(|k, _| *k < len);
                        m.len = len;
                    }
                    Op::Flush => v.flush(fh).await.expect("flush"),
                    Op::Reopen => {
                        v.release(fh).await.expect("release");
                        fh = v.open(&ctx(), a.ino, true).await.expect("open").0;
                    }
                    Op::Read { off, len } => {
                        let got = v.read(fh, off, len).await.expect("read");
                        assert_eq!(got, m.read(off, len), "read {off}+{len}");
                    }
                }
                assert_eq!(v.getattr(a.ino).await.expect("attr").length, m.len);
            }
            v.release(fh).await.expect("release");
            let (fh, _, _) = v.open(&ctx(), a.ino, false).await.expect("open");
            for (off, len) in [(0u64, 300_000u32), (CHUNK_SIZE - 150_000, 300_000)] {
                assert_eq!(v.read(fh, off, len).await.expect("final read"), m.read(off, len));
            }
        });
    }
}
