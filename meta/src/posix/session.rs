//! The volume and the client's life on it: format, load, sessions with their three background
//! jobs (heartbeat, counter flush, cleanup), and cleanup itself, in this order: dead sessions
//! (their locks and kept-open files), the deletion queue left by crashes, expired trash hours,
//! slices compaction set aside.

use super::retry::txn;
use super::rules::{new_dir_attr, trash_hour_start};
use super::{Core, W};
use crate::engine::{Engine, Mode, Txn};
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::types::*;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Counters `juicefs format` creates, with their initial values.
pub const INITIAL_COUNTERS: &[(&str, i64)] = &[
    ("nextInode", 2),
    ("nextChunk", 1),
    ("nextSession", 0),
    ("usedSpace", 0),
    ("totalInodes", 0),
    ("nextCleanupSlices", 0),
];

/// Period of flushing the space and inode counters changed by this client.
const STATS_FLUSH: Duration = Duration::from_secs(1);
/// A queued file older than this (seconds) is freed by cleanup: its client crashed before it
/// could.
const DELFILE_GRACE: i64 = 60;

impl<E: Engine> Core<E> {
    pub(crate) async fn init(&self, format: &Format, force: bool) -> Result<()> {
        self.engine.prepare().await?;
        let now = Timestamp::now();
        let json = format.to_json()?;
        let shown = self.engine.shown().to_string();
        txn!(self, "format", Mode::Write, |tx| {
            if let Some(text) = tx.setting().await? {
                let old = Format::from_json(&text)?;
                if !force {
                    return Err(Error::exists(format!(
                        "{shown} already holds volume {:?} (UUID {}); pass --force to change its settings",
                        old.name, old.uuid
                    )));
                }
                let mut merged = format.clone();
                merged.uuid = old.uuid.clone();
                merged.name = old.name.clone();
                tx.put_setting(&merged.to_json()?).await?;
            } else {
                tx.put_setting(&json).await?;
                for (name, value) in INITIAL_COUNTERS {
                    tx.add_counter(name, *value).await?;
                }
                tx.create_node(&new_dir_attr(ROOT_INODE, 0o777, ROOT_INODE, now))
                    .await?;
                if format.trash_days > 0 {
                    tx.create_node(&new_dir_attr(TRASH_INODE, 0o555, ROOT_INODE, now))
                        .await?;
                }
            }
        })
    }

