//! Files: attributes, length, data records (write, copy, compaction), extended attributes,
//! opens and closes, and the volume's usage.

use super::delete::FREE_BATCH;
use super::retry::txn;
use super::rules::{
    apply_setattr, check_copy_plan, chunk_span, copy_extent, lock_poisoned, must_be_file,
    shared_refs, xattr_name, zero_end, zero_record,
};
use super::{Core, W};
use crate::engine::{Engine, Mode, Txn};
use crate::error::{Error, ErrorKind, Result};
use crate::perm::{self, MAY_WRITE};
use crate::slice::{self, Slice};
use crate::types::*;
use crate::XattrFlags;
use std::collections::BTreeMap;

/// After an attempt that may have been applied: whether chunk `indx` of `ino` holds a record of
/// slice `id` (ids are never reused, so only that attempt can have put it there).
async fn slice_recorded<T: Txn>(tx: &mut W<T>, ino: Ino, indx: u32, id: u64) -> Result<bool> {
    Ok(tx.chunk(ino, indx).await?.iter().any(|r| r.id == id))
}

/// Whether `[off, off + len)` fits a file: the end is representable and not past the largest
/// file.
fn range_end(off: u64, len: u64) -> Result<u64> {
    off.checked_add(len)
        .filter(|e| *e <= MAX_FILE_LEN)
        .ok_or_else(|| Error::new(ErrorKind::FileTooBig, "range past the largest file size"))
}

