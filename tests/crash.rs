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
