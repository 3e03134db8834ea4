//! A transaction of the SQL engine: every typed read and write of the engine contract as a
//! statement on the JuiceFS tables (`jfs_node`, `jfs_edge`, `jfs_chunk`, ...).
//!
//! Rows a write transaction reads are locked (`FOR UPDATE` on the servers; SQLite's write
//! transactions hold the whole database). The UNIQUE (parent, name) index is the name check of
//! every create. On PostgreSQL, writes are held back and sent together, as one statement with
//! data-modifying CTEs, before the next read or at commit: an unlink is one round trip for its
//! writes instead of one per row. Two writes of one row never go in one such statement (the
//! held-back ones are sent first).

use super::db::{self, q, Dialect, Query, Row, Tx};
use super::{dialect, SqlEngine};
use crate::engine::{
    DelFile, Delayed, EntryIn, Flock, Listed, Lookup, Mode, Page, Plock, SessionRow, Target, Txn,
};
use crate::error::{from_db, is_unique_violation, Error, ErrorKind, Result};
use crate::posix::rules::{decode_delayed, encode_delayed};
use crate::slice::{self, Slice};
use crate::types::*;
use crate::ChunkSlices;
use async_trait::async_trait;
use std::ops::Bound;
use std::sync::atomic::Ordering;

/// The columns of a node, in the order [`row_attr_at`] reads them.
macro_rules! node_cols {
    () => {
        "inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent"
    };
    ($p:literal) => {
        concat!(
            $p, ".inode,", $p, ".type,", $p, ".flags,", $p, ".mode,", $p, ".uid,", $p, ".gid,",
            $p, ".atime,", $p, ".mtime,", $p, ".ctime,", $p, ".atimensec,", $p, ".mtimensec,",
            $p, ".ctimensec,", $p, ".nlink,", $p, ".length,", $p, ".rdev,", $p, ".parent"
        )
    };
}
pub(super) use node_cols;

/// A `SELECT` that locks the rows it reads when it runs in a server write transaction.
macro_rules! locked {
    ($tx:expr, $sql:expr) => {
        if $tx.for_update().is_empty() {
            $sql
        } else {
            concat!($sql, " FOR UPDATE")
        }
    };
}
pub(super) use locked;

pub(super) fn db(op: &'static str) -> impl Fn(db::DbError) -> Error {
    move |e| from_db(op, e)
}

/// Column `i` of a row.
pub(super) fn col<T: db::Get>(r: &Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(db("read row"))
}

/// A statement with its arguments: `stmt!("... ? ... ?", a, b)`.
macro_rules! stmt {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        q($sql)$(.bind($arg))*
    };
}

/// The attributes in the 16 node columns of `r` from column `base` on.
pub(super) fn row_attr_at(r: &Row, base: usize) -> Result<Attr> {
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

/// Bind the 16 node columns of `a`, in the order the node statements list them.
pub(super) fn bind_node<'s>(q: Query<'s>, a: &Attr) -> Query<'s> {
    bind_node_fields(q.bind(a.ino as i64).bind(i64::from(a.typ.code())), a)
}

/// Bind the 14 changeable node columns (`flags` .. `parent`) of `a`, in table order.
fn bind_node_fields<'s>(q: Query<'s>, a: &Attr) -> Query<'s> {
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

/// The file type stored as `t` in a row about `what`.
pub(super) fn file_type(t: i64, what: Ino) -> Result<FileType> {
    FileType::from_code(t as u8)
        .ok_or_else(|| Error::corrupt(format!("entry in {what} has unknown type {t}")))
}

/// A quota in the four columns of `r` from `base` on (max space, max inodes, used space, used
/// inodes).
fn quota_row(r: &Row, base: usize) -> Result<Quota> {
    Ok(Quota {
        max_space: col(r, base)?,
        max_inodes: col(r, base + 1)?,
        used_space: col(r, base + 2)?,
        used_inodes: col(r, base + 3)?,
    })
}

/// A name as the text column of `jfs_xattr` holds it (the core checked it is UTF-8).
fn xattr_text(name: &[u8]) -> Result<&str> {
    std::str::from_utf8(name).map_err(|_| Error::invalid("attribute name is not UTF-8"))
}

/// The 8 big-endian bytes of a scan cursor, or `before` for the start.
fn cursor_i64(cursor: &[u8], before: i64) -> i64 {
    cursor
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(before)
}

/// Which rows a held-back write changes: two writes of one row are never sent in one
/// statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RowKey {
    /// The rows of one inode (or slice, for `jfs_chunk_ref` and `jfs_tidefs_sum`) in a table.
    Row(&'static str, i64),
    /// One entry.
    Entry(i64, Vec<u8>),
}

/// A write held back (PostgreSQL), with the error a violated UNIQUE index means for it.
struct Held {
    stmt: Query<'static>,
    keys: Vec<RowKey>,
    on_unique: Option<ErrorKind>,
}

/// A transaction of [`SqlEngine`].
pub struct SqlTxn<'a> {
    pub(super) tx: Tx<'a>,
    pub(super) eng: &'a SqlEngine,
    /// Writes not sent yet (PostgreSQL write transactions only).
    held: Vec<Held>,
    hold: bool,
}

impl<'a> SqlTxn<'a> {
    pub(super) fn new(tx: Tx<'a>, eng: &'a SqlEngine, mode: Mode) -> Self {
        let hold = mode == Mode::Write && tx.dialect() == Dialect::Postgres;
        Self {
            tx,
            eng,
            held: Vec::new(),
            hold,
        }
    }

