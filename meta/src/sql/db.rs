//! The statement layer under the SQL engine: one API over SQLite (rusqlite), MySQL-protocol
//! servers and PostgreSQL (sqlx).
//!
//! A statement is built like `q(sql).bind(a).bind(b)` with `?` placeholders and run on a
//! [`Tx`] (a transaction, or an autocommit read handle). Rows come back owned, so callers decode
//! them after the statement is done, the same way on every database.
//!
//! SQLite statements run on the calling thread through the connection's prepared-statement
//! cache: the `async fn`s never yield for them, so a metadata operation costs no thread hand-off
//! (sqlx's SQLite driver sends every statement to a worker thread and back; docs/design/0002).
//! MySQL and PostgreSQL statements are network round trips driven by tokio.

use super::pool::{Lease, ServerPool};
use rusqlite::types::{Value as SqliteValue, ValueRef};
use sqlx::mysql::{MySql, MySqlConnection, MySqlRow};
use sqlx::postgres::{PgConnection, PgRow, Postgres};
use sqlx::{Row as _, ValueRef as _};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;

/// The SQL dialect of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Mysql,
    Postgres,
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A failure of the database layer, before it is classified into a metadata [`crate::Error`].
#[derive(Debug)]
pub(crate) enum DbError {
    Sqlite(rusqlite::Error),
    Sqlx(sqlx::Error),
    /// A column held something the caller cannot read as the type it asked for.
    Decode {
        column: usize,
        wanted: &'static str,
    },
}

pub(crate) type DbResult<T> = std::result::Result<T, DbError>;

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "{e}"),
            DbError::Sqlx(e) => write!(f, "{e}"),
            DbError::Decode { column, wanted } => {
                write!(f, "column {column} does not hold a {wanted}")
            }
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Sqlite(e) => Some(e),
            DbError::Sqlx(e) => Some(e),
            DbError::Decode { .. } => None,
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Sqlx(e)
    }
}

/// A statement with its arguments.
pub(crate) struct Query<'s> {
    sql: Cow<'s, str>,
    args: Vec<Value>,
    /// Planned afresh at every run on PostgreSQL (see [`Query::planned_each_time`]).
    fresh_plan: bool,
}

pub(crate) fn q(sql: &str) -> Query<'_> {
    Query {
        sql: Cow::Borrowed(sql),
        args: Vec::new(),
        fresh_plan: false,
    }
}

/// A statement whose text was put together at run time (from the engine's own names only).
pub(crate) fn q_owned(sql: String) -> Query<'static> {
    Query {
        sql: Cow::Owned(sql),
        args: Vec::new(),
        fresh_plan: false,
    }
}

/// Values a statement accepts: integers, text (`&str`, `String`) and blobs (`&[u8]`, `Vec<u8>`).
pub(crate) trait Arg {
    fn into_value(self) -> Value;
}

impl Arg for i64 {
    fn into_value(self) -> Value {
        Value::Int(self)
    }
}
/// Inode numbers, slice ids and sizes: the layout stores them as signed 64-bit integers.
impl Arg for u64 {
    fn into_value(self) -> Value {
        Value::Int(self as i64)
    }
}
impl Arg for u32 {
    fn into_value(self) -> Value {
        Value::Int(i64::from(self))
    }
}
impl Arg for u8 {
    fn into_value(self) -> Value {
        Value::Int(i64::from(self))
    }
}
impl Arg for &str {
    fn into_value(self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Arg for String {
    fn into_value(self) -> Value {
        Value::Text(self)
    }
}
impl Arg for &String {
    fn into_value(self) -> Value {
        Value::Text(self.clone())
    }
}
impl Arg for &[u8] {
    fn into_value(self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl Arg for Vec<u8> {
    fn into_value(self) -> Value {
        Value::Blob(self)
    }
}
impl Arg for &Vec<u8> {
    fn into_value(self) -> Value {
        Value::Blob(self.clone())
    }
}

/// What a statement that returns no rows did.
pub(crate) struct Done(u64);

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.0
    }
}

/// One result row, owned.
#[derive(Debug)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    pub(crate) fn try_get<T: Get>(&self, i: usize) -> DbResult<T> {
        let v = self.0.get(i).ok_or(DbError::Decode {
            column: i,
            wanted: "value (no such column)",
        })?;
        T::get(v, i)
    }
}

