//! Flat copies of large files for FUSE passthrough on read-only mounts.
//!
//! A read through FUSE costs the mount two copies of every byte (cache file to user space, user
//! space to the kernel's pages) and costs the readers the kernel's FUSE round trips; on two cores
//! under eight model readers that made a warm load 0.41-0.57x of the same file read from a local
//! directory. With passthrough the kernel reads a local file itself, at local speed, and the
//! mount sees only open and close. It needs the whole file as one local file: a *flat copy* in the
//! disk cache (`tidefs_chunk::flat`), named by inode, length and version (mtime and ctime: every
//! change of a file's data moves its ctime), so a copy of a file changed since is never used.
//!
//! Copies are made only on read-only mounts (a kernel rule forbids mixing passthrough and
//! ordinary opens of one inode, and a write through passthrough would bypass the mount), of files
//! of at least [`FLAT_MIN`] bytes, in two ways:
//! - while the file is read through FUSE: every range a read returns is also written to the copy
//!   (in the background, at most [`QUEUE`] pieces behind over all copies); once every byte is there and the
//!   file's version is still the one the copy started from, the copy is synced and put in place.
//!   A copy still incomplete when the file's last handle closes is dropped.
//! - by `tidefs warmup`, from the blocks it just cached.
//!
//! What passthrough gives up: a flat copy is checked against the blocks' checksums while it is
//! made, not on every read (the kernel reads it); and while one process holds a file open through
//! passthrough, later opens of it on this mount see the same version (the kernel lets an inode
//! have one backing file at a time), the next open after all are closed sees the new one.

use super::{read, Result, Vfs};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tidefs_chunk::flat::flat_name;
use tidefs_chunk::FlatWriter;
use tidefs_meta::{Attr, FileType, Ino, Meta};

/// Files shorter than this are read through FUSE: a copy would cost more than it saves.
pub const FLAT_MIN: u64 = 16 << 20;

/// Pieces (each at most one read request, 1 MiB, but holding its block) waiting to be written
/// to copies, over all copies being made: behind sequential readers under 40 MiB, 128 MiB at
/// worst (32 pieces of 32 different 4 MiB blocks).
const QUEUE: usize = 32;

/// Copies being made at once. An open of another large file while this many are under way
/// makes none (a later open will), so a job that opens hundreds of large files at once does
/// not get hundreds of copies each starved of the shared [`QUEUE`].
const MAX_BUILDS: usize = 4;

/// How long a read waits for room in its copy's queue before the copy is dropped.
const OFFER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes one warm-up copy step reads.
const FILL_STEP: u64 = 4 << 20;

/// The copies being made, by inode.
#[derive(Default)]
pub(crate) struct Flats {
    off: AtomicBool,
    /// Orders reads and copy starts (see [`Vfs::flat_offer`]).
    seq: AtomicU64,
    /// Opens answered by passthrough.
    opens: AtomicU64,
    /// Copies put in place.
    made: Arc<AtomicU64>,
    next_id: AtomicU64,
    builds: Arc<parking_lot::Mutex<HashMap<Ino, Build>>>,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    room: Room,
}

/// Permits for the pieces waiting to be written ([`QUEUE`] of them, shared by all copies); a
/// piece carries its permit until it is on disk.
struct Room(Arc<tokio::sync::Semaphore>);

impl Default for Room {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(QUEUE)))
    }
}

/// A piece of a file for its copy: offset, bytes, and its share of [`QUEUE`].
type Piece = (u64, Bytes, tokio::sync::OwnedSemaphorePermit);

struct Build {
    id: u64,
    /// Read tickets after this one started after the copy did.
    start: u64,
    tx: tokio::sync::mpsc::Sender<Piece>,
}

/// The version part of a copy's name.
fn version(a: &Attr) -> String {
    format!(
        "{}.{}-{}.{}",
        a.mtime.sec, a.mtime.nsec, a.ctime.sec, a.ctime.nsec
    )
}

fn name_of(a: &Attr) -> String {
    flat_name(a.ino, a.length, &version(a))
}

/// Byte ranges written so far, merged.
#[derive(Default)]
struct Covered(BTreeMap<u64, u64>);

impl Covered {
    fn add(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        // merge with every range touching [start, end)
        let touching: Vec<(u64, u64)> = self
            .0
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.0.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    fn whole(&self, len: u64) -> bool {
        self.0.get(&0).is_some_and(|&e| e >= len)
    }
}

impl Vfs {
    /// Whether read-only opens may be served by kernel passthrough from flat copies.
    pub fn passthrough(&self) -> bool {
        self.cfg.passthrough
            && !self.flats.off.load(Ordering::Relaxed)
            && self.store.disk_cache().is_some_and(|d| d.enabled())
    }