    pub(super) fn dialect(&self) -> Dialect {
        self.tx.dialect()
    }

    /// The error of a failed write: a violated UNIQUE index is `on_unique` when given.
    fn write_error(op: &'static str, e: db::DbError, on_unique: Option<ErrorKind>) -> Error {
        match on_unique {
            Some(ErrorKind::Exists) if is_unique_violation(&e) => Error::exists("entry exists"),
            Some(kind) if is_unique_violation(&e) => {
                Error::new(kind, "the name was taken meanwhile")
            }
            _ => from_db(op, e),
        }
    }

    /// Send the writes held back, as one statement.
    pub(super) async fn flush(&mut self) -> Result<()> {
        self.flush_with(None, &[]).await.map(|_| ())
    }

    /// Send the writes held back, with `last` (a writing statement that returns rows, changing
    /// the rows `keys`) as the last of them; its rows.
    async fn flush_with(
        &mut self,
        last: Option<Query<'static>>,
        keys: &[RowKey],
    ) -> Result<Vec<Row>> {
        if self
            .held
            .iter()
            .any(|h| h.keys.iter().any(|k| keys.contains(k)))
        {
            Box::pin(self.flush()).await?;
        }
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return match last {
                Some(stmt) => stmt.fetch_all(&mut self.tx).await.map_err(db("write")),
                None => Ok(Vec::new()),
            };
        }
        let on_unique = held.iter().find_map(|h| h.on_unique);
        let rows = last.is_some();
        let mut stmts: Vec<Query<'static>> = held.into_iter().map(|h| h.stmt).collect();
        stmts.extend(last);
        Query::run_all(stmts, &mut self.tx, rows)
            .await
            .map_err(|e| Self::write_error("write", e, on_unique))
    }

    /// Run a writing statement now, or hold it back (PostgreSQL write transactions) to go with
    /// the others. `keys`: the rows it changes.
    async fn write(
        &mut self,
        stmt: Query<'static>,
        keys: Vec<RowKey>,
        on_unique: Option<ErrorKind>,
    ) -> Result<()> {
        if !self.hold {
            stmt.execute(&mut self.tx)
                .await
                .map_err(|e| Self::write_error("write", e, on_unique))?;
            return Ok(());
        }
        if self
            .held
            .iter()
            .any(|h| h.keys.iter().any(|k| keys.contains(k)))
        {
            self.flush().await?;
        }
        self.held.push(Held {
            stmt,
            keys,
            on_unique,
        });
        Ok(())
    }

    /// Run a statement now, after the writes held back.
    async fn exec(&mut self, op: &'static str, stmt: Query<'_>) -> Result<()> {
        self.count(op, stmt).await.map(|_| ())
    }

    /// Run a statement whose count of changed rows matters, after the writes held back.
    async fn count(&mut self, op: &'static str, stmt: Query<'_>) -> Result<u64> {
        self.flush().await?;
        Ok(stmt
            .execute(&mut self.tx)
            .await
            .map_err(db(op))?
            .rows_affected())
    }

    /// The row a query returns, after the writes held back.
    async fn one(&mut self, op: &'static str, stmt: Query<'_>) -> Result<Option<Row>> {
        self.flush().await?;
        stmt.fetch_optional(&mut self.tx).await.map_err(db(op))
    }

    /// The rows a query returns, after the writes held back.
    async fn all(&mut self, op: &'static str, stmt: Query<'_>) -> Result<Vec<Row>> {
        self.flush().await?;
        stmt.fetch_all(&mut self.tx).await.map_err(db(op))
    }

    fn sums_ok(&self) -> bool {
        self.eng.sums_ok.load(Ordering::Relaxed)
    }

    /// Hold back (or run) a write that changes the rows of `table` keyed by `id`.
    async fn write_row(
        &mut self,
        table: &'static str,
        id: u64,
        stmt: Query<'static>,
    ) -> Result<()> {
        self.write(stmt, vec![RowKey::Row(table, id as i64)], None)
            .await
    }

    /// The single column of the row a query returns, if any.
    async fn value<T: db::Get>(&mut self, op: &'static str, stmt: Query<'_>) -> Result<Option<T>> {
        self.one(op, stmt).await?.map(|r| col(&r, 0)).transpose()
    }

    /// Decode rows of `(indx, slices)`.
    fn chunk_rows(ino: Ino, rows: Vec<Row>) -> Result<Vec<(u32, Vec<Slice>)>> {
        rows.iter()
            .map(|r| {
                let indx: i64 = col(r, 0)?;
                let indx = u32::try_from(indx)
                    .map_err(|_| Error::corrupt(format!("chunk index {indx} of inode {ino}")))?;
                Ok((indx, slice::decode_all(&col::<Vec<u8>>(r, 1)?)?))
            })
            .collect()
    }

    /// A page of a scan keyed by an increasing integer id, whose rows `decode` reads: the page
    /// and the cursor of the next (the last id, big-endian).
    fn page<T>(
        rows: Vec<Row>,
        limit: usize,
        decode: impl Fn(&Row) -> Result<(i64, T)>,
    ) -> Result<Page<T>> {
        let mut out = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            let (id, item) = decode(r)?;
            out.push(item);
            last = Some(id);
        }
        let next = last
            .filter(|_| out.len() >= limit.max(1))
            .map(|id| id.to_be_bytes().to_vec());
        Ok((out, next))
    }
}

