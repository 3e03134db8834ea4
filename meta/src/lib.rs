//! tidefs-meta: the metadata engine of tidefs.
//!
//! Inodes, directory entries, slice lists, sessions and the volume setting live in a transactional
//! engine, in the JuiceFS CE 1.x layout, so volumes stay mountable by either client. Callers see
//! one POSIX-shaped trait, [`Meta`], chosen at run time from a URL by [`open`]; this is the only
//! place that names concrete engines.
//!
//! Place in the data flow: `vfs` calls `Meta` for every namespace operation and for the slice
//! lists of a file; it never touches object storage through this crate. Slices whose last reference
//! goes away are handed to a [`SliceDeleter`] that the client installs (the chunk store).

#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod format;
pub mod kv;
pub mod perm;
pub mod posix;
pub mod slice;
pub mod sql;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod types;
mod url;

use async_trait::async_trait;
use std::sync::Arc;

pub use error::{Error, ErrorKind, Result};
pub use format::Format;
pub use posix::{Client, QuotaCheck, TxnStats, DEFAULT_SKIP_DIR_MTIME};
pub use slice::Slice;
pub use types::*;
pub use url::{redact, split_password};

/// Removes the objects of a slice that lost its last reference. Installed by the client.
pub type SliceDeleter =
    Arc<dyn Fn(u64, u32) -> futures::future::BoxFuture<'static, Result<()>> + Send + Sync>;

/// `setxattr` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XattrFlags {
    /// Fail with EEXIST when the attribute exists (XATTR_CREATE).
    pub create: bool,
    /// Fail with ENODATA when it does not (XATTR_REPLACE).
    pub replace: bool,
}

/// One problem `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, for people.
    pub what: String,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// A chunk's slice list, as `fsck` and `info` walk them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSlices {
    /// The file.
    pub ino: Ino,
    /// Chunk index in the file.
    pub indx: u32,
    /// Records, oldest first.
    pub slices: Vec<Slice>,
}

/// The metadata layer as a mount sees it: the client's life on the volume (load, session,
/// settings) and one POSIX-shaped call per operation, each one transaction (or a few, for work
/// that must not grow without bound).
#[async_trait]
pub trait Meta: Send + Sync {
    /// Engine name for messages (`sqlite3`, ...).
    fn engine(&self) -> &'static str;
    /// Read the volume setting and check this client supports it.
    async fn load(&self) -> Result<Format>;
    /// Register a session for a writable mount and start background jobs (heartbeat, counter
    /// flush, cleanup).
    async fn new_session(&self, info: SessionInfo) -> Result<u64>;
    /// Stop background jobs and remove the session.
    async fn close_session(&self) -> Result<()>;
    /// Refuse every later write with EROFS.
    fn set_read_only(&self, read_only: bool);
    /// Session heartbeat period (before `new_session`): the session expires 5 heartbeats after
    /// its last one, and dead sessions are cleaned up every 5 heartbeats.
    fn set_heartbeat(&self, period: std::time::Duration);
    /// `--skip-dir-mtime`: on engines where a directory's record is where creates in it
    /// conflict (the optimistic KV engines), an entry added to or removed from a directory
    /// whose times changed less than `window` ago leaves them as they are. Zero: always update.
    fn set_skip_dir_mtime(&self, window: std::time::Duration);
    /// Install the callback that deletes objects of unreferenced slices.
    fn set_slice_deleter(&self, deleter: SliceDeleter);

