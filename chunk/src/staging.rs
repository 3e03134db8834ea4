//! The staging area of `--writeback`: blocks written to local disk before they are uploaded.
//!
//! Layout: `<cache-dir>/<volume UUID>/rawstaging/<key>` (the key without the volume-name prefix,
//! as in the read cache, and as JuiceFS lays out its staging area). A staged file has the format
//! of a read-cache file (the block's bytes, then a CRC32C per 32 KiB) and is written durably:
//! temporary name, fsync, rename, fsync of the directory. Only then is the slice committed, so a
//! committed slice of a writeback mount always has its blocks either in the object store or in
//! staging, whatever crashes.
//!
//! A staged block moves through `Waiting` (queued for upload) and `Uploading`, and leaves the
//! staging area when its upload succeeds (its file then becomes a read-cache file by a rename).
//! A block deleted while staged (its file removed, or the slice compacted away) is dropped
//! without an upload; one deleted while uploading is `Deleted`, and its uploader deletes the
//! object it just stored. A mount finds what a previous one left staged with [`Staging::scan`]
//! and uploads it.

use crate::blockfile::{
    disk_space, file_len, len_from_name, read_block_file, tmp_writer, usable_roots,
    write_block_file,
};
use bytes::Bytes;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Uploading,
    Deleted,
}

#[derive(Debug)]
struct Entry {
    root: usize,
    len: usize,
    state: State,
}

/// How an upload of a staged block ended for the staging area.
#[derive(Debug)]
pub enum Finished {
    /// The block is stored: its staged file (at this path) may become a cache file.
    Done(PathBuf),
    /// The block was deleted during the upload: the object just stored must go too, and the
    /// file (at this path).
    Deleted(PathBuf),
}

/// The staging area of one volume in one or more directories.
#[derive(Debug)]
pub struct Staging {
    roots: Vec<PathBuf>,
    free_ratio: f64,
    entries: Mutex<HashMap<String, Entry>>,
    bytes: AtomicU64,
    /// Bytes staged at most (`--cache-size`); past it blocks are refused.
    max_bytes: u64,
    seq: AtomicU64,
}

impl Staging {
    /// The staging area of volume `uuid` under `dirs` (each `<dir>/<uuid>/rawstaging`, made
    /// 0700); a directory that cannot be made is left out with a warning. Staging stops while a
    /// directory's file system is fuller than `1 - free_ratio`.
    pub fn open(dirs: &[PathBuf], uuid: &str, free_ratio: f64) -> Self {
        let roots = usable_roots(
            dirs,
            uuid,
            "rawstaging",
            "staging directory cannot be used; writes there are uploaded at once",
        );
        Self {
            roots,
            free_ratio: free_ratio.clamp(0.0, 0.99),
            entries: Mutex::new(HashMap::new()),
            bytes: AtomicU64::new(0),
            max_bytes: u64::MAX,
            seq: AtomicU64::new(0),
        }
    }

    /// This staging area refusing blocks while it holds `max` bytes (blocks a previous mount
    /// left are counted, and uploaded, all the same).
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    /// Whether any directory is usable.
    pub fn enabled(&self) -> bool {
        !self.roots.is_empty()
    }