/// Column decoding that accepts what JuiceFS and older tools may have stored: names and
/// values as text or blob, NULL as "none".
pub(crate) trait Get: Sized {
    fn get(v: &Value, i: usize) -> DbResult<Self>;
}

impl Get for i64 {
    fn get(v: &Value, i: usize) -> DbResult<Self> {
        match v {
            Value::Int(n) => Ok(*n),
            _ => Err(DbError::Decode {
                column: i,
                wanted: "integer",
            }),
        }
    }
}
impl Get for u64 {
    fn get(v: &Value, i: usize) -> DbResult<Self> {
        i64::get(v, i).map(|n| n as u64)
    }
}
impl Get for u32 {
    fn get(v: &Value, i: usize) -> DbResult<Self> {
        i64::get(v, i).map(|n| n as u32)
    }
}
impl Get for u8 {
    fn get(v: &Value, i: usize) -> DbResult<Self> {
        i64::get(v, i).map(|n| n as u8)
    }
}
impl Get for Vec<u8> {
    fn get(v: &Value, i: usize) -> DbResult<Self> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(t) => Ok(t.as_bytes().to_vec()),
            _ => Err(DbError::Decode {
                column: i,
                wanted: "blob",
            }),
        }
    }
}
impl Get for String {
    fn get(v: &Value, i: usize) -> DbResult<Self> {
        match v {
            Value::Text(t) => Ok(t.clone()),
            Value::Blob(b) => String::from_utf8(b.clone()).map_err(|_| DbError::Decode {
                column: i,
                wanted: "UTF-8 text",
            }),
            _ => Err(DbError::Decode {
                column: i,
                wanted: "text",
            }),
        }
    }
}
impl<T: Get> Get for Option<T> {
    fn get(v: &Value, i: usize) -> DbResult<Self> {
        match v {
            Value::Null => Ok(None),
            other => T::get(other, i).map(Some),
        }
    }
}

/// The SQLite connections of one process: one writer (writers queue on the mutex instead of
/// polling SQLite's file lock, whose busy handler sleeps in steps of milliseconds) and a pool of
/// WAL readers, which never block the writer.
pub(crate) struct SqliteConns {
    pub(crate) path: String,
    writer: tokio::sync::Mutex<Option<rusqlite::Connection>>,
    readers: Mutex<Vec<rusqlite::Connection>>,
    open: fn(&str) -> DbResult<rusqlite::Connection>,
}

/// Idle SQLite read connections kept for reuse.
const MAX_IDLE_READERS: usize = 16;

impl SqliteConns {
    pub(crate) fn new(path: String, open: fn(&str) -> DbResult<rusqlite::Connection>) -> Self {
        SqliteConns {
            path,
            writer: tokio::sync::Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            open,
        }
    }
}

/// A SQLite read connection borrowed from the pool; it goes back when dropped.
pub(crate) struct ReadConn<'a> {
    conn: Option<rusqlite::Connection>,
    pool: &'a Mutex<Vec<rusqlite::Connection>>,
}

impl Drop for ReadConn<'_> {
    fn drop(&mut self) {
        if let (Some(c), Ok(mut pool)) = (self.conn.take(), self.pool.lock()) {
            if pool.len() < MAX_IDLE_READERS {
                pool.push(c);
            }
        }
    }
}

