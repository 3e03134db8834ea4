//! Block files on a local disk, as the disk cache, the writeback staging area and flat copies
//! keep them: a block's (uncompressed) bytes followed by one CRC32C (little endian) per 32 KiB
//! of them, written under a temporary name `<name>.tmp.<pid>.<seq>` (mode 0600, parent
//! directories 0700) and renamed into place, optionally synced; read back whole and checked, a
//! file of the wrong length or with a failing checksum reading as absent. Plus the directories
//! that hold them: free space, and the per-volume roots made when missing.

use bytes::Bytes;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes covered by one CRC32C of a cache file's trailer.
pub(crate) const SEGMENT: usize = 32 << 10;

/// Blocks shorter than this are written to cache files through the page cache, longer ones
/// with `O_DIRECT` (see `write_direct`).
const DIRECT_MIN: usize = 1 << 20;

/// Length of the cache file of a block of `len` bytes.
pub(crate) fn file_len(len: usize) -> u64 {
    (len + 4 * len.div_ceil(SEGMENT)) as u64
}

/// The CRC32C trailer of `data`: one CRC32C (little endian) per [`SEGMENT`].
pub(crate) fn trailer(data: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(4 * data.len().div_ceil(SEGMENT));
    for seg in data.chunks(SEGMENT) {
        t.extend_from_slice(&crc32c::crc32c(seg).to_le_bytes());
    }
    t
}

/// Whether `data`, starting at segment `first`, matches the checksums `crcs`.
pub(crate) fn verify(data: &[u8], crcs: &[u8]) -> bool {
    data.chunks(SEGMENT).count() * 4 == crcs.len()
        && data
            .chunks(SEGMENT)
            .zip(crcs.chunks_exact(4))
            .all(|(seg, c)| crc32c::crc32c(seg).to_le_bytes() == c)
}

/// Expected block length from a cache file name `<id>_<indx>_<len>`.
pub(crate) fn len_from_name(name: &str) -> Option<usize> {
    let mut it = name.rsplitn(2, '_');
    let len = it.next()?.parse().ok()?;
    let rest = it.next()?;
    let (id, indx) = rest.split_once('_')?;
    id.parse::<u64>().ok()?;
    indx.parse::<u32>().ok()?;
    Some(len)
}

