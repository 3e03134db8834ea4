//! Crash safety: kill -9 the mount process in the middle of writes, remount, check that every
//! byte fsync'd before the kill reads back and that both fscks find no corruption.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

#[test]
fn kill_during_writes_loses_nothing_fsynced() {
    let v = Volume::format("crash", &[]);
    let src = v.dir.path().join("src.bin");
    fs::write(&src, bytes(77, (6 << 20) + 333)).expect("source");
    let expected = fs::read(&src).expect("source");
    let done_log = v.dir.path().join("done.txt");
    for round in 0..3 {
        let m = v.mount(&format!("r{round}"), &[]);
        let pid = m.pid();
        // a writer that records each file only after its fsync returned
        let script = format!(
            "i=0; while true; do dd if={src} of={mnt}/r{round}-f$i bs=1M conv=fsync status=none || exit 0; echo r{round}-f$i >> {done}; i=$((i+1)); done",
            src = src.display(),
            mnt = m.path.display(),
            done = done_log.display()
        );
        let mut writer = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .expect("writer");
        std::thread::sleep(Duration::from_millis(1500 + 300 * round));
        ok("kill", &["-9", &pid.to_string()]);
        let _ = writer.wait();
        // the dead mount is detached by the next mount
        let m2 = v.mount(&format!("r{round}"), &[]);
        let done = fs::read_to_string(&done_log).unwrap_or_default();
        let names: Vec<&str> = done.lines().collect();
        assert!(
            !names.is_empty(),
            "round {round}: the writer finished no file before the kill"
        );
        for name in &names {
            let got =
                fs::read(m2.p(name)).unwrap_or_else(|e| panic!("{name} lost after crash: {e}"));
            assert!(
                got == expected,
                "{name}: fsync'd bytes differ after crash ({} bytes)",
                got.len()
            );
        }
        eprintln!(
            "round {round}: {} fsync'd files verified after kill -9",
            names.len()
        );
        drop(m);
        m2.unmount();
        v.fsck();
        v.juicefs_fsck();
    }
}

const FSX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fsx.py");

/// kill -9 the mount while three exercisers (`tests/data/fsx.py` in crash mode: random writes,
/// truncates, fallocate, in-file copies, fsyncs) work on files crossing block and chunk
/// boundaries; after the remount every byte that the last fsync of each file made durable, and
/// that no later operation touched, reads back, and the size too if nothing changed it.
fn kill_during_random_operations(v: &Volume, mount_args: &[&str], rounds: u32) {
    for round in 0..rounds {
        let m = v.mount(&format!("x{round}"), mount_args);
        let pid = m.pid();
        let seeds: Vec<u64> = (0..3).map(|i| 100 + 10 * u64::from(round) + i).collect();
        let state = |s: u64| v.dir.path().join(format!("crash-{s}"));
        let runs: Vec<_> = seeds
            .iter()
            .map(|&s| {
                std::process::Command::new("python3")
                    .arg(FSX)
                    .arg("run")
                    .arg(m.p(&format!("c{s}")))
                    .arg(s.to_string())
                    .arg("1000000")
                    .arg(v.dir.path().join(format!("model-{s}")))
                    .arg("--crash-state")
                    .arg(state(s))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("start fsx.py")
            })
            .collect();
        std::thread::sleep(Duration::from_millis(4000 + 1500 * u64::from(round)));
        ok("kill", &["-9", &pid.to_string()]);
        for c in runs {
            let out = c.wait_with_output().expect("wait for fsx.py");
            let text = String::from_utf8_lossy(&out.stdout);
            // 3: stopped by the dead mount, as intended (1 would be a wrong read before it)
            assert_eq!(out.status.code(), Some(3), "{text}");
            eprintln!("round {round}: {}", text.trim());
        }
        let m2 = v.mount(&format!("x{round}"), mount_args);
        for &s in &seeds {
            let out = std::process::Command::new("python3")
                .arg(FSX)
                .arg("crashcheck")
                .arg(m2.p(&format!("c{s}")))
                .arg(state(s))
                .output()
                .expect("run fsx.py crashcheck");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "round {round}: {text}");
            eprintln!("round {round}: {}", text.trim());
        }
        drop(m);
        m2.unmount();
        v.fsck();
        v.juicefs_fsck();
    }
}

#[test]
fn kill_during_random_operations_loses_nothing_fsynced() {
    let v = Volume::format("crash-fsx", &["--trash-days", "0"]);
    kill_during_random_operations(&v, &[], 2);
}

/// The same with `--writeback` on S3: an fsync there means "staged on the local disk", and the
/// next mount uploads what the dead one staged.
#[cfg(tidefs_test_s3)]
#[test]
fn kill_during_random_operations_with_writeback_loses_nothing_fsynced() {
    let url = std::env::var("TIDEFS_TEST_S3").expect("TIDEFS_TEST_S3");
    let v = s3_volume_at("crash-fsx-wb", &url, &[]);
    let cache = v.dir.path().join("cache").to_string_lossy().into_owned();
    kill_during_random_operations(&v, &["--writeback", "--cache-dir", &cache], 1);
}
