//! Directory statistics and directory quotas, as JuiceFS keeps them.
//!
//! Statistics count the entries directly in one directory (`jfs_dir_stats`, `U` keys); a
//! directory quota counts everything below its directory (`jfs_dir_quota`, `QD` keys). Every
//! operation records what it changes in its transaction ([`W::used`], [`W::tree`]); when it
//! commits, the changes join this client's pending tallies ([`Core::usage_committed`]), which a
//! background job adds to the stored records every second (with the volume counters) and at
//! unmount. Updating
//! the records inside each operation would make every writer under one directory contend on
//! one row.
//!
//! Quota checks read this client's view: the stored usage as last read (reloaded at every
//! flush) plus what this client has not stored yet. A client accepts growth of a quota on its
//! own only up to a small budget ([`budget`]); past it, or past the limit as it sees it, the
//! change is checked against the stored record and written through in its own transaction,
//! with this client's pending usage of that quota. So a limit is passed by at most one budget
//! per client, however fast clients write and however stale their views are.

use super::retry::txn;
use super::rules::lock_poisoned;
use super::{Core, W};
use crate::engine::{Engine, Mode, Txn};
use crate::error::{Error, ErrorKind, Result};
use crate::types::*;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;

/// Longer than a flush period of every client: after it, what any client had pending before
/// is stored.
pub(crate) const SETTLE: std::time::Duration = std::time::Duration::from_millis(1500);
/// Statistics records changed per flush transaction.
const FLUSH_BATCH: usize = 500;
/// Directory parents remembered for walks up to quota directories; past it, the memory
/// starts over.
const PARENTS: usize = 1 << 20;
/// Deepest directory chain walked.
const MAX_DEPTH: usize = 100_000;
/// Entries read per listing step when statistics are computed from scratch.
const LIST_BATCH: usize = 1000;

/// A quota as this client sees it: the record as last read, and the usage committed here but
/// not stored yet.
#[derive(Debug, Clone, Copy, Default)]
struct View {
    stored: Quota,
    pending: (i64, i64),
}

/// How much growth of one quota a client may accept without storing it: 1/64 of the limit, at
/// most 64 MiB and 1024 inodes (none for limits under 64 inodes or bytes). Past it (or past
/// the limit as this client sees it), the change is checked against the stored record and
/// written through with everything this client had pending for the quota. Every client
/// holds at most this much unstored, so usage passes a limit by at most this per client.
fn budget(q: &Quota) -> (i64, i64) {
    (
        (q.max_space / 64).min(64 << 20),
        (q.max_inodes / 64).min(1024),
    )
}

/// What one client keeps of statistics and quotas.
#[derive(Default)]
pub(crate) struct Usage {
    /// Statistics changes committed here, not stored yet.
    dirs: Mutex<HashMap<Ino, DirStat>>,
    /// Directory quotas by directory.
    quotas: Mutex<HashMap<Ino, View>>,
    /// User and group usage records (with or without limits), when the volume keeps them.
    owners: Mutex<HashMap<QKey, View>>,
    /// Changes below directories whose chain up to the root was not known at commit:
    /// (directory, space, inodes), placed by the next flush.
    unplaced: Mutex<Vec<(Ino, i64, i64)>>,
    /// Parent of each directory seen.
    parents: Mutex<HashMap<Ino, Ino>>,
    /// One flush at a time.
    flushing: tokio::sync::Mutex<()>,
}

/// A quota by kind and key (directory inode, uid or gid).
type QKey = (QuotaKind, u64);

/// A quota this transaction checked and wrote through: the pending usage it stored with its
/// own change, and the usage it left in the record.
pub(crate) struct Through {
    key: QKey,
    consumed: (i64, i64),
    used: (i64, i64),
}

impl<T> W<T> {
    /// Record that the entries directly in `dir` changed by `d` (and so did everything below
    /// each directory above it).
    pub(crate) fn used(&mut self, dir: Ino, d: DirStat) {
        if !d.is_zero() {
            self.dirs.push((dir, d));
            self.tree(dir, d.space, d.inodes);
        }
    }

