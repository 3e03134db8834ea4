//! The data path under a file-system exerciser (`tests/data/fsx.py`): random writes, reads,
//! truncates, fallocate modes, in-file copies, shared mappings, O_DIRECT reads, syncs and
//! reopens on files that cross 4 MiB block and 64 MiB chunk boundaries, every read checked
//! against a model of the file. Each file is then checked whole after a remount (blocks from
//! the store, not from a cache) and through the juicefs binary, the format oracle; a second
//! mount reads each file after every close (close-to-open consistency across clients), and
//! another process stats the files all along.
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const FSX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fsx.py");

fn fsx_run(file: &Path, seed: u64, ops: u32, model: &Path, other: Option<&Path>) -> Child {
    let mut c = Command::new("python3");
    c.arg(FSX)
        .arg("run")
        .arg(file)
        .arg(seed.to_string())
        .arg(ops.to_string())
        .arg(model);
    if let Some(o) = other {
        c.arg("--other").arg(o);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fsx.py")
}

fn finish(runs: Vec<Child>) {
    for c in runs {
        let out = c.wait_with_output().expect("wait for fsx.py");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "fsx failed:\n{text}");
        // every kind of operation ran (none was refused as unsupported and left out)
        assert!(text.contains("left out []"), "{text}");
    }
}

fn fsx_check(file: &Path, model: &Path) {
    let out = Command::new("python3")
        .arg(FSX)
        .arg("check")
        .arg(file)
        .arg(model)
        .output()
        .expect("run fsx.py check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the model of file `f<seed>` of a test's volume is saved.
fn model_path(v: &Volume, seed: u64) -> PathBuf {
    let dir = v.dir.path().join("models");
    std::fs::create_dir_all(&dir).expect("models dir");
    dir.join(format!("m{seed}"))
}

/// Every file `f<seed>` read whole through `m` matches its model.
fn check_files(v: &Volume, m: &Mount, seeds: &[u64]) {
    for &s in seeds {
        fsx_check(&m.p(&format!("f{s}")), &model_path(v, s));
    }
}

/// After the runs: a fresh mount (nothing cached in memory: every block is read back) and
/// juicefs read each file whole, then both fscks find the volume clean.
fn verify_afterwards(v: &Volume, mount_args: &[&str], seeds: &[u64]) {
    let m = v.mount("c", mount_args);
    check_files(v, &m, seeds);
    m.unmount();
    let j = v.mount_juicefs("j");
    check_files(v, &j, seeds);
    j.unmount();
    v.fsck();
    v.juicefs_fsck();
}

fn exercise(v: &Volume, mount_args: &[&str], seeds: &[u64], ops: u32) {
    let model = |s: u64| model_path(v, s);
    {
        let a = v.mount("a", mount_args);
        let b = v.mount("b", mount_args);
        let runs = seeds
            .iter()
            .map(|&s| {
                let name = format!("f{s}");
                fsx_run(&a.p(&name), s, ops, &model(s), Some(&b.p(&name)))
            })
            .collect();
        // another process stats the files all along (as `ls -l` or a monitor would): a
        // getattr racing a commit once gave the kernel the size from before the writes
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stats = {
            let (stop, paths) = (
                stop.clone(),
                seeds
                    .iter()
                    .map(|s| a.p(&format!("f{s}")))
                    .collect::<Vec<_>>(),
            );
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for p in &paths {
                        let _ = std::fs::metadata(p);
                        n += 1;
                    }
                }
                n
            })
        };
        finish(runs);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = stats.join().expect("stat thread");
        assert!(n > 100, "the stat loop ran only {n} times");
        b.unmount();
        a.unmount();
    }
    verify_afterwards(v, mount_args, seeds);
}

fn exercise_local(e: Engine) {
    let v = Volume::format_on(e, "fsx", &["--trash-days", "0"]);
    exercise(&v, &[], &[1, 2, 3], 2500);
}

per_engine!(exercise_local);

/// Memory cache, disk cache and write buffers far smaller than a file: blocks are evicted and
/// fetched again all the time, and writes wait for buffer space.
const SMALL_CACHES: [&str; 6] = [
    "--mem-cache",
    "8",
    "--cache-size",
    "16",
    "--buffer-size",
    "32",
];

#[test]
fn exercise_compressed_with_small_caches() {
    let v = Volume::format("fsx-lz4", &["--trash-days", "0", "--compress", "lz4"]);
    let cache = v.dir.path().join("cache").to_string_lossy().into_owned();
    let mut args = vec!["--cache-dir", &cache];
    args.extend_from_slice(&SMALL_CACHES);
    exercise(&v, &args, &[4, 5], 2000);
}

