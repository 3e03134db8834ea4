//! The S3 tier: volumes whose data lives in a real S3 server (Ceph RGW, started by
//! `scripts/ceph.sh start`, which `.ci/run` and `make test` use). Compiled only when
//! `TIDEFS_TEST_S3` names a bucket URL (see build.rs): a run without the server has fewer tests,
//! not tests that pass without running; a URL that is given but unreachable fails them.
#![cfg(tidefs_test_s3)]

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn bucket() -> String {
    std::env::var("TIDEFS_TEST_S3").expect("TIDEFS_TEST_S3 (scripts/ceph.sh env)")
}

fn keys() -> (String, String) {
    s3_keys()
}

/// The test bucket, opened directly (to look at or damage objects as the store would).
fn open_bucket() -> tidefs_chunk::S3Bucket {
    let (ak, sk) = keys();
    tidefs_chunk::S3Bucket::open(&tidefs_chunk::S3Config {
        bucket_url: bucket(),
        access_key: ak,
        secret_key: sk,
        ..Default::default()
    })
    .expect("bucket")
}

/// A volume on S3 formatted by tidefs.
fn s3_volume(what: &str, extra: &[&str]) -> Volume {
    s3_volume_at(what, &bucket(), extra)
}

#[test]
fn files_round_trip_through_s3_and_juicefs_reads_them() {
    let v = s3_volume("s3rt", &[]);
    let data: Vec<(String, Vec<u8>)> = [0usize, 1, 4095, 4096, 65_537, 4 << 20, (9 << 20) + 3]
        .iter()
        .enumerate()
        .map(|(i, len)| (format!("f{i}"), bytes(i as u64 + 7, *len)))
        .collect();
    {
        let m = v.mount("w", &[]);
        for (name, d) in &data {
            fs::write(m.p(name), d).expect("write");
        }
        // read back through the same mount (memory cache) and at an offset (ranged GET)
        assert_eq!(fs::read(m.p("f6")).expect("read"), data[6].1);
        let part = sh(&format!(
            "dd if={} bs=4096 skip=1000 count=3 status=none | md5sum",
            m.p("f6").display()
        ));
        let want = sh(&format!(
            "printf '' | python3 -c \"import sys,hashlib; d=open('{}','rb').read()[4096*1000:4096*1003]; print(hashlib.md5(d).hexdigest() + '  -')\"",
            m.p("f6").display()
        ));
        assert_eq!(part.trim(), want.trim());
    }
    // a cold mount reads every byte from the object store
    sh("echo 3 > /proc/sys/vm/drop_caches");
    {
        let m = v.mount("r", &[]);
        for (name, d) in &data {
            assert_eq!(&fs::read(m.p(name)).expect("cold read"), d, "{name}");
        }
    }
    // the juicefs binary decrypts the stored secret key and reads the same bytes
    {
        let j = v.mount_juicefs("j");
        for (name, d) in &data {
            assert_eq!(&fs::read(j.p(name)).expect("juicefs read"), d, "{name}");
        }
    }
    assert!(v.fsck().contains(" 0 problem(s)"));
    let jf = v.juicefs_fsck();
    assert!(!jf.contains("lost") && !jf.contains("broken"), "{jf}");
}

#[test]
fn tidefs_mounts_a_volume_juicefs_formatted_on_s3() {
    let mut v = Volume::new_unformatted("s3jf");
    v.name = unique_volume_name(&v, "s3jf");
    v.s3 = true;
    let (ak, sk) = keys();
    ok(
        &juicefs(),
        &[
            "format",
            "--storage",
            "s3",
            "--bucket",
            &bucket(),
            "--access-key",
            &ak,
            "--secret-key",
            &sk,
            "--trash-days",
            "0",
            &v.url,
            &v.name,
        ],
    );
    let d = bytes(3, (5 << 20) + 11);
    {
        let j = v.mount_juicefs("j");
        fs::write(j.p("from-juicefs"), &d).expect("juicefs write");
    }
    {
        let m = v.mount("t", &[]);
        assert_eq!(fs::read(m.p("from-juicefs")).expect("tidefs read"), d);
        fs::write(m.p("from-tidefs"), &d[..1000]).expect("tidefs write");
    }
    let j = v.mount_juicefs("j2");
    assert_eq!(
        fs::read(j.p("from-tidefs")).expect("juicefs read"),
        &d[..1000]
    );
    drop(j);
    assert!(v.fsck().contains(" 0 problem(s)"));
}