    /// Record that what lies below `dir` changed by `space` and `inodes` (a subtree moved in
    /// or out).
    pub(crate) fn tree(&mut self, dir: Ino, space: i64, inodes: i64) {
        if space != 0 || inodes != 0 {
            self.trees.push((dir, space, inodes));
        }
    }

    /// Record that user `uid` and group `gid` own `space` and `inodes` more (or less).
    pub(crate) fn owned(&mut self, uid: u32, gid: u32, space: i64, inodes: i64) {
        if space != 0 || inodes != 0 {
            self.owners.push((uid, gid, space, inodes));
        }
    }

    fn through_has(&self, key: QKey) -> bool {
        self.through.iter().any(|t| t.key == key)
    }
}

/// What user and group usage counts for an inode of type `typ` and length `length`, as
/// JuiceFS's scan counts it: a file its space, a directory 4 KiB, one inode each; other types
/// nothing.
pub(crate) fn owner_usage(typ: FileType, length: u64) -> (i64, i64) {
    match typ {
        FileType::File => (align4k(length), 1),
        FileType::Dir => (align4k(0), 1),
        _ => (0, 0),
    }
}

impl<E: Engine> Core<E> {
    fn dir_stats_on(&self) -> bool {
        self.setting(|f| f.dir_stats)
    }

    /// Whether any directory quota is known.
    pub(crate) fn has_dir_quotas(&self) -> bool {
        self.usage
            .quotas
            .lock()
            .map(|q| !q.is_empty())
            .unwrap_or(false)
    }

    /// Remember that directory `ino` is in `parent` (None: forget it).
    pub(crate) fn note_dir_parent(&self, ino: Ino, parent: Option<Ino>) {
        if let Ok(mut p) = self.usage.parents.lock() {
            match parent {
                Some(parent) => {
                    if p.len() >= PARENTS {
                        p.clear();
                    }
                    p.insert(ino, parent);
                }
                None => {
                    p.remove(&ino);
                }
            }
        }
    }

    fn known_parent(&self, ino: Ino) -> Option<Ino> {
        self.usage.parents.lock().ok()?.get(&ino).copied()
    }

    /// The parent of directory `ino`, read in `tx` when not known.
    async fn dir_parent(&self, tx: &mut W<E::Txn<'_>>, ino: Ino) -> Result<Ino> {
        if let Some(p) = self.known_parent(ino) {
            return Ok(p);
        }
        let p = tx.node(ino).await?.map(|a| a.parent).unwrap_or(0);
        if p != 0 {
            self.note_dir_parent(ino, Some(p));
        }
        Ok(p)
    }

    /// The quota directories at `dir` and above it, read in `tx` where parents are not known.
    pub(crate) async fn quota_chain(&self, tx: &mut W<E::Txn<'_>>, dir: Ino) -> Result<Vec<Ino>> {
        let mut out = Vec::new();
        if !self.has_dir_quotas() {
            return Ok(out);
        }
        let mut ino = dir;
        for _ in 0..MAX_DEPTH {
            if self.view(ino).is_some() {
                out.push(ino);
            }
            if ino == ROOT_INODE || ino == 0 {
                break;
            }
            ino = self.dir_parent(tx, ino).await?;
        }
        Ok(out)
    }

    fn view(&self, dir: Ino) -> Option<View> {
        self.usage.quotas.lock().ok()?.get(&dir).copied()
    }

    /// Refuse growth by `space` and `inodes` below `dir` that a directory quota at or above it
    /// (other than those in `except`) does not allow, and record the change.
    pub(crate) async fn charge(&self, tx: &mut W<E::Txn<'_>>, dir: Ino, d: DirStat) -> Result<()> {
        self.check_quotas(tx, dir, d.space, d.inodes, &[]).await?;
        tx.used(dir, d);
        Ok(())
    }