    /// Count an open answered by passthrough.
    pub fn note_passthrough_open(&self) {
        self.flats.opens.fetch_add(1, Ordering::Relaxed);
    }

    /// Passthrough counters, for `tidefs stats`.
    pub(crate) fn flat_stats(&self) -> serde_json::Value {
        serde_json::json!({
            "enabled": self.passthrough(),
            "opens": self.flats.opens.load(Ordering::Relaxed),
            "copies_made": self.flats.made.load(Ordering::Relaxed),
            "copies_in_progress": self.flats.builds.lock().len(),
            "copies_refused_for_room": self
                .store
                .disk_cache()
                .map_or(0, |d| d.stats().flat_refused.load(Ordering::Relaxed)),
        })
    }

    /// Stop using passthrough (the kernel or this process's privileges do not allow it).
    pub fn disable_passthrough(&self) {
        self.flats.off.store(true, Ordering::Relaxed);
        self.flats.builds.lock().clear();
    }

    fn flat_worthy(&self, a: &Attr) -> bool {
        a.typ == FileType::File && a.length >= FLAT_MIN && self.passthrough()
    }

    /// The flat copy of the file as of `a`, opened, when there is one.
    pub fn flat_file(&self, a: &Attr) -> Option<std::fs::File> {
        if !self.flat_worthy(a) {
            return None;
        }
        self.store.disk_cache()?.flat_open(&name_of(a), a.length)
    }

