//! POSIX semantics over metadata and object data, without any kernel types.
//!
//! `vfs` joins the two halves of tidefs: it turns file offsets into chunk slice lists (from
//! `meta`) and block reads (from `chunk`), keeps open handles and write buffers, and enforces
//! close-to-open consistency: data written through a handle is committed at flush/fsync/close,
//! and an open drops what this client cached about the file.

mod ahead;
pub mod compact;
pub mod error;
pub mod flat;
mod locks;
mod readahead;
mod reader;
pub mod sums;
pub mod warm;
pub mod writer;

pub use error::{Error, Result};
pub use locks::LockReq;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidefs_chunk::ChunkStore;
use tidefs_meta::slice::{resolve, Segment};
use tidefs_meta::{
    Attr, Ctx, DirEntry, ErrorKind, FallocMode, FileType, Format, Ino, Meta, RenameFlags, SetAttr,
    StatFs, XattrFlags, ROOT_INODE, S_ISGID, S_ISUID, TRASH_INODE, TRASH_NAME,
};
use writer::{BufferBudget, FileWriter};

/// The attribute holding a file's capabilities, which the kernel reads before each write.
const CAPS_XATTR: &[u8] = b"security.capability";

/// Settings of one mount.
#[derive(Debug, Clone)]
pub struct VfsConfig {
    /// Refuse writes.
    pub read_only: bool,
    /// Write buffer budget in bytes.
    pub buffer_size: u64,
    /// Kernel attribute cache TTL.
    pub attr_ttl: Duration,
    /// Kernel entry cache TTL for files.
    pub entry_ttl: Duration,
    /// Kernel entry cache TTL for directories.
    pub dir_entry_ttl: Duration,
    /// Block uploads under way at once.
    pub max_uploads: usize,
    /// Serve read-only opens of large files from flat copies in the disk cache by FUSE
    /// passthrough (read-only mounts only; see `flat`).
    pub passthrough: bool,
}

impl Default for VfsConfig {
    fn default() -> Self {
        Self {
            read_only: false,
            buffer_size: 300 << 20,
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            dir_entry_ttl: Duration::from_secs(1),
            max_uploads: writer::DEFAULT_MAX_UPLOADS,
            passthrough: false,
        }
    }
}

/// First readdir offset used by real entries: 1 and 2 are `.` and `..`, 3 is `.trash` at the root.
const DIR_OFFSET_BASE: u64 = 3;

/// An entry as readdir hands it to the kernel: with its resume offset.
#[derive(Debug, Clone)]
pub struct ListedEntry {
    /// The entry.
    pub entry: DirEntry,
    /// Offset to resume after it.
    pub offset: u64,
}

/// An inode open in this mount: how many handles, its write buffer once written, and what reads
/// learned about it.
#[derive(Default)]
struct OpenFile {
    handles: u32,
    /// The read streams of all the file's handles together (see [`Handle::file_reads`]).
    reads: Arc<readahead::Window>,
    writer: Option<Arc<FileWriter>>,
    /// Bumped by every change of the file's data made here (commit, truncate, fallocate).
    generation: Arc<AtomicU64>,
    cache: ReadCache,
}

/// The open-file cache: file length and resolved slice lists, valid for one generation. It is
/// dropped at every open, so another client's changes are seen at the next open
/// (close-to-open), and never costs a metadata round trip per read request.
#[derive(Default)]
struct ReadCache {
    generation: u64,
    length: Option<u64>,
    chunks: HashMap<u32, Arc<Vec<Segment>>>,
}

impl ReadCache {
    fn valid_for(&mut self, generation: u64) -> &mut Self {
        if self.generation != generation {
            *self = ReadCache {
                generation,
                ..ReadCache::default()
            };
        }
        self
    }
}

struct Handle {
    ino: Ino,
    /// Readahead window of this handle.
    ahead: readahead::Window,
    /// For a file, the read streams of all its handles in this mount: processes reading one
    /// file share the page cache, so each one's reads skip what the others brought in and
    /// look random through its own handle, while together they read in sequence. A read
    /// continuing either is sequential (and fetches whole blocks, joining loads under way).
    file_reads: Option<Arc<readahead::Window>>,
    /// A directory handle's last page of stored entries: the kernel asks for a few dozen
    /// entries per request, the engine answers a page of hundreds or thousands in one query,
    /// and the rest of the page serves the requests that follow.
    dir_page: parking_lot::Mutex<DirPage>,
}

/// The page of stored entries an open directory handle keeps.
#[derive(Default)]
struct DirPage {
    /// Read with attributes (readdirplus).
    plus: bool,
    entries: Vec<ListedEntry>,
    /// Entries of `entries` already handed out (where the next request most likely resumes).
    served: usize,
    /// Pages read through this handle so far: each is larger than the one before, up to
    /// [`DIR_PAGE_MAX`], so `ls` of a small directory reads little and a long listing pays the
    /// per-query cost rarely.
    pages: u32,
    /// When the page was read: attributes older than the kernel's cache TTL are not handed out
    /// (the kernel would keep them for another TTL).
    read_at: Option<std::time::Instant>,
    /// Whether the page came back full (more entries may follow).
    full: bool,
    /// The page after this one, read while the kernel consumes this one.
    next: Option<NextPage>,
}

/// A directory page being read in the background.
struct NextPage {
    /// Entry cursor it starts after.
    after: u64,
    plus: bool,
    read_at: std::time::Instant,
    task: Option<tokio::task::JoinHandle<tidefs_meta::Result<Vec<DirEntry>>>>,
}

impl NextPage {
    /// Its entries, or None when the read failed or was cancelled (the caller reads again and
    /// reports that read's error).
    async fn entries(mut self) -> Option<Vec<DirEntry>> {
        match self.task.take()?.await {
            Ok(Ok(entries)) => Some(entries),
            _ => None,
        }
    }
}

