//! Reads the SQL engine answers in one query where the contract's defaults take several, and
//! PostgreSQL's one-round-trip paths (a create and a write as one statement with data-modifying
//! CTEs, no BEGIN / COMMIT). Each answers exactly what the step-by-step default would, or does
//! nothing and says so.

use super::db::{q, Dialect, Tx};
use super::txn::{bind_node, col, db, file_type, locked, node_cols, row_attr_at, SqlTxn};
use crate::engine::{EntryIn, Lookup, Target, Txn};
use crate::error::{from_db, is_unique_violation, Error, Result};
use crate::slice::{self, Slice};
use crate::types::*;

/// `name` in `parent`: one query on the servers for hit and miss alike (the directory joined
/// with the entry and its inode, telling a missing or non-directory parent from a missing
/// name); on SQLite the entry joined with its inode, and the directory only on a miss.
pub(super) async fn lookup(t: &mut SqlTxn<'_>, parent: Ino, name: &[u8]) -> Result<Lookup> {
    t.flush().await?;
    if t.dialect() == Dialect::Sqlite {
        let row = q(concat!(
            "SELECT ",
            node_cols!("n"),
            " FROM jfs_edge e JOIN jfs_node n ON n.inode = e.inode WHERE e.parent = ? AND e.name = ?"
        ))
        .bind(parent as i64)
        .bind(name)
        .fetch_optional(&mut t.tx)
        .await
        .map_err(db("lookup"))?;
        if let Some(r) = row {
            return Ok(Lookup::Found(row_attr_at(&r, 0)?));
        }
        return Ok(match t.node(parent).await? {
            None => Lookup::NoParent,
            Some(p) if p.typ != FileType::Dir => Lookup::NotDir,
            Some(_) => match t.entry(parent, name).await? {
                Some((_, ino)) => Lookup::Dangling(ino),
                None => Lookup::Missing,
            },
        });
    }
    let row = q(concat!(
        "SELECT p.type, e.inode, ",
        node_cols!("n"),
        " FROM jfs_node p LEFT JOIN jfs_edge e ON e.parent = p.inode AND e.name = ? LEFT JOIN jfs_node n ON n.inode = e.inode WHERE p.inode = ?"
    ))
    .bind(name)
    .bind(parent as i64)
    .fetch_optional(&mut t.tx)
    .await
    .map_err(db("lookup"))?;
    let Some(r) = row else {
        return Ok(Lookup::NoParent);
    };
    let ptype: i64 = col(&r, 0)?;
    if ptype != i64::from(FileType::Dir.code()) {
        return Ok(Lookup::NotDir);
    }
    let Some(child) = col::<Option<i64>>(&r, 1)? else {
        return Ok(Lookup::Missing);
    };
    if col::<Option<i64>>(&r, 2)?.is_none() {
        return Ok(Lookup::Dangling(child as Ino));
    }
    Ok(Lookup::Found(row_attr_at(&r, 2)?))
}

/// A directory, its entry `name` and the entry's inode in one query (rows locked in a server
/// write transaction).
pub(super) async fn entry_in(
    t: &mut SqlTxn<'_>,
    parent: Ino,
    name: &[u8],
) -> Result<Option<EntryIn>> {
    t.flush().await?;
    let sql = locked!(
        t.tx,
        concat!(
            "SELECT ",
            node_cols!("p"),
            ", ",
            node_cols!("n"),
            " FROM jfs_node p JOIN jfs_edge e ON e.parent = p.inode JOIN jfs_node n ON n.inode = e.inode WHERE p.inode = ? AND e.name = ?"
        )
    );
    let row = q(sql)
        .bind(parent as i64)
        .bind(name)
        .fetch_optional(&mut t.tx)
        .await
        .map_err(db("lookup"))?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(EntryIn {
            dir: row_attr_at(&r, 0)?,
            node: row_attr_at(&r, 16)?,
        })),
    }
}

