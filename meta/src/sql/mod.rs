//! The SQL engine family, in the JuiceFS CE 1.x SQL layout. SQLite today; the MySQL and
//! PostgreSQL dialects reuse the same statements where the databases agree.
//!
//! Every operation is one transaction run by [`txn!`]: a write transaction takes the database
//! write lock up front (`BEGIN IMMEDIATE` on SQLite), and a transaction that fails with a
//! retryable code (SQLITE_BUSY, deadlock, serialization failure) is rerun from the start, a
//! bounded number of times with backoff. Bodies only touch the database, so a rerun is safe; the
//! in-memory effects of an operation (open-file table, background deletions) happen after commit.

mod db;
mod dialect;
mod pool;
mod schema;
pub(crate) mod url;

pub(crate) use db::DbError;
pub use schema::SQLITE_DDL;

use crate::error::{from_db, is_unique_violation, Error, ErrorKind, Result};
use crate::format::Format;
use crate::perm::{self, MAY_EXEC, MAY_WRITE};
use crate::rules::{
    align4k, analyze, apply_setattr, backoff, check_copy_plan, check_name, chunk_problems,
    chunk_span, copy_extent, decode_delayed, lock_poisoned, new_dir_attr, new_mode_and_gid,
    shared_refs, xattr_name, zero_end, zero_record, Fix,
};
use crate::slice::{self, Slice};
use crate::types::*;
use crate::url::MetaUrl;
use crate::{ChunkSlices, Meta, Problem, SliceDeleter, XattrFlags};
use async_trait::async_trait;
use db::{q, q_owned, Dialect, Pool, Row, Tx};
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often a transaction is tried before its conflict is returned.
const MAX_TXN_ATTEMPTS: u32 = 50;
/// How long an operation keeps retrying while the database server is unreachable.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(60);
/// Inode numbers taken from `nextInode` at once.
const INODE_BATCH: i64 = 1024;
/// Slice ids taken from `nextChunk` at once.
const SLICE_BATCH: i64 = 4096;
/// Default session heartbeat period, as JuiceFS uses. A session expires 5 heartbeats after its
/// last one, and the cleanup job (trash purge, dead sessions, pending deletions) runs every 5
/// heartbeats.
const HEARTBEAT: Duration = Duration::from_secs(12);
/// Period of flushing the space and inode counters changed by this client.
const STATS_FLUSH: Duration = Duration::from_secs(1);
/// How long SQLite waits for another process's write lock before answering BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Run `$body` in a write transaction bound to `$tx` (a `&mut Tx`), retrying conflicts (a
/// bounded number of times) and an unreachable server (for a bounded time), with backoff. The
/// body is an async block: on SQLite it never yields (statements run on the calling thread
/// while this process's writer connection is held), on the servers each statement is a round
/// trip. A body must only touch the database, so running it again is safe.
///
/// `|tx, again|` also binds `again`: true once an attempt failed with the server unreachable.
/// Such an attempt may have been applied (its COMMIT, or its single autocommit statement,
/// reached the server and only the answer was lost); a body whose second run would fail
/// because of its own first run (the name it created exists, the entry it moved is gone)
/// checks for that and reports success.
macro_rules! txn {
    ($self:expr, $op:expr, |$tx:ident| $body:block) => {
        txn!(@run begin, $self, $op, _again, |$tx| $body)
    };
    ($self:expr, $op:expr, |$tx:ident, $again:ident| $body:block) => {
        txn!(@run begin, $self, $op, $again, |$tx| $body)
    };
    (@run $acquire:ident, $self:expr, $op:expr, $again:ident, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        let started = Instant::now();
        #[allow(unused_variables, unused_assignments)]
        let mut $again = false;
        loop {
            #[allow(unused_mut)]
            let res: Result<_> = match $self.pool.$acquire(&$self.prefix).await {
                Ok(mut handle) => {
                    let r: Result<_> = async {
                        let $tx = &mut handle;
                        Ok($body)
                    }
                    .await;
                    $self.finish(handle, r).await
                }
                Err(e) => Err(from_db($op, e)),
            };
            match res {
                Err(e) if e.is_retryable() && attempt + 1 < MAX_TXN_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(op = $op, attempt, error = %e, "transaction conflict, retrying");
                    backoff(attempt).await;
                }
                Err(e) if e.is_unavailable() && started.elapsed() < UNAVAILABLE_RETRY => {
                    attempt += 1;
                    #[allow(unused_assignments)]
                    {
                        $again = true;
                    }
                    tracing::warn!(op = $op, attempt, error = %e, "metadata server unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(5)))).await;
                }
                other => break other,
            }
        }
    }};
}

/// Run `$body`, a single writing statement that is atomic on its own (PostgreSQL: one statement
/// with data-modifying CTEs), on an autocommit handle: no BEGIN and COMMIT round trips. Retried
/// like `txn!`; the handle's counter changes are applied as a commit's are.
macro_rules! autocommit {
    ($self:expr, $op:expr, |$tx:ident, $again:ident| $body:block) => {
        txn!(@run read, $self, $op, $again, |$tx| $body)
    };
}

/// Run `$body` with `$c` bound to a read handle (`&mut Tx`, autocommit), retrying for a bounded
/// time while the database server is unreachable.
macro_rules! read {
    ($self:expr, $op:expr, |$c:ident| $body:block) => {{
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            let res: Result<_> = match $self.pool.read(&$self.prefix).await {
                Ok(mut handle) => {
                    async {
                        let $c = &mut handle;
                        Ok($body)
                    }
                    .await
                }
                Err(e) => Err(from_db($op, e)),
            };
            match res {
                Err(e) if e.is_unavailable() && started.elapsed() < UNAVAILABLE_RETRY => {
                    attempt += 1;
                    tracing::warn!(op = $op, attempt, error = %e, "metadata server unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(5)))).await;
                }
                other => break other,
            }
        }
    }};
}

/// Run a read-only operation, running it again for a bounded time while the database server is
/// unreachable (a restarted server drops every connection; the pool opens new ones).
async fn again<T, F, Fut>(op: &'static str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        match f().await {
            Err(e) if e.is_unavailable() && started.elapsed() < UNAVAILABLE_RETRY => {
                attempt += 1;
                tracing::warn!(op, attempt, error = %e, "metadata server unavailable, retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(5)))).await;
            }
            other => return other,
        }
    }
}

/// A `SELECT` that locks the rows it reads when it runs in a write transaction on a server.
macro_rules! locked {
    ($tx:expr, $sql:expr) => {
        if $tx.for_update().is_empty() {
            $sql
        } else {
            concat!($sql, " FOR UPDATE")
        }
    };
}

pub(crate) mod locks;

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
    /// Gone. A small file's chunks went in the same transaction and `objects` are to be deleted;
    /// a large one's are `deferred` to a transaction of their own (`jfs_delfile`).
    Freed {
        ino: Ino,
        deferred: bool,
        objects: Vec<(u64, u32)>,
    },
}

/// Files up to this length have their chunks freed in the transaction that removes them; larger
/// ones are queued in `jfs_delfile`, so one unlink never becomes an unbounded transaction.
const INLINE_FREE_MAX: u64 = 16 * CHUNK_SIZE;

/// The SQL metadata engine.
pub struct SqlMeta {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Whether the volume has the checksum table (`jfs_tidefs_sum`).
    sums_ok: AtomicBool,
    /// `table_prefix` from the URL (several volumes in one database): table `jfs_node` is
    /// `jfs_<prefix>_node`, as JuiceFS names it.
    prefix: String,
    /// The meta URL without its password, for messages.
    shown: String,
    /// Space and inode counter changes committed here but not yet added to `jfs_counter`:
    /// every create and write would otherwise update the same two rows, serializing all
    /// clients of a volume on them. Flushed every `STATS_FLUSH` and at unmount; reads of the
    /// counters (statfs, capacity checks) add them.
    stats: Mutex<(i64, i64)>,
    format: RwLock<Option<Format>>,
    sid: AtomicU64,
    read_only: AtomicBool,
    inodes: tokio::sync::Mutex<IdRange>,
    slices: tokio::sync::Mutex<IdRange>,
    open_files: Mutex<HashMap<Ino, u32>>,
    /// Inodes this session recorded in `jfs_sustained` (unlinked while open here). Only their
    /// last close needs a transaction. An entry may outlive a rolled-back transaction; the close
    /// then finds no row and does nothing.
    sustained: Mutex<HashSet<Ino>>,
    deleter: RwLock<Option<SliceDeleter>>,
    jobs: Mutex<Vec<JoinHandle<()>>>,
    /// Object deletions after unlink/rename run here, off the request path; closing the
    /// session waits for them.
    deletions: Mutex<tokio::task::JoinSet<()>>,
    /// Names behind recently handed-out readdir cursors (see `readdir`).
    cursor_names: Mutex<CursorNames>,
    /// (inode, owner) pairs holding BSD / POSIX locks through this session: the unlock every
    /// close sends costs a transaction only for these.
    flocks: Mutex<HashSet<(Ino, u64)>>,
    plocks: Mutex<HashSet<(Ino, u64)>>,
    /// Session heartbeat period in milliseconds.
    heartbeat_ms: AtomicU64,
}

/// A bounded memory of which entry name a readdir cursor stands for, so a listing resumes
/// after an entry that was removed since (as `rm -r` does to every page it reads).
#[derive(Default)]
struct CursorNames {
    names: HashMap<(Ino, u64), Vec<u8>>,
    order: std::collections::VecDeque<(Ino, u64)>,
}

/// Cursors remembered: a few pages of many concurrent listings.
const CURSOR_NAMES: usize = 16384;

impl CursorNames {
    fn get(&self, dir: Ino, cursor: u64) -> Option<Vec<u8>> {
        self.names.get(&(dir, cursor)).cloned()
    }

    fn put(&mut self, dir: Ino, cursor: u64, name: &[u8]) {
        if self.names.insert((dir, cursor), name.to_vec()).is_none() {
            self.order.push_back((dir, cursor));
        }
        while self.order.len() > CURSOR_NAMES {
            if let Some(k) = self.order.pop_front() {
                self.names.remove(&k);
            }
        }
    }
}

fn db(op: &'static str) -> impl Fn(DbError) -> Error {
    move |e| from_db(op, e)
}

fn row_attr(r: &Row) -> Result<Attr> {
    row_attr_at(r, 0)
}

async fn get_node(c: &mut Tx<'_>, ino: Ino) -> Result<Option<Attr>> {
    let row = q(locked!(
        c,
        "SELECT inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent FROM jfs_node WHERE inode = ?"
    ))
    .bind(ino as i64)
    .fetch_optional(c).await
    .map_err(db("getattr"))?;
    row.as_ref().map(row_attr).transpose()
}

async fn must_node(c: &mut Tx<'_>, ino: Ino) -> Result<Attr> {
    get_node(c, ino)
        .await?
        .ok_or_else(|| Error::not_found(format!("inode {ino} does not exist")))
}

async fn must_dir(c: &mut Tx<'_>, ino: Ino) -> Result<Attr> {
    let a = must_node(c, ino).await?;
    if a.typ != FileType::Dir {
        return Err(Error::not_dir(format!("inode {ino} is not a directory")));
    }
    Ok(a)
}

/// Bind the 16 node columns of `a`, in the order the node statements list them.
fn bind_node<'s>(q: db::Query<'s>, a: &Attr) -> db::Query<'s> {
    bind_node_fields(q.bind(a.ino as i64).bind(i64::from(a.typ.code())), a)
}

/// Bind the 14 changeable node columns (`flags` .. `parent`) of `a`, in table order.
fn bind_node_fields<'s>(q: db::Query<'s>, a: &Attr) -> db::Query<'s> {
    q.bind(i64::from(a.flags))
        .bind(i64::from(a.mode))
        .bind(i64::from(a.uid))
        .bind(i64::from(a.gid))
        .bind(a.atime.to_micros())
        .bind(a.mtime.to_micros())
        .bind(a.ctime.to_micros())
        .bind(a.atime.sub_micro_nanos())
        .bind(a.mtime.sub_micro_nanos())
        .bind(a.ctime.sub_micro_nanos())
        .bind(i64::from(a.nlink))
        .bind(a.length as i64)
        .bind(i64::from(a.rdev))
        .bind(a.parent as i64)
}

async fn insert_node(c: &mut Tx<'_>, a: &Attr) -> Result<()> {
    bind_node(q(
        "INSERT INTO jfs_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent,access_acl_id,default_acl_id,tier_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0)",
    ), a)
    .execute(c).await
    .map_err(db("insert node"))?;
    Ok(())
}

/// The statement writing every changeable column of `a`.
fn update_node_q(a: &Attr) -> db::Query<'static> {
    bind_node_fields(
        q("UPDATE jfs_node SET flags=?,mode=?,uid=?,gid=?,atime=?,mtime=?,ctime=?,atimensec=?,mtimensec=?,ctimensec=?,nlink=?,length=?,rdev=?,parent=? WHERE inode=?"),
        a,
    )
    .bind(a.ino as i64)
}

async fn update_node(c: &mut Tx<'_>, a: &Attr) -> Result<()> {
    update_node_q(a)
        .execute(c)
        .await
        .map_err(db("update node"))?;
    Ok(())
}

/// Run writing statements that change distinct rows together (one round trip on PostgreSQL,
/// see [`db::Query::run_all`]).
async fn run_all(c: &mut Tx<'_>, op: &'static str, stmts: Vec<db::Query<'_>>) -> Result<()> {
    db::Query::run_all(stmts, c, false).await.map_err(db(op))?;
    Ok(())
}

