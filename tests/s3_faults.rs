//! Object-store faults on real FUSE mounts: tidefs talks to the real S3 server (Ceph RGW)
//! through a TCP proxy in this file that injects faults — 503 SlowDown answers, connections cut
//! in the middle of a response, and outages (every connection dropped). Writes that were
//! acknowledged must read back intact; an outage longer than the retry budget must fail the
//! write loudly (EIO at fsync), never silently.
//!
//! The proxy is a test double of a faulty network path, not of S3: every request that gets
//! through is served by RGW. Compiled only when `TIDEFS_TEST_S3` names a bucket (tests/s3.rs).
#![cfg(tidefs_test_s3)]

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests here take the S3 server down (or look as if it were): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const PASS: u8 = 0;
const FLAKY: u8 = 1;
const DOWN: u8 = 2;

/// A fault-injecting TCP proxy in front of the S3 server.
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    faults: Arc<AtomicU64>,
    conns: Arc<AtomicU64>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let p = Proxy {
            port,
            mode: Arc::new(AtomicU8::new(PASS)),
            faults: Arc::new(AtomicU64::new(0)),
            conns: Arc::new(AtomicU64::new(0)),
            live: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let conns = p.conns.clone();
        let (mode, faults, live, stop) = (
            p.mode.clone(),
            p.faults.clone(),
            p.live.clone(),
            p.stop.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0u64;
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                n += 1;
                conns.store(n, Ordering::SeqCst);
                let m = mode.load(Ordering::SeqCst);
                if m == DOWN {
                    faults.fetch_add(1, Ordering::SeqCst);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if let Ok(c) = client.try_clone() {
                    if let Ok(mut l) = live.lock() {
                        l.push(c);
                    }
                }
                let (up, faults, mode) = (upstream.clone(), faults.clone(), mode.clone());
                std::thread::spawn(move || serve(client, &up, n, m == FLAKY, &faults, &mode));
            }
        });
        p
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        if mode == DOWN {
            // the server "dies": connections in use break too
            if let Ok(mut l) = self.live.lock() {
                for c in l.drain(..) {
                    let _ = c.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One client connection. Flaky mode: every 4th connection answers its first request with
/// `503 SlowDown`; every connection is cut (both ways, mid-request or mid-response) once it has
/// carried its byte budget, between 100 KiB and 16 MiB; and a connection whose response went
/// idle is closed, so the client keeps opening connections and keeps meeting faults.
fn serve(
    mut client: TcpStream,
    upstream: &str,
    n: u64,
    flaky: bool,
    faults: &Arc<AtomicU64>,
    mode: &Arc<AtomicU8>,
) {
    if flaky && n % 4 == 3 {
        faults.fetch_add(1, Ordering::SeqCst);
        let mut head = [0u8; 8192];
        let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = client.read(&mut head);
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>";
        let _ = write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let budget = if flaky {
        (100 << 10) + (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % (16 << 20)
    } else {
        u64::MAX
    };
    let moved = Arc::new(AtomicU64::new(0));
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(c_in), Ok(s_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // client -> server
    {
        let (moved, faults, mode) = (moved.clone(), faults.clone(), mode.clone());
        let (mut c_in, mut s_out) = (c_in, s_out);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(k) = c_in.read(&mut buf) {
                if k == 0 || mode.load(Ordering::SeqCst) == DOWN {
                    break;
                }
                let k = k.min(budget.saturating_sub(moved.load(Ordering::SeqCst)) as usize);
                if s_out.write_all(&buf[..k]).is_err() {
                    break;
                }
                if moved.fetch_add(k as u64, Ordering::SeqCst) + k as u64 >= budget {
                    faults.fetch_add(1, Ordering::SeqCst);
                    let _ = c_in.shutdown(Shutdown::Both);
                    let _ = s_out.shutdown(Shutdown::Both);
                    return;
                }
            }
            let _ = s_out.shutdown(Shutdown::Write);
        });
    }
    // server -> client
    let mut server = server;
    let _ = server.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 << 10];
    let mut answered = false;
    loop {
        if mode.load(Ordering::SeqCst) == DOWN {
            break;
        }
        match server.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                let k = k.min(budget.saturating_sub(moved.load(Ordering::SeqCst)) as usize);
                if client.write_all(&buf[..k]).is_err() {
                    break;
                }
                answered = true;
                if moved.fetch_add(k as u64, Ordering::SeqCst) + k as u64 >= budget {
                    faults.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if flaky && answered {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// A volume on S3 whose bucket URL goes through `proxy`.
fn volume_behind(proxy: &Proxy, what: &str) -> Volume {
    let real = std::env::var("TIDEFS_TEST_S3").expect("TIDEFS_TEST_S3");
    let bucket = real.rsplit('/').next().expect("bucket name").to_string();
    s3_volume_at(
        what,
        &format!("http://127.0.0.1:{}/{bucket}", proxy.port),
        &[],
    )
}

fn upstream() -> String {
    let real = std::env::var("TIDEFS_TEST_S3").expect("TIDEFS_TEST_S3");
    let host = real
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port");
    host.to_string()
}

#[test]
fn errors_and_cut_connections_are_retried_and_every_byte_reads_back() {
    let _one = serial();
    let proxy = Proxy::start(upstream());
    let v = volume_behind(&proxy, "s3flaky");
    // a few large files and many small ones: some hundred requests each way
    let mut sizes = vec![0usize, 5000, 1 << 20, (4 << 20) + 1, (9 << 20) + 77];
    sizes.extend((0..60).map(|i| 1000 + i * 3001));
    let files: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("f{i}"), bytes(90 + i as u64, *n)))
        .collect();
    proxy.set(FLAKY);
    let mut logs = String::new();
    {
        let m = v.mount("w", &["--cache-size", "0"]);
        for (name, d) in &files {
            // fsync, so an upload that failed is reported here (close errors are not seen
            // by Rust's File)
            let mut f = fs::File::create(m.p(name)).expect("create");
            f.write_all(d).expect("write through a flaky store");
            f.sync_all().expect("fsync through a flaky store");
        }
        logs += &fs::read_to_string(&m.log).expect("log");
    }
    sh("echo 3 > /proc/sys/vm/drop_caches");
    {
        let m = v.mount("r", &["--cache-size", "0"]);
        for (name, d) in &files {
            let got = fs::read(m.p(name)).expect("read through a flaky store");
            if &got != d {
                let info = ok(tidefs(), &["info", &m.p(name).to_string_lossy()]);
                panic!(
                    "{name}: {} bytes read, {} written\n{info}\n{logs}",
                    got.len(),
                    d.len()
                );
            }
        }
        logs += &fs::read_to_string(&m.log).expect("log");
    }
    let faults = proxy.faults.load(Ordering::SeqCst);
    let conns = proxy.conns.load(Ordering::SeqCst);
    assert!(
        faults >= 6,
        "only {faults} faults injected over {conns} connections"
    );
    assert!(
        logs.contains("retrying"),
        "faults were met and retried:\n{logs}"
    );
    proxy.set(PASS);
    let j = v.mount_juicefs("j");
    for (name, d) in &files {
        assert_eq!(&fs::read(j.p(name)).expect("juicefs read"), d, "{name}");
    }
    drop(j);
    assert!(v.fsck().contains(" 0 problem(s)"));
}

#[test]
fn a_short_outage_is_ridden_out_and_a_long_one_fails_the_write_loudly() {
    let _one = serial();
    let proxy = Proxy::start(upstream());
    let v = volume_behind(&proxy, "s3down");
    let m = v.mount("a", &["--cache-size", "0", "--io-retry-secs", "20"]);
    let before = bytes(95, 3 << 20);
    fs::write(m.p("before"), &before).expect("write");

    // an 8 s outage in the middle of a 24 MiB write: the write waits it out
    let during = bytes(96, 24 << 20);
    fs::write(v.dir.path().join("during.src"), &during).expect("source");
    let src = v.dir.path().join("during.src");
    let dst = m.p("during");
    let writer = std::thread::spawn(move || {
        Command::new("dd")
            .args([
                &format!("if={}", src.display()),
                &format!("of={}", dst.display()),
                "bs=1M",
                "conv=fsync",
                "status=none",
            ])
            .output()
            .expect("dd")
    });
    std::thread::sleep(Duration::from_millis(300));
    proxy.set(DOWN);
    std::thread::sleep(Duration::from_secs(8));
    proxy.set(PASS);
    let out = writer.join().expect("writer");
    assert!(
        out.status.success(),
        "an 8 s outage failed the write: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // an outage that does not end: the write fails at fsync with EIO, in bounded time
    proxy.set(DOWN);
    let started = Instant::now();
    let out = Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", m.p("lost").display()),
            "bs=1M",
            "count=6",
            "conv=fsync",
            "status=none",
        ])
        .output()
        .expect("dd");
    let took = started.elapsed();
    assert!(!out.status.success(), "a write to a dead store succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{err}");
    // within the 20 s patience plus one last try of the S3 client's own retries
    assert!(took < Duration::from_secs(60), "failing took {took:?}");
    proxy.set(PASS);

    // everything acknowledged reads back intact, from the store
    drop(m);
    sh("echo 3 > /proc/sys/vm/drop_caches");
    let m = v.mount("b", &["--cache-size", "0"]);
    assert_eq!(fs::read(m.p("before")).expect("read"), before);
    assert_eq!(fs::read(m.p("during")).expect("read"), during);
    drop(m);
    assert!(v.fsck().contains(" 0 problem(s)"));
}

#[test]
fn writeback_rides_out_a_dead_store_and_uploads_when_it_returns() {
    let _one = serial();
    let proxy = Proxy::start(upstream());
    let v = volume_behind(&proxy, "s3wb");
    let cache = v.dir.path().join("cache");
    let cache_s = cache.to_string_lossy().into_owned();
    let m = v.mount(
        "a",
        &[
            "--writeback",
            "--cache-dir",
            &cache_s,
            "--free-space-ratio",
            ROOMY,
            "--io-retry-secs",
            "3",
        ],
    );
    // the store goes away: writes are staged and acknowledged all the same
    proxy.set(DOWN);
    let files: Vec<(String, Vec<u8>)> = [(9usize << 20) + 5, 70_000, 1]
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("f{i}"), bytes(200 + i as u64, *n)))
        .collect();
    for (name, d) in &files {
        let mut f = fs::File::create(m.p(name)).expect("create");
        f.write_all(d).expect("write to a staged mount");
        f.sync_all().expect("fsync to a staged mount");
    }
    for (name, d) in &files {
        assert_eq!(&fs::read(m.p(name)).expect("read staged"), d, "{name}");
    }
    // the flush waits while uploads fail, and ends once the store is back
    let mp = m.path.to_string_lossy().into_owned();
    let flusher = std::thread::spawn(move || {
        Command::new(tidefs())
            .args(["umount", "--flush", &mp])
            .output()
            .expect("umount --flush")
    });
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        !flusher.is_finished(),
        "the flush ended with the store down"
    );
    let staged = sh(&format!(
        "find {} -path '*rawstaging*' -type f | wc -l",
        cache.display()
    ));
    assert!(
        staged.trim() != "0",
        "nothing staged while the store is down"
    );
    proxy.set(PASS);
    let out = flusher.join().expect("flusher");
    assert!(
        out.status.success(),
        "umount --flush: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the uploads met the outage (retried by the S3 client, and by the uploader when those
    // retries ran out first: which one depends on timing)
    let log = fs::read_to_string(&m.log).expect("log");
    assert!(
        log.contains("upload of a staged block failed")
            || log.contains("object store request failed"),
        "{log}"
    );
    drop(m);
    let j = v.mount_juicefs("j");
    for (name, d) in &files {
        assert_eq!(&fs::read(j.p(name)).expect("juicefs read"), d, "{name}");
    }
    drop(j);
    assert!(v.fsck().contains(" 0 problem(s)"));
}

#[test]
fn the_s3_server_restarted_under_a_workload_loses_nothing() {
    let _one = serial();
    // no proxy: the real server goes down and comes back (scripts/services.sh restart s3)
    let v = s3_direct_volume("s3restart");
    let m = v.mount("a", &["--cache-size", "0"]);
    let dir = m.p("");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut done = Vec::new();
        let mut i = 0u64;
        while !stop_w.load(Ordering::SeqCst) {
            let d = bytes(200 + i, (1 << 20) + i as usize * 1000);
            let p = dir.join(format!("f{i}"));
            let r =
                fs::File::create(&p).and_then(|mut f| f.write_all(&d).and_then(|_| f.sync_all()));
            done.push((p, d, r.is_ok()));
            i += 1;
        }
        done
    });
    std::thread::sleep(Duration::from_secs(1));
    let out = Command::new("bash")
        .args(["scripts/services.sh", "restart", "s3", "2"])
        .output()
        .expect("restart s3");
    assert!(
        out.status.success(),
        "restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let done = writer.join().expect("writer");
    assert!(
        done.iter().all(|(_, _, ok)| *ok),
        "writes failed across a restart shorter than the retry window"
    );
    let log = fs::read_to_string(&m.log).expect("log");
    assert!(log.contains("retrying"), "the restart was met:\n{log}");
    drop(m);
    sh("echo 3 > /proc/sys/vm/drop_caches");
    let m = v.mount("b", &["--cache-size", "0"]);
    for (p, d, _) in &done {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert_eq!(&fs::read(m.p(&name)).expect("read"), d, "{name}");
    }
    drop(m);
    assert!(v.fsck().contains(" 0 problem(s)"));
}

/// A volume on the S3 server itself (no proxy).
fn s3_direct_volume(what: &str) -> Volume {
    s3_volume_at(
        what,
        &std::env::var("TIDEFS_TEST_S3").expect("TIDEFS_TEST_S3"),
        &[],
    )
}
