//! The engine contract: what a metadata engine stores and how, and nothing about what it means.
//!
//! Every rule of POSIX and of the JuiceFS format lives once, in [`crate::posix`], written against
//! the two traits here. An engine is typed storage of one volume's records in its layout: nodes,
//! entries, chunks, slice references, counters, extended attributes, symlink targets, sessions,
//! kept-open inodes, the deletion queues, lock records and the setting, read and written inside
//! transactions, plus paged scans of the whole volume. An engine decides how a record is laid
//! out (rows or keys), how rows are locked (SQL `FOR UPDATE`, KV optimistic reads), and which
//! reads it can answer in one step; it never decides whether an operation is allowed or what
//! it changes.
//!
//! Transactions and their mechanics: the core begins a transaction ([`Engine::begin`]), runs an
//! operation's body in it, and commits it ([`Txn::commit`]). A failed transaction is classified
//! by the engine where the error enters ([`crate::ErrorKind::Conflict`]: another transaction got
//! in the way, run it again; [`crate::ErrorKind::Unavailable`]: the server cannot be reached or
//! the outcome of a commit is unknown) and the core's one retry policy decides what happens next
//! (`posix/retry.rs`). Bodies are safe to run again: they only touch the transaction.
//!
//! What an engine must keep (checked by `testkit::contract` on every engine):
//! - a write transaction reads the last committed state and its own writes; what it read cannot
//!   be changed by another transaction before it commits (locked rows, or a commit conflict);
//! - [`Txn::create_entry`] refuses a taken name with `Exists`, as the answer of that call;
//! - [`Txn::unref`] reports the last reference of a slice exactly once;
//! - [`Txn::append_chunk`] keeps records in the order they were appended;
//! - scans page through everything, whatever the page size.
//!
//! Optional fast paths (the `*_fast` methods and the compound reads with default bodies) let an
//! engine do in one round trip what the defaults do in several; they must answer exactly what the
//! default would, or do nothing and say so.

use crate::error::Result;
use crate::slice::Slice;
use crate::types::*;
use crate::ChunkSlices;
use async_trait::async_trait;
use std::ops::Bound;

/// How a transaction is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads and writes, committed at the end; rows read are protected until then.
    Write,
    /// Reads from one consistent snapshot; never committed.
    Read,
    /// Point reads of the latest committed values, each on its own (no snapshot across keys).
    Latest,
    /// One self-contained writing statement at a time, each committed on its own: only for the
    /// `*_fast` paths, which do a whole operation in one step.
    Single,
}

/// What an engine's concurrency control is like; the core adapts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Transactions conflict at commit (optimistic KV) instead of waiting for row locks. The
    /// core then serializes this client's own transactions on one directory locally, and may
    /// leave a directory's times as they are when they changed moments ago
    /// (`--skip-dir-mtime`), since the directory record is where creates in it conflict.
    pub optimistic: bool,
    /// The engine has the one-step paths ([`Txn::create_fast`], [`Txn::write_fast`]): worth
    /// a [`Mode::Single`] attempt before the general transaction.
    pub one_step: bool,
}

/// A directory entry as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Entry name.
    pub name: Vec<u8>,
    /// Type the entry records.
    pub typ: FileType,
    /// Inode it names.
    pub ino: Ino,
    /// The inode's attributes, when asked for and the inode exists.
    pub attr: Option<Attr>,
    /// A number for the entry that stays the same while it exists, if the layout has one (SQL
    /// entry ids): readdir cursors then survive being forgotten (see [`Txn::entry_name`]).
    pub id: Option<u64>,
}

/// A name, its directory and its inode, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryIn {
    /// The directory.
    pub dir: Attr,
    /// The inode the name points at.
    pub node: Attr,
}

/// What a lookup of a name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The directory does not exist.
    NoParent,
    /// The "directory" is not one.
    NotDir,
    /// No such name.
    Missing,
    /// The name points at a missing inode (fsck reports such entries).
    Dangling(Ino),
    /// The inode the name points at.
    Found(Attr),
}

/// The target side of a rename read together with the source (see [`Txn::rename_pair`]): the
/// entry's type and inode, and that inode's attributes when it exists.
pub type Target = Option<(FileType, Ino, Option<Attr>)>;

/// One BSD lock record: session, owner and `b'R'` / `b'W'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flock {
    /// Session holding it.
    pub sid: u64,
    /// Lock owner within the session.
    pub owner: u64,
    /// `b'R'` or `b'W'`.
    pub ltype: u8,
}