/// (available, total) bytes of the file system holding `p`.
pub(crate) fn disk_space(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs for the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; statvfs only writes into `st`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Write `data` and its CRC32C trailer (computed here unless the caller has it) as the file
/// `path`: under a temporary name
/// `<name>.tmp.<pid>.<seq>` (mode 0600, parent directories made 0700), then renamed into place.
/// When `durable`, the file and then its directory are fsynced, so the block survives a crash
/// once this returns.
pub(crate) fn write_block_file(
    path: &Path,
    data: &[u8],
    known_trailer: Option<&[u8]>,
    seq: u64,
    durable: bool,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.tmp.{}.{seq}", std::process::id()));
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
    };
    let mut f = match create() {
        Err(e) if e.kind() == IoKind::NotFound => {
            if let Some(parent) = tmp.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)?;
            }
            create()?
        }
        other => other?,
    };
    let head = write_direct(&f, data);
    let mut res = f
        .write_all(&data[head..])
        .and_then(|_| match known_trailer {
            Some(t) if t.len() == 4 * data.len().div_ceil(SEGMENT) => f.write_all(t),
            _ => f.write_all(&trailer(data)),
        });
    if durable {
        res = res.and_then(|_| f.sync_data());
    }
    res = res.and_then(|_| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return res;
    }
    if durable {
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// Write the page-aligned head of `data` to the new, empty file `f` with `O_DIRECT` (from the
/// caller's memory straight to the disk), when `data` starts on a page boundary; returns how many
/// bytes were written (0 when none could be: unaligned data, a file system without direct I/O),
/// and leaves `f` in buffered mode at that offset for the rest.
///
/// A block the cache takes is written once and read back, if ever, much later: copying it
/// into the page cache first costs more CPU than anything else in a cold read (docs/design/0006),
/// and fills memory with pages that
/// the kernel then had to write back and evict.
fn write_direct(f: &std::fs::File, data: &[u8]) -> usize {
    let head = data.len() / crate::pool::ALIGN * crate::pool::ALIGN;
    // small blocks stay buffered: their copy costs little, and a direct write waits for the
    // disk, which behind a busy writeback can take seconds
    if head < DIRECT_MIN || data.as_ptr().align_offset(crate::pool::ALIGN) != 0 {
        return 0;
    }
    let Some(mut done) = with_direct(f, |fd| {
        let mut done = 0usize;
        while done < head {
            // SAFETY: writes `head - done` bytes that lie inside `data`, to `fd` the caller owns
            let n = unsafe {
                libc::pwrite(
                    fd,
                    data[done..head].as_ptr().cast(),
                    head - done,
                    done as libc::off_t,
                )
            };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        done
    }) else {
        return 0;
    };
    // a direct write cut short (EINVAL on some file systems) leaves a partial, aligned prefix
    // at best: the buffered writes go on from where it ended
    done -= done % crate::pool::ALIGN;
    if done > 0 && f_seek(f, done).is_err() {
        return 0;
    }
    done
}

/// Run `op` on `f`'s descriptor switched to `O_DIRECT`, then switch it back; None (and `op`
/// not run) when the file system refuses direct I/O.
fn with_direct<R>(f: &std::fs::File, op: impl FnOnce(libc::c_int) -> R) -> Option<R> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` owns; no memory is passed
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } != 0 {
        return None;
    }
    let r = op(fd);
    // SAFETY: as above
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    Some(r)
}

/// Move `f`'s offset to `at`.
fn f_seek(mut f: &std::fs::File, at: usize) -> std::io::Result<u64> {
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(at as u64))
}

/// Read the whole file of a block of `len` bytes written by [`write_block_file`] and check it:
/// None when it is missing, of the wrong length, or fails a checksum.
pub(crate) fn read_block_file(path: &Path, len: usize) -> Option<Bytes> {
    read_block_file_with_crc(path, len).map(|(b, _)| b)
}

/// [`read_block_file`], with the CRC32C of the whole block combined from the verified trailer
/// (None only for a trailer of the wrong length, which does not verify anyway).
pub(crate) fn read_block_file_with_crc(path: &Path, len: usize) -> Option<(Bytes, Option<u32>)> {
    let f = std::fs::File::open(path).ok()?;
    let want = file_len(len) as usize;
    if f.metadata().ok()?.len() != want as u64 {
        return None;
    }
    let mut buf = crate::pool::take(want);
    match f.take(want as u64).read_to_end(&mut buf) {
        Ok(n) if n == want && verify(&buf[..len], &buf[len..]) => {
            let crc = crate::sums::whole_crc_by_parts(len, &buf[len..], SEGMENT);
            buf.truncate(len);
            Some((crate::pool::into_bytes(buf), crc))
        }
        _ => {
            crate::pool::give(buf);
            None
        }
    }
}

/// `<dir>/<uuid>/<sub>` of each of `dirs`, made (0700) when missing; a directory that cannot be
/// made is left out with the warning `unusable`.
pub(crate) fn usable_roots(
    dirs: &[PathBuf],
    uuid: &str,
    sub: &str,
    unusable: &str,
) -> Vec<PathBuf> {
    dirs.iter()
        .map(|d| d.join(uuid).join(sub))
        .filter(|root| {
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
            {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(dir = %root.display(), error = %e, "{unusable}");
                    false
                }
            }
        })
        .collect()
}

/// The pid in a temporary file's name (`<key>.tmp.<pid>.<seq>`).
pub(crate) fn tmp_writer(name: &str) -> Option<u32> {
    let (_, rest) = name.split_once(".tmp.")?;
    rest.split('.').next()?.parse().ok()
}