    /// Start copying the file as of `a` from what its reads return, unless a copy is being made
    /// already or cannot be (too short, no room, no cache).
    pub fn flat_start(&self, a: &Attr) {
        if !self.flat_worthy(a) {
            return;
        }
        {
            let builds = self.flats.builds.lock();
            if builds.contains_key(&a.ino) || builds.len() >= MAX_BUILDS {
                return;
            }
        }
        let Some(w) = self
            .store
            .disk_cache()
            .and_then(|d| d.flat_create(&name_of(a), a.length))
        else {
            return;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let id = self.flats.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut builds = self.flats.builds.lock();
            if builds.contains_key(&a.ino) || builds.len() >= MAX_BUILDS {
                return;
            }
            let start = self.flats.seq.fetch_add(1, Ordering::SeqCst);
            builds.insert(a.ino, Build { id, start, tx });
        }
        let (meta, builds, made, ino, ver) = (
            self.meta.clone(),
            self.flats.builds.clone(),
            self.flats.made.clone(),
            a.ino,
            version(a),
        );
        let task = tokio::spawn(async move {
            let copied = copy_from_reads(Arc::new(w), rx).await;
            // no more pieces for this copy, whatever happens next
            {
                let mut b = builds.lock();
                if b.get(&ino).is_some_and(|b| b.id == id) {
                    b.remove(&ino);
                }
            }
            if let Some(w) = copied {
                if put_in_place(w, &*meta, ino, &ver).await {
                    made.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let mut tasks = self.flats.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// A ticket for a read about to resolve its slices (for [`Vfs::flat_offer`]).
    pub(crate) fn flat_ticket(&self) -> u64 {
        self.flats.seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Hand what a read of `ino` returned at `off` to the copy being made of it, if any. Only
    /// reads that started after the copy did count: a copy starts at an open, after the open
    /// dropped what this mount had cached of the file's slices, so those reads return the
    /// version the copy is named after (or a later one, which the check at the end catches);
    /// an older read still under way could return the version before. When the copy's queue
    /// is full the read waits for room (the copy is written at local-disk speed), up to
    /// [`OFFER_WAIT`]; a copy that stays further behind is dropped.
    pub(crate) async fn flat_offer(&self, ino: Ino, ticket: u64, off: u64, data: &Bytes) {
        let tx = {
            let builds = self.flats.builds.lock();
            if builds.is_empty() || data.is_empty() {
                return;
            }
            match builds.get(&ino) {
                Some(b) if ticket > b.start => (b.id, b.tx.clone()),
                _ => return,
            }
        };
        let (id, tx) = tx;
        let room = self.flats.room.0.clone();
        let sent = tokio::time::timeout(OFFER_WAIT, async move {
            let permit = room.acquire_owned().await.ok()?;
            tx.send((off, data.clone(), permit)).await.ok()
        })
        .await;
        if !matches!(sent, Ok(Some(()))) {
            tracing::debug!(ino, "flat copy dropped: its writes fell behind the reads");
            let mut builds = self.flats.builds.lock();
            if builds.get(&ino).is_some_and(|b| b.id == id) {
                builds.remove(&ino);
            }
        }
    }

    /// The last handle of `ino` closed: a copy not complete by now is dropped.
    pub(crate) fn flat_end(&self, ino: Ino) {
        self.flats.builds.lock().remove(&ino);
    }

    /// At unmount: drop unfinished copies, wait (a minute at most) for complete ones to be
    /// synced and put in place.
    pub(crate) async fn flat_close(&self) {
        self.flats.builds.lock().clear();
        let tasks: Vec<_> = std::mem::take(&mut *self.flats.tasks.lock());
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(std::time::Duration::from_secs(60), all)
            .await
            .is_err()
        {
            tracing::warn!("flat copies still being synced at unmount were dropped");
        }
    }

    /// Make the flat copy of `ino` from its data (for warm-up, after its blocks are cached);
    /// true when the file has one afterwards.
    pub(crate) async fn flat_fill(&self, ino: Ino) -> Result<bool> {
        let a = self.meta.getattr(ino).await?;
        if !self.flat_worthy(&a) || self.flats.builds.lock().contains_key(&ino) {
            return Ok(false);
        }
        let Some(d) = self.store.disk_cache() else {
            return Ok(false);
        };
        let name = name_of(&a);
        if d.flat_open(&name, a.length).is_some() {
            return Ok(true);
        }
        let Some(w) = d.flat_create(&name, a.length) else {
            return Ok(false);
        };
        let w = Arc::new(w);
        let steps = (0..a.length.div_ceil(FILL_STEP)).map(|i| i * FILL_STEP);
        let mut reads = stream::iter(steps)
            .map(|off| async move {
                let n = FILL_STEP.min(a.length - off) as usize;
                read::gather(self, &self.store, ino, off, n, None)
                    .await
                    .map(|d| (off, d))
            })
            .buffer_unordered(4);
        while let Some(r) = reads.next().await {
            let (off, data) = r?;
            let w = w.clone();
            let wrote = tokio::task::spawn_blocking(move || w.write_at(off, &data)).await;
            if !matches!(wrote, Ok(Ok(()))) {
                return Ok(false);
            }
        }
        drop(reads);
        let kept = put_in_place(w, &*self.meta, ino, &version(&a)).await;
        if kept {
            self.flats.made.fetch_add(1, Ordering::Relaxed);
        }
        Ok(kept)
    }
}

/// Write the pieces arriving on `rx` into `w` until every byte of the file is there: the writer
/// back, or None when the pieces stopped first or a write failed (the copy is dropped).
async fn copy_from_reads(
    w: Arc<FlatWriter>,
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
) -> Option<Arc<FlatWriter>> {
    let mut covered = Covered::default();
    while !covered.whole(w.len()) {
        // the permit goes back (with the bytes) once the piece is written
        let (off, data, _permit) = rx.recv().await?;
        let end = off + data.len() as u64;
        let writer = w.clone();
        match tokio::task::spawn_blocking(move || writer.write_at(off, &data)).await {
            Ok(Ok(())) => covered.add(off, end),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "flat copy dropped: write failed");
                return None;
            }
            Err(_) => return None,
        }
    }
    Some(w)
}

/// Sync the complete copy `w` of `ino` and put it in place, unless the file changed since
/// version `ver` (then some pieces may be of the old data and some of the new).
async fn put_in_place(w: Arc<FlatWriter>, meta: &dyn Meta, ino: Ino, ver: &str) -> bool {
    match meta.getattr(ino).await {
        Ok(a) if version(&a) == ver && a.length == w.len() => {}
        _ => {
            tracing::debug!(ino, "flat copy dropped: the file changed while it was made");
            return false;
        }
    }
    let Ok(w) = Arc::try_unwrap(w) else {
        return false;
    };
    match tokio::task::spawn_blocking(move || w.finish()).await {
        Ok(Ok(kept)) => {
            tracing::debug!(ino, kept, "flat copy made");
            kept
        }
        Ok(Err(e)) => {
            tracing::warn!(ino, error = %e, "flat copy could not be put in place");
            false
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Covered;

    #[test]
    fn covered_merges_ranges_in_any_order() {
        let mut c = Covered::default();
        c.add(10, 20);
        c.add(30, 40);
        assert!(!c.whole(40));
        c.add(0, 10);
        assert!(!c.whole(40));
        c.add(15, 31);
        assert!(c.whole(40));
        assert!(!c.whole(41));
        assert_eq!(c.0.len(), 1);
        let mut c = Covered::default();
        c.add(5, 5);
        assert!(c.0.is_empty());
        c.add(0, 3);
        c.add(4, 6);
        assert!(!c.whole(6));
        c.add(2, 5);
        assert!(c.whole(6));
    }
}