/// The POSIX locks of one owner of one inode: its ranges packed as `posix::locks` packs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plock {
    /// Session holding them.
    pub sid: u64,
    /// Lock owner within the session.
    pub owner: u64,
    /// Ranges, 24 bytes each.
    pub records: Vec<u8>,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Session id.
    pub sid: u64,
    /// Expiry, seconds since the epoch.
    pub expire: i64,
    /// Client information (JSON), when recorded.
    pub info: Option<Vec<u8>>,
}

/// A file whose data is queued for freeing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelFile {
    /// The file.
    pub ino: Ino,
    /// Its length when removed.
    pub length: u64,
    /// When it was queued, seconds since the epoch.
    pub queued: i64,
}

/// Slices compaction set aside while the trash may still need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delayed {
    /// The engine's handle of the record (for [`Txn::take_delayed`]).
    pub key: Vec<u8>,
    /// When they were set aside, seconds since the epoch.
    pub when: i64,
    /// The slices: (id, size).
    pub slices: Vec<(u64, u32)>,
}

/// One page of a scan and where the next one starts (None: that was the last).
pub type Page<T> = (Vec<T>, Option<Vec<u8>>);

/// One transaction on one volume. Reads in a [`Mode::Write`] transaction are protected until it
/// commits; writes are seen by its own later reads.
#[async_trait]
pub trait Txn: Send {
    // ---- nodes

    /// Attributes of `ino`.
    async fn node(&mut self, ino: Ino) -> Result<Option<Attr>>;
    /// Store a new inode.
    async fn create_node(&mut self, a: &Attr) -> Result<()>;
    /// Store changed attributes of an existing inode.
    async fn update_node(&mut self, a: &Attr) -> Result<()>;
    /// Delete inode `a` and every record that belongs to it alone in the layout (extended
    /// attributes, symlink target, directory statistics and quota, link counts per directory),
    /// but not its chunks, which the core frees (inline, or through the deletion queue).
    async fn delete_inode(&mut self, a: &Attr) -> Result<()>;

    // ---- entries