    /// Refuse growth by `space` and `inodes` below `dir` that a quota at or above it, other than
    /// those in `except`, does not allow. Near a limit the check is made against the stored
    /// record, which this transaction then updates (see the module notes).
    pub(crate) async fn check_quotas(
        &self,
        tx: &mut W<E::Txn<'_>>,
        dir: Ino,
        space: i64,
        inodes: i64,
        except: &[Ino],
    ) -> Result<()> {
        if space <= 0 && inodes <= 0 {
            return Ok(());
        }
        for q in self.quota_chain(tx, dir).await? {
            if except.contains(&q) {
                continue;
            }
            if let Some(v) = self.view(q) {
                self.check_one(tx, (QuotaKind::Dir, q), v, space, inodes)
                    .await?;
            }
        }
        Ok(())
    }

    /// Refuse growth by `space` and `inodes` that quota `key` (seen as `v`) does not allow:
    /// locally within the budget, else against the stored record, writing it through.
    async fn check_one(
        &self,
        tx: &mut W<E::Txn<'_>>,
        key: QKey,
        v: View,
        space: i64,
        inodes: i64,
    ) -> Result<()> {
        if tx.through_has(key) {
            return Ok(());
        }
        let (s, (bs, bi)) = (v.stored, budget(&v.stored));
        let space_ok = space <= 0
            || s.max_space <= 0
            || (v.pending.0 + space <= bs && s.used_space + v.pending.0 + space <= s.max_space);
        let inodes_ok = inodes <= 0
            || s.max_inodes <= 0
            || (v.pending.1 + inodes <= bi && s.used_inodes + v.pending.1 + inodes <= s.max_inodes);
        if space_ok && inodes_ok {
            return Ok(());
        }
        let Some(fresh) = tx.quota(key.0, key.1).await? else {
            return Ok(());
        };
        if fresh.exceeded_by(v.pending, space, inodes) {
            let what = match key.0 {
                QuotaKind::Dir => "directory inode",
                QuotaKind::User => "user",
                QuotaKind::Group => "group",
            };
            return Err(Error::new(
                ErrorKind::QuotaExceeded,
                format!("quota of {what} {} reached", key.1),
            ));
        }
        let used = (
            fresh.used_space + v.pending.0 + space,
            fresh.used_inodes + v.pending.1 + inodes,
        );
        let stored = Quota {
            used_space: used.0,
            used_inodes: used.1,
            ..fresh
        };
        tx.put_quota(key.0, key.1, &stored).await?;
        tx.through.push(Through {
            key,
            consumed: v.pending,
            used,
        });
        Ok(())
    }

    pub(crate) fn user_group_on(&self) -> bool {
        self.setting(|f| f.user_group_quota)
    }

    /// Refuse growth by `space` and `inodes` owned by `uid` / `gid` that their quotas do not
    /// allow, and record it, when the volume keeps user and group usage.
    pub(crate) async fn charge_owner(
        &self,
        tx: &mut W<E::Txn<'_>>,
        uid: u32,
        gid: u32,
        space: i64,
        inodes: i64,
    ) -> Result<()> {
        if !self.user_group_on() {
            return Ok(());
        }
        if space > 0 || inodes > 0 {
            self.check_owner(tx, (QuotaKind::User, u64::from(uid)), space, inodes)
                .await?;
            self.check_owner(tx, (QuotaKind::Group, u64::from(gid)), space, inodes)
                .await?;
        }
        tx.owned(uid, gid, space, inodes);
        Ok(())
    }