impl<E: Engine> Core<E> {
    pub(crate) async fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.writable()?;
        let now = Timestamp::now();
        txn!(self, "setattr", Mode::Write, |tx| {
            let mut a = tx.must_node(ino).await?;
            let before = a.clone();
            apply_setattr(ctx, &mut a, set, now)?;
            self.owners_changed(tx, &before, &a).await?;
            tx.update_node(&a).await?;
            a
        })
    }

    /// Append zero records over `[start, end)` where chunks have records (a chunk without any
    /// reads as zeros already, and a range of 2^40 sparse bytes must not cost a record per
    /// chunk), and drop whole chunks from `ceil(drop_from / CHUNK_SIZE)` on (the new length
    /// when shrinking), collecting slices that lost their last reference.
    async fn zero_range(
        &self,
        tx: &mut W<E::Txn<'_>>,
        ino: Ino,
        start: u64,
        end: u64,
        drop_from: Option<u64>,
        freed: &mut Vec<(u64, u32)>,
    ) -> Result<()> {
        let zend = zero_end(end, drop_from);
        if let Some((lo, hi)) = chunk_span(start, zend) {
            for indx in tx.chunk_indexes(ino, lo, hi).await? {
                if let Some(rec) = zero_record(indx, start, zend) {
                    tx.append_chunk(ino, indx, &[rec], false).await?;
                }
            }
        }
        if let Some(l) = drop_from {
            // at most 2^31: lengths are at most MAX_FILE_LEN
            let first = u32::try_from(l.div_ceil(CHUNK_SIZE)).unwrap_or(u32::MAX);
            loop {
                let (chunks, more) = tx.take_chunks(ino, first, FREE_BATCH).await?;
                for (_, records) in &chunks {
                    tx.unref_all(records, freed).await?;
                }
                if !more {
                    break;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn truncate(&self, ctx: &Ctx, ino: Ino, length: u64) -> Result<Attr> {
        self.writable()?;
        if length > MAX_FILE_LEN {
            return Err(Error::new(ErrorKind::FileTooBig, "length too large"));
        }
        let now = Timestamp::now();
        let (attr, freed) = txn!(self, "truncate", Mode::Write, |tx| {
            let mut a = tx.must_node(ino).await?;
            must_be_file(&a)?;
            perm::access(ctx, &a, MAY_WRITE)?;
            let mut freed = Vec::new();
            let delta = align4k(length) - align4k(a.length);
            self.check_capacity(tx, delta).await?;
            self.file_resized(tx, &a, a.length, length).await?;
            if length < a.length {
                self.zero_range(tx, ino, length, a.length, Some(length), &mut freed)
                    .await?;
            }
            tx.space += delta;
            a.length = length;
            a.mtime = now;
            a.ctime = now;
            tx.update_node(&a).await?;
            (a, freed)
        })?;
        self.delete_objects(freed).await;
        Ok(attr)
    }

    pub(crate) async fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        mode: FallocMode,
        off: u64,
        len: u64,
    ) -> Result<Attr> {
        self.writable()?;
        if len == 0 {
            return Err(Error::invalid("fallocate of zero length"));
        }
        let end = range_end(off, len)?;
        if mode.punch_hole && !mode.keep_size {
            return Err(Error::unsupported("PUNCH_HOLE needs KEEP_SIZE"));
        }
        let now = Timestamp::now();
        txn!(self, "fallocate", Mode::Write, |tx| {
            let mut a = tx.must_node(ino).await?;
            must_be_file(&a)?;
            perm::access(ctx, &a, MAY_WRITE)?;
            if mode.punch_hole || mode.zero_range {
                let zend = if mode.keep_size {
                    end.min(a.length)
                } else {
                    end
                };
                if off < zend {
                    let mut freed = Vec::new();
                    self.zero_range(tx, ino, off, zend, None, &mut freed)
                        .await?;
                }
                a.mtime = now;
            }
            if !mode.keep_size && end > a.length {
                let delta = align4k(end) - align4k(a.length);
                self.check_capacity(tx, delta).await?;
                self.file_resized(tx, &a, a.length, end).await?;
                tx.space += delta;
                a.length = end;
                a.mtime = now;
            }
            a.ctime = now;
            tx.update_node(&a).await?;
            a
        })
    }

    pub(crate) async fn read_chunk(&self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        txn!(self, "read chunk", Mode::Latest, |tx| {
            tx.chunk(ino, indx).await?
        })
    }

    pub(crate) async fn write_slice(
        &self,
        ino: Ino,
        indx: u32,
        s: Slice,
        mtime: Timestamp,
        sums: &[u8],
    ) -> Result<()> {
        self.writable()?;
        let end = u64::from(indx) * CHUNK_SIZE + s.end();
        if s.end() > CHUNK_SIZE || end > MAX_FILE_LEN {
            return Err(Error::new(
                ErrorKind::FileTooBig,
                "write past the largest file size",
            ));
        }
        if self.features.one_step
            && self.format()?.capacity == 0
            && !self.has_dir_quotas()
            && !self.user_group_on()
        {
            let done = txn!(self, "write", Mode::Single, |tx, again| {
                if again && slice_recorded(tx, ino, indx, s.id).await? {
                    return Ok(true);
                }
                match tx.write_fast(ino, indx, &s, end, mtime, sums).await? {
                    Some((old, parent)) => {
                        if end > old {
                            tx.space += align4k(end) - align4k(old);
                            // the one-step path runs only without user and group usage
                            self.file_resized_in_dirs(tx, ino, parent, old, end).await?;
                        }
                        true
                    }
                    None => false,
                }
            })?;
            if done {
                return Ok(());
            }
        }
        txn!(self, "write", Mode::Write, |tx, again| {
            if again && slice_recorded(tx, ino, indx, s.id).await? {
                return Ok(());
            }
            let mut a = tx.must_node(ino).await?;
            if a.typ != FileType::File {
                return Err(Error::invalid("not a regular file"));
            }
            let delta = if end > a.length {
                align4k(end) - align4k(a.length)
            } else {
                0
            };
            self.check_capacity(tx, delta).await?;
            if end > a.length {
                self.file_resized(tx, &a, a.length, end).await?;
            }
            let fresh = a.length <= u64::from(indx) * CHUNK_SIZE;
            tx.append_chunk(ino, indx, &[s], fresh).await?;
            tx.ref_new(s.id, s.size).await?;
            if !sums.is_empty() {
                tx.put_sums(s.id, sums).await?;
            }
            if end > a.length {
                a.length = end;
                tx.space += delta;
            }
            a.mtime = mtime;
            a.ctime = mtime;
            tx.update_node(&a).await?;
        })
    }

    pub(crate) async fn copy_range(
        &self,
        src: Ino,
        off_in: u64,
        dst: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<(u64, Attr)> {
        self.writable()?;
        let now = Timestamp::now();
        txn!(self, "copy range", Mode::Write, |tx, again| {
            // both nodes read (locked), the lower inode first
            let (s, mut d) = if src <= dst {
                let s = tx.must_node(src).await?;
                (s, tx.must_node(dst).await?)
            } else {
                let d = tx.must_node(dst).await?;
                (tx.must_node(src).await?, d)
            };
            let n = copy_extent(&s, off_in, &d, off_out, len)?;
            if again && n > 0 && d.ctime == now {
                // an attempt that may have been applied changed `dst` at this very instant
                return Ok((n, d));
            }
            if n > 0 {
                let (lo, hi) = chunk_span(off_in, off_in + n)
                    .ok_or_else(|| Error::invalid("copy range past the largest file"))?;
                let chunks: BTreeMap<u32, Vec<Slice>> =
                    tx.chunks(src, lo, hi).await?.into_iter().collect();
                let plan = slice::copy_plan(&chunks, off_in, n, off_out);
                check_copy_plan(&plan)?;
                for (indx, records) in &plan {
                    let fresh = d.length <= u64::from(*indx) * CHUNK_SIZE;
                    tx.append_chunk(dst, *indx, records, fresh).await?;
                }
                for ((id, size), more) in shared_refs(&plan) {
                    tx.ref_more(id, size, more).await?;
                }
                let end = off_out + n;
                if end > d.length {
                    let delta = align4k(end) - align4k(d.length);
                    self.check_capacity(tx, delta).await?;
                    self.file_resized(tx, &d, d.length, end).await?;
                    tx.space += delta;
                    d.length = end;
                }
                d.mtime = now;
                d.ctime = now;
                tx.update_node(&d).await?;
            }
            (n, d)
        })
    }

    /// Replace the records `old`, which must still open chunk `indx` of `ino`, with `new`
    /// (compaction). The replaced slices lose a reference each, or are set aside while the
    /// trash is on. False, changing nothing, when the chunk no longer starts with `old`.
    pub(crate) async fn compact_chunk(
        &self,
        ino: Ino,
        indx: u32,
        old: &[Slice],
        new: &[Slice],
        sums: &[Vec<u8>],
    ) -> Result<bool> {
        self.writable()?;
        if old.is_empty() {
            return Ok(false);
        }
        let delay = self.trash_days() > 0;
        let now = Timestamp::now();
        let (done, freed) = txn!(self, "compact chunk", Mode::Write, |tx, again| {
            let cur = tx.chunk(ino, indx).await?;
            if again && !new.is_empty() && cur.starts_with(new) {
                // an attempt that may have been applied swapped them (new ids are unique)
                return Ok((true, Vec::new()));
            }
            if !cur.starts_with(old) {
                return Ok((false, Vec::new()));
            }
            let mut records = new.to_vec();
            records.extend_from_slice(&cur[old.len()..]);
            tx.set_chunk(ino, indx, &records).await?;
            for (i, n) in new.iter().enumerate().filter(|(_, n)| n.id != 0) {
                tx.ref_new(n.id, n.size).await?;
                if let Some(sum) = sums.get(i).filter(|s| !s.is_empty()) {
                    tx.put_sums(n.id, sum).await?;
                }
            }
            let mut freed = Vec::new();
            let data: Vec<(u64, u32)> = old
                .iter()
                .filter(|s| s.id != 0)
                .map(|s| (s.id, s.size))
                .collect();
            match (delay, new.iter().find(|n| n.id != 0)) {
                (true, Some(first)) if !data.is_empty() => {
                    // kept for the trash time, as JuiceFS does: `gc --delete` and the mounts'
                    // cleanup release them afterwards
                    tx.put_delayed(now.sec, first.id, &data).await?;
                }
                _ => tx.unref_all(old, &mut freed).await?,
            }
            (true, freed)
        })?;
        self.delete_objects(freed).await;
        Ok(done)
    }

    pub(crate) async fn slice_sums(&self, id: u64) -> Result<Option<Vec<u8>>> {
        txn!(self, "read checksums", Mode::Latest, |tx| {
            tx.sums(id).await?
        })
    }

    pub(crate) async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let name = xattr_name(name)?.as_bytes();
        txn!(self, "getxattr", Mode::Latest, |tx| {
            match tx.xattr_of(ino, name).await? {
                Some(Some(v)) => v,
                Some(None) => return Err(Error::new(ErrorKind::NoAttr, "no such attribute")),
                None => return Err(Error::not_found(format!("inode {ino} does not exist"))),
            }
        })
    }

    pub(crate) async fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        txn!(self, "listxattr", Mode::Read, |tx| {
            tx.must_node(ino).await?;
            tx.xattr_names(ino).await?
        })
    }

    pub(crate) async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()> {
        self.writable()?;
        let name = xattr_name(name)?.as_bytes();
        if name.is_empty() {
            return Err(Error::invalid("empty attribute name"));
        }
        if value.len() > 65536 {
            return Err(Error::new(
                ErrorKind::Range,
                "attribute value larger than 64 KiB",
            ));
        }
        let now = Timestamp::now();
        txn!(self, "setxattr", Mode::Write, |tx, again| {
            let mut a = tx.must_node(ino).await?;
            perm::access(ctx, &a, MAY_WRITE)?;
            let old = tx.xattr(ino, name).await?;
            let exists = old.is_some();
            if flags.create && exists {
                if again && old.as_deref() == Some(value) {
                    // an attempt that may have been applied created it
                    return Ok(());
                }
                return Err(Error::exists("attribute exists"));
            }
            if flags.replace && !exists {
                return Err(Error::new(ErrorKind::NoAttr, "no such attribute"));
            }
            tx.set_xattr(ino, name, value).await?;
            a.ctime = now;
            tx.update_node(&a).await?;
        })
    }

    pub(crate) async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        let name = xattr_name(name)?.as_bytes();
        let now = Timestamp::now();
        txn!(self, "removexattr", Mode::Write, |tx, again| {
            let mut a = tx.must_node(ino).await?;
            perm::access(ctx, &a, MAY_WRITE)?;
            if !tx.delete_xattr(ino, name).await? {
                if again {
                    // an attempt that may have been applied removed it
                    return Ok(());
                }
                return Err(Error::new(ErrorKind::NoAttr, "no such attribute"));
            }
            a.ctime = now;
            tx.update_node(&a).await?;
        })
    }

    pub(crate) async fn statfs(&self) -> Result<StatFs> {
        let fmt = self.format()?;
        let (space, inodes) = txn!(self, "statfs", Mode::Read, |tx| {
            (
                tx.counter("usedSpace").await?,
                tx.counter("totalInodes").await?,
            )
        })?;
        let pending = self.pending_stats();
        let used = (space + pending.0).max(0) as u64;
        let inodes = (inodes + pending.1).max(0) as u64;
        let total_space = if fmt.capacity > 0 {
            fmt.capacity
        } else {
            (1u64 << 50).max(used * 2)
        };
        let total_inodes = if fmt.inodes > 0 {
            fmt.inodes
        } else {
            (10u64 << 20).max(inodes * 2)
        };
        Ok(StatFs {
            total_space,
            avail_space: total_space.saturating_sub(used),
            used_inodes: inodes,
            avail_inodes: total_inodes.saturating_sub(inodes),
        })
    }

    /// Note an open of `ino` by this client (a removed file keeps its data while open).
    pub(crate) fn opened(&self, ino: Ino) {
        if let Ok(mut m) = self.open_files.lock() {
            *m.entry(ino).or_insert(0) += 1;
        }
    }

    /// Note the close of one open of `ino`; the last close of a removed file frees it.
    pub(crate) async fn close(&self, ino: Ino) -> Result<()> {
        let last = match self.open_files.lock() {
            Ok(mut m) => match m.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    m.remove(&ino);
                    true
                }
                None => false,
            },
            Err(_) => return Err(lock_poisoned()),
        };
        let was_sustained = last
            && self
                .sustained
                .lock()
                .map(|mut set| set.remove(&ino))
                .unwrap_or(true);
        if !was_sustained || self.writable().is_err() {
            return Ok(());
        }
        let now = Timestamp::now();
        let sid = self.sid();
        let freed = txn!(self, "close", Mode::Write, |tx| {
            if !tx.unsustain(sid, ino).await? {
                return Ok(false);
            }
            match tx.node(ino).await? {
                Some(a) if a.nlink == 0 => {
                    let mut none = Vec::new();
                    self.free_inode(tx, &a, now, true, &mut none).await?;
                    true
                }
                _ => false,
            }
        })?;
        if freed {
            self.free_file_data(ino).await?;
        }
        Ok(())
    }
}
