//! The metadata core: every rule of every operation, once, for every engine.
//!
//! [`Core`] holds what one client knows of a volume (its setting, its session, the files it has
//! open, id batches, counter changes not yet flushed, lock and cursor memories) and runs each
//! operation as transactions of its engine ([`crate::engine`]) under one retry policy
//! ([`retry`]). The operations are spread by concern: `namespace` (names and directories),
//! `file` (attributes, data records, extended attributes), `delete` (what removing a name does,
//! the deletion queue), `session` (format, load, sessions and their background jobs, cleanup),
//! `locks` (BSD and POSIX locks), `fsck` (checks and the scans of gc). [`Client`] is the public
//! face: it implements [`crate::Meta`] and [`crate::Admin`] over a `Core`.

mod delete;
mod file;
mod fsck;
pub(crate) mod locks;
mod namespace;
mod quota;
pub(crate) mod retry;
pub(crate) mod rules;
mod session;
mod usage;

pub use quota::QuotaCheck;

use crate::engine::{Engine, Mode, Txn};
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::slice::Slice;
use crate::types::*;
use crate::{Admin, ChunkSlices, Meta, Problem, SliceDeleter, Volume, XattrFlags};
use async_trait::async_trait;
use rules::lock_poisoned;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Inode numbers taken from `nextInode` at once.
const INODE_BATCH: i64 = 1024;
/// Slice ids taken from `nextChunk` at once.
const SLICE_BATCH: i64 = 4096;
/// Default session heartbeat, as JuiceFS's. A session expires 5 heartbeats after its last one,
/// and the cleanup job runs every 5 heartbeats.
const HEARTBEAT: Duration = Duration::from_secs(12);
/// Local locks serializing this client's transactions on one directory (optimistic engines).
const STRIPES: usize = 1024;
/// Readdir cursors remembered (a few pages of many concurrent listings).
const CURSORS: usize = 16384;

/// Default of `--skip-dir-mtime` (as JuiceFS's).
pub const DEFAULT_SKIP_DIR_MTIME: Duration = Duration::from_millis(100);

/// Transactions run and conflict restarts, since the client was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxnStats {
    /// Transactions begun (each try counts).
    pub txns: u64,
    /// Tries that conflicted and ran again.
    pub restarts: u64,
}

/// A transaction as the core uses it: the engine's, plus the changes it makes to the volume's
/// space and inode counters, added to this client's tally when it commits.
pub(crate) struct W<T> {
    t: T,
    /// Space change in bytes (4 KiB aligned), for `usedSpace`.
    pub(crate) space: i64,
    /// Inode count change, for `totalInodes`.
    pub(crate) inodes: i64,
    /// Changes of the entries directly in directories (see `usage`).
    pub(crate) dirs: Vec<(Ino, DirStat)>,
    /// Changes below directories, for directory quotas: (directory, space, inodes).
    pub(crate) trees: Vec<(Ino, i64, i64)>,
    /// Changes of what users and groups own: (uid, gid, space, inodes).
    pub(crate) owners: Vec<(u32, u32, i64, i64)>,
    /// Quotas checked and written through in this transaction.
    pub(crate) through: Vec<usage::Through>,
}

impl<T> W<T> {
    pub(crate) fn new(t: T) -> Self {
        Self {
            t,
            space: 0,
            inodes: 0,
            dirs: Vec::new(),
            trees: Vec::new(),
            owners: Vec::new(),
            through: Vec::new(),
        }
    }
}

impl<T> Deref for W<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.t
    }
}

impl<T> DerefMut for W<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.t
    }
}

impl<T: Txn> W<T> {
    /// Attributes of `ino`, which must exist.
    pub(crate) async fn must_node(&mut self, ino: Ino) -> Result<Attr> {
        self.t
            .node(ino)
            .await?
            .ok_or_else(|| Error::not_found(format!("inode {ino} does not exist")))
    }