/// Where the metadata lives.
#[allow(clippy::large_enum_variant)] // one per process
pub(crate) enum Pool {
    Sqlite(SqliteConns),
    /// MySQL-protocol servers: reads on autocommit connections; write transactions on
    /// connections with autocommit off, where the first statement opens the transaction (no
    /// `BEGIN` round trip) and `COMMIT` / `ROLLBACK` end it.
    Mysql {
        read: ServerPool<MySqlConnection>,
        write: ServerPool<MySqlConnection>,
    },
    Postgres(ServerPool<PgConnection>),
}

enum Conn<'a> {
    SqliteWrite(tokio::sync::MutexGuard<'a, Option<rusqlite::Connection>>),
    SqliteRead(ReadConn<'a>),
    My(Lease<'a, MySqlConnection>),
    /// A connection with autocommit off: statements run in a transaction until COMMIT.
    MyTx(Lease<'a, MySqlConnection>),
    Pg(Lease<'a, PgConnection>),
    /// In a transaction since `BEGIN`.
    PgTx(Lease<'a, PgConnection>),
}

/// A transaction, or an autocommit handle for reads, on one connection.
pub(crate) struct Tx<'a> {
    conn: Conn<'a>,
    dialect: Dialect,
    prefix: &'a str,
    /// A server transaction that has not ended: dropped like this (a cancelled operation), its
    /// connection is closed rather than reused.
    open: bool,
}

impl Pool {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Mysql { .. } => Dialect::Mysql,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    fn tx<'a>(&'a self, conn: Conn<'a>, prefix: &'a str) -> Tx<'a> {
        Tx {
            conn,
            dialect: self.dialect(),
            prefix,
            open: false,
        }
    }

    /// A handle whose statements each run on their own and see the latest commit.
    pub(crate) async fn read<'a>(&'a self, prefix: &'a str) -> DbResult<Tx<'a>> {
        let conn = match self {
            Pool::Sqlite(s) => {
                let idle = s.readers.lock().ok().and_then(|mut p| p.pop());
                let c = match idle {
                    Some(c) => c,
                    None => (s.open)(&s.path)?,
                };
                Conn::SqliteRead(ReadConn {
                    conn: Some(c),
                    pool: &s.readers,
                })
            }
            Pool::Mysql { read, .. } => Conn::My(read.acquire().await?),
            Pool::Postgres(p) => Conn::Pg(p.acquire().await?),
        };
        Ok(self.tx(conn, prefix))
    }

    /// Begin a write transaction. SQLite takes the database write lock up front
    /// (`BEGIN IMMEDIATE`); the servers lock the rows a transaction touches, and rows it reads in
    /// order to change them are read with `FOR UPDATE` (see [`Tx::for_update`]).
    pub(crate) async fn begin<'a>(&'a self, prefix: &'a str) -> DbResult<Tx<'a>> {
        let conn = match self {
            Pool::Sqlite(s) => {
                let mut guard = s.writer.lock().await;
                if guard.is_none() {
                    *guard = Some((s.open)(&s.path)?);
                }
                if let Some(c) = guard.as_ref() {
                    c.execute_batch("BEGIN IMMEDIATE")?;
                }
                Conn::SqliteWrite(guard)
            }
            Pool::Mysql { write, .. } => Conn::MyTx(write.acquire().await?),
            Pool::Postgres(p) => {
                let mut lease = p.acquire().await?;
                if let Some(c) = lease.conn() {
                    if let Err(e) = sqlx::query("BEGIN").execute(&mut *c).await {
                        lease.reusable = false;
                        return Err(e.into());
                    }
                }
                Conn::PgTx(lease)
            }
        };
        let mut tx = self.tx(conn, prefix);
        tx.open = matches!(tx.conn, Conn::MyTx(_) | Conn::PgTx(_));
        Ok(tx)
    }
}

fn no_writer() -> DbError {
    DbError::Sqlite(rusqlite::Error::InvalidQuery)
}

impl Tx<'_> {
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The suffix that makes a read inside a write transaction lock the rows it returns, so no
    /// other transaction changes them before this one commits. SQLite has no row locks (its
    /// write transactions hold the whole database), and a read handle locks nothing.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.conn {
            Conn::MyTx(_) | Conn::PgTx(_) => " FOR UPDATE",
            _ => "",
        }
    }

    /// Commit a write transaction (a read handle has nothing to commit).
    pub(crate) async fn commit(mut self) -> DbResult<()> {
        let res = match &mut self.conn {
            Conn::SqliteWrite(guard) => {
                let res = match guard.as_ref() {
                    Some(c) => c.execute_batch("COMMIT").map_err(DbError::from),
                    None => Err(no_writer()),
                };
                if res.is_err() {
                    rollback_sqlite(guard);
                }
                res
            }
            Conn::MyTx(lease) => end_my_tx(lease, "COMMIT").await,
            Conn::PgTx(lease) => end_pg_tx(lease, "COMMIT").await,
            _ => Ok(()),
        };
        self.open = res.is_err() && self.open;
        res
    }

    /// Roll a write transaction back.
    pub(crate) async fn rollback(mut self) {
        let res = match &mut self.conn {
            Conn::SqliteWrite(guard) => {
                rollback_sqlite(guard);
                Ok(())
            }
            Conn::MyTx(lease) => end_my_tx(lease, "ROLLBACK").await,
            Conn::PgTx(lease) => end_pg_tx(lease, "ROLLBACK").await,
            _ => Ok(()),
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, "rollback failed; the connection is closed");
        } else {
            self.open = false;
        }
    }

    /// The statement text for this database: `?` becomes `$n` on PostgreSQL, and tables (and
    /// their indexes) take the volume's table prefix the way JuiceFS names them: `jfs_node`
    /// with prefix `p` is `jfs_p_node`. A text that needs rewriting is rewritten once per
    /// thread and kept (`TEXTS`).
    fn text<'s>(&self, sql: &'s str) -> Text<'s> {
        if self.prefix.is_empty() && (self.dialect != Dialect::Postgres || !sql.contains('?')) {
            return Text::Same(sql);
        }
        TEXTS.with(|cell| {
            let mut all = cell.borrow_mut();
            let at = match all
                .iter()
                .position(|(d, p, _)| *d == self.dialect && **p == *self.prefix)
            {
                Some(i) => i,
                None => {
                    all.push((self.dialect, self.prefix.into(), HashMap::new()));
                    all.len() - 1
                }
            };
            let texts = &mut all[at].2;
            if let Some(t) = texts.get(sql) {
                return Text::Rewritten(t.clone());
            }
            if texts.len() >= MAX_TEXTS {
                texts.clear();
            }
            let t: Arc<str> = rewrite(sql, self.dialect, self.prefix).into();
            texts.insert(sql.into(), t.clone());
            Text::Rewritten(t)
        })
    }
}