    /// The staging roots (`<dir>/<UUID>/rawstaging`).
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // a panic while holding the lock cannot leave the map inconsistent: take it anyway
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pick(&self, key: &str) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.roots.len().max(1) as u64) as usize
    }

    fn path(&self, root: usize, key: &str) -> Option<PathBuf> {
        self.roots.get(root).map(|r| r.join(key))
    }

    /// Write block `key` durably into staging (blocking I/O). Fails when no directory is
    /// usable, its disk is under the free-space floor, or the write fails; the caller uploads
    /// the block directly then.
    pub fn stage(&self, key: &str, data: &[u8]) -> std::io::Result<()> {
        let root = self.pick(key);
        let Some(path) = self.path(root, key) else {
            return Err(std::io::Error::other("no usable staging directory"));
        };
        let held = self.bytes.load(Ordering::Relaxed);
        if held.saturating_add(data.len() as u64) > self.max_bytes {
            return Err(std::io::Error::other(format!(
                "staging holds {held} bytes, its bound (--cache-size) is {}",
                self.max_bytes
            )));
        }
        if let Some((avail, total)) = disk_space(&self.roots[root]) {
            let floor = (self.free_ratio * total as f64) as u64;
            if avail < floor.saturating_add(file_len(data.len())) {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        write_block_file(
            &path,
            data,
            None,
            self.seq.fetch_add(1, Ordering::Relaxed),
            true,
        )?;
        let old = self.entries().insert(
            key.to_string(),
            Entry {
                root,
                len: data.len(),
                state: State::Waiting,
            },
        );
        if old.is_none() {
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Where block `key` is staged, if it is (and not deleted).
    fn live_path(&self, key: &str) -> Option<(PathBuf, usize)> {
        let e = self.entries();
        let en = e.get(key).filter(|en| en.state != State::Deleted)?;
        Some((self.path(en.root, key)?, en.len))
    }

    /// Whether block `key` is staged.
    pub fn contains(&self, key: &str) -> bool {
        self.live_path(key).is_some()
    }

    /// The staged block `key` of `len` bytes, verified (blocking I/O).
    pub fn read(&self, key: &str, len: usize) -> Option<Bytes> {
        let (path, staged_len) = self.live_path(key)?;
        if staged_len != len {
            return None;
        }
        let got = read_block_file(&path, len);
        if got.is_none() && self.contains(key) {
            tracing::error!(file = %path.display(), "staged block is unreadable or fails its checksums");
        }
        got
    }

    /// Start uploading block `key`: its file and length, or None when it is no longer staged.
    pub fn begin(&self, key: &str) -> Option<(PathBuf, usize)> {
        let mut e = self.entries();
        let en = e.get_mut(key).filter(|en| en.state == State::Waiting)?;
        en.state = State::Uploading;
        let (root, len) = (en.root, en.len);
        Some((self.path(root, key)?, len))
    }

    fn remove_entry(&self, e: &mut HashMap<String, Entry>, key: &str) -> Option<Entry> {
        let en = e.remove(key)?;
        self.bytes.fetch_sub(en.len as u64, Ordering::Relaxed);
        Some(en)
    }

    /// The upload of block `key` succeeded.
    pub fn finish(&self, key: &str) -> Option<Finished> {
        let mut e = self.entries();
        let en = self.remove_entry(&mut e, key)?;
        let path = self.path(en.root, key)?;
        Some(if en.state == State::Deleted {
            Finished::Deleted(path)
        } else {
            Finished::Done(path)
        })
    }

    /// The upload of block `key` failed: it waits again. False when the block was deleted
    /// meanwhile (its file is removed then, and there is nothing more to upload).
    pub fn retry_later(&self, key: &str) -> bool {
        let mut e = self.entries();
        match e.get_mut(key) {
            Some(en) if en.state == State::Deleted => {
                if let Some(en) = self.remove_entry(&mut e, key) {
                    if let Some(p) = self.path(en.root, key) {
                        let _ = std::fs::remove_file(p);
                    }
                }
                false
            }
            Some(en) => {
                en.state = State::Waiting;
                true
            }
            None => false,
        }
    }

    /// Forget block `key`, whose staged file cannot be read. Returns whether it was still
    /// wanted (not deleted), i.e. whether data was lost.
    pub fn forget(&self, key: &str) -> bool {
        let mut e = self.entries();
        self.remove_entry(&mut e, key)
            .is_some_and(|en| en.state != State::Deleted)
    }

    /// Block `key` is deleted (its slice is gone). A waiting block is dropped with its file
    /// (blocking I/O); one being uploaded is marked, for its uploader to delete the object.
    pub fn discard(&self, key: &str) {
        let mut e = self.entries();
        let Some(en) = e.get_mut(key) else { return };
        match en.state {
            State::Waiting => {
                if let Some(en) = self.remove_entry(&mut e, key) {
                    if let Some(p) = self.path(en.root, key) {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
            State::Uploading => en.state = State::Deleted,
            State::Deleted => {}
        }
    }

    /// Blocks and bytes staged now (waiting or uploading).
    pub fn pending(&self) -> (u64, u64) {
        let n = self.entries().len() as u64;
        (n, self.bytes.load(Ordering::Relaxed))
    }

    /// Find the blocks a previous mount left staged (blocking I/O; run at start): complete
    /// files are taken in as waiting and returned as (key, length); temporary files of dead
    /// writers are removed; anything else is left alone with a warning.
    pub fn scan(&self) -> Vec<(String, usize)> {
        let mut found = Vec::new();
        for (ri, root) in self.roots.iter().enumerate() {
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for ent in rd.flatten() {
                    let Ok(ft) = ent.file_type() else { continue };
                    let p = ent.path();
                    if ft.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    let name = ent.file_name().to_string_lossy().into_owned();
                    if let Some(pid) = tmp_writer(&name) {
                        let alive = pid == std::process::id()
                            || Path::new(&format!("/proc/{pid}")).exists();
                        if !alive {
                            // an unfinished staging write: its slice was never committed
                            let _ = std::fs::remove_file(&p);
                        }
                        continue;
                    }
                    let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
                    let Some(len) = len_from_name(&name).filter(|l| file_len(*l) == size) else {
                        tracing::warn!(file = %p.display(), "not a staged block (name or length wrong); left alone");
                        continue;
                    };
                    let Ok(rel) = p.strip_prefix(root) else {
                        continue;
                    };
                    let key = rel.to_string_lossy().into_owned();
                    let mut e = self.entries();
                    if !e.contains_key(&key) {
                        e.insert(
                            key.clone(),
                            Entry {
                                root: ri,
                                len,
                                state: State::Waiting,
                            },
                        );
                        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
                        found.push((key, len));
                    }
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    #[test]
    fn staged_blocks_read_back_and_leave_on_finish() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Staging::open(&[t.path().to_path_buf()], "u", 0.0);
        let key = "chunks/0/0/5_0_70000";
        s.stage(key, &block(70_000)).expect("stage");
        assert!(t.path().join("u/rawstaging").join(key).exists());
        assert_eq!(s.pending(), (1, 70_000));
        assert_eq!(&s.read(key, 70_000).expect("read")[..], &block(70_000)[..]);
        assert!(s.read(key, 69_999).is_none(), "wrong length is not served");
        let (path, len) = s.begin(key).expect("begin");
        assert_eq!(len, 70_000);
        assert!(s.begin(key).is_none(), "one uploader per block");
        assert!(s.retry_later(key));
        assert!(s.begin(key).is_some());
        assert!(
            matches!(s.finish(key), Some(Finished::Done(p)) if p == path),
            "a finished block's file is handed over"
        );
        assert_eq!(s.pending(), (0, 0));
    }

    #[test]
    fn deleted_blocks_are_dropped_or_marked() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Staging::open(&[t.path().to_path_buf()], "u", 0.0);
        s.stage("chunks/0/0/1_0_100", &block(100)).expect("stage");
        s.discard("chunks/0/0/1_0_100");
        assert!(!t.path().join("u/rawstaging/chunks/0/0/1_0_100").exists());
        assert!(s.begin("chunks/0/0/1_0_100").is_none());
        s.stage("chunks/0/0/2_0_100", &block(100)).expect("stage");
        s.begin("chunks/0/0/2_0_100").expect("begin");
        s.discard("chunks/0/0/2_0_100");
        assert!(!s.contains("chunks/0/0/2_0_100"));
        assert!(matches!(
            s.finish("chunks/0/0/2_0_100"),
            Some(Finished::Deleted(_))
        ));
        assert_eq!(s.pending(), (0, 0));
    }

    #[test]
    fn a_new_staging_area_finds_what_was_left() {
        let t = tempfile::tempdir().expect("tempdir");
        {
            let s = Staging::open(&[t.path().to_path_buf()], "u", 0.0);
            s.stage("chunks/0/0/7_0_1000", &block(1000)).expect("stage");
            s.stage("chunks/0/1/9_1_500", &block(500)).expect("stage");
        }
        let root = t.path().join("u/rawstaging/chunks/0/0");
        std::fs::write(root.join("8_0_10.tmp.4000000000.1"), b"x").expect("tmp");
        let s = Staging::open(&[t.path().to_path_buf()], "u", 0.0);
        let mut found = s.scan();
        found.sort();
        assert_eq!(
            found,
            vec![
                ("chunks/0/0/7_0_1000".to_string(), 1000),
                ("chunks/0/1/9_1_500".to_string(), 500)
            ]
        );
        assert!(!root.join("8_0_10.tmp.4000000000.1").exists());
        assert_eq!(
            &s.read("chunks/0/1/9_1_500", 500).expect("read")[..],
            &block(500)[..]
        );
    }

    #[test]
    fn a_disk_under_its_floor_refuses_staging() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Staging::open(&[t.path().to_path_buf()], "u", 0.99);
        let e = s
            .stage("chunks/0/0/1_0_100", &block(100))
            .expect_err("full");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(s.pending(), (0, 0));
    }

    #[test]
    fn staging_holds_no_more_than_its_bound() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Staging::open(&[t.path().to_path_buf()], "u", 0.0).with_max_bytes(250);
        s.stage("chunks/0/0/1_0_100", &block(100)).expect("first");
        s.stage("chunks/0/0/2_0_100", &block(100)).expect("second");
        s.stage("chunks/0/0/3_0_100", &block(100))
            .expect_err("a third would pass the bound");
        assert_eq!(s.pending(), (2, 200));
        // once one is uploaded there is room again
        s.begin("chunks/0/0/1_0_100").expect("upload begins");
        s.finish("chunks/0/0/1_0_100").expect("upload ends");
        s.stage("chunks/0/0/3_0_100", &block(100))
            .expect("room again");
    }
}