/// A directory, its entry `name` and the entry's inode in one query (rows locked in a server
/// write transaction): (directory, edge id, inode). None when the directory or the name is
/// missing; the caller asks again step by step for the exact error.
async fn get_entry_in(
    c: &mut Tx<'_>,
    parent: Ino,
    name: &[u8],
) -> Result<Option<(Attr, i64, Attr)>> {
    let row = q(locked!(
        c,
        "SELECT p.inode,p.type,p.flags,p.mode,p.uid,p.gid,p.atime,p.mtime,p.ctime,p.atimensec,p.mtimensec,p.ctimensec,p.nlink,p.length,p.rdev,p.parent, e.id, n.inode,n.type,n.flags,n.mode,n.uid,n.gid,n.atime,n.mtime,n.ctime,n.atimensec,n.mtimensec,n.ctimensec,n.nlink,n.length,n.rdev,n.parent FROM jfs_node p JOIN jfs_edge e ON e.parent = p.inode JOIN jfs_node n ON n.inode = e.inode WHERE p.inode = ? AND e.name = ?"
    ))
    .bind(parent as i64)
    .bind(name)
    .fetch_optional(c)
    .await
    .map_err(db("lookup"))?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some((
            row_attr_at(&r, 0)?,
            r.try_get(16).map_err(db("lookup"))?,
            row_attr_at(&r, 17)?,
        ))),
    }
}

/// What a rename needs to start, read and locked in one statement on PostgreSQL: the source
/// directory, entry and inode (as [`get_entry_in`]) and the target entry with its inode, if
/// any. `None` when the source entry does not exist (the caller takes the general path, which
/// tells the reasons apart).
#[allow(clippy::type_complexity)]
async fn get_rename_pair_pg(
    c: &mut Tx<'_>,
    parent: Ino,
    name: &[u8],
    new_parent: Ino,
    new_name: &[u8],
) -> Result<
    Option<(
        (Attr, i64, Attr),
        Option<((i64, Ino, FileType), Option<Attr>)>,
    )>,
> {
    // each CTE locks its own rows; the target side may be empty, so it is outer-joined after
    let row = q(
        "WITH s AS (SELECT p.inode AS pi,p.type AS pt,p.flags AS pf,p.mode AS pm,p.uid AS pu,p.gid AS pg,p.atime AS pa,p.mtime AS pmt,p.ctime AS pc,p.atimensec AS pan,p.mtimensec AS pmn,p.ctimensec AS pcn,p.nlink AS pl,p.length AS plen,p.rdev AS pr,p.parent AS pp, e.id AS eid, n.inode,n.type,n.flags,n.mode,n.uid,n.gid,n.atime,n.mtime,n.ctime,n.atimensec,n.mtimensec,n.ctimensec,n.nlink,n.length,n.rdev,n.parent FROM jfs_node p JOIN jfs_edge e ON e.parent = p.inode JOIN jfs_node n ON n.inode = e.inode WHERE p.inode = ? AND e.name = ? FOR UPDATE), \
         d AS (SELECT id AS did, inode AS dino, type AS dtyp FROM jfs_edge WHERE parent = ? AND name = ? FOR UPDATE), \
         dn AS (SELECT inode AS di,type AS dt,flags AS df,mode AS dm,uid AS du,gid AS dg,atime AS da,mtime AS dmt,ctime AS dc,atimensec AS dan,mtimensec AS dmn,ctimensec AS dcn,nlink AS dl,length AS dlen,rdev AS dr,parent AS dp FROM jfs_node WHERE inode = (SELECT dino FROM d) FOR UPDATE) \
         SELECT s.*, d.*, dn.* FROM s LEFT JOIN d ON TRUE LEFT JOIN dn ON TRUE",
    )
    .bind(parent as i64)
    .bind(name)
    .bind(new_parent as i64)
    .bind(new_name)
    .fetch_optional(c)
    .await
    .map_err(db("rename"))?;
    let Some(r) = row else {
        return Ok(None);
    };
    let src = (
        row_attr_at(&r, 0)?,
        r.try_get(16).map_err(db("rename"))?,
        row_attr_at(&r, 17)?,
    );
    let dst = match r.try_get::<Option<i64>>(33).map_err(db("rename"))? {
        Some(id) => {
            let ino: i64 = r.try_get(34).map_err(db("rename"))?;
            let t: i64 = r.try_get(35).map_err(db("rename"))?;
            let typ = FileType::from_code(t as u8).ok_or_else(|| {
                Error::corrupt(format!("entry in {new_parent} has unknown type {t}"))
            })?;
            // a dangling target entry (no inode) is reported by the general path
            let attr = match r.try_get::<Option<i64>>(36).map_err(db("rename"))? {
                Some(_) => Some(row_attr_at(&r, 36)?),
                None => None,
            };
            Some(((id, ino as Ino, typ), attr))
        }
        None => None,
    };
    Ok(Some((src, dst)))
}

/// The entry `name` in `parent`: (edge id, inode, type).
/// After an attempt that may have been applied: the inode `ino` this call created as `name`
/// in `parent`, when the entry is there and names it.
async fn created_before(
    c: &mut Tx<'_>,
    parent: Ino,
    name: &[u8],
    ino: Ino,
) -> Result<Option<Attr>> {
    match get_edge(c, parent, name).await? {
        Some((_, found, _)) if found == ino => get_node(c, ino).await,
        _ => Ok(None),
    }
}

/// After an attempt that may have been applied: whether slice `id` (ids are never reused)
/// already has its reference row, which only its own write makes.
async fn slice_recorded(c: &mut Tx<'_>, id: u64) -> Result<bool> {
    Ok(q("SELECT 1 FROM jfs_chunk_ref WHERE chunkid = ?")
        .bind(id as i64)
        .fetch_optional(c)
        .await
        .map_err(db("write"))?
        .is_some())
}

async fn get_edge(
    c: &mut Tx<'_>,
    parent: Ino,
    name: &[u8],
) -> Result<Option<(i64, Ino, FileType)>> {
    let row = q(locked!(
        c,
        "SELECT id, inode, type FROM jfs_edge WHERE parent = ? AND name = ?"
    ))
    .bind(parent as i64)
    .bind(name)
    .fetch_optional(c)
    .await
    .map_err(db("lookup"))?;
    match row {
        None => Ok(None),
        Some(r) => {
            let id: i64 = r.try_get(0).map_err(db("lookup"))?;
            let ino: i64 = r.try_get(1).map_err(db("lookup"))?;
            let t: i64 = r.try_get(2).map_err(db("lookup"))?;
            let typ = FileType::from_code(t as u8)
                .ok_or_else(|| Error::corrupt(format!("entry in {parent} has unknown type {t}")))?;
            Ok(Some((id, ino as u64, typ)))
        }
    }
}

/// Change a directory for an entry added or removed in it (mtime, ctime, `nlink_delta`) and
/// return its attributes after the change: one statement instead of a read and a write. The
/// caller checks the returned type and rules; an error rolls the change back with the rest.
async fn touch_dir(c: &mut Tx<'_>, ino: Ino, now: Timestamp, nlink_delta: i64) -> Result<Attr> {
    const SET: &str = "UPDATE jfs_node SET mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ?, nlink = nlink + ? WHERE inode = ?";
    let update = |sql| {
        q(sql)
            .bind(now.to_micros())
            .bind(now.to_micros())
            .bind(now.sub_micro_nanos())
            .bind(now.sub_micro_nanos())
            .bind(nlink_delta)
            .bind(ino as i64)
    };
    let row = if c.dialect() == Dialect::Mysql {
        // no UPDATE ... RETURNING on MySQL: the update locks the row, the read sees it
        update(SET)
            .execute(c)
            .await
            .map_err(db("update directory"))?;
        get_node(c, ino).await?.map(Ok)
    } else {
        update(concat!(
            "UPDATE jfs_node SET mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ?, nlink = nlink + ? WHERE inode = ?",
            " RETURNING inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent"
        ))
        .fetch_optional(c)
        .await
        .map_err(db("update directory"))?
        .map(|r| row_attr(&r))
    };
    let a = match row {
        Some(a) => a?,
        None => return Err(Error::not_found(format!("inode {ino} does not exist"))),
    };
    if a.typ != FileType::Dir {
        return Err(Error::not_dir(format!("inode {ino} is not a directory")));
    }
    Ok(a)
}

async fn insert_edge(
    c: &mut Tx<'_>,
    parent: Ino,
    name: &[u8],
    ino: Ino,
    typ: FileType,
) -> Result<()> {
    q("INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?,?,?,?)")
        .bind(parent as i64)
        .bind(name)
        .bind(ino as i64)
        .bind(i64::from(typ.code()))
        .execute(c)
        .await
        .map_err(|e| {
            // the UNIQUE (parent, name) index answers "is the name taken" for every caller
            if is_unique_violation(&e) {
                Error::exists("entry exists")
            } else {
                from_db("insert entry", e)
            }
        })?;
    Ok(())
}

/// The entry `name` in `parent` with its inode's attributes, in one query: (edge id, attr).
async fn get_entry(c: &mut Tx<'_>, parent: Ino, name: &[u8]) -> Result<Option<(i64, Attr)>> {
    let row = q(locked!(
        c,
        "SELECT e.id, n.inode,n.type,n.flags,n.mode,n.uid,n.gid,n.atime,n.mtime,n.ctime,n.atimensec,n.mtimensec,n.ctimensec,n.nlink,n.length,n.rdev,n.parent FROM jfs_edge e JOIN jfs_node n ON n.inode = e.inode WHERE e.parent = ? AND e.name = ?"
    ))
    .bind(parent as i64)
    .bind(name)
    .fetch_optional(c).await
    .map_err(db("lookup"))?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some((
            r.try_get(0).map_err(db("lookup"))?,
            row_attr_at(&r, 1)?,
        ))),
    }
}

/// A new inode and its entry in one statement (PostgreSQL: a data-modifying CTE), one round trip
/// instead of two. A taken name fails on the UNIQUE (parent, name) index: EEXIST.
async fn insert_node_and_edge(c: &mut Tx<'_>, a: &Attr, name: &[u8]) -> Result<()> {
    bind_node(q(
        "WITH n AS (INSERT INTO jfs_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent,access_acl_id,default_acl_id,tier_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0)) INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?,?,?,?)",
    ), a)
    .bind(a.parent as i64)
    .bind(name)
    .bind(a.ino as i64)
    .bind(i64::from(a.typ.code()))
    .execute(c)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::exists("entry exists")
        } else {
            from_db("insert entry", e)
        }
    })?;
    Ok(())
}

/// `name` in `parent` with its inode's attributes, in one query that also tells a missing or
/// non-directory parent (ENOENT / ENOTDIR) from a missing entry.
async fn lookup_joined(c: &mut Tx<'_>, parent: Ino, name: &[u8]) -> Result<Attr> {
    let row = q(
        "SELECT p.type, n.inode,n.type,n.flags,n.mode,n.uid,n.gid,n.atime,n.mtime,n.ctime,n.atimensec,n.mtimensec,n.ctimensec,n.nlink,n.length,n.rdev,n.parent FROM jfs_node p LEFT JOIN jfs_edge e ON e.parent = p.inode AND e.name = ? LEFT JOIN jfs_node n ON n.inode = e.inode WHERE p.inode = ?",
    )
    .bind(name)
    .bind(parent as i64)
    .fetch_optional(c)
    .await
    .map_err(db("lookup"))?;
    let Some(r) = row else {
        return Err(Error::not_found(format!("inode {parent} does not exist")));
    };
    let ptype: i64 = r.try_get(0).map_err(db("lookup"))?;
    if ptype != i64::from(FileType::Dir.code()) {
        return Err(Error::not_dir(format!("inode {parent} is not a directory")));
    }
    if r.try_get::<Option<i64>>(1).map_err(db("lookup"))?.is_none() {
        return Err(Error::not_found("no such entry"));
    }
    row_attr_at(&r, 1)
}

fn delete_edge_q(id: i64) -> db::Query<'static> {
    q("DELETE FROM jfs_edge WHERE id = ?").bind(id)
}

async fn delete_edge(c: &mut Tx<'_>, id: i64) -> Result<()> {
    delete_edge_q(id)
        .execute(c)
        .await
        .map_err(db("delete entry"))?;
    Ok(())
}

async fn dir_is_empty(c: &mut Tx<'_>, ino: Ino) -> Result<bool> {
    let row = q("SELECT 1 FROM jfs_edge WHERE parent = ? LIMIT 1")
        .bind(ino as i64)
        .fetch_optional(c)
        .await
        .map_err(db("readdir"))?;
    Ok(row.is_none())
}

