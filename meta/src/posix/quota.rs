//! Quota administration: set, read, list, delete and recount quotas (`tidefs quota`), in
//! JuiceFS's records. The accounting itself is in `usage`.

use super::retry::txn;
use super::usage::owner_usage;
use super::Core;
use crate::engine::{Engine, Mode, Txn};
use crate::error::{Error, Result};
use crate::types::*;
use std::collections::HashMap;
use std::sync::Arc;

/// A quota compared with a recount of what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaCheck {
    /// What the quota limits.
    pub kind: QuotaKind,
    /// Its key (directory inode, uid or gid).
    pub key: u64,
    /// The record as stored.
    pub stored: Quota,
    /// Usage counted now: (space, inodes).
    pub counted: (i64, i64),
}

impl QuotaCheck {
    /// Whether the stored usage is what was counted.
    pub fn consistent(&self) -> bool {
        (self.stored.used_space, self.stored.used_inodes) == self.counted
    }
}

impl<E: Engine> Core<E> {
    /// Set the limits of a quota (None: keep the stored one; a new quota has none), creating
    /// it with the usage counted now. Directory quotas need directory statistics: they are
    /// turned on in the volume setting when off.
    pub(crate) async fn set_quota(
        self: &Arc<Self>,
        kind: QuotaKind,
        key: u64,
        max_space: Option<i64>,
        max_inodes: Option<i64>,
        strict: bool,
    ) -> Result<Quota> {
        self.writable()?;
        if max_space.is_some_and(|v| v < 0) || max_inodes.is_some_and(|v| v < 0) {
            return Err(Error::invalid("quota limits cannot be negative"));
        }
        // what a new record starts from: a directory's usage counted now; an owner with no
        // record owns nothing yet (turning user and group usage on makes every owner's record)
        let fresh = if kind == QuotaKind::Dir {
            let a = self.getattr(key).await?;
            if a.typ != FileType::Dir {
                return Err(Error::not_dir(format!(
                    "inode {key} is not a directory: quotas are set on directories"
                )));
            }
            self.enable_dir_stats().await?;
            let existing = txn!(self, "get quota", Mode::Read, |tx| {
                tx.quota(kind, key).await?
            })?;
            match existing {
                Some(q) => q,
                None => {
                    let counted = self.count_tree(key, strict).await?;
                    Quota {
                        used_space: counted.0,
                        used_inodes: counted.1,
                        ..Quota::default()
                    }
                }
            }
        } else {
            self.enable_user_group().await?;
            Quota::default()
        };
        let q = txn!(self, "set quota", Mode::Write, |tx| {
            let mut q = tx.quota(kind, key).await?.unwrap_or(fresh);
            if let Some(v) = max_space {
                q.max_space = v;
            }
            if let Some(v) = max_inodes {
                q.max_inodes = v;
            }
            tx.put_quota(kind, key, &q).await?;
            q
        })?;
        self.load_quotas().await?;
        Ok(q)
    }

    /// Turn directory statistics on in the volume setting (they start from the entries of
    /// each directory the first time it is read).
    async fn enable_dir_stats(&self) -> Result<()> {
        if self.format()?.dir_stats {
            return Ok(());
        }
        self.change_setting(|f| f.dir_stats = true).await
    }

    /// Turn user and group usage on in the volume setting, and store what every user and group
    /// owns now (clients count changes from their next heartbeat on; `quota check --repair`
    /// recounts what changed meanwhile).
    async fn enable_user_group(&self) -> Result<()> {
        if self.format()?.user_group_quota {
            return Ok(());
        }
        self.change_setting(|f| f.user_group_quota = true).await?;
        let (users, groups) = self.count_owners().await?;
        let all: Vec<(QuotaKind, u64, (i64, i64))> = users
            .into_iter()
            .map(|(k, u)| (QuotaKind::User, k, u))
            .chain(groups.into_iter().map(|(k, u)| (QuotaKind::Group, k, u)))
            .collect();
        for batch in all.chunks(500) {
            txn!(self, "store user and group usage", Mode::Write, |tx| {
                for (kind, key, (space, inodes)) in batch {
                    let mut q = tx.quota(*kind, *key).await?.unwrap_or(Quota {
                        max_space: -1,
                        max_inodes: -1,
                        ..Quota::default()
                    });
                    q.used_space = *space;
                    q.used_inodes = *inodes;
                    tx.put_quota(*kind, *key, &q).await?;
                }
            })?;
        }
        self.load_quotas().await
    }