/// Rewritten texts of one (dialect, table prefix), by their text as written.
type Rewritten = (Dialect, Box<str>, HashMap<Box<str>, Arc<str>>);

thread_local! {
    // Rewritten statement texts kept per thread (no lock on the path of every statement), per
    // (dialect, table prefix), at most `MAX_TEXTS` each (then forgotten all at once): a few
    // hundred distinct statements exist.
    static TEXTS: RefCell<Vec<Rewritten>> = const { RefCell::new(Vec::new()) };
}

/// Most rewritten texts kept per thread and (dialect, prefix).
const MAX_TEXTS: usize = 4096;

/// A statement's text as it is sent.
enum Text<'s> {
    /// As written.
    Same(&'s str),
    /// With the table prefix and PostgreSQL's placeholders.
    Rewritten(Arc<str>),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Same(s) => s,
            Text::Rewritten(s) => s,
        }
    }

    fn into_arc(self) -> Arc<str> {
        match self {
            Text::Same(s) => s.into(),
            Text::Rewritten(s) => s,
        }
    }
}

/// `sql` with the table prefix and, on PostgreSQL, `$n` placeholders (a `?` inside quotes stays).
fn rewrite(sql: &str, dialect: Dialect, prefix: &str) -> String {
    let mut out = if prefix.is_empty() {
        sql.to_string()
    } else {
        sql.replace("jfs_", &format!("jfs_{prefix}_"))
    };
    if dialect == Dialect::Postgres && out.contains('?') {
        let mut s = String::with_capacity(out.len() + 16);
        let mut n = 0u32;
        let mut quoted = false;
        for ch in out.chars() {
            if ch == '\'' {
                quoted = !quoted;
            }
            if ch == '?' && !quoted {
                n += 1;
                s.push('$');
                s.push_str(&n.to_string());
            } else {
                s.push(ch);
            }
        }
        out = s;
    }
    out
}

