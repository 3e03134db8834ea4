//! The transactional-KV engine family, in the JuiceFS CE 1.x TiKV layout ([`keys`]), over the
//! small interface of [`store`]: `memkv://` ([`mem::MemKv`]) and TiKV.
//!
//! Every operation is one optimistic transaction run by [`kv_txn!`]: reads, then buffered
//! writes, then a commit that fails as a conflict when another client changed what was read.
//! A conflict reruns the whole body (it only touches the store, so a rerun is safe), at most
//! [`MAX_TXN_ATTEMPTS`] times with jittered backoff; restarts are counted (see
//! [`KvMeta::txn_stats`]). Operations on one directory (creates, removes, renames in it) from
//! this client are serialized by a striped local lock first, so a hot directory costs
//! conflicts only between clients, not between the tasks of one.
//!
//! The in-memory effects of an operation (open files, deletions of objects) happen after commit.

pub mod keys;
pub mod latest;
pub mod mem;
pub mod store;
pub mod tikv;

use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::perm::{self, MAY_EXEC, MAY_WRITE};
use crate::rules::{
    align4k, analyze, apply_setattr, backoff, check_copy_plan, check_name, chunk_problems,
    chunk_span, copy_extent, decode_delayed, lock_poisoned, new_dir_attr, new_mode_and_gid,
    shared_refs, xattr_name, zero_end, zero_record, Fix,
};
use crate::slice::{self, Slice};
use crate::sql::locks::{apply as plock_apply, conflict as plock_conflict};
use crate::sql::locks::{decode as plock_decode, encode as plock_encode, wire as plock_wire};
use crate::types::*;
use crate::{ChunkSlices, Meta, Problem, SliceDeleter, XattrFlags};
use async_trait::async_trait;
use keys::*;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use store::{KvStore, KvTxn, Pair};
use tokio::task::JoinHandle;

/// How often a transaction is tried before its conflict is returned (JuiceFS: 50).
pub const MAX_TXN_ATTEMPTS: u32 = 50;
/// How long an operation keeps retrying while the store cannot be reached.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(60);
/// Inode numbers taken from `nextInode` at once.
const INODE_BATCH: i64 = 1024;
/// Slice ids taken from `nextChunk` at once.
const SLICE_BATCH: i64 = 4096;
/// Default session heartbeat (a session expires 5 heartbeats after its last one).
const HEARTBEAT: Duration = Duration::from_secs(12);
/// Period of flushing the space and inode counters changed by this client.
const STATS_FLUSH: Duration = Duration::from_secs(1);
/// Files up to this length have their chunks freed in the transaction that removes them.
const INLINE_FREE_MAX: u64 = 16 * CHUNK_SIZE;
/// Keys read per scan request.
const SCAN_BATCH: usize = 4096;
/// Chunks freed per transaction when a large file's data goes.
const FREE_BATCH: usize = 1000;
/// Local locks serializing this client's transactions on one directory.
const STRIPES: usize = 1024;

/// Default of `--skip-dir-mtime` (as JuiceFS's).
pub const DEFAULT_SKIP_DIR_MTIME: Duration = Duration::from_millis(100);
/// Readdir cursors remembered (a few pages of many concurrent listings).
const CURSORS: usize = 16384;

