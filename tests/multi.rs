//! Many clients, one volume: two tidefs mounts (separate processes, separate mountpoints) of one
//! volume behave as one filesystem, on every engine.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

per_engine!(
    closed_files_and_metadata_changes_reach_the_other_mount,
    locks_exclude_across_mounts_and_wake_promptly,
    one_exclusive_create_wins_across_mounts,
    hot_directory_churn_on_two_mounts_loses_nothing,
    a_killed_client_loses_its_session_locks_and_open_files,
    read_ahead_entries_stay_within_the_ttl,
);

/// Poll `f` until it holds, for up to `secs`.
fn eventually(secs: f64, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn closed_files_and_metadata_changes_reach_the_other_mount(e: Engine) {
    let v = Volume::format_on(e, "multi-a", &[]);
    let a = v.mount("a", &[]);
    let b = v.mount("b", &[]);
    // close-to-open: a file closed on one mount is read whole on the other after open
    let first = bytes(1, (5 << 20) + 123);
    fs::write(a.p("f"), &first).expect("write on a");
    assert_eq!(fs::read(b.p("f")).expect("read on b"), first);
    // overwritten (same length) on a: b's cached pages must not survive the next open
    let second = bytes(2, first.len());
    fs::write(a.p("f"), &second).expect("overwrite on a");
    assert_eq!(fs::read(b.p("f")).expect("reread on b"), second);
    // appended on b, read on a
    sh(&format!("printf tail >> {}", b.p("f").display()));
    let mut want = second.clone();
    want.extend_from_slice(b"tail");
    assert_eq!(fs::read(a.p("f")).expect("read on a"), want);
    // rename, unlink and chmod on a are seen on b within the cache TTLs (1 s)
    fs::create_dir(a.p("d")).expect("mkdir");
    fs::rename(a.p("f"), a.p("d/g")).expect("rename");
    eventually(3.0, "rename seen", || {
        !b.p("f").exists() && fs::read(b.p("d/g")).map(|d| d == want).unwrap_or(false)
    });
    fs::set_permissions(a.p("d/g"), fs::Permissions::from_mode(0o600)).expect("chmod");
    eventually(3.0, "chmod seen", || {
        fs::metadata(b.p("d/g"))
            .map(|m| m.permissions().mode() & 0o777 == 0o600)
            .unwrap_or(false)
    });
    fs::remove_file(a.p("d/g")).expect("unlink");
    eventually(3.0, "unlink seen", || !b.p("d/g").exists());
    assert_eq!(fs::read_dir(b.p("d")).expect("readdir").count(), 0);
    drop((a, b));
    assert!(v.fsck_stats().contains(" 0 problem(s)"));
}

/// Run a shell command in the background, in a process group of its own (so everything it
/// starts can be stopped with [`kill_group`]); returns the child.
fn spawn_sh(script: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .spawn()
        .expect("spawn sh")
}

/// Kill a child of [`spawn_sh`] and every process it started.
fn kill_group(child: &mut std::process::Child) {
    let _ = run("kill", &["-9", "--", &format!("-{}", child.id())]);
    let _ = child.wait();
}

fn locks_exclude_across_mounts_and_wake_promptly(e: Engine) {
    let v = Volume::format_on(e, "multi-l", &[]);
    let a = v.mount("a", &[]);
    let b = v.mount("b", &[]);
    fs::write(a.p("f"), b"x").expect("create");
    let (fa, fb) = (a.p("f"), b.p("f"));
    let (fa, fb) = (fa.display(), fb.display());

    // flock: held on a for 1.5 s; b fails at once without waiting, and when waiting is woken
    // promptly after the release
    let holder = spawn_sh(&format!(
        "flock -x {fa} -c 'touch {fa}.held; sleep 1.5'; rm -f {fa}.held"
    ));
    eventually(5.0, "flock taken on a", || a.p("f.held").exists());
    let held_at = Instant::now();
    let out = run("flock", &["-n", "-x", &fb.to_string(), "-c", "true"]);
    assert!(
        !out.status.success(),
        "flock -n on b must fail while a holds it"
    );
    ok("flock", &["-x", &fb.to_string(), "-c", "true"]);
    let since = held_at.elapsed();
    let mut holder = holder;
    let _ = holder.wait();
    // the holder releases ~1.5 s after taking the lock (seen up to 50 ms late here)
    assert!(
        since > Duration::from_millis(1300) && since < Duration::from_millis(1500 + 400),
        "b got the lock {since:?} after a took it for 1.5 s"
    );
    // shared locks coexist across mounts
    ok(
        "flock",
        &[
            "-s",
            &fa.to_string(),
            "-c",
            &format!("flock -n -s {fb} -c true"),
        ],
    );

    // POSIX byte ranges: conflicting ranges exclude, disjoint ones do not, F_GETLK reports the
    // holder, and flock and fcntl locks are independent
    let script = format!(
        r#"
import fcntl, os, struct, subprocess, sys, time
a = open("{fa}", "r+")
fcntl.lockf(a, fcntl.LOCK_EX, 100, 0)
child = r'''
import fcntl, struct, sys, time
b = open("{fb}", "r+")
try:
    fcntl.lockf(b, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 50)
    sys.exit("overlapping range granted")
except OSError as e:
    assert e.errno in (11, 13), e
fcntl.lockf(b, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 100)
q = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 10, 0)
r = struct.unpack("hhqqi", fcntl.fcntl(b, fcntl.F_GETLK, q))
assert r[0] == fcntl.F_WRLCK and r[2] == 0 and r[3] == 100, r
t = time.time()
fcntl.lockf(b, fcntl.LOCK_EX, 10, 0)   # waits for the parent's release
print("waited %.3f" % (time.time() - t))
'''
p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
time.sleep(1.0)
fcntl.lockf(a, fcntl.LOCK_UN, 100, 0)
out, _ = p.communicate(timeout=30)
assert p.returncode == 0, p.returncode
w = float(out.split()[1])
assert 0.5 < w < 1.5, out
print("ok", w)
"#
    );
    let out = ok("python3", &["-c", &script]);
    assert!(out.starts_with("ok"), "{out}");
    ok(
        "sh",
        &[
            "-c",
            &format!(
                "python3 -c 'import fcntl; f=open(\"{fa}\",\"r+\"); fcntl.lockf(f, fcntl.LOCK_EX); import subprocess; subprocess.check_call([\"flock\",\"-n\",\"-x\",\"{fb}\",\"-c\",\"true\"])'"
            ),
        ],
    );
    // nothing is left in the lock tables once every holder closed
    drop((a, b));
    assert_eq!(
        v.sql(&format!("SELECT COUNT(*) FROM {}", v.table("flock"))),
        "0"
    );
    assert_eq!(
        v.sql(&format!("SELECT COUNT(*) FROM {}", v.table("plock"))),
        "0"
    );
}

/// A python program that tries `O_CREAT|O_EXCL` on names `n0..n{count}` under `dir` and prints
/// how many it created; any error but EEXIST fails it.
fn exclusive_creator(dir: &Path, count: usize) -> String {
    format!(
        r#"
import errno, os, sys
made = 0
for i in range({count}):
    try:
        fd = os.open("{d}/n%d" % i, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        made += 1
    except OSError as e:
        if e.errno != errno.EEXIST:
            sys.exit("n%d: %s" % (i, e))
print(made)
"#,
        d = dir.display()
    )
}

fn one_exclusive_create_wins_across_mounts(e: Engine) {
    let v = Volume::format_on(e, "multi-c", &[]);
    let a = v.mount("a", &[]);
    let b = v.mount("b", &[]);
    fs::create_dir(a.p("race")).expect("mkdir");
    eventually(3.0, "dir on b", || b.p("race").is_dir());
    let count = 60;
    let children: Vec<_> = (0..6)
        .map(|i| {
            let m = if i % 2 == 0 { &a } else { &b };
            std::process::Command::new("python3")
                .args(["-c", &exclusive_creator(&m.p("race"), count)])
                .output_async()
        })
        .collect();
    let mut total = 0;
    for c in children {
        let out = c.wait_with_output().expect("creator");
        assert!(
            out.status.success(),
            "creator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        total += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .expect("count");
    }
    assert_eq!(total, count, "every name created exactly once");
    assert_eq!(fs::read_dir(b.p("race")).expect("ls").count(), count);
    drop((a, b));
    assert!(v.fsck_stats().contains(" 0 problem(s)"));
}

trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for std::process::Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    }
}

fn hot_directory_churn_on_two_mounts_loses_nothing(e: Engine) {
    let v = Volume::format_on(e, "multi-h", &["--trash-days", "0"]);
    let a = v.mount("a", &[]);
    let b = v.mount("b", &[]);
    fs::create_dir(a.p("hot")).expect("mkdir");
    eventually(3.0, "dir on b", || b.p("hot").is_dir());
    let rounds = 120;
    // each worker: create, write, rename (over a shared name too), delete every other file
    let worker = |dir: &Path, id: usize| {
        format!(
            r#"
import os, sys
d = "{d}"
for i in range({rounds}):
    p = "%s/w{id}-%d" % (d, i)
    with open(p, "wb") as f:
        f.write(b"{id}-%d" % i)
    q = "%s/r{id}-%d" % (d, i)
    os.rename(p, q)
    os.rename(q, "%s/shared-%d" % (d, i % 5)) if i % 7 == 0 else None
    if i % 2 == 1 and os.path.exists(q):
        os.unlink(q)
print("done")
"#,
            d = dir.display()
        )
    };
    let children: Vec<_> = (0..6)
        .map(|i| {
            let m = if i % 2 == 0 { &a } else { &b };
            std::process::Command::new("python3")
                .args(["-c", &worker(&m.p("hot"), i)])
                .output_async()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("worker");
        assert!(
            out.status.success(),
            "worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // what must be there: r<id>-<i> for even i not moved to a shared name, and the shared names
    let mut want: Vec<String> = Vec::new();
    for id in 0..6 {
        for i in 0..rounds {
            if i % 7 != 0 && i % 2 == 0 {
                want.push(format!("r{id}-{i}"));
            }
        }
    }
    for s in 0..5 {
        want.push(format!("shared-{s}"));
    }
    want.sort();
    let list = |m: &Mount| {
        let mut names: Vec<String> = fs::read_dir(m.p("hot"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    eventually(3.0, "both mounts list the same names", || {
        list(&a) == want && list(&b) == want
    });
    for n in want.iter().filter(|n| n.starts_with('r')) {
        let (id, i) = n[1..].split_once('-').expect("name");
        assert_eq!(
            fs::read(b.p(&format!("hot/{n}"))).expect("read"),
            format!("{id}-{i}").into_bytes()
        );
    }
    drop((a, b));
    let report = v.fsck();
    assert!(report.contains(" 0 problem(s)"), "{report}");
    v.juicefs_fsck();
}

fn a_killed_client_loses_its_session_locks_and_open_files(e: Engine) {
    let v = Volume::format_on(e, "multi-k", &["--trash-days", "0"]);
    let a = v.mount("a", &["--heartbeat", "1"]);
    let b = v.mount("b", &["--heartbeat", "1"]);
    fs::write(a.p("lk"), b"x").expect("create");
    fs::write(a.p("open"), bytes(3, 3 << 20)).expect("write");
    // a holds a BSD lock and a file that is unlinked but open
    let mut holder = spawn_sh(&format!(
        "exec 8<{open}; rm {open}; flock -x {lk} -c 'touch {lk}.held; sleep 600'",
        open = a.p("open").display(),
        lk = a.p("lk").display()
    ));
    eventually(5.0, "lock taken", || a.p("lk.held").exists());
    assert_eq!(
        v.sql(&format!("SELECT COUNT(*) FROM {}", v.table("sustained"))),
        "1"
    );
    let status = ok(tidefs(), &["status", &v.url]);
    assert!(status.contains(&*a.path.to_string_lossy()), "{status}");
    assert!(status.contains(&*b.path.to_string_lossy()), "{status}");
    assert!(status.contains("\"ProcessID\""), "{status}");
    assert!(status.contains("tidefs-"), "{status}");
    ok("kill", &["-9", &a.pid().to_string()]);
    let t = Instant::now();
    // b waits for the lock: it is released when a's session expires (5 heartbeats) and b's
    // cleanup job (every 5 heartbeats) removes it
    ok(
        "flock",
        &["-w", "60", "-x", &b.p("lk").to_string_lossy(), "-c", "true"],
    );
    let took = t.elapsed();
    assert!(took < Duration::from_secs(20), "lock freed after {took:?}");
    eventually(20.0, "the open file of the dead client is freed", || {
        v.sql(&format!("SELECT COUNT(*) FROM {}", v.table("sustained"))) == "0"
            && v.sql(&format!("SELECT COUNT(*) FROM {}", v.table("chunk"))) == "1"
    });
    let status = ok(tidefs(), &["status", &v.url]);
    assert!(!status.contains(&*a.path.to_string_lossy()), "{status}");
    kill_group(&mut holder);
    drop(a);
    drop(b);
    let report = v.fsck();
    assert!(report.contains(" 0 problem(s)"), "{report}");
}

/// Many lookups in one directory make a mount read the following entries ahead (one query per
/// page). Those answers must be as fresh as the kernel's caches: changes made on the other mount
/// after the page was read show within the TTL (1 s), changes made on this mount at once.
fn read_ahead_entries_stay_within_the_ttl(e: Engine) {
    let v = Volume::format_on(e, "multi-r", &[]);
    let a = v.mount("a", &[]);
    let b = v.mount("b", &[]);
    fs::create_dir(a.p("d")).expect("mkdir");
    for i in 0..200 {
        fs::write(a.p(&format!("d/f{i:03}")), b"v1").expect("create");
    }
    // a run of lookups on b: the entries after them are read ahead
    for i in 0..10 {
        let m = fs::metadata(b.p(&format!("d/f{i:03}"))).expect("stat on b");
        assert_eq!(m.len(), 2);
    }
    // changes on a, to names b has not looked up yet
    fs::set_permissions(a.p("d/f150"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(a.p("d/f151"), b"longer now").expect("rewrite");
    fs::remove_file(a.p("d/f152")).expect("unlink");
    // changes on b itself are seen at once
    fs::rename(b.p("d/f100"), b.p("d/moved")).expect("rename on b");
    assert!(!b.p("d/f100").exists(), "renamed name still seen on b");
    fs::write(b.p("d/f101"), b"local write").expect("write on b");
    assert_eq!(fs::metadata(b.p("d/f101")).expect("stat").len(), 11);
    // past the TTL, b sees what a did
    std::thread::sleep(Duration::from_millis(1100));
    let m = fs::metadata(b.p("d/f150")).expect("stat f150");
    assert_eq!(
        m.permissions().mode() & 0o777,
        0o600,
        "chmod on a not seen on b"
    );
    assert_eq!(fs::metadata(b.p("d/f151")).expect("stat f151").len(), 10);
    assert!(!b.p("d/f152").exists(), "unlink on a not seen on b");
    for i in (20..200).filter(|i| ![100, 101, 150, 151, 152].contains(i)) {
        let m = fs::metadata(b.p(&format!("d/f{i:03}"))).expect("stat on b");
        assert_eq!(m.len(), 2, "f{i:03}");
    }
    drop((a, b));
    assert!(v.fsck_stats().contains(" 0 problem(s)"));
}
