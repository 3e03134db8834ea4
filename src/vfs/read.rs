//! The read path, in the order a read flows: [`Vfs::read`] commits this mount's own writes of
//! the file, clips the range at the file's length, decides whether the read is sequential
//! (`readahead` keeps the windows), resolves each chunk's slice records into runs
//! ([`Vfs::segments`], cached per open file; the compactor hears how many records it saw),
//! and gathers the bytes block by block: sequential reads fetch whole blocks (kept in the block
//! cache) and prefetch the blocks after them within the reader's window; small random reads of
//! uncompressed blocks use ranged reads and leave the cache alone.

use super::error::{Error, Result};
use super::Vfs;
use bytes::Bytes;
use futures::future::try_join_all;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tidefs_chunk::ChunkStore;
use tidefs_meta::slice::{resolve, Segment};
use tidefs_meta::{Ino, CHUNK_SIZE};

/// A piece of the output filled from one slice: `len` bytes at `out_off` from slice offset `soff`.
pub(super) struct Piece {
    out_off: usize,
    id: u64,
    size: u32,
    soff: u64,
    len: usize,
}

/// Gather `n` bytes of `ino` at `off` (clipped to the file length); `ahead` is the reader's
/// readahead window and its size in blocks when the read is part of a sequential run.
pub(super) async fn gather(
    vfs: &Vfs,
    store: &ChunkStore,
    ino: Ino,
    off: u64,
    n: usize,
    ahead: Option<(&super::readahead::Window, u32)>,
) -> Result<Bytes> {
    let sequential = ahead.is_some();
    let mut pieces = Vec::new();
    let mut at = off;
    let end = off + n as u64;
    while at < end {
        let indx = at / CHUNK_SIZE;
        let cstart = indx * CHUNK_SIZE;
        let cend = end.min(cstart + CHUNK_SIZE);
        let (a, b) = (at - cstart, cend - cstart);
        let segments = vfs.segments(ino, indx as u32).await?;
        for seg in segments.iter() {
            let (s, e) = (seg.pos.max(a), (seg.pos + seg.len).min(b));
            if s >= e || seg.id == 0 {
                continue;
            }
            pieces.push(Piece {
                out_off: (cstart + s - off) as usize,
                id: seg.id,
                size: seg.size,
                soff: seg.off + (s - seg.pos),
                len: (e - s) as usize,
            });
        }
        at = cend;
    }
    let bs = u64::from(store.config().block_size);
    let reads = pieces.iter().flat_map(|p| {
        // split the piece at block boundaries
        let mut parts = Vec::new();
        let mut done = 0usize;
        while done < p.len {
            let so = p.soff + done as u64;
            let bindx = (so / bs) as u32;
            let boff = (so % bs) as u32;
            let blen = (u64::from(p.size) - u64::from(bindx) * bs).min(bs) as u32;
            let take = ((blen - boff) as usize).min(p.len - done);
            parts.push((
                p.out_off + done,
                p.id,
                p.size,
                bindx,
                blen,
                boff,
                take as u32,
            ));
            done += take;
        }
        parts
    });
    let futs = reads.map(|(out_off, id, size, bindx, blen, boff, take)| async move {
        let data = if sequential || take * 2 >= blen || store.has_or_loads(id, bindx) {
            let why = if sequential {
                tidefs_chunk::Admit::Sequential
            } else {
                tidefs_chunk::Admit::Random
            };
            let block = store.read_block_for(id, bindx, blen, why).await?;
            if let Some((w, blocks)) = ahead {
                vfs.readahead
                    .prefetch(w, store, id, size, bindx + 1, blocks);
            }
            block.slice(boff as usize..(boff + take) as usize)
        } else {
            store.read_block_range(id, bindx, blen, boff, take).await?
        };
        Ok::<_, Error>((out_off, data))
    });
    let mut parts: Vec<(usize, Bytes)> = try_join_all(futs).await?;
    if parts.len() == 1 && parts[0].0 == 0 && parts[0].1.len() == n {
        // one block window covers the request: hand it out without copying
        return Ok(parts.swap_remove(0).1);
    }
    let mut out = vec![0u8; n];
    for (o, data) in parts {
        out[o..o + data.len()].copy_from_slice(&data);
    }
    Ok(Bytes::from(out))
}

impl Vfs {
    /// Resolved slice runs of one chunk, from the open-file cache when valid.
    pub(crate) async fn segments(&self, ino: Ino, indx: u32) -> Result<Arc<Vec<Segment>>> {
        let generation = {
            let mut files = self.files.lock();
            match files.get_mut(&ino) {
                Some(f) => {
                    let g = f.generation.load(Ordering::Relaxed);
                    if let Some(s) = f.cache.valid_for(g).chunks.get(&indx) {
                        return Ok(s.clone());
                    }
                    g
                }
                None => u64::MAX,
            }
        };
        let records = self.meta.read_chunk(ino, indx).await?;
        self.compactor.saw_records(ino, indx, records.len());
        let segs = Arc::new(resolve(&records));
        if let Some(f) = self.files.lock().get_mut(&ino) {
            if f.generation.load(Ordering::Relaxed) == generation {
                let c = f.cache.valid_for(generation);
                if c.chunks.len() < 4096 {
                    c.chunks.insert(indx, segs.clone());
                }
            }
        }
        Ok(segs)
    }

    /// Read up to `size` bytes at `off`.
    pub async fn read(&self, fh: u64, off: u64, size: u32) -> Result<bytes::Bytes> {
        let h = self.handle(fh)?;
        let ticket = self.flat_ticket();
        // reads see this mount's own writes: commit them first
        if let Some(w) = self.writer(h.ino) {
            if w.is_dirty().await {
                w.flush().await?;
            }
        }
        let length = self.cached_length(h.ino).await?;
        if off >= length || size == 0 {
            return Ok(bytes::Bytes::new());
        }
        let n = u64::from(size).min(length - off);
        // Sequential: the read continues one of the recent runs of the handle, or of all the
        // file's handles together (near its end, in any order, as the kernel's readahead sends
        // them) that started at offset 0 or has read 512 KiB; see `readahead`.
        let own = h.window.is_sequential(off, n);
        // both track the read, whatever the first says
        let shared = h
            .file_reads
            .as_ref()
            .is_some_and(|w| w.is_sequential(off, n));
        let sequential = own || shared;
        let ahead = if sequential {
            let bs = u64::from(self.store.block_size().max(1));
            Some((&h.window, self.readahead.sequential(&h.window, off / bs)))
        } else {
            self.readahead.random(&h.window);
            None
        };
        let data = match gather(self, &self.store, h.ino, off, n as usize, ahead).await {
            // A truncate or overwrite (here or on another client) can free the slices this read
            // resolved while it runs: read once more with fresh metadata. An object still
            // missing then is missing data, and stays an error.
            Err(Error::Data(e)) if e.kind() == tidefs_chunk::ErrorKind::NotFound => {
                tracing::debug!(ino = h.ino, off, error = %e, "object gone under a read; re-resolving");
                self.changed(h.ino);
                let length = self.cached_length(h.ino).await?;
                if off >= length {
                    return Ok(bytes::Bytes::new());
                }
                let n = u64::from(size).min(length - off);
                gather(self, &self.store, h.ino, off, n as usize, None).await
            }
            other => other,
        }?;
        self.read_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.flat_offer(h.ino, ticket, off, &data).await;
        Ok(data)
    }
}