    pub(crate) async fn load(&self) -> Result<Format> {
        let shown = self.engine.shown().to_string();
        let not_formatted = || {
            Error::config(format!(
                "{shown} is not a formatted volume: run `tidefs format` first"
            ))
        };
        let mut retry = super::retry::Retry::new("load");
        loop {
            let formatted = self.engine.formatted().await;
            match retry.after(formatted, &self.restarts).await {
                Some(Ok(true)) => break,
                Some(Ok(false)) => return Err(not_formatted()),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        let text = txn!(self, "load", Mode::Read, |tx| { tx.setting().await? })?;
        let fmt = Format::from_json(&text.ok_or_else(not_formatted)?)?;
        fmt.check_supported()?;
        self.engine.opened(self.writable().is_ok()).await?;
        *self.format.write().map_err(|_| super::lock_poisoned())? = Some(Arc::new(fmt.clone()));
        self.load_quotas().await?;
        Ok(fmt)
    }

    pub(crate) async fn new_session(self: &Arc<Self>, info: SessionInfo) -> Result<u64> {
        self.writable()?;
        let json =
            serde_json::to_vec(&info).map_err(|e| Error::invalid("session info").with_source(e))?;
        let expire = Timestamp::now().sec + self.session_ttl_secs();
        let sid = txn!(self, "new session", Mode::Write, |tx| {
            let sid = tx.add_counter("nextSession", 1).await? as u64;
            tx.create_session(sid, expire, &json).await?;
            sid
        })?;
        self.sid.store(sid, Ordering::Relaxed);
        self.load_quotas().await?;
        self.root_stat_record().await?;
        let hb = Arc::clone(self);
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(hb.heartbeat_period()).await;
                if let Err(e) = hb.heartbeat().await {
                    tracing::warn!(error = %e, "session heartbeat failed");
                }
            }
        });
        let cl = Arc::clone(self);
        let clean = tokio::spawn(async move {
            loop {
                match cl.cleanup().await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "background cleanup"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "background cleanup failed"),
                }
                tokio::time::sleep(cl.heartbeat_period() * 5).await;
            }
        });
        let fl = Arc::clone(self);
        let flush = tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATS_FLUSH).await;
                if let Err(e) = fl.flush_stats().await {
                    tracing::warn!(error = %e, "flushing the volume counters failed; will retry");
                }
                if let Err(e) = fl.flush_usage().await {
                    tracing::warn!(error = %e, "flushing directory usage failed; will retry");
                }
            }
        });
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.extend([beat, clean, flush]);
        }
        Ok(sid)
    }

    pub(crate) async fn close_session(&self) -> Result<()> {
        self.drain_deletions().await;
        {
            // a flush of usage under way finishes first: aborted halfway, it would lose the
            // changes it took
            let _flushing = self.usage_flush_lock().await;
            if let Ok(mut jobs) = self.jobs.lock() {
                for j in jobs.drain(..) {
                    j.abort();
                }
            }
        }
        self.flush_stats().await?;
        self.flush_usage().await?;
        let sid = self.sid.swap(0, Ordering::Relaxed);
        if sid == 0 {
            return Ok(());
        }
        let now = Timestamp::now();
        let files = txn!(self, "close session", Mode::Write, |tx| {
            self.remove_session(tx, sid, now).await?
        })?;
        for ino in files {
            self.free_file_data(ino).await?;
        }
        Ok(())
    }

    pub(crate) async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let rows = txn!(self, "list sessions", Mode::Read, |tx| {
            tx.sessions().await?
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut s: SessionInfo = r
                    .info
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(SessionInfo {
                        sid: 0,
                        expire: 0,
                        version: String::new(),
                        host_name: String::new(),
                        mount_point: String::new(),
                        mount_time: String::new(),
                        process_id: 0,
                    });
                s.sid = r.sid;
                s.expire = r.expire;
                s
            })
            .collect())
    }

    /// Remove session `sid` and what it held: its locks, and the inodes it kept alive after
    /// their last name went (deleted here, their data queued). Returns those files.
    async fn remove_session(
        &self,
        tx: &mut W<E::Txn<'_>>,
        sid: u64,
        now: Timestamp,
    ) -> Result<Vec<Ino>> {
        let mut files = Vec::new();
        for (_, ino) in tx.sustained(Some(sid)).await? {
            if let Some(a) = tx.node(ino).await? {
                if a.nlink == 0 {
                    let mut none = Vec::new();
                    self.free_inode(tx, &a, now, true, &mut none).await?;
                    files.push(ino);
                }
            }
        }
        tx.delete_session(sid).await?;
        Ok(files)
    }

    async fn heartbeat(&self) -> Result<()> {
        let sid = self.sid();
        if sid == 0 {
            return Ok(());
        }
        let expire = Timestamp::now().sec + self.session_ttl_secs();
        let text = txn!(self, "session heartbeat", Mode::Write, |tx| {
            tx.refresh_session(sid, expire).await?;
            tx.setting().await?
        })?;
        if let Some(text) = text {
            self.reload_setting(&text)?;
        }
        Ok(())
    }

    /// Take up a setting changed by `tidefs config` (or `juicefs config`): limits, the trash,
    /// directory statistics are read from it at each use.
    fn reload_setting(&self, text: &str) -> Result<()> {
        let new = Format::from_json(text)?;
        let old = self.format()?;
        if *old == new {
            return Ok(());
        }
        if new.uuid != old.uuid {
            return Err(Error::incompatible(format!(
                "the volume's UUID changed from {} to {}: this mount serves a volume that is gone; unmount it",
                old.uuid, new.uuid
            )));
        }
        if let Err(e) = new.check_supported() {
            tracing::error!(error = %e, "the volume setting changed to one this client cannot serve; keeping the old one");
            return Ok(());
        }
        tracing::info!("volume setting changed; taking it up");
        *self.format.write().map_err(|_| super::lock_poisoned())? = Some(Arc::new(new));
        Ok(())
    }

    /// Store a changed setting of this volume (even one this client could not serve: an
    /// administrator may lock old clients out on purpose).
    pub(crate) async fn configure(&self, format: &Format) -> Result<()> {
        self.writable()?;
        let json = format.to_json()?;
        txn!(self, "config", Mode::Write, |tx| {
            let text = tx
                .setting()
                .await?
                .ok_or_else(|| Error::config("the volume is not formatted"))?;
            let old = Format::from_json(&text)?;
            if old.uuid != format.uuid || old.name != format.name {
                return Err(Error::invalid(
                    "the setting names another volume (UUID or name differs)",
                ));
            }
            tx.put_setting(&json).await?;
        })?;
        *self.format.write().map_err(|_| super::lock_poisoned())? = Some(Arc::new(format.clone()));
        Ok(())
    }

    /// Purge expired trash, files of dead sessions, pending deletions and slices set aside;
    /// returns how many files went.
    pub(crate) async fn cleanup(self: &Arc<Self>) -> Result<u64> {
        let mut done = 0u64;
        let now = Timestamp::now();
        let dead: Vec<u64> = txn!(self, "cleanup sessions", Mode::Read, |tx| {
            tx.sessions()
                .await?
                .into_iter()
                .filter(|s| s.expire < now.sec)
                .map(|s| s.sid)
                .collect::<Vec<_>>()
        })?;
        for sid in dead {
            let files = txn!(self, "cleanup session", Mode::Write, |tx| {
                self.remove_session(tx, sid, now).await?
            })?;
            for ino in files {
                self.free_file_data(ino).await?;
                done += 1;
            }
        }
        let pending: Vec<Ino> = txn!(self, "cleanup deletions", Mode::Read, |tx| {
            tx.delfiles()
                .await?
                .into_iter()
                .filter(|d| d.queued < now.sec - DELFILE_GRACE)
                .map(|d| d.ino)
                .collect::<Vec<_>>()
        })?;
        for ino in pending {
            self.free_file_data(ino).await?;
            done += 1;
        }
        let days = self.trash_days();
        let hours = txn!(self, "cleanup trash", Mode::Read, |tx| {
            tx.list_entries(TRASH_INODE, Bound::Unbounded, 1_000_000, false)
                .await?
        })?;
        for hour in hours {
            let Some(start) = trash_hour_start(&hour.name) else {
                continue;
            };
            if now.sec - start < i64::from(days) * 86400 + 3600 {
                continue;
            }
            done += self.purge_trash_dir(hour.ino, &hour.name).await?;
        }
        self.purge_delayed(now.sec - i64::from(days) * 86400)
            .await?;
        if let Err(e) = self.engine.maintain().await {
            tracing::warn!(error = %e, "store upkeep failed; will retry");
        }
        Ok(done)
    }

    /// Empty trash directory `dir` (called `name`) and remove it.
    async fn purge_trash_dir(self: &Arc<Self>, dir: Ino, name: &[u8]) -> Result<u64> {
        let ctx = Ctx::root();
        let mut n = 0;
        loop {
            let batch = self.readdir(&ctx, dir, 0, 1000, false).await?;
            if batch.is_empty() {
                break;
            }
            for e in batch {
                if e.typ == FileType::Dir {
                    // a directory that ended up in the trash: empty it first
                    n += Box::pin(self.purge_trash_dir(e.ino, &e.name)).await?;
                    continue;
                }
                match self.unlink(&ctx, dir, &e.name).await {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let parent = txn!(self, "purge trash", Mode::Read, |tx| {
            tx.must_node(dir).await?.parent
        })?;
        // a directory that another client emptied and removed first is fine
        let _ = self.rmdir(&ctx, parent, name).await;
        Ok(n)
    }

    /// Release the records of slices set aside before `before` (seconds since the epoch):
    /// each slice loses the reference it kept. Returns how many records went.
    pub(crate) async fn purge_delayed(&self, before: i64) -> Result<u64> {
        let keys: Vec<Vec<u8>> = txn!(self, "list delayed slices", Mode::Read, |tx| {
            tx.delayed()
                .await?
                .into_iter()
                .filter(|d| d.when < before)
                .map(|d| d.key)
                .collect::<Vec<_>>()
        })?;
        let mut purged = 0u64;
        for key in keys {
            let freed = txn!(self, "purge delayed slices", Mode::Write, |tx| {
                let mut freed = Vec::new();
                if let Some(slices) = tx.take_delayed(&key).await? {
                    for (id, size) in slices {
                        if tx.unref(id, size).await? {
                            freed.push((id, size));
                        }
                    }
                }
                freed
            })?;
            purged += 1;
            self.delete_objects(freed).await;
        }
        Ok(purged)
    }
}
