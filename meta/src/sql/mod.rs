//! The SQL engine family, in the JuiceFS CE 1.x SQL layout: SQLite, MySQL-protocol servers
//! (MySQL, MariaDB, OceanBase, TiDB) and PostgreSQL.
//!
//! This is storage only: [`SqlEngine`] implements the engine contract ([`crate::engine`]) with
//! statements on the JuiceFS tables; every rule of what an operation does lives in the core.
//! Files by role: `db.rs` is the one statement layer over the three databases, `dialect.rs` the
//! statements that differ, `txn.rs` the contract's reads and writes, `fast.rs` the reads
//! answered in one query and PostgreSQL's one-round-trip paths, `schema.rs` the DDL,
//! `pool.rs` the server connections, `url.rs` the server URLs.
//!
//! A write transaction takes the database write lock up front on SQLite (`BEGIN IMMEDIATE`:
//! SQLite runs one writer at a time anyway, and a transaction that would upgrade later could
//! only fail); the servers lock the rows a transaction reads (`FOR UPDATE`). Errors are
//! classified by their typed codes where they enter (`crate::error::from_db`).

mod db;
mod dialect;
mod fast;
mod pool;
mod schema;
mod txn;
pub(crate) mod url;

pub(crate) use db::DbError;
pub use schema::SQLITE_DDL;
pub use txn::SqlTxn;

use crate::engine::{Engine, Features, Mode};
use crate::error::{from_db, Error, ErrorKind, Result};
use crate::url::MetaUrl;
use async_trait::async_trait;
use db::{q, q_owned, Dialect, Pool};
use rusqlite::{Connection, OpenFlags};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use txn::db;

/// How long SQLite waits for another process's write lock before answering BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQL metadata engine of one volume.
pub struct SqlEngine {
    pool: Pool,
    /// `table_prefix` from the URL (several volumes in one database): table `jfs_node` is
    /// `jfs_<prefix>_node`, as JuiceFS names it.
    prefix: String,
    /// The meta URL without its password, for messages.
    shown: String,
    /// Whether the volume has the checksum table (`jfs_tidefs_sum`); checksums are kept only
    /// where it does.
    pub(crate) sums_ok: AtomicBool,
}

impl SqlEngine {
    /// An SQLite volume database (created by `prepare` when missing). Connections open on first
    /// use, so a bad path is reported by the first operation with a clear message.
    pub(crate) async fn open_sqlite(url: &MetaUrl) -> Result<Self> {
        let (path, _query) = url.sqlite_path()?;
        let shown = format!("sqlite3://{path}");
        let pool = Pool::Sqlite(db::SqliteConns::new(path, open_existing));
        Ok(Self::with_pool(pool, String::new(), shown))
    }

    /// The engine a SQL meta URL names (`sqlite3://`, `mysql://`, `postgres://`).
    pub async fn open(url: &str) -> Result<Self> {
        let parsed = MetaUrl::parse(url)?;
        match parsed.scheme.as_str() {
            "sqlite3" | "sqlite" => Self::open_sqlite(&parsed).await,
            _ => Self::open_server(url).await,
        }
    }

    /// A volume on a MySQL-protocol server or PostgreSQL (`url::connect` has the URL forms).
    /// The first connection is made here, so an unreachable server is reported at once.
    pub async fn open_server(url: &str) -> Result<Self> {
        let server = url::connect(url).await?;
        Ok(Self::with_pool(server.pool, server.prefix, server.shown))
    }

    fn with_pool(pool: Pool, prefix: String, shown: String) -> Self {
        Self {
            pool,
            prefix,
            shown,
            sums_ok: AtomicBool::new(false),
        }
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

    /// One statement on an autocommit handle.
    async fn run(&self, op: &'static str, sql: &str) -> Result<()> {
        let mut c = self
            .pool
            .read(&self.prefix)
            .await
            .map_err(|e| self.open_error(e))?;
        q(sql).execute(&mut c).await.map_err(db(op))?;
        Ok(())
    }

    async fn has_sums_table(&self) -> bool {
        self.run(
            "checksum table",
            "SELECT id FROM jfs_tidefs_sum WHERE id = 0",
        )
        .await
        .is_ok()
    }
}

fn open_existing(path: &str) -> std::result::Result<Connection, DbError> {
    open_conn(path, false)
}

/// Open a connection to the volume database with the settings every connection needs: WAL
/// (readers and the writer do not block each other), synchronous=NORMAL (a commit reaches the
/// WAL, `sync` makes it durable) and a busy timeout for other processes' writers.
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

#[async_trait]
impl Engine for SqlEngine {
    type Txn<'a> = SqlTxn<'a>;

    fn name(&self) -> &'static str {
        match self.pool.dialect() {
            Dialect::Sqlite => "sqlite3",
            Dialect::Mysql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }

    fn shown(&self) -> &str {
        &self.shown
    }

    fn features(&self) -> Features {
        Features {
            optimistic: false,
            one_step: self.pool.dialect() == Dialect::Postgres,
        }
    }

    async fn begin(&self, mode: Mode) -> Result<SqlTxn<'_>> {
        let tx = match mode {
            Mode::Write => self.pool.begin(&self.prefix).await,
            Mode::Read | Mode::Latest | Mode::Single => self.pool.read(&self.prefix).await,
        }
        .map_err(|e| self.open_error(e))?;
        Ok(SqlTxn::new(tx, self, mode))
    }

    async fn prepare(&self) -> Result<()> {
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
        // outside a transaction: MySQL commits around every DDL statement
        let d = self.pool.dialect();
        if !self.formatted().await? {
            for ddl in dialect::ddl(d) {
                self.run("format", ddl).await?;
            }
        }
        self.run("format", dialect::sums_ddl(d)).await?;
        self.sums_ok.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn formatted(&self) -> Result<bool> {
        let mut c = self
            .pool
            .read(&self.prefix)
            .await
            .map_err(|e| self.open_error(e))?;
        let found = q(dialect::has_setting_table(self.pool.dialect()))
            .fetch_optional(&mut c)
            .await
            .map_err(db("load"))?;
        Ok(found.is_some())
    }

    async fn opened(&self, writable: bool) -> Result<()> {
        // Volumes formatted by JuiceFS or an older tidefs lack the checksum table. Look first:
        // `CREATE TABLE IF NOT EXISTS` on an existing table makes PostgreSQL send a notice,
        // which would show in every command's output.
        if self.has_sums_table().await {
            self.sums_ok.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if writable {
            if let Err(e) = self
                .run("checksum table", dialect::sums_ddl(self.pool.dialect()))
                .await
            {
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
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        let d = self.pool.dialect();
        let mut c = self
            .pool
            .read(&self.prefix)
            .await
            .map_err(|e| self.open_error(e))?;
        for t in dialect::tables(d)
            .into_iter()
            .chain(dialect::TIDEFS_TABLES.iter().copied())
        {
            q_owned(format!("DROP TABLE IF EXISTS {t}"))
                .execute(&mut c)
                .await
                .map_err(db("destroy"))?;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        let Pool::Sqlite(sq) = &self.pool else {
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