async fn counter_add(c: &mut Tx<'_>, name: &'static str, delta: i64) -> Result<i64> {
    if delta != 0 {
        // one statement when the counter exists (always, but for nextTrash on old volumes)
        if c.dialect() == Dialect::Mysql {
            let n = q("UPDATE jfs_counter SET value = value + ? WHERE name = ?")
                .bind(delta)
                .bind(name)
                .execute(c)
                .await
                .map_err(db("counter"))?
                .rows_affected();
            if n > 0 {
                let row = q("SELECT value FROM jfs_counter WHERE name = ?")
                    .bind(name)
                    .fetch_optional(c)
                    .await
                    .map_err(db("counter"))?;
                if let Some(r) = row {
                    return r.try_get(0).map_err(db("counter"));
                }
            }
        } else {
            let row = q("UPDATE jfs_counter SET value = value + ? WHERE name = ? RETURNING value")
                .bind(delta)
                .bind(name)
                .fetch_optional(c)
                .await
                .map_err(db("counter"))?;
            if let Some(r) = row {
                return r.try_get(0).map_err(db("counter"));
            }
        }
    }
    let row = q(locked!(c, "SELECT value FROM jfs_counter WHERE name = ?"))
        .bind(name)
        .fetch_optional(c)
        .await
        .map_err(db("counter"))?;
    let old: i64 = match row {
        Some(r) => r.try_get(0).map_err(db("counter"))?,
        None => {
            q("INSERT INTO jfs_counter (name, value) VALUES (?, 0)")
                .bind(name)
                .execute(c)
                .await
                .map_err(db("counter"))?;
            0
        }
    };
    if delta != 0 {
        q("UPDATE jfs_counter SET value = ? WHERE name = ?")
            .bind(old + delta)
            .bind(name)
            .execute(c)
            .await
            .map_err(db("counter"))?;
    }
    Ok(old + delta)
}

async fn read_chunk_conn(c: &mut Tx<'_>, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
    let row = q(locked!(
        c,
        "SELECT slices FROM jfs_chunk WHERE inode = ? AND indx = ?"
    ))
    .bind(ino as i64)
    .bind(i64::from(indx))
    .fetch_optional(c)
    .await
    .map_err(db("read chunk"))?;
    match row {
        None => Ok(Vec::new()),
        Some(r) => {
            let buf: Vec<u8> = r.try_get(0).map_err(db("read chunk"))?;
            slice::decode_all(&buf)
        }
    }
}

/// Append slice records to chunk `indx` of `ino`. `fresh`: the chunk row is most likely missing
/// (nothing was written that far yet), so MySQL tries the insert first.
async fn append_slices(
    c: &mut Tx<'_>,
    ino: Ino,
    indx: u32,
    records: &[Slice],
    fresh: bool,
) -> Result<()> {
    let buf = slice::encode_all(records);
    if let Some(sql) = dialect::upsert_chunk(c.dialect()) {
        q(sql)
            .bind(ino as i64)
            .bind(i64::from(indx))
            .bind(buf)
            .execute(c)
            .await
            .map_err(db("write chunk"))?;
        return Ok(());
    }
    if fresh {
        // a duplicate fails this statement only; the transaction goes on with the append
        let inserted = q("INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?,?,?)")
            .bind(ino as i64)
            .bind(i64::from(indx))
            .bind(&buf)
            .execute(c)
            .await;
        match inserted {
            Ok(_) => return Ok(()),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(from_db("write chunk", e)),
        }
    }
    let n = q("UPDATE jfs_chunk SET slices = CONCAT(slices, ?) WHERE inode = ? AND indx = ?")
        .bind(&buf)
        .bind(ino as i64)
        .bind(i64::from(indx))
        .execute(c)
        .await
        .map_err(db("write chunk"))?
        .rows_affected();
    if n == 0 {
        q("INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?,?,?)")
            .bind(ino as i64)
            .bind(i64::from(indx))
            .bind(buf)
            .execute(c)
            .await
            .map_err(db("write chunk"))?;
    }
    Ok(())
}

/// Drop the chunk rows of a removed file (and its `jfs_delfile` entry), collecting the slices
/// that lost their last reference.
async fn free_chunks(
    c: &mut Tx<'_>,
    ino: Ino,
    queued: bool,
    freed: &mut Vec<(u64, u32)>,
) -> Result<()> {
    let rows = q("SELECT slices FROM jfs_chunk WHERE inode = ?")
        .bind(ino as i64)
        .fetch_all(c)
        .await
        .map_err(db("free file data"))?;
    for r in rows {
        let buf: Vec<u8> = r.try_get(0).map_err(db("free file data"))?;
        unref_slices(c, &slice::decode_all(&buf)?, freed).await?;
    }
    let mut stmts = vec!["DELETE FROM jfs_chunk WHERE inode = ?"];
    if queued {
        stmts.push("DELETE FROM jfs_delfile WHERE inode = ?");
    }
    for sql in stmts {
        q(sql)
            .bind(ino as i64)
            .execute(c)
            .await
            .map_err(db("free file data"))?;
    }
    Ok(())
}

/// Drop one reference from each data slice in `records`; returns those that lost their last one.
async fn unref_slices(
    c: &mut Tx<'_>,
    records: &[Slice],
    freed: &mut Vec<(u64, u32)>,
) -> Result<()> {
    for s in records.iter().filter(|s| s.id != 0) {
        // the last reference (the common case) goes in one statement
        let gone = q("DELETE FROM jfs_chunk_ref WHERE chunkid = ? AND refs <= 1")
            .bind(s.id as i64)
            .execute(c)
            .await
            .map_err(db("unref slice"))?
            .rows_affected();
        if gone > 0 {
            freed.push((s.id, s.size));
            continue;
        }
        let kept = q("UPDATE jfs_chunk_ref SET refs = refs - 1 WHERE chunkid = ?")
            .bind(s.id as i64)
            .execute(c)
            .await
            .map_err(db("unref slice"))?
            .rows_affected();
        if kept == 0 {
            // no reference row at all: nobody else can hold it
            freed.push((s.id, s.size));
        }
    }
    Ok(())
}

impl SqlMeta {
    /// Open an SQLite volume database (created by `init` when missing). Connections open on
    /// first use, so a bad path is reported by the first operation with a clear message.
    pub(crate) async fn open_sqlite(url: &MetaUrl) -> Result<Self> {
        let (path, _query) = url.sqlite_path()?;
        let shown = format!("sqlite3://{path}");
        let pool = Pool::Sqlite(db::SqliteConns::new(path, open_existing));
        Ok(Self::with_pool(pool, String::new(), shown))
    }

    /// Open a volume on a MySQL-protocol server or PostgreSQL (`url::connect` has the URL
    /// forms). The first connection is made here, so an unreachable server is reported at once.
    pub(crate) async fn open_server(url: &str) -> Result<Self> {
        let server = url::connect(url).await?;
        Ok(Self::with_pool(server.pool, server.prefix, server.shown))
    }

    fn with_pool(pool: Pool, prefix: String, shown: String) -> Self {
        SqlMeta {
            inner: Arc::new(Inner {
                pool,
                prefix,
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
                sums_ok: AtomicBool::new(false),
                jobs: Mutex::new(Vec::new()),
                deletions: Mutex::new(tokio::task::JoinSet::new()),
                cursor_names: Mutex::new(CursorNames::default()),
                flocks: Mutex::new(HashSet::new()),
                plocks: Mutex::new(HashSet::new()),
                heartbeat_ms: AtomicU64::new(HEARTBEAT.as_millis() as u64),
            }),
        }
    }
}

fn open_existing(path: &str) -> std::result::Result<Connection, DbError> {
    open_conn(path, false)
}

/// Open a connection to the volume database with the settings every connection needs: WAL
/// (readers and the writer do not block each other), synchronous=NORMAL (a commit reaches the
/// WAL, `Meta::sync` makes it durable) and a busy timeout for other processes' writers.
fn open_conn(path: &str, create: bool) -> std::result::Result<Connection, DbError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.set_prepared_statement_cache_capacity(128);
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(c)
}

impl Inner {
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

    /// Make sure the checksum table exists (volumes formatted by JuiceFS or an older tidefs
    /// lack it); checksums are kept and used only when it does.
    async fn ensure_sums_table(&self) {
        // look first: `CREATE TABLE IF NOT EXISTS` on an existing table makes PostgreSQL send a
        // notice, which would show in every command's output
        if self.has_sums_table().await {
            self.sums_ok.store(true, Ordering::Relaxed);
            return;
        }
        if !self.read_only.load(Ordering::Relaxed) {
            let d = self.pool.dialect();
            let made: Result<()> = read!(self, "checksum table", |c| {
                q(dialect::sums_ddl(d))
                    .execute(c)
                    .await
                    .map_err(db("checksum table"))?;
            });
            if let Err(e) = made {
                tracing::debug!(error = %e, "cannot create the checksum table");
            }
        }
        let there = self.has_sums_table().await;
        if !there {
            tracing::info!(
                "this volume has no checksum table: blocks written now are not checksummed"
            );
        }
        self.sums_ok.store(there, Ordering::Relaxed);
    }

    async fn has_sums_table(&self) -> bool {
        let r: Result<()> = read!(self, "checksum table", |c| {
            q("SELECT id FROM jfs_tidefs_sum WHERE id = 0")
                .fetch_optional(c)
                .await
                .map_err(db("checksum table"))?;
        });
        r.is_ok()
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

    /// A read handle (statements outside a transaction each see the latest commit).
    async fn conn(&self) -> Result<Tx<'_>> {
        self.pool
            .read(&self.prefix)
            .await
            .map_err(|e| self.open_error(e))
    }

    /// A failure to reach the database, said in terms of the volume.
    fn open_error(&self, e: DbError) -> Error {
        if let (Pool::Sqlite(s), DbError::Sqlite(_)) = (&self.pool, &e) {
            if !std::path::Path::new(&s.path).exists() {
                return Error::config(format!(
                    "no volume at {}: the database file does not exist; run `tidefs format` first",
                    self.shown
                ));
            }
        }
        let err = from_db("connect", e);
        Error::new(
            err.kind(),
            format!("cannot use the metadata database {}: {err}", self.shown),
        )
    }

    /// End a write transaction: commit what succeeded (and hand its counter changes to the
    /// shared tally), roll back what failed.
    async fn finish<T>(&self, tx: Tx<'_>, res: Result<T>) -> Result<T> {
        match res {
            Ok(v) => {
                let delta = (tx.space_delta, tx.inode_delta);
                tx.commit().await.map_err(db("commit"))?;
                if delta != (0, 0) {
                    if let Ok(mut s) = self.stats.lock() {
                        s.0 += delta.0;
                        s.1 += delta.1;
                    }
                }
                Ok(v)
            }
            Err(e) => {
                tx.rollback().await;
                Err(e)
            }
        }
    }