    /// The entry `name` of `parent`: its type and inode.
    async fn entry(&mut self, parent: Ino, name: &[u8]) -> Result<Option<(FileType, Ino)>>;
    /// Add entry `name` to `parent`; `Exists` when the name is taken (this call's answer, not
    /// the commit's).
    async fn create_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()>;
    /// Remove entry `name` of `parent`.
    async fn delete_entry(&mut self, parent: Ino, name: &[u8]) -> Result<()>;
    /// Move entry `name` of `parent` (naming `ino` of type `typ`) to `new_name` of `new_parent`,
    /// a name this transaction found free or removed. Another transaction taking it meanwhile
    /// is a `Conflict`.
    #[allow(clippy::too_many_arguments)]
    async fn move_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()>;
    /// Point the existing entry `name` of `parent` at `ino` of type `typ`.
    async fn replace_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()>;
    /// Whether directory `ino` has no entries.
    async fn dir_is_empty(&mut self, ino: Ino) -> Result<bool>;
    /// Up to `limit` entries of `dir` in byte order of their names, from `start`, with their
    /// inodes' attributes when `plus` (dangling entries have none).
    async fn list_entries(
        &mut self,
        dir: Ino,
        start: Bound<&[u8]>,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<Listed>>;
    /// The name of the entry of `dir` whose [`Listed::id`] is `id`, if the layout has ids.
    async fn entry_name(&mut self, dir: Ino, id: u64) -> Result<Option<Vec<u8>>> {
        let _ = (dir, id);
        Ok(None)
    }
    /// Count one more (`delta` 1) or one fewer (-1) link of hard-linked `ino` in `parent`, in
    /// layouts that keep such counts (JuiceFS's KV layout does; its SQL layout does not).
    async fn link_parent(&mut self, ino: Ino, parent: Ino, delta: i64) -> Result<()> {
        let _ = (ino, parent, delta);
        Ok(())
    }

    // ---- compound reads (the defaults read step by step; an engine may answer in one step)

    /// What `name` in `parent` is.
    async fn lookup(&mut self, parent: Ino, name: &[u8]) -> Result<Lookup> {
        if let Some((_, ino)) = self.entry(parent, name).await? {
            return Ok(match self.node(ino).await? {
                Some(a) => Lookup::Found(a),
                None => Lookup::Dangling(ino),
            });
        }
        Ok(match self.node(parent).await? {
            None => Lookup::NoParent,
            Some(p) if p.typ != FileType::Dir => Lookup::NotDir,
            Some(_) => Lookup::Missing,
        })
    }
    /// Directory `parent`, its entry `name` and that entry's inode; None when any is missing
    /// (the caller asks step by step for the reason).
    async fn entry_in(&mut self, parent: Ino, name: &[u8]) -> Result<Option<EntryIn>> {
        let Some(dir) = self.node(parent).await? else {
            return Ok(None);
        };
        let Some((_, ino)) = self.entry(parent, name).await? else {
            return Ok(None);
        };
        Ok(self.node(ino).await?.map(|node| EntryIn { dir, node }))
    }
    /// The source of a rename as [`Txn::entry_in`] reads it and, when the engine reads it in
    /// the same step, the target entry (`Some(None)`: read and absent; `None`: not read).
    async fn rename_pair(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> Result<(Option<EntryIn>, Option<Target>)> {
        let _ = (new_parent, new_name);
        Ok((self.entry_in(parent, name).await?, None))
    }
    /// Extended attribute `name` of `ino`: None when the inode does not exist, `Some(None)`
    /// when it has no such attribute.
    async fn xattr_of(&mut self, ino: Ino, name: &[u8]) -> Result<Option<Option<Vec<u8>>>> {
        if let Some(v) = self.xattr(ino, name).await? {
            return Ok(Some(Some(v)));
        }
        Ok(self.node(ino).await?.map(|_| None))
    }

    // ---- chunks and slices

    /// Slice records of chunk `indx` of `ino`, oldest first.
    async fn chunk(&mut self, ino: Ino, indx: u32) -> Result<Vec<Slice>>;
    /// Append records to chunk `indx` of `ino` (creating it). `fresh`: the chunk most likely
    /// does not exist yet.
    async fn append_chunk(
        &mut self,
        ino: Ino,
        indx: u32,
        records: &[Slice],
        fresh: bool,
    ) -> Result<()>;
    /// Replace every record of an existing chunk.
    async fn set_chunk(&mut self, ino: Ino, indx: u32, records: &[Slice]) -> Result<()>;
    /// The chunks of `ino` with indexes in `[lo, hi]` that exist, in index order.
    async fn chunks(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<(u32, Vec<Slice>)>>;
    /// Indexes of the chunks of `ino` in `[lo, hi]` that exist, in order.
    async fn chunk_indexes(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<u32>>;
    /// Remove chunks of `ino` from index `from` on and return them: about `limit` of them (an
    /// engine may take all at once when that is cheaper); whether more are left.
    async fn take_chunks(
        &mut self,
        ino: Ino,
        from: u32,
        limit: usize,
    ) -> Result<(Vec<(u32, Vec<Slice>)>, bool)>;
    /// The first reference of a newly stored slice.
    async fn ref_new(&mut self, id: u64, size: u32) -> Result<()>;
    /// `n` more references of a stored slice.
    async fn ref_more(&mut self, id: u64, size: u32, n: i64) -> Result<()>;
    /// One reference fewer; true when it was the last (exactly once per slice).
    async fn unref(&mut self, id: u64, size: u32) -> Result<bool>;
    /// Slices whose reference count reached zero without being freed (JuiceFS's deleter
    /// keeps such records until it is done).
    async fn zero_refs(&mut self) -> Result<Vec<(u64, u32)>>;
    /// Drop such a record, if it is still at zero.
    async fn drop_zero_ref(&mut self, id: u64, size: u32) -> Result<()>;
    /// Keep the block checksums of slice `id` (an engine without a place for them keeps none).
    async fn put_sums(&mut self, id: u64, sums: &[u8]) -> Result<()>;
    /// Block checksums of slice `id`.
    async fn sums(&mut self, id: u64) -> Result<Option<Vec<u8>>>;
    /// Drop the block checksums of slice `id`.
    async fn delete_sums(&mut self, id: u64) -> Result<()>;
    /// Drop checksums of slices that have no reference record, where the layout can tell
    /// cheaply (housekeeping; the default does nothing).
    async fn drop_orphan_sums(&mut self) -> Result<()> {
        Ok(())
    }

    // ---- symlinks and extended attributes

    /// Store the target of new symlink `ino`.
    async fn create_symlink(&mut self, ino: Ino, target: &[u8]) -> Result<()>;
    /// Target of symlink `ino`.
    async fn symlink(&mut self, ino: Ino) -> Result<Option<Vec<u8>>>;
    /// Value of extended attribute `name` of `ino`.
    async fn xattr(&mut self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Set extended attribute `name` of `ino`, creating or replacing it.
    async fn set_xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) -> Result<()>;
    /// Remove extended attribute `name` of `ino`; false when there was none.
    async fn delete_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<bool>;
    /// Names of the extended attributes of `ino`.
    async fn xattr_names(&mut self, ino: Ino) -> Result<Vec<Vec<u8>>>;

    // ---- counters and the setting

    /// Value of counter `name` (0 when it does not exist).
    async fn counter(&mut self, name: &str) -> Result<i64>;
    /// Add `delta` to counter `name` and return the new value.
    async fn add_counter(&mut self, name: &str, delta: i64) -> Result<i64>;
    /// The volume setting (format JSON).
    async fn setting(&mut self) -> Result<Option<String>>;
    /// Store the volume setting.
    async fn put_setting(&mut self, json: &str) -> Result<()>;

    // ---- directory statistics and quotas

    /// Store the empty statistics of new directory `ino` (no record exists).
    async fn create_dir_stat(&mut self, ino: Ino) -> Result<()>;
    /// Statistics of directory `ino` (None: it has no record).
    async fn dir_stat(&mut self, ino: Ino) -> Result<Option<DirStat>>;
    /// Store the statistics of directory `ino`, creating or replacing its record.
    async fn put_dir_stat(&mut self, ino: Ino, s: &DirStat) -> Result<()>;
    /// Add `d` to the statistics of directory `ino`; false, changing nothing, when it has no
    /// record.
    async fn add_dir_stat(&mut self, ino: Ino, d: &DirStat) -> Result<bool>;
    /// The directories with entries naming `ino`, and how many each has.
    async fn parents(&mut self, ino: Ino) -> Result<Vec<(Ino, u32)>>;
    /// Quota `key` of `kind` (directory inode, uid or gid).
    async fn quota(&mut self, kind: QuotaKind, key: u64) -> Result<Option<Quota>>;
    /// Store quota `key` of `kind`, creating or replacing its record.
    async fn put_quota(&mut self, kind: QuotaKind, key: u64, q: &Quota) -> Result<()>;
    /// Delete quota `key` of `kind`; false when there was none.
    async fn delete_quota(&mut self, kind: QuotaKind, key: u64) -> Result<bool>;
    /// Every quota of `kind`, by key.
    async fn quotas(&mut self, kind: QuotaKind) -> Result<Vec<(u64, Quota)>>;

    // ---- sessions

    /// Register session `sid`.
    async fn create_session(&mut self, sid: u64, expire: i64, info: &[u8]) -> Result<()>;
    /// Move the expiry of session `sid`.
    async fn refresh_session(&mut self, sid: u64, expire: i64) -> Result<()>;
    /// Delete session `sid` with what it holds: its kept-open inode records and its locks.
    async fn delete_session(&mut self, sid: u64) -> Result<()>;
    /// Every session.
    async fn sessions(&mut self) -> Result<Vec<SessionRow>>;
    /// Record that session `sid` keeps removed inode `ino` while it is open.
    async fn sustain(&mut self, sid: u64, ino: Ino) -> Result<()>;
    /// Drop that record; false when there was none.
    async fn unsustain(&mut self, sid: u64, ino: Ino) -> Result<bool>;
    /// Inodes kept by session `sid`, or by every session: (sid, ino).
    async fn sustained(&mut self, sid: Option<u64>) -> Result<Vec<(u64, Ino)>>;

    // ---- deferred deletions

    /// Queue the data of removed file `ino` (`length` bytes) for freeing.
    async fn queue_delfile(&mut self, ino: Ino, length: u64, now: i64) -> Result<()>;
    /// Take `ino` off the deletion queue.
    async fn unqueue_delfile(&mut self, ino: Ino) -> Result<()>;
    /// The deletion queue.
    async fn delfiles(&mut self) -> Result<Vec<DelFile>>;
    /// Set slices aside at `now` (compaction while the trash is on); `first` is the first new
    /// slice that replaced them.
    async fn put_delayed(&mut self, now: i64, first: u64, slices: &[(u64, u32)]) -> Result<()>;
    /// Every record of slices set aside.
    async fn delayed(&mut self) -> Result<Vec<Delayed>>;
    /// Remove a record of slices set aside and return its slices (None: gone already).
    async fn take_delayed(&mut self, key: &[u8]) -> Result<Option<Vec<(u64, u32)>>>;

    // ---- file locks

    /// BSD lock records of `ino`.
    async fn flocks(&mut self, ino: Ino) -> Result<Vec<Flock>>;
    /// Store the BSD lock of `l.sid`, `l.owner` on `ino` (replacing theirs).
    async fn put_flock(&mut self, ino: Ino, l: Flock) -> Result<()>;
    /// Remove the BSD lock of `sid`, `owner` on `ino`.
    async fn delete_flock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()>;
    /// POSIX lock records of `ino`.
    async fn plocks(&mut self, ino: Ino) -> Result<Vec<Plock>>;
    /// Store the POSIX locks of `l.sid`, `l.owner` on `ino` (replacing theirs).
    async fn put_plock(&mut self, ino: Ino, l: &Plock) -> Result<()>;
    /// Remove the POSIX locks of `sid`, `owner` on `ino`.
    async fn delete_plock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()>;

    // ---- concurrency guards of optimistic engines

    /// Make this transaction conflict with a removal of directory `dir` without writing its
    /// record (an entry `name` added while the directory's times stay as they are). Engines
    /// whose reads lock what they read have nothing to do.
    async fn guard_entry(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        let _ = (dir, name);
        Ok(())
    }
    /// Make this transaction (removing directory `dir`) conflict with every [`Txn::guard_entry`]
    /// of it.
    async fn guard_removal(&mut self, dir: Ino) -> Result<()> {
        let _ = dir;
        Ok(())
    }

    // ---- scans of the whole volume, in pages

    /// Up to about `limit` inodes from `cursor` (empty: the start).
    async fn scan_nodes(&mut self, cursor: &[u8], limit: usize) -> Result<Page<Attr>>;
    /// Up to about `limit` entries from `cursor`: (parent, name, type, inode).
    async fn scan_entries(
        &mut self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<Page<(Ino, Vec<u8>, FileType, Ino)>>;
    /// Up to about `limit` chunks from `cursor`.
    async fn scan_chunks(&mut self, cursor: &[u8], limit: usize) -> Result<Page<ChunkSlices>>;

    // ---- optional one-step paths ([`Mode::Single`])

    /// Create `a` as `name` in its parent, adding the entry and changing the directory's times
    /// (and link count for a directory; a new directory gets its empty statistics record) at
    /// `a.ctime`, in one step, when the parent is a live
    /// directory, not the trash or in it, and without the set-group-ID bit; false, changing
    /// nothing, otherwise (the core then takes the general path).
    async fn create_fast(&mut self, a: &Attr, name: &[u8]) -> Result<bool> {
        let _ = (a, name);
        Ok(false)
    }
    /// Append slice `s` to chunk `indx` of regular file `ino`, count its first reference, keep
    /// `sums`, and grow the length to `end` if shorter, setting mtime and ctime, in one step;
    /// the length before and the parent the attributes record (0 for a file with no names
    /// left), or None, changing nothing, when
    /// `ino` is not a regular file or the engine has no such path.
    #[allow(clippy::too_many_arguments)]
    async fn write_fast(
        &mut self,
        ino: Ino,
        indx: u32,
        s: &Slice,
        end: u64,
        mtime: Timestamp,
        sums: &[u8],
    ) -> Result<Option<(u64, Ino)>> {
        let _ = (ino, indx, s, end, mtime, sums);
        Ok(None)
    }

    // ---- end

    /// Commit ([`Mode::Write`], [`Mode::Single`]) or end (read modes) the transaction.
    async fn commit(self) -> Result<()>
    where
        Self: Sized;
    /// Drop every write.
    async fn rollback(self)
    where
        Self: Sized;
}

/// A metadata engine: where one volume's records live.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// A transaction of this engine.
    type Txn<'a>: Txn + 'a
    where
        Self: 'a;

    /// Engine name for messages (`sqlite3`, `mysql`, `postgres`, `tikv`, `memkv`).
    fn name(&self) -> &'static str;
    /// The meta URL without secrets, for messages.
    fn shown(&self) -> &str;
    /// How its concurrency control behaves.
    fn features(&self) -> Features;
    /// Begin a transaction.
    async fn begin(&self, mode: Mode) -> Result<Self::Txn<'_>>;
    /// Create the layout of an empty volume where missing (tables), before the setting is
    /// written. Not a transaction: some databases commit around every DDL statement.
    async fn prepare(&self) -> Result<()> {
        Ok(())
    }
    /// Whether the layout exists at all (a clear "not formatted" instead of a missing table).
    async fn formatted(&self) -> Result<bool> {
        Ok(true)
    }
    /// The volume was loaded (`writable`: by a client that may write): a chance to add what
    /// an older layout lacks.
    async fn opened(&self, writable: bool) -> Result<()> {
        let _ = writable;
        Ok(())
    }
    /// Delete every record of the volume.
    async fn destroy(&self) -> Result<()>;
    /// Make every committed transaction durable (fsync); engines whose commits are durable
    /// already do nothing.
    async fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// Periodic upkeep of the store (TiKV: advance the GC safe point), run by cleanup.
    async fn maintain(&self) -> Result<()> {
        Ok(())
    }
}