/// End a server transaction; a connection that fails to is not reused.
macro_rules! end_tx {
    ($name:ident, $conn:ty) => {
        async fn $name(lease: &mut Lease<'_, $conn>, stmt: &'static str) -> DbResult<()> {
            let res = match lease.conn() {
                Some(c) => sqlx::raw_sql(stmt).execute(c).await.map(|_| ()),
                None => Ok(()),
            };
            if res.is_err() {
                lease.reusable = false;
            }
            Ok(res?)
        }
    };
}
end_tx!(end_my_tx, MySqlConnection);
end_tx!(end_pg_tx, PgConnection);

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        match &mut self.conn {
            // a write transaction that never ended (a cancelled operation) ends here, before
            // the writer connection goes to the next one
            Conn::SqliteWrite(guard) if guard.as_ref().is_some_and(|c| !c.is_autocommit()) => {
                rollback_sqlite(guard)
            }
            Conn::MyTx(l) if self.open => l.reusable = false,
            Conn::PgTx(l) if self.open => l.reusable = false,
            _ => {}
        }
    }
}

fn rollback_sqlite(guard: &mut Option<rusqlite::Connection>) {
    let failed = match guard.as_ref() {
        Some(c) if !c.is_autocommit() => c.execute_batch("ROLLBACK").err(),
        _ => None,
    };
    if let Some(e) = failed {
        // a connection that cannot roll back is dropped; the next write opens a new one
        tracing::warn!(error = %e, "rollback failed; reopening the writer connection");
        *guard = None;
    }
}

fn sqlite_conn<'c>(conn: &'c Conn<'_>) -> Option<&'c rusqlite::Connection> {
    match conn {
        Conn::SqliteWrite(g) => g.as_ref(),
        Conn::SqliteRead(r) => r.conn.as_ref(),
        _ => None,
    }
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let n = r.as_ref().column_count();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(t) => Value::Text(t.to_string()),
                Err(_) => Value::Blob(t.to_vec()),
            },
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(v))
}

fn sqlite_args(args: &[Value]) -> Vec<SqliteValue> {
    args.iter()
        .map(|a| match a {
            Value::Null => SqliteValue::Null,
            Value::Int(n) => SqliteValue::Integer(*n),
            Value::Real(f) => SqliteValue::Real(*f),
            Value::Text(t) => SqliteValue::Text(t.clone()),
            Value::Blob(b) => SqliteValue::Blob(b.clone()),
        })
        .collect()
}

