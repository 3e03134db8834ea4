//! A volume on TiKV, mounted: `tidefs format` and `tidefs mount` with a `tikv://` URL against
//! the protocol-level stand-in (a test double of PD + TiKV running in this test process; not
//! TiKV), file operations through FUSE, a remount, and fsck.

mod common;

use common::*;
use std::fs;

/// The stand-in on a port of its own, served by a runtime that lives as long as the test.
fn start_standin() -> (String, std::sync::mpsc::Sender<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let (_s, addr) = tikv_standin::StandIn::start("127.0.0.1:0")
                .await
                .expect("stand-in");
            addr_tx.send(addr.to_string()).expect("send");
            // serve until the test drops its sender
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
        });
    });
    (addr_rx.recv().expect("address"), stop_tx)
}

#[test]
fn a_tikv_volume_mounts_and_keeps_files_across_remounts() {
    let (addr, _stop) = start_standin();
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    fs::create_dir(&bucket).expect("bucket");
    let url = format!("tikv://{addr}/e2e");
    ok(
        tidefs(),
        &[
            "format",
            &url,
            "e2e",
            "--bucket",
            &bucket.to_string_lossy(),
            "--trash-days",
            "0",
        ],
    );
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mountpoint");
    let mps = mp.to_string_lossy().into_owned();
    let log = dir.path().join("mount.log");
    let mount = || {
        ok(
            tidefs(),
            &["mount", "-d", &url, &mps, "--log", &log.to_string_lossy()],
        )
    };
    mount();
    let big = bytes(11, (9 << 20) + 7);
    fs::create_dir(mp.join("d")).expect("mkdir");
    fs::write(mp.join("d/f"), b"hello").expect("write");
    fs::write(mp.join("big"), &big).expect("write big");
    fs::hard_link(mp.join("d/f"), mp.join("h")).expect("link");
    std::os::unix::fs::symlink("d/f", mp.join("s")).expect("symlink");
    fs::rename(mp.join("big"), mp.join("d/big")).expect("rename");
    for i in 0..50 {
        fs::write(mp.join(format!("d/small{i}")), format!("{i}")).expect("small");
    }
    fs::remove_file(mp.join("d/small7")).expect("rm");
    ok(tidefs(), &["umount", &mps]);

    mount();
    assert_eq!(fs::read(mp.join("d/big")).expect("read big"), big);
    assert_eq!(fs::read(mp.join("h")).expect("read link"), b"hello");
    assert_eq!(
        fs::read_link(mp.join("s"))
            .expect("readlink")
            .to_string_lossy(),
        "d/f"
    );
    assert_eq!(fs::read_dir(mp.join("d")).expect("ls").count(), 1 + 1 + 49);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(mp.join("h")).expect("stat").nlink(), 2);
    ok(tidefs(), &["umount", &mps]);
    let out = ok(tidefs(), &["fsck", &url]);
    assert!(out.contains(" 0 problem(s)"), "{out}");
}
