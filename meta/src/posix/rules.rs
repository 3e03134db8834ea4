//! Pure rules of the core: name checks, attribute changes (`setattr`), the mode and group of a
//! new inode, zero records for truncation, the plan of a shared copy, trash names. No I/O here.

use crate::error::{Error, ErrorKind, Result};
use crate::perm::{self, MAY_WRITE};
use crate::slice::Slice;
use crate::types::*;
use std::collections::HashMap;

/// Check an entry name: not empty, at most 255 bytes, no `/` or NUL.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(Error::not_found("empty name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::new(
            ErrorKind::NameTooLong,
            format!("name is {} bytes, longer than {MAX_NAME_LEN}", name.len()),
        ));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Error::invalid("name contains '/' or NUL"));
    }
    Ok(())
}

/// Check an extended attribute name: at most 255 bytes of UTF-8.
pub(crate) fn xattr_name(name: &[u8]) -> Result<&str> {
    if name.len() > 255 {
        return Err(Error::new(
            ErrorKind::Range,
            "attribute name longer than 255 bytes",
        ));
    }
    std::str::from_utf8(name).map_err(|_| Error::invalid("attribute name is not UTF-8"))
}

/// Attributes of a new directory owned by root.
pub(crate) fn new_dir_attr(ino: Ino, mode: u16, parent: Ino, now: Timestamp) -> Attr {
    Attr {
        ino,
        typ: FileType::Dir,
        mode,
        uid: 0,
        gid: 0,
        atime: now,
        mtime: now,
        ctime: now,
        nlink: 2,
        length: DIR_LENGTH,
        rdev: 0,
        parent,
        flags: 0,
    }
}

/// The record that reads the part of chunk `indx` inside `[start, end)` as zeros, if the range
/// touches that chunk.
pub(crate) fn zero_record(indx: u32, start: u64, end: u64) -> Option<Slice> {
    let c0 = u64::from(indx) * CHUNK_SIZE;
    let from = start.max(c0);
    let to = end.min(c0 + CHUNK_SIZE);
    (from < to).then(|| Slice::zeros((from - c0) as u32, (to - from) as u32))
}

/// How many bytes `copy_file_range` from `[off_in, off_in + len)` of `s` to `off_out` of `d`
/// copies: the range clipped at the source's end. Both must be regular files, the destination
/// may not grow past the largest file, and a file may not be copied onto an overlapping range
/// of itself.
pub(crate) fn copy_extent(s: &Attr, off_in: u64, d: &Attr, off_out: u64, len: u64) -> Result<u64> {
    for a in [s, d] {
        match a.typ {
            FileType::File => {}
            FileType::Dir => return Err(Error::is_dir("copy_file_range of a directory")),
            _ => {
                return Err(Error::invalid(
                    "copy_file_range of a file that is not regular",
                ))
            }
        }
    }
    let n = len.min(s.length.saturating_sub(off_in));
    if n == 0 {
        return Ok(0);
    }
    if off_out.checked_add(n).is_none_or(|e| e > MAX_FILE_LEN) {
        return Err(Error::new(
            ErrorKind::FileTooBig,
            "copy past the largest file size",
        ));
    }
    if s.ino == d.ino && off_in < off_out + n && off_out < off_in + n {
        return Err(Error::invalid(
            "copy_file_range onto an overlapping range of the same file",
        ));
    }
    Ok(n)
}

/// Most records one copy may add to one chunk. A source chunk resolved into more runs than this
/// (many small overwrites) is not shared: its records would crowd the chunk (MySQL's `blob`
/// holds 2 730) until compaction. The copy is then refused as unsupported and the client copies
/// the data instead, which stores it as a few fresh slices.
pub(crate) const COPY_MAX_RECORDS: usize = 256;

/// Refuse a copy plan that would add more than [`COPY_MAX_RECORDS`] records to one chunk.
pub(crate) fn check_copy_plan(plan: &[(u32, Vec<Slice>)]) -> Result<()> {
    match plan.iter().find(|(_, r)| r.len() > COPY_MAX_RECORDS) {
        Some((indx, r)) => Err(Error::unsupported(format!(
            "the source is too fragmented to share ({} records for chunk {indx}); copy the data",
            r.len()
        ))),
        None => Ok(()),
    }
}

/// The references a copy plan adds: records per shared slice `(id, size)`.
pub(crate) fn shared_refs(plan: &[(u32, Vec<Slice>)]) -> Vec<((u64, u32), i64)> {
    let mut refs: HashMap<(u64, u32), i64> = HashMap::new();
    for s in plan.iter().flat_map(|(_, r)| r).filter(|s| s.id != 0) {
        *refs.entry((s.id, s.size)).or_default() += 1;
    }
    let mut out: Vec<_> = refs.into_iter().collect();
    // one order for every transaction: concurrent copies of one slice lock its row in turn
    out.sort_unstable();
    out
}