    /// Change the stored setting with `f` and use the result.
    async fn change_setting(&self, f: impl Fn(&mut crate::Format)) -> Result<()> {
        let fmt = txn!(self, "change the setting", Mode::Write, |tx| {
            let text = tx
                .setting()
                .await?
                .ok_or_else(|| Error::config("the volume is not formatted"))?;
            let mut fmt = crate::Format::from_json(&text)?;
            f(&mut fmt);
            tx.put_setting(&fmt.to_json()?).await?;
            fmt
        })?;
        if let Ok(mut cur) = self.format.write() {
            *cur = Some(Arc::new(fmt));
        }
        Ok(())
    }

    /// What every user and every group owns, counting every inode as JuiceFS's scan does
    /// (the root and the trash's own directory left out): (space, inodes) by uid and by gid.
    #[allow(clippy::type_complexity)]
    async fn count_owners(&self) -> Result<(HashMap<u64, (i64, i64)>, HashMap<u64, (i64, i64)>)> {
        let (mut users, mut groups) = (HashMap::new(), HashMap::new());
        let mut cursor: Vec<u8> = Vec::new();
        loop {
            let from = cursor.clone();
            let (page, next) = txn!(self, "count owners", Mode::Read, |tx| {
                tx.scan_nodes(&from, 10_000).await?
            })?;
            for a in page {
                if a.ino == ROOT_INODE || a.ino == TRASH_INODE {
                    continue;
                }
                let length = if a.typ == FileType::File { a.length } else { 0 };
                let (space, inodes) = owner_usage(a.typ, length);
                if inodes == 0 {
                    continue;
                }
                for (m, k) in [
                    (&mut users, u64::from(a.uid)),
                    (&mut groups, u64::from(a.gid)),
                ] {
                    let e: &mut (i64, i64) = m.entry(k).or_default();
                    e.0 += space;
                    e.1 += inodes;
                }
            }
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        Ok((users, groups))
    }

    /// Recount what every user and group owns and compare with their records, storing the
    /// counts where they differ when `repair`.
    pub(crate) async fn check_owner_usage(&self, repair: bool) -> Result<Vec<QuotaCheck>> {
        if !self.format()?.user_group_quota {
            return Ok(Vec::new());
        }
        self.flush_usage().await?;
        tokio::time::sleep(super::usage::SETTLE).await;
        let (users, groups) = self.count_owners().await?;
        let mut out = Vec::new();
        for (kind, counted) in [(QuotaKind::User, users), (QuotaKind::Group, groups)] {
            let stored: HashMap<u64, Quota> = txn!(self, "list quotas", Mode::Read, |tx| {
                tx.quotas(kind).await?
            })?
            .into_iter()
            .collect();
            let mut keys: Vec<u64> = stored.keys().chain(counted.keys()).copied().collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let c = QuotaCheck {
                    kind,
                    key,
                    stored: stored.get(&key).copied().unwrap_or(Quota {
                        max_space: -1,
                        max_inodes: -1,
                        ..Quota::default()
                    }),
                    counted: counted.get(&key).copied().unwrap_or((0, 0)),
                };
                if repair && !c.consistent() {
                    self.writable()?;
                    txn!(self, "repair quota", Mode::Write, |tx| {
                        let mut q = tx.quota(kind, key).await?.unwrap_or(c.stored);
                        q.used_space = c.counted.0;
                        q.used_inodes = c.counted.1;
                        tx.put_quota(kind, key, &q).await?;
                    })?;
                }
                out.push(c);
            }
        }
        if repair {
            self.load_quotas().await?;
        }
        Ok(out)
    }

