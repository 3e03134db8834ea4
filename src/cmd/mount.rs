//! `tidefs mount META-URL MOUNTPOINT`: serve a volume through FUSE, in the foreground or as a
//! daemon (`-d`).

use super::CmdResult;
use crate::fuse::{mount_options, TidefsFs};
use crate::vfs::{Vfs, VfsConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidefs_meta::{Ctx, FileType, Ino, SessionInfo, ROOT_INODE};

const DAEMON_ENV: &str = "TIDEFS_DAEMON_CHILD";

/// Arguments of `mount`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata engine URL, e.g. sqlite3:///var/lib/tidefs/vol.db
    meta_url: String,
    /// Directory to mount on.
    mountpoint: PathBuf,
    /// Run in the background once mounted.
    #[arg(short = 'd', long)]
    background: bool,
    /// Log file in background mode (default /var/log/tidefs.log as root, else ~/.tidefs/tidefs.log).
    #[arg(long)]
    pub(super) log: Option<PathBuf>,
    /// Mount read-only: every write fails with EROFS.
    #[arg(long)]
    read_only: bool,
    /// Mount this sub-directory of the volume as the root.
    #[arg(long)]
    subdir: Option<String>,
    /// Kernel attribute cache, seconds.
    #[arg(long, default_value_t = 1.0)]
    attr_cache: f64,
    /// Kernel entry cache for files, seconds.
    #[arg(long, default_value_t = 1.0)]
    entry_cache: f64,
    /// Kernel entry cache for directories, seconds.
    #[arg(long, default_value_t = 1.0)]
    dir_entry_cache: f64,
    /// Session heartbeat, seconds: a client that stops (kill -9, lost host) is declared dead 5
    /// heartbeats after its last one, and its locks and unlinked-open files are then released
    /// by the other clients.
    #[arg(long, default_value_t = 12.0)]
    heartbeat: f64,
    /// Write buffer budget, MiB.
    #[arg(long, default_value_t = 300)]
    buffer_size: u64,
    /// Block uploads under way at once (default: 20 for object stores, as JuiceFS; 4 for the
    /// `file` store, where more parallel writes to one disk only hold more memory).
    #[arg(long)]
    max_uploads: Option<usize>,
    /// Object downloads (GETs) in flight at once.
    #[arg(long, default_value_t = tidefs_chunk::DEFAULT_MAX_DOWNLOADS as u32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_downloads: u32,
    /// Bandwidth limit of object uploads, megabits per second (0: none).
    #[arg(long, default_value_t = 0, value_name = "MBPS")]
    upload_limit: u64,
    /// Bandwidth limit of object downloads, megabits per second (0: none).
    #[arg(long, default_value_t = 0, value_name = "MBPS")]
    download_limit: u64,
    /// How long object reads and writes keep being retried while the object store is
    /// unavailable (a restart, a network outage), seconds; after that they fail with EIO.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    io_retry_secs: u64,
    /// Kernel readahead for this mount, MiB (FUSE mounts start at 128 KiB; needs root to change).
    #[arg(long, default_value_t = 4)]
    read_ahead: u32,
    /// Memory cache of decoded blocks, MiB (twice the 6 blocks a sequential reader keeps in
    /// flight).
    #[arg(long, default_value_t = 48)]
    mem_cache: u64,
    /// Local disk cache directories, `:`-separated (default for object stores: /var/tidefsCache
    /// as root, else ~/.tidefs/cache; the `file` store has none unless given, its blocks are
    /// already on a local disk). Blocks go under <dir>/<volume UUID>/raw/.
    #[arg(long)]
    cache_dir: Option<String>,
    /// Disk cache size over all cache directories, MiB (0 turns the disk cache off).
    #[arg(long, default_value_t = 102_400)]
    cache_size: u64,
    /// Share of each cache disk kept free: caching stops (and old blocks are dropped) when the
    /// disk is fuller than 1 - this.
    #[arg(long, default_value_t = 0.1)]
    free_space_ratio: f64,
    /// Cache only small blocks and blocks read at random, not full blocks read or written in
    /// sequence.
    #[arg(long)]
    cache_partial_only: bool,
    /// Also cache full blocks this mount writes (by default only partial ones: small files and
    /// tails), for workloads that read back what they just wrote.
    #[arg(long)]
    cache_large_write: bool,
    /// On a read-only mount, do not serve files of 16 MiB and more from flat copies in the
    /// cache dir by kernel passthrough: every read then goes through this process, which checks
    /// each block against its checksums (passthrough reads run at local-disk speed; a copy is
    /// checked while it is made, and takes the file's size in the cache again).
    #[arg(long)]
    no_passthrough: bool,
    /// Write back: written blocks are stored durably in the cache directory
    /// (<dir>/<volume UUID>/rawstaging), their slices committed at once, and uploaded in the
    /// background. Blocks still staged at unmount or after a crash are uploaded by the next
    /// mount with the same cache directory; `tidefs umount --flush` waits for them instead.
    /// Until then other clients cannot read them.
    #[arg(long)]
    writeback: bool,
    /// With --writeback, how long a staged block waits before its upload (e.g. 30, 30s, 5m,
    /// 1h): files deleted sooner are never uploaded. `tidefs umount --flush` does not wait it.
    #[arg(long, default_value = "0", value_parser = parse_delay, value_name = "DURATION")]
    upload_delay: Duration,
    /// An entry added to or removed from a directory whose mtime changed less than this ago
    /// leaves the directory's mtime and ctime as they are (e.g. 100ms; 0: always update): on
    /// the KV engines (TiKV, memkv) that write is where creates in one directory conflict.
    /// The SQL engines always update.
    #[arg(long, default_value = "100ms", value_parser = parse_delay, value_name = "DURATION")]
    skip_dir_mtime: Duration,
    /// Threads reading and serving FUSE requests (each serves one request at a time, on the
    /// thread that read it).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    fuse_threads: u16,
    /// FUSE mount options, comma separated (e.g. -o noatime,nosuid).
    #[arg(short = 'o', value_delimiter = ',')]
    options: Vec<String>,
}