/// The chunks `[start, end)` touches, first and last (None when empty); chunk indexes fit a
/// u32 for every length up to [`crate::MAX_FILE_LEN`].
pub(crate) fn chunk_span(start: u64, end: u64) -> Option<(u32, u32)> {
    if start >= end {
        return None;
    }
    let first = u32::try_from(start / CHUNK_SIZE).ok()?;
    let last = u32::try_from((end - 1) / CHUNK_SIZE).ok()?;
    Some((first, last))
}

/// Where zero records go when `[start, end)` is zeroed and, when shrinking to `drop_from`,
/// every chunk from `ceil(drop_from / CHUNK_SIZE)` on is dropped whole: the range cut at the
/// first dropped chunk (a truncate from 2^56 bytes to 0 zeroes nothing, it drops chunks).
pub(crate) fn zero_end(end: u64, drop_from: Option<u64>) -> u64 {
    match drop_from {
        Some(l) => end.min(l.div_ceil(CHUNK_SIZE).saturating_mul(CHUNK_SIZE)),
        None => end,
    }
}

/// The slices of a delayed-slices record: big-endian (id u64, size u32) pairs.
pub fn decode_delayed(buf: &[u8]) -> Result<Vec<(u64, u32)>> {
    if !buf.len().is_multiple_of(12) {
        return Err(Error::corrupt(format!(
            "delayed slice record of {} bytes is not a multiple of 12",
            buf.len()
        )));
    }
    Ok(buf
        .chunks_exact(12)
        .map(|b| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&b[..8]);
            let mut size = [0u8; 4];
            size.copy_from_slice(&b[8..]);
            (u64::from_be_bytes(id), u32::from_be_bytes(size))
        })
        .collect())
}

/// The error of a poisoned internal lock.
pub(crate) fn lock_poisoned() -> Error {
    Error::new(ErrorKind::Engine, "internal lock poisoned")
}

/// The mode and group of a new inode of type `typ` asked for with `mode` by `ctx` in directory
/// `parent`: a set-group-ID directory passes its group on (and its SGID bit to directories);
/// a non-member creating a group-executable SGID file loses the bit.
pub(crate) fn new_mode_and_gid(ctx: &Ctx, parent: &Attr, typ: FileType, mode: u16) -> (u16, u32) {
    let mut mode = mode;
    let mut gid = ctx.gid;
    if parent.mode & S_ISGID != 0 {
        gid = parent.gid;
        if typ == FileType::Dir {
            mode |= S_ISGID;
        } else if mode & (S_ISGID | 0o010) == (S_ISGID | 0o010)
            && ctx.uid != 0
            && !ctx.in_group(gid)
        {
            mode &= !S_ISGID;
        }
    }
    (mode, gid)
}

/// Apply `set` by `ctx` to `a` at `now`, with the permission rules of chmod, chown and utimes.
pub(crate) fn apply_setattr(ctx: &Ctx, a: &mut Attr, set: &SetAttr, now: Timestamp) -> Result<()> {
    let owner = ctx.uid == 0 || ctx.uid == a.uid;
    if let Some(mode) = set.mode {
        if ctx.check_permission && !owner {
            return Err(Error::not_permitted("only the owner may change the mode"));
        }
        let mut mode = mode & 0o7777;
        if ctx.check_permission && ctx.uid != 0 && a.typ != FileType::Dir && !ctx.in_group(a.gid) {
            mode &= !S_ISGID;
        }
        a.mode = mode;
    }
    if set.uid.is_some() || set.gid.is_some() {
        if ctx.check_permission && ctx.uid != 0 {
            let uid_ok = set.uid.is_none_or(|u| u == a.uid);
            let gid_ok = set
                .gid
                .is_none_or(|g| g == a.gid || (owner && ctx.in_group(g)));
            if !(owner && uid_ok && gid_ok) {
                return Err(Error::not_permitted("not allowed to change the owner"));
            }
        }
        let changes = set.uid.is_some_and(|u| u != a.uid) || set.gid.is_some_and(|g| g != a.gid);
        if changes && a.typ != FileType::Dir && set.mode.is_none() {
            // chown clears set-user-id, and set-group-id when group-executable
            a.mode &= !S_ISUID;
            if a.mode & 0o010 != 0 {
                a.mode &= !S_ISGID;
            }
        }
        if let Some(u) = set.uid {
            a.uid = u;
        }
        if let Some(g) = set.gid {
            a.gid = g;
        }
    }
    for (which, t) in [(0, set.atime), (1, set.mtime)] {
        let Some(t) = t else { continue };
        if ctx.check_permission && !owner {
            match t {
                TimeSet::Now => perm::access(ctx, a, MAY_WRITE)?,
                TimeSet::At(_) => return Err(Error::not_permitted("only the owner may set times")),
            }
        }
        let v = match t {
            TimeSet::Now => now,
            TimeSet::At(ts) => ts,
        };
        if which == 0 {
            a.atime = v
        } else {
            a.mtime = v
        }
    }
    a.ctime = now;
    Ok(())
}

