//! Bad input: one clear line naming the problem, a non-zero exit, and nothing changed.

mod common;

use common::*;
use std::path::Path;

fn fails(args: &[&str], needle: &str) {
    let out = run(tidefs(), args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
}

#[test]
fn format_rejects_bad_input_and_changes_nothing() {
    let v = Volume::new_unformatted("cli");
    let bucket = v.bucket.to_string_lossy().into_owned();
    let db = v.dir.path().join("meta.db");
    fails(
        &["format", &v.url, "Bad_Name", "--bucket", &bucket],
        "invalid volume name",
    );
    fails(
        &[
            "format",
            &v.url,
            "good",
            "--bucket",
            &bucket,
            "--block-size",
            "100",
        ],
        "invalid --block-size",
    );
    fails(
        &["format", &v.url, "good", "--bucket", "/nonexistent/bucket"],
        "does not exist",
    );
    fails(
        &[
            "format",
            "sqlite3:///nonexistent/dir/m.db",
            "good",
            "--bucket",
            &bucket,
        ],
        "does not exist",
    );
    fails(
        &["format", "nonsense", "good", "--bucket", &bucket],
        "no scheme",
    );
    fails(
        &["format", "mysql2://x", "good", "--bucket", &bucket],
        "unknown metadata engine",
    );
    fails(
        &[
            "format",
            &v.url,
            "good",
            "--storage",
            "gopher",
            "--bucket",
            &bucket,
        ],
        "not supported",
    );
    assert!(!db.exists(), "failed formats must not create the database");
    ok(tidefs(), &["format", &v.url, "good", "--bucket", &bucket]);
    let setting = || {
        sh(&format!(
            "sqlite3 {} 'select value from jfs_setting'",
            db.display()
        ))
    };
    let before = setting();
    fails(&["format", &v.url, "other", "--bucket", &bucket], "--force");
    let status = ok(tidefs(), &["status", &v.url]);
    assert!(status.contains("\"Name\": \"good\""), "{status}");
    assert_eq!(
        setting(),
        before,
        "a refused format leaves the setting alone"
    );
}

#[test]
fn mount_rejects_bad_input() {
    require_fuse();
    let v = Volume::format("cli-mount", &[]);
    let file = v.dir.path().join("afile");
    std::fs::write(&file, b"x").expect("file");
    fails(&["mount", &v.url, "/nonexistent/mnt"], "mkdir -p");
    fails(
        &["mount", &v.url, &file.to_string_lossy()],
        "not a directory",
    );
    let mp = v.mountpoint("m").to_string_lossy().into_owned();
    fails(
        &["mount", "sqlite3:///nonexistent/x.db", &mp],
        "does not exist",
    );
    let empty = v.dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("empty db");
    fails(
        &["mount", &format!("sqlite3://{}", empty.display()), &mp],
        "not a formatted volume",
    );
    fails(
        &["mount", &v.url, &mp, "--attr-cache=-1"],
        "invalid --attr-cache",
    );
    fails(
        &["mount", &v.url, &mp, "--max-downloads", "0"],
        "0 is not in 1..=10000",
    );
    fails(
        &["mount", &v.url, &mp, "--io-retry-secs", "soon"],
        "invalid value 'soon'",
    );
    fails(
        &["mount", &v.url, &mp, "--upload-limit=fast"],
        "invalid value 'fast' for '--upload-limit",
    );
    fails(
        &["mount", &v.url, &mp, "--skip-dir-mtime", "soon"],
        "invalid value 'soon' for '--skip-dir-mtime",
    );
    let m = v.mount("m", &[]);
    fails(&["mount", &v.url, &mp], "already a mount point");
    drop(m);
    fails(&["umount", &mp], "not mounted");
    fails(&["status", "sqlite3:///nonexistent/x.db"], "does not exist");
    assert!(!Path::new("/nonexistent/x.db").exists());
}

#[test]
fn status_redacts_and_info_shows_slices() {
    let v = Volume::format("cli-info", &[]);
    let m = v.mount("m", &[]);
    std::fs::write(m.p("f"), bytes(3, 5_000_000)).expect("write");
    let info = ok(tidefs(), &["info", &m.p("f").to_string_lossy()]);
    assert!(info.contains("length: 5000000"), "{info}");
    assert!(info.contains("cli-info/chunks/0/0/"), "{info}");
    let status = ok(tidefs(), &["status", &v.url]);
    assert!(
        status.contains("\"Sessions\"") && status.contains(&*m.path.to_string_lossy()),
        "{status}"
    );
    let version = ok(tidefs(), &["version"]);
    assert!(version.starts_with("tidefs "));
}

#[test]
fn bench_runs_on_a_mount_and_cleans_up() {
    let v = Volume::format("cli-bench", &[]);
    let m = v.mount("m", &[]);
    let mp = m.path.to_string_lossy().into_owned();
    let out = ok(
        tidefs(),
        &[
            "bench",
            &mp,
            "--big-file-size",
            "8",
            "--small-file-count",
            "20",
            "--small-file-size",
            "16",
            "-p",
            "2",
        ],
    );
    for row in [
        "Write big file",
        "Read big file",
        "Write small file",
        "Read small file",
        "Stat file",
    ] {
        assert!(out.contains(row), "missing {row:?} in:\n{out}");
    }
    let left: Vec<_> = std::fs::read_dir(&m.path)
        .expect("readdir")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("__tidefs_benchmark")),
        "{left:?}"
    );
    fails(&["bench", "/nonexistent/dir"], "not a directory");
    m.unmount();
    v.fsck();
}

