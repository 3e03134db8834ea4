//! Errors of the data path, classified where they enter (OpenDAL error kinds, codec failures).

use std::fmt;

/// What went wrong with object data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// The object exists but its content is wrong (length, decompression, checksum).
    Corrupt,
    /// The object store is out of space.
    NoSpace,
    /// The store refused our credentials or permissions.
    PermissionDenied,
    /// The store failed or could not be reached.
    Unavailable,
    /// The configuration is wrong (bad bucket path, bad compression name).
    Config,
}

/// An error of the data path.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Result of the data path.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// New error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }
    /// Attach the cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    /// Classification.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
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