/// A delayed-slices record: big-endian (id u64, size u32) pairs.
pub fn encode_delayed(slices: &[(u64, u32)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 * slices.len());
    for (id, size) in slices {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&size.to_be_bytes());
    }
    b
}

/// Name of the trash directory of the hour of `now` (`YYYY-MM-DD-HH`, UTC).
pub(crate) fn trash_hour(now: Timestamp) -> Result<String> {
    chrono::DateTime::from_timestamp(now.sec, 0)
        .map(|t| t.format("%Y-%m-%d-%H").to_string())
        .ok_or_else(|| Error::invalid("clock out of range"))
}

/// Start of the hour a trash directory is named after, seconds since the epoch.
pub(crate) fn trash_hour_start(name: &[u8]) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(
        &format!("{}:00:00", String::from_utf8_lossy(name)),
        "%Y-%m-%d-%H:%M:%S",
    )
    .ok()
    .map(|t| t.and_utc().timestamp())
}

/// The name a removed file takes in the trash: `<parent>-<inode>-<name>`, cut to the longest
/// name; `taken` gives the variant with a nanosecond suffix used when that name exists.
pub(crate) fn trash_name(
    parent: Ino,
    ino: Ino,
    name: &[u8],
    now: Timestamp,
    taken: bool,
) -> Vec<u8> {
    let mut t = format!("{parent}-{ino}-").into_bytes();
    t.extend_from_slice(name);
    t.truncate(MAX_NAME_LEN);
    if taken {
        t.truncate(MAX_NAME_LEN - 12);
        t.extend_from_slice(format!("-{}", now.nsec).as_bytes());
    }
    t
}

/// Attributes of a new inode of type `typ` made by `ctx` at `now` (before the parent's
/// set-group-ID rule).
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_attr(
    ctx: &Ctx,
    ino: Ino,
    parent: Ino,
    typ: FileType,
    mode: u16,
    umask: u16,
    rdev: u32,
    target_len: usize,
    now: Timestamp,
) -> Attr {
    Attr {
        ino,
        typ,
        mode: if typ == FileType::Symlink {
            0o777
        } else {
            mode & 0o7777 & !umask
        },
        uid: ctx.uid,
        gid: ctx.gid,
        atime: now,
        mtime: now,
        ctime: now,
        nlink: if typ == FileType::Dir { 2 } else { 1 },
        length: match typ {
            FileType::Dir => DIR_LENGTH,
            FileType::Symlink => target_len as u64,
            _ => 0,
        },
        rdev,
        parent,
        flags: 0,
    }
}

/// Check a symlink target: not empty, at most [`MAX_SYMLINK_LEN`] bytes.
pub(crate) fn check_target(target: &[u8]) -> Result<()> {
    if target.is_empty() {
        return Err(Error::not_found("empty symlink target"));
    }
    if target.len() > MAX_SYMLINK_LEN {
        return Err(Error::new(
            ErrorKind::NameTooLong,
            "symlink target too long",
        ));
    }
    Ok(())
}

/// Check a rename request before any transaction: names, and flags that cannot go together.
pub(crate) fn check_rename(name: &[u8], new_name: &[u8], flags: RenameFlags) -> Result<()> {
    check_name(name)?;
    check_name(new_name)?;
    if flags.exchange && flags.noreplace {
        return Err(Error::invalid("RENAME_EXCHANGE with RENAME_NOREPLACE"));
    }
    for n in [name, new_name] {
        if n == b"." || n == b".." {
            return Err(Error::invalid("cannot rename '.' or '..'"));
        }
    }
    Ok(())
}

/// The file types a regular-file operation accepts: a directory is EISDIR, anything else
/// not regular EINVAL.
pub(crate) fn must_be_file(a: &Attr) -> Result<()> {
    match a.typ {
        FileType::File => Ok(()),
        FileType::Dir => Err(Error::is_dir("is a directory")),
        _ => Err(Error::invalid("not a regular file")),
    }
}
