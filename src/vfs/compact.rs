//! Compaction: a chunk written as many slices is rewritten as few, showing the same bytes.
//!
//! Each write of a file commits one slice record to its chunk; a file appended in small pieces,
//! or overwritten in place, gathers hundreds of records. Every read then resolves them all, the
//! chunk's record list grows (MySQL's `blob` column holds 2 730 records at most), and
//! overwritten bytes keep their objects. Compaction reads what the records show, writes it as
//! new slices (one per run of data; gaps under 1 MiB are filled with zeros rather than split),
//! and swaps them in with [`Meta::compact_chunk`], which refuses when the chunk changed under
//! it (records appended meanwhile are kept after the new ones). The replaced slices lose their
//! references, so their objects go at once (or after the trash time, as JuiceFS keeps them).
//!
//! Runs in the mount (a chunk is queued when a read finds 100 or more records, or after every
//! 100 commits to it from this mount), in `tidefs compact PATH`, and in `tidefs gc --compact`.

use super::error::Result;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidefs_chunk::ChunkStore;
use tidefs_meta::slice::{resolve, Segment};
use tidefs_meta::{Ino, Meta, Slice};

/// Records in one chunk that make a mount compact it.
pub const COMPACT_AT: usize = 100;

/// A gap of unwritten bytes shorter than this between two runs of data is filled with zeros,
/// so the runs become one slice.
const MERGE_GAP: u64 = 1 << 20;

/// What compacting one chunk did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Records before.
    pub before: usize,
    /// Records after (new ones plus any appended meanwhile).
    pub after: usize,
    /// Bytes written to new slices.
    pub written: u64,
}

/// Compact chunk `indx` of `ino` if it has at least `min_records` records (2 at the least).
/// `None`: nothing to do, or the chunk changed under it (the new slices were dropped again).
pub async fn compact_chunk(
    meta: &dyn Meta,
    store: &ChunkStore,
    ino: Ino,
    indx: u32,
    min_records: usize,
) -> Result<Option<Compacted>> {
    let old = meta.read_chunk(ino, indx).await?;
    if old.len() < min_records.max(2) {
        return Ok(None);
    }
    let segs = resolve(&old);
    let mut new: Vec<Slice> = Vec::new();
    let mut sums: Vec<Vec<u8>> = Vec::new();
    let mut written = 0u64;
    for (start, end) in runs(&segs) {
        let id = meta.new_slice_id().await?;
        let size = (end - start) as u32;
        match write_run(store, &segs, id, start, end).await {
            Ok(s) => sums.push(s),
            Err(e) => {
                drop_slices(store, &new).await;
                let _ = store.delete_slice(id, size).await;
                // an object gone because the file was overwritten or truncated meanwhile (its
                // slice freed): the chunk is not what was read, so there is nothing to do now
                if is_not_found(&e) && meta.read_chunk(ino, indx).await.ok().as_ref() != Some(&old)
                {
                    tracing::debug!(
                        ino,
                        indx,
                        "chunk changed while it was compacted; left as it is"
                    );
                    return Ok(None);
                }
                return Err(e);
            }
        }
        written += u64::from(size);
        new.push(Slice {
            pos: start as u32,
            id,
            size,
            off: 0,
            len: size,
        });
    }
    match meta.compact_chunk(ino, indx, &old, &new, &sums).await {
        Ok(true) => {
            let after = meta
                .read_chunk(ino, indx)
                .await
                .map(|s| s.len())
                .unwrap_or(new.len());
            tracing::debug!(
                ino,
                indx,
                before = old.len(),
                after,
                written,
                "chunk compacted"
            );
            Ok(Some(Compacted {
                before: old.len(),
                after,
                written,
            }))
        }
        Ok(false) => {
            drop_slices(store, &new).await;
            Ok(None)
        }
        Err(e) => {
            // the swap may or may not have committed (a lost connection): the new slices
            // might be referenced now, so they stay; an unreferenced one is gc's to find
            Err(e.into())
        }
    }
}

fn is_not_found(e: &super::error::Error) -> bool {
    matches!(e, super::error::Error::Data(d) if d.kind() == tidefs_chunk::ErrorKind::NotFound)
}

async fn drop_slices(store: &ChunkStore, slices: &[Slice]) {
    for s in slices {
        if let Err(e) = store.delete_slice(s.id, s.size).await {
            tracing::warn!(slice = s.id, error = %e, "dropping an unused compacted slice failed; left for gc");
        }
    }
}

