//! The TiKV engine through the real `tikv-client` against the protocol-level stand-in (a test
//! double of PD + TiKV, not TiKV): injected write conflicts, region errors and a lock left by a
//! dead transaction are ridden out without surfacing errors; a hot directory shared by two
//! clients loses nothing; the GC safe point advances.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tidefs_meta::kv::{keys::Keys, tikv::TikvStore, tikv::TikvUrl, KvMeta, DEFAULT_SKIP_DIR_MTIME};
use tidefs_meta::{testkit, Admin, Ctx, ErrorKind, FileType, Meta, ROOT_INODE};
use tikv_standin::StandIn;

async fn client(addr: &str, vol: &str) -> Arc<KvMeta> {
    let url = TikvUrl::parse(&format!("{addr}/{vol}?gc-interval=1s")).expect("url");
    let store = TikvStore::connect(&url).await.expect("connect");
    Arc::new(KvMeta::over(
        Arc::new(store),
        Keys::new(vol),
        format!("tikv://{addr}/{vol}"),
    ))
}

async fn volume(addr: &str, vol: &str) -> Arc<KvMeta> {
    let m = client(addr, vol).await;
    m.init(&testkit::test_format(), false)
        .await
        .expect("format");
    m.load().await.expect("load");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injected_conflicts_and_region_errors_are_retried() {
    let (standin, addr) = StandIn::start("127.0.0.1:0").await.expect("stand-in");
    let m = volume(&addr.to_string(), "faults").await;
    let ctx = Ctx::root();
    standin.inject_write_conflicts(5);
    m.mknod(&ctx, ROOT_INODE, b"a", FileType::Dir, 0o755, 0, 0, b"")
        .await
        .expect("mkdir through 5 write conflicts");
    let (_, conflicts) = standin.counts();
    assert!(conflicts >= 5, "{conflicts} conflicts answered");
    assert!(m.txn_stats().restarts >= 5, "{:?}", m.txn_stats());
    standin.inject_region_errors(5);
    m.mknod(&ctx, ROOT_INODE, b"b", FileType::File, 0o644, 0, 0, b"")
        .await
        .expect("create through 5 region errors");
    assert_eq!(
        m.lookup(&ctx, ROOT_INODE, b"b").await.expect("lookup").typ,
        FileType::File
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_left_by_a_dead_transaction_is_resolved() {
    let (standin, addr) = StandIn::start("127.0.0.1:0").await.expect("stand-in");
    let m = volume(&addr.to_string(), "locks").await;
    let ctx = Ctx::root();
    let d = testkit::mkdir(&*m, &ctx, ROOT_INODE, "d").await.ino;
    // a transaction that prewrote the directory's attributes and died
    standin.leave_lock(&Keys::new("locks").inode(d), 1500);
    let started = Instant::now();
    m.mknod(&ctx, d, b"f", FileType::File, 0o644, 0, 0, b"")
        .await
        .expect("create under a dead lock");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(30), "waited {waited:?}");
    assert_eq!(m.getattr(d).await.expect("getattr").typ, FileType::Dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_directory_shared_by_two_clients_loses_nothing() {
    let (standin, addr) = StandIn::start("127.0.0.1:0").await.expect("stand-in");
    let addr = addr.to_string();
    let a = volume(&addr, "hot").await;
    let b = client(&addr, "hot").await;
    b.load().await.expect("load");
    let ctx = Ctx::root();
    // first with every create writing the directory's times, then with the default
    // --skip-dir-mtime (100 ms)
    for (round, skip) in [Duration::ZERO, DEFAULT_SKIP_DIR_MTIME]
        .into_iter()
        .enumerate()
    {
        a.set_skip_dir_mtime(skip);
        b.set_skip_dir_mtime(skip);
        let before = (a.txn_stats(), b.txn_stats(), standin.counts());
        let dir = testkit::mkdir(&*a, &ctx, ROOT_INODE, &format!("hot{round}"))
            .await
            .ino;
        let (tasks, files): (usize, usize) = (4, 40);
        testkit::churn_directory(&[a.clone(), b.clone()], dir, tasks, files, 4)
            .await
            .expect("every operation succeeds");
        let listed = b
            .readdir(&ctx, dir, 0, 10_000, false)
            .await
            .expect("readdir");
        assert_eq!(listed.len(), 2 * tasks * (files - files.div_ceil(4)));
        assert!(a.check(false).await.expect("fsck").is_empty());
        let (sa, sb, (p, c)) = (a.txn_stats(), b.txn_stats(), standin.counts());
        let txns = sa.txns + sb.txns - before.0.txns - before.1.txns;
        let restarts = sa.restarts + sb.restarts - before.0.restarts - before.1.restarts;
        let (prewrites, conflicts) = (p - before.2 .0, c - before.2 .1);
        eprintln!(
            "tikv stand-in, hot directory, 2 clients x {tasks} tasks, --skip-dir-mtime {skip:?}: {txns} transactions, {restarts} restarts ({:.1} per 1 000); {prewrites} prewrites, {conflicts} answered with a write conflict",
            restarts as f64 * 1000.0 / txns.max(1) as f64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_advances_the_gc_safe_point() {
    let (standin, addr) = StandIn::start("127.0.0.1:0").await.expect("stand-in");
    let m = volume(&addr.to_string(), "gc").await;
    assert_eq!(standin.gc_safe_point(), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    m.cleanup().await.expect("cleanup");
    assert!(standin.gc_safe_point() > 0, "the safe point moved");
}

/// A create in a directory whose mtime is fresh leaves the directory's attributes unwritten
/// (`--skip-dir-mtime`); the directory guards must still make it conflict with an rmdir of
/// that directory running at the same time on another client. Either the rmdir sees the
/// entry (not empty) or the create sees the directory gone; never both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rmdir_racing_a_create_leaves_no_orphan() {
    let (_standin, addr) = StandIn::start("127.0.0.1:0").await.expect("stand-in");
    let addr = addr.to_string();
    let a = volume(&addr, "race").await;
    let b = client(&addr, "race").await;
    b.load().await.expect("load");
    let ctx = Ctx::root();
    let (mut removed, mut refused) = (0, 0);
    for round in 0..60 {
        let name = format!("d{round}");
        let d = testkit::mkdir(&*a, &ctx, ROOT_INODE, &name).await.ino;
        let (made, gone) = tokio::join!(
            b.mknod(&ctx, d, b"f", FileType::File, 0o644, 0, 0, b""),
            a.rmdir(&ctx, ROOT_INODE, name.as_bytes()),
        );
        match (made, gone) {
            (Ok(_), Ok(())) => panic!("round {round}: create and rmdir both succeeded"),
            (Ok(_), Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::NotEmpty, "round {round}: {e}");
                refused += 1;
            }
            (Err(e), Ok(())) => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "round {round}: {e}");
                removed += 1;
            }
            (Err(c), Err(r)) => panic!("round {round}: create: {c}; rmdir: {r}"),
        }
    }
    let problems = a.check(false).await.expect("fsck");
    assert!(problems.is_empty(), "{problems:?}");
    eprintln!(
        "rmdir racing a create, 60 rounds: {removed} removed first, {refused} refused as not empty"
    );
}

/// getattr, lookup and the other point reads ask PD for no timestamp: they read the latest
/// committed value at the region leader. A lock in the way, or a region error, makes them
/// fall back to a transaction, which resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_reads_take_no_timestamp() {
    let (standin, addr) = StandIn::start("127.0.0.1:0").await.expect("stand-in");
    let url = TikvUrl::parse(&format!("{addr}/latest")).expect("url");
    let store = Arc::new(TikvStore::connect(&url).await.expect("connect"));
    let m = Arc::new(KvMeta::over(
        store.clone(),
        Keys::new("latest"),
        format!("tikv://{addr}/latest"),
    ));
    m.init(&testkit::test_format(), false)
        .await
        .expect("format");
    m.load().await.expect("load");
    let ctx = Ctx::root();
    let d = testkit::mkdir(&*m, &ctx, ROOT_INODE, "d").await.ino;
    let f = m
        .mknod(&ctx, d, b"f", FileType::File, 0o644, 0, 0, b"")
        .await
        .expect("create")
        .ino;
    let (tso, (served, _)) = (standin.timestamp_requests(), store.latest_reads());
    for _ in 0..10 {
        assert_eq!(m.getattr(f).await.expect("getattr").ino, f);
        assert_eq!(m.lookup(&ctx, d, b"f").await.expect("lookup").ino, f);
    }
    assert_eq!(standin.timestamp_requests(), tso, "timestamps asked for");
    assert!(
        store.latest_reads().0 >= served + 30,
        "{:?}",
        store.latest_reads()
    );

    // a lock on the key as its transaction's primary: the latest committed value, at once
    let attr_key = Keys::new("latest").inode(f);
    standin.leave_lock(&attr_key, 20_000);
    let t = Instant::now();
    assert_eq!(
        m.getattr(f).await.expect("getattr past a primary lock").ino,
        f
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // a region error: the read falls back to a transaction and still answers
    let fell = store.latest_reads().1;
    standin.inject_region_errors(1);
    assert_eq!(
        m.getattr(d)
            .await
            .expect("getattr after a region error")
            .ino,
        d
    );
    assert!(store.latest_reads().1 > fell, "{:?}", store.latest_reads());
}
