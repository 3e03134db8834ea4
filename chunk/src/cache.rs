//! The local disk cache of blocks.
//!
//! Layout: `<cache-dir>/<volume UUID>/raw/<key>`, where `<key>` is the block's object key without
//! the volume-name prefix (`chunks/0/0/1_0_4194304`), as JuiceFS lays out its cache. Blocks are
//! immutable, so a cached copy is valid for as long as it is intact; "intact" is checked on every
//! read: a cache file is the block's (uncompressed) bytes followed by one CRC32C per 32 KiB of
//! them, and a file of the wrong length or with a failing checksum is dropped and the block read
//! from the object store instead.
//!
//! Files are written under a temporary name, then renamed into place, with mode 0600; nothing is
//! fsynced (a file torn by a crash fails its checksums). The index of what is cached (by size,
//! for eviction) lives in a `moka` cache per directory, rebuilt in the background at start from
//! what is on disk; leftover temporary files are removed then.
//!
//! Every failure of the cache (a full disk, a deleted or read-only directory, a corrupt file)
//! degrades to an uncached read: nothing here returns an error to a reader.

use crate::blockfile::{
    disk_space, file_len, len_from_name, tmp_writer, usable_roots, verify, write_block_file,
    SEGMENT,
};
use bytes::Bytes;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind as IoKind, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often pending evictions of the cache index are run when nothing else runs them.
const UPKEEP: Duration = Duration::from_millis(200);

/// How often, at most, a cache directory's free space is looked at.
const SPACE_CHECK: Duration = Duration::from_secs(1);

/// Settings of the disk cache.
#[derive(Debug, Clone)]
pub struct DiskCacheConfig {
    /// Cache directories (the volume's files go under `<dir>/<UUID>/raw`).
    pub dirs: Vec<PathBuf>,
    /// Most bytes kept, over all directories.
    pub capacity: u64,
    /// Share of each directory's file system that is left free (0.1 = stop at 90 % full).
    pub free_ratio: f64,
    /// Cache only blocks read at random and blocks shorter than a full block (small files,
    /// tails), not full blocks read or written in sequence.
    pub partial_only: bool,
    /// Cache full blocks this client writes too (JuiceFS's `--cache-large-write`). Off by
    /// default: a large sequential write is seldom read back by its writer, and caching it
    /// writes every byte twice to local disks, which slows the upload to a store that shares
    /// them. Partial blocks (small files, tails) are always cached.
    pub large_writes: bool,
    /// Most bytes of blocks waiting to be written to the cache; blocks past that are not cached.
    pub max_pending: u64,
}

/// Why a block is offered to the cache (for `partial_only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Read as part of a sequential read.
    Sequential,
    /// Read for a random access (or fetched whole because of one).
    Random,
    /// Just written by this client.
    Written,
    /// Asked for by `warmup`: always cached.
    Warmup,
}

/// Counters of the disk cache, since mount.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Blocks (or ranges) served from disk.
    pub hits: AtomicU64,
    /// Lookups that found nothing usable.
    pub misses: AtomicU64,
    /// Blocks written to the cache.
    pub stored: AtomicU64,
    /// Cache files dropped for a bad length or checksum.
    pub corrupt: AtomicU64,
    /// Cache writes that failed (full disk, read-only or missing directory).
    pub failed_writes: AtomicU64,
    /// Blocks not cached because the disk was under its free-space floor or too many writes
    /// were waiting.
    pub skipped: AtomicU64,
    /// Flat copies not made for want of room (`--cache-size` or the free-space floor).
    pub flat_refused: AtomicU64,
}

/// The disk cache of one volume in one or more directories.
pub struct DiskCache {
    pub(crate) dirs: Vec<Arc<CacheDir>>,
    block_size: u32,
    pub(crate) partial_only: bool,
    large_writes: bool,
    pending: AtomicU64,
    max_pending: u64,
    stats: Arc<CacheStats>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field(
                "dirs",
                &self.dirs.iter().map(|d| &d.root).collect::<Vec<_>>(),
            )
            .finish()
    }
}

