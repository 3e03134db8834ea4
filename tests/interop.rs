//! Interop with the official juicefs binary, both ways.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Write the same tree of files, links and modes into `root`.
fn write_tree(root: &Path) {
    let sizes = [0usize, 1, 4095, 4 << 20, (4 << 20) + 1, 70 << 20];
    for (i, n) in sizes.iter().enumerate() {
        fs::write(root.join(format!("f{i}")), bytes(i as u64 + 100, *n)).expect("write");
    }
    fs::create_dir_all(root.join("dir/sub")).expect("mkdir");
    fs::write(root.join("dir/sub/deep"), b"deep").expect("deep");
    std::os::unix::fs::symlink("../f1", root.join("dir/link")).expect("symlink");
    fs::hard_link(root.join("f2"), root.join("dir/hard")).expect("hard link");
    fs::set_permissions(root.join("f1"), fs::Permissions::from_mode(0o4751)).expect("chmod");
    std::os::unix::fs::chown(root.join("f3"), Some(1234), Some(5678)).expect("chown");
    // overwrite in the middle and truncate: several slices per chunk
    let p = root.join("f4");
    let mut data = fs::read(&p).expect("read");
    data[1000..2000].copy_from_slice(&bytes(7, 1000));
    fs::write(&p, &data).expect("rewrite");
    let f = fs::OpenOptions::new().write(true).open(&p).expect("open");
    f.set_len(3_000_000).expect("truncate");
}

/// One line per path: type, mode, owner, links, size, content hash, link target, and the mtime
/// when `times` is set. The root itself and juicefs's virtual files are left out.
fn manifest(root: &Path, times: bool) -> Vec<String> {
    use std::hash::{Hash, Hasher};
    let names = sh(&format!(
        "cd {} && find . -mindepth 1 \\( -path ./.trash -o -path ./.accesslog -o -path ./.config -o -path ./.stats \\) -prune -o -print | sort",
        root.display()
    ));
    names
        .lines()
        .filter(|l| !matches!(*l, "./.trash" | "./.accesslog" | "./.config" | "./.stats"))
        .map(|rel| {
            let p = root.join(rel);
            let md = fs::symlink_metadata(&p).expect("stat");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            let mut extra = String::new();
            if md.is_file() {
                fs::read(&p).expect("read").hash(&mut h);
            } else if md.file_type().is_symlink() {
                extra = fs::read_link(&p)
                    .expect("readlink")
                    .to_string_lossy()
                    .into_owned();
            }
            let size = if md.is_dir() { 0 } else { md.len() };
            let t = if times {
                format!(" mtime={}.{:09}", md.mtime(), md.mtime_nsec())
            } else {
                String::new()
            };
            format!(
                "{rel} mode={:o} owner={}:{} nlink={} size={size} hash={:x} {extra}{t}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink(),
                h.finish()
            )
        })
        .collect()
}

fn compare(a: &Path, b: &Path) {
    assert_eq!(manifest(a, false), manifest(b, false));
}

per_engine!(
    juicefs_reads_and_fscks_what_tidefs_wrote,
    tidefs_reads_what_juicefs_wrote
);

fn juicefs_reads_and_fscks_what_tidefs_wrote(e: Engine) {
    let v = Volume::format_on(e, "interop-a", &[]);
    let reference = tempfile::tempdir().expect("reference");
    write_tree(reference.path());
    let m = v.mount("t", &[]);
    write_tree(&m.path);
    compare(reference.path(), &m.path);
    fs::remove_file(m.p("f0")).expect("unlink into trash");
    fs::remove_file(reference.path().join("f0")).expect("unlink");
    let tidefs_view = manifest(&m.path, true);
    m.unmount();
    v.fsck();
    let report = v.juicefs_fsck();
    assert!(!report.contains("lost"), "juicefs fsck: {report}");
    let j = v.mount_juicefs("j");
    compare(reference.path(), &j.path);
    assert_eq!(
        manifest(&j.path, true),
        tidefs_view,
        "juicefs shows what tidefs showed, times included"
    );
}

