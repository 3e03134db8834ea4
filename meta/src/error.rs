//! Errors of the metadata layer.
//!
//! Every failure is classified where it enters (a SQL error code, a bad record, a POSIX rule) into an
//! [`ErrorKind`]. The kind is all the FUSE layer needs to pick an errno, and all the retry loop needs
//! to decide whether to run a transaction again; the message and source are for people.

use crate::sql::DbError;
use std::fmt;

/// What went wrong, in terms a caller can act on. Each POSIX kind maps to exactly one errno in
/// `tidefs::fuse::errno`; the others map to EIO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// ENOENT
    NotFound,
    /// EEXIST
    Exists,
    /// ENOTDIR
    NotDir,
    /// EISDIR
    IsDir,
    /// ENOTEMPTY
    NotEmpty,
    /// ENAMETOOLONG
    NameTooLong,
    /// EACCES: permission bits deny the access.
    Access,
    /// EPERM: the operation is not allowed for this user (ownership, sticky bit).
    NotPermitted,
    /// EINVAL
    Invalid,
    /// EROFS
    ReadOnly,
    /// ENOSPC: capacity or inode limit of the volume reached.
    NoSpace,
    /// EDQUOT: a directory, user or group quota is reached.
    QuotaExceeded,
    /// ENODATA: no such extended attribute.
    NoAttr,
    /// ERANGE
    Range,
    /// EXDEV
    CrossDevice,
    /// EOPNOTSUPP
    Unsupported,
    /// EMLINK
    TooManyLinks,
    /// EFBIG
    FileTooBig,
    /// EBADF
    BadHandle,
    /// A transaction conflicted with another one; running it again may succeed.
    Conflict,
    /// EAGAIN: a lock is held by someone else (and the caller did not ask to wait).
    WouldBlock,
    /// EINTR: the caller was interrupted by a signal while it waited (for a lock).
    Interrupted,
    /// EDEADLK: waiting for the lock would wait forever (a cycle of waiting lock owners).
    Deadlock,
    /// The database server cannot be reached or went away (retried for a while first).
    Unavailable,
    /// The metadata engine could not be reached or failed (I/O, protocol, pool). EIO.
    Engine,
    /// Stored metadata is not what the format says it must be. EIO.
    Corrupt,
    /// The volume was formatted with a version or feature this client does not support.
    Incompatible,
    /// The URL or configuration given by the user is wrong.
    Config,
}

/// An error of the metadata layer: a kind, what was being done, and where it came from.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Result of the metadata layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The classification of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether rerunning the whole transaction may succeed.
    /// A transaction conflict (lock busy, deadlock, serialization failure): run it again.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Conflict
    }

    /// The database server could not be reached or went away: worth retrying for a while.
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

macro_rules! ctor {
    ($($name:ident => $kind:ident),* $(,)?) => {
        impl Error {
            $(
                #[doc = concat!("An error of kind [`ErrorKind::", stringify!($kind), "`].")]
                pub fn $name(message: impl Into<String>) -> Self {
                    Self::new(ErrorKind::$kind, message)
                }
            )*
        }
    };
}

ctor! {
    not_found => NotFound,
    exists => Exists,
    not_dir => NotDir,
    is_dir => IsDir,
    not_empty => NotEmpty,
    access => Access,
    not_permitted => NotPermitted,
    invalid => Invalid,
    read_only => ReadOnly,
    corrupt => Corrupt,
    incompatible => Incompatible,
    config => Config,
    unsupported => Unsupported,
}

/// Classify a database failure by its typed code (SQLite extended result code, SQLSTATE, MySQL
/// error number), never by its text.
pub(crate) fn from_db(op: &str, err: DbError) -> Error {
    let kind = match &err {
        DbError::Sqlite(e) => match e {
            rusqlite::Error::SqliteFailure(f, _) => {
                classify_db_code(Some(&f.extended_code.to_string()))
            }
            rusqlite::Error::QueryReturnedNoRows => ErrorKind::NotFound,
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..) => ErrorKind::Corrupt,
            _ => ErrorKind::Engine,
        },
        DbError::Sqlx(e) => classify_sqlx(e),
        DbError::Decode { .. } => ErrorKind::Corrupt,
    };
    Error::new(kind, format!("metadata {op} failed")).with_source(err)
}