    /// Attributes of directory `ino`, which must exist and be one.
    pub(crate) async fn must_dir(&mut self, ino: Ino) -> Result<Attr> {
        let a = self.must_node(ino).await?;
        if a.typ != FileType::Dir {
            return Err(Error::not_dir(format!("inode {ino} is not a directory")));
        }
        Ok(a)
    }

    /// Whether `ino` is `ancestor` or lies below it.
    pub(crate) async fn is_below(&mut self, ancestor: Ino, mut ino: Ino) -> Result<bool> {
        let mut steps = 0;
        while ino != ROOT_INODE && ino != 0 {
            if ino == ancestor {
                return Ok(true);
            }
            let Some(a) = self.t.node(ino).await? else {
                return Ok(false);
            };
            ino = a.parent;
            steps += 1;
            if steps > 100_000 {
                return Err(Error::corrupt("directory parent chain has a loop"));
            }
        }
        Ok(ancestor == ROOT_INODE && ino == ROOT_INODE)
    }

    /// Drop one reference from each data slice of `records`; collect those that lost their
    /// last one.
    pub(crate) async fn unref_all(
        &mut self,
        records: &[Slice],
        freed: &mut Vec<(u64, u32)>,
    ) -> Result<()> {
        for s in records.iter().filter(|s| s.id != 0) {
            if self.t.unref(s.id, s.size).await? {
                freed.push((s.id, s.size));
            }
        }
        Ok(())
    }
}

/// A contiguous range of ids handed out locally.
#[derive(Default)]
struct IdRange {
    next: u64,
    end: u64,
}

/// Names behind recently handed-out readdir cursors, so a listing resumes after an entry that
/// was removed since (as `rm -r` does to every page it reads). A cursor is the entry's id where
/// the layout has one, else a number handed out here; a cursor forgotten (or from another
/// process) without an id to look up restarts the listing, which repeats names rather than
/// skipping any.
#[derive(Default)]
struct Cursors {
    next: u64,
    names: HashMap<(Ino, u64), Vec<u8>>,
    order: VecDeque<(Ino, u64)>,
}

impl Cursors {
    fn get(&self, dir: Ino, cursor: u64) -> Option<Vec<u8>> {
        self.names.get(&(dir, cursor)).cloned()
    }

    /// Remember `name` under `id`, or a new number; returns the cursor.
    fn put(&mut self, dir: Ino, id: Option<u64>, name: &[u8]) -> u64 {
        let c = id.unwrap_or_else(|| {
            self.next += 1;
            self.next
        });
        if self.names.insert((dir, c), name.to_vec()).is_none() {
            self.order.push_back((dir, c));
        }
        while self.order.len() > CURSORS {
            if let Some(k) = self.order.pop_front() {
                self.names.remove(&k);
            }
        }
        c
    }
}

/// What one client knows and keeps of a volume, over engine `E`.
pub(crate) struct Core<E: Engine> {
    pub(crate) engine: E,
    features: crate::engine::Features,
    /// Space and inode counter changes committed here but not yet added to the volume's
    /// counters: every create and write would otherwise update the same two records,
    /// serializing every client on them. Flushed every second and at unmount; reads of the
    /// counters (statfs, limits) add them.
    stats: Mutex<(i64, i64)>,
    format: RwLock<Option<Arc<Format>>>,
    sid: AtomicU64,
    read_only: AtomicBool,
    inodes: tokio::sync::Mutex<IdRange>,
    slices: tokio::sync::Mutex<IdRange>,
    open_files: Mutex<HashMap<Ino, u32>>,
    /// Inodes this session recorded as kept open after their last name went. Only their last
    /// close needs a transaction. An entry may outlive a rolled-back transaction; the close
    /// then finds no record and does nothing.
    sustained: Mutex<HashSet<Ino>>,
    deleter: RwLock<Option<SliceDeleter>>,
    jobs: Mutex<Vec<JoinHandle<()>>>,
    /// Object deletions after unlink/rename run here, off the request path; closing the
    /// session waits for them.
    deletions: Mutex<tokio::task::JoinSet<()>>,
    cursors: Mutex<Cursors>,
    /// (inode, owner) pairs holding BSD / POSIX locks through this session: the unlock every
    /// close sends costs a transaction only for these.
    flocks: Mutex<HashSet<(Ino, u64)>>,
    plocks: Mutex<HashSet<(Ino, u64)>>,
    heartbeat_ms: AtomicU64,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// `--skip-dir-mtime` in nanoseconds (0: always update).
    skip_dir_mtime_ns: AtomicU64,
    pub(crate) txns: AtomicU64,
    pub(crate) restarts: AtomicU64,
    /// Directory statistics and quotas (see `usage`).
    usage: usage::Usage,
}

