//! Readahead on a real FUSE mount (SQLite metadata, local-directory store): windows open for
//! sequential readers and not for random ones, and the bytes fetched ahead by many readers at
//! once stay within the mount's bound (half the memory cache), watched through the mount's
//! control channel while the readers run.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `stats` answer of the mount of volume `v`.
fn stats(v: &Volume) -> serde_json::Value {
    let st = VolumeRef { url: v.url.clone() }.stats();
    assert!(!st.is_null(), "no stats from the mount");
    st
}

fn started(v: &Volume) -> u64 {
    stats(v)["readahead"]["started"].as_u64().expect("started")
}

#[test]
fn sequential_readers_read_ahead_within_the_memory_bound() {
    let v = Volume::format("e2e-ra", &[]);
    let files: Vec<Vec<u8>> = (0..4).map(|i| bytes(40 + i, 40 << 20)).collect();
    {
        let m = v.mount("w", &[]);
        for (i, d) in files.iter().enumerate() {
            std::fs::write(m.p(&format!("f{i}")), d).expect("write");
        }
    }
    sh("echo 3 > /proc/sys/vm/drop_caches");
    // 32 MiB of memory cache: windows of at most 4 blocks, 16 MiB fetched ahead at once
    let m = v.mount("r", &["--mem-cache", "32"]);
    let st = stats(&v);
    assert_eq!(st["readahead"]["max_window_blocks"], 4, "{st}");

    // small reads at scattered offsets: no readahead
    let mut f = std::fs::File::open(m.p("f0")).expect("open");
    let mut buf = vec![0u8; 4096];
    for k in 1..40u64 {
        let off = (k * 7_777_777) % ((40 << 20) - 4096);
        f.seek(SeekFrom::Start(off)).expect("seek");
        f.read_exact(&mut buf).expect("read");
        assert_eq!(&buf[..], &files[0][off as usize..off as usize + 4096]);
    }
    assert_eq!(started(&v), 0, "random reads started readahead");

    // four sequential readers at once, watched
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, url) = (done.clone(), v.url.clone());
        let v2 = VolumeRef { url };
        std::thread::spawn(move || {
            let mut most = 0u64;
            while !done.load(Ordering::SeqCst) {
                let st = v2.stats();
                most = most.max(st["readahead"]["inflight_bytes"].as_u64().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let p = m.p(&format!("f{i}"));
            std::thread::spawn(move || std::fs::read(p).expect("sequential read"))
        })
        .collect();
    let got: Vec<Vec<u8>> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    done.store(true, Ordering::SeqCst);
    let most = watcher.join().expect("watcher");
    for (g, d) in got.iter().zip(&files) {
        assert!(g == d, "a sequential reader read wrong bytes");
    }
    let n = started(&v);
    eprintln!("readahead: {n} blocks started, at most {most} bytes in flight");
    assert!(
        n >= 8,
        "only {n} blocks read ahead for 160 MiB read in sequence"
    );
    assert!(
        most <= 16 << 20,
        "{most} bytes fetched ahead at once, over the 16 MiB bound"
    );
    m.unmount();
}

/// Eight processes reading one file whole at once (a model loaded by several workers): the
/// page cache they share makes each one's reads skip what the others brought in, so through
/// its own handle each reads "randomly"; the mount must still see one sequential reader and
/// fetch every block once, not ranges of blocks already on their way (that was 15 % more
/// bytes from the store with eight readers).
#[test]
fn readers_sharing_a_file_fetch_each_block_once() {
    let v = Volume::format("e2e-ra-shared", &[]);
    let size = 96usize << 20;
    let data = bytes(77, size);
    {
        let m = v.mount("w", &[]);
        std::fs::write(m.p("model"), &data).expect("write");
    }
    sh("echo 3 > /proc/sys/vm/drop_caches");
    let m = v.mount("r", &[]);
    let before = stats(&v)["store"]["get_bytes"].as_u64().expect("get_bytes");
    let path = m.p("model");
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let p = path.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::File::open(p).expect("open");
                let mut out = Vec::with_capacity(96 << 20);
                let mut buf = vec![0u8; 4 << 20];
                loop {
                    let n = f.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                out
            })
        })
        .collect();
    for r in readers {
        assert!(
            r.join().expect("reader") == data,
            "a reader read wrong bytes"
        );
    }
    // the same counters as `tidefs stats --json` prints them
    let out = ok(tidefs(), &["stats", "--json", &m.path.to_string_lossy()]);
    let st: serde_json::Value = serde_json::from_str(&out).expect("stats --json");
    let fetched = st["store"]["get_bytes"].as_u64().expect("get_bytes") - before;
    eprintln!("8 readers of {size} bytes fetched {fetched} bytes: {st}");
    // a little slack: the first reads of each handle, before the streams meet (0-1.5 MiB
    // seen; 5-11 MiB when each handle's reads counted alone)
    assert!(
        fetched <= size as u64 + (3 << 20),
        "{fetched} bytes fetched from the store for one {size}-byte file"
    );
    // the live view: a header, then one line of rates per interval
    let out = ok(
        tidefs(),
        &["stats", "-c", "2", "-i", "0.2", &m.path.to_string_lossy()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].contains("GET MiB/s"), "{out}");
    let first = lines[3].split_whitespace().next().unwrap_or("");
    assert!(first.parse::<f64>().is_ok(), "{out}");
    let outside = run(tidefs(), &["stats", "/tmp"]);
    assert!(!outside.status.success());
    assert!(
        String::from_utf8_lossy(&outside.stderr).contains("not inside a tidefs mount"),
        "{outside:?}"
    );
    m.unmount();
}

/// Just enough of a volume to find its mount's control channel from another thread.
struct VolumeRef {
    url: String,
}

impl VolumeRef {
    fn stats(&self) -> serde_json::Value {
        let Ok(rd) = std::fs::read_dir("/run/tidefs") else {
            return serde_json::Value::Null;
        };
        let rec = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .find(|r| r["meta_url"].as_str() == Some(self.url.as_str()));
        let Some(sock) = rec.as_ref().and_then(|r| r["control"].as_str()) else {
            return serde_json::Value::Null;
        };
        let Ok(conn) = UnixStream::connect(sock) else {
            return serde_json::Value::Null;
        };
        let Ok(mut w) = conn.try_clone() else {
            return serde_json::Value::Null;
        };
        if writeln!(w, "{}", serde_json::json!({"op": "stats"})).is_err() {
            return serde_json::Value::Null;
        }
        let mut line = String::new();
        if BufReader::new(conn).read_line(&mut line).is_err() {
            return serde_json::Value::Null;
        }
        serde_json::from_str::<serde_json::Value>(&line)
            .map(|v| v["done"].clone())
            .unwrap_or(serde_json::Value::Null)
    }
}