#[test]
fn status_never_shows_the_secret_key() {
    let v = s3_volume("s3st", &[]);
    let (_, sk) = keys();
    let st = ok(tidefs(), &["status", &v.url]);
    assert!(st.contains("\"SecretKey\": \"removed\""), "{st}");
    assert!(!st.contains(&sk), "secret key shown by status");
    // nor is it stored in clear text
    let stored = v.sql("SELECT value FROM jfs_setting WHERE name = 'format'");
    assert!(!stored.contains(&sk), "secret key stored in clear text");
    assert!(stored.contains("\"KeyEncrypted\": true"), "{stored}");
}

#[test]
fn bad_s3_settings_are_refused_and_store_nothing() {
    let (ak, sk) = keys();
    let good = bucket();
    let (endpoint, _) = good.rsplit_once('/').expect("bucket URL");
    let missing = format!("{endpoint}/no-such-bucket-tidefs");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--bucket".into(), "127.0.0.1:7480/b".into()],
            "http(s)://host:port/bucket",
        ),
        (vec![], "--storage s3 needs --bucket"),
        (
            vec!["--bucket".into(), missing.clone()],
            "the bucket does not exist",
        ),
        (
            vec!["--bucket".into(), "http://127.0.0.1:9/b".into()],
            "cannot be reached",
        ),
    ];
    for (extra, want) in cases {
        let v = Volume::new_unformatted("s3bad");
        let mut args: Vec<String> = vec![
            "format".into(),
            v.url.clone(),
            "s3bad".into(),
            "--storage".into(),
            "s3".into(),
        ];
        args.extend(extra.iter().cloned());
        let out = Command::new(tidefs())
            .args(&args)
            .env("ACCESS_KEY", &ak)
            .env("SECRET_KEY", &sk)
            .output()
            .expect("run format");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!err.contains(&sk), "secret key in an error message");
        assert!(
            !v.dir.path().join("meta.db").exists(),
            "{extra:?}: a database was created"
        );
    }
    // a wrong secret key
    let v = Volume::new_unformatted("s3bad");
    let out = Command::new(tidefs())
        .args([
            "format",
            &v.url,
            "s3bad",
            "--storage",
            "s3",
            "--bucket",
            &good,
        ])
        .env("ACCESS_KEY", &ak)
        .env("SECRET_KEY", "not-the-key")
        .output()
        .expect("run format");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong secret key was accepted");
    assert!(
        err.contains("--secret-key") || err.contains("refused"),
        "{err}"
    );
    assert!(!v.dir.path().join("meta.db").exists());
}