impl Drop for NextPage {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl DirPage {
    /// Entries after kernel offset `offset`, at most `limit`, if this page holds them.
    /// With the page's age: attributes are handed out only while younger than `max_age`.
    fn serve(
        &mut self,
        plus: bool,
        offset: u64,
        limit: usize,
        max_age: Duration,
    ) -> Option<(Vec<ListedEntry>, Duration)> {
        let age = self.read_at.map(|t| t.elapsed()).unwrap_or(Duration::MAX);
        if plus != self.plus || (plus && age >= max_age) {
            return None;
        }
        let hint = self.served.checked_sub(1);
        let at = match hint.filter(|&i| self.entries.get(i).map(|e| e.offset) == Some(offset)) {
            Some(i) => i,
            None => self.entries.iter().position(|e| e.offset == offset)?,
        };
        let start = at + 1;
        if start >= self.entries.len() {
            return None;
        }
        let end = (start + limit.max(1)).min(self.entries.len());
        self.served = end;
        Some((self.entries[start..end].to_vec(), age))
    }

    /// The page read ahead to start after entry cursor `after`, if there is one young enough.
    fn take_next(&mut self, after: u64, plus: bool, max_age: Duration) -> Option<NextPage> {
        let next = self.next.take()?;
        (next.after == after && next.plus == plus && (!plus || next.read_at.elapsed() < max_age))
            .then_some(next)
    }

    /// Whether to read the next page now: this one was full, the listing went on past its first
    /// request (so it is not one small `ls`), and no read of the next is under way.
    fn wants_next(&self) -> bool {
        self.full
            && self.next.is_none()
            && (self.pages > 1 || self.served * 2 >= self.entries.len())
    }

    /// Size of the next page to read.
    fn next_size(&self) -> usize {
        (DIR_PAGE << (2 * self.pages.min(4))).min(DIR_PAGE_MAX)
    }
}

/// The filesystem of one mount.
pub struct Vfs {
    meta: Arc<dyn Meta>,
    store: ChunkStore,
    format: Format,
    cfg: VfsConfig,
    budget: Arc<BufferBudget>,
    /// Readahead of sequential readers, within the budget.
    readahead: Arc<readahead::ReadAhead>,
    next_fh: AtomicU64,
    handles: parking_lot::Mutex<HashMap<u64, Arc<Handle>>>,
    /// Open files of this mount.
    files: parking_lot::Mutex<HashMap<Ino, OpenFile>>,
    /// (mtime, length) of each file as of its last open here: when a new open finds the same,
    /// nobody changed the file in between and the kernel may keep its cached pages.
    seen: parking_lot::Mutex<HashMap<Ino, (tidefs_meta::Timestamp, u64)>>,
    /// Signalled whenever a lock is released through this mount (wakes local waiters).
    lock_released: tokio::sync::Notify,
    /// Wait for staged uploads when the mount ends (`umount --flush` asked).
    drain_at_exit: std::sync::atomic::AtomicBool,
    /// Lock requests waiting, by (inode, owner).
    lock_waiters: parking_lot::Mutex<HashMap<(Ino, u64), locks::Waiter>>,
    /// Entries read ahead for programs that look up many names of one directory.
    ahead: ahead::Lookahead,
    /// Inodes found to have no `security.capability` attribute, for the attribute TTL (None
    /// when that is zero). The kernel asks for it before every write(2) to a file (to drop
    /// the capabilities of a modified program), so a 4 KiB write stream would cost a metadata
    /// read per write; changes through this mount drop the inode at once, other clients'
    /// are seen within the TTL, as attributes are. At most 65 536 inodes (a few MiB).
    no_caps: Option<moka::sync::Cache<Ino, ()>>,
    /// Regular files whose mode has nothing for a write to drop (neither set-user-id nor
    /// group-executable set-group-id), seen at open, create or a previous write, for the
    /// attribute TTL (None when that is zero): see [`Vfs::kill_privs`]. Same bound and
    /// staleness as `no_caps`; chmod and chown through this mount forget the inode.
    plain: Option<moka::sync::Cache<Ino, ()>>,
    /// How long a directory handle's page of entries with attributes is handed out: the
    /// shortest kernel cache TTL, at least one second (with no kernel caching the kernel keeps
    /// nothing stale, and a listing is a snapshot anyway).
    page_life: Duration,
    /// Chunks of many records, queued for compaction.
    compactor: Arc<compact::Compactor>,
    /// Flushes that committed, over all files (see [`Vfs::overlay`]).
    commits: Arc<AtomicU64>,
    /// Flat copies being made for passthrough.
    flats: flat::Flats,
    /// Bytes this mount answered read requests with (reads by passthrough never come here).
    read_bytes: AtomicU64,
}

/// Stored entries read by the first directory query of a handle; later ones read 4x more each,
/// up to [`DIR_PAGE_MAX`].
const DIR_PAGE: usize = 256;

/// Most stored entries one directory query reads, and so one open directory handle keeps
/// (about 1 MiB with attributes).
const DIR_PAGE_MAX: usize = 4096;

/// Most files whose open-time attributes are remembered for page-cache reuse.
const MAX_SEEN: usize = 100_000;

impl Vfs {
    /// A filesystem over an opened, loaded volume.
    pub fn new(meta: Arc<dyn Meta>, store: ChunkStore, format: Format, cfg: VfsConfig) -> Self {
        let budget = BufferBudget::new(cfg.buffer_size, cfg.max_uploads);
        let readahead = readahead::ReadAhead::new(
            budget.clone(),
            store.config().mem_cache_bytes,
            store.block_size(),
        );
        let ahead_ttl = cfg.attr_ttl.min(cfg.entry_ttl).min(cfg.dir_entry_ttl);
        let per_inode_ttl = || {
            (!cfg.attr_ttl.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(65_536)
                    .time_to_live(cfg.attr_ttl)
                    .build()
            })
        };
        let (no_caps, plain) = (per_inode_ttl(), per_inode_ttl());
        let compactor = Arc::new(compact::Compactor::new(
            meta.clone(),
            store.clone(),
            !cfg.read_only,
        ));
        Self {
            compactor,
            commits: Arc::default(),
            meta,
            store,
            format,
            cfg,
            readahead,
            budget,
            next_fh: AtomicU64::new(1),
            handles: parking_lot::Mutex::new(HashMap::new()),
            files: parking_lot::Mutex::new(HashMap::new()),
            seen: parking_lot::Mutex::new(HashMap::new()),
            lock_released: tokio::sync::Notify::new(),
            drain_at_exit: std::sync::atomic::AtomicBool::new(false),
            lock_waiters: parking_lot::Mutex::new(HashMap::new()),
            ahead: ahead::Lookahead::new(ahead_ttl),
            no_caps,
            plain,
            page_life: ahead_ttl.max(Duration::from_secs(1)),
            flats: flat::Flats::default(),
            read_bytes: AtomicU64::new(0),
        }
    }