/// What a rename needs to start, read and locked in one statement on PostgreSQL: the source
/// directory, entry and inode (as [`entry_in`]) and the target entry with its inode, if any.
/// One statement has one snapshot: when it waited for the directory lock, a target entry
/// created meanwhile is missing from it (rows it did see are locked and current); moving the
/// source onto that name then violates the UNIQUE index, which is a conflict, and the rename
/// runs again.
pub(super) async fn rename_pair_pg(
    t: &mut SqlTxn<'_>,
    parent: Ino,
    name: &[u8],
    new_parent: Ino,
    new_name: &[u8],
) -> Result<(Option<EntryIn>, Option<Target>)> {
    t.flush().await?;
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
    .fetch_optional(&mut t.tx)
    .await
    .map_err(db("rename"))?;
    let Some(r) = row else {
        return Ok((None, None));
    };
    // columns: the directory (16), the entry id, the inode (16), the target entry (id, inode,
    // type) and the target's inode (16)
    let src = EntryIn {
        dir: row_attr_at(&r, 0)?,
        node: row_attr_at(&r, 17)?,
    };
    let target = match col::<Option<i64>>(&r, 33)? {
        Some(_) => {
            let ino: i64 = col(&r, 34)?;
            let typ: i64 = col(&r, 35)?;
            // a dangling target entry (no inode) is reported by the general path
            let attr = match col::<Option<i64>>(&r, 36)? {
                Some(_) => Some(row_attr_at(&r, 36)?),
                None => None,
            };
            Some((file_type(typ, new_parent)?, ino as Ino, attr))
        }
        None => None,
    };
    Ok((Some(src), Some(target)))
}