impl<E: Engine> Core<E> {
    fn new(engine: E) -> Self {
        let features = engine.features();
        let stripes = if features.optimistic { STRIPES } else { 0 };
        Self {
            engine,
            features,
            stats: Mutex::new((0, 0)),
            format: RwLock::new(None),
            sid: AtomicU64::new(0),
            read_only: AtomicBool::new(false),
            inodes: tokio::sync::Mutex::new(IdRange::default()),
            slices: tokio::sync::Mutex::new(IdRange::default()),
            open_files: Mutex::new(HashMap::new()),
            sustained: Mutex::new(HashSet::new()),
            deleter: RwLock::new(None),
            jobs: Mutex::new(Vec::new()),
            deletions: Mutex::new(tokio::task::JoinSet::new()),
            cursors: Mutex::new(Cursors::default()),
            flocks: Mutex::new(HashSet::new()),
            plocks: Mutex::new(HashSet::new()),
            heartbeat_ms: AtomicU64::new(HEARTBEAT.as_millis() as u64),
            stripes: (0..stripes).map(|_| tokio::sync::Mutex::new(())).collect(),
            skip_dir_mtime_ns: AtomicU64::new(DEFAULT_SKIP_DIR_MTIME.as_nanos() as u64),
            txns: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            usage: usage::Usage::default(),
        }
    }

