//! POSIX semantics over metadata and object data, without any kernel types.
//!
//! `vfs` joins the two halves of tidefs: it turns file offsets into chunk slice lists (from
//! `meta`) and block reads (from `chunk`), keeps open handles and write buffers, and enforces
//! close-to-open consistency: data written through a handle is committed at flush/fsync/close,
//! and an open drops what this client cached about the file.

pub mod compact;
mod dir;
pub mod error;
pub mod flat;
mod handles;
mod locks;
mod lookahead;
mod read;
mod readahead;
pub mod sums;
pub mod warm;
pub mod writer;
mod xattr;

pub use dir::ListedEntry;
pub use error::{Error, Result};
pub use locks::LockReq;

use dir::DirPage;
use handles::{Handle, OpenFile, ReadCache};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidefs_chunk::ChunkStore;
use tidefs_meta::slice::Segment;
use tidefs_meta::{
    Attr, Ctx, DirEntry, ErrorKind, FallocMode, FileType, Format, Ino, Meta, RenameFlags, SetAttr,
    StatFs, XattrFlags, ROOT_INODE, S_ISGID, S_ISUID, TRASH_INODE, TRASH_NAME,
};
use writer::{BufferBudget, FileWriter};

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
    lookahead: lookahead::Lookahead,
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
            lookahead: lookahead::Lookahead::new(ahead_ttl),
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
        self.lookahead.forget_ino(ino);
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

    /// Commit buffered writes of `ino`, if any.
    async fn flush_ino(&self, ino: Ino) -> Result<()> {
        if let Some(w) = self.writer(ino) {
            let res = w.flush().await;
            self.lookahead.forget_ino(ino);
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
            if let Some((a, age)) = self.lookahead.take(parent, name) {
                // read a while ago: no commit count of its own (0 re-reads where needed)
                return Ok((self.overlay(a, 0).await, age));
            }
        }
        let seen = self.commits_seen();
        let a = self.meta.lookup(ctx, parent, name).await?;
        if ahead {
            if let Some(from) = self.lookahead.missed(parent, name) {
                match self.meta.entries_from(parent, &from, lookahead::PAGE).await {
                    Ok(page) => self.lookahead.fill(parent, page),
                    Err(e) => {
                        tracing::debug!(parent, error = %e, "lookahead page failed");
                        self.lookahead.failed(parent);
                    }
                }
            }
        }
        Ok((self.overlay(a, seen).await, Duration::ZERO))
    }

    /// Drop read-ahead entries a namespace change in `parent` made stale: the name and the
    /// directory's own attributes.
    fn forget_entry(&self, parent: Ino, name: &[u8]) {
        self.lookahead.forget_name(parent, name);
        self.lookahead.forget_ino(parent);
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
            self.lookahead.forget_ino(ino);
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
        self.lookahead.forget_ino(ino);
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
    /// Space and inodes for `statfs` of `ino`: the volume's, or those of the nearest directory
    /// quota holding `ino` where it has limits (`df` on a quota directory, or on a mount of one
    /// with `--subdir`, shows the quota).
    pub async fn statfs(&self, ino: Ino) -> Result<StatFs> {
        let mut st = self.meta.statfs().await?;
        let quotas = self.meta.quotas_above(ino).await?;
        if let Some((_, q)) = quotas.iter().find(|(_, q)| q.max_space > 0) {
            let used = q.used_space.max(0) as u64;
            let max = q.max_space as u64;
            st.total_space = max;
            st.avail_space = st.avail_space.min(max.saturating_sub(used));
        }
        if let Some((_, q)) = quotas.iter().find(|(_, q)| q.max_inodes > 0) {
            let used = q.used_inodes.max(0) as u64;
            st.used_inodes = used;
            st.avail_inodes = st
                .avail_inodes
                .min((q.max_inodes as u64).saturating_sub(used));
        }
        Ok(st)
    }

    // ---- directories -----------------------------------------------------------------------

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
        self.lookahead.forget_ino(h.ino);
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

#[cfg(test)]
mod tests;
