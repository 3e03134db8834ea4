//! `--writeback` on real FUSE mounts (SQLite metadata, local-directory store; the upload path is
//! the object-store code, shared with S3): blocks are staged durably and committed, uploaded in
//! the background, survive a kill -9 of the mount, are uploaded by the next mount, and
//! `tidefs umount --flush` waits for them. The juicefs binary is the oracle for "everything is
//! in the object store": it mounts the volume without our cache and reads every byte.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Staged block files (not temporary ones) under a cache directory.
fn staged_files(cache: &Path) -> Vec<PathBuf> {
    let out = sh(&format!(
        "find {} -type f -path '*/rawstaging/*' ! -name '*.tmp.*' 2>/dev/null || true",
        cache.display()
    ));
    out.lines().map(PathBuf::from).collect()
}

/// Write `data` to `path` and fsync it: the data is acknowledged when this returns.
fn write_synced(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).expect("create");
    f.write_all(data).expect("write");
    f.sync_all().expect("fsync");
}

fn objects(v: &Volume) -> usize {
    v.object_count().parse().expect("count")
}

/// The files of the test: one of several blocks with a partial tail, and small ones.
fn files() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("big".to_string(), bytes(1, 9 * 1024 * 1024 + 123))];
    for i in 0..20u64 {
        out.push((format!("small{i}"), bytes(100 + i, 1000 + i as usize)));
    }
    out
}

fn umount_flush(m: Mount) -> String {
    let out = ok(tidefs(), &["umount", "--flush", &m.path.to_string_lossy()]);
    wait_for("unmounted", 20, || !is_mounted(&m.path));
    out
}

/// A `--writeback` mount whose uploads wait an hour (all blocks stay staged), and its cache
/// directory.
fn staging_mount(v: &Volume) -> (Mount, PathBuf) {
    let cache = v.dir.path().join("cache");
    let m = v.mount(
        "a",
        &[
            "--writeback",
            "--cache-dir",
            &cache.to_string_lossy(),
            "--free-space-ratio",
            ROOMY,
            "--upload-delay",
            "1h",
        ],
    );
    (m, cache)
}

#[test]
fn staged_blocks_survive_a_crash_and_the_next_mount_uploads_them() {
    let v = Volume::format("e2e-wb", &["--trash-days", "0"]);
    let (m, cache) = staging_mount(&v);
    let files = files();
    for (name, data) in &files {
        write_synced(&m.p(name), data);
    }
    // committed and readable, but nothing uploaded yet: it is all staged
    assert_eq!(objects(&v), 0, "an upload happened before its delay");
    let staged = staged_files(&cache).len();
    assert!(staged >= files.len() + 2, "only {staged} blocks staged");
    for (name, data) in &files {
        assert_eq!(&fs::read(m.p(name)).expect("read staged"), data, "{name}");
    }
    // the mount dies without unmounting: staged blocks stay on the cache disk
    let pid = m.pid();
    sh(&format!("kill -9 {pid}"));
    wait_for("mount process gone", 10, || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    drop(m);
    assert_eq!(objects(&v), 0);
    assert_eq!(staged_files(&cache).len(), staged);

    // the next mount with the same cache directory uploads them, and serves reads meanwhile
    let m = v.mount(
        "b",
        &[
            "--writeback",
            "--cache-dir",
            &cache.to_string_lossy(),
            "--free-space-ratio",
            ROOMY,
        ],
    );
    for (name, data) in &files {
        assert_eq!(
            &fs::read(m.p(name)).expect("read after crash"),
            data,
            "{name}"
        );
    }
    let out = umount_flush(m);
    assert!(out.contains("uploaded") || out.is_empty(), "{out}");
    assert!(
        staged_files(&cache).is_empty(),
        "still staged after --flush: {:?}",
        staged_files(&cache)
    );
    assert!(objects(&v) >= staged);

    // everything is in the object store: juicefs reads it without our cache, and fsck agrees
    let j = v.mount_juicefs("j");
    for (name, data) in &files {
        assert_eq!(&fs::read(j.p(name)).expect("juicefs read"), data, "{name}");
    }
    j.unmount();
    v.juicefs_fsck();
}

#[test]
fn blocks_deleted_before_their_upload_never_reach_the_store() {
    let v = Volume::format("e2e-wb-del", &["--trash-days", "0"]);
    let (m, cache) = staging_mount(&v);
    write_synced(&m.p("tmp"), &bytes(7, 6 * 1024 * 1024));
    assert!(!staged_files(&cache).is_empty());
    fs::remove_file(m.p("tmp")).expect("rm");
    // the freed slice drops its staged blocks in the background
    wait_for("staged blocks dropped", 30, || {
        staged_files(&cache).is_empty()
    });
    // a file kept: only its blocks are uploaded at the flush
    write_synced(&m.p("kept"), &bytes(8, 100_000));
    umount_flush(m);
    assert_eq!(objects(&v), 1, "only the kept file's block is stored");
    let m = v.mount("b", &[]);
    assert_eq!(fs::read(m.p("kept")).expect("read"), bytes(8, 100_000));
    m.unmount();
}

/// A copy of a file whose blocks are still staged shares them: removing the original keeps
/// them staged, the flush uploads them once, and the copy reads back whole from the store.
#[test]
fn copies_of_staged_files_keep_their_blocks() {
    let v = Volume::format("e2e-wb-copy", &["--trash-days", "0"]);
    let (m, cache) = staging_mount(&v);
    let data = bytes(9, 6 * 1024 * 1024 + 77);
    write_synced(&m.p("orig"), &data);
    let staged = staged_files(&cache).len();
    assert!(staged >= 2, "only {staged} blocks staged");
    sh(&format!(
        "cp {} {}",
        m.p("orig").display(),
        m.p("copy").display()
    ));
    assert_eq!(
        staged_files(&cache).len(),
        staged,
        "the copy staged blocks of its own"
    );
    fs::remove_file(m.p("orig")).expect("rm");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        staged_files(&cache).len(),
        staged,
        "shared staged blocks were dropped"
    );
    umount_flush(m);
    assert_eq!(objects(&v), staged, "each shared block is uploaded once");
    // juicefs reads it from the store alone
    let j = v.mount_juicefs("j");
    assert!(
        fs::read(j.p("copy")).expect("read") == data,
        "the copy lost data"
    );
    j.unmount();
    v.juicefs_fsck();
}