    /// Usage below directory `ino` as a directory quota counts it: (space, inodes), the
    /// directory itself excluded. From statistics, the count first waits until every client
    /// has stored what it had pending when the count was asked for.
    pub(crate) async fn count_tree(&self, ino: Ino, strict: bool) -> Result<(i64, i64)> {
        if !strict {
            self.settle().await?;
        }
        self.count_settled(ino, strict).await
    }

    /// Wait until what every client had pending is stored.
    async fn settle(&self) -> Result<()> {
        self.flush_usage().await?;
        tokio::time::sleep(super::usage::SETTLE).await;
        Ok(())
    }

    async fn count_settled(&self, ino: Ino, strict: bool) -> Result<(i64, i64)> {
        let t = self.summary(ino, 0, 0, strict).await?;
        let s = t.summary;
        Ok((s.size as i64 - align4k(0), (s.files + s.dirs) as i64 - 1))
    }

    pub(crate) async fn get_quota(&self, kind: QuotaKind, key: u64) -> Result<Option<Quota>> {
        txn!(self, "get quota", Mode::Read, |tx| {
            tx.quota(kind, key).await?
        })
    }

    pub(crate) async fn list_quotas(&self) -> Result<Vec<(QuotaKind, u64, Quota)>> {
        let mut out = Vec::new();
        for kind in [QuotaKind::Dir, QuotaKind::User, QuotaKind::Group] {
            let qs = txn!(self, "list quotas", Mode::Read, |tx| {
                tx.quotas(kind).await?
            })?;
            out.extend(qs.into_iter().map(|(k, q)| (kind, k, q)));
        }
        Ok(out)
    }

    pub(crate) async fn delete_quota(&self, kind: QuotaKind, key: u64) -> Result<bool> {
        self.writable()?;
        let gone = txn!(self, "delete quota", Mode::Write, |tx| {
            tx.delete_quota(kind, key).await?
        })?;
        self.load_quotas().await?;
        Ok(gone)
    }

    /// Recount the usage of the directory quotas (`key` only, when given), storing the counts
    /// where they differ when `repair`.
    pub(crate) async fn check_quotas_usage(
        &self,
        key: Option<u64>,
        repair: bool,
        strict: bool,
    ) -> Result<Vec<QuotaCheck>> {
        // what this client (and, after the wait, every client) has not stored yet would show
        // as drift
        self.flush_usage().await?;
        if !strict {
            self.settle().await?;
        }
        let quotas: Vec<(u64, Quota)> = match key {
            Some(k) => self
                .get_quota(QuotaKind::Dir, k)
                .await?
                .map(|q| vec![(k, q)])
                .ok_or_else(|| Error::not_found(format!("no quota on directory inode {k}")))?,
            None => txn!(self, "list quotas", Mode::Read, |tx| {
                tx.quotas(QuotaKind::Dir).await?
            })?,
        };
        let mut out = Vec::new();
        for (k, stored) in quotas {
            let counted = self.count_settled(k, strict).await?;
            let c = QuotaCheck {
                kind: QuotaKind::Dir,
                key: k,
                stored,
                counted,
            };
            if repair && !c.consistent() {
                self.writable()?;
                txn!(self, "repair quota", Mode::Write, |tx| {
                    if let Some(mut q) = tx.quota(QuotaKind::Dir, k).await? {
                        q.used_space = counted.0;
                        q.used_inodes = counted.1;
                        tx.put_quota(QuotaKind::Dir, k, &q).await?;
                    }
                })?;
            }
            out.push(c);
        }
        if repair {
            self.load_quotas().await?;
        }
        Ok(out)
    }
}
