//! One directory of N entries (`TIDEFS_BIG_DIR_N`, default 200 000; the figure is
//! taken with 1 000 000) on memkv and through the real tikv-client against the TiKV stand-in (a
//! test double, not TiKV): listed page by page as the mount lists it, without and with
//! attributes, every entry exactly once, and the heap the listing adds stays under a bound that
//! does not grow with N (the whole listing held at once would need far more at 1 000 000).
//!
//! The entries are written straight through the KV interface in transactions of 5 000 (as a
//! bulk load would), not created one by one: creating is measured elsewhere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tidefs_meta::kv::keys::{encode_attr, encode_entry, Keys};
use tidefs_meta::kv::store::KvStore;
use tidefs_meta::kv::{mem::MemKv, tikv::TikvStore, tikv::TikvUrl, KvMeta};
use tidefs_meta::{testkit, Admin, Attr, Ctx, FileType, Meta, Timestamp, ROOT_INODE};

/// Counts the bytes the whole test process has allocated (client, stand-in, runtime).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            grew(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// The count is of the whole process: the tests of this file take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the listing may add to the heap, whatever N is: a page of entries (4 096) with
/// attributes, the readdir cursors kept (16 384 names), the clients' buffers. Holding the
/// whole listing would take about 150 bytes per entry: 30 MiB at 200 000.
const LISTING_BOUND: isize = 16 << 20;

fn entries() -> usize {
    std::env::var("TIDEFS_BIG_DIR_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

async fn fill(store: &dyn KvStore, keys: &Keys, dir: u64, n: usize) {
    let now = Timestamp::now();
    let base = 1u64 << 32;
    for start in (0..n).step_by(5_000) {
        let mut t = store.begin().await.expect("begin");
        for i in start..(start + 5_000).min(n) {
            let ino = base + i as u64;
            let attr = Attr {
                ino,
                typ: FileType::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                atime: now,
                mtime: now,
                ctime: now,
                nlink: 1,
                length: 0,
                rdev: 0,
                parent: dir,
                flags: 0,
            };
            let name = format!("f{i:07}");
            t.put(
                keys.entry(dir, name.as_bytes()),
                encode_entry(FileType::File, ino),
            )
            .await
            .expect("put entry");
            t.put(keys.inode(ino), encode_attr(&attr))
                .await
                .expect("put attr");
        }
        t.commit().await.expect("commit");
    }
}

/// List `dir` in pages of 4 096; checks every entry comes once; returns the heap the
/// listing added at its peak.
async fn list(m: &Arc<KvMeta>, dir: u64, n: usize, plus: bool) -> isize {
    let ctx = Ctx::root();
    let mut seen = vec![false; n];
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let (mut after, mut count) = (0u64, 0usize);
    loop {
        let page = m
            .readdir(&ctx, dir, after, 4096, plus)
            .await
            .expect("readdir");
        let Some(last) = page.last() else { break };
        after = last.cursor;
        for e in &page {
            let name = std::str::from_utf8(&e.name).expect("utf-8 name");
            let i: usize = name[1..].parse().expect("f<number>");
            assert!(!seen[i], "{name} listed twice");
            seen[i] = true;
            assert_eq!(e.attr.is_some(), plus, "{name}: attributes");
            count += 1;
        }
    }
    assert_eq!(count, n, "entries listed");
    PEAK.load(Ordering::Relaxed) - base
}

async fn big_directory(engine: &str, store: Arc<dyn KvStore>, keys: Keys) {
    let n = entries();
    let m = Arc::new(KvMeta::over(
        store.clone(),
        keys.clone(),
        engine.to_string(),
    ));
    m.init(&testkit::test_format(), false)
        .await
        .expect("format");
    m.load().await.expect("load");
    let dir = m
        .mknod(
            &Ctx::root(),
            ROOT_INODE,
            b"big",
            FileType::Dir,
            0o755,
            0,
            0,
            b"",
        )
        .await
        .expect("mkdir")
        .ino;
    let t = Instant::now();
    fill(store.as_ref(), &keys, dir, n).await;
    let filled = t.elapsed();
    for plus in [false, true] {
        let t = Instant::now();
        let added = list(&m, dir, n, plus).await;
        eprintln!(
            "{engine}: {n} entries (written in {:.1} s); listed {} in {:.2} s; the listing added at most {:.1} MiB to the heap",
            filled.as_secs_f64(),
            if plus { "with attributes" } else { "names only" },
            t.elapsed().as_secs_f64(),
            added as f64 / 1048576.0
        );
        assert!(
            added < LISTING_BOUND,
            "{engine}: listing {n} entries added {added} bytes to the heap"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memkv_lists_a_big_directory_in_bounded_memory() {
    let _turn = ONE_AT_A_TIME.lock().await;
    big_directory("memkv", Arc::new(MemKv::new()), Keys::new("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_standin_lists_a_big_directory_in_bounded_memory() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (_standin, addr) = tikv_standin::StandIn::start("127.0.0.1:0")
        .await
        .expect("stand-in");
    let url = TikvUrl::parse(&format!("{addr}/big")).expect("url");
    let store = TikvStore::connect(&url).await.expect("connect");
    big_directory("tikv stand-in", Arc::new(store), Keys::new("big")).await;
}
