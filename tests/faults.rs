//! Database server faults under a mounted volume: the server restarted in the middle of a
//! workload. Runs for every server engine whose URL is given (see `build.rs`); this restarts the
//! shared test servers through `scripts/services.sh`, so it lives in a test binary of its own.

mod common;

use common::*;
use std::fs;

#[cfg(tidefs_test_mysql)]
#[test]
fn mysql_restart_mid_workload() {
    server_restart_mid_workload(Engine::Mysql, "mysql");
}

#[cfg(tidefs_test_postgres)]
#[test]
fn postgres_restart_mid_workload() {
    server_restart_mid_workload(Engine::Postgres, "postgres");
}

/// A writer that creates, renames and reads back files for `secs` seconds, counting failures
/// by errno and checking every read against what was written.
const WORKLOAD: &str = r#"
import errno, hashlib, os, sys, time
d, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs
i = ok = 0
errors = {}
wrong = 0
while time.time() < end:
    data = hashlib.sha256(str(i).encode()).digest() * (1 + i % 700)
    p = "%s/f%d" % (d, i)
    try:
        with open(p + ".tmp", "wb") as f:
            f.write(data)
        os.rename(p + ".tmp", p)
        with open(p, "rb") as f:
            if f.read() != data:
                wrong += 1
        ok += 1
    except OSError as e:
        errors[errno.errorcode.get(e.errno, e.errno)] = errors.get(errno.errorcode.get(e.errno, e.errno), 0) + 1
    i += 1
print("ok", ok, "wrong", wrong, "errors", errors)
"#;

#[allow(dead_code)]
fn server_restart_mid_workload(e: Engine, which: &str) {
    let v = Volume::format_on(e, "fault-r", &[]);
    let m = v.mount("a", &[]);
    fs::create_dir(m.p("w")).expect("mkdir");
    let writer = std::process::Command::new("python3")
        .args(["-c", WORKLOAD, &m.p("w").to_string_lossy(), "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("writer");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let script = format!("{}/scripts/services.sh", env!("CARGO_MANIFEST_DIR"));
    // down for 3 s: operations under way wait and retry (up to 60 s), then go on
    ok("bash", &[&script, "restart", which, "3"]);
    let out = writer.wait_with_output().expect("writer");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "writer crashed: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !report.contains("wrong 0 errors {}") {
        let log = fs::read_to_string(&m.log).unwrap_or_default();
        let failed: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("request failed"))
            .collect();
        panic!("the outage surfaced to the workload: {report}\n{failed:#?}");
    }
    let done: usize = report
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(done > 20, "too little got done: {report}");
    // the mount survived and works
    fs::write(m.p("after"), b"after the restart").expect("write after");
    assert_eq!(fs::read(m.p("after")).expect("read"), b"after the restart");
    drop(m);
    let report = v.fsck();
    assert!(report.contains(" 0 problem(s)"), "{report}");
    v.juicefs_fsck();
}
