//! Directory statistics and directory quotas through real mounts, checked against the juicefs
//! binary both ways: juicefs reads the statistics tidefs keeps, each enforces quotas the other
//! set, and both `quota check`s agree after mixed work.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// `summary --csv` rows of a tidefs mount: (path relative to the mount, size, files, dirs).
fn tidefs_summary(root: &Path, strict: bool) -> Vec<(String, u64, u64, u64)> {
    let p = root.to_string_lossy().into_owned();
    let mut args = vec!["summary", &p, "--csv", "--depth", "5", "--entries", "100"];
    if strict {
        args.push("--strict");
    }
    let out = ok(tidefs(), &args);
    let mut rows: Vec<_> = out
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let rel = f[0].strip_prefix(p.as_str()).unwrap_or(f[0]);
            let rel = rel.trim_matches('/').to_string();
            let n = |i: usize| f[i].parse::<u64>().expect("number");
            (rel, n(1), n(2), n(3))
        })
        .collect();
    rows.sort();
    rows
}

/// `juicefs summary --csv` rows of a juicefs mount, in the same shape.
fn juicefs_summary(root: &Path, strict: bool) -> Vec<(String, u64, u64, u64)> {
    let p = root.to_string_lossy().into_owned();
    let mut args = vec!["summary", "--csv", "--depth", "5", "--entries", "100"];
    if strict {
        args.push("--strict");
    }
    args.push(&p);
    let out = ok(&juicefs(), &args);
    let mut rows: Vec<_> = out
        .lines()
        .skip(1)
        .map(|l| {
            // PATH,SIZE,DIRS,FILES
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[i].parse::<u64>().expect("number");
            (f[0].trim_matches('/').to_string(), n(1), n(3), n(2))
        })
        // juicefs lists large files too; tidefs's summary shows directories
        .filter(|r| r.3 > 0)
        .collect();
    rows.sort();
    rows
}

/// Every kind of change: creates, writes, overwrites, a hard link, renames across directories
/// (over a file and as an exchange-free move of a directory), truncates, unlinks, rmdir.
fn churn(root: &Path, tag: &str) {
    let d = root.join(format!("{tag}-d"));
    fs::create_dir_all(d.join("sub/deeper")).expect("mkdir");
    for i in 0..20 {
        fs::write(d.join(format!("f{i}")), bytes(i, i as usize * 777)).expect("write");
    }
    fs::write(d.join("sub/big"), bytes(99, 5 << 20)).expect("big");
    fs::hard_link(d.join("f3"), d.join("sub/f3-link")).expect("link");
    fs::write(d.join("f3"), bytes(5, 70_000)).expect("write through a hard link");
    fs::rename(d.join("f4"), d.join("sub/deeper/f4")).expect("move a file");
    fs::rename(d.join("f5"), d.join("sub/f6")).expect("move over a file");
    fs::rename(d.join("sub/deeper"), root.join(format!("{tag}-moved"))).expect("move a dir");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(d.join("f7"))
        .expect("open");
    f.set_len(1 << 20).expect("extend");
    f.set_len(10).expect("shrink");
    fs::remove_file(d.join("f8")).expect("unlink");
    fs::create_dir(d.join("gone")).expect("mkdir");
    fs::remove_dir(d.join("gone")).expect("rmdir");
}

fn stats_interop(e: Engine) {
    let v = Volume::format_on(e, "dirstats", &[]);
    let m = v.mount("t1", &[]);
    churn(&m.path, "a");
    let fast = tidefs_summary(&m.path, false);
    assert_eq!(fast, tidefs_summary(&m.path, true), "tidefs statistics");
    m.unmount();

    let j = v.mount_juicefs("j1");
    let jfast = juicefs_summary(&j.path, false);
    assert_eq!(
        jfast,
        juicefs_summary(&j.path, true),
        "statistics juicefs read"
    );
    assert_eq!(jfast, fast, "juicefs and tidefs summaries");
    churn(&j.path, "b");
    fs::remove_file(j.p("a-d/f9")).expect("unlink");
    // juicefs stores its statistics about once a second
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        juicefs_summary(&j.path, false),
        juicefs_summary(&j.path, true),
        "juicefs's own statistics"
    );
    j.unmount();

    let m = v.mount("t2", &[]);
    assert_eq!(
        tidefs_summary(&m.path, false),
        tidefs_summary(&m.path, true),
        "statistics juicefs kept"
    );
    churn(&m.path, "c");
    fs::remove_dir_all(m.p("b-d")).expect("rm -r");
    let fast = tidefs_summary(&m.path, false);
    assert_eq!(fast, tidefs_summary(&m.path, true), "after juicefs wrote");
    m.unmount();
    let j = v.mount_juicefs("j2");
    assert_eq!(
        juicefs_summary(&j.path, false),
        fast,
        "juicefs after tidefs again"
    );
    j.unmount();
    let report = v.fsck_stats();
    assert!(report.contains(" 0 problem(s)"), "{report}");
}

