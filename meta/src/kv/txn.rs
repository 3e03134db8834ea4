//! A transaction of the KV engine: every typed read and write of the engine contract as gets,
//! puts and scans of the JuiceFS TiKV layout ([`super::keys`] holds all key knowledge).
//!
//! Optimistic: reads are remembered and a commit conflicts when another transaction changed
//! what was read; writes are buffered until commit.

use super::keys::*;
use super::store::{KvTxn, Pair};
use crate::engine::{DelFile, Delayed, Flock, Listed, Page, Plock, SessionRow, Txn};
use crate::error::{Error, Result};
use crate::slice::{self, Slice};
use crate::types::*;
use crate::ChunkSlices;
use async_trait::async_trait;
use std::ops::Bound;

/// Keys read per scan request.
const SCAN_BATCH: usize = 4096;

/// A transaction of [`super::KvEngine`].
pub struct KvTx<'a> {
    pub(super) t: Box<dyn KvTxn>,
    pub(super) k: &'a Keys,
    /// A read transaction: ended without a commit (there is nothing to check).
    pub(super) read_only: bool,
}

impl KvTx<'_> {
    /// Up to `limit` pairs in `[start, end)`, in requests of at most [`SCAN_BATCH`].
    async fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Pair>> {
        let mut out: Vec<Pair> = Vec::new();
        let mut from = start.to_vec();
        while out.len() < limit {
            let want = (limit - out.len()).min(SCAN_BATCH);
            let batch = self.t.scan(&from, end, want).await?;
            let n = batch.len();
            if let Some((k, _)) = batch.last() {
                from = k.clone();
                from.push(0);
            }
            out.extend(batch);
            if n < want {
                break;
            }
        }
        Ok(out)
    }

    /// Every pair under `prefix`.
    async fn scan_all(&mut self, prefix: &[u8]) -> Result<Vec<Pair>> {
        self.scan(prefix, &prefix_end(prefix), usize::MAX).await
    }

    /// Delete every key under `prefix`.
    async fn delete_all(&mut self, prefix: &[u8]) -> Result<()> {
        for (k, _) in self.scan_all(prefix).await? {
            self.t.delete(k).await?;
        }
        Ok(())
    }

    /// The key of quota `key` of `kind`.
    fn quota_key(&self, kind: QuotaKind, key: u64) -> Vec<u8> {
        match kind {
            QuotaKind::Dir => self.k.dir_quota(key),
            QuotaKind::User => self.k.owner_quota(b"QU", key),
            QuotaKind::Group => self.k.owner_quota(b"QG", key),
        }
    }

    /// Add `delta` to a counter kept only while non-zero (link parents).
    async fn sparse_add(&mut self, key: Vec<u8>, delta: i64) -> Result<i64> {
        let v = decode_counter(self.t.get(&key).await?.as_deref())? + delta;
        if v == 0 {
            self.t.delete(key).await?;
        } else {
            self.t.put(key, encode_counter(v)).await?;
        }
        Ok(v)
    }

    /// The chunks of `ino` in `[lo, hi]` as stored.
    async fn chunk_pairs(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<Pair>> {
        let from = self.k.chunk(ino, lo);
        let until = match hi.checked_add(1) {
            Some(h) => self.k.chunk(ino, h),
            None => prefix_end(&self.k.chunks(ino)),
        };
        self.scan(&from, &until, usize::MAX).await
    }

    fn chunk_index(&self, key: &[u8]) -> Result<u32> {
        self.k
            .parse_chunk(key)
            .map(|(_, indx)| indx)
            .ok_or_else(|| Error::corrupt("malformed chunk key"))
    }

    /// Rewrite one inode's lock value `value` (at `key`) without the locks `drop` picks.
    async fn drop_locks<L, D, E, F>(
        &mut self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        decode: D,
        encode: E,
        drop: F,
    ) -> Result<()>
    where
        D: Fn(&[u8]) -> Result<Vec<L>>,
        E: Fn(&[L]) -> Vec<u8>,
        F: Fn(&L) -> bool,
    {
        let Some(value) = value else {
            return Ok(());
        };
        let all = decode(&value)?;
        let n = all.len();
        let keep: Vec<L> = all.into_iter().filter(|l| !drop(l)).collect();
        if keep.len() == n {
            return Ok(());
        }
        if keep.is_empty() {
            self.t.delete(key).await
        } else {
            self.t.put(key, encode(&keep)).await
        }
    }

    /// A page of the inode keys whose tag is `tag`, decoded by `decode`, from `cursor`.
    async fn scan_inode_keys<T, F>(
        &mut self,
        cursor: &[u8],
        limit: usize,
        tag: u8,
        decode: F,
    ) -> Result<Page<T>>
    where
        F: Fn(&Keys, &[u8], &[u8]) -> Result<Option<T>>,
    {
        let all = self.k.all_inodes();
        let end = prefix_end(&all);
        let mut from = if cursor.is_empty() {
            all
        } else {
            cursor.to_vec()
        };
        let limit = limit.max(1);
        let mut out = Vec::new();
        loop {
            let batch = self.t.scan(&from, &end, SCAN_BATCH).await?;
            let n = batch.len();
            for (k, v) in batch {
                from = k.clone();
                from.push(0);
                if self.k.parse_inode_key(&k).is_some_and(|(_, t, _)| t == tag) {
                    if let Some(item) = decode(self.k, &k, &v)? {
                        out.push(item);
                    }
                    if out.len() >= limit {
                        return Ok((out, Some(from)));
                    }
                }
            }
            if n < SCAN_BATCH {
                return Ok((out, None));
            }
        }
    }
}