impl Args {
    pub(super) fn is_daemon_child(&self) -> bool {
        std::env::var_os(DAEMON_ENV).is_some()
    }
}

/// A duration of `--upload-delay`: seconds, or a number with `s`, `m`, `h` or `d`.
fn parse_delay(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let (num, unit) = match v.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let mult = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}: use ms, s, m, h or d (e.g. 100ms, 30s, 5m)"
            ))
        }
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * mult < 1e9 => {
            Ok(Duration::from_secs_f64(n * mult))
        }
        _ => Err(format!(
            "{v:?} is not a duration: give e.g. 30, 30s, 5m or 1h"
        )),
    }
}

/// The cache directories of the flags (default for object stores: /var/tidefsCache as root,
/// else ~/.tidefs/cache; none for the `file` store unless given).
fn cache_dirs(a: &Args, storage: &str) -> Option<Vec<PathBuf>> {
    match &a.cache_dir {
        Some(d) => Some(d.split(':').map(PathBuf::from).collect()),
        None if storage == "file" => None,
        None if is_root() => Some(vec![PathBuf::from("/var/tidefsCache")]),
        None => Some(vec![
            PathBuf::from(std::env::var_os("HOME")?).join(".tidefs/cache")
        ]),
    }
}

/// The disk cache asked for by the flags, if any.
fn disk_cache_config(a: &Args, storage: &str) -> Option<tidefs_chunk::DiskCacheConfig> {
    if a.cache_size == 0 {
        return None;
    }
    let dirs = cache_dirs(a, storage)?;
    Some(tidefs_chunk::DiskCacheConfig {
        dirs,
        capacity: a.cache_size << 20,
        free_ratio: a.free_space_ratio,
        partial_only: a.cache_partial_only,
        large_writes: a.cache_large_write,
        // blocks waiting to be written to the cache: 16 full blocks
        max_pending: 64 << 20,
    })
}

/// Default `--max-uploads` for the `file` store.
const LOCAL_MAX_UPLOADS: usize = 4;

fn secs(v: f64, flag: &str) -> CmdResult<Duration> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid --{flag} {v}: give a number of seconds >= 0").into());
    }
    Ok(Duration::from_secs_f64(v))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `path` is a mount point now (from /proc/self/mountinfo).
pub(super) fn is_mounted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    text.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape_mount(mp) == want)
    })
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a mount records how to reach it, for `info` and `umount`.
pub(super) fn runtime_file(mountpoint: &Path) -> PathBuf {
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let base = if is_root() {
        PathBuf::from("/run/tidefs")
    } else {
        std::env::temp_dir().join("tidefs-run")
    };
    base.join(format!("{name}.json"))
}

