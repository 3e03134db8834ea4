//! A small, synchronous statement layer over rusqlite for the SQLite engine.
//!
//! Statements run on the calling thread through the connection's prepared-statement cache;
//! nothing crosses a thread. (sqlx's SQLite driver sent every statement to a worker thread and
//! back: two context switches per statement, which dominated every metadata operation's
//! profile.) Rows come back owned, so callers decode them after the statement is done.

use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

/// A statement with its arguments, built like `q(sql).bind(a).bind(b)`.
pub(crate) struct Query<'s> {
    sql: &'s str,
    args: Vec<Value>,
}

pub(crate) fn q(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

/// Values a statement accepts: integers, text (`&str`, `String`) and blobs (`&[u8]`, `Vec<u8>`).
pub(crate) trait Arg {
    fn into_value(self) -> Value;
}

impl Arg for i64 {
    fn into_value(self) -> Value {
        Value::Integer(self)
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
pub(crate) struct Done(usize);

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.0 as u64
    }
}

impl Query<'_> {
    pub(crate) fn bind(mut self, v: impl Arg) -> Self {
        self.args.push(v.into_value());
        self
    }

    pub(crate) fn execute(self, c: &Connection) -> rusqlite::Result<Done> {
        let mut st = c.prepare_cached(self.sql)?;
        let n = st.execute(rusqlite::params_from_iter(self.args.iter()))?;
        Ok(Done(n))
    }

    pub(crate) fn fetch_optional(self, c: &Connection) -> rusqlite::Result<Option<Row>> {
        let mut st = c.prepare_cached(self.sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(self.args.iter()))?;
        match rows.next()? {
            Some(r) => Ok(Some(Row::from(r)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn fetch_all(self, c: &Connection) -> rusqlite::Result<Vec<Row>> {
        let mut st = c.prepare_cached(self.sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(self.args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(Row::from(r)?);
        }
        Ok(out)
    }
}

/// One result row, owned.
pub(crate) struct Row(Vec<Value>);

impl Row {
    fn from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let n = r.as_ref().column_count();
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Integer(n),
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

    pub(crate) fn try_get<T: Get>(&self, i: usize) -> rusqlite::Result<T> {
        let v = self
            .0
            .get(i)
            .ok_or(rusqlite::Error::InvalidColumnIndex(i))?;
        T::get(ValueRef::from(v), i)
    }
}

/// Column decoding that accepts what JuiceFS and older tools may have stored: names and
/// values as text or blob, NULL as "none".
pub(crate) trait Get: Sized {
    fn get(v: ValueRef<'_>, i: usize) -> rusqlite::Result<Self>;
}

fn wrong(i: usize, v: ValueRef<'_>) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(i, format!("column {i}"), v.data_type())
}

impl Get for i64 {
    fn get(v: ValueRef<'_>, i: usize) -> rusqlite::Result<Self> {
        match v {
            ValueRef::Integer(n) => Ok(n),
            other => Err(wrong(i, other)),
        }
    }
}
impl Get for Vec<u8> {
    fn get(v: ValueRef<'_>, i: usize) -> rusqlite::Result<Self> {
        match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
            other => Err(wrong(i, other)),
        }
    }
}
impl Get for String {
    fn get(v: ValueRef<'_>, i: usize) -> rusqlite::Result<Self> {
        match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => String::from_utf8(b.to_vec())
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), e.into())),
            other => Err(wrong(i, other)),
        }
    }
}
impl<T: Get> Get for Option<T> {
    fn get(v: ValueRef<'_>, i: usize) -> rusqlite::Result<Self> {
        match v {
            ValueRef::Null => Ok(None),
            other => T::get(other, i).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_every_argument_kind() -> rusqlite::Result<()> {
        let c = Connection::open_in_memory()?;
        q("CREATE TABLE t (a INTEGER, b TEXT, c BLOB, d BLOB)").execute(&c)?;
        let done = q("INSERT INTO t VALUES (?,?,?,NULL)")
            .bind(7i64)
            .bind("x")
            .bind(&b"\x00\xff"[..])
            .execute(&c)?;
        assert_eq!(done.rows_affected(), 1);
        let r = q("SELECT a, b, c, d FROM t").fetch_optional(&c)?;
        let r = r.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        assert_eq!(r.try_get::<i64>(0)?, 7);
        assert_eq!(r.try_get::<String>(1)?, "x");
        assert_eq!(r.try_get::<Vec<u8>>(1)?, b"x".to_vec()); // text read as bytes
        assert_eq!(r.try_get::<Vec<u8>>(2)?, vec![0, 255]);
        assert_eq!(r.try_get::<Option<i64>>(3)?, None);
        assert!(r.try_get::<i64>(1).is_err());
        assert!(r.try_get::<i64>(9).is_err());
        assert!(q("SELECT a FROM t WHERE a = ?")
            .bind(8i64)
            .fetch_optional(&c)?
            .is_none());
        assert_eq!(q("SELECT a FROM t").fetch_all(&c)?.len(), 1);
        Ok(())
    }
}
