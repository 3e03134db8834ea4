//! End-to-end checksums on real FUSE mounts (SQLite metadata, local-directory store): an object
//! the store corrupts or cuts short reads as EIO with a log line naming it, never as data.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

fn sums_rows(v: &Volume) -> u64 {
    v.sql("SELECT COUNT(*) FROM jfs_tidefs_sum")
        .trim()
        .parse()
        .expect("count")
}

#[test]
fn corrupted_or_truncated_objects_read_as_eio_and_are_named_in_the_log() {
    let v = Volume::format("e2e-integrity", &["--trash-days", "0"]);
    let big = bytes(71, (4 << 20) + 300_000);
    let cut = bytes(73, 300_000);
    let other = bytes(72, 200_000);
    let keys_of = |m: &Mount, name: &str| -> Vec<PathBuf> {
        let info = ok(tidefs(), &["info", &m.p(name).to_string_lossy()]);
        info.lines()
            .filter_map(|l| l.trim().strip_prefix("object "))
            .map(|k| v.bucket.join(k))
            .collect()
    };
    let (big_objs, cut_objs) = {
        let m = v.mount("w", &[]);
        fs::write(m.p("big"), &big).expect("write");
        fs::write(m.p("cut"), &cut).expect("write");
        fs::write(m.p("other"), &other).expect("write");
        (keys_of(&m, "big"), keys_of(&m, "cut"))
    };
    assert!(sums_rows(&v) >= 3, "every slice has its checksums");
    // the store flips one byte 1 MiB into big's largest object (same size), and loses the end
    // of cut's
    let first = big_objs
        .iter()
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("big's objects")
        .clone();
    let mut raw = fs::read(&first).expect("object");
    raw[(1 << 20) + 17] ^= 0x01;
    fs::write(&first, &raw).expect("corrupt");
    let tail = cut_objs.first().expect("cut's object").clone();
    let raw = fs::read(&tail).expect("object");
    fs::write(&tail, &raw[..raw.len() - 1000]).expect("truncate");
    sh("echo 3 > /proc/sys/vm/drop_caches");

    let m = v.mount("r", &["--cache-size", "0"]);
    let err = fs::read(m.p("big")).expect_err("a corrupted file must not read");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let mut f = fs::File::open(m.p("cut")).expect("open");
    let mut buf = vec![0u8; 4096];
    // the last 1 000 bytes are gone: a read there fails (a read of an intact, checked segment
    // before it may succeed, with the right bytes)
    f.seek(SeekFrom::Start(295_000)).expect("seek");
    let err = f.read_exact(&mut buf).expect_err("the cut object");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(fs::read(m.p("other")).expect("other file"), other);
    let log = fs::read_to_string(&m.log).expect("log");
    let first_key = first
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        log.lines()
            .any(|l| l.contains("failed its checksum") && l.contains(&first_key)),
        "the log names the corrupted object:\n{log}"
    );
    m.unmount();

    // fsck sees the cut object by its size; with --check-data it reads every object and finds
    // the flipped byte too, naming both
    let out = run(tidefs(), &["fsck", &v.url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        !text.contains(&first_key),
        "a HEAD cannot see a flipped byte:\n{text}"
    );
    let out = run(tidefs(), &["fsck", &v.url, "--check-data"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    let tail_key = tail
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    for key in [&first_key, &tail_key] {
        assert!(
            text.lines()
                .any(|l| l.contains("is corrupt") && l.contains(key.as_str())),
            "{key} reported:\n{text}"
        );
    }
    // every other object verified by our sums (how many there are depends on how the writer
    // cut the files into slices)
    let objects = number_before(&text, " objects:");
    assert_eq!(
        number_before(&text, " object(s) verified against tidefs checksums"),
        objects - 2,
        "{text}"
    );
    assert!(
        text.contains(", 0 against the CRC32C they were stored with, 0 by length only"),
        "{text}"
    );

    // deleting the files drops their checksums with their objects
    let m = v.mount("d", &[]);
    fs::remove_file(m.p("big")).expect("rm");
    fs::remove_file(m.p("other")).expect("rm");
    fs::remove_file(m.p("cut")).expect("rm");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sums_rows(&v) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "checksums left behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    m.unmount();
}

#[test]
fn volumes_without_checksums_read_as_before_and_gain_them_for_new_writes() {
    // a volume juicefs formatted and wrote has no checksum table
    let v = Volume::new_unformatted("e2e-integrity-jfs");
    let bucket = v.bucket.to_string_lossy().into_owned();
    ok(
        &juicefs(),
        &[
            "format",
            "--trash-days",
            "0",
            "--bucket",
            &bucket,
            &v.url,
            &v.name,
        ],
    );
    let old = bytes(73, 3 << 20);
    {
        let j = v.mount_juicefs("j");
        fs::write(j.p("old"), &old).expect("juicefs write");
    }
    let new = bytes(74, 1 << 20);
    {
        let m = v.mount("t", &[]);
        assert_eq!(fs::read(m.p("old")).expect("read juicefs data"), old);
        fs::write(m.p("new"), &new).expect("write");
    }
    assert_eq!(sums_rows(&v), 1, "tidefs's own slice has checksums");
    let j = v.mount_juicefs("j2");
    assert_eq!(fs::read(j.p("new")).expect("juicefs reads it"), new);
    j.unmount();
    v.juicefs_fsck();
}