pub(crate) struct CacheDir {
    /// `<dir>/<UUID>/raw`.
    pub(crate) root: PathBuf,
    /// Cached keys and their file sizes.
    pub(crate) index: moka::sync::Cache<String, u64>,
    free_ratio: f64,
    /// Free space as last looked at, less what was written since.
    space: Mutex<Space>,
    /// Unique part of temporary names.
    pub(crate) tmp_seq: AtomicU64,
    /// Blocks refused for the free-space floor (for logging at growing intervals).
    floor_hits: AtomicU64,
    stats: Arc<CacheStats>,
}

/// What a cache directory's file system had free.
#[derive(Default)]
struct Space {
    /// When it was looked at.
    checked: Option<Instant>,
    /// Bytes available then, less what was written since.
    avail: u64,
    /// Bytes to leave free.
    floor: u64,
}

/// Where the file of index key `key` lives: blocks under `root` (`<dir>/<UUID>/raw`), flat
/// copies of files (keys `flat/<name>`, see `flat`) beside it in `<dir>/<UUID>/flat`.
pub(crate) fn key_path(root: &Path, key: &str) -> PathBuf {
    match key.strip_prefix(crate::flat::KEY_PREFIX) {
        Some(name) => crate::flat::flat_root(root).join(name),
        None => root.join(key),
    }
}

impl CacheDir {
    pub(crate) fn path(&self, key: &str) -> PathBuf {
        key_path(&self.root, key)
    }

    /// Drop the cache file `found` (open at `key`'s path), found broken. Only if the path still
    /// names that file: two readers of one block may both find it broken, and the first may
    /// already have fetched the block again and put a good file in its place, which the second
    /// must not remove (nothing would put it back until the block is read again).
    fn drop_corrupt(&self, key: &str, found: &std::fs::File, why: &str) {
        use std::os::unix::fs::MetadataExt;
        let p = self.path(key);
        let same = match (found.metadata(), std::fs::metadata(&p)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            return;
        }
        tracing::warn!(file = %p.display(), "disk cache: {why}; dropped, the block is read from the object store");
        self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
        let _ = std::fs::remove_file(&p);
        self.index.invalidate(key);
    }