/// Run `$body` in a transaction bound to `$tx` (a `&mut Tx`), retrying conflicts and an
/// unreachable store with backoff; with `lock = $ino`, under this client's local lock of `$ino`.
macro_rules! kv_txn {
    ($self:expr, $op:expr, |$tx:ident| $body:block) => {
        kv_txn!(@run $self, $op, None, |$tx| $body)
    };
    ($self:expr, $op:expr, lock = $ino:expr, |$tx:ident| $body:block) => {
        kv_txn!(@run $self, $op, Some($ino), |$tx| $body)
    };
    (@run $self:expr, $op:expr, $lock:expr, |$tx:ident| $body:block) => {{
        let lock_ino: Option<Ino> = $lock;
        let _local = match lock_ino {
            Some(i) => Some($self.stripe(i).lock().await),
            None => None,
        };
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            $self.txns.fetch_add(1, Ordering::Relaxed);
            let res: Result<_> = match $self.store.begin().await {
                Ok(mut t) => {
                    let (r, delta) = {
                        let mut w = Tx::new(&mut *t, &$self.keys);
                        let r: Result<_> = async {
                            let $tx = &mut w;
                            Ok($body)
                        }
                        .await;
                        (r, (w.space, w.inodes))
                    };
                    match r {
                        Ok(v) => match t.commit().await {
                            Ok(()) => {
                                $self.add_stats(delta);
                                Ok(v)
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => {
                            t.rollback().await;
                            Err(e)
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match res {
                Err(e) if e.is_retryable() && attempt + 1 < MAX_TXN_ATTEMPTS => {
                    attempt += 1;
                    $self.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(op = $op, attempt, error = %e, "transaction conflict, retrying");
                    backoff(attempt).await;
                }
                Err(e) if e.is_unavailable() && started.elapsed() < UNAVAILABLE_RETRY => {
                    attempt += 1;
                    tracing::warn!(op = $op, attempt, error = %e, "metadata store unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(5)))).await;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(op = $op, attempts = attempt + 1, error = %e, "transaction still conflicting after every attempt");
                    break Err(e);
                }
                other => break other,
            }
        }
    }};
}

/// Run `$body` with `$tx` bound to a read transaction (never committed), retrying for a while
/// when the store cannot be reached.
macro_rules! kv_read {
    ($self:expr, $op:expr, |$tx:ident| $body:block) => {
        kv_read!(@run $self, $op, begin, |$tx| $body)
    };
    // Point reads that need no snapshot consistent across keys: the latest committed values.
    ($self:expr, $op:expr, latest, |$tx:ident| $body:block) => {
        kv_read!(@run $self, $op, begin_latest, |$tx| $body)
    };
    (@run $self:expr, $op:expr, $begin:ident, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            let res: Result<_> = match $self.store.$begin().await {
                Ok(mut t) => {
                    let r: Result<_> = {
                        let mut w = Tx::new(&mut *t, &$self.keys);
                        async {
                            let $tx = &mut w;
                            Ok($body)
                        }
                        .await
                    };
                    t.rollback().await;
                    r
                }
                Err(e) => Err(e),
            };
            match res {
                Err(e) if e.is_unavailable() && started.elapsed() < UNAVAILABLE_RETRY => {
                    attempt += 1;
                    tracing::warn!(op = $op, attempt, error = %e, "metadata store unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(5)))).await;
                }
                other => break other,
            }
        }
    }};
}

/// A transaction with the layout's helpers, and the counter changes it makes.
struct Tx<'a> {
    t: &'a mut dyn KvTxn,
    k: &'a Keys,
    /// Space change (bytes, 4 KiB aligned) to add to `usedSpace` after commit.
    space: i64,
    /// Inode count change to add to `totalInodes` after commit.
    inodes: i64,
}

impl<'a> Tx<'a> {
    fn new(t: &'a mut dyn KvTxn, k: &'a Keys) -> Self {
        Self {
            t,
            k,
            space: 0,
            inodes: 0,
        }
    }

    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.t.get(key).await
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.t.put(key, value).await
    }

    async fn del(&mut self, key: Vec<u8>) -> Result<()> {
        self.t.delete(key).await
    }

    /// Record that entry `name` was added to directory `p` at `now`: set the directory's
    /// times, or, when `keep` (they changed moments ago), leave its attributes unwritten and
    /// lock one of its guards instead, so a concurrent rmdir still conflicts with this.
    async fn entry_added(
        &mut self,
        p: &mut Attr,
        name: &[u8],
        now: Timestamp,
        keep: bool,
    ) -> Result<()> {
        if keep {
            // FNV-1a of the name spreads the guards
            let hash = name.iter().fold(0x811c_9dc5_u32, |h, &b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
            let shard = (hash % u32::from(Keys::DIR_GUARDS)) as u8;
            return self.t.lock(self.k.dir_guard(p.ino, shard)).await;
        }
        p.mtime = now;
        p.ctime = now;
        self.set_attr(p).await
    }

    /// Lock every guard of directory `ino` (it is being removed).
    async fn lock_dir_guards(&mut self, ino: Ino) -> Result<()> {
        for shard in 0..Keys::DIR_GUARDS {
            self.t.lock(self.k.dir_guard(ino, shard)).await?;
        }
        Ok(())
    }

    async fn attr(&mut self, ino: Ino) -> Result<Option<Attr>> {
        let key = self.k.inode(ino);
        match self.t.get(&key).await? {
            Some(b) => Ok(Some(decode_attr(ino, &b)?)),
            None => Ok(None),
        }
    }

    async fn must_attr(&mut self, ino: Ino) -> Result<Attr> {
        self.attr(ino)
            .await?
            .ok_or_else(|| Error::not_found(format!("inode {ino} does not exist")))
    }

    async fn must_dir(&mut self, ino: Ino) -> Result<Attr> {
        let a = self.must_attr(ino).await?;
        if a.typ != FileType::Dir {
            return Err(Error::not_dir(format!("inode {ino} is not a directory")));
        }
        Ok(a)
    }

    async fn set_attr(&mut self, a: &Attr) -> Result<()> {
        let key = self.k.inode(a.ino);
        self.t.put(key, encode_attr(a)).await
    }

    async fn entry(&mut self, parent: Ino, name: &[u8]) -> Result<Option<(FileType, Ino)>> {
        let key = self.k.entry(parent, name);
        match self.t.get(&key).await? {
            Some(b) => Ok(Some(decode_entry(&b)?)),
            None => Ok(None),
        }
    }

    async fn put_entry(&mut self, parent: Ino, name: &[u8], typ: FileType, ino: Ino) -> Result<()> {
        let key = self.k.entry(parent, name);
        self.t.put(key, encode_entry(typ, ino)).await
    }

    async fn counter(&mut self, name: &str) -> Result<i64> {
        let key = self.k.counter(name);
        decode_counter(self.t.get(&key).await?.as_deref())
    }

    async fn counter_add(&mut self, name: &str, delta: i64) -> Result<i64> {
        let key = self.k.counter(name);
        let v = decode_counter(self.t.get(&key).await?.as_deref())? + delta;
        if delta != 0 {
            self.t.put(key, encode_counter(v)).await?;
        }
        Ok(v)
    }

    /// Add `delta` to a counter kept only while non-zero (link parents, slice references).
    async fn sparse_add(&mut self, key: Vec<u8>, delta: i64) -> Result<i64> {
        let v = decode_counter(self.t.get(&key).await?.as_deref())? + delta;
        if v == 0 {
            self.t.delete(key).await?;
        } else {
            self.t.put(key, encode_counter(v)).await?;
        }
        Ok(v)
    }

    /// Every pair under `prefix`, read in batches.
    async fn scan_all(&mut self, prefix: &[u8]) -> Result<Vec<Pair>> {
        let end = prefix_end(prefix);
        let mut out: Vec<Pair> = Vec::new();
        let mut start = prefix.to_vec();
        loop {
            let batch = self.t.scan(&start, &end, SCAN_BATCH).await?;
            let n = batch.len();
            if let Some((k, _)) = batch.last() {
                start = k.clone();
                start.push(0);
            }
            out.extend(batch);
            if n < SCAN_BATCH {
                return Ok(out);
            }
        }
    }

    async fn dir_is_empty(&mut self, ino: Ino) -> Result<bool> {
        let prefix = self.k.entries(ino);
        let end = prefix_end(&prefix);
        Ok(self.t.scan(&prefix, &end, 1).await?.is_empty())
    }

    async fn read_chunk(&mut self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        let key = self.k.chunk(ino, indx);
        match self.t.get(&key).await? {
            Some(b) => slice::decode_all(&b),
            None => Ok(Vec::new()),
        }
    }

    async fn append_slices(&mut self, ino: Ino, indx: u32, records: &[Slice]) -> Result<()> {
        let key = self.k.chunk(ino, indx);
        let mut buf = self.t.get(&key).await?.unwrap_or_default();
        buf.extend_from_slice(&slice::encode_all(records));
        self.t.put(key, buf).await
    }

    /// Drop one reference from each data slice of `records`; collect those that lost their
    /// last one (stored count below zero: the key holds references less one).
    async fn unref_slices(&mut self, records: &[Slice], freed: &mut Vec<(u64, u32)>) -> Result<()> {
        for s in records.iter().filter(|s| s.id != 0) {
            let key = self.k.slice_ref(s.id, s.size);
            let v = decode_counter(self.t.get(&key).await?.as_deref())? - 1;
            if v < 0 {
                freed.push((s.id, s.size));
                self.t.delete(key).await?;
            } else if v == 0 {
                self.t.delete(key).await?;
            } else {
                self.t.put(key, encode_counter(v)).await?;
            }
        }
        Ok(())
    }

    /// Whether `ino` is `ancestor` or lies below it.
    async fn is_below(&mut self, ancestor: Ino, mut ino: Ino) -> Result<bool> {
        let mut steps = 0;
        while ino != ROOT_INODE && ino != 0 {
            if ino == ancestor {
                return Ok(true);
            }
            let Some(a) = self.attr(ino).await? else {
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
}

/// A contiguous range of ids handed out locally.
#[derive(Default)]
struct IdRange {
    next: u64,
    end: u64,
}

/// What removing one name did to the inode it named.
enum Removed {
    /// Other names remain, or it moved to the trash.
    Kept,
    /// No names remain but it is open here: freed at the last close.
    Sustained,
    /// Gone: `objects` are to be deleted; a large file's chunks are `deferred` to transactions
    /// of their own (its `D` key stands for them meanwhile).
    Freed {
        ino: Ino,
        deferred: bool,
        objects: Vec<(u64, u32)>,
    },
}

/// Names behind recently handed-out readdir cursors. A KV directory has no entry ids, so a
/// cursor is a number handed out here; a cursor forgotten (or from another process) restarts
/// the listing, which repeats names rather than skipping any.
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

    fn put(&mut self, dir: Ino, name: &[u8]) -> u64 {
        self.next += 1;
        let c = self.next;
        self.names.insert((dir, c), name.to_vec());
        self.order.push_back((dir, c));
        while self.order.len() > CURSORS {
            if let Some(k) = self.order.pop_front() {
                self.names.remove(&k);
            }
        }
        c
    }
}

/// Transactions run and conflict restarts, since the engine was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxnStats {
    /// Transactions begun (each try counts).
    pub txns: u64,
    /// Tries that conflicted and ran again.
    pub restarts: u64,
}

/// The KV metadata engine.
pub struct KvMeta {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KvStore>,
    keys: Keys,
    /// The meta URL without secrets, for messages.
    shown: String,
    stats: Mutex<(i64, i64)>,
    format: RwLock<Option<Format>>,
    sid: AtomicU64,
    read_only: AtomicBool,
    inodes: tokio::sync::Mutex<IdRange>,
    slices: tokio::sync::Mutex<IdRange>,
    open_files: Mutex<HashMap<Ino, u32>>,
    sustained: Mutex<HashSet<Ino>>,
    deleter: RwLock<Option<SliceDeleter>>,
    jobs: Mutex<Vec<JoinHandle<()>>>,
    deletions: Mutex<tokio::task::JoinSet<()>>,
    cursors: Mutex<Cursors>,
    flocks: Mutex<HashSet<(Ino, u64)>>,
    plocks: Mutex<HashSet<(Ino, u64)>>,
    heartbeat_ms: AtomicU64,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// `--skip-dir-mtime` in nanoseconds (0: always update).
    skip_dir_mtime_ns: AtomicU64,
    txns: AtomicU64,
    restarts: AtomicU64,
}

impl KvMeta {
    /// The engine over `store`, for the volume whose keys start with `keys`' prefix.
    pub fn new(store: Arc<dyn KvStore>, keys: Keys, shown: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                shown,
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
                stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
                skip_dir_mtime_ns: AtomicU64::new(DEFAULT_SKIP_DIR_MTIME.as_nanos() as u64),
                txns: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
            }),
        }
    }

    /// Transactions and conflict restarts so far.
    pub fn txn_stats(&self) -> TxnStats {
        TxnStats {
            txns: self.inner.txns.load(Ordering::Relaxed),
            restarts: self.inner.restarts.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn stripe(&self, ino: Ino) -> &tokio::sync::Mutex<()> {
        let i = (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % self.stripes.len();
        &self.stripes[i]
    }

    fn add_stats(&self, (space, inodes): (i64, i64)) {
        if (space, inodes) != (0, 0) {
            if let Ok(mut s) = self.stats.lock() {
                s.0 += space;
                s.1 += inodes;
            }
        }
    }

    fn format(&self) -> Result<Format> {
        self.format
            .read()
            .map_err(|_| lock_poisoned())?
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Engine, "volume not loaded"))
    }

    fn trash_days(&self) -> u32 {
        self.format
            .read()
            .ok()
            .and_then(|f| f.as_ref().map(|f| f.trash_days))
            .unwrap_or(0)
    }

    fn writable(&self) -> Result<()> {
        if self.read_only.load(Ordering::Relaxed) {
            return Err(Error::read_only("the volume is mounted read-only"));
        }
        Ok(())
    }

    fn is_open(&self, ino: Ino) -> bool {
        self.open_files
            .lock()
            .map(|m| m.get(&ino).copied().unwrap_or(0) > 0)
            .unwrap_or(false)
    }

    fn heartbeat_period(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed).max(100))
    }

    fn session_ttl_secs(&self) -> i64 {
        (self.heartbeat_period() * 5).as_secs().max(1) as i64
    }

    fn pending_stats(&self) -> (i64, i64) {
        self.stats.lock().map(|s| *s).unwrap_or((0, 0))
    }

    async fn flush_stats(&self) -> Result<()> {
        let (space, inodes) = match self.stats.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return Err(lock_poisoned()),
        };
        if (space, inodes) == (0, 0) {
            return Ok(());
        }
        let res = kv_txn!(self, "flush counters", |tx| {
            tx.counter_add("usedSpace", space).await?;
            tx.counter_add("totalInodes", inodes).await?;
        });
        if res.is_err() {
            if let Ok(mut s) = self.stats.lock() {
                s.0 += space;
                s.1 += inodes;
            }
        }
        res
    }

    async fn next_inode(&self) -> Result<Ino> {
        self.next_id(&self.inodes, "nextInode", INODE_BATCH).await
    }

    async fn next_slice(&self) -> Result<u64> {
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
            let end = kv_txn!(self, counter, |tx| {
                tx.counter_add(counter, batch).await?
            })?;
            r.next = (end - batch) as u64;
            r.end = end as u64;
        }
        let id = r.next;
        r.next += 1;
        Ok(id)
    }

    /// The trash directory for the current hour, created when missing.
    async fn trash_dir(&self, tx: &mut Tx<'_>, now: Timestamp) -> Result<Ino> {
        let name = chrono::DateTime::from_timestamp(now.sec, 0)
            .map(|t| t.format("%Y-%m-%d-%H").to_string())
            .ok_or_else(|| Error::invalid("clock out of range"))?;
        if let Some((_, ino)) = tx.entry(TRASH_INODE, name.as_bytes()).await? {
            return Ok(ino);
        }
        let mut root = match tx.attr(TRASH_INODE).await? {
            Some(a) => a,
            None => new_dir_attr(TRASH_INODE, 0o555, ROOT_INODE, now),
        };
        let n = tx.counter_add("nextTrash", 1).await?;
        let ino = TRASH_INODE + n as u64;
        tx.set_attr(&new_dir_attr(ino, 0o555, TRASH_INODE, now))
            .await?;
        tx.put_entry(TRASH_INODE, name.as_bytes(), FileType::Dir, ino)
            .await?;
        tx.inodes += 1;
        root.nlink += 1;
        root.mtime = now;
        root.ctime = now;
        tx.set_attr(&root).await?;
        Ok(ino)
    }

    /// Delete inode `attr` (no names left): its attributes, extended attributes, symlink
    /// target and link parents; a file's data inline (collecting freed slices in `freed`) or,
    /// when `queue`, through a pending-deletion key.
    async fn free_inode(
        &self,
        tx: &mut Tx<'_>,
        attr: &Attr,
        now: Timestamp,
        queue: bool,
        freed: &mut Vec<(u64, u32)>,
    ) -> Result<()> {
        let ino = attr.ino;
        tx.del(tx.k.inode(ino)).await?;
        for prefix in [tx.k.xattrs(ino), tx.k.parents(ino)] {
            for (k, _) in tx.scan_all(&prefix).await? {
                tx.del(k).await?;
            }
        }
        match attr.typ {
            FileType::Symlink => tx.del(tx.k.symlink(ino)).await?,
            FileType::Dir => {
                tx.del(tx.k.dir_stats(ino)).await?;
                // conflicts with any create that added an entry unseen by the emptiness check
                tx.lock_dir_guards(ino).await?;
            }
            FileType::File => {
                if queue {
                    tx.put(tx.k.delfile(ino, attr.length), encode_i64(now.sec))
                        .await?;
                } else {
                    for (k, v) in tx.scan_all(&tx.k.chunks(ino)).await? {
                        tx.unref_slices(&slice::decode_all(&v)?, freed).await?;
                        tx.del(k).await?;
                    }
                }
                tx.space -= align4k(attr.length);
            }
            _ => {}
        }
        tx.inodes -= 1;
        Ok(())
    }

    /// Remove the entry `name` of `parent` naming `attr` and drop the link it held: the inode
    /// is kept (more links), moved to the trash, kept while open here, or freed.
    async fn drop_link(
        &self,
        tx: &mut Tx<'_>,
        mut attr: Attr,
        parent: Ino,
        name: &[u8],
        now: Timestamp,
    ) -> Result<Removed> {
        tx.del(tx.k.entry(parent, name)).await?;
        attr.ctime = now;
        if attr.parent == 0 {
            // hard-linked: one link fewer in this directory
            tx.sparse_add(tx.k.parent(attr.ino, parent), -1).await?;
        }
        if attr.nlink > 1 {
            attr.nlink -= 1;
            tx.set_attr(&attr).await?;
            return Ok(Removed::Kept);
        }
        let in_trash = parent >= TRASH_INODE;
        if self.trash_days() > 0 && attr.typ == FileType::File && !in_trash {
            let dir = self.trash_dir(tx, now).await?;
            let mut tname = format!("{}-{}-", parent, attr.ino).into_bytes();
            tname.extend_from_slice(name);
            tname.truncate(MAX_NAME_LEN);
            if tx.entry(dir, &tname).await?.is_some() {
                tname.truncate(MAX_NAME_LEN - 12);
                tname.extend_from_slice(format!("-{}", now.nsec).as_bytes());
            }
            tx.put_entry(dir, &tname, attr.typ, attr.ino).await?;
            attr.parent = dir;
            tx.set_attr(&attr).await?;
            return Ok(Removed::Kept);
        }
        attr.nlink = 0;
        if attr.typ == FileType::File && self.is_open(attr.ino) {
            tx.set_attr(&attr).await?;
            let sid = self.sid.load(Ordering::Relaxed);
            tx.put(tx.k.sustained(sid, attr.ino), vec![1]).await?;
            if let Ok(mut set) = self.sustained.lock() {
                set.insert(attr.ino);
            }
            return Ok(Removed::Sustained);
        }
        let deferred = attr.typ == FileType::File && attr.length > INLINE_FREE_MAX;
        let mut objects = Vec::new();
        self.free_inode(tx, &attr, now, deferred, &mut objects)
            .await?;
        Ok(Removed::Freed {
            ino: attr.ino,
            deferred,
            objects,
        })
    }

    /// Free the chunks of a deleted file (queued under its `D` key), a batch per transaction,
    /// and the objects nobody references any more.
    async fn free_file_data(&self, ino: Ino) -> Result<()> {
        loop {
            let (freed, done) = kv_txn!(self, "free file data", |tx| {
                let prefix = tx.k.chunks(ino);
                let end = prefix_end(&prefix);
                let batch = tx.t.scan(&prefix, &end, FREE_BATCH).await?;
                let mut freed = Vec::new();
                let done = batch.len() < FREE_BATCH;
                for (k, v) in batch {
                    tx.unref_slices(&slice::decode_all(&v)?, &mut freed).await?;
                    tx.del(k).await?;
                }
                if done {
                    let mut d = tx.k.kind(b"D");
                    d.extend_from_slice(&ino.to_le_bytes());
                    for (k, _) in tx.scan_all(&d).await? {
                        tx.del(k).await?;
                    }
                }
                (freed, done)
            })?;
            self.delete_objects(freed).await;
            if done {
                return Ok(());
            }
        }
    }

    async fn delete_objects(&self, freed: Vec<(u64, u32)>) {
        let deleter = self.deleter.read().ok().and_then(|d| d.clone());
        let Some(deleter) = deleter else {
            if !freed.is_empty() {
                tracing::warn!(
                    count = freed.len(),
                    "no slice deleter installed; objects left for gc"
                );
            }
            return;
        };
        for (id, size) in freed {
            if let Err(e) = deleter(id, size).await {
                tracing::warn!(slice = id, error = %e, "deleting objects of a freed slice failed; left for gc");
                continue;
            }
            let gone: Result<()> = kv_txn!(self, "drop checksums", |tx| {
                tx.del(tx.k.sums(id)).await?;
            });
            if let Err(e) = gone {
                tracing::debug!(slice = id, error = %e, "dropping checksums of a freed slice failed");
            }
        }
    }

    async fn after_remove(self: &Arc<Self>, removed: Removed) {
        if let Removed::Freed {
            ino,
            deferred,
            objects,
        } = removed
        {
            let me = Arc::clone(self);
            let work = async move {
                me.delete_objects(objects).await;
                if deferred {
                    if let Err(e) = me.free_file_data(ino).await {
                        tracing::warn!(ino, error = %e, "freeing file data failed; will retry in cleanup");
                    }
                }
            };
            let unqueued = match self.deletions.lock() {
                Ok(mut set) => {
                    while set.try_join_next().is_some() {}
                    set.spawn(work);
                    None
                }
                Err(_) => Some(work),
            };
            if let Some(work) = unqueued {
                work.await;
            }
        }
    }

    async fn drain_deletions(&self) {
        let mut set = match self.deletions.lock() {
            Ok(mut set) => std::mem::take(&mut *set),
            Err(_) => return,
        };
        while set.join_next().await.is_some() {}
    }

    /// Remove session `sid` and what it held: its locks and the inodes it kept alive (freed
    /// here, their data after commit). Returns those files.
    async fn remove_session(&self, tx: &mut Tx<'_>, sid: u64, now: Timestamp) -> Result<Vec<Ino>> {
        let mut files = Vec::new();
        let prefix = tx.k.sustained_of(sid);
        for (k, _) in tx.scan_all(&prefix).await? {
            let ino = k.get(prefix.len()..).and_then(le64).unwrap_or(0);
            tx.del(k).await?;
            if let Some(a) = tx.attr(ino).await? {
                if a.nlink == 0 {
                    let mut none = Vec::new();
                    self.free_inode(tx, &a, now, true, &mut none).await?;
                    files.push(ino);
                }
            }
        }
        for (k, v) in tx.scan_all(&tx.k.kind(b"F")).await? {
            let ls = decode_flocks(&v)?;
            let keep: Vec<Flock> = ls.iter().copied().filter(|l| l.sid != sid).collect();
            if keep.len() != ls.len() {
                if keep.is_empty() {
                    tx.del(k).await?;
                } else {
                    tx.put(k, encode_flocks(&keep)).await?;
                }
            }
        }
        for (k, v) in tx.scan_all(&tx.k.kind(b"P")).await? {
            let ls = decode_plocks(&v)?;
            let keep: Vec<Plock> = ls.iter().filter(|l| l.sid != sid).cloned().collect();
            if keep.len() != ls.len() {
                if keep.is_empty() {
                    tx.del(k).await?;
                } else {
                    tx.put(k, encode_plocks(&keep)).await?;
                }
            }
        }
        tx.del(tx.k.session(sid)).await?;
        tx.del(tx.k.session_info(sid)).await?;
        Ok(files)
    }

    async fn heartbeat(&self) -> Result<()> {
        let sid = self.sid.load(Ordering::Relaxed);
        if sid == 0 {
            return Ok(());
        }
        let expire = Timestamp::now().sec + self.session_ttl_secs();
        kv_txn!(self, "session heartbeat", |tx| {
            tx.put(tx.k.session(sid), encode_i64(expire)).await?;
        })
    }

    /// Purge expired trash, files of dead sessions and pending deletions.
    async fn cleanup(self: &Arc<Self>) -> Result<u64> {
        let mut done = 0u64;
        let now = Timestamp::now();
        let se = self.keys.kind(b"SE");
        let dead: Vec<u64> = kv_read!(self, "cleanup sessions", |tx| {
            let mut dead = Vec::new();
            for (k, v) in tx.scan_all(&se).await? {
                if decode_i64(Some(&v))? < now.sec {
                    if let Some(sid) = k.get(se.len()..).and_then(be64) {
                        dead.push(sid);
                    }
                }
            }
            dead
        })?;
        for sid in dead {
            let inodes = kv_txn!(self, "cleanup session", |tx| {
                self.remove_session(tx, sid, now).await?
            })?;
            for ino in inodes {
                self.free_file_data(ino).await?;
                done += 1;
            }
        }
        let d = self.keys.kind(b"D");
        let pending: Vec<Ino> = kv_read!(self, "cleanup deletions", |tx| {
            let mut out = Vec::new();
            for (k, v) in tx.scan_all(&d).await? {
                if decode_i64(Some(&v))? < now.sec - 60 {
                    if let Some(ino) = k.get(d.len()..d.len() + 8).and_then(le64) {
                        out.push(ino);
                    }
                }
            }
            out
        })?;
        for ino in pending {
            self.free_file_data(ino).await?;
            done += 1;
        }
        let days = self.trash_days();
        let hours: Vec<(Vec<u8>, Ino)> = kv_read!(self, "cleanup trash", |tx| {
            let prefix = tx.k.entries(TRASH_INODE);
            let mut out = Vec::new();
            for (k, v) in tx.scan_all(&prefix).await? {
                let (_, ino) = decode_entry(&v)?;
                out.push((k[prefix.len()..].to_vec(), ino));
            }
            out
        })?;
        for (name, dir) in hours {
            let Ok(hour) = chrono::NaiveDateTime::parse_from_str(
                &format!("{}:00:00", String::from_utf8_lossy(&name)),
                "%Y-%m-%d-%H:%M:%S",
            ) else {
                continue;
            };
            if now.sec - hour.and_utc().timestamp() < i64::from(days) * 86400 + 3600 {
                continue;
            }
            done += self.purge_trash_dir(dir, &name).await?;
        }
        self.purge_delayed(now.sec - i64::from(days) * 86400)
            .await?;
        if let Err(e) = self.store.maintain().await {
            tracing::warn!(error = %e, "store upkeep (GC safe point) failed; will retry");
        }
        Ok(done)
    }

    async fn purge_trash_dir(self: &Arc<Self>, dir: Ino, name: &[u8]) -> Result<u64> {
        let ctx = Ctx::root();
        let mut n = 0;
        loop {
            let batch = self.readdir(&ctx, dir, 0, 1000, false).await?;
            if batch.is_empty() {
                break;
            }
            for e in batch {
                if e.typ == FileType::Dir {
                    n += Box::pin(self.purge_trash_dir(e.ino, &e.name)).await?;
                    continue;
                }
                match self.unlink(&ctx, dir, &e.name).await {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let parent = kv_read!(self, "purge trash", |tx| {
            tx.must_attr(dir).await?.parent
        })?;
        let _ = self.rmdir(&ctx, parent, name).await;
        Ok(n)
    }

    /// Release delayed-slice records set aside before `before`.
    async fn purge_delayed(&self, before: i64) -> Result<u64> {
        let l = self.keys.kind(b"L");
        let keys: Vec<Vec<u8>> = kv_read!(self, "list delayed slices", |tx| {
            let mut out = Vec::new();
            for (k, _) in tx.scan_all(&l).await? {
                let ts = k.get(l.len()..l.len() + 8).and_then(be64).unwrap_or(0) as i64;
                if ts < before {
                    out.push(k);
                }
            }
            out
        })?;
        let mut purged = 0u64;
        for key in keys {
            let freed = kv_txn!(self, "purge delayed slices", |tx| {
                let mut freed = Vec::new();
                if let Some(v) = tx.get(&key).await? {
                    let records: Vec<Slice> = decode_delayed(&v)?
                        .into_iter()
                        .map(|(id, size)| Slice {
                            id,
                            size,
                            ..Slice::default()
                        })
                        .collect();
                    tx.unref_slices(&records, &mut freed).await?;
                    tx.del(key.clone()).await?;
                }
                freed
            })?;
            purged += 1;
            self.delete_objects(freed).await;
        }
        Ok(purged)
    }
}

// The POSIX operations.
impl Inner {
    /// Whether an entry change in directory `p` at `now` may leave its times as they are:
    /// they changed less than `--skip-dir-mtime` ago.
    fn keep_dir_times(&self, p: &Attr, now: Timestamp) -> bool {
        let window = i128::from(self.skip_dir_mtime_ns.load(Ordering::Relaxed));
        // in i128: a directory's mtime may be anything utimes set, far past or future
        let age = (i128::from(now.sec) - i128::from(p.mtime.sec)) * 1_000_000_000
            + i128::from(now.nsec)
            - i128::from(p.mtime.nsec);
        (0..window).contains(&age)
    }

    async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        let special = name == b"."
            || name == b".."
            || (parent == ROOT_INODE && name == TRASH_NAME.as_bytes());
        kv_read!(self, "lookup", latest, |tx| {
            if !ctx.check_permission && !special {
                if let Some((_, ino)) = tx.entry(parent, name).await? {
                    return tx.attr(ino).await?.ok_or_else(|| {
                        Error::not_found(format!("entry names missing inode {ino}"))
                    });
                }
                tx.must_dir(parent).await?;
                return Err(Error::not_found("no such entry"));
            }
            let p = tx.must_dir(parent).await?;
            perm::access(ctx, &p, MAY_EXEC)?;
            if name == b"." {
                return Ok(p);
            }
            if name == b".." {
                let up = if parent == ROOT_INODE {
                    ROOT_INODE
                } else {
                    p.parent
                };
                return tx.must_attr(up).await;
            }
            if parent == ROOT_INODE && name == TRASH_NAME.as_bytes() {
                if let Some(a) = tx.attr(TRASH_INODE).await? {
                    return Ok(a);
                }
            }
            let Some((_, ino)) = tx.entry(parent, name).await? else {
                return Err(Error::not_found("no such entry"));
            };
            tx.attr(ino)
                .await?
                .ok_or_else(|| Error::not_found(format!("entry names missing inode {ino}")))?
        })
    }

    #[allow(clippy::too_many_arguments)]
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
        self.writable()?;
        check_name(name)?;
        if name == b"." || name == b".." {
            return Err(Error::exists("entry exists"));
        }
        if typ == FileType::Symlink && (target.is_empty() || target.len() > MAX_SYMLINK_LEN) {
            return Err(if target.is_empty() {
                Error::not_found("empty symlink target")
            } else {
                Error::new(ErrorKind::NameTooLong, "symlink target too long")
            });
        }
        let fmt = self.format()?;
        let ino = self.next_inode().await?;
        let now = Timestamp::now();
        let plain = Attr {
            ino,
            typ,
            mode: if typ == FileType::Symlink {
                0o777
            } else {
                mode & 0o7777 & !umask
            },
            uid: ctx.uid,
            gid: ctx.gid,
            atime: now,
            mtime: now,
            ctime: now,
            nlink: if typ == FileType::Dir { 2 } else { 1 },
            length: match typ {
                FileType::Dir => DIR_LENGTH,
                FileType::Symlink => target.len() as u64,
                _ => 0,
            },
            rdev,
            parent,
            flags: 0,
        };
        kv_txn!(self, "mknod", lock = parent, |tx| {
            let mut p = tx.must_dir(parent).await?;
            if p.nlink == 0 {
                return Err(Error::not_found("parent directory was removed"));
            }
            if parent == TRASH_INODE || p.parent == TRASH_INODE {
                return Err(Error::not_permitted("cannot create entries in the trash"));
            }
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            if parent == ROOT_INODE && name == TRASH_NAME.as_bytes() {
                return Err(Error::exists("the trash directory exists"));
            }
            if fmt.inodes > 0 {
                let used = tx.counter("totalInodes").await? + self.pending_stats().1 + tx.inodes;
                if used as u64 >= fmt.inodes {
                    return Err(Error::new(
                        ErrorKind::NoSpace,
                        "inode limit of the volume reached",
                    ));
                }
            }
            if tx.entry(parent, name).await?.is_some() {
                return Err(Error::exists("entry exists"));
            }
            let (mode, gid) = new_mode_and_gid(ctx, &p, typ, plain.mode);
            let attr = Attr {
                mode,
                gid,
                ..plain.clone()
            };
            tx.set_attr(&attr).await?;
            tx.put_entry(parent, name, typ, ino).await?;
            if typ == FileType::Symlink {
                tx.put(tx.k.symlink(ino), target.to_vec()).await?;
            }
            // a new subdirectory changes the link count: always written
            let keep = typ != FileType::Dir && self.keep_dir_times(&p, now);
            if typ == FileType::Dir {
                p.nlink += 1;
            }
            tx.entry_added(&mut p, name, now, keep).await?;
            tx.inodes += 1;
            attr
        })
    }

    async fn unlink(self: &Arc<Self>, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        let now = Timestamp::now();
        let removed = kv_txn!(self, "unlink", lock = parent, |tx| {
            let mut p = tx.must_dir(parent).await?;
            let entry = tx.entry(parent, name).await?;
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            let Some((_, ino)) = entry else {
                return Err(Error::not_found("no such entry"));
            };
            let Some(attr) = tx.attr(ino).await? else {
                return Err(Error::not_found(format!("entry names missing inode {ino}")));
            };
            if attr.typ == FileType::Dir {
                return Err(Error::is_dir("is a directory"));
            }
            perm::sticky(ctx, &p, &attr)?;
            if !self.keep_dir_times(&p, now) {
                p.mtime = now;
                p.ctime = now;
                tx.set_attr(&p).await?;
            }
            self.drop_link(tx, attr, parent, name, now).await?
        })?;
        self.after_remove(removed).await;
        Ok(())
    }

    async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        if name == b"." {
            return Err(Error::invalid("cannot remove '.'"));
        }
        if name == b".." {
            return Err(Error::not_empty("cannot remove '..'"));
        }
        let now = Timestamp::now();
        kv_txn!(self, "rmdir", lock = parent, |tx| {
            let mut p = tx.must_dir(parent).await?;
            let entry = tx.entry(parent, name).await?;
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            let Some((_, ino)) = entry else {
                return Err(Error::not_found("no such entry"));
            };
            let Some(attr) = tx.attr(ino).await? else {
                return Err(Error::not_found(format!("entry names missing inode {ino}")));
            };
            if attr.typ != FileType::Dir {
                return Err(Error::not_dir("not a directory"));
            }
            perm::sticky(ctx, &p, &attr)?;
            if !tx.dir_is_empty(ino).await? {
                return Err(Error::not_empty("directory not empty"));
            }
            p.nlink = p.nlink.saturating_sub(1);
            p.mtime = now;
            p.ctime = now;
            tx.set_attr(&p).await?;
            tx.del(tx.k.entry(parent, name)).await?;
            let mut none = Vec::new();
            self.free_inode(tx, &attr, now, false, &mut none).await?;
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn rename(
        self: &Arc<Self>,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        check_name(new_name)?;
        if flags.exchange && flags.noreplace {
            return Err(Error::invalid("RENAME_EXCHANGE with RENAME_NOREPLACE"));
        }
        for n in [name, new_name] {
            if n == b"." || n == b".." {
                return Err(Error::new(ErrorKind::Invalid, "cannot rename '.' or '..'"));
            }
        }
        let now = Timestamp::now();
        // one local lock (the lower-numbered parent) keeps two renames of this client from
        // deadlocking on two stripes
        let removed = kv_txn!(self, "rename", lock = parent.min(new_parent), |tx| {
            let mut sp = tx.must_dir(parent).await?;
            let src = tx.entry(parent, name).await?;
            let mut dp = if new_parent == parent {
                sp.clone()
            } else {
                tx.must_dir(new_parent).await?
            };
            perm::access(ctx, &sp, MAY_WRITE | MAY_EXEC)?;
            perm::access(ctx, &dp, MAY_WRITE | MAY_EXEC)?;
            if dp.parent == TRASH_INODE || new_parent == TRASH_INODE {
                return Err(Error::not_permitted("cannot move entries into the trash"));
            }
            let Some((styp, sino)) = src else {
                return Err(Error::not_found("no such entry"));
            };
            let Some(mut sattr) = tx.attr(sino).await? else {
                return Err(Error::not_found(format!(
                    "entry names missing inode {sino}"
                )));
            };
            perm::sticky(ctx, &sp, &sattr)?;
            let dst = tx.entry(new_parent, new_name).await?;
            if styp == FileType::Dir
                && new_parent != parent
                && tx.is_below(sino, new_parent).await?
            {
                return Err(Error::invalid("cannot move a directory into itself"));
            }
            let mut removed = Removed::Kept;
            if flags.exchange {
                let Some((dtyp, dino)) = dst else {
                    return Err(Error::not_found("exchange target does not exist"));
                };
                if dino == sino {
                    return Ok(Removed::Kept);
                }
                let mut dattr = tx.must_attr(dino).await?;
                perm::sticky(ctx, &dp, &dattr)?;
                if dtyp == FileType::Dir
                    && new_parent != parent
                    && tx.is_below(dino, parent).await?
                {
                    return Err(Error::invalid("cannot move a directory into itself"));
                }
                tx.put_entry(parent, name, dtyp, dino).await?;
                tx.put_entry(new_parent, new_name, styp, sino).await?;
                if new_parent != parent {
                    if styp == FileType::Dir && dtyp != FileType::Dir {
                        sp.nlink -= 1;
                        dp.nlink += 1;
                    } else if styp != FileType::Dir && dtyp == FileType::Dir {
                        sp.nlink += 1;
                        dp.nlink -= 1;
                    }
                    if sattr.parent == 0 {
                        tx.sparse_add(tx.k.parent(sino, parent), -1).await?;
                        tx.sparse_add(tx.k.parent(sino, new_parent), 1).await?;
                    }
                    if dattr.parent == 0 {
                        tx.sparse_add(tx.k.parent(dino, new_parent), -1).await?;
                        tx.sparse_add(tx.k.parent(dino, parent), 1).await?;
                    }
                }
                if sattr.parent != 0 {
                    sattr.parent = new_parent;
                }
                if dattr.parent != 0 {
                    dattr.parent = parent;
                }
                dattr.ctime = now;
                tx.set_attr(&dattr).await?;
            } else {
                if let Some((dtyp, dino)) = dst {
                    if flags.noreplace {
                        return Err(Error::exists("target exists"));
                    }
                    if dino == sino {
                        return Ok(Removed::Kept);
                    }
                    let dattr = tx.must_attr(dino).await?;
                    perm::sticky(ctx, &dp, &dattr)?;
                    match (styp == FileType::Dir, dtyp == FileType::Dir) {
                        (true, false) => return Err(Error::not_dir("target is not a directory")),
                        (false, true) => return Err(Error::is_dir("target is a directory")),
                        _ => {}
                    }
                    if dtyp == FileType::Dir {
                        if !tx.dir_is_empty(dino).await? {
                            return Err(Error::not_empty("target directory not empty"));
                        }
                        tx.del(tx.k.entry(new_parent, new_name)).await?;
                        let mut none = Vec::new();
                        self.free_inode(tx, &dattr, now, false, &mut none).await?;
                        dp.nlink -= 1;
                    } else {
                        removed = self.drop_link(tx, dattr, new_parent, new_name, now).await?;
                    }
                }
                tx.del(tx.k.entry(parent, name)).await?;
                tx.put_entry(new_parent, new_name, styp, sino).await?;
                if new_parent != parent {
                    if styp == FileType::Dir {
                        sp.nlink -= 1;
                        dp.nlink += 1;
                    }
                    if sattr.parent == 0 {
                        tx.sparse_add(tx.k.parent(sino, parent), -1).await?;
                        tx.sparse_add(tx.k.parent(sino, new_parent), 1).await?;
                    }
                }
                if sattr.parent != 0 {
                    sattr.parent = new_parent;
                }
            }
            sattr.ctime = now;
            tx.set_attr(&sattr).await?;
            sp.mtime = now;
            sp.ctime = now;
            dp.mtime = now;
            dp.ctime = now;
            if new_parent != parent {
                tx.set_attr(&sp).await?;
            }
            tx.set_attr(&dp).await?;
            removed
        })?;
        self.after_remove(removed).await;
        Ok(())
    }

    async fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        self.writable()?;
        check_name(new_name)?;
        let now = Timestamp::now();
        kv_txn!(self, "link", lock = new_parent, |tx| {
            let mut p = tx.must_dir(new_parent).await?;
            if p.nlink == 0 {
                return Err(Error::not_found("parent directory was removed"));
            }
            if new_parent >= TRASH_INODE {
                return Err(Error::not_permitted("cannot link into the trash"));
            }
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            let mut a = tx.must_attr(ino).await?;
            if a.typ == FileType::Dir {
                return Err(Error::not_permitted(
                    "hard links to directories are not allowed",
                ));
            }
            if a.nlink == 0 {
                return Err(Error::not_found("the file was removed"));
            }
            if tx.entry(new_parent, new_name).await?.is_some() {
                return Err(Error::exists("entry exists"));
            }
            if a.nlink == u32::MAX {
                return Err(Error::new(ErrorKind::TooManyLinks, "too many links"));
            }
            tx.put_entry(new_parent, new_name, a.typ, ino).await?;
            // JuiceFS's layout: a hard-linked inode has parent 0 and counts its links per
            // directory under `A<ino>P<parent>`
            if a.parent != 0 {
                tx.sparse_add(tx.k.parent(ino, a.parent), 1).await?;
            }
            tx.sparse_add(tx.k.parent(ino, new_parent), 1).await?;
            a.nlink += 1;
            a.parent = 0;
            a.ctime = now;
            tx.set_attr(&a).await?;
            let keep = self.keep_dir_times(&p, now);
            tx.entry_added(&mut p, new_name, now, keep).await?;
            a
        })
    }

    async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.writable()?;
        let now = Timestamp::now();
        kv_txn!(self, "setattr", |tx| {
            let mut a = tx.must_attr(ino).await?;
            apply_setattr(ctx, &mut a, set, now)?;
            tx.set_attr(&a).await?;
            a
        })
    }

    /// Append zero records over `[start, end)` and drop whole chunks at or past `drop_from`.
    async fn zero_range(
        &self,
        tx: &mut Tx<'_>,
        ino: Ino,
        start: u64,
        end: u64,
        drop_from: Option<u64>,
        freed: &mut Vec<(u64, u32)>,
    ) -> Result<()> {
        let first_dropped = drop_from.map(|l| l.div_ceil(CHUNK_SIZE));
        // zero records only where the chunk has records: a chunk without any reads as zeros
        // already, and a range of 2^40 sparse bytes must not cost a key per chunk
        let zend = zero_end(end, drop_from);
        if let Some((lo, hi)) = chunk_span(start, zend) {
            let prefix = tx.k.chunks(ino);
            let mut from = tx.k.chunk(ino, lo);
            let until = match hi.checked_add(1) {
                Some(h) => tx.k.chunk(ino, h),
                None => prefix_end(&prefix),
            };
            let mut present = Vec::new();
            loop {
                let batch = tx.t.scan(&from, &until, SCAN_BATCH).await?;
                let n = batch.len();
                for (k, _) in &batch {
                    let tail = k.get(prefix.len()..).unwrap_or_default();
                    let indx = <[u8; 4]>::try_from(tail)
                        .map(u32::from_be_bytes)
                        .map_err(|_| Error::corrupt(format!("chunk key of inode {ino}")))?;
                    present.push(indx);
                }
                match batch.last() {
                    Some((k, _)) if n == SCAN_BATCH => {
                        from = k.clone();
                        from.push(0);
                    }
                    _ => break,
                }
            }
            for indx in present {
                if let Some(rec) = zero_record(indx, start, zend) {
                    tx.append_slices(ino, indx, &[rec]).await?;
                }
            }
        }
        if let Some(f) = first_dropped {
            let from = tx.k.chunk(ino, u32::try_from(f).unwrap_or(u32::MAX));
            let end = prefix_end(&tx.k.chunks(ino));
            loop {
                let batch = tx.t.scan(&from, &end, SCAN_BATCH).await?;
                let n = batch.len();
                for (k, v) in batch {
                    tx.unref_slices(&slice::decode_all(&v)?, freed).await?;
                    tx.del(k).await?;
                }
                // deleted keys are gone from the next scan of this transaction
                if n < SCAN_BATCH {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn check_capacity(&self, tx: &mut Tx<'_>, grow: i64) -> Result<()> {
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

    async fn truncate(&self, ctx: &Ctx, ino: Ino, length: u64) -> Result<Attr> {
        self.writable()?;
        if length > MAX_FILE_LEN {
            return Err(Error::new(ErrorKind::FileTooBig, "length too large"));
        }
        let now = Timestamp::now();
        let (attr, freed) = kv_txn!(self, "truncate", |tx| {
            let mut a = tx.must_attr(ino).await?;
            match a.typ {
                FileType::File => {}
                FileType::Dir => return Err(Error::is_dir("is a directory")),
                _ => return Err(Error::invalid("not a regular file")),
            }
            perm::access(ctx, &a, MAY_WRITE)?;
            let mut freed = Vec::new();
            let delta = align4k(length) - align4k(a.length);
            self.check_capacity(tx, delta).await?;
            if length < a.length {
                self.zero_range(tx, ino, length, a.length, Some(length), &mut freed)
                    .await?;
            }
            tx.space += delta;
            a.length = length;
            a.mtime = now;
            a.ctime = now;
            tx.set_attr(&a).await?;
            (a, freed)
        })?;
        self.delete_objects(freed).await;
        Ok(attr)
    }

    async fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        mode: FallocMode,
        off: u64,
        len: u64,
    ) -> Result<Attr> {
        self.writable()?;
        if len == 0 {
            return Err(Error::invalid("fallocate of zero length"));
        }
        let end = off
            .checked_add(len)
            .filter(|e| *e <= MAX_FILE_LEN)
            .ok_or_else(|| Error::new(ErrorKind::FileTooBig, "range past the largest file size"))?;
        if mode.punch_hole && !mode.keep_size {
            return Err(Error::unsupported("PUNCH_HOLE needs KEEP_SIZE"));
        }
        let now = Timestamp::now();
        kv_txn!(self, "fallocate", |tx| {
            let mut a = tx.must_attr(ino).await?;
            match a.typ {
                FileType::File => {}
                FileType::Dir => return Err(Error::is_dir("is a directory")),
                _ => return Err(Error::new(ErrorKind::Invalid, "not a regular file")),
            }
            perm::access(ctx, &a, MAY_WRITE)?;
            if mode.punch_hole || mode.zero_range {
                let zend = if mode.keep_size {
                    end.min(a.length)
                } else {
                    end
                };
                if off < zend {
                    let mut freed = Vec::new();
                    self.zero_range(tx, ino, off, zend, None, &mut freed)
                        .await?;
                }
                a.mtime = now;
            }
            if !mode.keep_size && end > a.length {
                let delta = align4k(end) - align4k(a.length);
                self.check_capacity(tx, delta).await?;
                tx.space += delta;
                a.length = end;
                a.mtime = now;
            }
            a.ctime = now;
            tx.set_attr(&a).await?;
            a
        })
    }

    async fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        after: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        let limit = limit.clamp(1, 10_000);
        let from = if after == 0 {
            None
        } else {
            self.cursors
                .lock()
                .map_err(|_| lock_poisoned())?
                .get(ino, after)
        };
        let rows = kv_read!(self, "readdir", |tx| {
            let d = tx.must_dir(ino).await?;
            perm::access(ctx, &d, crate::perm::MAY_READ)?;
            let prefix = tx.k.entries(ino);
            let start = match &from {
                Some(name) => {
                    let mut k = tx.k.entry(ino, name);
                    k.push(0);
                    k
                }
                None => prefix.clone(),
            };
            let pairs = tx.t.scan(&start, &prefix_end(&prefix), limit).await?;
            let mut rows = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                let (typ, child) = decode_entry(&v)?;
                rows.push((k[prefix.len()..].to_vec(), typ, child));
            }
            let attrs = if plus {
                let keys: Vec<Vec<u8>> = rows.iter().map(|r| tx.k.inode(r.2)).collect();
                tx.t.batch_get(&keys).await?
            } else {
                Vec::new()
            };
            (rows, attrs)
        })?;
        let (rows, attrs) = rows;
        let mut cursors = self.cursors.lock().map_err(|_| lock_poisoned())?;
        let mut out = Vec::with_capacity(rows.len());
        for (i, (name, typ, child)) in rows.into_iter().enumerate() {
            let attr = match attrs.get(i) {
                Some(Some(b)) => Some(decode_attr(child, b)?),
                _ => None,
            };
            let cursor = cursors.put(ino, &name);
            out.push(DirEntry {
                name,
                ino: child,
                typ,
                attr,
                cursor,
            });
        }
        Ok(out)
    }

    async fn entries_from(
        &self,
        parent: Ino,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Attr)>> {
        let limit = limit.clamp(1, 10_000);
        kv_read!(self, "lookahead", |tx| {
            let prefix = tx.k.entries(parent);
            let start = tx.k.entry(parent, from);
            let pairs = tx.t.scan(&start, &prefix_end(&prefix), limit).await?;
            let mut names = Vec::with_capacity(pairs.len());
            let mut keys = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                let (_, child) = decode_entry(&v)?;
                names.push((k[prefix.len()..].to_vec(), child));
                keys.push(tx.k.inode(child));
            }
            let attrs = tx.t.batch_get(&keys).await?;
            let mut out = Vec::with_capacity(names.len());
            for ((name, child), a) in names.into_iter().zip(attrs) {
                if let Some(b) = a {
                    out.push((name, decode_attr(child, &b)?));
                }
            }
            out
        })
    }

    fn opened(&self, ino: Ino) {
        if let Ok(mut m) = self.open_files.lock() {
            *m.entry(ino).or_insert(0) += 1;
        }
    }

    async fn close(&self, ino: Ino) -> Result<()> {
        let last = match self.open_files.lock() {
            Ok(mut m) => match m.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    m.remove(&ino);
                    true
                }
                None => false,
            },
            Err(_) => return Err(lock_poisoned()),
        };
        let was_sustained = last
            && self
                .sustained
                .lock()
                .map(|mut set| set.remove(&ino))
                .unwrap_or(true);
        if !was_sustained || self.read_only.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = Timestamp::now();
        let sid = self.sid.load(Ordering::Relaxed);
        let freed = kv_txn!(self, "close", |tx| {
            let key = tx.k.sustained(sid, ino);
            if tx.get(&key).await?.is_none() {
                false
            } else {
                tx.del(key).await?;
                match tx.attr(ino).await? {
                    Some(a) if a.nlink == 0 => {
                        let mut none = Vec::new();
                        self.free_inode(tx, &a, now, true, &mut none).await?;
                        true
                    }
                    _ => false,
                }
            }
        })?;
        if freed {
            self.free_file_data(ino).await?;
        }
        Ok(())
    }

    async fn write_slice(
        &self,
        ino: Ino,
        indx: u32,
        s: Slice,
        mtime: Timestamp,
        sums: &[u8],
    ) -> Result<()> {
        self.writable()?;
        let end = u64::from(indx) * CHUNK_SIZE + s.end();
        if s.end() > CHUNK_SIZE || end > MAX_FILE_LEN {
            return Err(Error::new(
                ErrorKind::FileTooBig,
                "write past the largest file size",
            ));
        }
        kv_txn!(self, "write", |tx| {
            let mut a = tx.must_attr(ino).await?;
            if a.typ != FileType::File {
                return Err(Error::invalid("not a regular file"));
            }
            let delta = if end > a.length {
                align4k(end) - align4k(a.length)
            } else {
                0
            };
            self.check_capacity(tx, delta).await?;
            tx.append_slices(ino, indx, &[s]).await?;
            if !sums.is_empty() {
                tx.put(tx.k.sums(s.id), sums.to_vec()).await?;
            }
            if end > a.length {
                a.length = end;
                tx.space += delta;
            }
            a.mtime = mtime;
            a.ctime = mtime;
            tx.set_attr(&a).await?;
        })
    }

    async fn copy_range(
        &self,
        src: Ino,
        off_in: u64,
        dst: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<(u64, Attr)> {
        self.writable()?;
        let now = Timestamp::now();
        kv_txn!(self, "copy range", |tx| {
            let s = tx.must_attr(src).await?;
            let mut d = tx.must_attr(dst).await?;
            let n = copy_extent(&s, off_in, &d, off_out, len)?;
            if n > 0 {
                let (lo, hi) = chunk_span(off_in, off_in + n)
                    .ok_or_else(|| Error::invalid("copy range past the largest file"))?;
                let mut chunks = BTreeMap::new();
                for indx in lo..=hi {
                    let records = tx.read_chunk(src, indx).await?;
                    if !records.is_empty() {
                        chunks.insert(indx, records);
                    }
                }
                let plan = slice::copy_plan(&chunks, off_in, n, off_out);
                check_copy_plan(&plan)?;
                for (indx, records) in &plan {
                    tx.append_slices(dst, *indx, records).await?;
                }
                for ((id, size), more) in shared_refs(&plan) {
                    // the stored count is the references less one
                    let key = tx.k.slice_ref(id, size);
                    let v = decode_counter(tx.get(&key).await?.as_deref())? + more;
                    tx.put(key, encode_counter(v)).await?;
                }
                let end = off_out + n;
                if end > d.length {
                    let delta = align4k(end) - align4k(d.length);
                    self.check_capacity(tx, delta).await?;
                    tx.space += delta;
                    d.length = end;
                }
                d.mtime = now;
                d.ctime = now;
                tx.set_attr(&d).await?;
            }
            (n, d)
        })
    }

    async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()> {
        self.writable()?;
        let name = xattr_name(name)?.as_bytes();
        if name.is_empty() {
            return Err(Error::invalid("empty attribute name"));
        }
        if value.len() > 65536 {
            return Err(Error::new(
                ErrorKind::Range,
                "attribute value larger than 64 KiB",
            ));
        }
        let now = Timestamp::now();
        kv_txn!(self, "setxattr", |tx| {
            let mut a = tx.must_attr(ino).await?;
            perm::access(ctx, &a, MAY_WRITE)?;
            let key = tx.k.xattr(ino, name);
            let exists = tx.get(&key).await?.is_some();
            if flags.create && exists {
                return Err(Error::exists("attribute exists"));
            }
            if flags.replace && !exists {
                return Err(Error::new(ErrorKind::NoAttr, "no such attribute"));
            }
            tx.put(key, value.to_vec()).await?;
            a.ctime = now;
            tx.set_attr(&a).await?;
        })
    }

    async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        let name = xattr_name(name)?.as_bytes();
        let now = Timestamp::now();
        kv_txn!(self, "removexattr", |tx| {
            let mut a = tx.must_attr(ino).await?;
            perm::access(ctx, &a, MAY_WRITE)?;
            let key = tx.k.xattr(ino, name);
            if tx.get(&key).await?.is_none() {
                return Err(Error::new(ErrorKind::NoAttr, "no such attribute"));
            }
            tx.del(key).await?;
            a.ctime = now;
            tx.set_attr(&a).await?;
        })
    }

    async fn statfs(&self) -> Result<StatFs> {
        let fmt = self.format()?;
        let (space, inodes) = kv_read!(self, "statfs", |tx| {
            (
                tx.counter("usedSpace").await?,
                tx.counter("totalInodes").await?,
            )
        })?;
        let pending = self.pending_stats();
        let used = (space + pending.0).max(0) as u64;
        let inodes = (inodes + pending.1).max(0) as u64;
        let total_space = if fmt.capacity > 0 {
            fmt.capacity
        } else {
            (1u64 << 50).max(used * 2)
        };
        let total_inodes = if fmt.inodes > 0 {
            fmt.inodes
        } else {
            (10u64 << 20).max(inodes * 2)
        };
        Ok(StatFs {
            total_space,
            avail_space: total_space.saturating_sub(used),
            used_inodes: inodes,
            avail_inodes: total_inodes.saturating_sub(inodes),
        })
    }
}