fn check_mountpoint(mp: &Path) -> CmdResult<PathBuf> {
    // a mount whose process died (kill -9, OOM) answers ENOTCONN: detach it and go on
    if let Err(e) = std::fs::metadata(mp) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            let quiet = |cmd: &str, args: &[&str]| {
                std::process::Command::new(cmd)
                    .args(args)
                    .arg(mp)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            // fusermount3 for an unprivileged user, umount(8) for root without fuse3
            if quiet("fusermount3", &["-uz"]) || quiet("umount", &["-l"]) {
                tracing::warn!(mountpoint = %mp.display(), "detached a dead mount left by a previous process");
            }
        }
    }
    let md = std::fs::metadata(mp).map_err(|e| {
        format!(
            "mountpoint {} is not usable ({e}): create it with mkdir -p {}",
            mp.display(),
            mp.display()
        )
    })?;
    if !md.is_dir() {
        return Err(format!("mountpoint {} is not a directory", mp.display()).into());
    }
    let abs = std::fs::canonicalize(mp)?;
    if is_mounted(&abs) {
        return Err(format!(
            "{} is already a mount point: unmount it first (tidefs umount {})",
            abs.display(),
            abs.display()
        )
        .into());
    }
    Ok(abs)
}

pub(super) fn run(a: Args) -> CmdResult {
    let mountpoint = check_mountpoint(&a.mountpoint)?;
    for (v, f) in [
        (a.attr_cache, "attr-cache"),
        (a.entry_cache, "entry-cache"),
        (a.dir_entry_cache, "dir-entry-cache"),
    ] {
        secs(v, f)?;
    }
    if !(a.heartbeat >= 0.2 && a.heartbeat <= 3600.0) {
        return Err(format!(
            "invalid --heartbeat {}: give seconds between 0.2 and 3600",
            a.heartbeat
        )
        .into());
    }
    if a.max_uploads == Some(0) {
        return Err("invalid --max-uploads 0: give at least 1".into());
    }
    if !(0.0..=0.9).contains(&a.free_space_ratio) {
        return Err(format!(
            "invalid --free-space-ratio {}: give a share between 0 and 0.9",
            a.free_space_ratio
        )
        .into());
    }
    if let Some(d) = &a.cache_dir {
        if d.split(':').any(|x| x.trim().is_empty()) {
            return Err(format!(
                "invalid --cache-dir {d:?}: give directories separated by ':', none empty"
            )
            .into());
        }
    }
    if a.buffer_size < 8 {
        return Err(format!(
            "invalid --buffer-size {}: give at least 8 (MiB)",
            a.buffer_size
        )
        .into());
    }
    let (bare_url, password) = tidefs_meta::split_password(&a.meta_url);
    if a.background && !a.is_daemon_child() {
        return daemonize(&a, &mountpoint, &bare_url, password);
    }
    if let Some(pw) = password {
        // Run again with the password in the environment only: process titles are world
        // readable, a process's environment is not.
        use std::os::unix::process::CommandExt;
        let args: Vec<String> = std::env::args()
            .skip(1)
            .map(|x| if x == a.meta_url { bare_url.clone() } else { x })
            .collect();
        let err = std::process::Command::new(std::env::current_exe()?)
            .args(&args)
            .env("META_PASSWORD", pw)
            .exec();
        return Err(format!("cannot restart to hide the password: {err}").into());
    }
    serve(a, mountpoint)
}

