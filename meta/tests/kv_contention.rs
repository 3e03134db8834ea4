//! Hot-directory contention on the KV engine: two clients (two engines over one `memkv` store,
//! as two mounts over one TiKV cluster) with several tasks each create and remove entries in
//! one directory at once. Every operation must succeed (conflicts are retried inside the
//! engine, never surfaced), the directory must end empty and consistent, and the number of
//! restarts is reported per 1 000 transactions.

use std::sync::Arc;
use tidefs_meta::kv::{keys::Keys, mem::MemKv, KvMeta};
use tidefs_meta::{testkit, Admin, Ctx, FileType, Meta, ROOT_INODE};

const CLIENTS: usize = 2;
const TASKS: usize = 8;
const FILES: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_directory_loses_nothing_and_surfaces_no_conflict() {
    let store = Arc::new(MemKv::new());
    let clients: Vec<Arc<KvMeta>> = (0..CLIENTS)
        .map(|i| {
            Arc::new(KvMeta::over(
                store.clone(),
                Keys::new("hot"),
                format!("memkv://hot (client {i})"),
            ))
        })
        .collect();
    clients[0]
        .init(&testkit::test_format(), false)
        .await
        .expect("format");
    for c in &clients {
        c.load().await.expect("load");
    }
    let ctx = Ctx::root();
    let dir = clients[0]
        .mknod(&ctx, ROOT_INODE, b"hot", FileType::Dir, 0o755, 0, 0, b"")
        .await
        .expect("mkdir")
        .ino;
    testkit::churn_directory(&clients, dir, TASKS, FILES, 3)
        .await
        .expect("every operation succeeds");
    let listed = clients[1]
        .readdir(&ctx, dir, 0, 10_000, false)
        .await
        .expect("readdir");
    let kept = FILES - FILES.div_ceil(3);
    assert_eq!(listed.len(), CLIENTS * TASKS * kept);
    let problems = clients[0].check(false).await.expect("fsck");
    assert!(problems.is_empty(), "{problems:?}");
    let (txns, restarts) = clients.iter().fold((0, 0), |(t, r), c| {
        let s = c.txn_stats();
        (t + s.txns, r + s.restarts)
    });
    let per_1000 = restarts as f64 * 1000.0 / txns.max(1) as f64;
    eprintln!(
        "hot directory: {} creates, {} removes by {CLIENTS} clients x {TASKS} tasks: {txns} transactions, {restarts} restarts ({per_1000:.1} per 1 000)",
        CLIENTS * TASKS * FILES,
        CLIENTS * TASKS * FILES.div_ceil(3),
    );
    // each client serializes its own tasks per directory, so restarts come only from the
    // other client: far fewer than one per transaction
    assert!(
        per_1000 < 500.0,
        "{restarts} restarts in {txns} transactions"
    );
}

/// `--skip-dir-mtime` compares a directory's mtime with now: a directory whose mtime was set
/// to the far past or future still takes entries, and its times are then updated.
#[tokio::test]
async fn directories_with_extreme_mtimes_take_entries() {
    use tidefs_meta::{SetAttr, TimeSet, Timestamp};
    let m = Arc::new(KvMeta::over(
        Arc::new(MemKv::new()),
        Keys::new(""),
        "memkv://extreme".to_string(),
    ));
    m.init(&testkit::test_format(), false)
        .await
        .expect("format");
    m.load().await.expect("load");
    let ctx = Ctx::root();
    for (i, sec) in [i64::MIN, i64::MAX, -1].into_iter().enumerate() {
        let name = format!("d{i}");
        let d = testkit::mkdir(&*m, &ctx, ROOT_INODE, &name).await.ino;
        let at = Timestamp {
            sec,
            nsec: 999_999_999,
        };
        let set = SetAttr {
            mtime: Some(TimeSet::At(at)),
            ..SetAttr::default()
        };
        m.setattr(&ctx, d, &set).await.expect("utimes");
        m.mknod(&ctx, d, b"f", FileType::File, 0o644, 0, 0, b"")
            .await
            .expect("create in a directory with an extreme mtime");
        assert_ne!(
            m.getattr(d).await.expect("getattr").mtime,
            at,
            "mtime {sec} updated"
        );
    }
}
