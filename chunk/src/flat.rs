//! Flat copies of whole files in the disk cache, for reads the kernel serves itself.
//!
//! A file's blocks in the cache are many small files in object-key order; the kernel's FUSE
//! passthrough needs one local file holding the file's bytes at their offsets. A flat copy is
//! that file: `<dir>/<volume UUID>/flat/<name>`, where the caller's name encodes the inode, the
//! length and a version (what makes a copy of a changed file unusable), written under a
//! temporary name and renamed into place after an fsync (a copy is trusted without checksums
//! once in place, so it must never be found torn after a crash).
//!
//! Flat copies share the cache's index and bounds with blocks (key `flat/<name>`, weighed by
//! length): they are evicted like blocks, count against `--cache-size`, and a copy longer than
//! half a directory's share of the cache is not made at all.

use crate::blockfile::tmp_writer;
use crate::cache::{key_path, CacheDir, DiskCache};
use std::io::ErrorKind as IoKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Index keys of flat copies start with this.
pub(crate) const KEY_PREFIX: &str = "flat/";

/// `<dir>/<UUID>/flat` for the block root `<dir>/<UUID>/raw`.
pub(crate) fn flat_root(raw: &Path) -> PathBuf {
    raw.parent().unwrap_or(raw).join("flat")
}

/// The name of the flat copy of inode `ino` of `len` bytes at `version` (no `/` or `_` in it).
pub fn flat_name(ino: u64, len: u64, version: &str) -> String {
    format!("{ino}_{len}_{version}")
}

/// (inode, length) from a flat copy's name.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let mut it = name.splitn(3, '_');
    let ino = it.next()?.parse().ok()?;
    let len = it.next()?.parse().ok()?;
    it.next()
        .filter(|v| !v.is_empty() && !v.contains(".tmp."))?;
    Some((ino, len))
}

/// Index what `flat/` of `d` holds (part of the start-up scan): complete copies of the length
/// their names give are indexed, anything else (temporary files of dead writers, strays) removed.
pub(crate) fn rebuild(d: &CacheDir) {
    let root = flat_root(&d.root);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = tmp_writer(&name) {
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
        }
        let size = e.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        match parse_name(&name) {
            Some((_, len)) if len == size && e.file_type().is_ok_and(|t| t.is_file()) => {
                let key = format!("{KEY_PREFIX}{name}");
                if !d.index.contains_key(&key) {
                    d.index.insert(key, size);
                }
            }
            _ => {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// A flat copy being written; removed unless [`FlatWriter::finish`] put it in place.
pub struct FlatWriter {
    dirs: Vec<Arc<CacheDir>>,
    dir: Arc<CacheDir>,
    name: String,
    tmp: PathBuf,
    file: std::fs::File,
    len: u64,
    done: bool,
}

impl std::fmt::Debug for FlatWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatWriter")
            .field("tmp", &self.tmp)
            .field("len", &self.len)
            .finish()
    }
}

impl DiskCache {
    /// The flat copy `name` of `len` bytes, opened for reading, if the cache has it (counts as
    /// a use for eviction). A file of another length is dropped.
    pub fn flat_open(&self, name: &str, len: u64) -> Option<std::fs::File> {
        let key = format!("{KEY_PREFIX}{name}");
        let d = self.dir(&key)?;
        let path = d.path(&key);
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == IoKind::NotFound {
                    d.index.invalidate(&key);
                }
                return None;
            }
        };
        if f.metadata().ok()?.len() != len {
            tracing::warn!(file = %path.display(), "flat copy of the wrong length; dropped");
            let _ = std::fs::remove_file(&path);
            d.index.invalidate(&key);
            return None;
        }
        if d.index.get(&key).is_none() {
            // on disk, not indexed yet (the start-up scan is still running)
            d.index.insert(key, len);
            d.index.run_pending_tasks();
        }
        Some(f)
    }

    /// Start the flat copy `name` of `len` bytes: None when the cache has it already, takes
    /// no full blocks (`--cache-partial-only`), has no room for it on disk, or when it would
    /// take more than half of its directory's share of `--cache-size`.
    pub fn flat_create(&self, name: &str, len: u64) -> Option<FlatWriter> {
        if self.partial_only {
            return None;
        }
        let key = format!("{KEY_PREFIX}{name}");
        let d = self.dir(&key)?;
        if d.index.contains_key(&key) {
            return None;
        }
        let cap_kib = d.index.policy().max_capacity().unwrap_or(0);
        if len.div_ceil(1024) > cap_kib / 2 || !d.fits(len) {
            let n = self.stats().flat_refused.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::info!(
                    dir = %d.root.display(),
                    len,
                    times = n + 1,
                    "no flat copy for passthrough: it would take over half of --cache-size or go under the cache disk's free-space floor; reads go through the mount"
                );
            }
            return None;
        }
        let root = flat_root(&d.root);
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
        {
            tracing::debug!(dir = %root.display(), error = %e, "no flat copy: cannot make its directory");
            return None;
        }
        let seq = d.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = root.join(format!("{name}.tmp.{}.{seq}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|f| f.set_len(len).map(|()| f));
        match file {
            Ok(file) => Some(FlatWriter {
                dirs: self.dirs.clone(),
                dir: d.clone(),
                name: name.to_string(),
                tmp,
                file,
                len,
                done: false,
            }),
            Err(e) => {
                tracing::debug!(file = %tmp.display(), error = %e, "no flat copy: cannot create it");
                let _ = std::fs::remove_file(&tmp);
                None
            }
        }
    }
}