    /// This client's local lock of directory `ino`, on optimistic engines (see
    /// [`crate::engine::Features::optimistic`]).
    pub(crate) async fn dir_lock(
        &self,
        ino: Option<Ino>,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let ino = ino?;
        if self.stripes.is_empty() {
            return None;
        }
        let i = (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % self.stripes.len();
        Some(self.stripes[i].lock().await)
    }

    /// End a transaction: commit what succeeded and add its counter changes to the tally,
    /// roll back what failed.
    pub(crate) async fn finish<T>(&self, w: W<E::Txn<'_>>, r: Result<T>) -> Result<T> {
        match r {
            Ok(v) => {
                let W {
                    t,
                    space,
                    inodes,
                    dirs,
                    trees,
                    owners,
                    through,
                } = w;
                t.commit().await?;
                if (space, inodes) != (0, 0) {
                    if let Ok(mut s) = self.stats.lock() {
                        s.0 += space;
                        s.1 += inodes;
                    }
                }
                if !dirs.is_empty()
                    || !trees.is_empty()
                    || !owners.is_empty()
                    || !through.is_empty()
                {
                    self.usage_committed(dirs, trees, owners, through);
                }
                Ok(v)
            }
            Err(e) => {
                w.t.rollback().await;
                Err(e)
            }
        }
    }

    /// The volume setting (shared: read by every create and write).
    pub(crate) fn format(&self) -> Result<Arc<Format>> {
        self.format
            .read()
            .map_err(|_| lock_poisoned())?
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Engine, "volume not loaded"))
    }

    /// What `f` reads from the volume setting (the default before it is loaded).
    pub(crate) fn setting<T: Default>(&self, f: impl FnOnce(&Format) -> T) -> T {
        self.format
            .read()
            .ok()
            .and_then(|s| s.as_deref().map(f))
            .unwrap_or_default()
    }

    pub(crate) fn trash_days(&self) -> u32 {
        self.setting(|f| f.trash_days)
    }

    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only.load(Ordering::Relaxed) {
            return Err(Error::read_only("the volume is mounted read-only"));
        }
        Ok(())
    }

    pub(crate) fn sid(&self) -> u64 {
        self.sid.load(Ordering::Relaxed)
    }

    fn is_open(&self, ino: Ino) -> bool {
        self.open_files
            .lock()
            .map(|m| m.get(&ino).copied().unwrap_or(0) > 0)
            .unwrap_or(false)
    }

    /// Whether an entry change in directory `p` at `now` may leave its times as they are: on
    /// optimistic engines, when they changed less than `--skip-dir-mtime` ago.
    pub(crate) fn keep_dir_times(&self, p: &Attr, now: Timestamp) -> bool {
        if !self.features.optimistic {
            return false;
        }
        let window = i128::from(self.skip_dir_mtime_ns.load(Ordering::Relaxed));
        // in i128: a directory's mtime may be anything utimes set, far past or future
        let age = (i128::from(now.sec) - i128::from(p.mtime.sec)) * 1_000_000_000
            + i128::from(now.nsec)
            - i128::from(p.mtime.nsec);
        (0..window).contains(&age)
    }

    /// Counter changes not yet in the volume's counters: (space, inodes).
    pub(crate) fn pending_stats(&self) -> (i64, i64) {
        self.stats.lock().map(|s| *s).unwrap_or((0, 0))
    }

    /// Add the pending counter changes to the volume's counters.
    pub(crate) async fn flush_stats(&self) -> Result<()> {
        let (space, inodes) = match self.stats.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return Err(lock_poisoned()),
        };
        if (space, inodes) == (0, 0) {
            return Ok(());
        }
        let res = retry::txn!(self, "flush counters", Mode::Write, |tx| {
            tx.add_counter("usedSpace", space).await?;
            tx.add_counter("totalInodes", inodes).await?;
        });
        if res.is_err() {
            // kept for the next flush
            if let Ok(mut s) = self.stats.lock() {
                s.0 += space;
                s.1 += inodes;
            }
        }
        res
    }

    pub(crate) async fn next_inode(&self) -> Result<Ino> {
        self.next_id(&self.inodes, "nextInode", INODE_BATCH).await
    }

    pub(crate) async fn next_slice(&self) -> Result<u64> {
        self.next_id(&self.slices, "nextChunk", SLICE_BATCH).await
    }

    /// The next id of `range`, taking a batch of `batch` from `counter` when it runs out.
    async fn next_id(
        &self,
        range: &tokio::sync::Mutex<IdRange>,
        counter: &'static str,
        batch: i64,
    ) -> Result<u64> {
        let mut r = range.lock().await;
        if r.next >= r.end {
            let end = retry::txn!(self, counter, Mode::Write, |tx| {
                tx.add_counter(counter, batch).await?
            })?;
            r.next = (end - batch) as u64;
            r.end = end as u64;
        }
        let id = r.next;
        r.next += 1;
        Ok(id)
    }

    /// Refuse a change that would take the volume past its capacity.
    pub(crate) async fn check_capacity(&self, tx: &mut W<E::Txn<'_>>, grow: i64) -> Result<()> {
        if grow <= 0 {
            return Ok(());
        }
        let cap = self.format()?.capacity;
        if cap > 0 {
            let used = tx.counter("usedSpace").await? + self.pending_stats().0 + tx.space;
            if used + grow > cap as i64 {
                return Err(Error::new(
                    ErrorKind::NoSpace,
                    "capacity of the volume reached",
                ));
            }
        }
        Ok(())
    }

    fn heartbeat_period(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed).max(100))
    }

    /// Seconds a session lives after a heartbeat: 5 heartbeats.
    fn session_ttl_secs(&self) -> i64 {
        (self.heartbeat_period() * 5).as_secs().max(1) as i64
    }
}

/// A metadata client of one volume over engine `E`: the [`crate::Meta`] and [`crate::Admin`]
/// surfaces, written once.
pub struct Client<E: Engine> {
    core: Arc<Core<E>>,
}