fn tidefs_reads_what_juicefs_wrote(e: Engine) {
    let v = Volume::new_unformatted_on(e, "interop-b");
    ok(
        &juicefs(),
        &[
            "format",
            "--trash-days",
            "1",
            &v.url,
            "interop-b",
            "--storage",
            "file",
            "--bucket",
            &format!("{}/", v.bucket.display()),
        ],
    );
    let reference = tempfile::tempdir().expect("reference");
    write_tree(reference.path());
    let j = v.mount_juicefs("j");
    write_tree(&j.path);
    let juicefs_view = manifest(&j.path, true);
    j.unmount();
    let m = v.mount("t", &[]);
    compare(reference.path(), &m.path);
    assert_eq!(
        manifest(&m.path, true),
        juicefs_view,
        "tidefs shows what juicefs showed, times included"
    );
    // and tidefs can keep writing to it
    fs::write(m.p("from-tidefs"), b"hello juicefs").expect("write");
    m.unmount();
    v.fsck();
    v.juicefs_fsck();
    let j = v.mount_juicefs("j2");
    assert_eq!(
        fs::read(j.p("from-tidefs")).expect("read back"),
        b"hello juicefs"
    );
}

#[test]
fn compressed_volume_interop() {
    for codec in ["lz4", "zstd"] {
        let v = Volume::format(
            &format!("interop-{codec}"),
            &["--compress", codec, "--block-size", "1024"],
        );
        let m = v.mount("t", &[]);
        let data = bytes(42, 3 << 20 | 777);
        fs::write(m.p("z"), &data).expect("write");
        m.unmount();
        v.juicefs_fsck();
        let j = v.mount_juicefs("j");
        assert!(
            fs::read(j.p("z")).expect("juicefs reads") == data,
            "{codec}: bytes differ"
        );
    }
}