#[async_trait]
impl Txn for SqlTxn<'_> {
    async fn node(&mut self, ino: Ino) -> Result<Option<Attr>> {
        let sql = locked!(
            self.tx,
            concat!("SELECT ", node_cols!(), " FROM jfs_node WHERE inode = ?")
        );
        let row = self.one("getattr", stmt!(sql, ino)).await?;
        row.as_ref().map(|r| row_attr_at(r, 0)).transpose()
    }

    async fn create_node(&mut self, a: &Attr) -> Result<()> {
        let stmt = bind_node(q("INSERT INTO jfs_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent,access_acl_id,default_acl_id,tier_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0)"), a);
        self.write_row("node", a.ino, stmt).await
    }

    async fn update_node(&mut self, a: &Attr) -> Result<()> {
        let stmt = bind_node_fields(q("UPDATE jfs_node SET flags=?,mode=?,uid=?,gid=?,atime=?,mtime=?,ctime=?,atimensec=?,mtimensec=?,ctimensec=?,nlink=?,length=?,rdev=?,parent=? WHERE inode=?"), a).bind(a.ino);
        self.write_row("node", a.ino, stmt).await
    }

    async fn delete_inode(&mut self, a: &Attr) -> Result<()> {
        let mut stmts = vec![
            ("node", "DELETE FROM jfs_node WHERE inode = ?"),
            ("xattr", "DELETE FROM jfs_xattr WHERE inode = ?"),
        ];
        match a.typ {
            FileType::Symlink => stmts.push(("symlink", "DELETE FROM jfs_symlink WHERE inode = ?")),
            FileType::Dir => {
                stmts.push(("dir_stats", "DELETE FROM jfs_dir_stats WHERE inode = ?"));
                stmts.push(("dir_quota", "DELETE FROM jfs_dir_quota WHERE inode = ?"));
            }
            _ => {}
        }
        for (table, sql) in stmts {
            self.write_row(table, a.ino, stmt!(sql, a.ino)).await?;
        }
        Ok(())
    }

    async fn entry(&mut self, parent: Ino, name: &[u8]) -> Result<Option<(FileType, Ino)>> {
        let sql = locked!(
            self.tx,
            "SELECT inode, type FROM jfs_edge WHERE parent = ? AND name = ?"
        );
        match self.one("lookup", stmt!(sql, parent, name)).await? {
            None => Ok(None),
            Some(r) => Ok(Some((file_type(col(&r, 1)?, parent)?, col(&r, 0)?))),
        }
    }

    async fn create_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()> {
        // the UNIQUE (parent, name) index is the name check
        let sql = "INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?,?,?,?)";
        let stmt = stmt!(sql, parent, name.to_vec(), ino, typ.code());
        let key = RowKey::Entry(parent as i64, name.to_vec());
        self.write(stmt, vec![key], Some(ErrorKind::Exists)).await?;
        // sent now (with what is held back), so a taken name is this call's answer
        self.flush().await
    }

    async fn delete_entry(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let stmt = stmt!(
            "DELETE FROM jfs_edge WHERE parent = ? AND name = ?",
            parent,
            name.to_vec()
        );
        let key = RowKey::Entry(parent as i64, name.to_vec());
        self.write(stmt, vec![key], None).await
    }

    async fn move_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        _typ: FileType,
        _ino: Ino,
    ) -> Result<()> {
        let sql = "UPDATE jfs_edge SET parent = ?, name = ? WHERE parent = ? AND name = ?";
        let stmt = stmt!(sql, new_parent, new_name.to_vec(), parent, name.to_vec());
        let keys = vec![
            RowKey::Entry(parent as i64, name.to_vec()),
            RowKey::Entry(new_parent as i64, new_name.to_vec()),
        ];
        // the target was found free or removed in this transaction: a violation means another
        // transaction took the name meanwhile (PostgreSQL locks no missing row)
        self.write(stmt, keys, Some(ErrorKind::Conflict)).await
    }

    async fn replace_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()> {
        let sql = "UPDATE jfs_edge SET inode = ?, type = ? WHERE parent = ? AND name = ?";
        let stmt = stmt!(sql, ino, typ.code(), parent, name.to_vec());
        let key = RowKey::Entry(parent as i64, name.to_vec());
        self.write(stmt, vec![key], None).await
    }

    async fn dir_is_empty(&mut self, ino: Ino) -> Result<bool> {
        let sql = "SELECT 1 FROM jfs_edge WHERE parent = ? LIMIT 1";
        Ok(self.one("readdir", stmt!(sql, ino)).await?.is_none())
    }

    async fn list_entries(
        &mut self,
        dir: Ino,
        start: Bound<&[u8]>,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<Listed>> {
        // Pages follow the UNIQUE (parent, name) index: each costs its own size, not the
        // directory's. With attributes, the page of entries is taken first and joined after:
        // joined before the LIMIT, a planner without fresh statistics joins every remaining
        // entry and sorts them.
        let (from, inclusive): (&[u8], bool) = match start {
            Bound::Included(n) => (n, true),
            Bound::Excluded(n) => (n, false),
            Bound::Unbounded => (&[], false),
        };
        let sql = match (plus, inclusive) {
            (true, false) => concat!("SELECT e.id, e.name, e.inode, e.type, ", node_cols!("n"), " FROM (SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name > ? ORDER BY name LIMIT ?) e LEFT JOIN jfs_node n ON n.inode = e.inode ORDER BY e.name"),
            // from a name on (the lookahead of lookups): entries and inodes joined in one pass
            // along the index, which MySQL-family servers run without materializing the page
            (true, true) => concat!("SELECT e.id, e.name, e.inode, e.type, ", node_cols!("n"), " FROM jfs_edge e LEFT JOIN jfs_node n ON n.inode = e.inode WHERE e.parent = ? AND e.name >= ? ORDER BY e.name LIMIT ?"),
            (false, false) => "SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name > ? ORDER BY name LIMIT ?",
            (false, true) => "SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name >= ? ORDER BY name LIMIT ?",
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let stmt = stmt!(sql, dir, from.to_vec(), limit).planned_each_time();
        let rows = self.all("readdir", stmt).await?;
        rows.iter()
            .map(|r| {
                // no attributes: not asked for, or a dangling entry (fsck reports it)
                let attr = match plus && col::<Option<i64>>(r, 4)?.is_some() {
                    true => Some(row_attr_at(r, 4)?),
                    false => None,
                };
                Ok(Listed {
                    name: col(r, 1)?,
                    typ: file_type(col(r, 3)?, dir)?,
                    ino: col(r, 2)?,
                    attr,
                    id: Some(col(r, 0)?),
                })
            })
            .collect()
    }

    async fn entry_name(&mut self, dir: Ino, id: u64) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT name FROM jfs_edge WHERE id = ? AND parent = ?";
        self.value("readdir", stmt!(sql, id, dir)).await
    }

    async fn lookup(&mut self, parent: Ino, name: &[u8]) -> Result<Lookup> {
        super::fast::lookup(self, parent, name).await
    }

    async fn entry_in(&mut self, parent: Ino, name: &[u8]) -> Result<Option<EntryIn>> {
        super::fast::entry_in(self, parent, name).await
    }

    async fn rename_pair(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> Result<(Option<EntryIn>, Option<Target>)> {
        if self.dialect() == Dialect::Postgres {
            return super::fast::rename_pair_pg(self, parent, name, new_parent, new_name).await;
        }
        Ok((self.entry_in(parent, name).await?, None))
    }

    async fn xattr_of(&mut self, ino: Ino, name: &[u8]) -> Result<Option<Option<Vec<u8>>>> {
        // the inode and the attribute in one query: asked for `security.capability` at every
        // first write of a file
        let sql = "SELECT n.inode, x.value FROM jfs_node n LEFT JOIN jfs_xattr x ON x.inode = n.inode AND x.name = ? WHERE n.inode = ?";
        let row = self
            .one("getxattr", stmt!(sql, xattr_text(name)?, ino))
            .await?;
        row.map(|r| col(&r, 1)).transpose()
    }

    async fn chunk(&mut self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        let sql = locked!(
            self.tx,
            "SELECT slices FROM jfs_chunk WHERE inode = ? AND indx = ?"
        );
        match self
            .value::<Vec<u8>>("read chunk", stmt!(sql, ino, indx))
            .await?
        {
            None => Ok(Vec::new()),
            Some(buf) => slice::decode_all(&buf),
        }
    }

    async fn append_chunk(
        &mut self,
        ino: Ino,
        indx: u32,
        records: &[Slice],
        fresh: bool,
    ) -> Result<()> {
        let buf = slice::encode_all(records);
        if let Some(sql) = dialect::upsert_chunk(self.dialect()) {
            return self
                .write_row("chunk", ino, stmt!(sql, ino, indx, buf))
                .await;
        }
        // MySQL: no single statement is safe under concurrency (`ON DUPLICATE KEY` takes gap
        // locks and burns auto-increment ids)
        let insert = "INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?,?,?)";
        if fresh {
            // the chunk most likely does not exist: a duplicate fails this statement only
            match stmt!(insert, ino, indx, &buf).execute(&mut self.tx).await {
                Ok(_) => return Ok(()),
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(from_db("write chunk", e)),
            }
        }
        let append = "UPDATE jfs_chunk SET slices = CONCAT(slices, ?) WHERE inode = ? AND indx = ?";
        if self
            .count("write chunk", stmt!(append, &buf, ino, indx))
            .await?
            == 0
        {
            self.exec("write chunk", stmt!(insert, ino, indx, buf))
                .await?;
        }
        Ok(())
    }

    async fn set_chunk(&mut self, ino: Ino, indx: u32, records: &[Slice]) -> Result<()> {
        let sql = "UPDATE jfs_chunk SET slices = ? WHERE inode = ? AND indx = ?";
        self.write_row(
            "chunk",
            ino,
            stmt!(sql, slice::encode_all(records), ino, indx),
        )
        .await
    }

    async fn chunks(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<(u32, Vec<Slice>)>> {
        let sql = locked!(self.tx, "SELECT indx, slices FROM jfs_chunk WHERE inode = ? AND indx >= ? AND indx <= ? ORDER BY indx");
        let rows = self.all("read chunks", stmt!(sql, ino, lo, hi)).await?;
        Self::chunk_rows(ino, rows)
    }

    async fn chunk_indexes(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<u32>> {
        let sql =
            "SELECT indx FROM jfs_chunk WHERE inode = ? AND indx >= ? AND indx <= ? ORDER BY indx";
        let rows = self.all("zero range", stmt!(sql, ino, lo, hi)).await?;
        rows.iter()
            .map(|r| {
                let indx: i64 = col(r, 0)?;
                u32::try_from(indx)
                    .map_err(|_| Error::corrupt(format!("chunk index {indx} of inode {ino}")))
            })
            .collect()
    }

    async fn take_chunks(
        &mut self,
        ino: Ino,
        from: u32,
        _limit: usize,
    ) -> Result<(Vec<(u32, Vec<Slice>)>, bool)> {
        // every chunk at once: one statement, however many there are
        if self.dialect() == Dialect::Mysql {
            let sql = locked!(
                self.tx,
                "SELECT indx, slices FROM jfs_chunk WHERE inode = ? AND indx >= ?"
            );
            let rows = self.all("free file data", stmt!(sql, ino, from)).await?;
            if !rows.is_empty() {
                let delete = "DELETE FROM jfs_chunk WHERE inode = ? AND indx >= ?";
                self.exec("free file data", stmt!(delete, ino, from))
                    .await?;
            }
            return Ok((Self::chunk_rows(ino, rows)?, false));
        }
        let sql = "DELETE FROM jfs_chunk WHERE inode = ? AND indx >= ? RETURNING indx, slices";
        let key = RowKey::Row("chunk", ino as i64);
        let rows = self.flush_with(Some(stmt!(sql, ino, from)), &[key]).await?;
        Ok((Self::chunk_rows(ino, rows)?, false))
    }

    async fn ref_new(&mut self, id: u64, size: u32) -> Result<()> {
        let stmt = stmt!(dialect::ref_slice(self.dialect()), id, size);
        self.write_row("chunk_ref", id, stmt).await
    }

    async fn ref_more(&mut self, id: u64, size: u32, n: i64) -> Result<()> {
        // a missing row stands for the one reference its first record holds
        let stmt = stmt!(dialect::share_slice(self.dialect()), id, size, n + 1, n);
        self.write_row("chunk_ref", id, stmt).await
    }

    async fn unref(&mut self, id: u64, _size: u32) -> Result<bool> {
        // the last reference (the common case) goes in one statement
        let last = "DELETE FROM jfs_chunk_ref WHERE chunkid = ? AND refs <= 1";
        if self.count("unref slice", stmt!(last, id)).await? > 0 {
            return Ok(true);
        }
        let less = "UPDATE jfs_chunk_ref SET refs = refs - 1 WHERE chunkid = ?";
        // no reference row at all: nobody else can hold it
        Ok(self.count("unref slice", stmt!(less, id)).await? == 0)
    }

    async fn zero_refs(&mut self) -> Result<Vec<(u64, u32)>> {
        let sql = "SELECT chunkid, size FROM jfs_chunk_ref WHERE refs <= 0";
        let rows = self.all("list unreferenced slices", q(sql)).await?;
        rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
    }

    async fn drop_zero_ref(&mut self, id: u64, _size: u32) -> Result<()> {
        let sql = "DELETE FROM jfs_chunk_ref WHERE chunkid = ? AND refs <= 0";
        self.exec("purge unreferenced slice", stmt!(sql, id)).await
    }

    async fn put_sums(&mut self, id: u64, sums: &[u8]) -> Result<()> {
        if !self.sums_ok() {
            return Ok(());
        }
        let sql = "INSERT INTO jfs_tidefs_sum (id, sums) VALUES (?, ?)";
        self.write_row("sum", id, stmt!(sql, id, sums.to_vec()))
            .await
    }

    async fn sums(&mut self, id: u64) -> Result<Option<Vec<u8>>> {
        if !self.sums_ok() {
            return Ok(None);
        }
        let sql = "SELECT sums FROM jfs_tidefs_sum WHERE id = ?";
        self.value("read checksums", stmt!(sql, id)).await
    }

    async fn delete_sums(&mut self, id: u64) -> Result<()> {
        if !self.sums_ok() {
            return Ok(());
        }
        let sql = "DELETE FROM jfs_tidefs_sum WHERE id = ?";
        self.write_row("sum", id, stmt!(sql, id)).await
    }

    async fn drop_orphan_sums(&mut self) -> Result<()> {
        if !self.sums_ok() {
            return Ok(());
        }
        // every slice tidefs wrote has a reference row while anything holds it
        let sql = "DELETE FROM jfs_tidefs_sum WHERE id NOT IN (SELECT chunkid FROM jfs_chunk_ref)";
        self.exec("drop stale checksums", q(sql)).await
    }

    async fn create_symlink(&mut self, ino: Ino, target: &[u8]) -> Result<()> {
        let sql = "INSERT INTO jfs_symlink (inode, target) VALUES (?, ?)";
        self.write_row("symlink", ino, stmt!(sql, ino, target.to_vec()))
            .await
    }

    async fn symlink(&mut self, ino: Ino) -> Result<Option<Vec<u8>>> {
        self.value(
            "readlink",
            stmt!("SELECT target FROM jfs_symlink WHERE inode = ?", ino),
        )
        .await
    }

    async fn xattr(&mut self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT value FROM jfs_xattr WHERE inode = ? AND name = ?";
        self.value("getxattr", stmt!(sql, ino, xattr_text(name)?))
            .await
    }

    async fn set_xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) -> Result<()> {
        let sql = dialect::set_xattr(self.dialect());
        let stmt = stmt!(sql, ino, xattr_text(name)?.to_string(), value.to_vec());
        self.write_row("xattr", ino, stmt).await
    }

    async fn delete_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<bool> {
        let sql = "DELETE FROM jfs_xattr WHERE inode = ? AND name = ?";
        Ok(self
            .count("removexattr", stmt!(sql, ino, xattr_text(name)?))
            .await?
            > 0)
    }

    async fn xattr_names(&mut self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let sql = "SELECT name FROM jfs_xattr WHERE inode = ? ORDER BY id";
        let rows = self.all("listxattr", stmt!(sql, ino)).await?;
        rows.iter()
            .map(|r| Ok(col::<String>(r, 0)?.into_bytes()))
            .collect()
    }

    async fn counter(&mut self, name: &str) -> Result<i64> {
        let sql = "SELECT value FROM jfs_counter WHERE name = ?";
        Ok(self.value("counter", stmt!(sql, name)).await?.unwrap_or(0))
    }

    async fn add_counter(&mut self, name: &str, delta: i64) -> Result<i64> {
        self.flush().await?;
        super::fast::counter_add(&mut self.tx, name, delta).await
    }

    async fn setting(&mut self) -> Result<Option<String>> {
        let sql = locked!(
            self.tx,
            "SELECT value FROM jfs_setting WHERE name = 'format'"
        );
        self.value("load", q(sql)).await
    }

    async fn put_setting(&mut self, json: &str) -> Result<()> {
        let update = "UPDATE jfs_setting SET value = ? WHERE name = 'format'";
        if self.count("format", stmt!(update, json)).await? == 0 {
            let insert = "INSERT INTO jfs_setting (name, value) VALUES ('format', ?)";
            self.exec("format", stmt!(insert, json)).await?;
        }
        Ok(())
    }

    async fn create_dir_stat(&mut self, ino: Ino) -> Result<()> {
        let sql = "INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes) VALUES (?,0,0,0)";
        self.write_row("dir_stats", ino, stmt!(sql, ino as i64))
            .await
    }

    async fn dir_stat(&mut self, ino: Ino) -> Result<Option<DirStat>> {
        let sql = locked!(
            self.tx,
            "SELECT data_length, used_space, used_inodes FROM jfs_dir_stats WHERE inode = ?"
        );
        match self.one("dir stats", stmt!(sql, ino as i64)).await? {
            Some(r) => Ok(Some(DirStat {
                length: col(&r, 0)?,
                space: col(&r, 1)?,
                inodes: col(&r, 2)?,
            })),
            None => Ok(None),
        }
    }

    async fn put_dir_stat(&mut self, ino: Ino, st: &DirStat) -> Result<()> {
        let update = "UPDATE jfs_dir_stats SET data_length = ?, used_space = ?, used_inodes = ? WHERE inode = ?";
        let stmt = stmt!(update, st.length, st.space, st.inodes, ino as i64);
        if self.count("dir stats", stmt).await? == 0 {
            let insert = "INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes) VALUES (?,?,?,?)";
            let stmt = stmt!(insert, ino as i64, st.length, st.space, st.inodes);
            self.exec("dir stats", stmt).await?;
        }
        Ok(())
    }

    async fn add_dir_stat(&mut self, ino: Ino, d: &DirStat) -> Result<bool> {
        let sql = "UPDATE jfs_dir_stats SET data_length = data_length + ?, used_space = used_space + ?, used_inodes = used_inodes + ? WHERE inode = ?";
        let stmt = stmt!(sql, d.length, d.space, d.inodes, ino as i64);
        Ok(self.count("dir stats", stmt).await? > 0)
    }

    async fn parents(&mut self, ino: Ino) -> Result<Vec<(Ino, u32)>> {
        let sql =
            "SELECT parent, COUNT(*) FROM jfs_edge WHERE inode = ? GROUP BY parent ORDER BY parent";
        let rows = self.all("parents", stmt!(sql, ino as i64)).await?;
        rows.iter()
            .map(|r| Ok((col::<i64>(r, 0)? as Ino, col::<i64>(r, 1)? as u32)))
            .collect()
    }

    async fn quota(&mut self, kind: QuotaKind, key: u64) -> Result<Option<Quota>> {
        let row = if kind == QuotaKind::Dir {
            let sql = locked!(
                self.tx,
                "SELECT max_space, max_inodes, used_space, used_inodes FROM jfs_dir_quota WHERE inode = ?"
            );
            self.one("quota", stmt!(sql, key as i64)).await?
        } else {
            let sql = locked!(
                self.tx,
                "SELECT max_space, max_inodes, used_space, used_inodes FROM jfs_user_group_quota WHERE qtype = ? AND qkey = ?"
            );
            let stmt = stmt!(sql, i64::from(kind.code()), key as i64);
            self.one("quota", stmt).await?
        };
        row.map(|r| quota_row(&r, 0)).transpose()
    }

    async fn put_quota(&mut self, kind: QuotaKind, key: u64, v: &Quota) -> Result<()> {
        let (update, insert) = if kind == QuotaKind::Dir {
            (
                "UPDATE jfs_dir_quota SET max_space = ?, max_inodes = ?, used_space = ?, used_inodes = ? WHERE inode = ?",
                "INSERT INTO jfs_dir_quota (max_space, max_inodes, used_space, used_inodes, inode) VALUES (?,?,?,?,?)",
            )
        } else {
            (
                "UPDATE jfs_user_group_quota SET max_space = ?, max_inodes = ?, used_space = ?, used_inodes = ? WHERE qkey = ? AND qtype = ?",
                "INSERT INTO jfs_user_group_quota (max_space, max_inodes, used_space, used_inodes, qkey, qtype) VALUES (?,?,?,?,?,?)",
            )
        };
        let bind = |sql| {
            let stmt = stmt!(
                sql,
                v.max_space,
                v.max_inodes,
                v.used_space,
                v.used_inodes,
                key as i64
            );
            if kind == QuotaKind::Dir {
                stmt
            } else {
                stmt.bind(i64::from(kind.code()))
            }
        };
        if self.count("quota", bind(update)).await? == 0 {
            self.exec("quota", bind(insert)).await?;
        }
        Ok(())
    }

    async fn delete_quota(&mut self, kind: QuotaKind, key: u64) -> Result<bool> {
        let n = if kind == QuotaKind::Dir {
            let sql = "DELETE FROM jfs_dir_quota WHERE inode = ?";
            self.count("quota", stmt!(sql, key as i64)).await?
        } else {
            let sql = "DELETE FROM jfs_user_group_quota WHERE qtype = ? AND qkey = ?";
            let stmt = stmt!(sql, i64::from(kind.code()), key as i64);
            self.count("quota", stmt).await?
        };
        Ok(n > 0)
    }

    async fn quotas(&mut self, kind: QuotaKind) -> Result<Vec<(u64, Quota)>> {
        let rows = if kind == QuotaKind::Dir {
            let sql = "SELECT inode, max_space, max_inodes, used_space, used_inodes FROM jfs_dir_quota ORDER BY inode";
            self.all("quotas", q(sql)).await?
        } else {
            let sql = "SELECT qkey, max_space, max_inodes, used_space, used_inodes FROM jfs_user_group_quota WHERE qtype = ? ORDER BY qkey";
            self.all("quotas", stmt!(sql, i64::from(kind.code())))
                .await?
        };
        rows.iter()
            .map(|r| Ok((col::<i64>(r, 0)? as u64, quota_row(r, 1)?)))
            .collect()
    }

    async fn create_session(&mut self, sid: u64, expire: i64, info: &[u8]) -> Result<()> {
        let sql = "INSERT INTO jfs_session2 (sid, expire, info) VALUES (?,?,?)";
        self.exec("new session", stmt!(sql, sid, expire, info.to_vec()))
            .await
    }

    async fn refresh_session(&mut self, sid: u64, expire: i64) -> Result<()> {
        let sql = "UPDATE jfs_session2 SET expire = ? WHERE sid = ?";
        self.exec("session heartbeat", stmt!(sql, expire, sid))
            .await
    }

    async fn delete_session(&mut self, sid: u64) -> Result<()> {
        for sql in [
            "DELETE FROM jfs_sustained WHERE sid = ?",
            "DELETE FROM jfs_flock WHERE sid = ?",
            "DELETE FROM jfs_plock WHERE sid = ?",
            "DELETE FROM jfs_session2 WHERE sid = ?",
        ] {
            self.exec("remove session", stmt!(sql, sid)).await?;
        }
        Ok(())
    }

    async fn sessions(&mut self) -> Result<Vec<SessionRow>> {
        let sql = "SELECT sid, expire, info FROM jfs_session2 ORDER BY sid";
        let rows = self.all("list sessions", q(sql)).await?;
        rows.iter()
            .map(|r| {
                Ok(SessionRow {
                    sid: col(r, 0)?,
                    expire: col(r, 1)?,
                    info: col(r, 2)?,
                })
            })
            .collect()
    }

    async fn sustain(&mut self, sid: u64, ino: Ino) -> Result<()> {
        let stmt = stmt!(dialect::sustain(self.dialect()), sid, ino);
        self.write_row("sustained", ino, stmt).await
    }

    async fn unsustain(&mut self, sid: u64, ino: Ino) -> Result<bool> {
        let sql = "DELETE FROM jfs_sustained WHERE sid = ? AND inode = ?";
        Ok(self.count("close", stmt!(sql, sid, ino)).await? > 0)
    }

    async fn sustained(&mut self, sid: Option<u64>) -> Result<Vec<(u64, Ino)>> {
        let stmt = match sid {
            Some(sid) => stmt!("SELECT sid, inode FROM jfs_sustained WHERE sid = ?", sid),
            None => q("SELECT sid, inode FROM jfs_sustained"),
        };
        let rows = self.all("sustained inodes", stmt).await?;
        rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
    }

    async fn queue_delfile(&mut self, ino: Ino, length: u64, now: i64) -> Result<()> {
        let stmt = stmt!(dialect::queue_delfile(self.dialect()), ino, length, now);
        self.write_row("delfile", ino, stmt).await
    }

    async fn unqueue_delfile(&mut self, ino: Ino) -> Result<()> {
        let stmt = stmt!("DELETE FROM jfs_delfile WHERE inode = ?", ino);
        self.write_row("delfile", ino, stmt).await
    }

    async fn delfiles(&mut self) -> Result<Vec<DelFile>> {
        let sql = "SELECT inode, length, expire FROM jfs_delfile";
        let rows = self.all("list deletions", q(sql)).await?;
        rows.iter()
            .map(|r| {
                Ok(DelFile {
                    ino: col(r, 0)?,
                    length: col(r, 1)?,
                    queued: col(r, 2)?,
                })
            })
            .collect()
    }

    async fn put_delayed(&mut self, now: i64, first: u64, slices: &[(u64, u32)]) -> Result<()> {
        let sql = "INSERT INTO jfs_delslices (chunkid, deleted, slices) VALUES (?,?,?)";
        let stmt = stmt!(sql, first, now, encode_delayed(slices));
        self.write_row("delslices", first, stmt).await
    }

    async fn delayed(&mut self) -> Result<Vec<Delayed>> {
        let sql = "SELECT chunkid, deleted, slices FROM jfs_delslices";
        let rows = self.all("list delayed slices", q(sql)).await?;
        rows.iter()
            .map(|r| {
                Ok(Delayed {
                    key: col::<i64>(r, 0)?.to_be_bytes().to_vec(),
                    when: col(r, 1)?,
                    slices: decode_delayed(&col::<Vec<u8>>(r, 2)?)?,
                })
            })
            .collect()
    }

    async fn take_delayed(&mut self, key: &[u8]) -> Result<Option<Vec<(u64, u32)>>> {
        let id = cursor_i64(key, -1);
        let sql = locked!(
            self.tx,
            "SELECT slices FROM jfs_delslices WHERE chunkid = ?"
        );
        let Some(buf) = self
            .value::<Vec<u8>>("purge delayed slices", stmt!(sql, id))
            .await?
        else {
            return Ok(None);
        };
        let delete = "DELETE FROM jfs_delslices WHERE chunkid = ?";
        self.exec("purge delayed slices", stmt!(delete, id)).await?;
        Ok(Some(decode_delayed(&buf)?))
    }

    async fn flocks(&mut self, ino: Ino) -> Result<Vec<Flock>> {
        let sql = "SELECT sid, owner, ltype FROM jfs_flock WHERE inode = ?";
        let rows = self.all("flock", stmt!(sql, ino)).await?;
        rows.iter()
            .map(|r| {
                Ok(Flock {
                    sid: col(r, 0)?,
                    owner: col(r, 1)?,
                    ltype: col(r, 2)?,
                })
            })
            .collect()
    }

    async fn put_flock(&mut self, ino: Ino, l: Flock) -> Result<()> {
        let stmt = stmt!(
            dialect::put_flock(self.dialect()),
            ino,
            l.sid,
            l.owner,
            l.ltype
        );
        self.exec("flock", stmt).await
    }

    async fn delete_flock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()> {
        let sql = "DELETE FROM jfs_flock WHERE inode = ? AND sid = ? AND owner = ?";
        self.exec("flock", stmt!(sql, ino, sid, owner)).await
    }

    async fn plocks(&mut self, ino: Ino) -> Result<Vec<Plock>> {
        let sql = "SELECT sid, owner, records FROM jfs_plock WHERE inode = ?";
        let rows = self.all("posix lock", stmt!(sql, ino)).await?;
        rows.iter()
            .map(|r| {
                Ok(Plock {
                    sid: col(r, 0)?,
                    owner: col(r, 1)?,
                    records: col(r, 2)?,
                })
            })
            .collect()
    }

    async fn put_plock(&mut self, ino: Ino, l: &Plock) -> Result<()> {
        let sql = dialect::put_plock(self.dialect());
        self.exec(
            "posix lock",
            stmt!(sql, ino, l.sid, l.owner, l.records.clone()),
        )
        .await
    }

    async fn delete_plock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()> {
        let sql = "DELETE FROM jfs_plock WHERE inode = ? AND sid = ? AND owner = ?";
        self.exec("posix lock", stmt!(sql, ino, sid, owner)).await
    }

    async fn scan_nodes(&mut self, cursor: &[u8], limit: usize) -> Result<Page<Attr>> {
        let sql = concat!(
            "SELECT ",
            node_cols!(),
            " FROM jfs_node WHERE inode > ? ORDER BY inode LIMIT ?"
        );
        let rows = self
            .all(
                "fsck",
                stmt!(sql, cursor_i64(cursor, -1), limit.max(1) as i64),
            )
            .await?;
        Self::page(rows, limit, |r| {
            let a = row_attr_at(r, 0)?;
            Ok((a.ino as i64, a))
        })
    }

    async fn scan_entries(
        &mut self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<Page<(Ino, Vec<u8>, FileType, Ino)>> {
        let sql =
            "SELECT id, parent, name, type, inode FROM jfs_edge WHERE id > ? ORDER BY id LIMIT ?";
        let rows = self
            .all(
                "fsck",
                stmt!(sql, cursor_i64(cursor, -1), limit.max(1) as i64),
            )
            .await?;
        Self::page(rows, limit, |r| {
            let parent = col(r, 1)?;
            let entry = (
                parent,
                col(r, 2)?,
                file_type(col(r, 3)?, parent)?,
                col(r, 4)?,
            );
            Ok((col(r, 0)?, entry))
        })
    }

    async fn scan_chunks(&mut self, cursor: &[u8], limit: usize) -> Result<Page<ChunkSlices>> {
        // the cursor is the last (inode, index) of the previous page, big-endian
        let (ino, indx) = match cursor.len() {
            12 => (
                cursor_i64(cursor, -1),
                i64::from(u32::from_be_bytes([
                    cursor[8], cursor[9], cursor[10], cursor[11],
                ])),
            ),
            _ => (-1, -1),
        };
        let limit = limit.max(1);
        let sql = "SELECT inode, indx, slices FROM jfs_chunk WHERE inode > ? OR (inode = ? AND indx > ?) ORDER BY inode, indx LIMIT ?";
        let rows = self
            .all("list chunks", stmt!(sql, ino, ino, indx, limit as i64))
            .await?;
        let page = rows
            .iter()
            .map(|r| {
                let slices = slice::decode_all(&col::<Vec<u8>>(r, 2)?)?;
                Ok(ChunkSlices {
                    ino: col(r, 0)?,
                    indx: col(r, 1)?,
                    slices,
                })
            })
            .collect::<Result<Vec<_>>>()?;
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

    async fn create_fast(&mut self, a: &Attr, name: &[u8]) -> Result<bool> {
        super::fast::create_pg(self, a, name).await
    }

    async fn write_fast(
        &mut self,
        ino: Ino,
        indx: u32,
        s: &Slice,
        end: u64,
        mtime: Timestamp,
        sums: &[u8],
    ) -> Result<Option<(u64, Ino)>> {
        super::fast::write_pg(self, ino, indx, s, end, mtime, sums).await
    }

    async fn commit(mut self) -> Result<()> {
        if let Err(e) = self.flush().await {
            self.tx.rollback().await;
            return Err(e);
        }
        self.tx.commit().await.map_err(db("commit"))
    }

    async fn rollback(self) {
        self.tx.rollback().await
    }
}