    /// Refuse growth of user or group `key` that its quota (if it has a record) does not allow.
    async fn check_owner(
        &self,
        tx: &mut W<E::Txn<'_>>,
        key: QKey,
        space: i64,
        inodes: i64,
    ) -> Result<()> {
        let v = self
            .usage
            .owners
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied());
        match v {
            Some(v) => self.check_one(tx, key, v, space, inodes).await,
            None => Ok(()),
        }
    }

    /// Take the statistics and quota changes of a committed transaction into the pending
    /// tallies.
    pub(crate) fn usage_committed(
        &self,
        dirs: Vec<(Ino, DirStat)>,
        trees: Vec<(Ino, i64, i64)>,
        owners: Vec<(u32, u32, i64, i64)>,
        through: Vec<Through>,
    ) {
        if !dirs.is_empty() && self.dir_stats_on() {
            if let Ok(mut m) = self.usage.dirs.lock() {
                for (ino, d) in dirs {
                    m.entry(ino).or_default().add(d);
                }
            }
        }
        let settle = |v: &mut View, t: &Through| {
            v.pending.0 -= t.consumed.0;
            v.pending.1 -= t.consumed.1;
            v.stored.used_space = t.used.0;
            v.stored.used_inodes = t.used.1;
        };
        if !owners.is_empty() || through.iter().any(|t| t.key.0 != QuotaKind::Dir) {
            if let Ok(mut m) = self.usage.owners.lock() {
                for t in through.iter().filter(|t| t.key.0 != QuotaKind::Dir) {
                    if let Some(v) = m.get_mut(&t.key) {
                        settle(v, t);
                    }
                }
                if self.user_group_on() {
                    for (uid, gid, space, inodes) in owners {
                        for key in [
                            (QuotaKind::User, u64::from(uid)),
                            (QuotaKind::Group, u64::from(gid)),
                        ] {
                            if through.iter().any(|t| t.key == key) {
                                continue;
                            }
                            // a record without limits until the flush finds or makes it
                            let v = m.entry(key).or_insert_with(|| View {
                                stored: Quota {
                                    max_space: -1,
                                    max_inodes: -1,
                                    ..Quota::default()
                                },
                                pending: (0, 0),
                            });
                            v.pending.0 += space;
                            v.pending.1 += inodes;
                        }
                    }
                }
            }
        }
        if let Ok(mut qs) = self.usage.quotas.lock() {
            for t in through.iter().filter(|t| t.key.0 == QuotaKind::Dir) {
                if let Some(v) = qs.get_mut(&t.key.1) {
                    settle(v, t);
                }
            }
            if qs.is_empty() {
                return;
            }
        }
        let mut unplaced = Vec::new();
        for (dir, space, inodes) in trees {
            match self.known_chain(dir) {
                Some(chain) => self.add_pending(&chain, space, inodes, &through),
                None => unplaced.push((dir, space, inodes)),
            }
        }
        if !unplaced.is_empty() {
            if let Ok(mut u) = self.usage.unplaced.lock() {
                u.extend(unplaced);
            }
        }
    }

    /// The quota directories at and above `dir` from remembered parents only.
    fn known_chain(&self, dir: Ino) -> Option<Vec<Ino>> {
        let qs = self.usage.quotas.lock().ok()?;
        let parents = self.usage.parents.lock().ok()?;
        let mut out = Vec::new();
        let mut ino = dir;
        for _ in 0..MAX_DEPTH {
            if qs.contains_key(&ino) {
                out.push(ino);
            }
            if ino == ROOT_INODE || ino == 0 {
                return Some(out);
            }
            ino = *parents.get(&ino)?;
        }
        None
    }

    fn add_pending(&self, chain: &[Ino], space: i64, inodes: i64, through: &[Through]) {
        if let Ok(mut qs) = self.usage.quotas.lock() {
            for q in chain {
                if through.iter().any(|t| t.key == (QuotaKind::Dir, *q)) {
                    continue;
                }
                if let Some(v) = qs.get_mut(q) {
                    v.pending.0 += space;
                    v.pending.1 += inodes;
                }
            }
        }
    }

    /// Wait for a flush under way and keep others out while the guard lives.
    pub(crate) async fn usage_flush_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.usage.flushing.lock().await
    }

    /// Store the pending statistics and quota usage, and read the quotas again.
    pub(crate) async fn flush_usage(&self) -> Result<()> {
        let _one = self.usage.flushing.lock().await;
        self.flush_dir_stats().await?;
        self.place_unplaced().await?;
        self.flush_quotas().await?;
        self.load_quotas().await
    }

    async fn flush_dir_stats(&self) -> Result<()> {
        let mut dirs: Vec<(Ino, DirStat)> = match self.usage.dirs.lock() {
            Ok(mut m) => std::mem::take(&mut *m).into_iter().collect(),
            Err(_) => return Err(lock_poisoned()),
        };
        dirs.retain(|(_, d)| !d.is_zero());
        dirs.sort_by_key(|(ino, _)| *ino);
        for (i, batch) in dirs.chunks(FLUSH_BATCH).enumerate() {
            let res = txn!(self, "flush directory statistics", Mode::Write, |tx| {
                let mut missing = Vec::new();
                for (ino, d) in batch {
                    if !tx.add_dir_stat(*ino, d).await? {
                        missing.push(*ino);
                    }
                }
                missing
            });
            match res {
                Ok(missing) => {
                    for ino in missing {
                        // computed from the entries, which already show the changes
                        match self.sync_dir_stat(ino).await {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => {
                    // kept for the next flush
                    if let Ok(mut m) = self.usage.dirs.lock() {
                        for (ino, d) in dirs[i * FLUSH_BATCH..].iter() {
                            m.entry(*ino).or_default().add(*d);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Place the changes whose directory chains were not known, reading the parents.
    async fn place_unplaced(&self) -> Result<()> {
        let unplaced = match self.usage.unplaced.lock() {
            Ok(mut u) => std::mem::take(&mut *u),
            Err(_) => return Err(lock_poisoned()),
        };
        for (dir, space, inodes) in unplaced {
            let chain = txn!(self, "quota directories", Mode::Latest, |tx| {
                self.quota_chain(tx, dir).await?
            })?;
            self.add_pending(&chain, space, inodes, &[]);
        }
        Ok(())
    }

    async fn flush_quotas(&self) -> Result<()> {
        let mut pending: Vec<(QKey, (i64, i64))> = Vec::new();
        let pick = |v: &View| v.pending != (0, 0);
        match self.usage.quotas.lock() {
            Ok(qs) => pending.extend(
                qs.iter()
                    .filter(|(_, v)| pick(v))
                    .map(|(k, v)| ((QuotaKind::Dir, *k), v.pending)),
            ),
            Err(_) => return Err(lock_poisoned()),
        }
        match self.usage.owners.lock() {
            Ok(m) => pending.extend(
                m.iter()
                    .filter(|(_, v)| pick(v))
                    .map(|(k, v)| (*k, v.pending)),
            ),
            Err(_) => return Err(lock_poisoned()),
        }
        if pending.is_empty() {
            return Ok(());
        }
        txn!(self, "flush quotas", Mode::Write, |tx| {
            for ((kind, key), (space, inodes)) in &pending {
                let q = match tx.quota(*kind, *key).await? {
                    Some(mut q) => {
                        q.used_space += space;
                        q.used_inodes += inodes;
                        q
                    }
                    // a removed directory quota stays removed; users and groups get a record
                    // without limits, as JuiceFS makes them
                    None if *kind == QuotaKind::Dir => continue,
                    None => Quota {
                        max_space: -1,
                        max_inodes: -1,
                        used_space: *space,
                        used_inodes: *inodes,
                    },
                };
                tx.put_quota(*kind, *key, &q).await?;
            }
        })?;
        let (qs, owners) = (self.usage.quotas.lock(), self.usage.owners.lock());
        if let (Ok(mut qs), Ok(mut owners)) = (qs, owners) {
            for ((kind, key), (space, inodes)) in pending {
                let v = match kind {
                    QuotaKind::Dir => qs.get_mut(&key),
                    _ => owners.get_mut(&(kind, key)),
                };
                if let Some(v) = v {
                    v.pending.0 -= space;
                    v.pending.1 -= inodes;
                }
            }
        }
        Ok(())
    }

    /// Read the quotas again (pending usage stays).
    pub(crate) async fn load_quotas(&self) -> Result<()> {
        let (dirs_on, owners_on) = (self.dir_stats_on(), self.user_group_on());
        if !dirs_on && !owners_on {
            return Ok(());
        }
        let (dirs, users, groups) = txn!(self, "load quotas", Mode::Read, |tx| {
            let dirs = if dirs_on {
                tx.quotas(QuotaKind::Dir).await?
            } else {
                Vec::new()
            };
            let (users, groups) = if owners_on {
                (
                    tx.quotas(QuotaKind::User).await?,
                    tx.quotas(QuotaKind::Group).await?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            (dirs, users, groups)
        })?;
        {
            let mut qs = self.usage.quotas.lock().map_err(|_| lock_poisoned())?;
            let old = std::mem::take(&mut *qs);
            for (dir, q) in dirs {
                let pending = old.get(&dir).map(|v| v.pending).unwrap_or((0, 0));
                qs.insert(dir, View { stored: q, pending });
            }
        }
        let mut m = self.usage.owners.lock().map_err(|_| lock_poisoned())?;
        let mut old = std::mem::take(&mut *m);
        let stored = users
            .into_iter()
            .map(|(k, q)| ((QuotaKind::User, k), q))
            .chain(groups.into_iter().map(|(k, q)| ((QuotaKind::Group, k), q)));
        for (key, q) in stored {
            let pending = old.remove(&key).map(|v| v.pending).unwrap_or((0, 0));
            m.insert(key, View { stored: q, pending });
        }
        // not stored yet: kept for the flush to make
        m.extend(old.into_iter().filter(|(_, v)| v.pending != (0, 0)));
        Ok(())
    }

    /// Give the root its statistics record when it has none (volumes `juicefs format` made),
    /// before this client changes anything: a record counted later, while changes are pending,
    /// could count them twice.
    pub(crate) async fn root_stat_record(&self) -> Result<()> {
        if !self.dir_stats_on() {
            return Ok(());
        }
        let stored = txn!(self, "directory statistics", Mode::Latest, |tx| {
            tx.dir_stat(ROOT_INODE).await?
        })?;
        if stored.is_none() {
            self.sync_dir_stat(ROOT_INODE).await?;
        }
        Ok(())
    }

    /// Compute the statistics of directory `ino` from its entries and store them. This
    /// client's pending changes of it are committed, so the count has them: they are dropped
    /// first (one committed meanwhile would be counted twice; a rare, small drift that
    /// `fsck --dir-stats --repair` mends).
    pub(crate) async fn sync_dir_stat(&self, ino: Ino) -> Result<DirStat> {
        if let Ok(mut m) = self.usage.dirs.lock() {
            m.remove(&ino);
        }
        let st = self.count_entries(ino).await?;
        if self.read_only.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(st);
        }
        txn!(self, "store directory statistics", Mode::Write, |tx| {
            tx.must_dir(ino).await?;
            tx.put_dir_stat(ino, &st).await?;
        })?;
        Ok(st)
    }

    /// The statistics of directory `ino` from its entries.
    async fn count_entries(&self, ino: Ino) -> Result<DirStat> {
        txn!(self, "count entries", Mode::Read, |tx| {
            tx.must_dir(ino).await?;
            let mut st = DirStat::default();
            let mut from: Option<Vec<u8>> = None;
            loop {
                let start = match &from {
                    Some(n) => Bound::Excluded(n.as_slice()),
                    None => Bound::Unbounded,
                };
                let batch = tx.list_entries(ino, start, LIST_BATCH, true).await?;
                for e in &batch {
                    let length = e.attr.as_ref().map(|a| a.length).unwrap_or(0);
                    st.add(DirStat::of_entry(e.typ, length));
                }
                if batch.len() < LIST_BATCH {
                    break;
                }
                from = batch.last().map(|e| e.name.clone());
            }
            st
        })
    }

    /// The statistics of directory `ino`: the stored record with this client's pending
    /// changes, computed from the entries (and stored) when there is no record.
    pub(crate) async fn dir_stat(&self, ino: Ino) -> Result<DirStat> {
        let stored = txn!(self, "directory statistics", Mode::Latest, |tx| {
            tx.dir_stat(ino).await?
        })?;
        let mut st = match stored {
            Some(st) if st.space >= 0 && st.inodes >= 0 => st,
            _ => return self.sync_dir_stat(ino).await,
        };
        if let Some(p) = self
            .usage
            .dirs
            .lock()
            .ok()
            .and_then(|m| m.get(&ino).copied())
        {
            st.add(p);
        }
        Ok(st)
    }

    /// What the tree at `ino` holds, with its largest subdirectories down to `depth` levels
    /// (at most `top` per directory). `strict` counts every inode instead of reading the
    /// statistics.
    pub(crate) async fn summary(
        &self,
        ino: Ino,
        depth: u32,
        top: usize,
        strict: bool,
    ) -> Result<TreeSummary> {
        let a = self.getattr(ino).await?;
        if a.typ != FileType::Dir {
            let mut s = Summary {
                size: align4k(a.length) as u64,
                files: 1,
                ..Summary::default()
            };
            if a.typ == FileType::File {
                s.length = a.length;
            }
            return Ok(TreeSummary {
                ino,
                summary: s,
                ..TreeSummary::default()
            });
        }
        let strict = strict || !self.dir_stats_on();
        let mut seen = HashSet::new();
        Box::pin(self.tree_summary(ino, Vec::new(), depth, top, strict, &mut seen)).await
    }

    async fn tree_summary(
        &self,
        ino: Ino,
        name: Vec<u8>,
        depth: u32,
        top: usize,
        strict: bool,
        seen: &mut HashSet<Ino>,
    ) -> Result<TreeSummary> {
        let mut out = TreeSummary {
            name,
            ino,
            summary: Summary {
                size: align4k(0) as u64,
                dirs: 1,
                ..Summary::default()
            },
            children: Vec::new(),
        };
        if !seen.insert(ino) {
            return Err(Error::corrupt(format!(
                "directory {ino} is in its own tree"
            )));
        }
        let subdirs = if strict {
            self.strict_entries(ino, &mut out.summary).await?
        } else {
            let st = self.dir_stat(ino).await?;
            let subdirs = self.subdirs(ino).await?;
            // each subdirectory counts itself below
            let n = subdirs.len() as i64;
            out.summary.length += st.length.max(0) as u64;
            out.summary.size += (st.space - n * align4k(0)).max(0) as u64;
            out.summary.files += (st.inodes - n).max(0) as u64;
            subdirs
        };
        for (name, sub) in subdirs {
            let t = match Box::pin(self.tree_summary(
                sub,
                name,
                depth.saturating_sub(1),
                top,
                strict,
                seen,
            ))
            .await
            {
                Ok(t) => t,
                // removed while we walked
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.summary.add(&t.summary);
            if depth > 0 {
                out.children.push(t);
            }
        }
        out.children.sort_by(|a, b| {
            b.summary
                .size
                .cmp(&a.summary.size)
                .then(a.name.cmp(&b.name))
        });
        out.children.truncate(top);
        Ok(out)
    }

    /// The subdirectories of `ino` (name, inode), read only when its link count says it has
    /// some.
    async fn subdirs(&self, ino: Ino) -> Result<Vec<(Vec<u8>, Ino)>> {
        let a = self.getattr(ino).await?;
        if a.nlink <= 2 {
            return Ok(Vec::new());
        }
        self.walk_entries(ino, false, |_| {}).await
    }

    /// Count every entry of `ino` into `s` (strict summary); its subdirectories.
    async fn strict_entries(&self, ino: Ino, s: &mut Summary) -> Result<Vec<(Vec<u8>, Ino)>> {
        self.walk_entries(ino, true, |e| {
            if e.typ != FileType::Dir {
                let length = e.attr.as_ref().map(|a| a.length).unwrap_or(0);
                s.files += 1;
                s.size += align4k(length) as u64;
                if e.typ == FileType::File {
                    s.length += length;
                }
            }
        })
        .await
    }

    /// Every entry of `ino`, a page per read; `each` sees them all; the subdirectories.
    async fn walk_entries(
        &self,
        ino: Ino,
        plus: bool,
        mut each: impl FnMut(&crate::engine::Listed),
    ) -> Result<Vec<(Vec<u8>, Ino)>> {
        let mut dirs = Vec::new();
        let mut from: Option<Vec<u8>> = None;
        loop {
            let start = from.clone();
            let batch = txn!(self, "list entries", Mode::Read, |tx| {
                let start = match &start {
                    Some(n) => Bound::Excluded(n.as_slice()),
                    None => Bound::Unbounded,
                };
                tx.list_entries(ino, start, LIST_BATCH, plus).await?
            })?;
            for e in &batch {
                each(e);
                if e.typ == FileType::Dir {
                    dirs.push((e.name.clone(), e.ino));
                }
            }
            if batch.len() < LIST_BATCH {
                break;
            }
            from = batch.last().map(|e| e.name.clone());
        }
        Ok(dirs)
    }
}

impl<E: Engine> Core<E> {
    /// Record that regular file `a` (whose attributes name its parent, or 0 when it has several
    /// links or none) went from `old` to `new` bytes, for its owner and in every directory
    /// naming it; growth is checked against their quotas.
    pub(crate) async fn file_resized(
        &self,
        tx: &mut W<E::Txn<'_>>,
        a: &Attr,
        old: u64,
        new: u64,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let grow = align4k(new) - align4k(old);
        self.charge_owner(tx, a.uid, a.gid, grow, 0).await?;
        // a file kept open after its last name went is in no directory
        let parent = if a.nlink == 0 { 0 } else { a.parent };
        self.file_resized_in_dirs(tx, a.ino, parent, old, new).await
    }

    /// The directory side of [`Core::file_resized`], for file `ino` whose attributes name
    /// `parent`.
    pub(crate) async fn file_resized_in_dirs(
        &self,
        tx: &mut W<E::Txn<'_>>,
        ino: Ino,
        parent: Ino,
        old: u64,
        new: u64,
    ) -> Result<()> {
        if old == new || !self.dir_stats_on() {
            return Ok(());
        }
        let d = DirStat {
            length: new as i64 - old as i64,
            space: align4k(new) - align4k(old),
            inodes: 0,
        };
        let parents = if parent != 0 {
            vec![(parent, 1)]
        } else {
            tx.parents(ino).await?
        };
        for (p, n) in parents {
            if p >= TRASH_INODE {
                continue;
            }
            let n = i64::from(n);
            let dn = DirStat {
                length: d.length * n,
                space: d.space * n,
                inodes: 0,
            };
            self.charge(tx, p, dn).await?;
        }
        Ok(())
    }
}

impl<E: Engine> Core<E> {
    /// The directory quotas at and above directory `ino`, nearest first, as this client sees
    /// them (its pending usage included).
    pub(crate) async fn quotas_above(&self, ino: Ino) -> Result<Vec<(Ino, Quota)>> {
        if !self.has_dir_quotas() {
            return Ok(Vec::new());
        }
        let chain = txn!(self, "quota directories", Mode::Latest, |tx| {
            self.quota_chain(tx, ino).await?
        })?;
        Ok(chain
            .into_iter()
            .filter_map(|d| {
                let v = self.view(d)?;
                let mut q = v.stored;
                q.used_space += v.pending.0;
                q.used_inodes += v.pending.1;
                Some((d, q))
            })
            .collect())
    }
}

impl<E: Engine> Core<E> {
    /// Move what inode `after` counts for its owners from `before`'s user and group (a chown),
    /// checking the quotas of a new owner.
    pub(crate) async fn owners_changed(
        &self,
        tx: &mut W<E::Txn<'_>>,
        before: &Attr,
        after: &Attr,
    ) -> Result<()> {
        if !self.user_group_on() || (before.uid, before.gid) == (after.uid, after.gid) {
            return Ok(());
        }
        let length = if after.typ == FileType::File {
            after.length
        } else {
            0
        };
        let (space, inodes) = owner_usage(after.typ, length);
        let keys = [
            (QuotaKind::User, before.uid, after.uid),
            (QuotaKind::Group, before.gid, after.gid),
        ];
        for (kind, old, new) in keys {
            if old == new {
                continue;
            }
            self.check_owner(tx, (kind, u64::from(new)), space, inodes)
                .await?;
        }
        // the whole usage leaves the old pair and joins the new one; an unchanged half nets out
        tx.owned(before.uid, before.gid, -space, -inodes);
        tx.owned(after.uid, after.gid, space, inodes);
        Ok(())
    }
}