// Volume, sessions and maintenance.
impl Inner {
    async fn init(&self, format: &Format, force: bool) -> Result<()> {
        let now = Timestamp::now();
        let json = format.to_json()?;
        kv_txn!(self, "format", |tx| {
            let key = tx.k.setting();
            if let Some(old) = tx.get(&key).await? {
                let old = Format::from_json(&String::from_utf8_lossy(&old))?;
                if !force {
                    return Err(Error::exists(format!(
                        "{} already holds volume {:?} (UUID {}); pass --force to change its settings",
                        self.shown, old.name, old.uuid
                    )));
                }
                let mut merged = format.clone();
                merged.uuid = old.uuid.clone();
                merged.name = old.name.clone();
                tx.put(key, merged.to_json()?.into_bytes()).await?;
            } else {
                tx.put(key, json.clone().into_bytes()).await?;
                tx.counter_add("nextInode", 2).await?;
                tx.counter_add("nextChunk", 1).await?;
                tx.set_attr(&new_dir_attr(ROOT_INODE, 0o777, ROOT_INODE, now))
                    .await?;
                if format.trash_days > 0 {
                    tx.set_attr(&new_dir_attr(TRASH_INODE, 0o555, ROOT_INODE, now))
                        .await?;
                }
            }
        })
    }