    fn heartbeat_period(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed).max(100))
    }

    /// Seconds a session lives after a heartbeat: 5 heartbeats.
    fn session_ttl_secs(&self) -> i64 {
        (self.heartbeat_period() * 5).as_secs().max(1) as i64
    }

    /// Counter changes not yet in `jfs_counter`: (space, inodes).
    fn pending_stats(&self) -> (i64, i64) {
        self.stats.lock().map(|s| *s).unwrap_or((0, 0))
    }

    /// Add the pending counter changes to `jfs_counter`.
    async fn flush_stats(&self) -> Result<()> {
        let (space, inodes) = match self.stats.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return Err(lock_poisoned()),
        };
        if (space, inodes) == (0, 0) {
            return Ok(());
        }
        let res = txn!(self, "flush counters", |tx| {
            counter_add(tx, "usedSpace", space).await?;
            counter_add(tx, "totalInodes", inodes).await?;
        });
        if res.is_err() {
            // keep them for the next flush
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
            let end = txn!(self, counter, |tx| {
                counter_add(tx, counter, batch).await?
            })?;
            r.next = (end - batch) as u64;
            r.end = end as u64;
        }
        let id = r.next;
        r.next += 1;
        Ok(id)
    }

    /// The trash directory for the current hour, created when missing.
    async fn trash_dir(&self, c: &mut Tx<'_>, now: Timestamp) -> Result<Ino> {
        let name = chrono::DateTime::from_timestamp(now.sec, 0)
            .map(|t| t.format("%Y-%m-%d-%H").to_string())
            .ok_or_else(|| Error::invalid("clock out of range"))?;
        if let Some((_, ino, _)) = get_edge(c, TRASH_INODE, name.as_bytes()).await? {
            return Ok(ino);
        }
        let mut root = match get_node(c, TRASH_INODE).await? {
            Some(a) => a,
            None => {
                let a = new_dir_attr(TRASH_INODE, 0o555, ROOT_INODE, now);
                insert_node(c, &a).await?;
                a
            }
        };
        let n = counter_add(c, "nextTrash", 1).await?;
        let ino = TRASH_INODE + n as u64;
        insert_node(c, &new_dir_attr(ino, 0o555, TRASH_INODE, now)).await?;
        insert_edge(c, TRASH_INODE, name.as_bytes(), ino, FileType::Dir).await?;
        // counted like any inode, so purging it later (rmdir) balances the count
        c.inode_delta += 1;
        root.nlink += 1;
        root.mtime = now;
        root.ctime = now;
        update_node(c, &root).await?;
        Ok(ino)
    }

    /// Remove one name of `attr` (its entry is already deleted). Moves the last name of a file
    /// to the trash when the volume keeps one.
    /// Remove the entry `eid` naming `attr` (in directory `parent`, called `name`) and drop
    /// the link it held: the inode is kept (more links), moved to the trash, kept while open
    /// here, or freed. `touch`, the entry's directory with its new times, is written with the
    /// rest (one round trip on PostgreSQL).
    #[allow(clippy::too_many_arguments)]
    async fn drop_link(
        &self,
        c: &mut Tx<'_>,
        eid: i64,
        mut attr: Attr,
        touch: Option<&Attr>,
        parent: Ino,
        name: &[u8],
        now: Timestamp,
    ) -> Result<Removed> {
        attr.ctime = now;
        let mut stmts = vec![delete_edge_q(eid)];
        if let Some(p) = touch {
            stmts.push(update_node_q(p));
        }
        if attr.nlink > 1 {
            attr.nlink -= 1;
            stmts.push(update_node_q(&attr));
            run_all(c, "unlink", stmts).await?;
            return Ok(Removed::Kept);
        }
        // trash directories are the only inodes numbered at or above TRASH_INODE
        let in_trash = parent >= TRASH_INODE;
        if self.trash_days() > 0 && attr.typ == FileType::File && !in_trash {
            run_all(c, "unlink", stmts).await?;
            let dir = self.trash_dir(c, now).await?;
            let mut tname = format!("{}-{}-", parent, attr.ino).into_bytes();
            tname.extend_from_slice(name);
            tname.truncate(MAX_NAME_LEN);
            if get_edge(c, dir, &tname).await?.is_some() {
                tname.truncate(MAX_NAME_LEN - 12);
                tname.extend_from_slice(format!("-{}", now.nsec).as_bytes());
            }
            insert_edge(c, dir, &tname, attr.ino, attr.typ).await?;
            attr.parent = dir;
            update_node(c, &attr).await?;
            return Ok(Removed::Kept);
        }
        attr.nlink = 0;
        if attr.typ == FileType::File && self.is_open(attr.ino) {
            stmts.push(update_node_q(&attr));
            stmts.push(
                q(dialect::sustain(c.dialect()))
                    .bind(self.sid.load(Ordering::Relaxed) as i64)
                    .bind(attr.ino as i64),
            );
            run_all(c, "unlink", stmts).await?;
            if let Ok(mut set) = self.sustained.lock() {
                set.insert(attr.ino);
            }
            return Ok(Removed::Sustained);
        }
        // a small file's data goes in this transaction; a big one's is queued in jfs_delfile
        // and freed after commit
        let deferred = attr.typ == FileType::File && attr.length > INLINE_FREE_MAX;
        let inline = attr.typ == FileType::File && !deferred;
        stmts.extend(self.free_inode_q(c, &attr, now, deferred));
        let mut objects = Vec::new();
        if inline && c.dialect() == Dialect::Postgres {
            stmts.push(
                q("DELETE FROM jfs_chunk WHERE inode = ? RETURNING slices").bind(attr.ino as i64),
            );
            let rows = db::Query::run_all(stmts, c, true)
                .await
                .map_err(db("delete inode"))?;
            for r in rows {
                let buf: Vec<u8> = r.try_get(0).map_err(db("free file data"))?;
                unref_slices(c, &slice::decode_all(&buf)?, &mut objects).await?;
            }
        } else {
            run_all(c, "delete inode", stmts).await?;
            if inline {
                free_chunks(c, attr.ino, false, &mut objects).await?;
            }
        }
        Ok(Removed::Freed {
            ino: attr.ino,
            deferred,
            objects,
        })
    }

    /// The statements deleting an inode with no names (and counting it gone); a file's data is
    /// queued in `jfs_delfile` when `queue` (freed after commit by `free_file_data`).
    fn free_inode_q(
        &self,
        c: &mut Tx<'_>,
        attr: &Attr,
        now: Timestamp,
        queue: bool,
    ) -> Vec<db::Query<'static>> {
        let ino = attr.ino as i64;
        let mut stmts = vec![
            q("DELETE FROM jfs_node WHERE inode = ?").bind(ino),
            q("DELETE FROM jfs_xattr WHERE inode = ?").bind(ino),
        ];
        match attr.typ {
            FileType::Symlink => stmts.push(q("DELETE FROM jfs_symlink WHERE inode = ?").bind(ino)),
            FileType::Dir => stmts.push(q("DELETE FROM jfs_dir_stats WHERE inode = ?").bind(ino)),
            _ => {}
        }
        if attr.typ == FileType::File {
            if queue {
                stmts.push(
                    q(dialect::queue_delfile(c.dialect()))
                        .bind(ino)
                        .bind(attr.length as i64)
                        .bind(now.sec),
                );
            }
            c.space_delta -= align4k(attr.length);
        }
        c.inode_delta -= 1;
        stmts
    }

    /// Delete an inode with no names; a file's data is queued in `jfs_delfile` and freed after
    /// commit by `free_file_data`.
    async fn free_inode(&self, c: &mut Tx<'_>, attr: &Attr, now: Timestamp) -> Result<()> {
        let stmts = self.free_inode_q(c, attr, now, true);
        run_all(c, "delete inode", stmts).await
    }

    /// Drop the chunks of a deleted file and the objects nobody references any more.
    async fn free_file_data(&self, ino: Ino) -> Result<()> {
        let freed = txn!(self, "free file data", |tx| {
            let mut freed = Vec::new();
            free_chunks(tx, ino, true, &mut freed).await?;
            freed
        })?;
        self.delete_objects(freed).await;
        Ok(())
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
        let sums_ok = self.sums_ok.load(Ordering::Relaxed);
        for (id, size) in freed {
            if let Err(e) = deleter(id, size).await {
                tracing::warn!(slice = id, error = %e, "deleting objects of a freed slice failed; left for gc");
                continue;
            }
            if sums_ok {
                let gone: Result<()> = read!(self, "drop checksums", |c| {
                    q("DELETE FROM jfs_tidefs_sum WHERE id = ?")
                        .bind(id as i64)
                        .execute(c)
                        .await
                        .map_err(db("drop checksums"))?;
                });
                if let Err(e) = gone {
                    tracing::debug!(slice = id, error = %e, "dropping checksums of a freed slice failed; gc --delete drops them");
                }
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
            // The metadata change is committed: the caller need not wait for the objects.
            // A deletion lost to a crash leaves orphans for `gc`, never missing data.
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

    /// Wait for the object deletions under way.
    async fn drain_deletions(&self) {
        let mut set = match self.deletions.lock() {
            Ok(mut set) => std::mem::take(&mut *set),
            Err(_) => return,
        };
        while set.join_next().await.is_some() {}
    }

    /// Whether `ino` is `ancestor` or lies below it.
    async fn is_below(&self, c: &mut Tx<'_>, ancestor: Ino, mut ino: Ino) -> Result<bool> {
        let mut steps = 0;
        while ino != ROOT_INODE && ino != 0 {
            if ino == ancestor {
                return Ok(true);
            }
            let Some(a) = get_node(c, ino).await? else {
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

    /// Remove session `sid` and what it held: its locks, and the inodes it kept alive after
    /// their last name went (freed here; their data after commit). Returns those files.
    async fn remove_session(&self, c: &mut Tx<'_>, sid: i64, now: Timestamp) -> Result<Vec<Ino>> {
        let rows = q("SELECT inode FROM jfs_sustained WHERE sid = ?")
            .bind(sid)
            .fetch_all(c)
            .await
            .map_err(db("remove session"))?;
        let mut files = Vec::new();
        for r in rows {
            let ino = r.try_get::<i64>(0).map_err(db("remove session"))? as u64;
            if let Some(a) = get_node(c, ino).await? {
                if a.nlink == 0 {
                    self.free_inode(c, &a, now).await?;
                    files.push(ino);
                }
            }
        }
        for sql in [
            "DELETE FROM jfs_sustained WHERE sid = ?",
            "DELETE FROM jfs_flock WHERE sid = ?",
            "DELETE FROM jfs_plock WHERE sid = ?",
            "DELETE FROM jfs_session2 WHERE sid = ?",
        ] {
            q(sql)
                .bind(sid)
                .execute(c)
                .await
                .map_err(db("remove session"))?;
        }
        Ok(files)
    }

    async fn heartbeat(&self) -> Result<()> {
        let sid = self.sid.load(Ordering::Relaxed);
        if sid == 0 {
            return Ok(());
        }
        let expire = Timestamp::now().sec + self.session_ttl_secs();
        txn!(self, "session heartbeat", |tx| {
            q("UPDATE jfs_session2 SET expire = ? WHERE sid = ?")
                .bind(expire)
                .bind(sid as i64)
                .execute(tx)
                .await
                .map_err(db("session heartbeat"))?;
        })
    }

    /// Purge expired trash, files of dead sessions and pending deletions.
    async fn cleanup(self: &Arc<Self>) -> Result<u64> {
        let mut done = 0u64;
        let now = Timestamp::now();
        // dead sessions: their unlinked-but-open files and locks
        let dead: Vec<i64> = {
            let mut c = self.conn().await?;
            q("SELECT sid FROM jfs_session2 WHERE expire < ?")
                .bind(now.sec)
                .fetch_all(&mut c)
                .await
                .map_err(db("cleanup sessions"))?
                .iter()
                .filter_map(|r| r.try_get::<i64>(0).ok())
                .collect()
        };
        for sid in dead {
            let inodes = txn!(self, "cleanup session", |tx| {
                self.remove_session(tx, sid, now).await?
            })?;
            for ino in inodes {
                self.free_file_data(ino).await?;
                done += 1;
            }
        }
        // pending deletions left by a crash between unlink and freeing
        let pending: Vec<i64> = {
            let mut c = self.conn().await?;
            q("SELECT inode FROM jfs_delfile WHERE expire < ?")
                .bind(now.sec - 60)
                .fetch_all(&mut c)
                .await
                .map_err(db("cleanup deletions"))?
                .iter()
                .filter_map(|r| r.try_get::<i64>(0).ok())
                .collect()
        };
        for ino in pending {
            self.free_file_data(ino as u64).await?;
            done += 1;
        }
        // expired trash hours
        let days = self.trash_days();
        let entries: Vec<(Vec<u8>, i64)> = {
            let mut c = self.conn().await?;
            q("SELECT name, inode FROM jfs_edge WHERE parent = ?")
                .bind(TRASH_INODE as i64)
                .fetch_all(&mut c)
                .await
                .map_err(db("cleanup trash"))?
                .iter()
                .filter_map(|r| Some((r.try_get::<Vec<u8>>(0).ok()?, r.try_get::<i64>(1).ok()?)))
                .collect()
        };
        for (name, dir) in entries {
            let Ok(hour) = chrono::NaiveDateTime::parse_from_str(
                &format!("{}:00:00", String::from_utf8_lossy(&name)),
                "%Y-%m-%d-%H:%M:%S",
            ) else {
                continue;
            };
            let age = now.sec - hour.and_utc().timestamp();
            if age < i64::from(days) * 86400 + 3600 {
                continue;
            }
            done += self.purge_trash_dir(dir as u64, &name).await?;
        }
        // slices compaction set aside, once the trash time is over
        self.purge_delayed(now.sec - i64::from(days) * 86400)
            .await?;
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
                    // a directory that ended up in the trash: empty it first
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
        let parent = get_parent_of(self, dir).await?;
        match self.rmdir(&ctx, parent, name).await {
            Ok(()) | Err(_) => Ok(n),
        }
    }
}

async fn get_parent_of(inner: &Inner, ino: Ino) -> Result<Ino> {
    let mut c = inner.conn().await?;
    Ok(must_node(&mut c, ino).await?.parent)
}

// The POSIX operations, on `Inner` so background jobs (holding an `Arc<Inner>`) can use them.
impl Inner {
    async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        let mut c = self.conn().await?;
        let special = name == b"."
            || name == b".."
            || (parent == ROOT_INODE && name == TRASH_NAME.as_bytes());
        if !ctx.check_permission && !special {
            // The common case in one query: entry and inode joined. The parent is read only
            // when the name is missing, to tell ENOENT from ENOTDIR.
            if c.dialect() != Dialect::Sqlite {
                // one round trip for hit and miss alike: the parent joined with the entry
                return lookup_joined(&mut c, parent, name).await;
            }
            if let Some((_, a)) = get_entry(&mut c, parent, name).await? {
                return Ok(a);
            }
            must_dir(&mut c, parent).await?;
            return Err(Error::not_found("no such entry"));
        }
        let p = must_dir(&mut c, parent).await?;
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
            return must_node(&mut c, up).await;
        }
        if parent == ROOT_INODE && name == TRASH_NAME.as_bytes() {
            if let Some(a) = get_node(&mut c, TRASH_INODE).await? {
                return Ok(a);
            }
        }
        let Some((_, ino, _)) = get_edge(&mut c, parent, name).await? else {
            return Err(Error::not_found("no such entry"));
        };
        get_node(&mut c, ino)
            .await?
            .ok_or_else(|| Error::not_found(format!("entry names missing inode {ino}")))
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
        if self.pool.dialect() == Dialect::Postgres
            && typ != FileType::Symlink
            && fmt.inodes == 0
            && (!ctx.check_permission || ctx.uid == 0)
            && parent != TRASH_INODE
            && !(parent == ROOT_INODE && name == TRASH_NAME.as_bytes())
        {
            // The common case in one statement (no BEGIN/COMMIT round trips). It changes
            // nothing when any rule needs a closer look (no such directory, removed, in the
            // trash, set-group-ID); the transaction below then decides.
            let made = autocommit!(self, "mknod", |tx, again| {
                if again && created_before(tx, parent, name, ino).await?.is_some() {
                    return Ok(true);
                }
                let sql = "WITH p AS (UPDATE jfs_node SET mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ?, nlink = nlink + ? WHERE inode = ? AND type = 2 AND nlink > 0 AND parent <> ? AND (mode & 1024) = 0 RETURNING inode), \
                    n AS (INSERT INTO jfs_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent,access_acl_id,default_acl_id,tier_id) SELECT ?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0 FROM p), \
                    e AS (INSERT INTO jfs_edge (parent, name, inode, type) SELECT inode, ?, ?, ? FROM p) \
                    SELECT inode FROM p";
                let row = bind_node(
                    q(sql)
                        .bind(now.to_micros())
                        .bind(now.to_micros())
                        .bind(now.sub_micro_nanos())
                        .bind(now.sub_micro_nanos())
                        .bind(i64::from(typ == FileType::Dir))
                        .bind(parent as i64)
                        .bind(TRASH_INODE as i64),
                    &plain,
                )
                .bind(name)
                .bind(ino as i64)
                .bind(i64::from(typ.code()))
                .fetch_optional(tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::exists("entry exists")
                    } else {
                        from_db("mknod", e)
                    }
                })?;
                if row.is_some() {
                    tx.inode_delta += 1;
                }
                row.is_some()
            })?;
            if made {
                return Ok(plain);
            }
        }
        txn!(self, "mknod", |tx, again| {
            if again {
                if let Some(made) = created_before(tx, parent, name, ino).await? {
                    return Ok(made);
                }
            }
            let dir_delta = i64::from(typ == FileType::Dir);
            let p = touch_dir(tx, parent, now, dir_delta).await?;
            if i64::from(p.nlink) - dir_delta == 0 {
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
                let used = counter_add(tx, "totalInodes", 0).await?
                    + self.pending_stats().1
                    + tx.inode_delta;
                if used as u64 >= fmt.inodes {
                    return Err(Error::new(
                        ErrorKind::NoSpace,
                        "inode limit of the volume reached",
                    ));
                }
            }
            let (mode, gid) = new_mode_and_gid(ctx, &p, typ, plain.mode);
            let attr = Attr { mode, gid, ..plain };
            if tx.dialect() == Dialect::Postgres {
                insert_node_and_edge(tx, &attr, name).await?;
            } else {
                insert_node(tx, &attr).await?;
                // the UNIQUE (parent, name) index is the existence check
                insert_edge(tx, parent, name, ino, typ).await?;
            }
            if typ == FileType::Symlink {
                q("INSERT INTO jfs_symlink (inode, target) VALUES (?, ?)")
                    .bind(ino as i64)
                    .bind(target)
                    .execute(tx)
                    .await
                    .map_err(db("symlink"))?;
            }
            tx.inode_delta += 1;
            attr
        })
    }

    async fn unlink(self: &Arc<Self>, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        let now = Timestamp::now();
        let mut found = false;
        let removed = txn!(self, "unlink", |tx, again| {
            let Some((mut p, eid, attr)) = get_entry_in(tx, parent, name).await? else {
                if again && found {
                    // gone since an attempt that may have been applied
                    return Ok(Removed::Kept);
                }
                let p = must_dir(tx, parent).await?;
                perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
                return Err(Error::not_found("no such entry"));
            };
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            if attr.typ == FileType::Dir {
                return Err(Error::is_dir("is a directory"));
            }
            perm::sticky(ctx, &p, &attr)?;
            found = true;
            p.mtime = now;
            p.ctime = now;
            self.drop_link(tx, eid, attr, Some(&p), parent, name, now)
                .await?
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
        let mut found = false;
        txn!(self, "rmdir", |tx, again| {
            let Some((mut p, eid, attr)) = get_entry_in(tx, parent, name).await? else {
                if again && found {
                    return Ok(());
                }
                let p = must_dir(tx, parent).await?;
                perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
                return Err(Error::not_found("no such entry"));
            };
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            if attr.typ != FileType::Dir {
                return Err(Error::not_dir("not a directory"));
            }
            perm::sticky(ctx, &p, &attr)?;
            if !dir_is_empty(tx, attr.ino).await? {
                return Err(Error::not_empty("directory not empty"));
            }
            found = true;
            p.nlink = p.nlink.saturating_sub(1);
            p.mtime = now;
            p.ctime = now;
            let mut stmts = vec![delete_edge_q(eid), update_node_q(&p)];
            stmts.extend(self.free_inode_q(tx, &attr, now, false));
            run_all(tx, "rmdir", stmts).await?;
        })
    }

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
        let mut moved: Option<Ino> = None;
        let removed = txn!(self, "rename", |tx, again| {
            // PostgreSQL: source and target in one round trip (the target's inode with it).
            // One statement has one snapshot: when it waited for the directory lock, a target
            // entry created meanwhile is missing from it (rows it did see are locked and
            // current). That shows as a duplicate name when the entry is moved into place, and
            // the transaction is then run again. An exchange needs the target, so it asks the
            // general way.
            let combined = tx.dialect() == Dialect::Postgres && !flags.exchange;
            let mut pair = None;
            if combined {
                pair = get_rename_pair_pg(tx, parent, name, new_parent, new_name).await?;
            }
            let mut dst_attr = None;
            let (mut sp, src, dst) = match pair {
                Some(((p, eid, a), d)) => {
                    let dst = d.map(|(edge, da)| {
                        dst_attr = da;
                        edge
                    });
                    (p, Some((eid, a)), Some(dst))
                }
                None => match get_entry_in(tx, parent, name).await? {
                    Some((p, eid, a)) => (p, Some((eid, a)), None),
                    None => (must_dir(tx, parent).await?, None, None),
                },
            };
            let mut dp = if new_parent == parent {
                sp.clone()
            } else {
                must_dir(tx, new_parent).await?
            };
            perm::access(ctx, &sp, MAY_WRITE | MAY_EXEC)?;
            perm::access(ctx, &dp, MAY_WRITE | MAY_EXEC)?;
            if dp.parent == TRASH_INODE || new_parent == TRASH_INODE {
                return Err(Error::not_permitted("cannot move entries into the trash"));
            }
            let Some((seid, mut sattr)) = src else {
                if let (true, Some(m)) = (again, moved) {
                    // an attempt that may have been applied moved it already
                    if matches!(get_edge(tx, new_parent, new_name).await?, Some((_, i, _)) if i == m)
                    {
                        return Ok(Removed::Kept);
                    }
                }
                return Err(Error::not_found("no such entry"));
            };
            let (sino, styp) = (sattr.ino, sattr.typ);
            moved = Some(sino);
            perm::sticky(ctx, &sp, &sattr)?;
            let dst = match dst {
                Some(d) => d,
                None => get_edge(tx, new_parent, new_name).await?,
            };
            if styp == FileType::Dir
                && new_parent != parent
                && self.is_below(tx, sino, new_parent).await?
            {
                return Err(Error::invalid("cannot move a directory into itself"));
            }
            let mut removed = Removed::Kept;
            // the closing writes, distinct rows each: one round trip on PostgreSQL
            let mut tail = Vec::new();
            if flags.exchange {
                let Some((deid, dino, dtyp)) = dst else {
                    return Err(Error::not_found("exchange target does not exist"));
                };
                if dino == sino {
                    return Ok(Removed::Kept);
                }
                let mut dattr = match dst_attr.take() {
                    Some(a) => a,
                    None => must_node(tx, dino).await?,
                };
                perm::sticky(ctx, &dp, &dattr)?;
                if dtyp == FileType::Dir
                    && new_parent != parent
                    && self.is_below(tx, dino, parent).await?
                {
                    return Err(Error::invalid("cannot move a directory into itself"));
                }
                tail.push(
                    q("UPDATE jfs_edge SET inode = ?, type = ? WHERE id = ?")
                        .bind(dino as i64)
                        .bind(i64::from(dtyp.code()))
                        .bind(seid),
                );
                tail.push(
                    q("UPDATE jfs_edge SET inode = ?, type = ? WHERE id = ?")
                        .bind(sino as i64)
                        .bind(i64::from(styp.code()))
                        .bind(deid),
                );
                if new_parent != parent {
                    if styp == FileType::Dir && dtyp != FileType::Dir {
                        sp.nlink -= 1;
                        dp.nlink += 1;
                    } else if styp != FileType::Dir && dtyp == FileType::Dir {
                        sp.nlink += 1;
                        dp.nlink -= 1;
                    }
                }
                if sattr.parent != 0 {
                    sattr.parent = new_parent;
                }
                if dattr.parent != 0 {
                    dattr.parent = parent;
                }
                dattr.ctime = now;
                tail.push(update_node_q(&dattr));
            } else {
                if let Some((deid, dino, dtyp)) = dst {
                    if flags.noreplace {
                        return Err(Error::exists("target exists"));
                    }
                    if dino == sino {
                        // two names of one inode: POSIX says do nothing
                        return Ok(Removed::Kept);
                    }
                    let dattr = match dst_attr.take() {
                        Some(a) => a,
                        None => must_node(tx, dino).await?,
                    };
                    perm::sticky(ctx, &dp, &dattr)?;
                    match (styp == FileType::Dir, dtyp == FileType::Dir) {
                        (true, false) => return Err(Error::not_dir("target is not a directory")),
                        (false, true) => return Err(Error::is_dir("target is a directory")),
                        _ => {}
                    }
                    if dtyp == FileType::Dir {
                        if !dir_is_empty(tx, dino).await? {
                            return Err(Error::not_empty("target directory not empty"));
                        }
                        let mut stmts = vec![delete_edge_q(deid)];
                        stmts.extend(self.free_inode_q(tx, &dattr, now, false));
                        run_all(tx, "rename", stmts).await?;
                        dp.nlink -= 1;
                    } else {
                        removed = self
                            .drop_link(tx, deid, dattr, None, new_parent, new_name, now)
                            .await?;
                    }
                }
                // after the replaced entry is gone: the (parent, name) index is unique
                tail.push(
                    q("UPDATE jfs_edge SET parent = ?, name = ? WHERE id = ?")
                        .bind(new_parent as i64)
                        .bind(new_name)
                        .bind(seid),
                );
                if styp == FileType::Dir && new_parent != parent {
                    sp.nlink -= 1;
                    dp.nlink += 1;
                }
                if sattr.parent != 0 {
                    sattr.parent = new_parent;
                }
            }
            sattr.ctime = now;
            tail.push(update_node_q(&sattr));
            sp.mtime = now;
            sp.ctime = now;
            dp.mtime = now;
            dp.ctime = now;
            if new_parent != parent {
                tail.push(update_node_q(&sp));
            }
            // with one parent, `dp` is the same record and carries every link-count change
            tail.push(update_node_q(&dp));
            db::Query::run_all(tail, tx, false).await.map_err(|e| {
                if combined && is_unique_violation(&e) {
                    Error::new(ErrorKind::Conflict, "target name taken meanwhile")
                } else {
                    from_db("rename", e)
                }
            })?;
            removed
        })?;
        self.after_remove(removed).await;
        Ok(())
    }
}

impl Inner {
    async fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        self.writable()?;
        check_name(new_name)?;
        let now = Timestamp::now();
        txn!(self, "link", |tx, again| {
            let mut p = must_dir(tx, new_parent).await?;
            if p.nlink == 0 {
                return Err(Error::not_found("parent directory was removed"));
            }
            if new_parent >= TRASH_INODE {
                return Err(Error::not_permitted("cannot link into the trash"));
            }
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            let mut a = must_node(tx, ino).await?;
            if a.typ == FileType::Dir {
                return Err(Error::not_permitted(
                    "hard links to directories are not allowed",
                ));
            }
            if a.nlink == 0 {
                return Err(Error::not_found("the file was removed"));
            }
            if let Some((_, found, _)) = get_edge(tx, new_parent, new_name).await? {
                if again && found == ino {
                    // an attempt that may have been applied made this link
                    return must_node(tx, ino).await;
                }
                return Err(Error::exists("entry exists"));
            }
            if a.nlink == u32::MAX {
                return Err(Error::new(ErrorKind::TooManyLinks, "too many links"));
            }
            insert_edge(tx, new_parent, new_name, ino, a.typ).await?;
            a.nlink += 1;
            a.parent = 0;
            a.ctime = now;
            update_node(tx, &a).await?;
            p.mtime = now;
            p.ctime = now;
            update_node(tx, &p).await?;
            a
        })
    }

    async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.writable()?;
        let now = Timestamp::now();
        txn!(self, "setattr", |tx| {
            let mut a = must_node(tx, ino).await?;
            apply_setattr(ctx, &mut a, set, now)?;
            update_node(tx, &a).await?;
            a
        })
    }

    /// Append zero records over `[start, end)` and drop whole chunks that lie at or past
    /// `drop_from` (the new length when shrinking).
    async fn zero_range(
        &self,
        c: &mut Tx<'_>,
        ino: Ino,
        start: u64,
        end: u64,
        drop_from: Option<u64>,
        freed: &mut Vec<(u64, u32)>,
    ) -> Result<()> {
        let first_dropped = drop_from.map(|l| l.div_ceil(CHUNK_SIZE));
        // zero records only where the chunk has records: a chunk without any reads as zeros
        // already, and a range of 2^40 sparse bytes must not cost a row per chunk
        let zend = zero_end(end, drop_from);
        if let Some((lo, hi)) = chunk_span(start, zend) {
            let rows = q("SELECT indx FROM jfs_chunk WHERE inode = ? AND indx >= ? AND indx <= ? ORDER BY indx")
                .bind(ino as i64)
                .bind(i64::from(lo))
                .bind(i64::from(hi))
                .fetch_all(&mut *c)
                .await
                .map_err(db("zero range"))?;
            for r in rows {
                let indx: i64 = r.try_get(0).map_err(db("zero range"))?;
                let indx = u32::try_from(indx)
                    .map_err(|_| Error::corrupt(format!("chunk index {indx} of inode {ino}")))?;
                if let Some(rec) = zero_record(indx, start, zend) {
                    append_slices(c, ino, indx, &[rec], false).await?;
                }
            }
        }
        if let Some(f) = first_dropped {
            let rows = q("SELECT indx, slices FROM jfs_chunk WHERE inode = ? AND indx >= ?")
                .bind(ino as i64)
                .bind(f as i64)
                .fetch_all(c)
                .await
                .map_err(db("truncate"))?;
            for r in rows {
                let buf: Vec<u8> = r.try_get(1).map_err(db("truncate"))?;
                unref_slices(c, &slice::decode_all(&buf)?, freed).await?;
            }
            q("DELETE FROM jfs_chunk WHERE inode = ? AND indx >= ?")
                .bind(ino as i64)
                .bind(f as i64)
                .execute(c)
                .await
                .map_err(db("truncate"))?;
        }
        Ok(())
    }

    async fn check_capacity(&self, c: &mut Tx<'_>, grow: i64) -> Result<()> {
        if grow <= 0 {
            return Ok(());
        }
        let cap = self.format()?.capacity;
        if cap > 0 {
            let used =
                counter_add(c, "usedSpace", 0).await? + self.pending_stats().0 + c.space_delta;
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
        let (attr, freed) = txn!(self, "truncate", |tx| {
            let mut a = must_node(tx, ino).await?;
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
            tx.space_delta += delta;
            a.length = length;
            a.mtime = now;
            a.ctime = now;
            update_node(tx, &a).await?;
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
        txn!(self, "fallocate", |tx| {
            let mut a = must_node(tx, ino).await?;
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
                tx.space_delta += delta;
                a.length = end;
                a.mtime = now;
            }
            a.ctime = now;
            update_node(tx, &a).await?;
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
        let mut c = self.conn().await?;
        let d = must_dir(&mut c, ino).await?;
        perm::access(ctx, &d, crate::perm::MAY_READ)?;
        let limit = limit.clamp(1, 10_000) as i64;
        // Pages follow the UNIQUE (parent, name) index: each page costs its own size, not the
        // directory's. The cursor is the entry id; the name it stands for comes from the names
        // handed out recently, else from the entry itself, else (the entry is gone and
        // forgotten) the listing restarts, which repeats names rather than skipping any.
        let from: Vec<u8> = if after == 0 {
            Vec::new()
        } else {
            let known = self
                .cursor_names
                .lock()
                .map_err(|_| lock_poisoned())?
                .get(ino, after);
            match known {
                Some(name) => name,
                None => q("SELECT name FROM jfs_edge WHERE id = ? AND parent = ?")
                    .bind(after as i64)
                    .bind(ino as i64)
                    .fetch_optional(&mut c)
                    .await
                    .map_err(db("readdir"))?
                    .map(|r| r.try_get::<Vec<u8>>(0))
                    .transpose()
                    .map_err(db("readdir"))?
                    .unwrap_or_default(),
            }
        };
        let rows = if plus {
            q(
                // the page of entries first, then their inodes: joined before the LIMIT, a
                // planner without fresh statistics joins every remaining entry and sorts them
                "SELECT e.id, e.name, e.inode, e.type, n.inode,n.type,n.flags,n.mode,n.uid,n.gid,n.atime,n.mtime,n.ctime,n.atimensec,n.mtimensec,n.ctimensec,n.nlink,n.length,n.rdev,n.parent FROM (SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name > ? ORDER BY name LIMIT ?) e LEFT JOIN jfs_node n ON n.inode = e.inode ORDER BY e.name",
            )
        } else {
            q("SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name > ? ORDER BY name LIMIT ?")
        }
        .bind(ino as i64)
        .bind(from)
        .bind(limit)
        .planned_each_time()
        .fetch_all(&mut c).await
        .map_err(db("readdir"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0).map_err(db("readdir"))?;
            let name: Vec<u8> = r.try_get(1).map_err(db("readdir"))?;
            let child: i64 = r.try_get(2).map_err(db("readdir"))?;
            let t: i64 = r.try_get(3).map_err(db("readdir"))?;
            let typ = FileType::from_code(t as u8)
                .ok_or_else(|| Error::corrupt(format!("entry in {ino} has unknown type {t}")))?;
            let attr = if plus {
                match r.try_get::<Option<i64>>(4).map_err(db("readdir"))? {
                    Some(_) => Some(row_attr_at(&r, 4)?),
                    None => None, // dangling entry: fsck reports it
                }
            } else {
                None
            };
            out.push(DirEntry {
                name,
                ino: child as u64,
                typ,
                attr,
                cursor: id as u64,
            });
        }
        if let Ok(mut names) = self.cursor_names.lock() {
            for e in &out {
                names.put(ino, e.cursor, &e.name);
            }
        }
        Ok(out)
    }

    async fn open(&self, ctx: &Ctx, ino: Ino) -> Result<Attr> {
        let mut c = self.conn().await?;
        let a = must_node(&mut c, ino).await?;
        let _ = ctx;
        self.opened(ino);
        Ok(a)
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
        let sid = self.sid.load(Ordering::Relaxed) as i64;
        let freed = txn!(self, "close", |tx| {
            let row = q("SELECT 1 FROM jfs_sustained WHERE sid = ? AND inode = ?")
                .bind(sid)
                .bind(ino as i64)
                .fetch_optional(tx)
                .await
                .map_err(db("close"))?;
            if row.is_none() {
                false
            } else {
                q("DELETE FROM jfs_sustained WHERE sid = ? AND inode = ?")
                    .bind(sid)
                    .bind(ino as i64)
                    .execute(tx)
                    .await
                    .map_err(db("close"))?;
                match get_node(tx, ino).await? {
                    Some(a) if a.nlink == 0 => {
                        self.free_inode(tx, &a, now).await?;
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
        let sums = if self.sums_ok.load(Ordering::Relaxed) && !sums.is_empty() {
            Some(sums)
        } else {
            None
        };
        let end = u64::from(indx) * CHUNK_SIZE + s.end();
        if s.end() > CHUNK_SIZE || end > MAX_FILE_LEN {
            return Err(Error::new(
                ErrorKind::FileTooBig,
                "write past the largest file size",
            ));
        }
        if self.pool.dialect() == Dialect::Postgres && self.format()?.capacity == 0 {
            // One statement: the node (locked, read before and changed), the chunk and the
            // reference. Nothing changes when the inode is missing or not a regular file; the
            // transaction below then gives the error.
            let done = autocommit!(self, "write", |tx, again| {
                if again && slice_recorded(tx, s.id).await? {
                    return Ok(true);
                }
                let sql = if sums.is_some() {
                    "WITH u AS (UPDATE jfs_node n SET length = GREATEST(n.length, ?), mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ? \
                    FROM (SELECT inode, length FROM jfs_node WHERE inode = ? AND type = 1 FOR UPDATE) o WHERE n.inode = o.inode RETURNING o.length), \
                    c AS (INSERT INTO jfs_chunk (inode, indx, slices) SELECT ?, ?, ? FROM u ON CONFLICT (inode, indx) DO UPDATE SET slices = jfs_chunk.slices || excluded.slices), \
                    r AS (INSERT INTO jfs_chunk_ref (chunkid, size, refs) SELECT ?, ?, 1 FROM u ON CONFLICT (chunkid) DO UPDATE SET refs = jfs_chunk_ref.refs + 1), \
                    s AS (INSERT INTO jfs_tidefs_sum (id, sums) SELECT ?, ? FROM u ON CONFLICT (id) DO NOTHING) \
                    SELECT length FROM u"
                } else {
                    "WITH u AS (UPDATE jfs_node n SET length = GREATEST(n.length, ?), mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ? \
                    FROM (SELECT inode, length FROM jfs_node WHERE inode = ? AND type = 1 FOR UPDATE) o WHERE n.inode = o.inode RETURNING o.length), \
                    c AS (INSERT INTO jfs_chunk (inode, indx, slices) SELECT ?, ?, ? FROM u ON CONFLICT (inode, indx) DO UPDATE SET slices = jfs_chunk.slices || excluded.slices), \
                    r AS (INSERT INTO jfs_chunk_ref (chunkid, size, refs) SELECT ?, ?, 1 FROM u ON CONFLICT (chunkid) DO UPDATE SET refs = jfs_chunk_ref.refs + 1) \
                    SELECT length FROM u"
                };
                let mut stmt = q(sql)
                    .bind(end as i64)
                    .bind(mtime.to_micros())
                    .bind(mtime.to_micros())
                    .bind(mtime.sub_micro_nanos())
                    .bind(mtime.sub_micro_nanos())
                    .bind(ino as i64)
                    .bind(ino as i64)
                    .bind(i64::from(indx))
                    .bind(slice::encode_all(&[s]))
                    .bind(s.id as i64)
                    .bind(i64::from(s.size));
                if let Some(sums) = sums {
                    stmt = stmt.bind(s.id as i64).bind(sums.to_vec());
                }
                let row = stmt.fetch_optional(tx).await.map_err(db("write"))?;
                match row {
                    Some(r) => {
                        let old: i64 = r.try_get(0).map_err(db("write"))?;
                        if end as i64 > old {
                            tx.space_delta += align4k(end) - align4k(old as u64);
                        }
                        true
                    }
                    None => false,
                }
            })?;
            if done {
                return Ok(());
            }
        }
        txn!(self, "write", |tx, again| {
            if again && slice_recorded(tx, s.id).await? {
                return Ok(());
            }
            let mut a = must_node(tx, ino).await?;
            if a.typ != FileType::File {
                return Err(Error::invalid("not a regular file"));
            }
            let delta = if end > a.length {
                align4k(end) - align4k(a.length)
            } else {
                0
            };
            self.check_capacity(tx, delta).await?;
            let fresh = a.length <= u64::from(indx) * CHUNK_SIZE;
            append_slices(tx, ino, indx, &[s], fresh).await?;
            q(dialect::ref_slice(tx.dialect()))
                .bind(s.id as i64)
                .bind(i64::from(s.size))
                .execute(tx)
                .await
                .map_err(db("write"))?;
            if let Some(sums) = sums {
                q("INSERT INTO jfs_tidefs_sum (id, sums) VALUES (?, ?)")
                    .bind(s.id as i64)
                    .bind(sums.to_vec())
                    .execute(tx)
                    .await
                    .map_err(db("write"))?;
            }
            if end > a.length {
                a.length = end;
                tx.space_delta += delta;
            }
            a.mtime = mtime;
            a.ctime = mtime;
            update_node(tx, &a).await?;
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
        txn!(self, "copy range", |tx| {
            // both nodes locked, the lower inode first
            let (s, mut d) = if src <= dst {
                let s = must_node(tx, src).await?;
                (s, must_node(tx, dst).await?)
            } else {
                let d = must_node(tx, dst).await?;
                (must_node(tx, src).await?, d)
            };
            let n = copy_extent(&s, off_in, &d, off_out, len)?;
            if n > 0 {
                let (lo, hi) = chunk_span(off_in, off_in + n)
                    .ok_or_else(|| Error::invalid("copy range past the largest file"))?;
                let mut chunks = BTreeMap::new();
                for r in q(locked!(
                    tx,
                    "SELECT indx, slices FROM jfs_chunk WHERE inode = ? AND indx >= ? AND indx <= ?"
                ))
                .bind(src as i64)
                .bind(i64::from(lo))
                .bind(i64::from(hi))
                .fetch_all(&mut *tx)
                .await
                .map_err(db("copy range"))?
                {
                    let indx: i64 = r.try_get(0).map_err(db("copy range"))?;
                    let buf: Vec<u8> = r.try_get(1).map_err(db("copy range"))?;
                    let indx = u32::try_from(indx).map_err(|_| {
                        Error::corrupt(format!("chunk index {indx} of inode {src}"))
                    })?;
                    chunks.insert(indx, slice::decode_all(&buf)?);
                }
                let plan = slice::copy_plan(&chunks, off_in, n, off_out);
                check_copy_plan(&plan)?;
                for (indx, records) in &plan {
                    let fresh = d.length <= u64::from(*indx) * CHUNK_SIZE;
                    append_slices(tx, dst, *indx, records, fresh).await?;
                }
                for ((id, size), more) in shared_refs(&plan) {
                    q(dialect::share_slice(tx.dialect()))
                        .bind(id as i64)
                        .bind(i64::from(size))
                        .bind(more + 1)
                        .bind(more)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("copy range"))?;
                }
                let end = off_out + n;
                if end > d.length {
                    let delta = align4k(end) - align4k(d.length);
                    self.check_capacity(tx, delta).await?;
                    tx.space_delta += delta;
                    d.length = end;
                }
                d.mtime = now;
                d.ctime = now;
                update_node(tx, &d).await?;
            }
            (n, d)
        })
    }

    async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let name = xattr_name(name)?;
        let mut c = self.conn().await?;
        // the inode and the attribute in one query: a missing inode is ENOENT, a missing
        // attribute ENODATA (asked for `security.capability` at every first write)
        let row = q("SELECT n.inode, x.value FROM jfs_node n LEFT JOIN jfs_xattr x ON x.inode = n.inode AND x.name = ? WHERE n.inode = ?")
            .bind(name)
            .bind(ino as i64)
            .fetch_optional(&mut c)
            .await
            .map_err(db("getxattr"))?;
        let Some(r) = row else {
            return Err(Error::not_found(format!("inode {ino} does not exist")));
        };
        match r.try_get::<Option<Vec<u8>>>(1).map_err(db("getxattr"))? {
            Some(v) => Ok(v),
            None => Err(Error::new(ErrorKind::NoAttr, "no such attribute")),
        }
    }

    async fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let mut c = self.conn().await?;
        must_node(&mut c, ino).await?;
        let rows = q("SELECT name FROM jfs_xattr WHERE inode = ? ORDER BY id")
            .bind(ino as i64)
            .fetch_all(&mut c)
            .await
            .map_err(db("listxattr"))?;
        rows.iter()
            .map(|r| {
                r.try_get::<String>(0)
                    .map(String::into_bytes)
                    .map_err(db("listxattr"))
            })
            .collect()
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
        let name = xattr_name(name)?;
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
        txn!(self, "setxattr", |tx| {
            let mut a = must_node(tx, ino).await?;
            perm::access(ctx, &a, MAY_WRITE)?;
            let exists = q("SELECT 1 FROM jfs_xattr WHERE inode = ? AND name = ?")
                .bind(ino as i64)
                .bind(name)
                .fetch_optional(tx)
                .await
                .map_err(db("setxattr"))?
                .is_some();
            if flags.create && exists {
                return Err(Error::exists("attribute exists"));
            }
            if flags.replace && !exists {
                return Err(Error::new(ErrorKind::NoAttr, "no such attribute"));
            }
            q(dialect::set_xattr(tx.dialect()))
                .bind(ino as i64)
                .bind(name)
                .bind(value)
                .execute(tx)
                .await
                .map_err(db("setxattr"))?;
            a.ctime = now;
            update_node(tx, &a).await?;
        })
    }

    async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        let name = xattr_name(name)?;
        let now = Timestamp::now();
        txn!(self, "removexattr", |tx| {
            let mut a = must_node(tx, ino).await?;
            perm::access(ctx, &a, MAY_WRITE)?;
            let done = q("DELETE FROM jfs_xattr WHERE inode = ? AND name = ?")
                .bind(ino as i64)
                .bind(name)
                .execute(tx)
                .await
                .map_err(db("removexattr"))?;
            if done.rows_affected() == 0 {
                return Err(Error::new(ErrorKind::NoAttr, "no such attribute"));
            }
            a.ctime = now;
            update_node(tx, &a).await?;
        })
    }

    async fn statfs(&self) -> Result<StatFs> {
        let fmt = self.format()?;
        let (space, inodes) = read!(self, "statfs", |c| {
            (
                counter_add(c, "usedSpace", 0).await?,
                counter_add(c, "totalInodes", 0).await?,
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

fn row_attr_at(r: &Row, base: usize) -> Result<Attr> {
    let get = |i: usize| -> Result<i64> {
        r.try_get::<Option<i64>>(base + i)
            .map(|v| v.unwrap_or(0))
            .map_err(|e| Error::corrupt("bad node row").with_source(e))
    };
    let ino = get(0)? as u64;
    let code = get(1)?;
    let typ = FileType::from_code(code as u8)
        .ok_or_else(|| Error::corrupt(format!("inode {ino} has unknown type {code}")))?;
    Ok(Attr {
        ino,
        typ,
        flags: get(2)? as u8,
        mode: (get(3)? & 0o7777) as u16,
        uid: get(4)? as u32,
        gid: get(5)? as u32,
        atime: Timestamp::from_micros(get(6)?, get(9)?),
        mtime: Timestamp::from_micros(get(7)?, get(10)?),
        ctime: Timestamp::from_micros(get(8)?, get(11)?),
        nlink: get(12)? as u32,
        length: get(13)? as u64,
        rdev: get(14)? as u32,
        parent: get(15)? as u64,
    })
}

impl Inner {
    async fn init(&self, format: &Format, force: bool) -> Result<()> {
        if let Pool::Sqlite(sq) = &self.pool {
            // The connections never create the file (a typo in a URL must not leave an empty
            // database behind); format does, through one connection of its own.
            let parent = std::path::Path::new(&sq.path)
                .parent()
                .map(|p| p.to_path_buf());
            if let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    return Err(Error::config(format!(
                        "directory {} for the SQLite database does not exist: create it first",
                        dir.display()
                    )));
                }
            }
            // creates the file (WAL mode is stored in it)
            drop(open_conn(&sq.path, true).map_err(|e| {
                Error::config(format!("cannot create the SQLite database {}", sq.path))
                    .with_source(e)
            })?);
        }
        let d = self.pool.dialect();
        // Tables first, outside the transaction: MySQL commits around every DDL statement.
        read!(self, "format", |c| {
            let has_tables = q(dialect::has_setting_table(d))
                .fetch_optional(c)
                .await
                .map_err(db("format"))?
                .is_some();
            if !has_tables {
                for ddl in dialect::ddl(d) {
                    q(ddl).execute(c).await.map_err(db("format"))?;
                }
            }
            q(dialect::sums_ddl(d))
                .execute(c)
                .await
                .map_err(db("format"))?;
        })?;
        self.sums_ok.store(true, Ordering::Relaxed);
        let now = Timestamp::now();
        let json = format.to_json()?;
        txn!(self, "format", |tx| {
            let old = q(locked!(
                tx,
                "SELECT value FROM jfs_setting WHERE name = 'format'"
            ))
            .fetch_optional(tx)
            .await
            .map_err(db("format"))?;
            if let Some(r) = old {
                let text: String = r.try_get(0).map_err(db("format"))?;
                let old = Format::from_json(&text)?;
                if !force {
                    return Err(Error::exists(format!(
                        "{} already holds volume {:?} (UUID {}); pass --force to change its settings",
                        self.shown, old.name, old.uuid
                    )));
                }
                let mut merged = format.clone();
                merged.uuid = old.uuid.clone();
                merged.name = old.name.clone();
                q("UPDATE jfs_setting SET value = ? WHERE name = 'format'")
                    .bind(merged.to_json()?)
                    .execute(tx)
                    .await
                    .map_err(db("format"))?;
            } else {
                q("INSERT INTO jfs_setting (name, value) VALUES ('format', ?)")
                    .bind(&json)
                    .execute(tx)
                    .await
                    .map_err(db("format"))?;
                for (name, value) in schema::INITIAL_COUNTERS {
                    q("INSERT INTO jfs_counter (name, value) VALUES (?, ?)")
                        .bind(*name)
                        .bind(*value)
                        .execute(tx)
                        .await
                        .map_err(db("format"))?;
                }
                insert_node(tx, &new_dir_attr(ROOT_INODE, 0o777, ROOT_INODE, now)).await?;
                if format.trash_days > 0 {
                    insert_node(tx, &new_dir_attr(TRASH_INODE, 0o555, ROOT_INODE, now)).await?;
                }
            }
        })
    }

    async fn load(&self) -> Result<Format> {
        let d = self.pool.dialect();
        let mut c = self.conn().await?;
        let has = q(dialect::has_setting_table(d))
            .fetch_optional(&mut c)
            .await
            .map_err(db("load"))?;
        if has.is_none() {
            return Err(Error::config(format!(
                "{} is not a formatted volume: run `tidefs format` first",
                self.shown
            )));
        }
        let row = q("SELECT value FROM jfs_setting WHERE name = 'format'")
            .fetch_optional(&mut c)
            .await
            .map_err(db("load"))?
            .ok_or_else(|| {
                Error::config(format!(
                    "{} has no volume setting: run `tidefs format` first",
                    self.shown
                ))
            })?;
        let text: String = row.try_get(0).map_err(db("load"))?;
        let fmt = Format::from_json(&text)?;
        fmt.check_supported()?;
        drop(c);
        self.ensure_sums_table().await;
        *self.format.write().map_err(|_| lock_poisoned())? = Some(fmt.clone());
        Ok(fmt)
    }

    async fn new_session(self: &Arc<Self>, info: SessionInfo) -> Result<u64> {
        self.writable()?;
        let json =
            serde_json::to_vec(&info).map_err(|e| Error::invalid("session info").with_source(e))?;
        let expire = Timestamp::now().sec + self.session_ttl_secs();
        let sid = txn!(self, "new session", |tx| {
            let sid = counter_add(tx, "nextSession", 1).await?;
            q("INSERT INTO jfs_session2 (sid, expire, info) VALUES (?,?,?)")
                .bind(sid)
                .bind(expire)
                .bind(&json)
                .execute(tx)
                .await
                .map_err(db("new session"))?;
            sid as u64
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
        let files = txn!(self, "close session", |tx| {
            self.remove_session(tx, sid as i64, now).await?
        })?;
        for ino in files {
            self.free_file_data(ino).await?;
        }
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let mut c = self.conn().await?;
        let rows = q("SELECT sid, expire, info FROM jfs_session2 ORDER BY sid")
            .fetch_all(&mut c)
            .await
            .map_err(db("list sessions"))?;
        let mut out = Vec::new();
        for r in rows {
            let sid: i64 = r.try_get(0).map_err(db("list sessions"))?;
            let expire: i64 = r.try_get(1).map_err(db("list sessions"))?;
            let info: Option<Vec<u8>> = r.try_get(2).map_err(db("list sessions"))?;
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
            s.sid = sid as u64;
            s.expire = expire;
            out.push(s);
        }
        Ok(out)
    }

    async fn list_chunks(&self) -> Result<Vec<ChunkSlices>> {
        let mut c = self.conn().await?;
        let rows = q("SELECT inode, indx, slices FROM jfs_chunk ORDER BY inode, indx")
            .fetch_all(&mut c)
            .await
            .map_err(db("list chunks"))?;
        rows.iter()
            .map(|r| {
                let ino: i64 = r.try_get(0).map_err(db("list chunks"))?;
                let indx: i64 = r.try_get(1).map_err(db("list chunks"))?;
                let buf: Vec<u8> = r.try_get(2).map_err(db("list chunks"))?;
                Ok(ChunkSlices {
                    ino: ino as u64,
                    indx: indx as u32,
                    slices: slice::decode_all(&buf)?,
                })
            })
            .collect()
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
        let keep_sums = self.sums_ok.load(Ordering::Relaxed);
        let delay = self.trash_days() > 0;
        let old_buf = slice::encode_all(old);
        let (done, freed) = txn!(self, "compact chunk", |tx| {
            let mut freed = Vec::new();
            let row = q(locked!(
                tx,
                "SELECT slices FROM jfs_chunk WHERE inode = ? AND indx = ?"
            ))
            .bind(ino as i64)
            .bind(i64::from(indx))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("compact chunk"))?;
            let cur: Vec<u8> = match row {
                Some(r) => r.try_get(0).map_err(db("compact chunk"))?,
                None => Vec::new(),
            };
            if old.is_empty() || !cur.starts_with(&old_buf) {
                (false, freed)
            } else {
                let mut buf = slice::encode_all(new);
                buf.extend_from_slice(&cur[old_buf.len()..]);
                q("UPDATE jfs_chunk SET slices = ? WHERE inode = ? AND indx = ?")
                    .bind(buf)
                    .bind(ino as i64)
                    .bind(i64::from(indx))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("compact chunk"))?;
                for (i, n) in new.iter().enumerate().filter(|(_, n)| n.id != 0) {
                    q(dialect::ref_slice(tx.dialect()))
                        .bind(n.id as i64)
                        .bind(i64::from(n.size))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("compact chunk"))?;
                    match sums.get(i) {
                        Some(sum) if keep_sums && !sum.is_empty() => {
                            q("INSERT INTO jfs_tidefs_sum (id, sums) VALUES (?, ?)")
                                .bind(n.id as i64)
                                .bind(sum.clone())
                                .execute(&mut *tx)
                                .await
                                .map_err(db("compact chunk"))?;
                        }
                        _ => {}
                    }
                }
                let data: Vec<&Slice> = old.iter().filter(|s| s.id != 0).collect();
                match (delay, new.iter().find(|n| n.id != 0)) {
                    (true, Some(first)) if !data.is_empty() => {
                        // kept for the trash time, as JuiceFS does: `gc --delete` and the
                        // mounts' cleanup release them afterwards
                        let mut pairs = Vec::with_capacity(12 * data.len());
                        for s in &data {
                            pairs.extend_from_slice(&s.id.to_be_bytes());
                            pairs.extend_from_slice(&s.size.to_be_bytes());
                        }
                        q("INSERT INTO jfs_delslices (chunkid, deleted, slices) VALUES (?,?,?)")
                            .bind(first.id as i64)
                            .bind(Timestamp::now().sec)
                            .bind(pairs)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("compact chunk"))?;
                    }
                    _ => unref_slices(tx, old, &mut freed).await?,
                }
                (true, freed)
            }
        })?;
        self.delete_objects(freed).await;
        Ok(done)
    }

    async fn leftovers(&self) -> Result<Leftovers> {
        let mut c = self.conn().await?;
        let mut out = Leftovers::default();
        for r in q("SELECT deleted, slices FROM jfs_delslices")
            .fetch_all(&mut c)
            .await
            .map_err(db("list delayed slices"))?
        {
            let deleted: i64 = r.try_get(0).map_err(db("list delayed slices"))?;
            let buf: Vec<u8> = r.try_get(1).map_err(db("list delayed slices"))?;
            out.delayed.extend(
                decode_delayed(&buf)?
                    .into_iter()
                    .map(|(id, size)| (id, size, deleted)),
            );
        }
        for r in q("SELECT chunkid, size FROM jfs_chunk_ref WHERE refs <= 0")
            .fetch_all(&mut c)
            .await
            .map_err(db("list unreferenced slices"))?
        {
            let id: i64 = r.try_get(0).map_err(db("list unreferenced slices"))?;
            let size: i64 = r.try_get(1).map_err(db("list unreferenced slices"))?;
            out.unreferenced.push((id as u64, size as u32));
        }
        let counted = q("SELECT COUNT(*) FROM jfs_delfile")
            .fetch_optional(&mut c)
            .await
            .map_err(db("count pending deletions"))?;
        if let Some(r) = counted {
            let n: i64 = r.try_get(0).map_err(db("count pending deletions"))?;
            out.pending_files = n as u64;
        }
        Ok(out)
    }

    async fn purge_held_slices(&self, before: i64) -> Result<u64> {
        self.writable()?;
        let mut purged = self.purge_delayed(before).await?;
        if self.sums_ok.load(Ordering::Relaxed) {
            // checksums of slices nothing references any more
            let dropped: Result<()> = read!(self, "drop stale checksums", |c| {
                q("DELETE FROM jfs_tidefs_sum WHERE id NOT IN (SELECT chunkid FROM jfs_chunk_ref)")
                    .execute(c)
                    .await
                    .map_err(db("drop stale checksums"))?;
            });
            dropped?;
        }
        // reference rows at zero (left by JuiceFS's deleter): the objects go, then the row
        let zero: Vec<(i64, i64)> = {
            let mut c = self.conn().await?;
            q("SELECT chunkid, size FROM jfs_chunk_ref WHERE refs <= 0")
                .fetch_all(&mut c)
                .await
                .map_err(db("list unreferenced slices"))?
                .iter()
                .filter_map(|r| Some((r.try_get::<i64>(0).ok()?, r.try_get::<i64>(1).ok()?)))
                .collect()
        };
        for (id, size) in zero {
            self.delete_objects(vec![(id as u64, size as u32)]).await;
            txn!(self, "purge unreferenced slice", |tx| {
                q("DELETE FROM jfs_chunk_ref WHERE chunkid = ? AND refs <= 0")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("purge unreferenced slice"))?;
            })?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Release delayed-slice records set aside before `before`.
    async fn purge_delayed(&self, before: i64) -> Result<u64> {
        let ids: Vec<i64> = {
            let mut c = self.conn().await?;
            q("SELECT chunkid FROM jfs_delslices WHERE deleted < ?")
                .bind(before)
                .fetch_all(&mut c)
                .await
                .map_err(db("list delayed slices"))?
                .iter()
                .filter_map(|r| r.try_get::<i64>(0).ok())
                .collect()
        };
        let mut purged = 0u64;
        for id in ids {
            let freed = txn!(self, "purge delayed slices", |tx| {
                let mut freed = Vec::new();
                let row = q(locked!(
                    tx,
                    "SELECT slices FROM jfs_delslices WHERE chunkid = ?"
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("purge delayed slices"))?;
                if let Some(row) = row {
                    let buf: Vec<u8> = row.try_get(0).map_err(db("purge delayed slices"))?;
                    let records: Vec<Slice> = decode_delayed(&buf)?
                        .into_iter()
                        .map(|(id, size)| Slice {
                            id,
                            size,
                            ..Slice::default()
                        })
                        .collect();
                    unref_slices(tx, &records, &mut freed).await?;
                    q("DELETE FROM jfs_delslices WHERE chunkid = ?")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("purge delayed slices"))?;
                }
                freed
            })?;
            purged += 1;
            self.delete_objects(freed).await;
        }
        Ok(purged)
    }

    async fn check(self: &Arc<Self>, repair: bool) -> Result<Vec<Problem>> {
        if repair {
            self.writable()?;
        }
        let mut problems = Vec::new();
        let mut c = self.conn().await?;
        let nodes: HashMap<u64, Attr> = q(
            "SELECT inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent FROM jfs_node",
        )
        .fetch_all(&mut c).await.map_err(db("fsck"))?
        .iter()
        .map(|r| row_attr(r).map(|a| (a.ino, a)))
        .collect::<Result<_>>()?;
        let edges: Vec<(i64, u64, Vec<u8>, u64)> =
            q("SELECT id, parent, name, inode FROM jfs_edge")
                .fetch_all(&mut c)
                .await
                .map_err(db("fsck"))?
                .iter()
                .map(|r| -> Result<_> {
                    Ok((
                        r.try_get::<i64>(0).map_err(db("fsck"))?,
                        r.try_get::<i64>(1).map_err(db("fsck"))? as u64,
                        r.try_get::<Vec<u8>>(2).map_err(db("fsck"))?,
                        r.try_get::<i64>(3).map_err(db("fsck"))? as u64,
                    ))
                })
                .collect::<Result<_>>()?;
        let sustained: HashSet<u64> = q("SELECT inode FROM jfs_sustained")
            .fetch_all(&mut c)
            .await
            .map_err(db("fsck"))?
            .iter()
            .filter_map(|r| r.try_get::<i64>(0).ok().map(|v| v as u64))
            .collect();
        drop(c);
        let edges: Vec<(i64, Ino, Vec<u8>, Ino)> = edges;
        let (found, fixes) = analyze(&nodes, &edges, &sustained, repair);
        problems.extend(found);
        for fix in fixes {
            match fix {
                Fix::DropEntry(id) => {
                    txn!(self, "fsck repair", |tx| {
                        delete_edge(tx, id).await?;
                    })?;
                }
                Fix::SetNlink(ino, n) => {
                    txn!(self, "fsck repair", |tx| {
                        if let Some(mut cur) = get_node(tx, ino).await? {
                            cur.nlink = n;
                            update_node(tx, &cur).await?;
                        }
                    })?;
                }
            }
        }
        problems.extend(chunk_problems(&nodes, &self.list_chunks().await?));
        Ok(problems)
    }
}

#[async_trait]
impl Meta for SqlMeta {
    fn engine(&self) -> &'static str {
        match self.inner.pool.dialect() {
            Dialect::Sqlite => "sqlite3",
            Dialect::Mysql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }
    async fn init(&self, format: &Format, force: bool) -> Result<()> {
        self.inner.init(format, force).await
    }
    async fn load(&self) -> Result<Format> {
        again("load", || self.inner.load()).await
    }
    async fn new_session(&self, info: SessionInfo) -> Result<u64> {
        self.inner.new_session(info).await
    }
    async fn close_session(&self) -> Result<()> {
        self.inner.close_session().await
    }
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        again("list sessions", || self.inner.list_sessions()).await
    }
    fn set_heartbeat(&self, period: Duration) {
        self.inner
            .heartbeat_ms
            .store(period.as_millis() as u64, Ordering::Relaxed);
    }
    fn set_read_only(&self, read_only: bool) {
        self.inner.read_only.store(read_only, Ordering::Relaxed);
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
        again("lookup", || self.inner.lookup(ctx, parent, name)).await
    }
    async fn getattr(&self, ino: Ino) -> Result<Attr> {
        again("getattr", || async {
            let mut c = self.inner.conn().await?;
            must_node(&mut c, ino).await
        })
        .await
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
        again("readlink", || async {
            let mut c = self.inner.conn().await?;
            let row = q("SELECT target FROM jfs_symlink WHERE inode = ?")
                .bind(ino as i64)
                .fetch_optional(&mut c)
                .await
                .map_err(db("readlink"))?;
            match row {
                Some(r) => r.try_get(0).map_err(db("readlink")),
                None => {
                    let a = must_node(&mut c, ino).await?;
                    Err(if a.typ == FileType::Symlink {
                        Error::corrupt(format!("symlink {ino} has no target"))
                    } else {
                        Error::invalid("not a symlink")
                    })
                }
            }
        })
        .await
    }
    async fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        after: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        again("readdir", || {
            self.inner.readdir(ctx, ino, after, limit, plus)
        })
        .await
    }
    async fn entries_from(
        &self,
        parent: Ino,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Attr)>> {
        let limit = limit.clamp(1, 10_000) as i64;
        again("lookahead", || async {
            let mut c = self.inner.conn().await?;
            let rows = q("SELECT e.name, n.inode,n.type,n.flags,n.mode,n.uid,n.gid,n.atime,n.mtime,n.ctime,n.atimensec,n.mtimensec,n.ctimensec,n.nlink,n.length,n.rdev,n.parent FROM jfs_edge e JOIN jfs_node n ON n.inode = e.inode WHERE e.parent = ? AND e.name >= ? ORDER BY e.name LIMIT ?")
                .bind(parent as i64)
                .bind(from)
                .bind(limit)
                .planned_each_time()
                .fetch_all(&mut c)
                .await
                .map_err(db("lookahead"))?;
            rows.iter()
                .map(|r| Ok((r.try_get::<Vec<u8>>(0).map_err(db("lookahead"))?, row_attr_at(r, 1)?)))
                .collect()
        })
        .await
    }
    async fn open(&self, ctx: &Ctx, ino: Ino) -> Result<Attr> {
        again("open", || self.inner.open(ctx, ino)).await
    }
    fn opened(&self, ino: Ino) {
        self.inner.opened(ino)
    }
    async fn close(&self, ino: Ino) -> Result<()> {
        self.inner.close(ino).await
    }
    async fn read_chunk(&self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        again("read chunk", || async {
            let mut c = self.inner.conn().await?;
            read_chunk_conn(&mut c, ino, indx).await
        })
        .await
    }
    async fn new_slice_id(&self) -> Result<u64> {
        self.inner.next_slice().await
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
    async fn write_slice(&self, ino: Ino, indx: u32, slice: Slice, mtime: Timestamp) -> Result<()> {
        self.inner.write_slice(ino, indx, slice, mtime, &[]).await
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
    async fn slice_sums(&self, id: u64) -> Result<Option<Vec<u8>>> {
        if !self.inner.sums_ok.load(Ordering::Relaxed) {
            return Ok(None);
        }
        again("read checksums", || async {
            let mut c = self.inner.conn().await?;
            let row = q("SELECT sums FROM jfs_tidefs_sum WHERE id = ?")
                .bind(id as i64)
                .fetch_optional(&mut c)
                .await
                .map_err(db("read checksums"))?;
            match row {
                Some(r) => Ok(Some(r.try_get(0).map_err(db("read checksums"))?)),
                None => Ok(None),
            }
        })
        .await
    }
    async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        again("getxattr", || self.inner.getxattr(ino, name)).await
    }
    async fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        again("listxattr", || self.inner.listxattr(ino)).await
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
        again("list chunks", || self.inner.list_chunks()).await
    }
    async fn chunks_page(
        &self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<(Vec<ChunkSlices>, Option<Vec<u8>>)> {
        // the cursor is the last (inode, index) of the previous page, big-endian
        let (ino, indx) = match cursor.len() {
            12 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&cursor[..8]);
                let mut b = [0u8; 4];
                b.copy_from_slice(&cursor[8..]);
                (
                    u64::from_be_bytes(a) as i64,
                    i64::from(u32::from_be_bytes(b)),
                )
            }
            _ => (-1, -1),
        };
        let limit = limit.clamp(1, 100_000);
        let page = again("list chunks", || async {
            let mut c = self.inner.conn().await?;
            let rows = q("SELECT inode, indx, slices FROM jfs_chunk WHERE inode > ? OR (inode = ? AND indx > ?) ORDER BY inode, indx LIMIT ?")
                .bind(ino)
                .bind(ino)
                .bind(indx)
                .bind(limit as i64)
                .fetch_all(&mut c)
                .await
                .map_err(db("list chunks"))?;
            rows.iter()
                .map(|r| {
                    Ok(ChunkSlices {
                        ino: r.try_get::<i64>(0).map_err(db("list chunks"))? as u64,
                        indx: r.try_get::<i64>(1).map_err(db("list chunks"))? as u32,
                        slices: slice::decode_all(&r.try_get::<Vec<u8>>(2).map_err(db("list chunks"))?)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        let next = match page.last() {
            Some(last) if page.len() == limit => {
                let mut c = last.ino.to_be_bytes().to_vec();
                c.extend_from_slice(&last.indx.to_be_bytes());
                Some(c)
            }
            _ => None,
        };
        Ok((page, next))
    }
    async fn leftovers(&self) -> Result<Leftovers> {
        again("list leftovers", || self.inner.leftovers()).await
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
        let d = self.inner.pool.dialect();
        let inner = &self.inner;
        read!(inner, "destroy", |c| {
            for t in dialect::tables(d)
                .into_iter()
                .chain(dialect::TIDEFS_TABLES.iter().copied())
            {
                q_owned(format!("DROP TABLE IF EXISTS {t}"))
                    .execute(c)
                    .await
                    .map_err(db("destroy"))?;
            }
        })
    }
    async fn sync(&self) -> Result<()> {
        self.inner.flush_stats().await?;
        let Pool::Sqlite(sq) = &self.inner.pool else {
            // a server made each commit durable before answering it
            return Ok(());
        };
        // With WAL and synchronous=NORMAL a commit reaches the WAL file but not the disk; one
        // fsync of the WAL makes every commit so far durable.
        let wal = format!("{}-wal", sq.path);
        tokio::task::spawn_blocking(move || match std::fs::File::open(&wal) {
            Ok(f) => f.sync_all(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Engine, format!("sync task failed: {e}")))?
        .map_err(|e| Error::new(ErrorKind::Engine, "fsync of the SQLite WAL failed").with_source(e))
    }
}
