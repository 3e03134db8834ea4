//! Quota administration: set, read, list, delete and recount quotas (`tidefs quota`), in
//! JuiceFS's records. The accounting itself is in `usage`.

use super::retry::txn;
use super::Core;
use crate::engine::{Engine, Mode, Txn};
use crate::error::{Error, Result};
use crate::types::*;
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
        if kind != QuotaKind::Dir {
            return Err(Error::unsupported(
                "user and group quotas are not supported by this tidefs build yet",
            ));
        }
        if max_space.is_some_and(|v| v < 0) || max_inodes.is_some_and(|v| v < 0) {
            return Err(Error::invalid("quota limits cannot be negative"));
        }
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
        let counted = match existing {
            Some(q) => (q.used_space, q.used_inodes),
            None => self.count_tree(key, strict).await?,
        };
        let q = txn!(self, "set quota", Mode::Write, |tx| {
            let mut q = tx.quota(kind, key).await?.unwrap_or(Quota {
                used_space: counted.0,
                used_inodes: counted.1,
                ..Quota::default()
            });
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
        let fmt = txn!(self, "enable directory statistics", Mode::Write, |tx| {
            let text = tx
                .setting()
                .await?
                .ok_or_else(|| Error::config("the volume is not formatted"))?;
            let mut fmt = crate::Format::from_json(&text)?;
            fmt.dir_stats = true;
            tx.put_setting(&fmt.to_json()?).await?;
            fmt
        })?;
        if let Ok(mut f) = self.format.write() {
            *f = Some(Arc::new(fmt));
        }
        Ok(())
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
        if !strict && !quotas.is_empty() {
            self.settle().await?;
        }
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
