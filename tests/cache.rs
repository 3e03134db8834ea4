//! The local disk cache and `tidefs warmup`, on real FUSE mounts (SQLite metadata, local-directory
//! store; the object-store path is the same code, see tests/s3.rs for S3).

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Cache files (not temporary ones) under `dir`.
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let out = sh(&format!(
        "find {} -type f ! -name '*.tmp.*' 2>/dev/null || true",
        dir.display()
    ));
    out.lines().map(PathBuf::from).collect()
}

/// Wait until every object of the volume is in the cache (written blocks go there in the
/// background).
fn wait_all_cached(v: &Volume, cache: &Path) {
    let objects = || {
        let out = sh(&format!(
            "find {} -type f 2>/dev/null || true",
            v.bucket.join(&v.name).join("chunks").display()
        ));
        out.lines().count()
    };
    wait_for("every object cached", 30, || {
        let n = objects();
        n > 0 && cache_files(cache).len() == n
    });
}

/// Move the volume's objects away (the object store "loses" them) and back.
struct Hidden<'a> {
    v: &'a Volume,
}

impl<'a> Hidden<'a> {
    fn hide(v: &'a Volume) -> Self {
        let chunks = v.bucket.join(&v.name).join("chunks");
        fs::rename(&chunks, chunks.with_extension("away")).expect("hide objects");
        Self { v }
    }
}

impl Drop for Hidden<'_> {
    fn drop(&mut self) {
        let chunks = self.v.bucket.join(&self.v.name).join("chunks");
        let _ = fs::rename(chunks.with_extension("away"), &chunks);
    }
}

fn drop_page_cache() {
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
}