impl<E: Engine> Client<E> {
    /// A client of the volume engine `engine` holds (not loaded yet).
    pub fn new(engine: E) -> Self {
        Self {
            core: Arc::new(Core::new(engine)),
        }
    }

    /// Transactions and conflict restarts so far.
    pub fn txn_stats(&self) -> TxnStats {
        TxnStats {
            txns: self.core.txns.load(Ordering::Relaxed),
            restarts: self.core.restarts.load(Ordering::Relaxed),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.core.engine
    }
}

#[async_trait]
impl<E: Engine> Meta for Client<E> {
    fn engine(&self) -> &'static str {
        self.core.engine.name()
    }
    async fn load(&self) -> Result<Format> {
        self.core.load().await
    }
    async fn new_session(&self, info: SessionInfo) -> Result<u64> {
        self.core.new_session(info).await
    }
    async fn close_session(&self) -> Result<()> {
        self.core.close_session().await
    }
    fn set_read_only(&self, read_only: bool) {
        self.core.read_only.store(read_only, Ordering::Relaxed);
    }
    fn set_heartbeat(&self, period: Duration) {
        self.core
            .heartbeat_ms
            .store(period.as_millis() as u64, Ordering::Relaxed);
    }
    fn set_skip_dir_mtime(&self, window: Duration) {
        self.core.skip_dir_mtime_ns.store(
            u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
    fn set_slice_deleter(&self, deleter: SliceDeleter) {
        if let Ok(mut d) = self.core.deleter.write() {
            *d = Some(deleter);
        }
    }
    async fn statfs(&self) -> Result<StatFs> {
        self.core.statfs().await
    }
    async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.core.lookup(ctx, parent, name).await
    }
    async fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.core.getattr(ino).await
    }
    async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.core.setattr(ctx, ino, set).await
    }
    async fn truncate(&self, ctx: &Ctx, ino: Ino, length: u64) -> Result<Attr> {
        self.core.truncate(ctx, ino, length).await
    }
    async fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        mode: FallocMode,
        off: u64,
        len: u64,
    ) -> Result<Attr> {
        self.core.fallocate(ctx, ino, mode, off, len).await
    }
    async fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        mode: u16,
        umask: u16,
        rdev: u32,
        target: &[u8],
    ) -> Result<Attr> {
        let new = namespace::NewNode {
            typ,
            mode,
            umask,
            rdev,
            target,
        };
        self.core.mknod(ctx, parent, name, new).await
    }
    async fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.core.unlink(ctx, parent, name).await
    }
    async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.core.rmdir(ctx, parent, name).await
    }
    async fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        self.core
            .rename(ctx, parent, name, new_parent, new_name, flags)
            .await
    }
    async fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        self.core.link(ctx, ino, new_parent, new_name).await
    }
    async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.core.readlink(ino).await
    }
    async fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        after: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        self.core.readdir(ctx, ino, after, limit, plus).await
    }
    async fn entries_from(
        &self,
        parent: Ino,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Attr)>> {
        self.core.entries_from(parent, from, limit).await
    }
    async fn open(&self, ctx: &Ctx, ino: Ino) -> Result<Attr> {
        let _ = ctx;
        let a = self.core.getattr(ino).await?;
        self.core.opened(ino);
        Ok(a)
    }
    fn opened(&self, ino: Ino) {
        self.core.opened(ino)
    }
    async fn close(&self, ino: Ino) -> Result<()> {
        self.core.close(ino).await
    }
    async fn read_chunk(&self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        self.core.read_chunk(ino, indx).await
    }
    async fn new_slice_id(&self) -> Result<u64> {
        self.core.next_slice().await
    }
    async fn write_slice(
        &self,
        ino: Ino,
        indx: u32,
        slice: Slice,
        mtime: Timestamp,
        sums: &[u8],
    ) -> Result<()> {
        self.core.write_slice(ino, indx, slice, mtime, sums).await
    }
    async fn copy_range(
        &self,
        src: Ino,
        off_in: u64,
        dst: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<(u64, Attr)> {
        self.core.copy_range(src, off_in, dst, off_out, len).await
    }
    async fn slice_sums(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.core.slice_sums(id).await
    }
    async fn compact_chunk(
        &self,
        ino: Ino,
        indx: u32,
        old: &[Slice],
        new: &[Slice],
        sums: &[Vec<u8>],
    ) -> Result<bool> {
        self.core.compact_chunk(ino, indx, old, new, sums).await
    }
    async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        self.core.getxattr(ino, name).await
    }
    async fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        self.core.listxattr(ino).await
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()> {
        self.core.setxattr(ctx, ino, name, value, flags).await
    }
    async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.core.removexattr(ctx, ino, name).await
    }
    async fn flock(&self, ino: Ino, owner: u64, kind: LockKind) -> Result<()> {
        self.core.flock(ino, owner, kind).await
    }
    async fn getlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Option<PosixLock>> {
        self.core.getlk(ino, owner, lock).await
    }
    async fn lock_blockers(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Vec<u64>> {
        self.core.lock_blockers(ino, owner, lock).await
    }
    async fn setlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<()> {
        self.core.setlk(ino, owner, lock).await
    }
    async fn sync(&self) -> Result<()> {
        self.core.flush_stats().await?;
        self.core.engine.sync().await
    }
    async fn summary(&self, ino: Ino, depth: u32, top: usize, strict: bool) -> Result<TreeSummary> {
        self.core.summary(ino, depth, top, strict).await
    }
    async fn quotas_above(&self, ino: Ino) -> Result<Vec<(Ino, Quota)>> {
        self.core.quotas_above(ino).await
    }
}