    /// Mount settings.
    pub fn config(&self) -> &VfsConfig {
        &self.cfg
    }

    /// The volume setting.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// The metadata engine.
    pub fn meta(&self) -> &Arc<dyn Meta> {
        &self.meta
    }

    /// Readahead and buffer counters, as JSON (for the control channel's `stats`).
    pub fn read_stats(&self) -> serde_json::Value {
        let ra = &self.readahead;
        let disk = self.store.disk_cache().map(|d| {
            let s = d.stats();
            serde_json::json!({
                "hits": s.hits.load(Ordering::Relaxed),
                "misses": s.misses.load(Ordering::Relaxed),
                "stored": s.stored.load(Ordering::Relaxed),
                "corrupt": s.corrupt.load(Ordering::Relaxed),
                "failed_writes": s.failed_writes.load(Ordering::Relaxed),
                "skipped": s.skipped.load(Ordering::Relaxed),
                "used_bytes": d.used_bytes(),
            })
        });
        serde_json::json!({
            "buffer_used_bytes": self.budget.used(),
            "buffer_limit_bytes": self.cfg.buffer_size,
            "readahead": {
                "max_window_blocks": ra.max_window(),
                "inflight_bytes": ra.inflight_bytes(),
                "started": ra.stats.started.load(Ordering::Relaxed),
                "refused": ra.stats.refused.load(Ordering::Relaxed),
            },
            "disk_cache": disk,
            "read_bytes": self.read_bytes.load(Ordering::Relaxed),
            "passthrough": self.flat_stats(),
            "store": {
                "gets": self.store.downloaded.gets.load(Ordering::Relaxed),
                "get_bytes": self.store.downloaded.bytes.load(Ordering::Relaxed),
            },
        })
    }

    /// Bytes in write buffers now.
    pub fn buffered_bytes(&self) -> u64 {
        self.budget.used()
    }

    fn writable(&self) -> Result<()> {
        if self.cfg.read_only {
            return Err(Error::posix(
                ErrorKind::ReadOnly,
                "the volume is mounted read-only",
            ));
        }
        Ok(())
    }

    fn writer(&self, ino: Ino) -> Option<Arc<FileWriter>> {
        self.files.lock().get(&ino).and_then(|f| f.writer.clone())
    }

    fn writer_or_new(&self, ino: Ino) -> Arc<FileWriter> {
        let mut files = self.files.lock();
        let slot = files.entry(ino).or_default();
        let generation = slot.generation.clone();
        slot.writer
            .get_or_insert_with(|| {
                Arc::new(FileWriter::new(
                    ino,
                    self.meta.clone(),
                    self.store.clone(),
                    self.budget.clone(),
                    generation,
                    self.compactor.clone(),
                    self.commits.clone(),
                ))
            })
            .clone()
    }

