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

/// Flat copies under the cache dir `cache` (any volume).
fn flat_copies(cache: &Path) -> Vec<PathBuf> {
    let out = sh(&format!(
        "find {}/*/flat -type f ! -name '*.tmp.*' 2>/dev/null || true",
        cache.display()
    ));
    out.lines().map(PathBuf::from).collect()
}

/// Mount flags of a read-only mount with its disk cache in `cache`.
fn read_only_args(cache: &str) -> [&str; 5] {
    [
        "--read-only",
        "--cache-dir",
        cache,
        "--free-space-ratio",
        ROOMY,
    ]
}

/// A read-only mount of `v` (tag "ro") with a disk cache of its own, and that cache's directory.
fn mount_read_only(v: &Volume) -> (Mount, PathBuf) {
    let cache = v.dir.path().join("fc");
    let m = v.mount("ro", &read_only_args(&cache.to_string_lossy()));
    (m, cache)
}

/// Bytes the mount at `m` has answered read requests with (`tidefs stats`).
fn served(m: &Mount) -> u64 {
    let out = ok(tidefs(), &["stats", "--json", &m.path.to_string_lossy()]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stats json");
    v["read_bytes"].as_u64().expect("read_bytes")
}

/// Read `p` (in mount `m`) whole, and the bytes the mount served meanwhile: zero when the
/// kernel read the file itself by passthrough.
fn read_counting(m: &Mount, rel: &str) -> (Vec<u8>, u64) {
    drop_page_cache();
    let before = served(m);
    let data = fs::read(m.p(rel)).expect("read");
    (data, served(m) - before)
}

/// Read `rel` whole until it reads as `want` and was served `through` the mount (else by
/// passthrough). The kernel sends a file's release after `close` has returned, so an open right
/// after a close can still find the closed handle there for a moment and join its kind (the
/// kernel allows no mixing): the state this test set up is the one the mount reaches.
fn read_settled(m: &Mount, rel: &str, want: &[u8], through: bool) {
    let how = if through {
        "through the mount"
    } else {
        "by passthrough"
    };
    wait_for(&format!("{rel} read {how}"), 10, || {
        let (got, read) = read_counting(m, rel);
        got == want && (read > 0) == through
    });
}

#[test]
fn read_only_mounts_read_large_files_from_flat_copies_by_passthrough() {
    let v = Volume::format("e2e-flat", &["--trash-days", "0"]);
    let w = v.mount("w", &[]);
    // not a whole number of blocks, and a hole in the middle
    let mut data = bytes(31, (20 << 20) + 12_345);
    data[(6 << 20)..(11 << 20)].fill(0);
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(w.p("model")).expect("create");
        f.write_all_at(&data[..6 << 20], 0).expect("write head");
        f.write_all_at(&data[11 << 20..], 11 << 20)
            .expect("write tail");
    }
    let small = bytes(32, 3 << 20);
    fs::write(w.p("small"), &small).expect("write small");
    let (ro, cache) = mount_read_only(&v);

    // the first read goes through the mount, which makes the copy from what it reads
    let (got, read) = read_counting(&ro, "model");
    assert!(got == data, "first read");
    assert!(
        read == data.len() as u64,
        "read through the mount: {read} bytes"
    );
    wait_for("a flat copy", 30, || flat_copies(&cache).len() == 1);
    let copy = flat_copies(&cache).remove(0);
    assert!(
        fs::read(&copy).expect("read copy") == data,
        "the copy is the file"
    );
    let mode = fs::metadata(&copy).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // later reads are the kernel's: the mount reads nothing
    read_settled(&ro, "model", &data, false);
    // many readers at once share the one backing file
    drop_page_cache();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let p = ro.p("model");
            std::thread::spawn(move || fs::read(p).expect("parallel read"))
        })
        .collect();
    for r in readers {
        assert!(r.join().expect("reader") == data, "parallel reader");
    }

    // the kernel refuses (EIO) a passthrough open of an inode that has ordinary opens, and
    // an ordinary one of an inode with passthrough opens: opens overlapping other opens keep
    // the kind of those
    {
        use std::io::Read;
        let copies = flat_copies(&cache);
        let mut held = fs::File::open(ro.p("model")).expect("open (passthrough)");
        for _ in 0..3 {
            let mut again = fs::File::open(ro.p("model")).expect("second open");
            let mut got = Vec::new();
            again
                .read_to_end(&mut got)
                .expect("read while another open is held");
            assert!(got == data);
        }
        let mut got = Vec::new();
        held.read_to_end(&mut got).expect("read the held open");
        assert!(got == data);
        // an ordinary open (the copy dropped meanwhile), then passthrough is possible again
        // but must not be used while it stays open
        for c in &copies {
            fs::remove_file(c).expect("drop the copy");
        }
        drop(held);
        let mut ordinary = None;
        wait_for("an ordinary open", 10, || {
            drop_page_cache();
            let before = served(&ro);
            let mut f = fs::File::open(ro.p("model")).expect("open");
            let mut got = Vec::new();
            f.read_to_end(&mut got).expect("read");
            assert!(got == data);
            let through = served(&ro) > before;
            if through {
                ordinary = Some(f);
            }
            through
        });
        wait_for("the copy made again", 30, || flat_copies(&cache).len() == 1);
        for _ in 0..3 {
            let got = fs::read(ro.p("model")).expect("open while an ordinary one is held");
            assert!(got == data);
        }
        drop(ordinary);
        // passthrough again once the ordinary open is closed
        read_settled(&ro, "model", &data, false);
    }

    // small files stay with the mount
    assert_eq!(fs::read(ro.p("small")).expect("small"), small);
    assert_eq!(flat_copies(&cache).len(), 1, "no copy of a small file");

    // another client changes the file: the next open reads the new bytes, through the mount,
    // and that read replaces the copy
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(w.p("model"))
            .expect("open rw");
        f.write_all_at(b"CHANGED BY ANOTHER CLIENT", 7 << 20)
            .expect("overwrite");
    }
    let mut changed = data.clone();
    changed[7 << 20..(7 << 20) + 25].copy_from_slice(b"CHANGED BY ANOTHER CLIENT");
    // the change is seen at the next open (once earlier handles are released), through the
    // mount: a stale copy is not used
    read_settled(&ro, "model", &changed, true);
    wait_for("the new copy in place of the old", 30, || {
        let c = flat_copies(&cache);
        c.len() == 1 && c[0] != copy && fs::read(&c[0]).ok().as_deref() == Some(&changed[..])
    });
    read_settled(&ro, "model", &changed, false);

    // evicting the file drops its copy too; the next read goes through the mount again
    let out = ok(
        tidefs(),
        &["warmup", "--evict", &ro.p("model").to_string_lossy()],
    );
    assert!(out.contains("dropped"), "{out}");
    assert!(flat_copies(&cache).is_empty(), "copy evicted");
    // no passthrough without a copy
    read_settled(&ro, "model", &changed, true);
    ro.unmount();
    w.unmount();
}