impl DiskCache {
    /// Drop every flat copy of inode `ino` (`warmup --evict`).
    pub fn flat_evict(&self, ino: u64) {
        drop_copies(&self.dirs, ino, None);
    }
}

impl FlatWriter {
    /// Length of the copy.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the copy is of an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write `data` at `off` (blocking I/O). Bytes past the length are refused.
    pub fn write_at(&self, off: u64, data: &[u8]) -> std::io::Result<()> {
        if off.saturating_add(data.len() as u64) > self.len {
            return Err(std::io::Error::new(
                IoKind::InvalidInput,
                "write past the end of a flat copy",
            ));
        }
        self.file.write_all_at(data, off)
    }

    /// Make the copy durable and put it in place (blocking I/O); older copies of the same
    /// inode are dropped. False when the cache's index did not keep it (evicted at once to
    /// respect the size bound), in which case the file is gone again.
    pub fn finish(mut self) -> std::io::Result<bool> {
        self.file.sync_data()?;
        let key = format!("{KEY_PREFIX}{}", self.name);
        let path = key_path(&self.dir.root, &key);
        std::fs::rename(&self.tmp, &path)?;
        self.done = true;
        self.dir.index.insert(key.clone(), self.len);
        self.dir.index.run_pending_tasks();
        if let Some((ino, _)) = parse_name(&self.name) {
            self.drop_others(ino);
        }
        Ok(self.dir.index.contains_key(&key))
    }

    /// Remove every other flat copy of inode `ino` (the file changed since they were made).
    fn drop_others(&self, ino: u64) {
        drop_copies(&self.dirs, ino, Some(&self.name));
    }
}