#[async_trait]
impl<E: Engine> Admin for Client<E> {
    async fn init(&self, format: &Format, force: bool) -> Result<()> {
        self.core.init(format, force).await
    }
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        self.core.list_sessions().await
    }
    async fn chunks_page(
        &self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<(Vec<ChunkSlices>, Option<Vec<u8>>)> {
        self.core.chunks_page(cursor, limit).await
    }
    async fn leftovers(&self) -> Result<Leftovers> {
        self.core.leftovers().await
    }
    async fn purge_held_slices(&self, before: i64) -> Result<u64> {
        self.core.purge_held_slices(before).await
    }
    async fn check(&self, repair: bool) -> Result<Vec<Problem>> {
        self.core.check(repair).await
    }
    async fn check_dir_stats(&self, repair: bool) -> Result<Vec<Problem>> {
        self.core.check_dir_stats(repair).await
    }
    async fn cleanup(&self) -> Result<u64> {
        self.core.cleanup().await
    }
    async fn destroy(&self) -> Result<()> {
        self.core.engine.destroy().await
    }
    async fn configure(&self, format: &Format) -> Result<()> {
        self.core.configure(format).await
    }
    async fn set_quota(
        &self,
        kind: QuotaKind,
        key: u64,
        max_space: Option<i64>,
        max_inodes: Option<i64>,
        strict: bool,
    ) -> Result<Quota> {
        self.core
            .set_quota(kind, key, max_space, max_inodes, strict)
            .await
    }
    async fn get_quota(&self, kind: QuotaKind, key: u64) -> Result<Option<Quota>> {
        self.core.get_quota(kind, key).await
    }
    async fn list_quotas(&self) -> Result<Vec<(QuotaKind, u64, Quota)>> {
        self.core.list_quotas().await
    }
    async fn delete_quota(&self, kind: QuotaKind, key: u64) -> Result<bool> {
        self.core.delete_quota(kind, key).await
    }
    async fn check_owner_quotas(&self, repair: bool) -> Result<Vec<QuotaCheck>> {
        self.core.check_owner_usage(repair).await
    }
    async fn check_quotas(
        &self,
        key: Option<u64>,
        repair: bool,
        strict: bool,
    ) -> Result<Vec<QuotaCheck>> {
        self.core.check_quotas_usage(key, repair, strict).await
    }
}

impl<E: Engine> Volume for Client<E> {}