#[test]
fn juicefs_reads_exact_directory_statistics_sqlite() {
    stats_interop(Engine::Sqlite);
}

#[test]
fn juicefs_reads_exact_directory_statistics_postgres() {
    stats_interop(Engine::Postgres);
}

/// `quota check` of both binaries: Ok when consistent.
fn both_checks_agree(v: &Volume, path: &str) {
    let out = ok(tidefs(), &["quota", "check", &v.url, "--path", path]);
    assert!(out.contains("consistent"), "tidefs quota check: {out}");
    let j = run(&juicefs(), &["quota", "check", &v.url, "--path", path]);
    assert!(
        j.status.success(),
        "juicefs quota check {path}: {}{}",
        String::from_utf8_lossy(&j.stdout),
        String::from_utf8_lossy(&j.stderr)
    );
}

/// Used space of the only directory quota, as stored.
fn quota_used(v: &Volume) -> u64 {
    let out = v.sql(&format!("SELECT used_space FROM {}", v.table("dir_quota")));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("used space: {out:?}"))
}

/// Two mounts write under one 1 GiB directory quota at once until EDQUOT: the quota's usage
/// never passes its limit, `df` on the directory shows it, and both `quota check`s find no
/// drift afterwards.
#[test]
fn two_writers_stop_at_a_directory_quota() {
    let v = Volume::format("quota2w", &["--trash-days", "0"]);
    ok(
        tidefs(),
        &[
            "quota",
            "set",
            &v.url,
            "--path",
            "/pvc",
            "--capacity",
            "1",
            "--create",
        ],
    );
    let m1 = v.mount("w1", &[]);
    let m2 = v.mount("w2", &[]);
    let df = sh(&format!("df -B1 --output=size {}", m1.p("pvc").display()));
    assert!(df.contains("1073741824"), "df on the quota directory: {df}");
    let writers: Vec<_> = [(&m1, "a"), (&m2, "b")]
        .into_iter()
        .map(|(m, n)| {
            let target = m.p(&format!("pvc/{n}"));
            std::thread::spawn(move || {
                Command::new("dd")
                    .args([
                        "if=/dev/zero",
                        &format!("of={}", target.display()),
                        "bs=1M",
                        "count=900",
                        "conv=fsync",
                    ])
                    .output()
                    .expect("dd")
            })
        })
        .collect();
    let outs: Vec<_> = writers
        .into_iter()
        .map(|w| w.join().expect("join"))
        .collect();
    let refused = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("Disk quota exceeded"))
        .count();
    assert!(refused >= 1, "a writer must meet EDQUOT: {outs:?}");
    // whatever else was written, a new file finds no room
    let full = run(
        "sh",
        &[
            "-c",
            &format!("head -c 100M /dev/zero > {}", m1.p("pvc/more").display()),
        ],
    );
    assert!(
        !full.status.success(),
        "writing past a full quota must fail"
    );
    m1.unmount();
    m2.unmount();
    let used = quota_used(&v);
    let limit = 1u64 << 30;
    // each client accepts at most 1/64 of the limit (16 MiB) without storing it
    let bound = limit + 2 * (limit / 64);
    eprintln!(
        "quota usage after the writers: {used} bytes of {limit} (over by {})",
        used.saturating_sub(limit)
    );
    assert!(
        used <= bound,
        "usage {used} passed the limit {limit} by more than the bound"
    );
    both_checks_agree(&v, "/pvc");
}

