//! The one mapping from tidefs errors to errno values.

use crate::vfs::Error;
use tidefs_chunk::ErrorKind as DataKind;
use tidefs_meta::ErrorKind as MetaKind;

/// errno for a metadata error kind.
pub fn meta_errno(kind: MetaKind) -> i32 {
    match kind {
        MetaKind::NotFound => libc::ENOENT,
        MetaKind::Exists => libc::EEXIST,
        MetaKind::NotDir => libc::ENOTDIR,
        MetaKind::IsDir => libc::EISDIR,
        MetaKind::NotEmpty => libc::ENOTEMPTY,
        MetaKind::NameTooLong => libc::ENAMETOOLONG,
        MetaKind::Access => libc::EACCES,
        MetaKind::NotPermitted => libc::EPERM,
        MetaKind::Invalid => libc::EINVAL,
        MetaKind::ReadOnly => libc::EROFS,
        MetaKind::NoSpace => libc::ENOSPC,
        MetaKind::QuotaExceeded => libc::EDQUOT,
        MetaKind::NoAttr => libc::ENODATA,
        MetaKind::Range => libc::ERANGE,
        MetaKind::CrossDevice => libc::EXDEV,
        MetaKind::Unsupported => libc::EOPNOTSUPP,
        MetaKind::TooManyLinks => libc::EMLINK,
        MetaKind::FileTooBig => libc::EFBIG,
        MetaKind::BadHandle => libc::EBADF,
        MetaKind::WouldBlock => libc::EAGAIN,
        MetaKind::Interrupted => libc::EINTR,
        MetaKind::Deadlock => libc::EDEADLK,
        MetaKind::Conflict
        | MetaKind::Unavailable
        | MetaKind::Engine
        | MetaKind::Corrupt
        | MetaKind::Incompatible
        | MetaKind::Config => libc::EIO,
        _ => libc::EIO,
    }
}

/// errno for an object data error kind. Data that is missing or wrong is EIO: never zeros.
pub fn data_errno(kind: DataKind) -> i32 {
    match kind {
        DataKind::NoSpace => libc::ENOSPC,
        DataKind::NotFound
        | DataKind::Corrupt
        | DataKind::PermissionDenied
        | DataKind::Unavailable
        | DataKind::Config => libc::EIO,
        _ => libc::EIO,
    }
}

/// errno for any VFS error.
pub fn errno(e: &Error) -> i32 {
    let n = match e {
        Error::Meta(m) => meta_errno(m.kind()),
        Error::Data(d) => data_errno(d.kind()),
    };
    if n == libc::EIO {
        // what the application sees as a bare EIO gets its cause in the log
        tracing::warn!(error = %e, "request failed with EIO");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_pinned() {
        let table = [
            (MetaKind::NotFound, libc::ENOENT),
            (MetaKind::Exists, libc::EEXIST),
            (MetaKind::NotDir, libc::ENOTDIR),
            (MetaKind::IsDir, libc::EISDIR),
            (MetaKind::NotEmpty, libc::ENOTEMPTY),
            (MetaKind::NameTooLong, libc::ENAMETOOLONG),
            (MetaKind::Access, libc::EACCES),
            (MetaKind::NotPermitted, libc::EPERM),
            (MetaKind::Invalid, libc::EINVAL),
            (MetaKind::ReadOnly, libc::EROFS),
            (MetaKind::NoSpace, libc::ENOSPC),
            (MetaKind::QuotaExceeded, libc::EDQUOT),
            (MetaKind::NoAttr, libc::ENODATA),
            (MetaKind::Range, libc::ERANGE),
            (MetaKind::Unsupported, libc::EOPNOTSUPP),
            (MetaKind::BadHandle, libc::EBADF),
            (MetaKind::Conflict, libc::EIO),
            (MetaKind::Unavailable, libc::EIO),
            (MetaKind::Corrupt, libc::EIO),
        ];
        for (k, e) in table {
            assert_eq!(meta_errno(k), e, "{k:?}");
        }
        assert_eq!(data_errno(DataKind::Corrupt), libc::EIO);
        assert_eq!(data_errno(DataKind::NoSpace), libc::ENOSPC);
    }
}