#[test]
fn cached_blocks_serve_reads_after_a_restart_and_are_laid_out_as_juicefs_does() {
    let v = Volume::format("e2e-cache", &["--trash-days", "0"]);
    let cache = v.dir.path().join("cache");
    let cache_s = cache.to_string_lossy().into_owned();
    let m = v.mount(
        "a",
        &[
            "--cache-dir",
            &cache_s,
            "--cache-large-write",
            "--free-space-ratio",
            ROOMY,
        ],
    );
    let big = bytes(11, (9 << 20) + 4321);
    let small = bytes(12, 5000);
    fs::write(m.p("big"), &big).expect("write big");
    fs::write(m.p("small"), &small).expect("write small");
    // written blocks go to the cache in the background: 3 of big, 1 of small
    // (3 blocks of big and 1 of small, more when the writer had to commit a block early)
    wait_all_cached(&v, &cache);
    let files = cache_files(&cache);
    let uuid = sh(&format!("ls {cache_s}")).trim().to_string();
    assert_eq!(
        uuid.len(),
        36,
        "one directory named by the volume UUID: {uuid}"
    );
    for f in &files {
        let rel = f
            .strip_prefix(cache.join(&uuid).join("raw"))
            .expect("under <uuid>/raw");
        assert!(rel.starts_with("chunks/0/0"), "{}", rel.display());
        let mode = fs::metadata(f).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    m.unmount();
    drop_page_cache();
    // the store loses every object: a new mount reads it all from the cache it finds on disk
    let hidden = Hidden::hide(&v);
    let m = v.mount(
        "a",
        &[
            "--cache-dir",
            &cache_s,
            "--cache-large-write",
            "--free-space-ratio",
            ROOMY,
        ],
    );
    assert_eq!(fs::read(m.p("big")).expect("read big from cache"), big);
    assert_eq!(
        fs::read(m.p("small")).expect("read small from cache"),
        small
    );
    // without the cache the same read fails: the data did come from the cache
    m.unmount();
    drop_page_cache();
    let m = v.mount("a", &["--cache-size", "0"]);
    assert!(fs::read(m.p("big")).is_err(), "objects are really gone");
    m.unmount();
    drop(hidden);
    v.fsck();
}

#[test]
fn corrupt_or_truncated_cache_files_are_dropped_and_refetched() {
    let v = Volume::format("e2e-cache-bad", &["--trash-days", "0"]);
    let cache = v.dir.path().join("cache");
    let cache_s = cache.to_string_lossy().into_owned();
    let m = v.mount(
        "a",
        &[
            "--cache-dir",
            &cache_s,
            "--cache-large-write",
            "--free-space-ratio",
            ROOMY,
        ],
    );
    let data = bytes(13, (6 << 20) + 77);
    fs::write(m.p("f"), &data).expect("write");
    wait_all_cached(&v, &cache);
    m.unmount();
    // the two largest (a writer under load may commit a small piece as a slice of its own)
    let mut files = cache_files(&cache);
    files.sort_by_key(|f| std::cmp::Reverse(fs::metadata(f).map(|m| m.len()).unwrap_or(0)));
    // one file with a flipped byte, the other cut short
    let mut raw = fs::read(&files[0]).expect("read cache file");
    raw[1000] ^= 0x01;
    fs::write(&files[0], &raw).expect("corrupt");
    let raw = fs::read(&files[1]).expect("read cache file");
    fs::write(&files[1], &raw[..raw.len() / 2]).expect("truncate");
    drop_page_cache();
    let m = v.mount(
        "a",
        &[
            "--cache-dir",
            &cache_s,
            "--cache-large-write",
            "--free-space-ratio",
            ROOMY,
        ],
    );
    assert_eq!(fs::read(m.p("f")).expect("read"), data, "never wrong bytes");
    let log = fs::read_to_string(&m.log).expect("log");
    assert!(
        log.contains("disk cache") && log.contains("dropped"),
        "the bad cache files are reported:\n{log}"
    );
    // the refetched blocks are cached again, intact (written in the background: wait for them,
    // or an unmount under load ends before they are on disk)
    wait_all_cached(&v, &cache);
    m.unmount();
    drop_page_cache();
    let _hidden = Hidden::hide(&v);
    let m = v.mount(
        "a",
        &[
            "--cache-dir",
            &cache_s,
            "--cache-large-write",
            "--free-space-ratio",
            ROOMY,
        ],
    );
    wait_for("re-cached blocks readable", 20, || {
        drop_page_cache();
        fs::read(m.p("f")).ok().as_deref() == Some(&data[..])
    });
}

#[test]
fn warmup_fills_checks_and_evicts_the_cache_of_a_running_mount() {
    let v = Volume::format("e2e-warmup", &["--trash-days", "0"]);
    // written without a disk cache (the `file` store has none by default)
    let m = v.mount("w", &[]);
    fs::create_dir_all(m.p("models/sub")).expect("mkdir");
    let files = [
        ("models/a.bin", bytes(21, 5 << 20)),
        ("models/sub/b.bin", bytes(22, (3 << 20) + 17)),
        ("models/c.txt", bytes(23, 1234)),
    ];
    for (p, d) in &files {
        fs::write(m.p(p), d).expect("write");
    }
    m.unmount();
    let cache = v.dir.path().join("cache");
    let cache_s = cache.to_string_lossy().into_owned();
    let m = v.mount(
        "a",
        &[
            "--cache-dir",
            &cache_s,
            "--cache-large-write",
            "--free-space-ratio",
            ROOMY,
        ],
    );
    let dir = m.p("models").to_string_lossy().into_owned();
    let total: usize = files.iter().map(|f| f.1.len()).sum();
    let check = ok(tidefs(), &["warmup", "--check", &dir]);
    assert!(
        check.contains("3 files") && check.contains("(0.0%)"),
        "{check}"
    );
    let warm = ok(tidefs(), &["warmup", "-p", "4", &dir]);
    assert!(
        warm.contains("3 files") && warm.contains("fetched"),
        "{warm}"
    );
    let check = ok(tidefs(), &["warmup", "--check", &dir]);
    assert!(check.contains("(100.0%)"), "{check}");
    let on_disk: u64 = cache_files(&cache)
        .iter()
        .map(|f| fs::metadata(f).expect("stat").len())
        .sum();
    assert!(
        on_disk as usize >= total,
        "{on_disk} bytes cached for {total}"
    );
    // a list file works too, and a second warmup fetches nothing
    let list = v.dir.path().join("list");
    fs::write(&list, format!("{}\n\n", m.p("models/a.bin").display())).expect("list");
    let again = ok(tidefs(), &["warmup", "-f", &list.to_string_lossy()]);
    assert!(
        again.contains("1 files") && again.contains("0 B fetched"),
        "{again}"
    );
    // the warmed mount reads everything with the objects gone
    {
        let _hidden = Hidden::hide(&v);
        drop_page_cache();
        for (p, d) in &files {
            assert_eq!(&fs::read(m.p(p)).expect("read warmed"), d, "{p}");
        }
    }
    let evict = ok(tidefs(), &["warmup", "--evict", &dir]);
    assert!(evict.contains("dropped"), "{evict}");
    let check = ok(tidefs(), &["warmup", "--check", &dir]);
    assert!(check.contains("(0.0%)"), "{check}");
    assert!(cache_files(&cache).is_empty(), "evicted files are deleted");
    // bad input: a path outside any mount, nothing to do
    let out = run(tidefs(), &["warmup", "/tmp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a tidefs mount"));
    let out = run(tidefs(), &["warmup"]);
    assert!(!out.status.success());
}

#[test]
fn cache_size_bound_and_a_full_or_removed_cache_disk_never_fail_reads() {
    let v = Volume::format("e2e-cache-full", &["--trash-days", "0"]);
    let w = v.mount("w", &[]);
    let files: Vec<Vec<u8>> = (0..40).map(|i| bytes(100 + i, 200_000)).collect();
    for (i, d) in files.iter().enumerate() {
        fs::write(w.p(&format!("f{i}")), d).expect("write");
    }
    w.unmount();

    // a 2 MiB bound: reading 8 MB of blocks leaves at most the bound (plus one block) cached
    let cache = v.dir.path().join("cache");
    let cache_s = cache.to_string_lossy().into_owned();
    let m = v.mount(
        "a",
        &[
            "--cache-dir",
            &cache_s,
            "--cache-size",
            "2",
            "--free-space-ratio",
            ROOMY,
        ],
    );
    for (i, d) in files.iter().enumerate() {
        assert_eq!(&fs::read(m.p(&format!("f{i}"))).expect("read"), d);
    }
    // blocks are written to the cache in the background and evictions delete files as they
    // happen; both can wait on a disk busy writing back (right after a build, in CI): the
    // bound must hold once they are done
    let used = || -> u64 {
        cache_files(&cache)
            .iter()
            .map(|f| fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    std::thread::sleep(Duration::from_millis(500));
    loop {
        let u = used();
        if (u > 0 && u <= (2 << 20) + 300_000) || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let used = used();
    assert!(
        used > 0,
        "nothing was cached within 30 s; mount log:\n{}",
        fs::read_to_string(&m.log).unwrap_or_default()
    );
    assert!(
        used <= (2 << 20) + 300_000,
        "{used} bytes cached over a 2 MiB bound: {:?}",
        cache_files(&cache)
    );
    // the cache directory removed under the mount: reads go on
    fs::remove_dir_all(&cache).expect("rm cache");
    drop_page_cache();
    for (i, d) in files.iter().enumerate() {
        assert_eq!(
            &fs::read(m.p(&format!("f{i}"))).expect("read without cache dir"),
            d
        );
    }
    m.unmount();

    // a cache disk that fills up: a 3 MiB tmpfs, 10 % kept free
    let small = v.dir.path().join("tiny");
    fs::create_dir(&small).expect("mkdir");
    let small_s = small.to_string_lossy().into_owned();
    sh(&format!(
        "mount -t tmpfs -o size=3m tidefs-test-cache {small_s}"
    ));
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = run("umount", &[&self.0]);
        }
    }
    let _tmpfs = Unmount(small_s.clone());
    drop_page_cache();
    let m = v.mount("b", &["--cache-dir", &small_s]);
    for round in 0..2 {
        for (i, d) in files.iter().enumerate() {
            assert_eq!(
                &fs::read(m.p(&format!("f{i}"))).expect("read"),
                d,
                "round {round}"
            );
        }
        drop_page_cache();
    }
    let df = sh(&format!("df -B1 --output=avail,size {small_s} | tail -1"));
    let mut it = df.split_whitespace().map(|x| x.parse::<u64>().expect("df"));
    let (avail, size) = (it.next().expect("avail"), it.next().expect("size"));
    assert!(
        avail + 250_000 >= size / 10,
        "the free-space floor holds (within a block): {avail} of {size} free"
    );
    // and the operator is told why blocks stop being cached
    let log = fs::read_to_string(&m.log).expect("log");
    assert!(
        log.contains("under its free-space floor"),
        "no warning about the floor:\n{log}"
    );
    m.unmount();
}