    fn open(&self, key: &str, len: usize) -> Option<std::fs::File> {
        let f = match std::fs::File::open(self.path(key)) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == IoKind::NotFound {
                    // evicted, or the directory was removed under us
                    self.index.invalidate(key);
                }
                return None;
            }
        };
        match f.metadata() {
            Ok(m) if m.len() == file_len(len) => Some(f),
            Ok(m) => {
                self.drop_corrupt(
                    key,
                    &f,
                    &format!("{} bytes, expected {}", m.len(), file_len(len)),
                );
                None
            }
            Err(_) => None,
        }
    }

    /// The whole block, verified.
    fn read(&self, key: &str, len: usize) -> Option<Bytes> {
        let f = self.open(key, len)?;
        let want = file_len(len) as usize;
        // read into the buffer's spare room: no zero fill of memory about to be overwritten.
        // Buffered, not direct: with the kernel's readahead on the cache file a warm model
        // load ran at 809-865 MiB/s, with O_DIRECT reads at 634-759 (4 alternating rounds each)
        let mut buf = crate::pool::take(want);
        match (&f).take(want as u64).read_to_end(&mut buf) {
            Ok(n) if n == want => {}
            _ => {
                crate::pool::give(buf);
                return None;
            }
        }
        if !verify(&buf[..len], &buf[len..]) {
            crate::pool::give(buf);
            self.drop_corrupt(key, &f, "checksum mismatch");
            return None;
        }
        buf.truncate(len);
        self.touch(key, file_len(len));
        // back to the pool when the last user drops it
        Some(crate::pool::into_bytes(buf))
    }

    /// Bytes `[off, off + n)` of the block, verifying only the segments they fall in.
    fn read_range(&self, key: &str, len: usize, off: usize, n: usize) -> Option<Bytes> {
        if n == 0 || off + n > len {
            return None;
        }
        let f = self.open(key, len)?;
        let (first, last) = (off / SEGMENT, (off + n - 1) / SEGMENT);
        let start = first * SEGMENT;
        let end = ((last + 1) * SEGMENT).min(len);
        let mut data = vec![0u8; end - start];
        let mut crcs = vec![0u8; 4 * (last + 1 - first)];
        if f.read_exact_at(&mut data, start as u64).is_err()
            || f.read_exact_at(&mut crcs, (len + 4 * first) as u64)
                .is_err()
        {
            return None;
        }
        if !verify(&data, &crcs) {
            self.drop_corrupt(key, &f, "checksum mismatch");
            return None;
        }
        self.touch(key, file_len(len));
        Some(Bytes::from(data).slice(off - start..off - start + n))
    }

    /// Count a use of `key` for eviction, and index a file found on disk but not indexed yet
    /// (the index is still being rebuilt).
    fn touch(&self, key: &str, size: u64) {
        if self.index.get(key).is_none() {
            self.index.insert(key.to_string(), size);
            // the size bound holds now: moka evicts only while it is being used, and a
            // mount that goes quiet after this would keep the overshoot on disk
            self.index.run_pending_tasks();
        }
    }

    /// Whether `len` more bytes fit above the free-space floor as the disk was last looked at
    /// (for a flat copy, which is written over seconds: nothing is counted or evicted here, the
    /// writes show up at the next look).
    pub(crate) fn fits(&self, len: u64) -> bool {
        let Ok(s) = self.space.lock() else {
            return false;
        };
        let (avail, floor) = if s.checked.is_some() {
            (s.avail, s.floor)
        } else {
            drop(s);
            match disk_space(&self.root) {
                Some((avail, total)) => (avail, (self.free_ratio * total as f64) as u64),
                None => return false,
            }
        };
        avail >= floor.saturating_add(len)
    }

    /// Whether a block of `incoming` bytes may be written now, counting it against the free
    /// space when so; evicts when the disk is under its floor. The disk is looked at once a
    /// second at most; in between, what was written here is subtracted from what it had.
    fn has_room(&self, incoming: u64) -> bool {
        let Ok(mut s) = self.space.lock() else {
            return false;
        };
        if s.checked.is_none_or(|t| t.elapsed() >= SPACE_CHECK) {
            match disk_space(&self.root) {
                Some((avail, total)) => {
                    s.avail = avail;
                    s.floor = (self.free_ratio * total as f64) as u64;
                }
                None => {
                    // the directory is gone: make it again for the next block
                    let _ = std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&self.root);
                    s.avail = 0;
                }
            }
            s.checked = Some(Instant::now());
        }
        let need = s.floor.saturating_add(incoming);
        if s.avail >= need {
            s.avail -= incoming;
            return true;
        }
        let n = self.floor_hits.fetch_add(1, Ordering::Relaxed);
        if n == 0 || n.is_power_of_two() {
            tracing::warn!(
                dir = %self.root.display(),
                avail_mib = s.avail >> 20,
                floor_mib = s.floor >> 20,
                free_space_ratio = self.free_ratio,
                times = n + 1,
                "disk cache directory is under its free-space floor: blocks are not cached (free space on its disk, or lower --free-space-ratio)"
            );
        }
        if s.avail > 0 {
            // make room for the next ones: drop cached blocks worth what is missing
            self.evict(need - s.avail);
        }
        false
    }

    /// Drop cached blocks worth at least `bytes` (in no particular order).
    fn evict(&self, bytes: u64) {
        let mut freed = 0u64;
        let victims: Vec<(Arc<String>, u64)> = self
            .index
            .iter()
            .take_while(|(_, size)| {
                let go = freed < bytes;
                freed += *size;
                go
            })
            .collect();
        for (k, _) in victims {
            self.index.invalidate(k.as_str());
        }
    }

    /// Write a block (under a temporary name, then renamed).
    fn write(&self, key: &str, data: &[u8], trailer: Option<&[u8]>) -> std::io::Result<()> {
        write_block_file(
            &self.path(key),
            data,
            trailer,
            self.tmp_seq.fetch_add(1, Ordering::Relaxed),
            false,
        )
    }

    /// Index what is on disk (run once at start, in the background): complete cache files of
    /// the right length are indexed, temporary and malformed ones removed.
    fn rebuild(&self) {
        let mut stack = vec![self.root.clone()];
        let mut indexed = 0u64;
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                let p = e.path();
                if ft.is_dir() {
                    stack.push(p);
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                if let Some(pid) = tmp_writer(&name) {
                    // a block being written now, by this process or another live mount
                    // sharing the directory, is not debris
                    if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                        continue;
                    }
                }
                let good = !name.contains(".tmp.")
                    && len_from_name(&name).is_some_and(|len| file_len(len) == size);
                if !good {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                let Ok(rel) = p.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().into_owned();
                if !self.index.contains_key(&key) {
                    self.index.insert(key, size);
                    indexed += 1;
                    if indexed.is_multiple_of(1024) {
                        self.index.run_pending_tasks();
                    }
                }
            }
        }
        crate::flat::rebuild(self);
        // evictions for the size bound happen now, not at some later cache operation
        self.index.run_pending_tasks();
    }
}