    async fn load(&self) -> Result<Format> {
        let body = kv_read!(self, "load", |tx| { tx.get(&tx.k.setting()).await? })?;
        let body = body.ok_or_else(|| {
            Error::config(format!(
                "{} is not a formatted volume: run `tidefs format` first",
                self.shown
            ))
        })?;
        let fmt = Format::from_json(&String::from_utf8_lossy(&body))?;
        fmt.check_supported()?;
        *self.format.write().map_err(|_| lock_poisoned())? = Some(fmt.clone());
        Ok(fmt)
    }

    async fn new_session(self: &Arc<Self>, info: SessionInfo) -> Result<u64> {
        self.writable()?;
        let json =
            serde_json::to_vec(&info).map_err(|e| Error::invalid("session info").with_source(e))?;
        let expire = Timestamp::now().sec + self.session_ttl_secs();
        let sid = kv_txn!(self, "new session", |tx| {
            let sid = tx.counter_add("nextSession", 1).await? as u64;
            tx.put(tx.k.session(sid), encode_i64(expire)).await?;
            tx.put(tx.k.session_info(sid), json.clone()).await?;
            sid
        })?;
        self.sid.store(sid, Ordering::Relaxed);
        let hb = Arc::clone(self);
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(hb.heartbeat_period()).await;
                if let Err(e) = hb.heartbeat().await {
                    tracing::warn!(error = %e, "session heartbeat failed");
                }
            }
        });
        let cl = Arc::clone(self);
        let clean = tokio::spawn(async move {
            loop {
                match cl.cleanup().await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "background cleanup"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "background cleanup failed"),
                }
                tokio::time::sleep(cl.heartbeat_period() * 5).await;
            }
        });
        let fl = Arc::clone(self);
        let flush = tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATS_FLUSH).await;
                if let Err(e) = fl.flush_stats().await {
                    tracing::warn!(error = %e, "flushing the volume counters failed; will retry");
                }
            }
        });
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.push(beat);
            jobs.push(clean);
            jobs.push(flush);
        }
        Ok(sid)
    }

    async fn close_session(self: &Arc<Self>) -> Result<()> {
        self.drain_deletions().await;
        if let Ok(mut jobs) = self.jobs.lock() {
            for j in jobs.drain(..) {
                j.abort();
            }
        }
        self.flush_stats().await?;
        let sid = self.sid.swap(0, Ordering::Relaxed);
        if sid == 0 {
            return Ok(());
        }
        let now = Timestamp::now();
        let files = kv_txn!(self, "close session", |tx| {
            self.remove_session(tx, sid, now).await?
        })?;
        for ino in files {
            self.free_file_data(ino).await?;
        }
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let se = self.keys.kind(b"SE");
        kv_read!(self, "list sessions", |tx| {
            let mut out = Vec::new();
            for (k, v) in tx.scan_all(&se).await? {
                let Some(sid) = k.get(se.len()..).and_then(be64) else {
                    continue;
                };
                let expire = decode_i64(Some(&v))?;
                let info = tx.get(&tx.k.session_info(sid)).await?;
                let mut s: SessionInfo = info
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(SessionInfo {
                        sid: 0,
                        expire: 0,
                        version: String::new(),
                        host_name: String::new(),
                        mount_point: String::new(),
                        mount_time: String::new(),
                        process_id: 0,
                    });
                s.sid = sid;
                s.expire = expire;
                out.push(s);
            }
            out
        })
    }

    /// Every chunk of every file, scanning the inode key range in batches.
    async fn list_chunks(&self) -> Result<Vec<ChunkSlices>> {
        let a = self.keys.kind(b"A");
        let plen = a.len();
        kv_read!(self, "list chunks", |tx| {
            let mut out = Vec::new();
            for (k, v) in tx.scan_all(&a).await? {
                // A <ino le64> C <indx be32>
                if k.len() == plen + 13 && k[plen + 8] == b'C' {
                    let ino = le64(&k[plen..plen + 8]).unwrap_or(0);
                    let mut ix = [0u8; 4];
                    ix.copy_from_slice(&k[plen + 9..]);
                    out.push(ChunkSlices {
                        ino,
                        indx: u32::from_be_bytes(ix),
                        slices: slice::decode_all(&v)?,
                    });
                }
            }
            out
        })
    }

    /// A page of chunks in key order of the inode range: the cursor is the key to go on from.
    async fn chunks_page(
        &self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<(Vec<ChunkSlices>, Option<Vec<u8>>)> {
        let a = self.keys.kind(b"A");
        let plen = a.len();
        let end = prefix_end(&a);
        let start = if cursor.is_empty() {
            a.clone()
        } else {
            cursor.to_vec()
        };
        let limit = limit.clamp(1, 100_000);
        kv_read!(self, "list chunks", |tx| {
            let mut out = Vec::new();
            let mut from = start.clone();
            let mut next = None;
            loop {
                let batch = tx.t.scan(&from, &end, SCAN_BATCH).await?;
                let n = batch.len();
                for (k, v) in batch {
                    from = k.clone();
                    from.push(0);
                    if k.len() == plen + 13 && k[plen + 8] == b'C' {
                        let mut ix = [0u8; 4];
                        ix.copy_from_slice(&k[plen + 9..]);
                        out.push(ChunkSlices {
                            ino: le64(&k[plen..plen + 8]).unwrap_or(0),
                            indx: u32::from_be_bytes(ix),
                            slices: slice::decode_all(&v)?,
                        });
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
                if out.len() >= limit {
                    next = Some(from.clone());
                    break;
                }
                if n < SCAN_BATCH {
                    break;
                }
            }
            (out, next)
        })
    }

    async fn compact_chunk(
        &self,
        ino: Ino,
        indx: u32,
        old: &[Slice],
        new: &[Slice],
        sums: &[Vec<u8>],
    ) -> Result<bool> {
        self.writable()?;
        let delay = self.trash_days() > 0;
        let old_buf = slice::encode_all(old);
        let (done, freed) = kv_txn!(self, "compact chunk", |tx| {
            let mut freed = Vec::new();
            let key = tx.k.chunk(ino, indx);
            let cur = tx.get(&key).await?.unwrap_or_default();
            if old.is_empty() || !cur.starts_with(&old_buf) {
                (false, freed)
            } else {
                let mut buf = slice::encode_all(new);
                buf.extend_from_slice(&cur[old_buf.len()..]);
                tx.put(key, buf).await?;
                for (i, n) in new.iter().enumerate().filter(|(_, n)| n.id != 0) {
                    if let Some(sum) = sums.get(i).filter(|s| !s.is_empty()) {
                        tx.put(tx.k.sums(n.id), sum.clone()).await?;
                    }
                }
                let data: Vec<(u64, u32)> = old
                    .iter()
                    .filter(|s| s.id != 0)
                    .map(|s| (s.id, s.size))
                    .collect();
                match (delay, new.iter().find(|n| n.id != 0)) {
                    (true, Some(first)) if !data.is_empty() => {
                        tx.put(
                            tx.k.delslices(Timestamp::now().sec, first.id),
                            encode_delayed(&data),
                        )
                        .await?;
                    }
                    _ => tx.unref_slices(old, &mut freed).await?,
                }
                (true, freed)
            }
        })?;
        self.delete_objects(freed).await;
        Ok(done)
    }

    async fn leftovers(&self) -> Result<Leftovers> {
        let (l, k, d) = (
            self.keys.kind(b"L"),
            self.keys.kind(b"K"),
            self.keys.kind(b"D"),
        );
        kv_read!(self, "list leftovers", |tx| {
            let mut out = Leftovers::default();
            for (key, v) in tx.scan_all(&l).await? {
                let ts = key.get(l.len()..l.len() + 8).and_then(be64).unwrap_or(0) as i64;
                out.delayed.extend(
                    decode_delayed(&v)?
                        .into_iter()
                        .map(|(id, size)| (id, size, ts)),
                );
            }
            for (key, v) in tx.scan_all(&k).await? {
                if decode_counter(Some(&v))? < 0 && key.len() == k.len() + 12 {
                    let id = be64(&key[k.len()..k.len() + 8]).unwrap_or(0);
                    let mut sz = [0u8; 4];
                    sz.copy_from_slice(&key[k.len() + 8..]);
                    out.unreferenced.push((id, u32::from_be_bytes(sz)));
                }
            }
            out.pending_files = tx.scan_all(&d).await?.len() as u64;
            out
        })
    }

    async fn purge_held_slices(&self, before: i64) -> Result<u64> {
        self.writable()?;
        let mut purged = self.purge_delayed(before).await?;
        // references below zero (a deleter that stopped half way): the objects go, then the key
        let zero = self.leftovers().await?.unreferenced;
        for (id, size) in zero {
            self.delete_objects(vec![(id, size)]).await;
            kv_txn!(self, "purge unreferenced slice", |tx| {
                let key = tx.k.slice_ref(id, size);
                if decode_counter(tx.get(&key).await?.as_deref())? < 0 {
                    tx.del(key).await?;
                }
            })?;
            purged += 1;
        }
        Ok(purged)
    }

    async fn check(self: &Arc<Self>, repair: bool) -> Result<Vec<Problem>> {
        if repair {
            self.writable()?;
        }
        let a = self.keys.kind(b"A");
        let plen = a.len();
        let ss = self.keys.kind(b"SS");
        let (nodes, edges, sustained) = kv_read!(self, "fsck", |tx| {
            let mut nodes: HashMap<Ino, Attr> = HashMap::new();
            let mut edges: Vec<(Ino, Vec<u8>, Ino)> = Vec::new();
            for (k, v) in tx.scan_all(&a).await? {
                if k.len() < plen + 9 {
                    continue;
                }
                let ino = le64(&k[plen..plen + 8]).unwrap_or(0);
                match k[plen + 8] {
                    b'I' if k.len() == plen + 9 => {
                        nodes.insert(ino, decode_attr(ino, &v)?);
                    }
                    b'D' => {
                        let (_, child) = decode_entry(&v)?;
                        edges.push((ino, k[plen + 9..].to_vec(), child));
                    }
                    _ => {}
                }
            }
            let mut sustained = HashSet::new();
            for (k, _) in tx.scan_all(&ss).await? {
                if let Some(ino) = k.get(ss.len() + 8..).and_then(le64) {
                    sustained.insert(ino);
                }
            }
            (nodes, edges, sustained)
        })?;
        let edges: Vec<(Vec<u8>, Ino, Vec<u8>, Ino)> = edges
            .into_iter()
            .map(|(parent, name, child)| (self.keys.entry(parent, &name), parent, name, child))
            .collect();
        let (mut problems, fixes) = analyze(&nodes, &edges, &sustained, repair);
        for fix in fixes {
            match fix {
                Fix::DropEntry(key) => {
                    kv_txn!(self, "fsck repair", |tx| {
                        tx.del(key.clone()).await?;
                    })?;
                }
                Fix::SetNlink(ino, n) => {
                    kv_txn!(self, "fsck repair", |tx| {
                        if let Some(mut cur) = tx.attr(ino).await? {
                            cur.nlink = n;
                            tx.set_attr(&cur).await?;
                        }
                    })?;
                }
            }
        }
        problems.extend(chunk_problems(&nodes, &self.list_chunks().await?));
        Ok(problems)
    }
}

// File locks: BSD locks under `F<ino>`, POSIX locks under `P<ino>`, one value per inode.
impl Inner {
    fn lock_held(&self, set: &Mutex<HashSet<(Ino, u64)>>, key: (Ino, u64)) -> bool {
        set.lock().map(|s| s.contains(&key)).unwrap_or(true)
    }

    async fn flock(&self, ino: Ino, owner: u64, kind: LockKind) -> Result<()> {
        let key = (ino, owner);
        if kind == LockKind::Unlock && !self.lock_held(&self.flocks, key) {
            return Ok(());
        }
        let sid = self.sid.load(Ordering::Relaxed);
        kv_txn!(self, "flock", |tx| {
            if tx.attr(ino).await?.is_none() {
                return Err(Error::not_found(format!("inode {ino} does not exist")));
            }
            let k = tx.k.flock(ino);
            let mut ls = match tx.get(&k).await? {
                Some(v) => decode_flocks(&v)?,
                None => Vec::new(),
            };
            let mine = ls.iter().position(|l| l.sid == sid && l.owner == owner);
            if kind == LockKind::Unlock {
                if let Some(i) = mine {
                    ls.remove(i);
                }
            } else {
                let busy = ls.iter().any(|l| {
                    !(l.sid == sid && l.owner == owner)
                        && (kind == LockKind::Write || l.ltype == b'W')
                });
                if busy {
                    return Err(Error::new(
                        ErrorKind::WouldBlock,
                        "the file is locked by another owner",
                    ));
                }
                let ltype = if kind == LockKind::Write { b'W' } else { b'R' };
                match mine {
                    Some(i) => ls[i].ltype = ltype,
                    None => ls.push(Flock { sid, owner, ltype }),
                }
            }
            if ls.is_empty() {
                tx.del(k).await?;
            } else {
                tx.put(k, encode_flocks(&ls)).await?;
            }
        })?;
        let mut held = self.flocks.lock().map_err(|_| lock_poisoned())?;
        if kind == LockKind::Unlock {
            held.remove(&key);
        } else {
            held.insert(key);
        }
        Ok(())
    }

    /// The POSIX locks on `ino` of owners other than `owner` (of this session) that conflict
    /// with `lock`, one per owner, with whether the owner is of this session.
    async fn conflicting(
        &self,
        ino: Ino,
        owner: u64,
        lock: PosixLock,
    ) -> Result<Vec<(bool, u64, PosixLock)>> {
        let sid = self.sid.load(Ordering::Relaxed);
        kv_read!(self, "getlk", |tx| {
            let mut found = Vec::new();
            if let Some(v) = tx.get(&tx.k.plock(ino)).await? {
                for l in decode_plocks(&v)? {
                    if l.sid == sid && l.owner == owner {
                        continue;
                    }
                    let recs = plock_decode(&l.records)?;
                    if let Some(hit) = plock_conflict(&recs, lock.kind, lock.start, lock.end) {
                        found.push((l.sid == sid, l.owner, plock_wire(hit)));
                    }
                }
            }
            found
        })
    }

    async fn getlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Option<PosixLock>> {
        let found = self.conflicting(ino, owner, lock).await?;
        Ok(found.into_iter().next().map(|(_, _, l)| l))
    }

    async fn lock_blockers(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Vec<u64>> {
        let found = self.conflicting(ino, owner, lock).await?;
        Ok(found
            .into_iter()
            .filter_map(|(mine, o, _)| mine.then_some(o))
            .collect())
    }

    async fn setlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<()> {
        let key = (ino, owner);
        if lock.kind == LockKind::Unlock && !self.lock_held(&self.plocks, key) {
            return Ok(());
        }
        if lock.start > lock.end {
            return Err(Error::invalid("lock range ends before it starts"));
        }
        let sid = self.sid.load(Ordering::Relaxed);
        let left = kv_txn!(self, "setlk", |tx| {
            if tx.attr(ino).await?.is_none() {
                return Err(Error::not_found(format!("inode {ino} does not exist")));
            }
            let k = tx.k.plock(ino);
            let mut ls = match tx.get(&k).await? {
                Some(v) => decode_plocks(&v)?,
                None => Vec::new(),
            };
            let mut mine = Vec::new();
            let mut at = None;
            for (i, l) in ls.iter().enumerate() {
                let recs = plock_decode(&l.records)?;
                if l.sid == sid && l.owner == owner {
                    mine = recs;
                    at = Some(i);
                } else if plock_conflict(&recs, lock.kind, lock.start, lock.end).is_some() {
                    return Err(Error::new(
                        ErrorKind::WouldBlock,
                        "the file is locked by another owner",
                    ));
                }
            }
            let next = plock_apply(&mine, lock);
            match (at, next.is_empty()) {
                (Some(i), true) => {
                    ls.remove(i);
                }
                (Some(i), false) => ls[i].records = plock_encode(&next),
                (None, false) => ls.push(Plock {
                    sid,
                    owner,
                    records: plock_encode(&next),
                }),
                (None, true) => {}
            }
            if ls.is_empty() {
                tx.del(k).await?;
            } else {
                tx.put(k, encode_plocks(&ls)).await?;
            }
            !next.is_empty()
        })?;
        let mut held = self.plocks.lock().map_err(|_| lock_poisoned())?;
        if left {
            held.insert(key);
        } else {
            held.remove(&key);
        }
        Ok(())
    }
}

#[async_trait]
impl Meta for KvMeta {
    fn engine(&self) -> &'static str {
        self.inner.store.name()
    }
    async fn init(&self, format: &Format, force: bool) -> Result<()> {
        self.inner.init(format, force).await
    }
    async fn load(&self) -> Result<Format> {
        self.inner.load().await
    }
    async fn new_session(&self, info: SessionInfo) -> Result<u64> {
        self.inner.new_session(info).await
    }
    async fn close_session(&self) -> Result<()> {
        self.inner.close_session().await
    }
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        self.inner.list_sessions().await
    }
    fn set_read_only(&self, read_only: bool) {
        self.inner.read_only.store(read_only, Ordering::Relaxed);
    }
    fn set_skip_dir_mtime(&self, window: Duration) {
        self.inner.skip_dir_mtime_ns.store(
            u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
    fn set_heartbeat(&self, period: Duration) {
        self.inner
            .heartbeat_ms
            .store(period.as_millis() as u64, Ordering::Relaxed);
    }
    fn set_slice_deleter(&self, deleter: SliceDeleter) {
        if let Ok(mut d) = self.inner.deleter.write() {
            *d = Some(deleter);
        }
    }
    async fn statfs(&self) -> Result<StatFs> {
        self.inner.statfs().await
    }
    async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.inner.lookup(ctx, parent, name).await
    }
    async fn getattr(&self, ino: Ino) -> Result<Attr> {
        let inner = &self.inner;
        kv_read!(inner, "getattr", latest, |tx| { tx.must_attr(ino).await? })
    }
    async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.inner.setattr(ctx, ino, set).await
    }
    async fn truncate(&self, ctx: &Ctx, ino: Ino, length: u64) -> Result<Attr> {
        self.inner.truncate(ctx, ino, length).await
    }
    async fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        mode: FallocMode,
        off: u64,
        len: u64,
    ) -> Result<Attr> {
        self.inner.fallocate(ctx, ino, mode, off, len).await
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
        self.inner
            .mknod(ctx, parent, name, typ, mode, umask, rdev, target)
            .await
    }
    async fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.inner.unlink(ctx, parent, name).await
    }
    async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.inner.rmdir(ctx, parent, name).await
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
        self.inner
            .rename(ctx, parent, name, new_parent, new_name, flags)
            .await
    }
    async fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        self.inner.link(ctx, ino, new_parent, new_name).await
    }
    async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let inner = &self.inner;
        kv_read!(inner, "readlink", latest, |tx| {
            match tx.get(&tx.k.symlink(ino)).await? {
                Some(t) => t,
                None => {
                    let a = tx.must_attr(ino).await?;
                    return Err(if a.typ == FileType::Symlink {
                        Error::corrupt(format!("symlink {ino} has no target"))
                    } else {
                        Error::invalid("not a symlink")
                    });
                }
            }
        })
    }
    async fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        after: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        self.inner.readdir(ctx, ino, after, limit, plus).await
    }
    async fn entries_from(
        &self,
        parent: Ino,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Attr)>> {
        self.inner.entries_from(parent, from, limit).await
    }
    async fn open(&self, ctx: &Ctx, ino: Ino) -> Result<Attr> {
        let _ = ctx;
        let a = self.getattr(ino).await?;
        self.inner.opened(ino);
        Ok(a)
    }
    fn opened(&self, ino: Ino) {
        self.inner.opened(ino)
    }
    async fn close(&self, ino: Ino) -> Result<()> {
        self.inner.close(ino).await
    }
    async fn read_chunk(&self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        let inner = &self.inner;
        kv_read!(inner, "read chunk", latest, |tx| {
            tx.read_chunk(ino, indx).await?
        })
    }
    async fn new_slice_id(&self) -> Result<u64> {
        self.inner.next_slice().await
    }
    async fn write_slice(&self, ino: Ino, indx: u32, slice: Slice, mtime: Timestamp) -> Result<()> {
        self.inner.write_slice(ino, indx, slice, mtime, &[]).await
    }
    async fn copy_range(
        &self,
        src: Ino,
        off_in: u64,
        dst: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<(u64, Attr)> {
        self.inner.copy_range(src, off_in, dst, off_out, len).await
    }
    async fn write_slice_summed(
        &self,
        ino: Ino,
        indx: u32,
        slice: Slice,
        mtime: Timestamp,
        sums: &[u8],
    ) -> Result<()> {
        self.inner.write_slice(ino, indx, slice, mtime, sums).await
    }
    async fn slice_sums(&self, id: u64) -> Result<Option<Vec<u8>>> {
        let inner = &self.inner;
        kv_read!(inner, "read checksums", latest, |tx| {
            tx.get(&tx.k.sums(id)).await?
        })
    }
    async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let name = xattr_name(name)?.as_bytes();
        let inner = &self.inner;
        kv_read!(inner, "getxattr", latest, |tx| {
            match tx.get(&tx.k.xattr(ino, name)).await? {
                Some(v) => v,
                None => {
                    tx.must_attr(ino).await?;
                    return Err(Error::new(ErrorKind::NoAttr, "no such attribute"));
                }
            }
        })
    }
    async fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let inner = &self.inner;
        kv_read!(inner, "listxattr", |tx| {
            tx.must_attr(ino).await?;
            let prefix = tx.k.xattrs(ino);
            tx.scan_all(&prefix)
                .await?
                .into_iter()
                .map(|(k, _)| k[prefix.len()..].to_vec())
                .collect::<Vec<_>>()
        })
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()> {
        self.inner.setxattr(ctx, ino, name, value, flags).await
    }
    async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.inner.removexattr(ctx, ino, name).await
    }
    async fn list_chunks(&self) -> Result<Vec<ChunkSlices>> {
        self.inner.list_chunks().await
    }
    async fn compact_chunk(
        &self,
        ino: Ino,
        indx: u32,
        old: &[Slice],
        new: &[Slice],
        sums: &[Vec<u8>],
    ) -> Result<bool> {
        self.inner.compact_chunk(ino, indx, old, new, sums).await
    }
    async fn chunks_page(
        &self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<(Vec<ChunkSlices>, Option<Vec<u8>>)> {
        self.inner.chunks_page(cursor, limit).await
    }
    async fn leftovers(&self) -> Result<Leftovers> {
        self.inner.leftovers().await
    }
    async fn purge_held_slices(&self, before: i64) -> Result<u64> {
        self.inner.purge_held_slices(before).await
    }
    async fn check(&self, repair: bool) -> Result<Vec<Problem>> {
        self.inner.check(repair).await
    }
    async fn cleanup(&self) -> Result<u64> {
        self.inner.cleanup().await
    }
    async fn flock(&self, ino: Ino, owner: u64, kind: LockKind) -> Result<()> {
        self.inner.flock(ino, owner, kind).await
    }
    async fn getlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Option<PosixLock>> {
        self.inner.getlk(ino, owner, lock).await
    }
    async fn lock_blockers(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Vec<u64>> {
        self.inner.lock_blockers(ino, owner, lock).await
    }
    async fn setlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<()> {
        self.inner.setlk(ino, owner, lock).await
    }
    async fn destroy(&self) -> Result<()> {
        let prefix = self.inner.keys.prefix().to_vec();
        let end = prefix_end(&prefix);
        self.inner.store.delete_range(&prefix, &end).await
    }
}