#[test]
fn a_full_staging_disk_falls_back_to_uploading_at_once() {
    let v = Volume::format("e2e-wb-full", &["--trash-days", "0"]);
    // the cache disk: a 6 MiB tmpfs, 10 % kept free, so about one block can be staged
    let small = v.dir.path().join("tiny");
    fs::create_dir(&small).expect("mkdir");
    let small_s = small.to_string_lossy().into_owned();
    sh(&format!(
        "mount -t tmpfs -o size=6m tidefs-test-staging {small_s}"
    ));
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = run("umount", &["-l", &self.0]);
        }
    }
    let _tmpfs = Unmount(small_s.clone());
    let m = v.mount(
        "a",
        &[
            "--writeback",
            "--cache-dir",
            &small_s,
            "--cache-size",
            "0",
            "--upload-delay",
            "1h",
        ],
    );
    let data = bytes(9, 24 * 1024 * 1024);
    write_synced(&m.p("f"), &data);
    assert_eq!(fs::read(m.p("f")).expect("read"), data);
    let staged = staged_files(&small).len();
    assert!(
        staged <= 1,
        "{staged} blocks staged on a 6 MiB disk:\n{}",
        sh(&format!("ls -lR {small_s}; df -B1 {small_s}"))
    );
    assert!(
        objects(&v) >= 5,
        "blocks that could not be staged were uploaded at once"
    );
    let df = sh(&format!("df -B1 --output=avail,size {small_s} | tail -1"));
    let mut it = df.split_whitespace().map(|x| x.parse::<u64>().expect("df"));
    let (avail, size) = (it.next().expect("avail"), it.next().expect("size"));
    assert!(
        avail + 4_300_000 >= size / 10,
        "the free-space floor holds (within a block): {avail} of {size} free"
    );
    umount_flush(m);
    assert!(staged_files(&small).is_empty());
    let j = v.mount_juicefs("j");
    assert_eq!(fs::read(j.p("f")).expect("juicefs read"), data);
    j.unmount();

    // --flush on a mount without --writeback has nothing to wait for
    let m = v.mount("b", &[]);
    umount_flush(m);
}

#[test]
fn writeback_needs_a_cache_directory() {
    let v = Volume::format("e2e-wb-flags", &[]);
    let mp = v.mountpoint("x");
    let out = run(
        tidefs(),
        &["mount", &v.url, &mp.to_string_lossy(), "--writeback"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cache-dir"), "{err}");
    let out = run(
        tidefs(),
        &[
            "mount",
            &v.url,
            &mp.to_string_lossy(),
            "--writeback",
            "--cache-dir",
            "/tmp",
            "--upload-delay",
            "5 parsecs",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("upload-delay"), "{err}");
}
