//! The error of the VFS layer: either side of the data flow, kept with its own classification.

use tidefs_meta::ErrorKind;

/// An error from metadata or from object data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the metadata engine (or a POSIX rule checked in vfs, expressed as a meta kind).
    #[error(transparent)]
    Meta(#[from] tidefs_meta::Error),
    /// From object storage.
    #[error(transparent)]
    Data(#[from] tidefs_chunk::Error),
}

/// Result of the VFS layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A POSIX error raised by the VFS itself.
    pub fn posix(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Meta(tidefs_meta::Error::new(kind, message))
    }

    /// The metadata kind, when this is a metadata error.
    pub fn meta_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Meta(e) => Some(e.kind()),
            Error::Data(_) => None,
        }
    }
}