/// Decode column `$i` of `$r` as the first of the given types its column type is compatible
/// with, converted into a [`Value`]. The type is decided once, on the column's borrowed type
/// information, and the raw value decoded directly (no second lookup of the column, no copy of
/// its type): a listing decodes tens of thousands of columns.
macro_rules! decode_first {
    ($db:ty, $r:expr, $i:expr, $what:expr, $($t:ty => $conv:expr),+ $(,)?) => {{
        let raw = $r.try_get_raw($i)?;
        if raw.is_null() {
            Value::Null
        } else {
            let pick = {
                let ti = raw.type_info();
                let mut k = 0usize;
                let mut found = None;
                $(
                    if found.is_none() && <$t as sqlx::Type<$db>>::compatible(&ti) {
                        found = Some(k);
                    }
                    k += 1;
                )+
                let _ = k;
                found
            };
            let mut raw = Some(raw);
            let mut k = 0usize;
            let mut out = None;
            $(
                if pick == Some(k) {
                    if let Some(raw) = raw.take() {
                        let x = <$t as sqlx::Decode<$db>>::decode(raw)
                            .map_err(|e| DbError::Sqlx(sqlx::Error::Decode(e)))?;
                        #[allow(clippy::redundant_closure_call)]
                        let v: Value = ($conv)(x);
                        out = Some(v);
                    }
                }
                k += 1;
            )+
            let _ = k;
            match out {
                Some(v) => v,
                None => {
                    return Err(DbError::Decode {
                        column: $i,
                        wanted: $what,
                    })
                }
            }
        }
    }};
}

fn mysql_row(r: &MySqlRow) -> DbResult<Row> {
    let mut v = Vec::with_capacity(r.columns().len());
    for i in 0..r.columns().len() {
        v.push(
            decode_first!(MySql, r, i, "value of a supported MySQL type",
                i64 => Value::Int,
                u64 => |n: u64| Value::Int(n as i64),
                Vec<u8> => Value::Blob,
                f64 => Value::Real,
            ),
        );
    }
    Ok(Row(v))
}

fn pg_row(r: &PgRow) -> DbResult<Row> {
    let mut v = Vec::with_capacity(r.columns().len());
    for i in 0..r.columns().len() {
        v.push(
            decode_first!(Postgres, r, i, "value of a supported PostgreSQL type",
                i64 => Value::Int,
                i32 => |n: i32| Value::Int(i64::from(n)),
                i16 => |n: i16| Value::Int(i64::from(n)),
                Vec<u8> => Value::Blob,
                String => Value::Text,
                bool => |b: bool| Value::Int(i64::from(b)),
                f64 => Value::Real,
            ),
        );
    }
    Ok(Row(v))
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut qq = $query;
        for a in $args {
            qq = match a {
                Value::Null => qq.bind(None::<i64>),
                Value::Int(n) => qq.bind(n),
                Value::Real(f) => qq.bind(f),
                Value::Text(t) => qq.bind(t),
                Value::Blob(b) => qq.bind(b),
            };
        }
        qq
    }};
}

/// What to fetch.
enum Want {
    Nothing,
    One,
    All,
}

enum Got {
    Done(u64),
    Rows(Vec<Row>),
}