/// Runs of data to write as one slice each: data segments (zeros records are holes once the
/// records are replaced) joined across gaps shorter than [`MERGE_GAP`].
fn runs(segs: &[Segment]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in segs.iter().filter(|s| s.id != 0 && s.len > 0) {
        let (a, b) = (s.pos, s.pos + s.len);
        match out.last_mut() {
            Some(last) if a <= last.1 + MERGE_GAP => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Write bytes `[start, end)` of the chunk as resolved by `segs` into slice `id`, block by block
/// (one block in memory at a time); returns the slice's block checksums.
async fn write_run(
    store: &ChunkStore,
    segs: &[Segment],
    id: u64,
    start: u64,
    end: u64,
) -> Result<Vec<u8>> {
    let mut sums = Vec::new();
    let bs = u64::from(store.config().block_size);
    let mut indx = 0u32;
    let mut at = start;
    while at < end {
        let stop = end.min(at + bs);
        let mut buf = vec![0u8; (stop - at) as usize];
        for s in segs.iter().filter(|s| s.id != 0) {
            let (a, b) = (s.pos.max(at), (s.pos + s.len).min(stop));
            if a >= b {
                continue;
            }
            let soff = s.off + (a - s.pos);
            copy_out(
                store,
                s.id,
                s.size,
                soff,
                &mut buf[(a - at) as usize..(b - at) as usize],
            )
            .await?;
        }
        sums.extend(store.put_block(id, indx, Bytes::from(buf)).await?);
        indx += 1;
        at = stop;
    }
    Ok(sums)
}

/// Fill `out` with the bytes of slice `id` (of `size` bytes) from offset `soff`.
async fn copy_out(store: &ChunkStore, id: u64, size: u32, soff: u64, out: &mut [u8]) -> Result<()> {
    let bs = u64::from(store.config().block_size);
    let mut done = 0usize;
    while done < out.len() {
        let so = soff + done as u64;
        let bindx = (so / bs) as u32;
        let boff = (so % bs) as usize;
        let blen = (u64::from(size) - u64::from(bindx) * bs).min(bs) as u32;
        let block = store
            .read_block_for(id, bindx, blen, tidefs_chunk::Admit::Random)
            .await?;
        let take = (block.len() - boff).min(out.len() - done);
        out[done..done + take].copy_from_slice(&block[boff..boff + take]);
        done += take;
    }
    Ok(())
}

/// Chunks queued for compaction in a mount, and how many commits each got here since.
pub struct Compactor {
    meta: Arc<dyn Meta>,
    store: ChunkStore,
    enabled: bool,
    state: parking_lot::Mutex<State>,
    /// Compactions running at once.
    slots: Arc<tokio::sync::Semaphore>,
    /// Compactions queued or running; `idle` is notified when one ends.
    running: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Set at unmount: nothing new starts.
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    queued: HashSet<(Ino, u32)>,
    commits: HashMap<(Ino, u32), u32>,
}

/// Chunks waiting or being compacted at most; more are not queued (a later read or commit
/// queues them again).
const MAX_QUEUED: usize = 256;

impl Compactor {
    /// A compactor for a mount (`enabled` false: a read-only mount never compacts).
    pub fn new(meta: Arc<dyn Meta>, store: ChunkStore, enabled: bool) -> Self {
        Self {
            meta,
            store,
            enabled,
            state: parking_lot::Mutex::new(State::default()),
            slots: Arc::new(tokio::sync::Semaphore::new(2)),
            running: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Stop queueing, and wait (at most `limit`) for compactions under way, so none is cut
    /// between its swap and the deletion of what it replaced.
    pub async fn close(&self, limit: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            if self.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(
                    running = self.running.load(Ordering::SeqCst),
                    "compactions still running at unmount; what they replaced is left for gc"
                );
                return;
            }
        }
    }

    /// A read found `records` records in chunk `indx` of `ino`.
    pub fn saw_records(self: &Arc<Self>, ino: Ino, indx: u32, records: usize) {
        if records >= COMPACT_AT {
            self.queue(ino, indx);
        }
    }

    /// This mount committed a slice to chunk `indx` of `ino`.
    pub fn committed(self: &Arc<Self>, ino: Ino, indx: u32) {
        let due = {
            let mut st = self.state.lock();
            if st.commits.len() > 65_536 {
                st.commits.clear();
            }
            let n = st.commits.entry((ino, indx)).or_insert(0);
            *n += 1;
            *n as usize >= COMPACT_AT
        };
        if due {
            self.queue(ino, indx);
        }
    }

    fn queue(self: &Arc<Self>, ino: Ino, indx: u32) {
        if !self.enabled || self.closed.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut st = self.state.lock();
            if st.queued.len() >= MAX_QUEUED || !st.queued.insert((ino, indx)) {
                return;
            }
            st.commits.remove(&(ino, indx));
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        tokio::spawn(async move {
            let res = match this.slots.clone().acquire_owned().await {
                Ok(_slot) if !this.closed.load(Ordering::SeqCst) => {
                    compact_chunk(&*this.meta, &this.store, ino, indx, COMPACT_AT / 2).await
                }
                _ => Ok(None),
            };
            if let Err(e) = res {
                tracing::warn!(ino, indx, error = %e, "background compaction failed; the chunk stays as it was");
            }
            this.state.lock().queued.remove(&(ino, indx));
            this.running.fetch_sub(1, Ordering::SeqCst);
            this.idle.notify_waiters();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(pos: u64, len: u64, id: u64) -> Segment {
        Segment {
            pos,
            len,
            id,
            size: len as u32,
            off: 0,
        }
    }

    #[test]
    fn runs_merge_small_gaps_and_skip_zero_records() {
        let segs = [
            seg(0, 100, 1),
            seg(100, 50, 0),
            seg(500, 10, 2),
            seg(5 << 20, 10, 3),
        ];
        assert_eq!(runs(&segs), vec![(0, 510), (5 << 20, (5 << 20) + 10)]);
        assert_eq!(runs(&[seg(0, 10, 0)]), Vec::<(u64, u64)>::new());
    }
}