/// A quota set by juicefs is enforced by tidefs and the reverse; moves across quota
/// boundaries, hard links, the trash and truncates keep both `quota check`s consistent.
#[test]
fn quotas_set_by_either_binary_hold_in_the_other() {
    let v = Volume::format("quotax", &["--trash-days", "1"]);
    ok(
        &juicefs(),
        &[
            "quota", "set", &v.url, "--path", "/j", "--inodes", "5", "--create",
        ],
    );
    ok(
        tidefs(),
        &[
            "quota", "set", &v.url, "--path", "/t", "--inodes", "4", "--create",
        ],
    );
    let m = v.mount("t", &[]);
    for i in 0..5 {
        fs::write(m.p(&format!("j/{i}")), b"x").expect("within the juicefs quota");
    }
    let err = fs::write(m.p("j/5"), b"x").expect_err("past the juicefs quota");
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    let df = sh(&format!("df --output=itotal {}", m.p("j").display()));
    assert!(df.lines().any(|l| l.trim() == "5"), "df -i on /j: {df}");
    // moves out of and into quotas, a hard link, the trash, a truncate
    fs::rename(m.p("j/0"), m.p("t/0")).expect("move into /t");
    fs::hard_link(m.p("t/0"), m.p("j/0-link")).expect("link back into /j");
    fs::write(m.p("t/big"), bytes(1, 3 << 20)).expect("write");
    fs::OpenOptions::new()
        .write(true)
        .open(m.p("t/big"))
        .expect("open")
        .set_len(1000)
        .expect("truncate");
    fs::remove_file(m.p("j/1")).expect("unlink into the trash");
    fs::create_dir(m.p("sub")).expect("mkdir");
    fs::write(m.p("sub/x"), b"x").expect("write");
    fs::write(m.p("sub/y"), b"y").expect("write");
    // /t holds 0 and big: the three inodes of sub do not fit under its 4
    let err = fs::rename(m.p("sub"), m.p("t/sub")).expect_err("the tree does not fit in /t");
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    fs::remove_file(m.p("sub/y")).expect("unlink");
    fs::rename(m.p("sub"), m.p("t/sub")).expect("two inodes fit");
    m.unmount();
    both_checks_agree(&v, "/j");
    both_checks_agree(&v, "/t");

    // juicefs enforces what tidefs set
    let j = v.mount_juicefs("j");
    let err = fs::write(j.p("t/more"), b"x").expect_err("past the tidefs quota");
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    j.unmount();
    ok(tidefs(), &["quota", "delete", &v.url, "--path", "/t"]);
    let listed = ok(tidefs(), &["quota", "list", &v.url]);
    assert!(listed.contains("/j") && !listed.contains("/t "), "{listed}");
}

/// A user quota set by tidefs holds in a running tidefs mount (taken up at its heartbeat) and
/// in juicefs; both recounts agree with the usage tidefs kept.
#[test]
fn user_quotas_hold_in_both_binaries() {
    let v = Volume::format("ugquota", &["--trash-days", "0"]);
    let m = v.mount("t", &["--heartbeat", "1"]);
    fs::create_dir(m.p("shared")).expect("mkdir");
    sh(&format!("chmod 777 {}", m.p("shared").display()));
    let touch =
        |mp: &Path, name: &str| as_nobody(&format!("echo x > {}/shared/{name}", mp.display()));
    assert!(touch(&m.path, "before").status.success());
    ok(
        tidefs(),
        &["quota", "set", &v.url, "--uid", "65534", "--inodes", "3"],
    );
    let got = ok(tidefs(), &["quota", "get", &v.url, "--uid", "65534"]);
    assert!(
        got.lines().nth(1).is_some_and(|l| l.contains(" 1 ")),
        "counted when set: {got}"
    );
    // the mount takes the setting up at its next heartbeat; then usage counts
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(touch(&m.path, "a").status.success());
    assert!(touch(&m.path, "b").status.success());
    let over = touch(&m.path, "c");
    let err = String::from_utf8_lossy(&over.stderr);
    assert!(
        !over.status.success() && err.contains("quota"),
        "the 4th inode: {err}"
    );
    fs::remove_file(m.p("shared/a")).expect("unlink");
    m.unmount();
    let check = ok(tidefs(), &["quota", "check", &v.url]);
    assert!(check.contains("uid:65534: consistent"), "{check}");
    let j = run(&juicefs(), &["quota", "check", &v.url, "--uid", "65534"]);
    assert!(
        j.status.success(),
        "juicefs quota check: {}{}",
        String::from_utf8_lossy(&j.stdout),
        String::from_utf8_lossy(&j.stderr)
    );
    let jm = v.mount_juicefs("j");
    assert!(touch(&jm.path, "d").status.success(), "a third inode fits");
    let over = touch(&jm.path, "e");
    assert!(!over.status.success(), "juicefs enforces the tidefs quota");
    jm.unmount();
}