impl Query<'_> {
    pub(crate) fn bind(mut self, v: impl Arg) -> Self {
        self.args.push(v.into_value());
        self
    }

    /// Do not keep this statement prepared on PostgreSQL, which turns a kept statement's
    /// plan generic after a few runs, chosen with the statistics of that moment: a directory page
    /// (`parent = ? AND name > ? ORDER BY name LIMIT ?`) planned while the table was still small
    /// became a full scan and sort once it was large. MySQL keeps its statements: sqlx's
    /// unprepared path there costs far more per statement (docs/design/0003).
    pub(crate) fn planned_each_time(mut self) -> Self {
        self.fresh_plan = true;
        self
    }

    async fn run(self, tx: &mut Tx<'_>, want: Want) -> DbResult<Got> {
        let sql = tx.text(&self.sql);
        if let Some(c) = sqlite_conn(&tx.conn) {
            let mut st = c.prepare_cached(sql.as_str())?;
            let args = sqlite_args(&self.args);
            let params = rusqlite::params_from_iter(args.iter());
            return match want {
                Want::Nothing => Ok(Got::Done(st.execute(params)? as u64)),
                Want::One | Want::All => {
                    let mut rows = st.query(params)?;
                    let mut out = Vec::new();
                    while let Some(r) = rows.next()? {
                        out.push(sqlite_row(r)?);
                        if matches!(want, Want::One) {
                            break;
                        }
                    }
                    Ok(Got::Rows(out))
                }
            };
        }
        match &mut tx.conn {
            Conn::My(_) | Conn::MyTx(_) => {
                let query = bind_all!(
                    // statement texts are the engine's own; values are always bound
                    sqlx::query::<MySql>(sqlx::AssertSqlSafe(sql.into_arc())),
                    self.args
                );
                let lease = match &mut tx.conn {
                    Conn::My(c) | Conn::MyTx(c) => c,
                    _ => return Err(no_writer()),
                };
                let res = mysql_run(lease.conn(), query, want).await;
                if res.as_ref().is_err_and(breaks_connection) {
                    lease.reusable = false;
                }
                res
            }
            Conn::Pg(_) | Conn::PgTx(_) => {
                let query = bind_all!(
                    sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql.into_arc()))
                        .persistent(!self.fresh_plan),
                    self.args
                );
                let lease = match &mut tx.conn {
                    Conn::Pg(c) | Conn::PgTx(c) => c,
                    _ => return Err(no_writer()),
                };
                let res = pg_run(lease.conn(), query, want).await;
                if res.as_ref().is_err_and(breaks_connection) {
                    lease.reusable = false;
                }
                res
            }
            _ => Err(no_writer()),
        }
    }
}

/// Whether a failure may have left the connection unusable (anything but an error the server
/// answered with).
fn breaks_connection(e: &DbError) -> bool {
    matches!(e, DbError::Sqlx(x) if !matches!(x, sqlx::Error::Database(_) | sqlx::Error::RowNotFound))
}

type MyQuery = sqlx::query::Query<'static, MySql, sqlx::mysql::MySqlArguments>;
type PgQuery = sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>;

/// Run a bound statement on a server connection and take what `want` asks for.
macro_rules! server_run {
    ($name:ident, $conn:ty, $query:ty, $row:ident) => {
        async fn $name(ex: Option<&mut $conn>, query: $query, want: Want) -> DbResult<Got> {
            let Some(ex) = ex else {
                return Err(no_writer());
            };
            match want {
                Want::Nothing => Ok(Got::Done(query.execute(ex).await?.rows_affected())),
                Want::One => Ok(Got::Rows(
                    query
                        .fetch_optional(ex)
                        .await?
                        .map(|r| $row(&r))
                        .transpose()?
                        .into_iter()
                        .collect(),
                )),
                Want::All => Ok(Got::Rows(
                    query
                        .fetch_all(ex)
                        .await?
                        .iter()
                        .map($row)
                        .collect::<DbResult<_>>()?,
                )),
            }
        }
    };
}
server_run!(mysql_run, MySqlConnection, MyQuery, mysql_row);
server_run!(pg_run, PgConnection, PgQuery, pg_row);