#[test]
fn gc_lists_the_bucket_and_deletes_only_leaked_objects() {
    let v = s3_volume("s3gc", &[]);
    let keep = bytes(61, (4 << 20) + 5);
    {
        let m = v.mount("w", &[]);
        fs::write(m.p("keep"), &keep).expect("write");
        fs::write(m.p("lost"), bytes(62, 3 << 20)).expect("write");
    }
    // the metadata forgets "lost" without freeing its data: its one object is leaked
    let ino = v
        .sql("SELECT inode FROM jfs_edge WHERE name = X'6c6f7374'")
        .trim()
        .to_string();
    let slices = v.sql(&format!(
        "SELECT hex(slices) FROM jfs_chunk WHERE inode = {ino}"
    ));
    // every record's slice id (24-byte records, id at bytes 4..12; a writer under load may have
    // committed the file as more than one slice)
    let hex = slices.trim();
    let ids: Vec<String> = (0..hex.len() / 48)
        .map(|r| {
            u64::from_str_radix(&hex[r * 48 + 8..r * 48 + 24], 16)
                .expect("slice id")
                .to_string()
        })
        .collect();
    v.sql(&format!(
        "DELETE FROM jfs_edge WHERE inode = {ino}; DELETE FROM jfs_node WHERE inode = {ino}; \
         DELETE FROM jfs_chunk WHERE inode = {ino}; DELETE FROM jfs_chunk_ref WHERE chunkid IN ({})",
        ids.join(",")
    ));
    // just written: left alone by default (RGW's Last-Modified is read), leaked without an age
    let out = ok(tidefs(), &["gc", &v.url]);
    assert!(
        out.contains(" (4.00 MiB) in use, 0 (0 B) leaked, ") && out.contains(" (3.00 MiB) younger"),
        "{out}"
    );
    let out = ok(tidefs(), &["gc", &v.url, "--min-age", "0", "--delete"]);
    assert!(
        out.contains(" (3.00 MiB) leaked objects, 0 failed"),
        "{out}"
    );
    let out = ok(tidefs(), &["gc", &v.url, "--min-age", "0"]);
    assert!(
        out.contains(" (4.00 MiB) in use, 0 (0 B) leaked, 0 (0 B) younger"),
        "{out}"
    );
    let m = v.mount("r", &[]);
    assert_eq!(fs::read(m.p("keep")).expect("read"), keep);
    drop(m);
    assert!(v.fsck().contains(" 0 problem(s)"));
}

#[test]
fn destroy_deletes_every_object_of_the_volume_and_no_other() {
    let v = s3_volume("s3destroy", &[]);
    let other = s3_volume("s3keep", &[]);
    let kept = bytes(71, (4 << 20) + 9);
    {
        let m = v.mount("w", &[]);
        fs::write(m.p("big"), bytes(72, (9 << 20) + 3)).expect("write");
        fs::write(m.p("small"), b"x").expect("write");
        let o = other.mount("o", &[]);
        fs::write(o.p("kept"), &kept).expect("write");
    }
    let status = ok(tidefs(), &["status", &v.url]);
    let uuid = serde_json::from_str::<serde_json::Value>(&status).expect("status json")["Setting"]
        ["UUID"]
        .as_str()
        .expect("uuid")
        .to_string();
    let out = ok(tidefs(), &["destroy", &v.url, &uuid]);
    // 3 + 1 blocks and juicefs_uuid
    assert!(out.contains("deleted 5 objects ("), "{out}");
    assert!(out.contains("destroyed"), "{out}");
    // the same name formatted again in the bucket (possible only once `juicefs_uuid` is gone)
    // finds no block of the old volume
    let mut again = Volume::new_unformatted("s3destroy");
    again.name = v.name.clone();
    again.s3 = true;
    format_s3(&again, &bucket(), &[]);
    let out = ok(tidefs(), &["gc", &again.url, "--min-age", "0"]);
    assert!(
        out.contains("objects: 0 (0 B) in use, 0 (0 B) leaked, 0 (0 B) younger"),
        "{out}"
    );
    // the other volume in the bucket is untouched
    let o = other.mount("o2", &[]);
    assert_eq!(fs::read(o.p("kept")).expect("read"), kept);
}