#[test]
fn refuses_unsupported_format_versions() {
    let v = Volume::format("interop-ver", &[]);
    let db = format!("{}/meta.db", v.dir.path().display());
    sh(&format!(
        "sqlite3 {db} \"UPDATE jfs_setting SET value = json_set(value, '$.MetaVersion', 9) WHERE name = 'format'\""
    ));
    let mp = v.mountpoint("x");
    let out = run(tidefs(), &["mount", &v.url, &mp.to_string_lossy()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metadata version 9") && err.contains("upgrade tidefs"),
        "{err}"
    );
    assert!(!is_mounted(&mp));
}

/// Columns (name, type, nullability, default) and indexes of a volume's tables, with the table
/// prefix taken out, as the server describes them.
#[allow(dead_code)]
fn schema_of(v: &Volume) -> String {
    let p = &v.prefix;
    let sql = match v.engine {
        Engine::Mysql => format!(
            "SELECT table_name, column_name, column_type, is_nullable, column_default, extra \
             FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name LIKE 'jfs\\_{p}\\_%' \
             ORDER BY table_name, ordinal_position; \
             SELECT table_name, index_name, non_unique, seq_in_index, column_name \
             FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name LIKE 'jfs\\_{p}\\_%' \
             ORDER BY table_name, index_name, seq_in_index"
        ),
        _ => format!(
            "SELECT table_name, column_name, data_type, is_nullable, column_default \
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name LIKE 'jfs\\_{p}\\_%' \
             ORDER BY table_name, ordinal_position; \
             SELECT tablename, indexdef FROM pg_indexes WHERE tablename LIKE 'jfs\\_{p}\\_%' ORDER BY tablename, indexname"
        ),
    };
    v.sql(&sql).replace(&format!("jfs_{p}_"), "jfs_")
}

#[allow(dead_code)]
fn tables_match_what_juicefs_creates(e: Engine) {
    let ours = Volume::format_on(e, "ddl-t", &[]);
    let theirs = Volume::new_unformatted_on(e, "ddl-j");
    ok(
        &juicefs(),
        &[
            "format",
            &theirs.url,
            "ddl-j",
            "--storage",
            "file",
            "--bucket",
            &format!("{}/", theirs.bucket.display()),
        ],
    );
    let (a, b) = (schema_of(&ours), schema_of(&theirs));
    // tidefs's own table (block checksums), which JuiceFS ignores, is the only difference
    assert!(a.contains("jfs_tidefs_sum"), "{a}");
    let a: String = a
        .lines()
        .filter(|l| !l.contains("jfs_tidefs_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let b: String = b.lines().map(|l| format!("{l}\n")).collect();
    assert!(a.lines().count() > 100, "{a}");
    assert_eq!(a, b, "tidefs DDL differs from juicefs DDL on {e:?}");
}

#[cfg(tidefs_test_mysql)]
#[test]
fn mysql_tables_match_what_juicefs_creates() {
    tables_match_what_juicefs_creates(Engine::Mysql);
}

#[cfg(tidefs_test_postgres)]
#[test]
fn postgres_tables_match_what_juicefs_creates() {
    tables_match_what_juicefs_creates(Engine::Postgres);
}

/// copy_file_range(2) on `fin` into `fout`: `len` bytes from `off_in` to `off_out`, looping
/// until done or the source ends (Python's wrapper of the system call).
fn copy_range(fin: &Path, off_in: u64, fout: &Path, off_out: u64, len: u64) {
    sh(&format!(
        "python3 -c \"
import os
i = os.open('{}', os.O_RDONLY)
o = os.open('{}', os.O_WRONLY | os.O_CREAT, 0o644)
done = 0
while done < {len}:
    n = os.copy_file_range(i, o, {len} - done, {off_in} + done, {off_out} + done)
    if n == 0:
        break
    done += n
\"",
        fin.display(),
        fout.display()
    ));
}

/// copy_file_range shares slices instead of moving data, with the reference counts juicefs
/// keeps: a copy stores no object, either file outlives the other, the last one to go frees the
/// objects, and juicefs reads and fscks the copies; copies juicefs made are freed right by
/// tidefs.
#[test]
fn copies_share_slices_both_ways() {
    let v = Volume::format("interop-copy", &["--trash-days", "0"]);
    let m = v.mount("t", &[]);
    // the source: written, overwritten in the middle, a hole, more data in the next chunk
    let mut want = bytes(1, 9 << 20);
    want[(3 << 20) + 5..(3 << 20) + 100_005].copy_from_slice(&bytes(2, 100_000));
    want.resize((64 << 20) + 123, 0);
    want.extend_from_slice(&bytes(3, 2 << 20));
    fs::write(m.p("src"), &want[..9 << 20]).expect("write");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(m.p("src"))
            .expect("open");
        f.seek(SeekFrom::Start((3 << 20) + 5)).expect("seek");
        f.write_all(&bytes(2, 100_000)).expect("overwrite");
        f.seek(SeekFrom::Start((64 << 20) + 123)).expect("seek");
        f.write_all(&bytes(3, 2 << 20)).expect("append past a hole");
    }
    fs::write(m.p("part"), bytes(4, 5000)).expect("part");
    let objects = v.object_count();
    copy_range(&m.p("src"), 0, &m.p("whole"), 0, want.len() as u64);
    // unaligned, across the hole and the chunk boundary, into a file that has data
    let (off_in, off_out, len) = ((3 << 20) - 7, 1234u64, 62u64 << 20);
    copy_range(&m.p("src"), off_in, &m.p("part"), off_out, len);
    let mut part = bytes(4, 5000);
    part.resize(off_out as usize, 0);
    part.extend_from_slice(&want[off_in as usize..(off_in + len) as usize]);
    sh(&format!(
        "cp {} {}",
        m.p("src").display(),
        m.p("by-cp").display()
    ));
    assert_eq!(v.object_count(), objects, "a copy stored objects");
    assert!(
        fs::read(m.p("whole")).expect("whole") == want,
        "copy differs"
    );
    assert!(
        fs::read(m.p("part")).expect("part") == part,
        "partial copy differs"
    );
    assert!(fs::read(m.p("by-cp")).expect("cp") == want, "cp differs");
    // the source goes; the copies keep its objects
    fs::remove_file(m.p("src")).expect("rm src");
    fs::remove_file(m.p("by-cp")).expect("rm by-cp");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        v.object_count(),
        objects,
        "objects still shared were deleted"
    );
    m.unmount();
    v.fsck();
    let report = v.juicefs_fsck();
    assert!(!report.contains("lost"), "juicefs fsck: {report}");
    // juicefs copies tidefs's copy (before any juicefs read: a read of a chunk of five or more
    // records makes juicefs compact it, which writes objects)
    let j = v.mount_juicefs("j");
    copy_range(&j.p("whole"), 0, &j.p("by-juicefs"), 0, want.len() as u64);
    j.unmount();
    assert_eq!(v.object_count(), objects, "juicefs's copy stored objects");
    // and reads every copy (read-only: no compaction)
    let j = v.mount_juicefs_with("jr", &["--read-only"]);
    for (name, data) in [("whole", &want), ("part", &part), ("by-juicefs", &want)] {
        assert!(
            fs::read(j.p(name)).expect("read") == *data,
            "juicefs reads {name} wrong"
        );
    }
    j.unmount();
    // tidefs frees what juicefs shared only when the last file goes
    let m = v.mount("t2", &[]);
    fs::remove_file(m.p("whole")).expect("rm whole");
    fs::remove_file(m.p("part")).expect("rm part");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        fs::read(m.p("by-juicefs")).expect("by-juicefs") == want,
        "juicefs's copy lost data"
    );
    let report = v.juicefs_fsck();
    assert!(!report.contains("lost"), "juicefs fsck: {report}");
    fs::remove_file(m.p("by-juicefs")).expect("rm by-juicefs");
    wait_for("every object freed", 30, || v.object_count() == "0");
    m.unmount();
    v.fsck();
    v.juicefs_fsck();
}

