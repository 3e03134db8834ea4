//! The `file` storage: objects as files under a local (or locally mounted) directory.
//!
//! Why not OpenDAL's fs service: it fsyncs every object as it closes it, which on this machine
//! kind costs a quarter to a half of sequential write throughput and ties every upload to the
//! disk's flush latency. Object stores promise durability per PUT; a directory does not, and does
//! not need to: tidefs makes data durable where POSIX asks for it, at `fsync`, with one `syncfs`
//! of the bucket's filesystem ([`LocalDir::sync`]). Each object is written to a temporary name and
//! renamed into place, so a reader never sees a partial object, whatever happens to the writer.

use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use std::io::ErrorKind as Io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A bucket that is a directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: Arc<PathBuf>,
    tmp_seq: Arc<AtomicU64>,
}

fn io_err(op: &str, key: &str, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        Io::NotFound => ErrorKind::NotFound,
        Io::PermissionDenied => ErrorKind::PermissionDenied,
        Io::UnexpectedEof => ErrorKind::Corrupt,
        _ if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) => {
            ErrorKind::NoSpace
        }
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("object {op} of {key} failed")).with_source(e)
}

/// Objects at least this large start their writeback as soon as they are written.
const EARLY_WRITEBACK_MIN: usize = 1 << 20;

thread_local! {
    static INLINE_IO: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Mark the current thread as one that may block in file I/O (a FUSE request thread, not a
/// runtime worker): bucket I/O started from it then runs right here instead of being handed to
/// the blocking pool and back.
pub fn allow_inline_io() {
    INLINE_IO.with(|f| f.set(true));
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    if INLINE_IO.with(|f| f.get()) {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("I/O task failed: {e}")))?
}

impl LocalDir {
    /// The bucket directory `root`, which must exist and be writable.
    pub fn open(root: &str) -> Result<Self> {
        let dir = Path::new(root);
        if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("bucket directory {root} does not exist: create it, or pass an existing directory with --bucket"),
            ));
        }
        let probe = dir.join(format!(".tidefs-probe-{}", std::process::id()));
        std::fs::write(&probe, b"probe").map_err(|e| {
            Error::new(
                ErrorKind::PermissionDenied,
                format!("bucket directory {root} is not writable"),
            )
            .with_source(e)
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self {
            root: Arc::new(dir.to_path_buf()),
            tmp_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Store `data` under `key`, atomically.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key);
        let tmp = path.with_file_name(format!(
            "{}.tmp.{}.{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let key = key.to_string();
        blocking(move || {
            let write = |p: &Path| -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(p)?;
                f.write_all(&data)?;
                // Start writing a large object to disk now without waiting for it: a later
                // fsync (syncfs) then finds little left to do, and disk writes overlap the
                // stream. Small objects are left to the kernel's writeback, which batches them;
                // one I/O submission per small file costs more than the write itself.
                if data.len() < EARLY_WRITEBACK_MIN {
                    return Ok(());
                }
                // SAFETY: `f` is an open descriptor for the duration of the call.
                unsafe {
                    libc::sync_file_range(
                        std::os::fd::AsRawFd::as_raw_fd(&f),
                        0,
                        0,
                        libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
                Ok(())
            };
            let written = match write(&tmp) {
                Err(e) if e.kind() == Io::NotFound => {
                    // first object in this directory
                    match tmp.parent().map(std::fs::create_dir_all) {
                        Some(Err(e)) => Err(e),
                        _ => write(&tmp),
                    }
                }
                other => other,
            };
            if let Err(e) = written {
                // a partial temporary file must not stay behind (a full disk stays full otherwise)
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err("put", &key, e));
            }
            std::fs::rename(&tmp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io_err("put", &key, e)
            })
        })
        .await
    }

    /// Exactly `len` bytes of `key` from `off`; an object too short to hold them is corrupt.
    pub async fn get_range(&self, key: &str, off: u64, len: usize) -> Result<Bytes> {
        let path = self.path(key);
        let key = key.to_string();
        blocking(move || {
            let f = std::fs::File::open(&path).map_err(|e| io_err("get", &key, e))?;
            let mut buf = crate::pool::take_filled(len);
            f.read_exact_at(&mut buf, off)
                .map_err(|e| io_err("get", &key, e))?;
            Ok(crate::pool::into_bytes(buf))
        })
        .await
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key);
        let key = key.to_string();
        blocking(move || {
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| io_err("get", &key, e))
        })
        .await
    }

    /// Remove `key`; a missing object is fine.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        let key = key.to_string();
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == Io::NotFound => Ok(()),
            Err(e) => Err(io_err("delete", &key, e)),
        })
        .await
    }

    /// Size of `key`, or None when missing.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key);
        let key = key.to_string();
        blocking(move || match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == Io::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &key, e)),
        })
        .await
    }

    /// Every file under `prefix` (a key prefix ending in `/`), sent to `tx` as it is found;
    /// stops early when the receiver goes away.
    pub fn list(&self, prefix: &str, tx: tokio::sync::mpsc::Sender<Result<crate::ObjectInfo>>) {
        let root = self.root.clone();
        let start = self.path(prefix);
        tokio::task::spawn_blocking(move || {
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == Io::NotFound => continue,
                    Err(e) => {
                        let key = dir
                            .strip_prefix(&*root)
                            .unwrap_or(&dir)
                            .to_string_lossy()
                            .into_owned();
                        let _ = tx.blocking_send(Err(io_err("list", &key, e)));
                        return;
                    }
                };
                for e in rd.flatten() {
                    let Ok(md) = e.metadata() else { continue };
                    let p = e.path();
                    if md.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    let Ok(rel) = p.strip_prefix(&*root) else {
                        continue;
                    };
                    let info = crate::ObjectInfo {
                        key: rel.to_string_lossy().into_owned(),
                        size: md.len(),
                        modified: md.modified().ok(),
                    };
                    if tx.blocking_send(Ok(info)).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Make every object written so far durable: one `syncfs` of the bucket's filesystem.
    pub async fn sync(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || {
            let dir = std::fs::File::open(&*root).map_err(|e| io_err("sync", "bucket", e))?;
            // SAFETY: syncfs takes a valid open descriptor, which `dir` owns for the call.
            let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
            if rc != 0 {
                return Err(io_err("sync", "bucket", std::io::Error::last_os_error()));
            }
            Ok(())
        })
        .await
    }
}
