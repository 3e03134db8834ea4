//! The statements whose text differs between SQLite, MySQL-protocol servers and PostgreSQL.
//! Everything else the engine runs is SQL all of them accept.

use super::db::Dialect;

/// DDL that creates an empty volume's tables.
pub(crate) fn ddl(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::Sqlite => super::schema::SQLITE_DDL,
        Dialect::Mysql => super::schema::MYSQL_DDL,
        Dialect::Postgres => super::schema::POSTGRES_DDL,
    }
}

/// The table of tidefs's block checksums (JuiceFS ignores tables it does not know): one row
/// per slice, its blocks' CRC32Cs (see `tidefs_chunk::sums`).
pub(crate) fn sums_ddl(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "CREATE TABLE IF NOT EXISTS jfs_tidefs_sum (id INTEGER PRIMARY KEY NOT NULL, sums BLOB NOT NULL)",
        Dialect::Mysql => "CREATE TABLE IF NOT EXISTS jfs_tidefs_sum (id BIGINT NOT NULL, sums BLOB NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB",
        Dialect::Postgres => "CREATE TABLE IF NOT EXISTS jfs_tidefs_sum (id BIGINT NOT NULL PRIMARY KEY, sums BYTEA NOT NULL)",
    }
}

/// Tables tidefs adds to a volume's (dropped with it).
pub(crate) const TIDEFS_TABLES: &[&str] = &["jfs_tidefs_sum"];

/// `SELECT 1` when the volume's setting table exists.
pub(crate) fn has_setting_table(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jfs_setting'",
        Dialect::Mysql => "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'jfs_setting'",
        // unquoted names fold to lower case on PostgreSQL
        Dialect::Postgres => "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = lower('jfs_setting')",
    }
}

/// Record that session `?` keeps inode `?` alive, unless it already does.
pub(crate) fn sustain(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "INSERT OR IGNORE INTO jfs_sustained (sid, inode) VALUES (?, ?)",
        Dialect::Mysql => "INSERT IGNORE INTO jfs_sustained (sid, inode) VALUES (?, ?)",
        Dialect::Postgres => {
            "INSERT INTO jfs_sustained (sid, inode) VALUES (?, ?) ON CONFLICT DO NOTHING"
        }
    }
}

/// Queue inode `?` of length `?` for deletion at `?`, replacing an older entry.
pub(crate) fn queue_delfile(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "INSERT OR REPLACE INTO jfs_delfile (inode, length, expire) VALUES (?,?,?)",
        Dialect::Mysql => "REPLACE INTO jfs_delfile (inode, length, expire) VALUES (?,?,?)",
        Dialect::Postgres => "INSERT INTO jfs_delfile (inode, length, expire) VALUES (?,?,?) ON CONFLICT (inode) DO UPDATE SET length = excluded.length, expire = excluded.expire",
    }
}

/// One more reference to slice `?` of size `?` (the first creates the row).
pub(crate) fn ref_slice(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?,?,1) ON CONFLICT (chunkid) DO UPDATE SET refs = refs + 1",
        Dialect::Mysql => "INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?,?,1) ON DUPLICATE KEY UPDATE refs = refs + 1",
        Dialect::Postgres => "INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?,?,1) ON CONFLICT (chunkid) DO UPDATE SET refs = jfs_chunk_ref.refs + 1",
    }
}

/// More references to a slice, for records that share it: binds `id, size, n + 1, n` for `n`
/// more. A missing row stands for the one reference its
/// first record holds, so it is created with that one counted.
pub(crate) fn share_slice(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?,?,?) ON CONFLICT (chunkid) DO UPDATE SET refs = refs + ?",
        Dialect::Mysql => "INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?,?,?) ON DUPLICATE KEY UPDATE refs = refs + ?",
        Dialect::Postgres => "INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?,?,?) ON CONFLICT (chunkid) DO UPDATE SET refs = jfs_chunk_ref.refs + ?",
    }
}

/// Set extended attribute `?` of inode `?` to `?`, creating or replacing it.
pub(crate) fn set_xattr(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite | Dialect::Postgres => "INSERT INTO jfs_xattr (inode, name, value) VALUES (?,?,?) ON CONFLICT (inode, name) DO UPDATE SET value = excluded.value",
        Dialect::Mysql => "INSERT INTO jfs_xattr (inode, name, value) VALUES (?,?,?) ON DUPLICATE KEY UPDATE value = VALUES(value)",
    }
}

/// Store the BSD lock of inode `?`, session `?`, owner `?` with type `?`.
pub(crate) fn put_flock(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite | Dialect::Postgres => "INSERT INTO jfs_flock (inode, sid, owner, ltype) VALUES (?,?,?,?) ON CONFLICT (inode, sid, owner) DO UPDATE SET ltype = excluded.ltype",
        Dialect::Mysql => "INSERT INTO jfs_flock (inode, sid, owner, ltype) VALUES (?,?,?,?) ON DUPLICATE KEY UPDATE ltype = VALUES(ltype)",
    }
}

/// Store the POSIX locks of inode `?`, session `?`, owner `?`: records `?`.
pub(crate) fn put_plock(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite | Dialect::Postgres => "INSERT INTO jfs_plock (inode, sid, owner, records) VALUES (?,?,?,?) ON CONFLICT (inode, sid, owner) DO UPDATE SET records = excluded.records",
        Dialect::Mysql => "INSERT INTO jfs_plock (inode, sid, owner, records) VALUES (?,?,?,?) ON DUPLICATE KEY UPDATE records = VALUES(records)",
    }
}

/// Append slice records to a chunk, creating it when missing (binds: inode, indx, slices).
/// MySQL has no such single statement that is safe under concurrency (`ON DUPLICATE KEY` takes
/// gap locks and burns auto-increment ids): it updates, then inserts when nothing matched.
pub(crate) fn upsert_chunk(d: Dialect) -> Option<&'static str> {
    match d {
        Dialect::Sqlite => Some("INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?,?,?) ON CONFLICT (inode, indx) DO UPDATE SET slices = slices || excluded.slices"),
        Dialect::Postgres => Some("INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?,?,?) ON CONFLICT (inode, indx) DO UPDATE SET slices = jfs_chunk.slices || excluded.slices"),
        Dialect::Mysql => None,
    }
}

/// The names of the tables a volume's DDL creates.
pub(crate) fn tables(d: Dialect) -> Vec<&'static str> {
    ddl(d)
        .iter()
        .filter_map(|stmt| {
            let rest = stmt.strip_prefix("CREATE TABLE ")?;
            let name = rest.split([' ', '(']).next()?;
            Some(name.trim_matches(|c| c == '`' || c == '"'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_creates_the_same_tables() {
        let sqlite = tables(Dialect::Sqlite);
        assert_eq!(sqlite.len(), 21);
        assert!(sqlite.contains(&"jfs_edge") && sqlite.contains(&"jfs_change_log"));
        for d in [Dialect::Mysql, Dialect::Postgres] {
            let mut a = tables(d);
            let mut b = sqlite.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{d:?}");
        }
    }
}