    /// Note a change of `ino`'s data made here: cached lengths and slice lists are stale.
    fn changed(&self, ino: Ino) {
        self.ahead.forget_ino(ino);
        if let Some(f) = self.files.lock().get(&ino) {
            f.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Length of an open file, from the open-file cache when valid.
    async fn cached_length(&self, ino: Ino) -> Result<u64> {
        let generation = {
            let mut files = self.files.lock();
            match files.get_mut(&ino) {
                Some(f) => {
                    let g = f.generation.load(Ordering::Relaxed);
                    if let Some(len) = f.cache.valid_for(g).length {
                        return Ok(len);
                    }
                    g
                }
                // not open here (a read racing the last release): nothing to cache into
                None => u64::MAX,
            }
        };
        let len = self.meta.getattr(ino).await?.length;
        if let Some(f) = self.files.lock().get_mut(&ino) {
            // a change made while we asked makes the answer stale: keep it out of the cache
            if f.generation.load(Ordering::Relaxed) == generation {
                f.cache.valid_for(generation).length = Some(len);
            }
        }
        Ok(len)
    }

    /// Resolved slice runs of one chunk, from the open-file cache when valid.
    pub(crate) async fn segments(&self, ino: Ino, indx: u32) -> Result<Arc<Vec<Segment>>> {
        let generation = {
            let mut files = self.files.lock();
            match files.get_mut(&ino) {
                Some(f) => {
                    let g = f.generation.load(Ordering::Relaxed);
                    if let Some(s) = f.cache.valid_for(g).chunks.get(&indx) {
                        return Ok(s.clone());
                    }
                    g
                }
                None => u64::MAX,
            }
        };
        let records = self.meta.read_chunk(ino, indx).await?;
        self.compactor.saw_records(ino, indx, records.len());
        let segs = Arc::new(resolve(&records));
        if let Some(f) = self.files.lock().get_mut(&ino) {
            if f.generation.load(Ordering::Relaxed) == generation {
                let c = f.cache.valid_for(generation);
                if c.chunks.len() < 4096 {
                    c.chunks.insert(indx, segs.clone());
                }
            }
        }
        Ok(segs)
    }

    /// Commit buffered writes of `ino`, if any.
    async fn flush_ino(&self, ino: Ino) -> Result<()> {
        if let Some(w) = self.writer(ino) {
            let res = w.flush().await;
            self.ahead.forget_ino(ino);
            res?;
        }
        Ok(())
    }

    /// Attributes as the kernel should see them: with uncommitted writes of this mount applied,
    /// and with no link counted for the trash. A file whose last name was removed keeps a
    /// name in `.trash` (as JuiceFS stores it), but POSIX says it has no links now: an `fstat`
    /// on a descriptor still open must say 0.
    async fn overlay(&self, mut attr: Attr, seen: u64) -> Attr {
        if let Some(w) = self.writer(attr.ino) {
            match w.pending().await {
                Some((len, mtime)) => {
                    attr.length = attr.length.max(len);
                    attr.mtime = mtime;
                    attr.ctime = mtime;
                }
                // A flush committed since `attr` was read (`pending` waited for it): the
                // writes it committed were pending then and are in neither `attr` nor the
                // buffer now; read the attributes again, or the kernel is told the length
                // from before writes it has already seen (found by tests/data/fsx.py: an
                // fstat racing a close showed the size from before an append)
                None if self.commits_seen() != seen => {
                    if let Ok(fresh) = self.meta.getattr(attr.ino).await {
                        attr = fresh;
                    }
                }
                None => {}
            }
        }
        if attr.parent > TRASH_INODE && attr.typ != FileType::Dir {
            attr.nlink = 0;
        }
        attr
    }

    /// The commit count to pass to [`overlay`](Self::overlay), taken before reading the
    /// attributes it will correct.
    fn commits_seen(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        self.handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::posix(ErrorKind::BadHandle, "unknown file handle"))
    }

    fn new_handle(&self, ino: Ino) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let file_reads = self.files.lock().get(&ino).map(|f| f.reads.clone());
        self.handles.lock().insert(
            fh,
            Arc::new(Handle {
                ino,
                ahead: readahead::Window::default(),
                file_reads,
                dir_page: parking_lot::Mutex::new(DirPage::default()),
            }),
        );
        fh
    }

    // ---- namespace -------------------------------------------------------------------------