#[test]
fn small_direct_reads_at_and_inside_blocks_read_the_right_bytes_cold() {
    // 4 KiB O_DIRECT reads on a cold cache take the ranged-GET path; the one at a block's
    // first byte must not be mistaken for a read of the whole object
    let v = s3_volume("s3small", &[]);
    let data = bytes(81, (9 << 20) + 77);
    {
        let m = v.mount("w", &[]);
        fs::write(m.p("f"), &data).expect("write");
    }
    sh("echo 3 > /proc/sys/vm/drop_caches");
    let cache = v.dir.path().join("cache-small");
    let cache_s = cache.to_string_lossy().into_owned();
    let m = v.mount("r", &["--cache-dir", &cache_s]);
    for off in [0usize, 4 << 20, (4 << 20) + 8192, 8 << 20, (9 << 20) - 4096] {
        let got = sh(&format!(
            "dd if={} bs=4096 skip={} count=1 iflag=direct status=none | od -An -tx1 -v | tr -d ' \\n'",
            m.p("f").display(),
            off / 4096
        ));
        let want: String = data[off..off + 4096]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got.trim(), want, "4 KiB at {off}");
    }
    drop(m);
    assert!(v.fsck().contains(" 0 problem(s)"));
}

/// Every block object carries the CRC32C of its stored (here: lz4-compressed) bytes in the user
/// metadata field JuiceFS uses; juicefs writes the same field (the oracle for its format) and
/// checks it when it reads an object whole, which it does reading this volume's blocks.
/// Every block object carries the CRC32C of its stored bytes in its metadata (juicefs checks
/// it; tidefs checks it for juicefs's slices): compressed (computed over the compressed bytes),
/// uncompressed (combined from the block's checksums, not a second pass), uploaded from the
/// `--writeback` staging area (combined from the staged file's trailer), and as juicefs writes.
#[test]
fn objects_carry_the_crc32c_that_juicefs_checks() {
    for (what, extra) in [
        ("s3crc", &["--compress", "lz4"][..]),
        ("s3crc-raw", &[][..]),
    ] {
        let v = s3_volume(what, extra);
        let data = bytes(31, (9 << 20) + 3);
        {
            let m = v.mount("w", &[]);
            fs::write(m.p("t"), &data).expect("write");
        }
        let wdata = bytes(33, (6 << 20) + 5);
        {
            let cache = v.dir.path().join("wb-cache");
            let m = v.mount(
                "wb",
                &[
                    "--writeback",
                    "--cache-dir",
                    &cache.to_string_lossy(),
                    "--free-space-ratio",
                    ROOMY,
                ],
            );
            fs::write(m.p("staged"), &wdata).expect("write staged");
            ok(tidefs(), &["umount", "--flush", &m.path.to_string_lossy()]);
        }
        let jdata = bytes(32, (5 << 20) + 1);
        {
            let j = v.mount_juicefs("j");
            assert_eq!(fs::read(j.p("t")).expect("juicefs read"), data);
            assert_eq!(fs::read(j.p("staged")).expect("juicefs read"), wdata);
            fs::write(j.p("by-juicefs"), &jdata).expect("juicefs write");
        }
        {
            let m = v.mount("r", &[]);
            assert_eq!(fs::read(m.p("by-juicefs")).expect("read"), jdata);
        }
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let checked = rt.block_on(async {
            let b = open_bucket();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            b.list(&format!("{}/chunks/", v.name), tx);
            let mut n = 0;
            while let Some(o) = rx.recv().await {
                let o = o.expect("list");
                let body = b.get(&o.key).await.expect("get");
                let stored = b.stored_crc32c(&o.key).await.expect("head");
                assert_eq!(
                    stored,
                    Some(crc32c::crc32c(&body)),
                    "{}: the crc32c metadata does not match the stored bytes ({what})",
                    o.key
                );
                n += 1;
            }
            n
        });
        // 3 blocks written by tidefs, 2 uploaded from staging, 2 by juicefs
        assert!(checked >= 7, "only {checked} block objects listed ({what})");
    }
}