#[test]
fn server_urls_fail_clearly_without_showing_the_password() {
    let mp = tempfile::tempdir().expect("mountpoint");
    let mp = mp.path().to_string_lossy().into_owned();
    let bucket = tempfile::tempdir().expect("bucket");
    let bucket_s = bucket.path().to_string_lossy().into_owned();
    let cases = [
        // nothing listens on port 1: refused at once, said plainly
        ("mysql://u:s3cretpw@(127.0.0.1:1)/db", "Connection refused"),
        ("postgres://u:s3cretpw@127.0.0.1:1/db", "Connection refused"),
        ("mysql://u:s3cretpw@(127.0.0.1:x1)/db", "port"),
        (
            "postgres://u:s3cretpw@127.0.0.1:1/db?max_open_conns=lots",
            "whole number",
        ),
        ("mysql://u:s3cretpw@(127.0.0.1:1)/", "no database"),
    ];
    for (url, needle) in cases {
        for args in [
            vec!["status", url],
            vec!["mount", url, &mp],
            vec!["format", url, "vol", "--bucket", &bucket_s],
        ] {
            let t = std::time::Instant::now();
            let out = run(tidefs(), &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} should fail");
            assert!(
                err.contains(needle),
                "{args:?}: expected {needle:?} in: {err}"
            );
            assert!(
                !err.contains("s3cretpw"),
                "{args:?} shows the password: {err}"
            );
            assert!(
                t.elapsed().as_secs() < 10,
                "{args:?} took {:?}",
                t.elapsed()
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(bucket.path()).expect("bucket").count(),
        0,
        "nothing written to the bucket"
    );
}

/// `--upload-limit 80` (megabits per second: 10 MB/s) holds a 40 MiB write behind an fsync to
/// at least the time its bytes past the first burst (8 MiB) need at that rate; the data is
/// intact.
#[test]
fn upload_limit_paces_object_writes() {
    let v = Volume::format("cli-limit", &["--trash-days", "0"]);
    let m = v.mount("m", &["--upload-limit", "80"]);
    let data = bytes(9, 40 << 20);
    let t = std::time::Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(m.p("f")).expect("create");
        f.write_all(&data).expect("write");
        f.sync_all().expect("fsync");
    }
    let took = t.elapsed();
    // 32 MiB at 10 MB/s: 3.4 s; allow for the limiter's burst refilling while writing
    assert!(
        took >= std::time::Duration::from_millis(2500),
        "40 MiB went up in {took:?} under an 80 Mbit/s limit"
    );
    assert_eq!(std::fs::read(m.p("f")).expect("read"), data);
}

/// `config` shows the setting, refuses unsafe changes without `--force` (changing nothing),
/// and a mount takes a change up within one heartbeat.
#[test]
fn config_validates_changes_and_mounts_take_them_up() {
    let v = Volume::format("cfg", &[]);
    let shown = ok(tidefs(), &["config", &v.url]);
    assert!(shown.contains("\"Name\": \"cfg\""), "{shown}");
    let m = v.mount("c", &["--heartbeat", "1"]);
    for i in 0..5 {
        std::fs::write(m.p(&format!("f{i}")), b"x").expect("write");
    }
    // the mount stores its counters once a second
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fails(&["config", &v.url, "--inodes", "3"], "below the");
    fails(
        &["config", &v.url, "--enable-acl"],
        "ACLs are not supported",
    );
    let status = ok(tidefs(), &["status", &v.url]);
    assert!(
        !status.contains("\"Inodes\""),
        "a refused change changed the setting: {status}"
    );
    ok(
        tidefs(),
        &[
            "quota", "set", &v.url, "--path", "/q", "--inodes", "10", "--create",
        ],
    );
    fails(
        &["config", &v.url, "--dir-stats", "false"],
        "rely on directory statistics",
    );
    let out = ok(
        tidefs(),
        &["config", &v.url, "--capacity", "2", "--trash-days", "0"],
    );
    assert!(out.contains("capacity: unlimited -> 2.00 GiB"), "{out}");
    assert!(out.contains("trash-days: 1 -> 0"), "{out}");
    let mp = m.path.display().to_string();
    wait_for("the mount to show the new capacity", 10, || {
        sh(&format!("df -B1 --output=size {mp}")).contains("2147483648")
    });
    // juicefs reads the same setting
    let js = ok(&juicefs(), &["status", &v.url]);
    assert!(js.contains("\"Capacity\": 2147483648"), "{js}");
    ok(tidefs(), &["config", &v.url, "--inodes", "3", "--force"]);
    let mut n = 0;
    wait_for("creates to meet the new inode limit", 10, || {
        n += 1;
        std::fs::write(m.p(&format!("more{n}")), b"x").is_err()
    });
}