    /// Look `name` up in `parent`.
    pub async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        Ok(self.lookup_aged(ctx, parent, name).await?.0)
    }

    /// Look `name` up in `parent`; also says how long ago the answer was read from the
    /// metadata engine (not zero when it comes from the lookahead), so the kernel can be told to
    /// keep it only for the rest of its TTL.
    pub async fn lookup_aged(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
    ) -> Result<(Attr, Duration)> {
        // read-ahead entries skip the search-permission check: served only where the kernel
        // made it (default_permissions)
        let ahead = !ctx.check_permission;
        if ahead {
            if let Some((a, age)) = self.ahead.take(parent, name) {
                // read a while ago: no commit count of its own (0 re-reads where needed)
                return Ok((self.overlay(a, 0).await, age));
            }
        }
        let seen = self.commits_seen();
        let a = self.meta.lookup(ctx, parent, name).await?;
        if ahead {
            if let Some(from) = self.ahead.missed(parent, name) {
                match self.meta.entries_from(parent, &from, ahead::PAGE).await {
                    Ok(page) => self.ahead.fill(parent, page),
                    Err(e) => {
                        tracing::debug!(parent, error = %e, "lookahead page failed");
                        self.ahead.failed(parent);
                    }
                }
            }
        }
        Ok((self.overlay(a, seen).await, Duration::ZERO))
    }

    /// Drop read-ahead entries a namespace change in `parent` made stale: the name and the
    /// directory's own attributes.
    fn forget_entry(&self, parent: Ino, name: &[u8]) {
        self.ahead.forget_name(parent, name);
        self.ahead.forget_ino(parent);
    }

    /// Attributes of `ino`.
    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        let seen = self.commits_seen();
        let a = self.meta.getattr(ino).await?;
        Ok(self.overlay(a, seen).await)
    }

    /// Change attributes; `size` truncates (after committing buffered writes).
    pub async fn setattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        set: &SetAttr,
        size: Option<u64>,
    ) -> Result<Attr> {
        self.writable()?;
        let mut seen = self.commits_seen();
        let mut attr = None;
        if let Some(len) = size {
            self.flush_ino(ino).await?;
            // after this call's own flush: only a commit racing the truncate calls for a re-read
            seen = self.commits_seen();
            let truncated = self.meta.truncate(ctx, ino, len).await;
            self.changed(ino);
            attr = Some(truncated?);
        }
        if set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some()
        {
            if set.mtime.is_some() {
                // explicit times must not be overwritten by a later commit of older writes
                self.flush_ino(ino).await?;
                seen = self.commits_seen();
            }
            let res = self.meta.setattr(ctx, ino, set).await;
            self.ahead.forget_ino(ino);
            self.forget_plain(ino);
            attr = Some(res?);
        }
        match attr {
            Some(a) => Ok(self.overlay(a, seen).await),
            None => self.getattr(ino).await,
        }
    }

    /// Create a node (file, device, FIFO, socket, directory).
    #[allow(clippy::too_many_arguments)]
    pub async fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        mode: u16,
        umask: u16,
        rdev: u32,
    ) -> Result<Attr> {
        self.writable()?;
        let res = self
            .meta
            .mknod(ctx, parent, name, typ, mode, umask, rdev, b"")
            .await;
        self.forget_entry(parent, name);
        Ok(res?)
    }

    /// Create a symlink.
    pub async fn symlink(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr> {
        self.writable()?;
        let res = self
            .meta
            .mknod(ctx, parent, name, FileType::Symlink, 0o777, 0, 0, target)
            .await;
        self.forget_entry(parent, name);
        Ok(res?)
    }

    /// Target of a symlink.
    pub async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        Ok(self.meta.readlink(ino).await?)
    }

    /// Remove a file name.
    pub async fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        let res = self.meta.unlink(ctx, parent, name).await;
        self.forget_entry(parent, name);
        Ok(res?)
    }

    /// Remove an empty directory.
    pub async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        let res = self.meta.rmdir(ctx, parent, name).await;
        self.forget_entry(parent, name);
        Ok(res?)
    }

    /// Rename.
    pub async fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        self.writable()?;
        let res = self
            .meta
            .rename(ctx, parent, name, new_parent, new_name, flags)
            .await;
        self.forget_entry(parent, name);
        self.forget_entry(new_parent, new_name);
        Ok(res?)
    }

    /// Hard link.
    pub async fn link(
        &self,
        ctx: &Ctx,
        ino: Ino,
        new_parent: Ino,
        new_name: &[u8],
    ) -> Result<Attr> {
        self.writable()?;
        let seen = self.commits_seen();
        let res = self.meta.link(ctx, ino, new_parent, new_name).await;
        self.ahead.forget_ino(ino);
        self.forget_entry(new_parent, new_name);
        Ok(self.overlay(res?, seen).await)
    }

    /// Check access the way access(2) does.
    pub async fn access(&self, ctx: &Ctx, ino: Ino, mask: u16) -> Result<()> {
        let a = self.meta.getattr(ino).await?;
        if mask & tidefs_meta::perm::MAY_WRITE != 0 && self.cfg.read_only {
            return Err(Error::posix(ErrorKind::ReadOnly, "read-only mount"));
        }
        let mut strict = ctx.clone();
        strict.check_permission = true;
        Ok(tidefs_meta::perm::access(&strict, &a, mask)?)
    }

    /// Capacity and usage.
    pub async fn statfs(&self) -> Result<StatFs> {
        Ok(self.meta.statfs().await?)
    }

    // ---- directories -----------------------------------------------------------------------

    /// Open a directory.
    pub async fn opendir(&self, ctx: &Ctx, ino: Ino) -> Result<u64> {
        let a = self.meta.getattr(ino).await?;
        if a.typ != FileType::Dir {
            return Err(Error::posix(ErrorKind::NotDir, "not a directory"));
        }
        let _ = ctx;
        Ok(self.new_handle(ino))
    }

    /// Entries of a directory from kernel offset `offset`, at most `limit`. `.` and `..` come
    /// first (offsets 1 and 2), `.trash` next at the root, then the stored entries, each with an
    /// offset derived from its stable entry id, so a listing resumes correctly however the
    /// directory changes in between.
    /// `fh` is the directory handle: the rest of a page read for an earlier request of the same
    /// listing is served from it, with its age (the kernel should keep attributes only for the
    /// rest of their TTL); entries read by this call come with age zero.
    pub async fn readdir(
        &self,
        ctx: &Ctx,
        fh: u64,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> Result<(Vec<ListedEntry>, Duration)> {
        let handle = self.handle(fh).ok().filter(|h| h.ino == ino);
        if offset >= DIR_OFFSET_BASE {
            if let Some(h) = &handle {
                let mut page = h.dir_page.lock();
                if let Some(served) = page.serve(plus, offset, limit, self.page_life) {
                    if page.wants_next() {
                        self.read_next_page(&mut page, ctx, ino);
                    }
                    return Ok(served);
                }
            }
        }
        let mut out = Vec::new();
        let dir = if offset < 2 {
            Some(self.meta.getattr(ino).await?)
        } else {
            None
        };
        if offset < 1 {
            out.push(ListedEntry {
                entry: DirEntry {
                    name: b".".to_vec(),
                    ino,
                    typ: FileType::Dir,
                    attr: dir.clone(),
                    cursor: 0,
                },
                offset: 1,
            });
        }
        if offset < 2 {
            let parent = match &dir {
                Some(d) if ino != ROOT_INODE => d.parent,
                _ => ROOT_INODE,
            };
            let pattr = if plus {
                self.meta.getattr(parent).await.ok()
            } else {
                None
            };
            out.push(ListedEntry {
                entry: DirEntry {
                    name: b"..".to_vec(),
                    ino: parent,
                    typ: FileType::Dir,
                    attr: pattr,
                    cursor: 0,
                },
                offset: 2,
            });
        }
        if offset < DIR_OFFSET_BASE && ino == ROOT_INODE {
            if let Ok(t) = self.meta.getattr(TRASH_INODE).await {
                out.push(ListedEntry {
                    entry: DirEntry {
                        name: TRASH_NAME.as_bytes().to_vec(),
                        ino: TRASH_INODE,
                        typ: FileType::Dir,
                        attr: Some(t),
                        cursor: 0,
                    },
                    offset: DIR_OFFSET_BASE,
                });
            }
        }
        let after = offset.saturating_sub(DIR_OFFSET_BASE);
        let size = match (&handle, offset) {
            (Some(h), o) if o >= DIR_OFFSET_BASE => h.dir_page.lock().next_size(),
            _ => DIR_PAGE,
        };
        let ahead = match (&handle, offset >= DIR_OFFSET_BASE) {
            (Some(h), true) => h.dir_page.lock().take_next(after, plus, self.page_life),
            _ => None,
        };
        let (mut read_at, mut entries) = (std::time::Instant::now(), None);
        if let Some(next) = ahead {
            read_at = next.read_at;
            entries = next.entries().await;
        }
        // a page read ahead has no commit count of its own (0 re-reads where needed)
        let mut seen = 0;
        let entries = match entries {
            Some(e) => e,
            None => {
                read_at = std::time::Instant::now();
                seen = self.commits_seen();
                self.meta.readdir(ctx, ino, after, size, plus).await?
            }
        };
        let full = entries.len() >= size;
        let mut page = Vec::new();
        for e in entries {
            let offset = e.cursor + DIR_OFFSET_BASE;
            let mut e = e;
            if let Some(a) = e.attr.take() {
                e.attr = Some(self.overlay(a, seen).await);
            }
            page.push(ListedEntry { entry: e, offset });
        }
        let room = limit.saturating_sub(out.len()).max(1);
        out.extend(page.iter().take(room).cloned());
        if let Some(h) = &handle {
            let mut kept = h.dir_page.lock();
            let pages = if offset >= DIR_OFFSET_BASE {
                kept.pages.saturating_add(1)
            } else {
                1
            };
            *kept = DirPage {
                plus,
                served: room.min(page.len()),
                entries: page,
                pages,
                read_at: Some(read_at),
                full,
                next: None,
            };
            if kept.wants_next() {
                self.read_next_page(&mut kept, ctx, ino);
            }
        }
        Ok((out, read_at.elapsed()))
    }

    /// Start reading the page that follows `page` in the background.
    fn read_next_page(&self, page: &mut DirPage, ctx: &Ctx, ino: Ino) {
        let Some(last) = page.entries.last() else {
            return;
        };
        let (meta, ctx, after) = (self.meta.clone(), ctx.clone(), last.entry.cursor);
        let (size, plus) = (page.next_size(), page.plus);
        page.next = Some(NextPage {
            after,
            plus,
            read_at: std::time::Instant::now(),
            task: Some(tokio::spawn(async move {
                meta.readdir(&ctx, ino, after, size, plus).await
            })),
        });
    }

    /// Close a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    // ---- files -----------------------------------------------------------------------------

    /// Whether the kernel may keep cached pages of `a` at this open (close-to-open: only when the
    /// file is as it was at the previous open here), and remember it for the next open.
    fn keep_cache(&self, a: &Attr) -> bool {
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_SEEN {
            seen.clear();
        }
        seen.insert(a.ino, (a.mtime, a.length)) == Some((a.mtime, a.length))
    }

    /// Open `ino`; returns the handle, current attributes, and whether cached pages stay valid.
    pub async fn open(&self, ctx: &Ctx, ino: Ino, write: bool) -> Result<(u64, Attr, bool)> {
        if write {
            self.writable()?;
        }
        let seen = self.commits_seen();
        let a = self.meta.open(ctx, ino).await?;
        match a.typ {
            FileType::Dir => {
                self.meta.close(ino).await?;
                return Err(Error::posix(ErrorKind::IsDir, "is a directory"));
            }
            FileType::Symlink => {
                self.meta.close(ino).await?;
                return Err(Error::posix(ErrorKind::Invalid, "cannot open a symlink"));
            }
            _ => {}
        }
        {
            let mut files = self.files.lock();
            let f = files.entry(ino).or_default();
            f.handles += 1;
            // close-to-open: what this mount cached about the file may be stale now
            f.cache = ReadCache::default();
            f.generation.fetch_add(1, Ordering::Relaxed);
        }
        // the mode just read tells the writes to come what they must drop
        self.note_mode(ino, a.mode);
        let fh = self.new_handle(ino);
        let a = self.overlay(a, seen).await;
        let keep = self.keep_cache(&a);
        Ok((fh, a, keep))
    }

    /// Create and open a regular file.
    pub async fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u16,
        umask: u16,
    ) -> Result<(u64, Attr)> {
        self.writable()?;
        let res = self
            .meta
            .mknod(ctx, parent, name, FileType::File, mode, umask, 0, b"")
            .await;
        self.forget_entry(parent, name);
        let a = res?;
        // a new file carries no capabilities, and usually nothing else a write would drop
        if let Some(c) = &self.no_caps {
            c.insert(a.ino, ());
        }
        self.note_mode(a.ino, a.mode);
        self.meta.opened(a.ino);
        self.files.lock().entry(a.ino).or_default().handles += 1;
        let fh = self.new_handle(a.ino);
        Ok((fh, a))
    }

    /// Read up to `size` bytes at `off`.
    pub async fn read(&self, fh: u64, off: u64, size: u32) -> Result<bytes::Bytes> {
        let h = self.handle(fh)?;
        let ticket = self.flat_ticket();
        // reads see this mount's own writes: commit them first
        if let Some(w) = self.writer(h.ino) {
            if w.is_dirty().await {
                w.flush().await?;
            }
        }
        let length = self.cached_length(h.ino).await?;
        if off >= length || size == 0 {
            return Ok(bytes::Bytes::new());
        }
        let n = u64::from(size).min(length - off);
        // Sequential: the read continues one of the recent runs of the handle, or of all the
        // file's handles together (near its end, in any order, as the kernel's readahead sends
        // them) that started at offset 0 or has read 512 KiB; see `readahead`.
        let own = h.ahead.is_sequential(off, n);
        // both track the read, whatever the first says
        let shared = h
            .file_reads
            .as_ref()
            .is_some_and(|w| w.is_sequential(off, n));
        let sequential = own || shared;
        let ahead = if sequential {
            let bs = u64::from(self.store.block_size().max(1));
            Some((&h.ahead, self.readahead.sequential(&h.ahead, off / bs)))
        } else {
            self.readahead.random(&h.ahead);
            None
        };
        let data = match reader::read(self, &self.store, h.ino, off, n as usize, ahead).await {
            // A truncate or overwrite (here or on another client) can free the slices this read
            // resolved while it runs: read once more with fresh metadata. An object still
            // missing then is missing data, and stays an error.
            Err(Error::Data(e)) if e.kind() == tidefs_chunk::ErrorKind::NotFound => {
                tracing::debug!(ino = h.ino, off, error = %e, "object gone under a read; re-resolving");
                self.changed(h.ino);
                let length = self.cached_length(h.ino).await?;
                if off >= length {
                    return Ok(bytes::Bytes::new());
                }
                let n = u64::from(size).min(length - off);
                reader::read(self, &self.store, h.ino, off, n as usize, None).await
            }
            other => other,
        }?;
        self.read_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.flat_offer(h.ino, ticket, off, &data).await;
        Ok(data)
    }

    /// Buffer a write; returns the bytes taken.
    pub async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        self.writable()?;
        let h = self.handle(fh)?;
        let end = off
            .checked_add(data.len() as u64)
            .filter(|e| *e <= tidefs_meta::MAX_FILE_LEN);
        if end.is_none() {
            return Err(Error::posix(
                ErrorKind::FileTooBig,
                "write past the largest file size",
            ));
        }
        self.ahead.forget_ino(h.ino);
        let w = self.writer_or_new(h.ino);
        w.write(off, data).await?;
        Ok(data.len() as u32)
    }

    /// flush(2) of a handle: commit buffered writes of the file.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let h = self.handle(fh)?;
        self.flush_ino(h.ino).await
    }

    /// fsync(2): commit buffered writes, then make the objects and the metadata durable.
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        self.flush(fh).await?;
        self.store.sync().await?;
        self.meta.sync().await?;
        Ok(())
    }

    /// Last close of a handle.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let h = self.handles.lock().remove(&fh);
        let Some(h) = h else { return Ok(()) };
        let flushed = self.flush_ino(h.ino).await;
        {
            // the last handle of an inode takes its (now empty) write buffer with it
            let mut files = self.files.lock();
            if let Some(slot) = files.get_mut(&h.ino) {
                slot.handles = slot.handles.saturating_sub(1);
                if slot.handles == 0 {
                    files.remove(&h.ino);
                    self.flat_end(h.ino);
                }
            }
        }
        self.meta.close(h.ino).await?;
        flushed
    }

    /// fallocate(2).
    pub async fn fallocate(
        &self,
        ctx: &Ctx,
        fh: u64,
        mode: FallocMode,
        off: u64,
        len: u64,
    ) -> Result<()> {
        self.writable()?;
        let h = self.handle(fh)?;
        self.flush_ino(h.ino).await?;
        let done = self.meta.fallocate(ctx, h.ino, mode, off, len).await;
        self.changed(h.ino);
        done?;
        Ok(())
    }

    /// copy_file_range(2): no data moves. Writes of either file buffered here are committed
    /// first; then the destination range gets records pointing at the source's slices (one
    /// metadata transaction, as JuiceFS does it), so copying a 100 GB model takes milliseconds
    /// and no object storage. Returns the bytes copied (fewer at the source's end).
    pub async fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        self.writable()?;
        let (src, dst) = (self.handle(fh_in)?.ino, self.handle(fh_out)?.ino);
        self.flush_ino(src).await?;
        if dst != src {
            self.flush_ino(dst).await?;
        }
        let res = self.meta.copy_range(src, off_in, dst, off_out, len).await;
        self.changed(dst);
        match res {
            Ok((n, _)) => Ok(n),
            // a source too fragmented to share: its bytes are copied into fresh slices
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                tracing::debug!(src, dst, error = %e, "copy_file_range copies data");
                self.copy_through(fh_in, off_in, fh_out, off_out, len).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Copy a range by reading it and writing it again through this client.
    async fn copy_through(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        const STEP: u64 = 4 << 20;
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(STEP) as u32;
            let buf = self.read(fh_in, off_in + done, n).await?;
            if buf.is_empty() {
                break;
            }
            self.write(fh_out, off_out + done, &buf).await?;
            done += buf.len() as u64;
            if (buf.len() as u32) < n {
                break;
            }
        }
        Ok(done)
    }

    // ---- extended attributes ---------------------------------------------------------------

    /// getxattr(2).
    pub async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        check_xattr_namespace(name)?;
        let caps = name == CAPS_XATTR;
        if caps && self.no_caps.as_ref().is_some_and(|c| c.contains_key(&ino)) {
            return Err(Error::posix(ErrorKind::NoAttr, "no such attribute"));
        }
        let res = self.meta.getxattr(ino, name).await;
        if caps {
            if let (Some(c), Err(e)) = (&self.no_caps, &res) {
                if e.kind() == ErrorKind::NoAttr {
                    c.insert(ino, ());
                }
            }
        }
        Ok(res?)
    }

    /// listxattr(2): names, each NUL-terminated.
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for n in self.meta.listxattr(ino).await? {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    /// setxattr(2).
    pub async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()> {
        self.writable()?;
        check_xattr_namespace(name)?;
        let res = self.meta.setxattr(ctx, ino, name, value, flags).await;
        self.ahead.forget_ino(ino);
        self.forget_caps(ino);
        Ok(res?)
    }

    /// removexattr(2).
    pub async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_xattr_namespace(name)?;
        let res = self.meta.removexattr(ctx, ino, name).await;
        self.ahead.forget_ino(ino);
        self.forget_caps(ino);
        Ok(res?)
    }

    /// Drop what is known of `ino`'s capabilities attribute (it was set or removed).
    fn forget_caps(&self, ino: Ino) {
        if let Some(c) = &self.no_caps {
            c.invalidate(&ino);
        }
    }

    /// Drop "nothing in the mode to kill" for `ino` (its mode may have changed).
    fn forget_plain(&self, ino: Ino) {
        if let Some(c) = &self.plain {
            c.invalidate(&ino);
        }
    }

    /// Take from regular file `ino` what modifying it takes, as the kernel does for local file
    /// systems and leaves to the daemon on a mount that negotiated `FUSE_HANDLE_KILLPRIV_V2`:
    /// its `security.capability` attribute always, and when `suidgid` (the kernel marks the
    /// write, truncate or chown of a caller without `CAP_FSETID`, and every chown) set-user-id,
    /// plus set-group-id when the file is group-executable. Returns the new permission bits
    /// when they changed. What was found is remembered for the attribute TTL (no capabilities
    /// in `no_caps`, which the kernel's own first `getxattr` fills; nothing in the mode to drop
    /// in `plain`, which opens and creates fill), so a stream of writes costs two lookups in
    /// memory each, not the `getxattr` round trip per write(2) the kernel made before.
    pub async fn kill_privs(&self, ino: Ino, suidgid: bool) -> Result<Option<u16>> {
        let known = |c: &Option<moka::sync::Cache<Ino, ()>>| {
            c.as_ref().is_some_and(|c| c.contains_key(&ino))
        };
        let (mode_plain, no_caps) = (known(&self.plain), known(&self.no_caps));
        if mode_plain && no_caps {
            return Ok(None);
        }
        self.writable()?;
        let mut changed = None;
        if !mode_plain {
            let a = self.meta.getattr(ino).await?;
            if a.typ != FileType::File {
                return Ok(None);
            }
            let kill = kill_bits(a.mode);
            if kill != 0 && suidgid {
                let set = SetAttr {
                    mode: Some(a.mode & !kill),
                    ..SetAttr::default()
                };
                let res = self.meta.setattr(&Ctx::root(), ino, &set).await;
                self.ahead.forget_ino(ino);
                changed = Some(res?.mode);
            }
            self.note_mode(ino, changed.unwrap_or(a.mode));
        }
        if !no_caps {
            match self.getxattr(ino, CAPS_XATTR).await {
                Ok(_) => {
                    let res = self.meta.removexattr(&Ctx::root(), ino, CAPS_XATTR).await;
                    self.ahead.forget_ino(ino);
                    self.forget_caps(ino);
                    match res {
                        Err(e) if e.kind() != ErrorKind::NoAttr => return Err(e.into()),
                        _ => {}
                    }
                }
                Err(e) if e.meta_kind() == Some(ErrorKind::NoAttr) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Record what regular file `ino`, of permission bits `mode` as just read or set, has in
    /// its mode for a write to drop: nothing (remembered), or set-id bits (forgotten).
    fn note_mode(&self, ino: Ino, mode: u16) {
        match (&self.plain, kill_bits(mode)) {
            (Some(c), 0) => c.insert(ino, ()),
            _ => self.forget_plain(ino),
        }
    }

    /// State of the `--writeback` uploads, when on.
    pub fn writeback_stats(&self) -> Option<tidefs_chunk::WritebackStats> {
        self.store.writeback_stats()
    }

    /// Ask that this mount, when it ends, waits until every staged block is uploaded
    /// (`tidefs umount --flush`).
    pub fn drain_at_exit(&self) {
        self.drain_at_exit
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.store.hurry_uploads();
    }

    /// Wait, at the end of the mount, until staged blocks are uploaded if that was asked for.
    /// Logs progress every 10 s.
    pub async fn drain_staging(&self) {
        if !self
            .drain_at_exit
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let mut last_log = std::time::Instant::now();
        while let Some(st) = self.store.writeback_stats() {
            if st.staged_blocks == 0 {
                break;
            }
            if last_log.elapsed() >= Duration::from_secs(10) {
                tracing::info!(blocks = st.staged_blocks, mib = st.staged_bytes >> 20, last_error = ?st.last_error, "waiting for staged blocks to upload before exit");
                last_log = std::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Commit every buffered write (at unmount).
    pub async fn flush_all(&self) -> Result<()> {
        let writers: Vec<_> = self
            .files
            .lock()
            .values()
            .filter_map(|f| f.writer.clone())
            .collect();
        let mut res = Ok(());
        for w in writers {
            if let Err(e) = w.flush().await {
                res = Err(e);
            }
        }
        // compactions under way finish (their replaced objects deleted); no new ones start
        self.compactor.close(Duration::from_secs(60)).await;
        self.flat_close().await;
        res
    }
}

/// Attributes the kernel or tools interpret but tidefs does not implement are refused as
/// unsupported rather than stored and ignored: POSIX ACLs (not yet), and SELinux labels (a FUSE
/// volume shared by many hosts has no label policy; JuiceFS answers the same). Answering
/// EOPNOTSUPP for `security.selinux` also tells `ls -l` to stop asking for every entry.
/// The bits modifying a file with `mode` clears: set-user-id, and set-group-id when the file is
/// group-executable (without group execute it marks mandatory locking, and stays).
fn kill_bits(mode: u16) -> u16 {
    let mut kill = mode & S_ISUID;
    if mode & (S_ISGID | 0o010) == (S_ISGID | 0o010) {
        kill |= S_ISGID;
    }
    kill
}

fn check_xattr_namespace(name: &[u8]) -> Result<()> {
    if name.starts_with(b"system.posix_acl_") {
        return Err(Error::posix(
            ErrorKind::Unsupported,
            "POSIX ACLs are not supported",
        ));
    }
    if name == b"security.selinux" {
        return Err(Error::posix(
            ErrorKind::Unsupported,
            "SELinux labels are not supported",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