impl DiskCache {
    /// The cache of volume `uuid` with blocks of `block_size`: directories are created (0700)
    /// and indexed in the background. A directory that cannot be created is left out with a
    /// warning; with none left the cache is off.
    pub fn open(cfg: &DiskCacheConfig, uuid: &str, block_size: u32) -> Self {
        let stats = Arc::new(CacheStats::default());
        let usable = usable_roots(
            &cfg.dirs,
            uuid,
            "raw",
            "cache directory cannot be used; reads from it go to the object store",
        );
        let per_dir_kib = (cfg.capacity / 1024 / (usable.len().max(1) as u64)).max(1);
        let dirs: Vec<Arc<CacheDir>> = usable
            .into_iter()
            .map(|root| {
                let evict_root = root.clone();
                let index = moka::sync::Cache::builder()
                    .max_capacity(per_dir_kib)
                    .weigher(|_k: &String, v: &u64| {
                        u32::try_from(v.div_ceil(1024)).unwrap_or(u32::MAX).max(1)
                    })
                    .eviction_listener(move |k: Arc<String>, _v: u64, cause| {
                        use moka::notification::RemovalCause;
                        if matches!(cause, RemovalCause::Size | RemovalCause::Explicit) {
                            let _ = std::fs::remove_file(key_path(&evict_root, k.as_str()));
                        }
                    })
                    .build();
                Arc::new(CacheDir {
                    root,
                    index,
                    free_ratio: cfg.free_ratio.clamp(0.0, 0.99),
                    space: Mutex::new(Space::default()),
                    tmp_seq: AtomicU64::new(0),
                    floor_hits: AtomicU64::new(0),
                    stats: stats.clone(),
                })
            })
            .collect();
        for d in &dirs {
            let d = d.clone();
            let _ = std::thread::Builder::new()
                .name("tidefs-cache-scan".into())
                .spawn(move || d.rebuild());
        }
        // moka evicts only while it is being used, and one maintenance pass is bounded (time,
        // log repeats, eviction batch) and may leave evictions for a later one: the last blocks
        // written before the mount goes quiet could stay on disk over --cache-size (a CI run
        // caught 25 files under a 10-file bound). A light pass every UPKEEP keeps the bound,
        // and the thread ends with the cache.
        let weak: Vec<std::sync::Weak<CacheDir>> = dirs.iter().map(Arc::downgrade).collect();
        let _ = std::thread::Builder::new()
            .name("tidefs-cache-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP);
                let mut alive = false;
                for d in weak.iter().filter_map(std::sync::Weak::upgrade) {
                    d.index.run_pending_tasks();
                    alive = true;
                }
                if !alive {
                    break;
                }
            });
        Self {
            dirs,
            block_size,
            partial_only: cfg.partial_only,
            large_writes: cfg.large_writes,
            pending: AtomicU64::new(0),
            max_pending: cfg.max_pending,
            stats,
        }
    }

    /// Whether any directory is in use.
    pub fn enabled(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Cache roots (`<dir>/<UUID>/raw`).
    pub fn roots(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.root.clone()).collect()
    }

    /// Bytes indexed now, over all directories.
    pub fn used_bytes(&self) -> u64 {
        self.dirs
            .iter()
            .map(|d| {
                d.index.run_pending_tasks();
                d.index.iter().map(|(_, v)| v).sum::<u64>()
            })
            .sum()
    }

    pub(crate) fn dir(&self, key: &str) -> Option<&Arc<CacheDir>> {
        if self.dirs.is_empty() {
            return None;
        }
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.dirs
            .get((h.finish() % self.dirs.len() as u64) as usize)
    }

    /// The whole block `key` of `len` bytes, if cached and intact.
    pub fn get(&self, key: &str, len: usize) -> Option<Bytes> {
        let got = self.dir(key)?.read(key, len);
        self.count(got.is_some());
        got
    }

    /// Bytes `[off, off + n)` of block `key` of `len` bytes, if cached and intact.
    pub fn get_range(&self, key: &str, len: usize, off: usize, n: usize) -> Option<Bytes> {
        let got = self.dir(key)?.read_range(key, len, off, n);
        self.count(got.is_some());
        got
    }

    fn count(&self, hit: bool) {
        let c = if hit {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether block `key` is indexed as cached.
    pub fn contains(&self, key: &str) -> bool {
        self.dir(key).is_some_and(|d| d.index.contains_key(key))
    }

    /// Whether a block of `len` bytes offered for `why` should be cached at all.
    pub fn admits(&self, len: usize, why: Admit) -> bool {
        if self.dirs.is_empty() {
            return false;
        }
        let full = len >= self.block_size as usize;
        if full && why == Admit::Written && !self.large_writes {
            return false;
        }
        !(self.partial_only && full && matches!(why, Admit::Sequential | Admit::Written))
    }

    /// Reserve room for a pending write of `len` bytes; false when too much is waiting.
    pub fn reserve(&self, len: usize) -> bool {
        let len = len as u64;
        let mut cur = self.pending.load(Ordering::Relaxed);
        loop {
            if cur + len > self.max_pending {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match self.pending.compare_exchange_weak(
                cur,
                cur + len,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Give back a reservation of [`DiskCache::reserve`].
    pub fn release(&self, len: usize) {
        self.pending.fetch_sub(len as u64, Ordering::AcqRel);
    }

    /// Store block `key` (blocking I/O: call off the async threads). Failures are counted and
    /// logged (once per directory and kind of failure in a row), never returned.
    pub fn put(&self, key: &str, data: &[u8]) {
        self.put_with_trailer(key, data, None)
    }

    /// [`put`](Self::put) with the block's cache trailer (see [`trailer`]) when the caller
    /// computed it already (checking the block against its stored checksums), so the block's
    /// bytes are not run through CRC32C twice.
    pub fn put_with_trailer(&self, key: &str, data: &[u8], trailer: Option<&[u8]>) {
        let Some(d) = self.dir(key) else { return };
        if d.index.contains_key(key) {
            return;
        }
        let size = file_len(data.len());
        if !d.has_room(size) {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match d.write(key, data, trailer) {
            Ok(()) => {
                d.index.insert(key.to_string(), size);
                // evictions for the size bound happen now, not at some later cache operation
                d.index.run_pending_tasks();
                self.stats.stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let n = self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(dir = %d.root.display(), error = %e, failures = n + 1, "disk cache write failed; the block stays uncached");
                }
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    // look at the disk again before the next write
                    if let Ok(mut s) = d.space.lock() {
                        s.checked = None;
                    }
                }
            }
        }
    }

    /// Take the block file `from` (in the format of this cache, e.g. a staged block just
    /// uploaded) into the cache as block `key` of `len` bytes by renaming it. False, with the
    /// file left where it was, when the cache has it already or the rename fails (another
    /// file system).
    pub fn adopt(&self, key: &str, from: &Path, len: usize) -> bool {
        let Some(d) = self.dir(key) else { return false };
        if d.index.contains_key(key) {
            return false;
        }
        let to = d.path(key);
        if let Some(parent) = to.parent() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent);
        }
        if std::fs::rename(from, &to).is_err() {
            return false;
        }
        d.index.insert(key.to_string(), file_len(len));
        d.index.run_pending_tasks();
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Drop block `key` from the cache (its file too).
    pub fn remove(&self, key: &str) {
        if let Some(d) = self.dir(key) {
            if d.index.contains_key(key) {
                d.index.invalidate(key);
            } else {
                let _ = std::fs::remove_file(d.path(key));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockfile::{read_block_file, trailer};

    fn cfg(dir: &Path, capacity: u64) -> DiskCacheConfig {
        DiskCacheConfig {
            dirs: vec![dir.to_path_buf()],
            capacity,
            free_ratio: 0.0,
            partial_only: false,
            large_writes: true,
            max_pending: 64 << 20,
        }
    }

    fn block(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn block_files_are_the_same_whether_written_direct_or_buffered() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (i, len) in [4 << 20, (4 << 20) - 100, 3 * 4096, 5000, 100]
            .into_iter()
            .enumerate()
        {
            let data = block(i as u8, len);
            // page aligned (the direct path where the file system allows it) and one byte off
            let (mut aligned, pad) = crate::pool::take_aligned(len);
            aligned.extend_from_slice(&data);
            let mut skewed = vec![0u8; len + 1];
            skewed[1..].copy_from_slice(&data);
            for (name, bytes) in [("a", &aligned[pad..]), ("s", &skewed[1..])] {
                let path = dir.path().join(format!("{name}{i}"));
                write_block_file(&path, bytes, None, 1, false).expect("write");
                let on_disk = std::fs::read(&path).expect("read back");
                assert_eq!(on_disk.len() as u64, file_len(len));
                assert_eq!(&on_disk[..len], &data[..], "{name} {len}");
                assert_eq!(&on_disk[len..], &trailer(&data)[..], "{name} {len}");
                assert_eq!(
                    read_block_file(&path, len).as_deref(),
                    Some(&data[..]),
                    "{name} {len}"
                );
            }
        }
    }

    #[test]
    fn temporary_names_carry_their_writer() {
        assert_eq!(tmp_writer("7_0_4096.tmp.1234.5"), Some(1234));
        assert_eq!(tmp_writer("7_0_4096"), None);
        assert_eq!(tmp_writer("7_0_4096.tmp.x.5"), None);
    }

    #[test]
    fn blocks_round_trip_and_ranges_verify() {
        let t = tempfile::tempdir().expect("tempdir");
        let c = DiskCache::open(&cfg(t.path(), 1 << 30), "u", 1 << 20);
        let data = block(1, 100_000);
        c.put("chunks/0/0/7_0_100000", &data);
        let p = t.path().join("u/raw/chunks/0/0/7_0_100000");
        let meta = std::fs::metadata(&p).expect("cache file");
        assert_eq!(meta.len(), file_len(100_000));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            &c.get("chunks/0/0/7_0_100000", 100_000).expect("hit")[..],
            &data[..]
        );
        for (off, n) in [(0, 1), (32767, 2), (40_000, 60_000), (99_999, 1)] {
            let r = c
                .get_range("chunks/0/0/7_0_100000", 100_000, off, n)
                .expect("range");
            assert_eq!(&r[..], &data[off..off + n], "{off}+{n}");
        }
        assert!(c.get("chunks/0/0/8_0_100000", 100_000).is_none());
    }

    #[test]
    fn corrupt_or_short_files_are_dropped_not_served() {
        let t = tempfile::tempdir().expect("tempdir");
        let c = DiskCache::open(&cfg(t.path(), 1 << 30), "u", 1 << 20);
        let data = block(2, 70_000);
        let key = "chunks/0/0/9_0_70000";
        c.put(key, &data);
        let p = t.path().join("u/raw").join(key);
        let mut raw = std::fs::read(&p).expect("read");
        raw[50_000] ^= 0x40;
        std::fs::write(&p, &raw).expect("flip");
        // the flipped byte is in the second segment: a range in the first still verifies
        assert_eq!(
            &c.get_range(key, 70_000, 0, 100).expect("first")[..],
            &data[..100]
        );
        assert!(c.get_range(key, 70_000, 49_000, 2000).is_none());
        assert!(!p.exists(), "a corrupt file is removed");
        c.put(key, &data);
        std::fs::write(&p, &raw[..1000]).expect("truncate");
        assert!(c.get(key, 70_000).is_none());
        assert!(!p.exists());
        assert_eq!(c.stats().corrupt.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_late_reader_of_a_broken_file_leaves_its_good_replacement() {
        let t = tempfile::tempdir().expect("tempdir");
        let c = DiskCache::open(&cfg(t.path(), 1 << 30), "u", 1 << 20);
        let data = block(3, 70_000);
        let key = "chunks/0/0/10_0_70000";
        c.put(key, &data);
        let p = t.path().join("u/raw").join(key);
        let mut raw = std::fs::read(&p).expect("read");
        raw[10] ^= 0x01;
        std::fs::write(&p, &raw).expect("flip");
        // a second reader opened the broken file; the first dropped it, fetched the block
        // again and cached it anew
        let late = std::fs::File::open(&p).expect("open");
        assert!(c.get(key, 70_000).is_none());
        c.put(key, &data);
        let dir = c.dir(key).expect("dir");
        dir.drop_corrupt(key, &late, "checksum mismatch");
        assert!(p.exists(), "the good file stays");
        assert_eq!(&c.get(key, 70_000).expect("cached")[..], &data[..]);
        assert_eq!(c.stats().corrupt.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn size_bound_evicts_and_index_is_rebuilt() {
        let t = tempfile::tempdir().expect("tempdir");
        let c = DiskCache::open(&cfg(t.path(), 1 << 20), "u", 1 << 20);
        for i in 0..40u64 {
            c.put(
                &format!("chunks/0/0/{i}_0_100000"),
                &block(i as u8, 100_000),
            );
        }
        let used = c.used_bytes();
        assert!(used <= 1 << 20, "indexed {used} bytes over a 1 MiB bound");
        let on_disk: u64 = std::fs::read_dir(t.path().join("u/raw/chunks/0/0"))
            .expect("ls")
            .map(|e| e.expect("entry").metadata().expect("stat").len())
            .sum();
        assert!(
            on_disk <= 1 << 20,
            "{on_disk} bytes on disk over a 1 MiB bound"
        );
        // a leftover temporary file and a file of the wrong length go at the next start
        std::fs::write(
            t.path().join("u/raw/chunks/0/0/99_0_100.tmp.4000000000.1"),
            b"x",
        )
        .expect("tmp");
        std::fs::write(t.path().join("u/raw/chunks/0/0/98_0_100"), b"short").expect("bad");
        drop(c);
        let again = DiskCache::open(&cfg(t.path(), 1 << 20), "u", 1 << 20);
        let deadline = Instant::now() + Duration::from_secs(10);
        while again.used_bytes() != on_disk && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(again.used_bytes(), on_disk, "index rebuilt from disk");
        assert!(!t
            .path()
            .join("u/raw/chunks/0/0/99_0_100.tmp.4000000000.1")
            .exists());
        assert!(!t.path().join("u/raw/chunks/0/0/98_0_100").exists());
    }

    #[test]
    fn a_removed_directory_degrades_to_misses_and_comes_back() {
        let t = tempfile::tempdir().expect("tempdir");
        let c = DiskCache::open(&cfg(t.path(), 1 << 30), "u", 1 << 20);
        let data = block(3, 5000);
        c.put("chunks/0/0/1_0_5000", &data);
        std::fs::remove_dir_all(t.path().join("u")).expect("rm -rf");
        assert!(c.get("chunks/0/0/1_0_5000", 5000).is_none());
        // the next write makes the directory again
        c.put("chunks/0/0/2_0_5000", &data);
        assert_eq!(
            &c.get("chunks/0/0/2_0_5000", 5000).expect("hit")[..],
            &data[..]
        );
    }

    #[test]
    fn partial_only_skips_full_sequential_blocks() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut conf = cfg(t.path(), 1 << 30);
        conf.partial_only = true;
        let c = DiskCache::open(&conf, "u", 1000);
        assert!(!c.admits(1000, Admit::Sequential));
        assert!(!c.admits(1000, Admit::Written));
        assert!(c.admits(1000, Admit::Random));
        assert!(c.admits(999, Admit::Sequential));
        assert!(c.admits(1000, Admit::Warmup));
        conf.partial_only = false;
        conf.large_writes = false;
        let c = DiskCache::open(&conf, "u", 1000);
        assert!(
            !c.admits(1000, Admit::Written),
            "full written blocks: not by default"
        );
        assert!(
            c.admits(999, Admit::Written),
            "tails and small files: always"
        );
        assert!(c.admits(1000, Admit::Sequential));
    }

    #[test]
    fn names_give_block_lengths() {
        assert_eq!(len_from_name("12_3_4194304"), Some(4_194_304));
        assert_eq!(len_from_name("12_3_4194304.tmp.1.2"), None);
        assert_eq!(len_from_name("juicefs_uuid"), None);
    }
}