/// Start this command again without `-d` in a new session, wait until it has mounted.
fn daemonize(a: &Args, mountpoint: &Path, bare_url: &str, password: Option<String>) -> CmdResult {
    use std::os::unix::process::CommandExt;
    let log = match &a.log {
        Some(l) => l.clone(),
        None if is_root() => PathBuf::from("/var/log/tidefs.log"),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let dir = home.join(".tidefs");
            std::fs::create_dir_all(&dir)?;
            dir.join("tidefs.log")
        }
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("cannot open log file {}: {e}", log.display()))?;
    let start_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|x| x != "-d" && x != "--background")
        .map(|x| {
            if x == a.meta_url {
                bare_url.to_string()
            } else {
                x
            }
        })
        .collect();
    if a.log.is_none() {
        args.push("--log".into());
        args.push(log.to_string_lossy().into_owned());
    }
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(&args).env(DAEMON_ENV, "1");
    if let Some(pw) = password {
        cmd.env("META_PASSWORD", pw);
    }
    // mimalloc reads this before main() can set it: commit arena memory only as it is used (a
    // lower idle RSS, docs/design/0002); the caller's own setting wins.
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        cmd.env("MIMALLOC_ARENA_EAGER_COMMIT", "0");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // SAFETY: setsid is async-signal-safe and only detaches the child from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if is_mounted(mountpoint) {
            println!(
                "tidefs mounted at {} (pid {}, log {})",
                mountpoint.display(),
                child.id(),
                log.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read(&log)
                .ok()
                .map(|b| {
                    String::from_utf8_lossy(&b[(start_len as usize).min(b.len())..]).into_owned()
                })
                .unwrap_or_default();
            let last = tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            return Err(format!("mount failed ({status}): {last}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("mount did not come up within 60 s; see {}", log.display()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve(a: Args, mountpoint: PathBuf) -> CmdResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tidefs")
        .build()?;
    let (meta, fmt) = rt.block_on(super::open_volume(&a.meta_url))?;
    let mut store = super::open_store(&fmt, a.mem_cache << 20)?
        .with_sums(crate::vfs::sums::MetaSums::new(meta.clone()))
        .with_patience(Duration::from_secs(a.io_retry_secs))
        .with_max_downloads(a.max_downloads as usize)
        .with_bandwidth(
            or_volume_default(a.upload_limit, fmt.upload_limit),
            or_volume_default(a.download_limit, fmt.download_limit),
        );
    if let Some(cfg) = disk_cache_config(&a, &fmt.storage) {
        let block_size = u32::try_from(fmt.block_size()).map_err(|_| "block size out of range")?;
        let disk = tidefs_chunk::DiskCache::open(&cfg, &fmt.uuid, block_size);
        tracing::info!(dirs = ?disk.roots(), size_mib = a.cache_size, "disk cache");
        store = store.with_disk_cache(disk);
    }
    if a.writeback && !a.read_only {
        let dirs = cache_dirs(&a, &fmt.storage)
            .ok_or("--writeback stages blocks in a cache directory: give --cache-dir")?;
        // staged blocks count against --cache-size too: past it, writes upload directly
        let mut staging = tidefs_chunk::Staging::open(&dirs, &fmt.uuid, a.free_space_ratio);
        if a.cache_size > 0 {
            staging = staging.with_max_bytes(a.cache_size << 20);
        }
        if !staging.enabled() {
            return Err(format!(
                "--writeback: no usable staging directory under {} (see the warnings above)",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            )
            .into());
        }
        tracing::info!(dirs = ?staging.roots(), delay_s = a.upload_delay.as_secs_f64(), "writeback: blocks are staged, then uploaded");
        let uploads = a
            .max_uploads
            .unwrap_or(crate::vfs::writer::DEFAULT_MAX_UPLOADS);
        let _in_runtime = rt.enter();
        store = store.with_writeback(staging, a.upload_delay, uploads);
    }
    meta.set_heartbeat(Duration::from_secs_f64(a.heartbeat));
    meta.set_skip_dir_mtime(a.skip_dir_mtime);
    if a.read_only {
        meta.set_read_only(true);
    } else {
        super::install_slice_deleter(&*meta, &store);
        let info = SessionInfo {
            sid: 0,
            expire: 0,
            version: format!("tidefs-{}", env!("CARGO_PKG_VERSION")),
            host_name: std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            mount_point: mountpoint.to_string_lossy().into_owned(),
            mount_time: chrono::Utc::now().to_rfc3339(),
            process_id: std::process::id(),
        };
        rt.block_on(meta.new_session(info))?;
    }
    let root = match &a.subdir {
        Some(p) => rt.block_on(resolve_subdir(&*meta, p))?,
        None => ROOT_INODE,
    };
    let cfg = VfsConfig {
        read_only: a.read_only,
        buffer_size: a.buffer_size << 20,
        attr_ttl: secs(a.attr_cache, "attr-cache")?,
        entry_ttl: secs(a.entry_cache, "entry-cache")?,
        dir_entry_ttl: secs(a.dir_entry_cache, "dir-entry-cache")?,
        max_uploads: a.max_uploads.unwrap_or(if fmt.storage == "file" {
            LOCAL_MAX_UPLOADS
        } else {
            crate::vfs::writer::DEFAULT_MAX_UPLOADS
        }),
        passthrough: a.read_only && !a.no_passthrough,
    };
    let vfs = Arc::new(Vfs::new(meta.clone(), store, fmt.clone(), cfg));
    let fs = TidefsFs::new(vfs.clone(), root, rt.handle().clone());
    let notifier = fs.notifier_slot();
    let mut config = fuser::Config::default();
    config.mount_options = mount_options(&fmt.name, a.read_only, &a.options);
    let allow_other = is_root() || a.options.iter().any(|o| o == "allow_other");
    config.acl = if allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(usize::from(a.fuse_threads));
    config.clone_fd = true;
    let mut session = match fuser::Session::new(fs, &mountpoint, &config) {
        Ok(s) => s,
        Err(e) => {
            let _ = rt.block_on(meta.close_session());
            return Err(format!(
                "cannot mount at {}: {e} (is fuse3 installed and /dev/fuse present?)",
                mountpoint.display()
            )
            .into());
        }
    };
    if is_root() {
        if let Err(e) = set_read_ahead(&mountpoint, a.read_ahead) {
            tracing::warn!(error = %e, "cannot set the kernel readahead of the mount; sequential reads stay at 128 KiB readahead");
        }
    }
    let _ = notifier.set(session.notifier());
    let mut unmounter = session.unmount_callable();
    // freed memory goes back to the OS after the allocator's purge delay (see `main`), but only
    // when the allocator runs: once a second it does, so an idle mount shrinks back
    rt.spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            // SAFETY: mi_collect only walks the allocator's own structures; not forced, it
            // purges what has waited out the delay.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received, unmounting");
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(error = %e, "unmount on signal failed");
        }
    });
    let rtf = runtime_file(&mountpoint);
    if let Some(dir) = rtf.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let sock = crate::control::socket_path(&rtf);
    {
        let _in_runtime = rt.enter();
        if let Err(e) = crate::control::start(sock.clone(), vfs.clone()) {
            tracing::warn!(error = %e, socket = %sock.display(), "no control channel: `tidefs warmup` cannot reach this mount");
        }
    }
    let record = serde_json::json!({ "meta_url": a.meta_url, "pid": std::process::id(), "root": root, "volume": fmt.name, "control": sock });
    if let Err(e) = write_private(&rtf, record.to_string().as_bytes()) {
        tracing::warn!(error = %e, file = %rtf.display(), "cannot record the mount for `tidefs info`");
    }
    tracing::info!(volume = %fmt.name, mountpoint = %mountpoint.display(), "mounted");
    let served = session.run();
    let flushed = rt.block_on(vfs.flush_all());
    rt.block_on(vfs.drain_staging());
    let closed = rt.block_on(meta.close_session());
    let _ = std::fs::remove_file(&rtf);
    let _ = std::fs::remove_file(&sock);
    tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
    served.map_err(|e| format!("FUSE session failed: {e}"))?;
    flushed?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