/// A read-only tidefs mount serves a file by passthrough from a flat copy in its cache; a change
/// made through juicefs (which moves the file's mtime and ctime) must make the next open read
/// the new bytes through the mount, not the stale copy.
#[test]
fn passthrough_copies_follow_juicefs_writes() {
    use std::os::unix::fs::FileExt;
    let v = Volume::format("interop-flat", &["--trash-days", "0"]);
    let w = v.mount("w", &[]);
    let data = bytes(41, 18 << 20);
    fs::write(w.p("model"), &data).expect("write");
    w.unmount();
    let cache = v.dir.path().join("fc").to_string_lossy().into_owned();
    let ro = v.mount(
        "ro",
        &[
            "--read-only",
            "--cache-dir",
            &cache,
            "--free-space-ratio",
            "0.01",
        ],
    );
    assert!(fs::read(ro.p("model")).expect("first read") == data);
    let flat = v.dir.path().join("fc");
    wait_for("a flat copy", 30, || {
        sh(&format!("ls {}/*/flat 2>/dev/null", flat.display()))
            .lines()
            .any(|l| !l.contains(".tmp."))
    });
    let j = v.mount_juicefs("j");
    {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(j.p("model"))
            .expect("open through juicefs");
        f.write_all_at(b"written by juicefs", 9 << 20)
            .expect("juicefs write");
    }
    let mut changed = data.clone();
    changed[9 << 20..(9 << 20) + 18].copy_from_slice(b"written by juicefs");
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
    assert!(
        fs::read(ro.p("model")).expect("read after the change") == changed,
        "the change made through juicefs is seen at the next open"
    );
    j.unmount();
    ro.unmount();
}