/// Slices juicefs wrote have no checksums of tidefs's; tidefs checks their blocks against the
/// CRC32C their objects were stored with (the `crc32c` field juicefs sends, read from the GET's
/// own headers). An object whose bytes changed under its field reads as EIO, the log names it,
/// and the other blocks read as they were: uncompressed with a disk cache (the whole-object
/// CRC combined from the cache's per-segment CRCs), lz4 without one (a CRC over the stored bytes).
#[test]
fn blocks_juicefs_wrote_are_checked_against_the_crc32c_they_were_stored_with() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let b = open_bucket();
    for (compress, cache) in [("none", "1024"), ("lz4", "0")] {
        let v = s3_volume(&format!("s3jcrc{compress}"), &["--compress", compress]);
        let bad = bytes(41, (6 << 20) + 5);
        let good = bytes(42, (5 << 20) + 7);
        let keys = {
            let j = v.mount_juicefs("j");
            fs::write(j.p("bad"), &bad).expect("juicefs write");
            fs::write(j.p("good"), &good).expect("juicefs write");
            drop(j);
            let m = v.mount("i", &[]);
            let info = ok(tidefs(), &["info", &m.p("bad").to_string_lossy()]);
            info.lines()
                .filter_map(|l| l.trim().strip_prefix("object "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        // block 0 of "bad" (4 MiB, named by its length): one byte flips in the store, the
        // CRC32C field stays what juicefs stored
        let first = keys
            .iter()
            .find(|k| k.ends_with("_0_4194304"))
            .unwrap_or_else(|| panic!("bad's first block among {keys:?}"))
            .clone();
        let full = if first.starts_with(&format!("{}/", v.name)) {
            first.clone()
        } else {
            format!("{}/{first}", v.name)
        };
        rt.block_on(async {
            let stored = b.stored_crc32c(&full).await.expect("head");
            let want = stored.expect("juicefs stores a crc32c field");
            let mut raw = b.get(&full).await.expect("get").to_vec();
            assert_eq!(
                crc32c::crc32c(&raw),
                want,
                "the field is the CRC of the bytes"
            );
            let at = raw.len() / 2;
            raw[at] ^= 0x10;
            b.put_with_crc(&full, raw.into(), want).await.expect("put");
        });
        let m = v.mount("r", &["--cache-size", cache]);
        assert_eq!(
            fs::read(m.p("good")).expect("an intact file reads"),
            good,
            "{compress}"
        );
        let err = fs::read(m.p("bad")).expect_err("a corrupted object must not read as data");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{compress}: {err}");
        // block 1 is intact and reads
        let mut f = fs::File::open(m.p("bad")).expect("open");
        let mut tail = vec![0u8; 2 << 20];
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(4 << 20)).expect("seek");
        std::io::Read::read_exact(&mut f, &mut tail).expect("block 1");
        assert_eq!(tail, bad[4 << 20..(6 << 20)], "{compress}");
        let log = fs::read_to_string(&m.log).expect("log");
        let name = first.rsplit('/').next().expect("key name");
        assert!(
            log.lines()
                .any(|l| l.contains("does not match the CRC32C") && l.contains(name)),
            "{compress}: the log names the corrupted object:\n{log}"
        );
        m.unmount();
        // fsck --check-data reads every object from the store and finds the same one
        let out = run(tidefs(), &["fsck", &v.url, "--check-data", "-p", "4"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{compress}: fsck must fail:\n{text}");
        let bad_lines: Vec<&str> = text.lines().filter(|l| l.contains("is corrupt")).collect();
        assert_eq!(bad_lines.len(), 1, "{compress}:\n{text}");
        assert!(bad_lines[0].contains(name), "{compress}:\n{text}");
        // every other object intact, each checked against its stored CRC32C
        let objects = number_before(&text, " objects:");
        assert_eq!(
            number_before(&text, " against the CRC32C they were stored with"),
            objects - 1,
            "{compress}:\n{text}"
        );
        assert!(
            text.contains("0 object(s) verified against tidefs checksums,")
                && text.contains(", 0 by length only"),
            "{compress}:\n{text}"
        );
    }
}