#[async_trait]
impl Txn for KvTx<'_> {
    async fn node(&mut self, ino: Ino) -> Result<Option<Attr>> {
        match self.t.get(&self.k.inode(ino)).await? {
            Some(b) => Ok(Some(decode_attr(ino, &b)?)),
            None => Ok(None),
        }
    }

    async fn create_node(&mut self, a: &Attr) -> Result<()> {
        self.t.put(self.k.inode(a.ino), encode_attr(a)).await
    }

    async fn update_node(&mut self, a: &Attr) -> Result<()> {
        self.t.put(self.k.inode(a.ino), encode_attr(a)).await
    }

    async fn delete_inode(&mut self, a: &Attr) -> Result<()> {
        self.t.delete(self.k.inode(a.ino)).await?;
        self.delete_all(&self.k.xattrs(a.ino)).await?;
        self.delete_all(&self.k.parents(a.ino)).await?;
        match a.typ {
            FileType::Symlink => self.t.delete(self.k.symlink(a.ino)).await,
            FileType::Dir => {
                self.t.delete(self.k.dir_stats(a.ino)).await?;
                // read first: a delete of a key never set would leave a tombstone per rmdir
                self.delete_quota(QuotaKind::Dir, a.ino).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    async fn entry(&mut self, parent: Ino, name: &[u8]) -> Result<Option<(FileType, Ino)>> {
        match self.t.get(&self.k.entry(parent, name)).await? {
            Some(b) => Ok(Some(decode_entry(&b)?)),
            None => Ok(None),
        }
    }

    async fn create_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()> {
        let key = self.k.entry(parent, name);
        if self.t.get(&key).await?.is_some() {
            return Err(Error::exists("entry exists"));
        }
        self.t.put(key, encode_entry(typ, ino)).await
    }

    async fn delete_entry(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        self.t.delete(self.k.entry(parent, name)).await
    }

    async fn move_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()> {
        self.t.delete(self.k.entry(parent, name)).await?;
        self.t
            .put(self.k.entry(new_parent, new_name), encode_entry(typ, ino))
            .await
    }

    async fn replace_entry(
        &mut self,
        parent: Ino,
        name: &[u8],
        typ: FileType,
        ino: Ino,
    ) -> Result<()> {
        self.t
            .put(self.k.entry(parent, name), encode_entry(typ, ino))
            .await
    }

    async fn dir_is_empty(&mut self, ino: Ino) -> Result<bool> {
        let prefix = self.k.entries(ino);
        Ok(self
            .t
            .scan(&prefix, &prefix_end(&prefix), 1)
            .await?
            .is_empty())
    }

    async fn list_entries(
        &mut self,
        dir: Ino,
        start: Bound<&[u8]>,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<Listed>> {
        let prefix = self.k.entries(dir);
        let from = match start {
            Bound::Included(name) => self.k.entry(dir, name),
            Bound::Excluded(name) => {
                let mut k = self.k.entry(dir, name);
                k.push(0);
                k
            }
            Bound::Unbounded => prefix.clone(),
        };
        let pairs = self.scan(&from, &prefix_end(&prefix), limit).await?;
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let (typ, ino) = decode_entry(&v)?;
            out.push(Listed {
                name: k[prefix.len()..].to_vec(),
                typ,
                ino,
                attr: None,
                id: None,
            });
        }
        if plus {
            let keys: Vec<Vec<u8>> = out.iter().map(|l| self.k.inode(l.ino)).collect();
            let attrs = self.t.batch_get(&keys).await?;
            for (l, a) in out.iter_mut().zip(attrs) {
                l.attr = a.map(|b| decode_attr(l.ino, &b)).transpose()?;
            }
        }
        Ok(out)
    }

    async fn link_parent(&mut self, ino: Ino, parent: Ino, delta: i64) -> Result<()> {
        self.sparse_add(self.k.parent(ino, parent), delta)
            .await
            .map(|_| ())
    }

    async fn chunk(&mut self, ino: Ino, indx: u32) -> Result<Vec<Slice>> {
        match self.t.get(&self.k.chunk(ino, indx)).await? {
            Some(b) => slice::decode_all(&b),
            None => Ok(Vec::new()),
        }
    }

    async fn append_chunk(
        &mut self,
        ino: Ino,
        indx: u32,
        records: &[Slice],
        _fresh: bool,
    ) -> Result<()> {
        let key = self.k.chunk(ino, indx);
        let mut buf = self.t.get(&key).await?.unwrap_or_default();
        buf.extend_from_slice(&slice::encode_all(records));
        self.t.put(key, buf).await
    }

    async fn set_chunk(&mut self, ino: Ino, indx: u32, records: &[Slice]) -> Result<()> {
        self.t
            .put(self.k.chunk(ino, indx), slice::encode_all(records))
            .await
    }

    async fn chunks(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<(u32, Vec<Slice>)>> {
        let pairs = self.chunk_pairs(ino, lo, hi).await?;
        pairs
            .into_iter()
            .map(|(k, v)| Ok((self.chunk_index(&k)?, slice::decode_all(&v)?)))
            .collect()
    }

    async fn chunk_indexes(&mut self, ino: Ino, lo: u32, hi: u32) -> Result<Vec<u32>> {
        let pairs = self.chunk_pairs(ino, lo, hi).await?;
        pairs.iter().map(|(k, _)| self.chunk_index(k)).collect()
    }

    async fn take_chunks(
        &mut self,
        ino: Ino,
        from: u32,
        limit: usize,
    ) -> Result<(Vec<(u32, Vec<Slice>)>, bool)> {
        let start = self.k.chunk(ino, from);
        let end = prefix_end(&self.k.chunks(ino));
        let limit = limit.max(1);
        let pairs = self.scan(&start, &end, limit).await?;
        let more = pairs.len() >= limit;
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            out.push((self.chunk_index(&k)?, slice::decode_all(&v)?));
            // deleted keys are gone from the next scan of this transaction
            self.t.delete(k).await?;
        }
        Ok((out, more))
    }

    async fn ref_new(&mut self, _id: u64, _size: u32) -> Result<()> {
        // the layout keeps references less one: a slice with one has no key
        Ok(())
    }

    async fn ref_more(&mut self, id: u64, size: u32, n: i64) -> Result<()> {
        let key = self.k.slice_ref(id, size);
        let v = decode_counter(self.t.get(&key).await?.as_deref())? + n;
        self.t.put(key, encode_counter(v)).await
    }

    async fn unref(&mut self, id: u64, size: u32) -> Result<bool> {
        let key = self.k.slice_ref(id, size);
        let v = decode_counter(self.t.get(&key).await?.as_deref())? - 1;
        if v > 0 {
            self.t.put(key, encode_counter(v)).await?;
        } else {
            self.t.delete(key).await?;
        }
        // below zero: that was the last reference
        Ok(v < 0)
    }

    async fn zero_refs(&mut self) -> Result<Vec<(u64, u32)>> {
        let mut out = Vec::new();
        for (k, v) in self.scan_all(&self.k.slice_refs()).await? {
            if decode_counter(Some(&v))? < 0 {
                if let Some(r) = self.k.parse_slice_ref(&k) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    async fn drop_zero_ref(&mut self, id: u64, size: u32) -> Result<()> {
        let key = self.k.slice_ref(id, size);
        if decode_counter(self.t.get(&key).await?.as_deref())? < 0 {
            self.t.delete(key).await?;
        }
        Ok(())
    }

    async fn put_sums(&mut self, id: u64, sums: &[u8]) -> Result<()> {
        self.t.put(self.k.sums(id), sums.to_vec()).await
    }

    async fn sums(&mut self, id: u64) -> Result<Option<Vec<u8>>> {
        self.t.get(&self.k.sums(id)).await
    }

    async fn delete_sums(&mut self, id: u64) -> Result<()> {
        self.t.delete(self.k.sums(id)).await
    }

    async fn create_symlink(&mut self, ino: Ino, target: &[u8]) -> Result<()> {
        self.t.put(self.k.symlink(ino), target.to_vec()).await
    }

    async fn symlink(&mut self, ino: Ino) -> Result<Option<Vec<u8>>> {
        self.t.get(&self.k.symlink(ino)).await
    }

    async fn xattr(&mut self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>> {
        self.t.get(&self.k.xattr(ino, name)).await
    }

    async fn set_xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) -> Result<()> {
        self.t.put(self.k.xattr(ino, name), value.to_vec()).await
    }

    async fn delete_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<bool> {
        let key = self.k.xattr(ino, name);
        if self.t.get(&key).await?.is_none() {
            return Ok(false);
        }
        self.t.delete(key).await?;
        Ok(true)
    }

    async fn xattr_names(&mut self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let prefix = self.k.xattrs(ino);
        Ok(self
            .scan_all(&prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k[prefix.len()..].to_vec())
            .collect())
    }

    async fn counter(&mut self, name: &str) -> Result<i64> {
        decode_counter(self.t.get(&self.k.counter(name)).await?.as_deref())
    }

    async fn add_counter(&mut self, name: &str, delta: i64) -> Result<i64> {
        let key = self.k.counter(name);
        let v = decode_counter(self.t.get(&key).await?.as_deref())? + delta;
        if delta != 0 {
            self.t.put(key, encode_counter(v)).await?;
        }
        Ok(v)
    }

    async fn setting(&mut self) -> Result<Option<String>> {
        Ok(self
            .t
            .get(&self.k.setting())
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    async fn put_setting(&mut self, json: &str) -> Result<()> {
        self.t.put(self.k.setting(), json.as_bytes().to_vec()).await
    }

    async fn create_dir_stat(&mut self, ino: Ino) -> Result<()> {
        self.put_dir_stat(ino, &DirStat::default()).await
    }

    async fn dir_stat(&mut self, ino: Ino) -> Result<Option<DirStat>> {
        match self.t.get(&self.k.dir_stats(ino)).await? {
            Some(b) => Ok(Some(decode_dir_stat(&b)?)),
            None => Ok(None),
        }
    }

    async fn put_dir_stat(&mut self, ino: Ino, st: &DirStat) -> Result<()> {
        self.t.put(self.k.dir_stats(ino), encode_dir_stat(st)).await
    }

    async fn add_dir_stat(&mut self, ino: Ino, d: &DirStat) -> Result<bool> {
        let Some(mut st) = self.dir_stat(ino).await? else {
            return Ok(false);
        };
        st.add(*d);
        self.put_dir_stat(ino, &st).await?;
        Ok(true)
    }

    async fn parents(&mut self, ino: Ino) -> Result<Vec<(Ino, u32)>> {
        let prefix = self.k.parents(ino);
        let mut out = Vec::new();
        for (k, v) in self.scan_all(&prefix).await? {
            let parent = k.get(prefix.len()..).and_then(le64).ok_or_else(|| {
                Error::corrupt(format!("link parent key of inode {ino} is malformed"))
            })?;
            let n = decode_counter(Some(&v))?;
            if n > 0 {
                out.push((parent, n as u32));
            }
        }
        // a file with one link keeps its directory in its attributes instead
        if out.is_empty() {
            if let Some(a) = self.node(ino).await? {
                if a.parent != 0 && a.nlink > 0 {
                    out.push((a.parent, 1));
                }
            }
        }
        Ok(out)
    }

    async fn quota(&mut self, kind: QuotaKind, key: u64) -> Result<Option<Quota>> {
        match self.t.get(&self.quota_key(kind, key)).await? {
            Some(b) => Ok(Some(decode_quota(&b)?)),
            None => Ok(None),
        }
    }

    async fn put_quota(&mut self, kind: QuotaKind, key: u64, q: &Quota) -> Result<()> {
        self.t.put(self.quota_key(kind, key), encode_quota(q)).await
    }

    async fn delete_quota(&mut self, kind: QuotaKind, key: u64) -> Result<bool> {
        let k = self.quota_key(kind, key);
        if self.t.get(&k).await?.is_none() {
            return Ok(false);
        }
        self.t.delete(k).await?;
        Ok(true)
    }

    async fn quotas(&mut self, kind: QuotaKind) -> Result<Vec<(u64, Quota)>> {
        let tag: &[u8] = match kind {
            QuotaKind::Dir => b"QD",
            QuotaKind::User => b"QU",
            QuotaKind::Group => b"QG",
        };
        let prefix = self.k.kind(tag);
        let mut out = Vec::new();
        for (k, v) in self.scan_all(&prefix).await? {
            let rest = &k[prefix.len()..];
            let id = if kind == QuotaKind::Dir {
                le64(rest)
            } else {
                be64(rest)
            };
            // keys of other lengths are not quotas (none are expected under these tags)
            if let Some(id) = id {
                out.push((id, decode_quota(&v)?));
            }
        }
        Ok(out)
    }

    async fn create_session(&mut self, sid: u64, expire: i64, info: &[u8]) -> Result<()> {
        self.t.put(self.k.session(sid), encode_i64(expire)).await?;
        self.t.put(self.k.session_info(sid), info.to_vec()).await
    }

    async fn refresh_session(&mut self, sid: u64, expire: i64) -> Result<()> {
        self.t.put(self.k.session(sid), encode_i64(expire)).await
    }

    async fn delete_session(&mut self, sid: u64) -> Result<()> {
        self.delete_all(&self.k.sustained_of(sid)).await?;
        for (k, v) in self.scan_all(&self.k.all_locks(false)).await? {
            let gone = |l: &Flock| l.sid == sid;
            self.drop_locks(k, Some(v), decode_flocks, encode_flocks, gone)
                .await?;
        }
        for (k, v) in self.scan_all(&self.k.all_locks(true)).await? {
            let gone = |l: &Plock| l.sid == sid;
            self.drop_locks(k, Some(v), decode_plocks, encode_plocks, gone)
                .await?;
        }
        self.t.delete(self.k.session(sid)).await?;
        self.t.delete(self.k.session_info(sid)).await
    }

    async fn sessions(&mut self) -> Result<Vec<SessionRow>> {
        let mut out = Vec::new();
        for (k, v) in self.scan_all(&self.k.sessions()).await? {
            let Some(sid) = self.k.parse_session(&k) else {
                continue;
            };
            let info = self.t.get(&self.k.session_info(sid)).await?;
            out.push(SessionRow {
                sid,
                expire: decode_i64(Some(&v))?,
                info,
            });
        }
        Ok(out)
    }

    async fn sustain(&mut self, sid: u64, ino: Ino) -> Result<()> {
        self.t.put(self.k.sustained(sid, ino), vec![1]).await
    }

    async fn unsustain(&mut self, sid: u64, ino: Ino) -> Result<bool> {
        let key = self.k.sustained(sid, ino);
        if self.t.get(&key).await?.is_none() {
            return Ok(false);
        }
        self.t.delete(key).await?;
        Ok(true)
    }

    async fn sustained(&mut self, sid: Option<u64>) -> Result<Vec<(u64, Ino)>> {
        let prefix = match sid {
            Some(sid) => self.k.sustained_of(sid),
            None => self.k.all_sustained(),
        };
        Ok(self
            .scan_all(&prefix)
            .await?
            .iter()
            .filter_map(|(k, _)| self.k.parse_sustained(k))
            .collect())
    }

    async fn queue_delfile(&mut self, ino: Ino, length: u64, now: i64) -> Result<()> {
        self.t
            .put(self.k.delfile(ino, length), encode_i64(now))
            .await
    }

    async fn unqueue_delfile(&mut self, ino: Ino) -> Result<()> {
        self.delete_all(&self.k.delfiles(Some(ino))).await
    }

    async fn delfiles(&mut self) -> Result<Vec<DelFile>> {
        let mut out = Vec::new();
        for (k, v) in self.scan_all(&self.k.delfiles(None)).await? {
            if let Some((ino, length)) = self.k.parse_delfile(&k) {
                out.push(DelFile {
                    ino,
                    length,
                    queued: decode_i64(Some(&v))?,
                });
            }
        }
        Ok(out)
    }

    async fn put_delayed(&mut self, now: i64, first: u64, slices: &[(u64, u32)]) -> Result<()> {
        self.t
            .put(self.k.delslices(now, first), encode_delayed(slices))
            .await
    }

    async fn delayed(&mut self) -> Result<Vec<Delayed>> {
        let mut out = Vec::new();
        for (k, v) in self.scan_all(&self.k.all_delslices()).await? {
            let when = self.k.parse_delslices(&k).map(|(t, _)| t).unwrap_or(0);
            out.push(Delayed {
                slices: decode_delayed(&v)?,
                key: k,
                when,
            });
        }
        Ok(out)
    }

    async fn take_delayed(&mut self, key: &[u8]) -> Result<Option<Vec<(u64, u32)>>> {
        let Some(v) = self.t.get(key).await? else {
            return Ok(None);
        };
        self.t.delete(key.to_vec()).await?;
        Ok(Some(decode_delayed(&v)?))
    }

    async fn flocks(&mut self, ino: Ino) -> Result<Vec<Flock>> {
        match self.t.get(&self.k.flock(ino)).await? {
            Some(v) => decode_flocks(&v),
            None => Ok(Vec::new()),
        }
    }

    async fn put_flock(&mut self, ino: Ino, l: Flock) -> Result<()> {
        let mut ls = self.flocks(ino).await?;
        match ls.iter_mut().find(|o| o.sid == l.sid && o.owner == l.owner) {
            Some(o) => *o = l,
            None => ls.push(l),
        }
        self.t.put(self.k.flock(ino), encode_flocks(&ls)).await
    }

    async fn delete_flock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()> {
        let key = self.k.flock(ino);
        let v = self.t.get(&key).await?;
        let gone = |l: &Flock| l.sid == sid && l.owner == owner;
        self.drop_locks(key, v, decode_flocks, encode_flocks, gone)
            .await
    }

    async fn plocks(&mut self, ino: Ino) -> Result<Vec<Plock>> {
        match self.t.get(&self.k.plock(ino)).await? {
            Some(v) => decode_plocks(&v),
            None => Ok(Vec::new()),
        }
    }

    async fn put_plock(&mut self, ino: Ino, l: &Plock) -> Result<()> {
        let mut ls = self.plocks(ino).await?;
        match ls.iter_mut().find(|o| o.sid == l.sid && o.owner == l.owner) {
            Some(o) => o.records = l.records.clone(),
            None => ls.push(l.clone()),
        }
        self.t.put(self.k.plock(ino), encode_plocks(&ls)).await
    }

    async fn delete_plock(&mut self, ino: Ino, sid: u64, owner: u64) -> Result<()> {
        let key = self.k.plock(ino);
        let v = self.t.get(&key).await?;
        let gone = |l: &Plock| l.sid == sid && l.owner == owner;
        self.drop_locks(key, v, decode_plocks, encode_plocks, gone)
            .await
    }

    async fn guard_entry(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        self.t.lock(self.k.dir_guard_of(dir, name)).await
    }

    async fn guard_removal(&mut self, dir: Ino) -> Result<()> {
        for shard in 0..Keys::DIR_GUARDS {
            self.t.lock(self.k.dir_guard(dir, shard)).await?;
        }
        Ok(())
    }

    async fn scan_nodes(&mut self, cursor: &[u8], limit: usize) -> Result<Page<Attr>> {
        self.scan_inode_keys(cursor, limit, b'I', |k, key, v| {
            match k.parse_inode_key(key) {
                Some((ino, _, [])) => Ok(Some(decode_attr(ino, v)?)),
                _ => Ok(None),
            }
        })
        .await
    }

    async fn scan_entries(
        &mut self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<Page<(Ino, Vec<u8>, FileType, Ino)>> {
        self.scan_inode_keys(cursor, limit, b'D', |k, key, v| {
            let Some((parent, _, name)) = k.parse_inode_key(key) else {
                return Ok(None);
            };
            let (typ, ino) = decode_entry(v)?;
            Ok(Some((parent, name.to_vec(), typ, ino)))
        })
        .await
    }

    async fn scan_chunks(&mut self, cursor: &[u8], limit: usize) -> Result<Page<ChunkSlices>> {
        self.scan_inode_keys(cursor, limit, b'C', |k, key, v| match k.parse_chunk(key) {
            Some((ino, indx)) => Ok(Some(ChunkSlices {
                ino,
                indx,
                slices: slice::decode_all(v)?,
            })),
            None => Ok(None),
        })
        .await
    }

    async fn commit(self) -> Result<()> {
        if self.read_only {
            self.t.rollback().await;
            return Ok(());
        }
        self.t.commit().await
    }

    async fn rollback(self) {
        self.t.rollback().await
    }
}