/// Add `delta` to counter `name` and return the new value; one statement when the counter
/// exists (always, but for `nextTrash` on old volumes).
pub(super) async fn counter_add(c: &mut Tx<'_>, name: &str, delta: i64) -> Result<i64> {
    if delta != 0 {
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
                    return col(&r, 0);
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
                return col(&r, 0);
            }
        }
    }
    let row = q(locked!(c, "SELECT value FROM jfs_counter WHERE name = ?"))
        .bind(name)
        .fetch_optional(c)
        .await
        .map_err(db("counter"))?;
    let old: i64 = match row {
        Some(r) => col(&r, 0)?,
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

/// PostgreSQL: a create in one statement. It changes nothing when the parent is not a live
/// directory outside the trash without the set-group-ID bit (mode bit 1024).
pub(super) async fn create_pg(t: &mut SqlTxn<'_>, a: &Attr, name: &[u8]) -> Result<bool> {
    if t.dialect() != Dialect::Postgres {
        return Ok(false);
    }
    let now = a.ctime;
    let dir = a.typ == FileType::Dir;
    // a new directory's empty statistics go in the same statement
    let sql = if dir {
        "WITH p AS (UPDATE jfs_node SET mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ?, nlink = nlink + ? WHERE inode = ? AND type = 2 AND nlink > 0 AND inode <> ? AND parent <> ? AND (mode & 1024) = 0 RETURNING inode), \
        n AS (INSERT INTO jfs_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent,access_acl_id,default_acl_id,tier_id) SELECT ?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0 FROM p), \
        e AS (INSERT INTO jfs_edge (parent, name, inode, type) SELECT inode, ?, ?, ? FROM p), \
        s AS (INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes) SELECT ?, 0, 0, 0 FROM p) \
        SELECT inode FROM p"
    } else {
        "WITH p AS (UPDATE jfs_node SET mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ?, nlink = nlink + ? WHERE inode = ? AND type = 2 AND nlink > 0 AND inode <> ? AND parent <> ? AND (mode & 1024) = 0 RETURNING inode), \
        n AS (INSERT INTO jfs_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent,access_acl_id,default_acl_id,tier_id) SELECT ?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0 FROM p), \
        e AS (INSERT INTO jfs_edge (parent, name, inode, type) SELECT inode, ?, ?, ? FROM p) \
        SELECT inode FROM p"
    };
    let mut stmt = bind_node(
        q(sql)
            .bind(now.to_micros())
            .bind(now.to_micros())
            .bind(now.sub_micro_nanos())
            .bind(now.sub_micro_nanos())
            .bind(i64::from(a.typ == FileType::Dir))
            .bind(a.parent as i64)
            .bind(TRASH_INODE as i64)
            .bind(TRASH_INODE as i64),
        a,
    )
    .bind(name)
    .bind(a.ino as i64)
    .bind(i64::from(a.typ.code()));
    if dir {
        stmt = stmt.bind(a.ino as i64);
    }
    let row = stmt.fetch_optional(&mut t.tx).await.map_err(|e| {
        if is_unique_violation(&e) {
            Error::exists("entry exists")
        } else {
            from_db("mknod", e)
        }
    })?;
    Ok(row.is_some())
}

/// PostgreSQL: a slice write in one statement: the node (locked, read before and changed),
/// the chunk, the reference and the checksums. Nothing changes when the inode is missing or
/// not a regular file.
pub(super) async fn write_pg(
    t: &mut SqlTxn<'_>,
    ino: Ino,
    indx: u32,
    s: &Slice,
    end: u64,
    mtime: Timestamp,
    sums: &[u8],
) -> Result<Option<(u64, Ino)>> {
    if t.dialect() != Dialect::Postgres {
        return Ok(None);
    }
    let with_sums = !sums.is_empty() && t.eng.sums_ok.load(std::sync::atomic::Ordering::Relaxed);
    let sql = if with_sums {
        "WITH u AS (UPDATE jfs_node n SET length = GREATEST(n.length, ?), mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ? \
        FROM (SELECT inode, length FROM jfs_node WHERE inode = ? AND type = 1 FOR UPDATE) o WHERE n.inode = o.inode RETURNING o.length, CASE WHEN n.nlink = 0 THEN 0 ELSE n.parent END AS parent), \
        c AS (INSERT INTO jfs_chunk (inode, indx, slices) SELECT ?, ?, ? FROM u ON CONFLICT (inode, indx) DO UPDATE SET slices = jfs_chunk.slices || excluded.slices), \
        r AS (INSERT INTO jfs_chunk_ref (chunkid, size, refs) SELECT ?, ?, 1 FROM u ON CONFLICT (chunkid) DO UPDATE SET refs = jfs_chunk_ref.refs + 1), \
        s AS (INSERT INTO jfs_tidefs_sum (id, sums) SELECT ?, ? FROM u ON CONFLICT (id) DO NOTHING) \
        SELECT length, parent FROM u"
    } else {
        "WITH u AS (UPDATE jfs_node n SET length = GREATEST(n.length, ?), mtime = ?, ctime = ?, mtimensec = ?, ctimensec = ? \
        FROM (SELECT inode, length FROM jfs_node WHERE inode = ? AND type = 1 FOR UPDATE) o WHERE n.inode = o.inode RETURNING o.length, CASE WHEN n.nlink = 0 THEN 0 ELSE n.parent END AS parent), \
        c AS (INSERT INTO jfs_chunk (inode, indx, slices) SELECT ?, ?, ? FROM u ON CONFLICT (inode, indx) DO UPDATE SET slices = jfs_chunk.slices || excluded.slices), \
        r AS (INSERT INTO jfs_chunk_ref (chunkid, size, refs) SELECT ?, ?, 1 FROM u ON CONFLICT (chunkid) DO UPDATE SET refs = jfs_chunk_ref.refs + 1) \
        SELECT length, parent FROM u"
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
        .bind(slice::encode_all(&[*s]))
        .bind(s.id as i64)
        .bind(i64::from(s.size));
    if with_sums {
        stmt = stmt.bind(s.id as i64).bind(sums.to_vec());
    }
    let row = stmt.fetch_optional(&mut t.tx).await.map_err(db("write"))?;
    match row {
        Some(r) => Ok(Some((col::<i64>(&r, 0)? as u64, col::<i64>(&r, 1)? as Ino))),
        None => Ok(None),
    }
}