/// On S3 with `--writeback`: blocks are staged on local disk and uploaded later, so a second
/// mount could not read them yet; each file is checked after `umount --flush`, through a fresh
/// mount with an empty cache (every block from RGW) and through juicefs.
#[cfg(tidefs_test_s3)]
#[test]
fn exercise_s3_writeback() {
    let url = std::env::var("TIDEFS_TEST_S3").expect("TIDEFS_TEST_S3");
    let v = s3_volume_at("fsx-wb", &url, &["--compress", "zstd"]);
    let seeds = [6u64, 7];
    let model = |s: u64| model_path(&v, s);
    let small = SMALL_CACHES;
    {
        let mut args = vec!["--writeback"];
        args.extend_from_slice(&small);
        let a = v.mount("a", &args);
        let runs = seeds
            .iter()
            .map(|&s| fsx_run(&a.p(&format!("f{s}")), s, 1500, &model(s), None))
            .collect();
        finish(runs);
        ok(tidefs(), &["umount", "--flush", &a.path.to_string_lossy()]);
        wait_for("unmounted", 20, || !is_mounted(&a.path));
    }
    let fresh = v
        .dir
        .path()
        .join("fresh-cache")
        .to_string_lossy()
        .into_owned();
    let mut args = vec!["--cache-dir", &fresh];
    args.extend_from_slice(&small);
    verify_afterwards(&v, &args, &seeds);
}

/// The exerciser while `tidefs compact` (through the mount's paths) and `tidefs gc --compact
/// --delete` (from the metadata) run again and again from other processes: their compactions
/// race the writes, truncates and frees of the mount; no byte may change, and neither command
/// may fail (a chunk that changed under a compaction is left for the next one).
#[test]
fn exercise_with_compaction_and_gc_alongside() {
    let v = Volume::format("fsx-gc", &["--trash-days", "0"]);
    let seeds = [8u64, 9];
    let model = |s: u64| model_path(&v, s);
    let a = v.mount("a", &[]);
    let runs = seeds
        .iter()
        .map(|&s| fsx_run(&a.p(&format!("f{s}")), s, 2000, &model(s), None))
        .collect::<Vec<_>>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maint = {
        let (stop, url, mnt) = (stop.clone(), v.url.clone(), a.path.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for args in [
                    vec!["compact".to_string(), mnt.to_string_lossy().into_owned()],
                    vec![
                        "gc".into(),
                        url.clone(),
                        "--compact".into(),
                        "--delete".into(),
                    ],
                ] {
                    let out = Command::new(tidefs()).args(&args).output().expect("run");
                    assert!(
                        out.status.success(),
                        "tidefs {args:?} failed: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                rounds += 1;
            }
            rounds
        })
    };
    finish(runs);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = maint.join().expect("compact/gc loop");
    assert!(rounds >= 3, "only {rounds} compact/gc rounds ran alongside");
    a.unmount();
    verify_afterwards(&v, &[], &seeds);
}

/// A tidefs mount and a juicefs mount take turns on the same files (each turn a close on one
/// client and an open on the other), writing and reading: each implementation must read what
/// the other wrote, down to holes, truncates and in-file copies.
#[test]
fn exercise_alternating_with_juicefs() {
    let v = Volume::format("fsx-jfs", &["--trash-days", "0"]);
    let seeds = [10u64, 11];
    let model = |s: u64| model_path(&v, s);
    let a = v.mount("a", &[]);
    // juicefs without kernel metadata caching: what is checked here is that each client reads
    // what the other wrote, not juicefs's own cache coherence (a CI run once saw the juicefs
    // mount report the size from before a truncate tidefs had committed, right after the turn)
    let j = v.mount_juicefs_with("j", &NO_KERNEL_CACHE);
    let runs = seeds
        .iter()
        .map(|&s| {
            let name = format!("f{s}");
            fsx_run(&a.p(&name), s, 2000, &model(s), Some(&j.p(&name)))
        })
        .collect::<Vec<_>>();
    let outs: Vec<String> = runs
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wait for fsx.py");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "fsx failed:\n{text}");
            text
        })
        .collect();
    // the turns did happen
    for text in &outs {
        assert!(text.contains("'op_switch': "), "{text}");
    }
    j.unmount();
    a.unmount();
    v.fsck();
    v.juicefs_fsck();
}