fn classify_sqlx(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::Database(d) => {
            if let Some(m) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return classify_db_code(Some(&m.number().to_string()));
            }
            classify_db_code(d.code().as_deref())
        }
        // the server went away or the pool could not hand out a connection in time: the
        // operation is retried for a while (see `Error::is_unavailable`)
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ErrorKind::Corrupt,
        sqlx::Error::Configuration(_) => ErrorKind::Config,
        _ => ErrorKind::Engine,
    }
}

/// Whether a database failure is a violated UNIQUE or PRIMARY KEY constraint.
pub(crate) fn is_unique_violation(err: &DbError) -> bool {
    match err {
        // SQLITE_CONSTRAINT_UNIQUE 2067, SQLITE_CONSTRAINT_PRIMARYKEY 1555
        DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
            matches!(e.extended_code, 2067 | 1555)
        }
        DbError::Sqlx(sqlx::Error::Database(d)) => d.is_unique_violation(),
        _ => false,
    }
}

/// SQLite primary result codes that mean "another writer holds the lock, try again"
/// (SQLITE_BUSY = 5, SQLITE_LOCKED = 6, and their extended forms whose low byte is the primary
/// code); SQLSTATE 40001 / 40P01 (serialization failure, deadlock), MySQL 1213 / 1205 (deadlock,
/// lock wait timeout); server shutdown and lost connections (SQLSTATE 57P01-57P03, 08xxx;
/// MySQL 2006 / 2013 / 1053) are "unavailable".
fn classify_db_code(code: Option<&str>) -> ErrorKind {
    let Some(code) = code else {
        return ErrorKind::Engine;
    };
    if matches!(code, "40001" | "40P01" | "1213" | "1205") {
        return ErrorKind::Conflict;
    }
    if matches!(code, "57P01" | "57P02" | "57P03" | "2006" | "2013" | "1053")
        || code.starts_with("08")
    {
        return ErrorKind::Unavailable;
    }
    // disk full / out of space on the server: SQLSTATE 53100, MySQL 1021 / 1114
    if matches!(code, "53100" | "1021" | "1114") {
        return ErrorKind::NoSpace;
    }
    if let Ok(n) = code.parse::<i64>() {
        if n < 1000 && matches!(n & 0xff, 5 | 6) {
            return ErrorKind::Conflict;
        }
        // SQLITE_FULL
        if n < 1000 && n & 0xff == 13 {
            return ErrorKind::NoSpace;
        }
    }
    ErrorKind::Engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_codes_classify_by_number() {
        assert_eq!(classify_db_code(Some("5")), ErrorKind::Conflict);
        assert_eq!(classify_db_code(Some("517")), ErrorKind::Conflict); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(classify_db_code(Some("6")), ErrorKind::Conflict);
        assert_eq!(classify_db_code(Some("40001")), ErrorKind::Conflict);
        assert_eq!(classify_db_code(Some("2067")), ErrorKind::Engine); // UNIQUE constraint
        assert_eq!(classify_db_code(Some("13")), ErrorKind::NoSpace);
        assert_eq!(classify_db_code(Some("1213")), ErrorKind::Conflict); // MySQL deadlock
        assert_eq!(classify_db_code(Some("1205")), ErrorKind::Conflict); // lock wait timeout
        assert_eq!(classify_db_code(Some("40P01")), ErrorKind::Conflict);
        assert_eq!(classify_db_code(Some("57P01")), ErrorKind::Unavailable); // admin shutdown
        assert_eq!(classify_db_code(Some("2013")), ErrorKind::Unavailable); // lost connection
        assert_eq!(classify_db_code(Some("1062")), ErrorKind::Engine); // duplicate key
        assert_eq!(classify_db_code(Some("1021")), ErrorKind::NoSpace);
        assert_eq!(classify_db_code(None), ErrorKind::Engine);
    }
}