#[test]
fn warmup_of_a_read_only_mount_makes_flat_copies_and_no_passthrough_makes_none() {
    let v = Volume::format("e2e-flat-warm", &["--trash-days", "0"]);
    let w = v.mount("w", &[]);
    let data = bytes(33, 17 << 20);
    fs::write(w.p("m.bin"), &data).expect("write");
    w.unmount();
    let cache = v.dir.path().join("fc");
    let cache_s = cache.to_string_lossy().into_owned();
    let args = read_only_args(&cache_s);

    // --no-passthrough: reads stay with the mount, warmup makes no copy
    let mut plain = args.to_vec();
    plain.push("--no-passthrough");
    let m = v.mount("plain", &plain);
    let out = ok(tidefs(), &["warmup", &m.p("m.bin").to_string_lossy()]);
    assert!(!out.contains("flat copy"), "{out}");
    for _ in 0..2 {
        let (got, read) = read_counting(&m, "m.bin");
        assert!(got == data);
        assert!(read == data.len() as u64, "read through the mount: {read}");
    }
    assert!(
        flat_copies(&cache).is_empty(),
        "no copies without passthrough"
    );
    m.unmount();

    // passthrough (the default of read-only mounts): warmup leaves a copy, reads are the kernel's
    let m = v.mount("ro", &args);
    let out = ok(tidefs(), &["warmup", &m.p("m.bin").to_string_lossy()]);
    assert!(
        out.contains("1 files have a flat copy"),
        "warmup output: {out}"
    );
    assert_eq!(flat_copies(&cache).len(), 1);
    let (got, read) = read_counting(&m, "m.bin");
    assert!(got == data, "passthrough read");
    assert_eq!(read, 0, "the mount served reads");
    m.unmount();

    // the copy outlives the mount; the next mount finds it (and its index the size)
    let m = v.mount("again", &args);
    let (got, read) = read_counting(&m, "m.bin");
    assert!(got == data);
    assert_eq!(read, 0, "the mount served reads");
    m.unmount();
}

#[test]
fn copies_made_at_once_are_bounded_and_the_rest_come_at_later_opens() {
    let v = Volume::format("e2e-flat-many", &["--trash-days", "0"]);
    let w = v.mount("w", &[]);
    let files: Vec<Vec<u8>> = (0..5).map(|i| bytes(40 + i, 16 << 20)).collect();
    for (i, d) in files.iter().enumerate() {
        fs::write(w.p(&format!("m{i}")), d).expect("write");
    }
    let (ro, cache) = mount_read_only(&v);
    let in_progress = || {
        let out = ok(tidefs(), &["stats", "--json", &ro.path.to_string_lossy()]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("stats json");
        v["passthrough"]["copies_in_progress"]
            .as_u64()
            .expect("copies_in_progress")
    };
    // five large files open at once: four copies are made, not five
    {
        use std::io::Read;
        let mut held: Vec<fs::File> = (0..5)
            .map(|i| fs::File::open(ro.p(&format!("m{i}"))).expect("open"))
            .collect();
        assert_eq!(in_progress(), 4, "copies being made at once");
        for (f, d) in held.iter_mut().zip(&files) {
            let mut got = Vec::new();
            f.read_to_end(&mut got).expect("read");
            assert!(&got == d, "read through the mount");
        }
    }
    wait_for("four copies", 30, || flat_copies(&cache).len() == 4);
    assert_eq!(in_progress(), 0);
    // the next open of the fifth makes its copy; then every file is read by passthrough
    for (i, d) in files.iter().enumerate() {
        let (got, _) = read_counting(&ro, &format!("m{i}"));
        assert!(&got == d, "second read of m{i}");
    }
    wait_for("five copies", 30, || flat_copies(&cache).len() == 5);
    for (i, d) in files.iter().enumerate() {
        read_settled(&ro, &format!("m{i}"), d, false);
    }
}