/// Remove the flat copies of inode `ino` in `dirs`, but `keep`.
fn drop_copies(dirs: &[Arc<CacheDir>], ino: u64, keep: Option<&str>) {
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(flat_root(&d.root)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep == Some(name.as_str()) || name.contains(".tmp.") {
                continue;
            }
            if parse_name(&name).is_some_and(|(i, _)| i == ino) {
                let key = format!("{KEY_PREFIX}{name}");
                d.index.invalidate(&key);
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for FlatWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiskCacheConfig;

    fn cache(dir: &Path, capacity: u64, partial_only: bool) -> DiskCache {
        DiskCache::open(
            &DiskCacheConfig {
                dirs: vec![dir.to_path_buf()],
                capacity,
                free_ratio: 0.0,
                partial_only,
                large_writes: true,
                max_pending: 64 << 20,
            },
            "uuid",
            4 << 20,
        )
    }

    fn files_in(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn a_finished_copy_is_found_and_replaces_older_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(dir.path(), 1 << 30, false);
        let flat = dir.path().join("uuid/flat");
        let old = flat_name(7, 10, "1.0-1.0");
        let w = c.flat_create(&old, 10).expect("room for a copy");
        w.write_at(0, b"0123456789").expect("write");
        assert!(w.write_at(5, b"0123456").is_err(), "past the end");
        assert!(
            c.flat_open(&old, 10).is_none(),
            "not in place before finish"
        );
        assert!(w.finish().expect("finish"));
        let mut got = String::new();
        std::io::Read::read_to_string(&mut c.flat_open(&old, 10).expect("found"), &mut got)
            .expect("read");
        assert_eq!(got, "0123456789");
        assert!(c.flat_create(&old, 10).is_none(), "made once");

        let new = flat_name(7, 4, "2.0-2.0");
        let w = c.flat_create(&new, 4).expect("room");
        w.write_at(0, b"abcd").expect("write");
        assert!(w.finish().expect("finish"));
        assert!(c.flat_open(&old, 10).is_none(), "older version dropped");
        assert_eq!(files_in(&flat), vec![new.clone()]);

        // an abandoned copy leaves nothing behind
        let other = flat_name(8, 10, "1.0-1.0");
        drop(c.flat_create(&other, 10).expect("room"));
        assert_eq!(files_in(&flat), vec![new]);
    }

    #[test]
    fn the_start_up_scan_indexes_copies_and_drops_debris() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flat = dir.path().join("uuid/flat");
        std::fs::create_dir_all(&flat).expect("mkdir");
        let good = flat_name(3, 5, "9.9-9.9");
        std::fs::write(flat.join(&good), b"hello").expect("write");
        std::fs::write(flat.join(flat_name(4, 50, "1.1-1.1")), b"short").expect("write");
        std::fs::write(flat.join("3_5_9.9-9.9.tmp.999999999.0"), b"hello").expect("write");
        let c = cache(dir.path(), 1 << 30, false);
        for _ in 0..200 {
            if files_in(&flat).len() == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(files_in(&flat), vec![good.clone()]);
        assert!(c.flat_open(&good, 5).is_some());
        assert!(c.used_bytes() >= 5);
    }

    #[test]
    fn no_copy_without_room_or_with_partial_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 1 MiB of cache: a copy over half of it is refused
        let c = cache(dir.path(), 1 << 20, false);
        assert!(c
            .flat_create(&flat_name(1, 600 << 10, "1.0-1.0"), 600 << 10)
            .is_none());
        assert_eq!(c.stats().flat_refused.load(Ordering::Relaxed), 1);
        assert!(c
            .flat_create(&flat_name(1, 400 << 10, "1.0-1.0"), 400 << 10)
            .is_some());
        let p = tempfile::tempdir().expect("tempdir");
        let c = cache(p.path(), 1 << 30, true);
        assert!(c.flat_create(&flat_name(1, 10, "1.0-1.0"), 10).is_none());
    }

    #[test]
    fn copies_are_evicted_with_the_size_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(dir.path(), 1 << 20, false);
        let a = flat_name(1, 400 << 10, "1.0-1.0");
        let w = c.flat_create(&a, 400 << 10).expect("room");
        assert!(w.finish().expect("finish"));
        // blocks written after it push the total over 1 MiB: something must go
        for i in 0..4u32 {
            c.put(
                &format!("chunks/0/0/{i}_0_262144"),
                &vec![i as u8; 256 << 10],
            );
        }
        c.dirs[0].index.run_pending_tasks();
        assert!(c.used_bytes() <= 1 << 20, "bound kept: {}", c.used_bytes());
        let on_disk: u64 = files_in(&dir.path().join("uuid/flat"))
            .iter()
            .map(|n| std::fs::metadata(dir.path().join("uuid/flat").join(n)).map_or(0, |m| m.len()))
            .sum();
        let indexed_flat = c.dirs[0].index.contains_key(&format!("{KEY_PREFIX}{a}"));
        assert_eq!(
            on_disk > 0,
            indexed_flat,
            "a copy is on disk exactly when indexed"
        );
    }
}