    /// Capacity and usage.
    async fn statfs(&self) -> Result<StatFs>;
    /// Find `name` in `parent`.
    async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr>;
    /// Attributes of `ino`.
    async fn getattr(&self, ino: Ino) -> Result<Attr>;
    /// Change mode, owner, times.
    async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr>;
    /// Change the length of a regular file.
    async fn truncate(&self, ctx: &Ctx, ino: Ino, length: u64) -> Result<Attr>;
    /// Allocate, punch or zero a range.
    async fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        mode: FallocMode,
        off: u64,
        len: u64,
    ) -> Result<Attr>;
    /// Create a node of any type (`target` is the symlink target).
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
    ) -> Result<Attr>;
    /// Remove a non-directory name.
    async fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()>;
    /// Remove an empty directory.
    async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()>;
    /// Rename, with RENAME_NOREPLACE / RENAME_EXCHANGE.
    async fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()>;
    /// Add a name for `ino`.
    async fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr>;
    /// Target of a symlink.
    async fn readlink(&self, ino: Ino) -> Result<Vec<u8>>;
    /// Up to `limit` entries of a directory after cursor `after` (0 = from the start), without
    /// `.` and `..`.
    async fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        after: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>>;
    /// Up to `limit` entries of directory `parent` whose names sort at or after `from` (byte
    /// order), each with its inode's attributes: what the client's lookahead fills its cache
    /// with when a program looks up many names of one directory. No permission check (the
    /// caller serves them only where the kernel checks).
    async fn entries_from(
        &self,
        parent: Ino,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Attr)>>;
    /// Note an open of `ino` by this client (an unlinked file keeps its data while open).
    async fn open(&self, ctx: &Ctx, ino: Ino) -> Result<Attr>;
    /// Note an open of `ino` that this client just created (it exists: nothing to look up).
    fn opened(&self, ino: Ino);
    /// Note the close of one open of `ino`; the last close of an unlinked file frees it.
    async fn close(&self, ino: Ino) -> Result<()>;

    /// The slice records of one chunk, oldest first.
    async fn read_chunk(&self, ino: Ino, indx: u32) -> Result<Vec<Slice>>;
    /// A fresh slice id.
    async fn new_slice_id(&self) -> Result<u64>;
    /// Append a record for a stored slice and extend the file length if it grows, keeping the
    /// slice's block checksums `sums` (see `tidefs_chunk::sums`; empty: none) in the same
    /// transaction.
    async fn write_slice(
        &self,
        ino: Ino,
        indx: u32,
        slice: Slice,
        mtime: Timestamp,
        sums: &[u8],
    ) -> Result<()>;
    /// copy_file_range(2) without moving data: `[off_in, off_in + len)` of `src` (clipped at
    /// its end) becomes `[off_out, ...)` of `dst` by records pointing at the same slices, each
    /// one more reference to its slice (as JuiceFS shares them). Returns the bytes copied and
    /// `dst`'s new attributes. Both must be regular files; the ranges must not overlap when
    /// they are the same file.
    async fn copy_range(
        &self,
        src: Ino,
        off_in: u64,
        dst: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<(u64, Attr)>;
    /// Block checksums of slice `id`, when it has them.
    async fn slice_sums(&self, id: u64) -> Result<Option<Vec<u8>>>;
    /// Replace the records `old`, which must still open the slice list of chunk `indx` of
    /// `ino`, with `new` (records showing the same bytes, written by compaction); records
    /// appended meanwhile stay after them. The replaced slices lose a reference each (set aside
    /// instead while the trash is on). Returns false, changing nothing, when the chunk no
    /// longer starts with `old` (a truncate or another compaction came first). `sums[i]` are
    /// the block checksums of `new[i]` (empty: none).
    async fn compact_chunk(
        &self,
        ino: Ino,
        indx: u32,
        old: &[Slice],
        new: &[Slice],
        sums: &[Vec<u8>],
    ) -> Result<bool>;

    /// Value of an extended attribute.
    async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>>;
    /// Names of the extended attributes.
    async fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>>;
    /// Set an extended attribute.
    async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()>;
    /// Remove an extended attribute.
    async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()>;

    /// Take, change or release the BSD lock (`flock`) of `owner` on `ino` without waiting:
    /// `WouldBlock` when another owner's lock conflicts.
    async fn flock(&self, ino: Ino, owner: u64, kind: LockKind) -> Result<()>;
    /// The first POSIX lock of another owner that conflicts with `lock`, if any (F_GETLK).
    async fn getlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Option<PosixLock>>;
    /// Owners, in this client's session, of POSIX locks on `ino` that conflict with `lock` of
    /// `owner` (for finding deadlocks among the processes of one mount).
    async fn lock_blockers(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Vec<u64>>;
    /// Take, change or release (part of) the POSIX locks of `owner` on `ino` without waiting
    /// (F_SETLK): `WouldBlock` when another owner's lock conflicts.
    async fn setlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<()>;
    /// Make every committed change durable against power loss (called at fsync), after
    /// flushing this client's counter changes.
    async fn sync(&self) -> Result<()>;
    /// What the tree at `ino` holds, from directory statistics (every inode counted when
    /// `strict`, or when the volume keeps none), with its largest subdirectories (`top` per
    /// directory) down to `depth` levels.
    async fn summary(&self, ino: Ino, depth: u32, top: usize, strict: bool) -> Result<TreeSummary>;
    /// The directory quotas at and above directory `ino`, nearest first (for `statfs` of a
    /// mount of a subdirectory).
    async fn quotas_above(&self, ino: Ino) -> Result<Vec<(Ino, Quota)>>;
}

/// The maintenance surface the command line uses: format, sessions of every client, whole-volume
/// scans and repairs, destroy.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Create the layout and store `format` (refuses an existing volume unless `force`).
    async fn init(&self, format: &Format, force: bool) -> Result<()>;
    /// Live sessions.
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>>;
    /// A page of the volume's chunks for scans of a whole volume in bounded memory (gc, fsck):
    /// up to about `limit` chunks after `cursor` (empty: from the start), in an order of the
    /// engine's choosing, and the cursor of the next page (None: that was the last).
    async fn chunks_page(
        &self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<(Vec<ChunkSlices>, Option<Vec<u8>>)>;
    /// Slices and files whose objects are still held outside the files of the volume (for gc).
    async fn leftovers(&self) -> Result<Leftovers>;
    /// Release the delayed slices (compacted away while the trash keeps old versions) that were
    /// set aside before `before` (seconds since the epoch), and reference records left at zero;
    /// objects are deleted where that was the last reference. Returns how many records went.
    async fn purge_held_slices(&self, before: i64) -> Result<u64>;
    /// Check the namespace (dangling entries, link counts, orphans); fix what is safe when
    /// `repair`.
    async fn check(&self, repair: bool) -> Result<Vec<Problem>>;
    /// Compare every directory's statistics with a count of its entries; with `repair`, store
    /// the counts (making missing records).
    async fn check_dir_stats(&self, repair: bool) -> Result<Vec<Problem>>;
    /// Purge trash older than the retention and files of dead sessions; returns what was removed.
    async fn cleanup(&self) -> Result<u64>;
    /// Delete the volume's metadata: every table (or key) of it. Its objects are not touched.
    async fn destroy(&self) -> Result<()>;
    /// Replace the volume setting with `format` (same volume: its UUID must match); mounted
    /// clients take it up at their next heartbeat.
    async fn configure(&self, format: &Format) -> Result<()>;
    /// Set the limits of quota `kind`/`key` (None: keep; a new quota has none and starts with
    /// the usage counted now, every inode read when `strict`); the quota as stored.
    async fn set_quota(
        &self,
        kind: QuotaKind,
        key: u64,
        max_space: Option<i64>,
        max_inodes: Option<i64>,
        strict: bool,
    ) -> Result<Quota>;
    /// Quota `kind`/`key`.
    async fn get_quota(&self, kind: QuotaKind, key: u64) -> Result<Option<Quota>>;
    /// Every quota.
    async fn list_quotas(&self) -> Result<Vec<(QuotaKind, u64, Quota)>>;
    /// Delete quota `kind`/`key`; false when there was none.
    async fn delete_quota(&self, kind: QuotaKind, key: u64) -> Result<bool>;
    /// Recount what every user and group owns and compare with their records (none when the
    /// volume keeps no user and group usage); store the counts where they differ when
    /// `repair`.
    async fn check_owner_quotas(&self, repair: bool) -> Result<Vec<QuotaCheck>>;
    /// Recount the usage of the directory quotas (only directory `key`'s, when given); store
    /// the counts where they differ when `repair`.
    async fn check_quotas(
        &self,
        key: Option<u64>,
        repair: bool,
        strict: bool,
    ) -> Result<Vec<QuotaCheck>>;
}

/// A metadata client with both surfaces, as [`open`] makes it.
pub trait Volume: Meta + Admin {}

/// Open the engine a meta URL names (`sqlite3:///path/meta.db`, `mysql://user:pass@(host:3306)/db`,
/// `postgres://user:pass@host:5432/db`, `tikv://pd1:2379/volname`, `memkv://name`). The
/// volume is not loaded. This is the only place that names concrete engines.
pub async fn open(url: &str) -> Result<Arc<dyn Volume>> {
    let parsed = url::MetaUrl::parse(url)?;
    match parsed.scheme.as_str() {
        "sqlite3" | "sqlite" => Ok(Arc::new(Client::new(
            sql::SqlEngine::open_sqlite(&parsed).await?,
        ))),
        "mysql" | "postgres" | "postgresql" => Ok(Arc::new(Client::new(
            sql::SqlEngine::open_server(url).await?,
        ))),
        "memkv" => Ok(Arc::new(Client::new(kv::KvEngine::new(
            kv::mem::MemKv::named(&parsed.rest),
            kv::keys::Keys::new(""),
            format!("memkv://{}", parsed.rest),
        )))),
        "tikv" => {
            let u = kv::tikv::TikvUrl::parse(&parsed.rest)?;
            let store = Arc::new(kv::tikv::TikvStore::connect(&u).await?);
            let keys = kv::keys::Keys::new(&u.volume);
            let shown = format!("tikv://{}/{}", u.pd.join(","), u.volume);
            Ok(Arc::new(Client::new(kv::KvEngine::new(store, keys, shown))))
        }
        "redis" | "rediss" => Err(Error::config(format!(
            "the {} metadata engine is not supported by this tidefs build yet; use sqlite3://, mysql://, postgres:// or tikv://",
            parsed.scheme
        ))),
        other => Err(Error::config(format!(
            "unknown metadata engine {other:?} in the meta URL; use sqlite3:///abs/path/meta.db"
        ))),
    }
}