impl Query<'_> {
    /// Run writing statements that change distinct rows (and do not depend on each other's
    /// effects): on PostgreSQL as one statement, all but the last in a data-modifying CTE (one
    /// round trip instead of one each); elsewhere one after another.
    /// Returns the rows of the last statement (`RETURNING`, PostgreSQL only) when `rows`.
    pub(crate) async fn run_all(
        stmts: Vec<Query<'_>>,
        tx: &mut Tx<'_>,
        rows: bool,
    ) -> DbResult<Vec<Row>> {
        if tx.dialect != Dialect::Postgres || stmts.len() < 2 {
            let n = stmts.len();
            for (i, s) in stmts.into_iter().enumerate() {
                if rows && i + 1 == n {
                    return s.fetch_all(tx).await;
                }
                s.execute(tx).await?;
            }
            return Ok(Vec::new());
        }
        let n = stmts.len();
        let mut sql = String::from("WITH ");
        let mut args = Vec::new();
        for (i, s) in stmts.into_iter().enumerate() {
            if i + 1 < n {
                let sep = if i + 2 < n { ", " } else { " " };
                sql.push_str(&format!("s{i} AS ({}){sep}", s.sql));
            } else {
                sql.push_str(&s.sql);
            }
            args.extend(s.args);
        }
        let all = Query {
            sql: Cow::Owned(sql),
            args,
            fresh_plan: false,
        };
        if rows {
            all.fetch_all(tx).await
        } else {
            all.execute(tx).await?;
            Ok(Vec::new())
        }
    }

    pub(crate) async fn execute(self, tx: &mut Tx<'_>) -> DbResult<Done> {
        match self.run(tx, Want::Nothing).await? {
            Got::Done(n) => Ok(Done(n)),
            Got::Rows(r) => Ok(Done(r.len() as u64)),
        }
    }

    pub(crate) async fn fetch_optional(self, tx: &mut Tx<'_>) -> DbResult<Option<Row>> {
        match self.run(tx, Want::One).await? {
            Got::Rows(r) => Ok(r.into_iter().next()),
            Got::Done(_) => Ok(None),
        }
    }

    pub(crate) async fn fetch_all(self, tx: &mut Tx<'_>) -> DbResult<Vec<Row>> {
        match self.run(tx, Want::All).await? {
            Got::Rows(r) => Ok(r),
            Got::Done(_) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &str) -> DbResult<rusqlite::Connection> {
        Ok(rusqlite::Connection::open(path)?)
    }

    #[tokio::test]
    async fn round_trip_of_every_argument_kind() -> DbResult<()> {
        let dir = std::env::temp_dir().join(format!("tidefs-db-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let pool = Pool::Sqlite(SqliteConns::new(dir.display().to_string(), open));
        let mut c = pool.begin("").await?;
        q("CREATE TABLE t (a INTEGER, b TEXT, c BLOB, d BLOB)")
            .execute(&mut c)
            .await?;
        let done = q("INSERT INTO t VALUES (?,?,?,NULL)")
            .bind(7i64)
            .bind("x")
            .bind(&b"\x00\xff"[..])
            .execute(&mut c)
            .await?;
        assert_eq!(done.rows_affected(), 1);
        let r = q("SELECT a, b, c, d FROM t").fetch_optional(&mut c).await?;
        let r = r.ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
        assert_eq!(r.try_get::<i64>(0)?, 7);
        assert_eq!(r.try_get::<String>(1)?, "x");
        assert_eq!(r.try_get::<Vec<u8>>(1)?, b"x".to_vec()); // text read as bytes
        assert_eq!(r.try_get::<Vec<u8>>(2)?, vec![0, 255]);
        assert_eq!(r.try_get::<Option<i64>>(3)?, None);
        assert!(r.try_get::<i64>(1).is_err());
        assert!(r.try_get::<i64>(9).is_err());
        assert!(q("SELECT a FROM t WHERE a = ?")
            .bind(8i64)
            .fetch_optional(&mut c)
            .await?
            .is_none());
        assert_eq!(q("SELECT a FROM t").fetch_all(&mut c).await?.len(), 1);
        c.commit().await?;
        let _ = std::fs::remove_file(&dir);
        Ok(())
    }

    #[test]
    fn postgres_placeholders_and_table_prefix() {
        let pool = Pool::Sqlite(SqliteConns::new(String::new(), open));
        let tx = Tx {
            conn: Conn::SqliteRead(ReadConn {
                conn: None,
                pool: match &pool {
                    Pool::Sqlite(s) => &s.readers,
                    _ => unreachable!(),
                },
            }),
            dialect: Dialect::Postgres,
            prefix: "vol1_",
            open: false,
        };
        assert_eq!(
            tx.text("SELECT a FROM jfs_node WHERE a = ? AND b = '?' AND c = ?")
                .as_str(),
            "SELECT a FROM jfs_vol1__node WHERE a = $1 AND b = '?' AND c = $2"
        );
    }
}
