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

    /// Decode rows of `(indx, slices)`.
    fn chunk_rows(ino: Ino, rows: Vec<Row>) -> Result<Vec<(u32, Vec<Slice>)>> {
        rows.iter()
            .map(|r| {
                let indx: i64 = r.try_get(0).map_err(db("read chunk"))?;
                let indx = u32::try_from(indx)
                    .map_err(|_| Error::corrupt(format!("chunk index {indx} of inode {ino}")))?;
                let buf: Vec<u8> = r.try_get(1).map_err(db("read chunk"))?;
                Ok((indx, slice::decode_all(&buf)?))
            })
            .collect()
    }
}

#[async_trait]
impl Txn for SqlTxn<'_> {
    async fn node(&mut self, ino: Ino) -> Result<Option<Attr>> {
        let sql = locked!(
            self.tx,
            concat!("SELECT ", node_cols!(), " FROM jfs_node WHERE inode = ?")
        );
        let row = self.one("getattr", q(sql).bind(ino as i64)).await?;
        row.as_ref().map(|r| row_attr_at(r, 0)).transpose()
    }

    async fn create_node(&mut self, a: &Attr) -> Result<()> {
        let stmt = bind_node(q("INSERT INTO jfs_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent,access_acl_id,default_acl_id,tier_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0)"), a);
        self.write(stmt, vec![RowKey::Row("node", a.ino as i64)], None)
            .await
    }

    async fn update_node(&mut self, a: &Attr) -> Result<()> {
        let stmt = bind_node_fields(
            q("UPDATE jfs_node SET flags=?,mode=?,uid=?,gid=?,atime=?,mtime=?,ctime=?,atimensec=?,mtimensec=?,ctimensec=?,nlink=?,length=?,rdev=?,parent=? WHERE inode=?"),
            a,
        )
        .bind(a.ino as i64);
        self.write(stmt, vec![RowKey::Row("node", a.ino as i64)], None)
            .await
    }

    async fn delete_inode(&mut self, a: &Attr) -> Result<()> {
        let ino = a.ino as i64;
        let mut stmts = vec![
            ("node", "DELETE FROM jfs_node WHERE inode = ?"),
            ("xattr", "DELETE FROM jfs_xattr WHERE inode = ?"),
        ];
        match a.typ {
            FileType::Symlink => stmts.push(("symlink", "DELETE FROM jfs_symlink WHERE inode = ?")),
            FileType::Dir => stmts.push(("dir_stats", "DELETE FROM jfs_dir_stats WHERE inode = ?")),
            _ => {}
        }
        for (table, sql) in stmts {
            self.write(q(sql).bind(ino), vec![RowKey::Row(table, ino)], None)
                .await?;
        }
        Ok(())
    }

    async fn entry(&mut self, parent: Ino, name: &[u8]) -> Result<Option<(FileType, Ino)>> {
        let sql = locked!(
            self.tx,
            "SELECT inode, type FROM jfs_edge WHERE parent = ? AND name = ?"
        );
        let row = self
            .one("lookup", q(sql).bind(parent as i64).bind(name))
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let ino: i64 = r.try_get(0).map_err(db("lookup"))?;
                let t: i64 = r.try_get(1).map_err(db("lookup"))?;
                Ok(Some((file_type(t, parent)?, ino as Ino)))
            }
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
        let stmt = q("INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?,?,?,?)")
            .bind(parent as i64)
            .bind(name.to_vec())
            .bind(ino as i64)
            .bind(i64::from(typ.code()));
        let key = RowKey::Entry(parent as i64, name.to_vec());
        self.write(stmt, vec![key], Some(ErrorKind::Exists)).await
    }

    async fn delete_entry(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let stmt = q("DELETE FROM jfs_edge WHERE parent = ? AND name = ?")
            .bind(parent as i64)
            .bind(name.to_vec());
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
        let stmt = q("UPDATE jfs_edge SET parent = ?, name = ? WHERE parent = ? AND name = ?")
            .bind(new_parent as i64)
            .bind(new_name.to_vec())
            .bind(parent as i64)
            .bind(name.to_vec());
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
        let stmt = q("UPDATE jfs_edge SET inode = ?, type = ? WHERE parent = ? AND name = ?")
            .bind(ino as i64)
            .bind(i64::from(typ.code()))
            .bind(parent as i64)
            .bind(name.to_vec());
        let key = RowKey::Entry(parent as i64, name.to_vec());
        self.write(stmt, vec![key], None).await
    }

    async fn dir_is_empty(&mut self, ino: Ino) -> Result<bool> {
        let row = self
            .one(
                "readdir",
                q("SELECT 1 FROM jfs_edge WHERE parent = ? LIMIT 1").bind(ino as i64),
            )
            .await?;
        Ok(row.is_none())
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
            (true, true) => concat!("SELECT e.id, e.name, e.inode, e.type, ", node_cols!("n"), " FROM (SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name >= ? ORDER BY name LIMIT ?) e LEFT JOIN jfs_node n ON n.inode = e.inode ORDER BY e.name"),
            (false, false) => "SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name > ? ORDER BY name LIMIT ?",
            (false, true) => "SELECT id, name, inode, type FROM jfs_edge WHERE parent = ? AND name >= ? ORDER BY name LIMIT ?",
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let stmt = q(sql)
            .bind(dir as i64)
            .bind(from.to_vec())
            .bind(limit)
            .planned_each_time();
        let rows = self.all("readdir", stmt).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0).map_err(db("readdir"))?;
            let name: Vec<u8> = r.try_get(1).map_err(db("readdir"))?;
            let child: i64 = r.try_get(2).map_err(db("readdir"))?;
            let t: i64 = r.try_get(3).map_err(db("readdir"))?;
            let attr = match plus
                && r.try_get::<Option<i64>>(4)
                    .map_err(db("readdir"))?
                    .is_some()
            {
                true => Some(row_attr_at(&r, 4)?),
                false => None, // not asked for, or a dangling entry (fsck reports it)
            };
            out.push(Listed {
                name,
                typ: file_type(t, dir)?,
                ino: child as Ino,
                attr,
                id: Some(id as u64),
            });
        }
        Ok(out)
    }

    async fn entry_name(&mut self, dir: Ino, id: u64) -> Result<Option<Vec<u8>>> {
        let row = self
            .one(
                "readdir",
                q("SELECT name FROM jfs_edge WHERE id = ? AND parent = ?")
                    .bind(id as i64)
                    .bind(dir as i64),
            )
            .await?;
        row.map(|r| r.try_get::<Vec<u8>>(0))
            .transpose()
            .map_err(db("readdir"))
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
        let stmt = q("SELECT n.inode, x.value FROM jfs_node n LEFT JOIN jfs_xattr x ON x.inode = n.inode AND x.name = ? WHERE n.inode = ?")
            .bind(xattr_text(name)?)
            .bind(ino as i64);
        let row = self.one("getxattr", stmt).await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(
                r.try_get::<Option<Vec<u8>>>(1).map_err(db("getxattr"))?,
            )),
        }
    }

    async fn chunk(&mut self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        let sql = locked!(
            self.tx,
            "SELECT slices FROM jfs_chunk WHERE inode = ? AND indx = ?"
        );
        let row = self
            .one("read chunk", q(sql).bind(ino as i64).bind(i64::from(indx)))
            .await?;
        match row {
            None => Ok(Vec::new()),
            Some(r) => slice::decode_all(&r.try_get::<Vec<u8>>(0).map_err(db("read chunk"))?),
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
        let key = RowKey::Row("chunk", ino as i64);
        if let Some(sql) = dialect::upsert_chunk(self.dialect()) {
            let stmt = q(sql).bind(ino as i64).bind(i64::from(indx)).bind(buf);
            return self.write(stmt, vec![key], None).await;
        }
        // MySQL: no single statement is safe under concurrency (`ON DUPLICATE KEY` takes gap
        // locks and burns auto-increment ids)
        if fresh {
            // the chunk most likely does not exist: a duplicate fails this statement only
            let inserted = q("INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?,?,?)")
                .bind(ino as i64)
                .bind(i64::from(indx))
                .bind(&buf)
                .execute(&mut self.tx)
                .await;
            match inserted {
                Ok(_) => return Ok(()),
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(from_db("write chunk", e)),
            }
        }
        let n = self
            .count(
                "write chunk",
                q("UPDATE jfs_chunk SET slices = CONCAT(slices, ?) WHERE inode = ? AND indx = ?")
                    .bind(&buf)
                    .bind(ino as i64)
                    .bind(i64::from(indx)),
            )
            .await?;
        if n == 0 {
            q("INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?,?,?)")
                .bind(ino as i64)
                .bind(i64::from(indx))
                .bind(buf)
                .execute(&mut self.tx)
                .await
                .map_err(db("write chunk"))?;
        }
        Ok(())
    }

    async fn set_chunk(&mut self, ino: Ino, indx: u32, records: &[Slice]) -> Result<()> {
        let stmt = q("UPDATE jfs_chunk SET slices = ? WHERE inode = ? AND indx = ?")
            .bind(slice::encode_all(records))
            .bind(ino as i64)
            .bind(i64::from(indx));
        self.write(stmt, vec![RowKey::Row("chunk", ino as i64)], None)
            .await
    }

    async fn chunks(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<(u32, Vec<Slice>)>> {
        let sql = locked!(
            self.tx,
            "SELECT indx, slices FROM jfs_chunk WHERE inode = ? AND indx >= ? AND indx <= ? ORDER BY indx"
        );
        let rows = self
            .all(
                "read chunks",
                q(sql)
                    .bind(ino as i64)
                    .bind(i64::from(lo))
                    .bind(i64::from(hi)),
            )
            .await?;
        Self::chunk_rows(ino, rows)
    }

    async fn chunk_indexes(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<u32>> {
        let rows = self
            .all(
                "zero range",
                q("SELECT indx FROM jfs_chunk WHERE inode = ? AND indx >= ? AND indx <= ? ORDER BY indx")
                    .bind(ino as i64)
                    .bind(i64::from(lo))
                    .bind(i64::from(hi)),
            )
            .await?;
        rows.iter()
            .map(|r| {
                let indx: i64 = r.try_get(0).map_err(db("zero range"))?;
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
            let rows = self
                .all(
                    "free file data",
                    q(locked!(
                        self.tx,
                        "SELECT indx, slices FROM jfs_chunk WHERE inode = ? AND indx >= ?"
                    ))
                    .bind(ino as i64)
                    .bind(i64::from(from)),
                )
                .await?;
            if !rows.is_empty() {
                q("DELETE FROM jfs_chunk WHERE inode = ? AND indx >= ?")
                    .bind(ino as i64)
                    .bind(i64::from(from))
                    .execute(&mut self.tx)
                    .await
                    .map_err(db("free file data"))?;
            }
            return Ok((Self::chunk_rows(ino, rows)?, false));
        }
        let stmt = q("DELETE FROM jfs_chunk WHERE inode = ? AND indx >= ? RETURNING indx, slices")
            .bind(ino as i64)
            .bind(i64::from(from));
        let rows = self
            .flush_with(Some(stmt), &[RowKey::Row("chunk", ino as i64)])
            .await?;
        Ok((Self::chunk_rows(ino, rows)?, false))
    }

    async fn ref_new(&mut self, id: u64, size: u32) -> Result<()> {
        let stmt = q(dialect::ref_slice(self.dialect()))
            .bind(id as i64)
            .bind(i64::from(size));
        self.write(stmt, vec![RowKey::Row("chunk_ref", id as i64)], None)
            .await
    }

    async fn ref_more(&mut self, id: u64, size: u32, n: i64) -> Result<()> {
        // a missing row stands for the one reference its first record holds
        let stmt = q(dialect::share_slice(self.dialect()))
            .bind(id as i64)
            .bind(i64::from(size))
            .bind(n + 1)
            .bind(n);
        self.write(stmt, vec![RowKey::Row("chunk_ref", id as i64)], None)
            .await
    }

    async fn unref(&mut self, id: u64, _size: u32) -> Result<bool> {
        // the last reference (the common case) goes in one statement
        let gone = self
            .count(
                "unref slice",
                q("DELETE FROM jfs_chunk_ref WHERE chunkid = ? AND refs <= 1").bind(id as i64),
            )
            .await?;
        if gone > 0 {
            return Ok(true);
        }
        let kept = self
            .count(
                "unref slice",
                q("UPDATE jfs_chunk_ref SET refs = refs - 1 WHERE chunkid = ?").bind(id as i64),
            )
            .await?;
        // no reference row at all: nobody else can hold it
        Ok(kept == 0)
    }

    async fn zero_refs(&mut self) -> Result<Vec<(u64, u32)>> {
        let rows = self
            .all(
                "list unreferenced slices",
                q("SELECT chunkid, size FROM jfs_chunk_ref WHERE refs <= 0"),
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0).map_err(db("list unreferenced slices"))?;
                let size: i64 = r.try_get(1).map_err(db("list unreferenced slices"))?;
                Ok((id as u64, size as u32))
            })
            .collect()
    }

    async fn drop_zero_ref(&mut self, id: u64, _size: u32) -> Result<()> {
        self.count(
            "purge unreferenced slice",
            q("DELETE FROM jfs_chunk_ref WHERE chunkid = ? AND refs <= 0").bind(id as i64),
        )
        .await
        .map(|_| ())
    }

    async fn put_sums(&mut self, id: u64, sums: &[u8]) -> Result<()> {
        if !self.sums_ok() {
            return Ok(());
        }
        let stmt = q("INSERT INTO jfs_tidefs_sum (id, sums) VALUES (?, ?)")
            .bind(id as i64)
            .bind(sums.to_vec());
        self.write(stmt, vec![RowKey::Row("sum", id as i64)], None)
            .await
    }

    async fn sums(&mut self, id: u64) -> Result<Option<Vec<u8>>> {
        if !self.sums_ok() {
            return Ok(None);
        }
        let row = self
            .one(
                "read checksums",
                q("SELECT sums FROM jfs_tidefs_sum WHERE id = ?").bind(id as i64),
            )
            .await?;
        row.map(|r| r.try_get::<Vec<u8>>(0))
            .transpose()
            .map_err(db("read checksums"))
    }

    async fn delete_sums(&mut self, id: u64) -> Result<()> {
        if !self.sums_ok() {
            return Ok(());
        }
        let stmt = q("DELETE FROM jfs_tidefs_sum WHERE id = ?").bind(id as i64);
        self.write(stmt, vec![RowKey::Row("sum", id as i64)], None)
            .await
    }

    async fn drop_orphan_sums(&mut self) -> Result<()> {
        if !self.sums_ok() {
            return Ok(());
        }
        // every slice tidefs wrote has a reference row while anything holds it
        self.count(
            "drop stale checksums",
            q("DELETE FROM jfs_tidefs_sum WHERE id NOT IN (SELECT chunkid FROM jfs_chunk_ref)"),
        )
        .await
        .map(|_| ())
    }

    async fn create_symlink(&mut self, ino: Ino, target: &[u8]) -> Result<()> {
        let stmt = q("INSERT INTO jfs_symlink (inode, target) VALUES (?, ?)")
            .bind(ino as i64)
            .bind(target.to_vec());
        self.write(stmt, vec![RowKey::Row("symlink", ino as i64)], None)
            .await
    }

    async fn symlink(&mut self, ino: Ino) -> Result<Option<Vec<u8>>> {
        let row = self
            .one(
                "readlink",
                q("SELECT target FROM jfs_symlink WHERE inode = ?").bind(ino as i64),
            )
            .await?;
        row.map(|r| r.try_get::<Vec<u8>>(0))
            .transpose()
            .map_err(db("readlink"))
    }

    async fn xattr(&mut self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let stmt = q("SELECT value FROM jfs_xattr WHERE inode = ? AND name = ?")
            .bind(ino as i64)
            .bind(xattr_text(name)?);
        let row = self.one("getxattr", stmt).await?;
        row.map(|r| r.try_get::<Vec<u8>>(0))
            .transpose()
            .map_err(db("getxattr"))
    }

    async fn set_xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) -> Result<()> {
        let stmt = q(dialect::set_xattr(self.dialect()))
            .bind(ino as i64)
            .bind(xattr_text(name)?.to_string())
            .bind(value.to_vec());
        self.write(stmt, vec![RowKey::Row("xattr", ino as i64)], None)
            .await
    }

    async fn delete_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<bool> {
        let stmt = q("DELETE FROM jfs_xattr WHERE inode = ? AND name = ?")
            .bind(ino as i64)
            .bind(xattr_text(name)?);
        Ok(self.count("removexattr", stmt).await? > 0)
    }

    async fn xattr_names(&mut self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let rows = self
            .all(
                "listxattr",
                q("SELECT name FROM jfs_xattr WHERE inode = ? ORDER BY id").bind(ino as i64),
            )
            .await?;
        rows.iter()
            .map(|r| {
                r.try_get::<String>(0)
                    .map(String::into_bytes)
                    .map_err(db("listxattr"))
            })
            .collect()
    }

    async fn counter(&mut self, name: &str) -> Result<i64> {
        let stmt = q("SELECT value FROM jfs_counter WHERE name = ?").bind(name);
        match self.one("counter", stmt).await? {
            Some(r) => r.try_get(0).map_err(db("counter")),
            None => Ok(0),
        }
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
        let row = self.one("load", q(sql)).await?;
        row.map(|r| r.try_get::<String>(0))
            .transpose()
            .map_err(db("load"))
    }

    async fn put_setting(&mut self, json: &str) -> Result<()> {
        let n = self
            .count(
                "format",
                q("UPDATE jfs_setting SET value = ? WHERE name = 'format'").bind(json),
            )
            .await?;
        if n == 0 {
            q("INSERT INTO jfs_setting (name, value) VALUES ('format', ?)")
                .bind(json)
                .execute(&mut self.tx)
                .await
                .map_err(db("format"))?;
        }
        Ok(())
    }

    async fn create_session(&mut self, sid: u64, expire: i64, info: &[u8]) -> Result<()> {
        self.count(
            "new session",
            q("INSERT INTO jfs_session2 (sid, expire, info) VALUES (?,?,?)")
                .bind(sid as i64)
                .bind(expire)
                .bind(info.to_vec()),
        )
        .await
        .map(|_| ())
    }

    async fn refresh_session(&mut self, sid: u64, expire: i64) -> Result<()> {
        self.count(
            "session heartbeat",
            q("UPDATE jfs_session2 SET expire = ? WHERE sid = ?")
                .bind(expire)
                .bind(sid as i64),
        )
        .await
        .map(|_| ())
    }

    async fn delete_session(&mut self, sid: u64) -> Result<()> {
        for sql in [
            "DELETE FROM jfs_sustained WHERE sid = ?",
            "DELETE FROM jfs_flock WHERE sid = ?",
            "DELETE FROM jfs_plock WHERE sid = ?",
            "DELETE FROM jfs_session2 WHERE sid = ?",
        ] {
            self.count("remove session", q(sql).bind(sid as i64))
                .await?;
        }
        Ok(())
    }

    async fn sessions(&mut self) -> Result<Vec<SessionRow>> {
        let rows = self
            .all(
                "list sessions",
                q("SELECT sid, expire, info FROM jfs_session2 ORDER BY sid"),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionRow {
                    sid: r.try_get::<i64>(0).map_err(db("list sessions"))? as u64,
                    expire: r.try_get(1).map_err(db("list sessions"))?,
                    info: r.try_get(2).map_err(db("list sessions"))?,
                })
            })
            .collect()
    }

    async fn sustain(&mut self, sid: u64, ino: Ino) -> Result<()> {
        let stmt = q(dialect::sustain(self.dialect()))
            .bind(sid as i64)
            .bind(ino as i64);
        self.write(stmt, vec![RowKey::Row("sustained", ino as i64)], None)
            .await
    }

    async fn unsustain(&mut self, sid: u64, ino: Ino) -> Result<bool> {
        let n = self
            .count(
                "close",
                q("DELETE FROM jfs_sustained WHERE sid = ? AND inode = ?")
                    .bind(sid as i64)
                    .bind(ino as i64),
            )
            .await?;
        Ok(n > 0)
    }

    async fn sustained(&mut self, sid: Option<u64>) -> Result<Vec<(u64, Ino)>> {
        let stmt = match sid {
            Some(sid) => q("SELECT sid, inode FROM jfs_sustained WHERE sid = ?").bind(sid as i64),
            None => q("SELECT sid, inode FROM jfs_sustained"),
        };
        let rows = self.all("sustained inodes", stmt).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64>(0).map_err(db("sustained inodes"))? as u64,
                    r.try_get::<i64>(1).map_err(db("sustained inodes"))? as Ino,
                ))
            })
            .collect()
    }

    async fn queue_delfile(&mut self, ino: Ino, length: u64, now: i64) -> Result<()> {
        let stmt = q(dialect::queue_delfile(self.dialect()))
            .bind(ino as i64)
            .bind(length as i64)
            .bind(now);
        self.write(stmt, vec![RowKey::Row("delfile", ino as i64)], None)
            .await
    }

    async fn unqueue_delfile(&mut self, ino: Ino) -> Result<()> {
        let stmt = q("DELETE FROM jfs_delfile WHERE inode = ?").bind(ino as i64);
        self.write(stmt, vec![RowKey::Row("delfile", ino as i64)], None)
            .await
    }

    async fn delfiles(&mut self) -> Result<Vec<DelFile>> {
        let rows = self
            .all(
                "list deletions",
                q("SELECT inode, length, expire FROM jfs_delfile"),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DelFile {
                    ino: r.try_get::<i64>(0).map_err(db("list deletions"))? as Ino,
                    length: r.try_get::<i64>(1).map_err(db("list deletions"))? as u64,
                    queued: r.try_get(2).map_err(db("list deletions"))?,
                })
            })
            .collect()
    }

    async fn put_delayed(&mut self, now: i64, first: u64, slices: &[(u64, u32)]) -> Result<()> {
        let stmt = q("INSERT INTO jfs_delslices (chunkid, deleted, slices) VALUES (?,?,?)")
            .bind(first as i64)
            .bind(now)
            .bind(encode_delayed(slices));
        self.write(stmt, vec![RowKey::Row("delslices", first as i64)], None)
            .await
    }

    async fn delayed(&mut self) -> Result<Vec<Delayed>> {
        let rows = self
            .all(
                "list delayed slices",
                q("SELECT chunkid, deleted, slices FROM jfs_delslices"),
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0).map_err(db("list delayed slices"))?;
                Ok(Delayed {
                    key: id.to_be_bytes().to_vec(),
                    when: r.try_get(1).map_err(db("list delayed slices"))?,
                    slices: decode_delayed(
                        &r.try_get::<Vec<u8>>(2).map_err(db("list delayed slices"))?,
                    )?,
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
        let Some(row) = self.one("purge delayed slices", q(sql).bind(id)).await? else {
            return Ok(None);
        };
        let buf: Vec<u8> = row.try_get(0).map_err(db("purge delayed slices"))?;
        self.count(
            "purge delayed slices",
            q("DELETE FROM jfs_delslices WHERE chunkid = ?").bind(id),
        )
        .await?;
        Ok(Some(decode_delayed(&buf)?))
    }

    async fn flocks(&mut self, ino: Ino) -> Result<Vec<Flock>> {
        let rows = self
            .all(
                "flock",
                q("SELECT sid, owner, ltype FROM jfs_flock WHERE inode = ?").bind(ino as i64),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Flock {
                    sid: r.try_get::<i64>(0).map_err(db("flock"))? as u64,
                    owner: r.try_get::<i64>(1).map_err(db("flock"))? as u64,
                    ltype: r.try_get::<i64>(2).map_err(db("flock"))? as u8,
                })
            })
            .collect()
    }

    async fn put_flock(&mut self, ino: Ino, l: Flock) -> Result<()> {
        self.count(
            "flock",
            q(dialect::put_flock(self.dialect()))
                .bind(ino as i64)
                .bind(l.sid as i64)
                .bind(l.owner as i64)
                .bind(i64::from(l.ltype)),
        )
        .await
        .map(|_| ())
    }

    async fn delete_flock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()> {
        self.count(
            "flock",
            q("DELETE FROM jfs_flock WHERE inode = ? AND sid = ? AND owner = ?")
                .bind(ino as i64)
                .bind(sid as i64)
                .bind(owner as i64),
        )
        .await
        .map(|_| ())
    }

    async fn plocks(&mut self, ino: Ino) -> Result<Vec<Plock>> {
        let rows = self
            .all(
                "posix lock",
                q("SELECT sid, owner, records FROM jfs_plock WHERE inode = ?").bind(ino as i64),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Plock {
                    sid: r.try_get::<i64>(0).map_err(db("posix lock"))? as u64,
                    owner: r.try_get::<i64>(1).map_err(db("posix lock"))? as u64,
                    records: r.try_get(2).map_err(db("posix lock"))?,
                })
            })
            .collect()
    }

    async fn put_plock(&mut self, ino: Ino, l: &Plock) -> Result<()> {
        self.count(
            "posix lock",
            q(dialect::put_plock(self.dialect()))
                .bind(ino as i64)
                .bind(l.sid as i64)
                .bind(l.owner as i64)
                .bind(l.records.clone()),
        )
        .await
        .map(|_| ())
    }

    async fn delete_plock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()> {
        self.count(
            "posix lock",
            q("DELETE FROM jfs_plock WHERE inode = ? AND sid = ? AND owner = ?")
                .bind(ino as i64)
                .bind(sid as i64)
                .bind(owner as i64),
        )
        .await
        .map(|_| ())
    }

    async fn scan_nodes(&mut self, cursor: &[u8], limit: usize) -> Result<Page<Attr>> {
        let after = cursor_i64(cursor, -1);
        let stmt = q(concat!(
            "SELECT ",
            node_cols!(),
            " FROM jfs_node WHERE inode > ? ORDER BY inode LIMIT ?"
        ))
        .bind(after)
        .bind(limit.max(1) as i64);
        let rows = self.all("fsck", stmt).await?;
        let page = rows
            .iter()
            .map(|r| row_attr_at(r, 0))
            .collect::<Result<Vec<_>>>()?;
        let next = match page.last() {
            Some(a) if page.len() >= limit.max(1) => Some((a.ino as i64).to_be_bytes().to_vec()),
            _ => None,
        };
        Ok((page, next))
    }

    async fn scan_entries(
        &mut self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<Page<(Ino, Vec<u8>, FileType, Ino)>> {
        let after = cursor_i64(cursor, -1);
        let stmt = q(
            "SELECT id, parent, name, type, inode FROM jfs_edge WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit.max(1) as i64);
        let rows = self.all("fsck", stmt).await?;
        let mut page = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            let id: i64 = r.try_get(0).map_err(db("fsck"))?;
            let parent = r.try_get::<i64>(1).map_err(db("fsck"))? as Ino;
            let t: i64 = r.try_get(3).map_err(db("fsck"))?;
            page.push((
                parent,
                r.try_get::<Vec<u8>>(2).map_err(db("fsck"))?,
                file_type(t, parent)?,
                r.try_get::<i64>(4).map_err(db("fsck"))? as Ino,
            ));
            last = Some(id);
        }
        let next = match last {
            Some(id) if page.len() >= limit.max(1) => Some(id.to_be_bytes().to_vec()),
            _ => None,
        };
        Ok((page, next))
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
        let stmt = q("SELECT inode, indx, slices FROM jfs_chunk WHERE inode > ? OR (inode = ? AND indx > ?) ORDER BY inode, indx LIMIT ?")
            .bind(ino)
            .bind(ino)
            .bind(indx)
            .bind(limit as i64);
        let rows = self.all("list chunks", stmt).await?;
        let page = rows
            .iter()
            .map(|r| {
                Ok(ChunkSlices {
                    ino: r.try_get::<i64>(0).map_err(db("list chunks"))? as u64,
                    indx: r.try_get::<i64>(1).map_err(db("list chunks"))? as u32,
                    slices: slice::decode_all(
                        &r.try_get::<Vec<u8>>(2).map_err(db("list chunks"))?,
                    )?,
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
    ) -> Result<Option<u64>> {
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