/// Set `read_ahead_kb` of the mount's backing device info. The kernel gives a FUSE mount 128 KiB
/// of readahead, which caps a sequential reader at one 128 KiB request in flight at a time.
fn set_read_ahead(mountpoint: &Path, mib: u32) -> std::io::Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let want = mountpoint.to_string_lossy();
    let dev = text
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| unescape_mount(mp) == want)
        })
        .filter_map(|l| l.split(' ').nth(2))
        .next_back()
        .ok_or_else(|| std::io::Error::other("mount not found in mountinfo"))?;
    std::fs::write(
        format!("/sys/class/bdi/{dev}/read_ahead_kb"),
        format!("{}", u64::from(mib) * 1024),
    )
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

async fn resolve_subdir(meta: &dyn tidefs_meta::Meta, path: &str) -> CmdResult<Ino> {
    let ctx = Ctx::root();
    let mut ino = ROOT_INODE;
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let a = meta
            .lookup(&ctx, ino, part.as_bytes())
            .await
            .map_err(|e| format!("--subdir {path}: {part}: {e}"))?;
        if a.typ != FileType::Dir {
            return Err(format!("--subdir {path}: {part} is not a directory").into());
        }
        ino = a.ino;
    }
    Ok(ino)
}

/// A bandwidth limit given on the command line, else the volume's default (`tidefs config
/// --upload-limit`), in Mbps; 0 is none.
fn or_volume_default(flag: u64, volume: i64) -> u64 {
    if flag > 0 {
        flag
    } else {
        u64::try_from(volume).unwrap_or(0)
    }
}
