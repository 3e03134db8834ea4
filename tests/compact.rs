//! Compaction on real FUSE mounts (SQLite metadata, local-directory store): fragmented chunks
//! are rewritten as few slices showing the same bytes, in the background, with
//! `tidefs compact`, and with `tidefs gc --compact`; juicefs reads the result identically.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// `writes` overlapping writes of 1..64 KiB at pseudo-random offsets under 3 MiB, each made
/// durable (one slice record each); the expected content is written to `expect`.
fn fragment(path: &Path, expect: &Path, writes: usize, seed: u64) {
    let out = run(
        "python3",
        &[
            "-c",
            r#"
import os, random, sys
path, expect, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
model = bytearray()
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
for i in range(n):
    off = rnd.randrange(0, 3 << 20)
    data = os.urandom(rnd.randrange(1, 64 << 10))
    os.pwrite(fd, data, off)
    os.fsync(fd)
    if len(model) < off + len(data):
        model.extend(b"\0" * (off + len(data) - len(model)))
    model[off:off + len(data)] = data
os.close(fd)
open(expect, "wb").write(model)
"#,
            &path.to_string_lossy(),
            &expect.to_string_lossy(),
            &writes.to_string(),
            &seed.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Slice records of chunk 0 of `path`, as `tidefs info` shows them.
fn records(path: &Path) -> usize {
    let info = ok(tidefs(), &["info", &path.to_string_lossy()]);
    let line = info
        .lines()
        .find(|l| l.trim_start().starts_with("chunk 0:"))
        .unwrap_or_else(|| panic!("no chunk 0 in:\n{info}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// Bytes of block objects in the volume's bucket.
fn object_bytes(v: &Volume) -> u64 {
    sh(&format!(
        "find {} -type f -printf '%s\\n' | awk '{{s+=$1}} END {{print s+0}}'",
        v.bucket.join(&v.name).join("chunks").display()
    ))
    .trim()
    .parse()
    .expect("sum")
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).expect("read a"), fs::read(b).expect("read b"));
    assert_eq!(x.len(), y.len(), "{} vs {}", a.display(), b.display());
    assert!(x == y, "{} differs from {}", a.display(), b.display());
}

#[test]
fn a_mount_compacts_chunks_that_gather_many_slices() {
    let v = Volume::format("e2e-compact-bg", &["--trash-days", "0"]);
    let expect = v.dir.path().join("expect");
    let m = v.mount("a", &[]);
    fragment(&m.p("f"), &expect, 330, 1);
    // commits 100, 200 and 300 queued compactions; the last leaves a handful of records
    let deadline = Instant::now() + Duration::from_secs(60);
    while records(&m.p("f")) > 40 {
        assert!(Instant::now() < deadline, "chunk never compacted");
        std::thread::sleep(Duration::from_millis(200));
    }
    same_file(&m.p("f"), &expect);
    // only what the file shows is stored (the slices compaction replaced are gone)
    let len = fs::metadata(&expect).expect("stat").len();
    m.unmount();
    assert!(
        object_bytes(&v) < len + len / 2,
        "{} bytes of objects for a {len}-byte file",
        object_bytes(&v)
    );
    sh("echo 3 > /proc/sys/vm/drop_caches");
    let m = v.mount("b", &[]);
    same_file(&m.p("f"), &expect);
    m.unmount();
    let j = v.mount_juicefs("j");
    same_file(&j.p("f"), &expect);
    j.unmount();
    assert!(v.fsck().contains(" 0 problem(s)"));
    v.juicefs_fsck();
}

#[test]
fn compact_command_and_gc_compact_rewrite_fragmented_files() {
    let v = Volume::format("e2e-compact-cli", &["--trash-days", "0"]);
    let (e1, e2) = (v.dir.path().join("e1"), v.dir.path().join("e2"));
    let m = v.mount("a", &[]);
    fs::create_dir(m.p("d")).expect("mkdir");
    // under the background threshold: these stay fragmented until asked
    fragment(&m.p("d/f1"), &e1, 60, 2);
    fragment(&m.p("f2"), &e2, 60, 3);
    assert_eq!(records(&m.p("d/f1")), 60);
    let before: u64 = v.object_count().parse().expect("count");
    let out = ok(tidefs(), &["compact", &m.p("d").to_string_lossy()]);
    assert!(
        out.contains("1 file(s): 1 of 1 chunk(s) compacted: 60 slice records -> 1"),
        "{out}"
    );
    assert_eq!(records(&m.p("d/f1")), 1);
    assert_eq!(records(&m.p("f2")), 60, "outside the path: untouched");
    same_file(&m.p("d/f1"), &e1);
    // the 60 replaced slices' objects are gone, one (under 4 MiB) came
    let after: u64 = v.object_count().parse().expect("count");
    assert_eq!(after + 59, before, "replaced slices freed their objects");
    m.unmount();

    let out = ok(tidefs(), &["gc", &v.url, "--compact", "--delete"]);
    assert!(
        out.contains("compaction: 1 of 1 chunk(s) compacted: 60 slice records -> 1"),
        "{out}"
    );
    assert!(out.contains("0 (0 B) leaked"), "{out}");
    let m = v.mount("b", &[]);
    assert_eq!(records(&m.p("f2")), 1);
    same_file(&m.p("f2"), &e2);
    same_file(&m.p("d/f1"), &e1);
    m.unmount();
    assert!(v.fsck().contains(" 0 problem(s)"));
    v.juicefs_fsck();

    // bad input
    let out = run(tidefs(), &["compact", "/tmp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a tidefs mount"));
}

#[test]
fn with_trash_on_replaced_slices_wait_for_the_trash_time() {
    let v = Volume::format("e2e-compact-trash", &["--trash-days", "1"]);
    let e = v.dir.path().join("e");
    let m = v.mount("a", &[]);
    fragment(&m.p("f"), &e, 40, 4);
    let before: u64 = v.object_count().parse().expect("count");
    ok(tidefs(), &["compact", &m.p("f").to_string_lossy()]);
    same_file(&m.p("f"), &e);
    m.unmount();
    // the old slices are set aside, their objects kept
    let count = || v.object_count().parse::<u64>().expect("count");
    assert_eq!(count(), before + 1);
    let out = ok(tidefs(), &["gc", &v.url, "--delete"]);
    assert!(out.contains("40 delayed for the trash"), "{out}");
    assert!(out.contains("0 (0 B) leaked"), "{out}");
    // juicefs reads the same records (its gc walks them without complaint)
    let out = run(&juicefs(), &["gc", &v.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a day later (the record is backdated) gc releases them and their objects go
    v.sql("UPDATE jfs_delslices SET deleted = deleted - 2 * 86400");
    let out = ok(tidefs(), &["gc", &v.url, "--delete"]);
    assert!(out.contains("released 1 delayed"), "{out}");
    assert!(out.contains("0 delayed for the trash"), "{out}");
    assert_eq!(count(), 1);
    let m = v.mount("b", &[]);
    same_file(&m.p("f"), &e);
    m.unmount();
    assert!(v.fsck().contains(" 0 problem(s)"));
    v.juicefs_fsck();
}
