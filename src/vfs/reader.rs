//! Reads: file range -> chunks -> resolved slice runs -> block windows.
//!
//! Sequential reads fetch whole blocks (kept in the block cache) and prefetch the blocks after
//! them within the reader's window (see `readahead`); small random reads of uncompressed blocks
//! use ranged reads and leave the cache alone.

use super::error::Result;
use bytes::Bytes;
use futures::future::try_join_all;
use tidefs_chunk::ChunkStore;
use tidefs_meta::{Ino, CHUNK_SIZE};

/// A piece of the output filled from one slice: `len` bytes at `out_off` from slice offset `soff`.
struct Piece {
    out_off: usize,
    id: u64,
    size: u32,
    soff: u64,
    len: usize,
}

/// Read `n` bytes of `ino` at `off` (the caller has clipped the range to the file length);
/// `ahead` is the reader's readahead window and its size in blocks when the read is part of a
/// sequential run.
pub(crate) async fn read(
    vfs: &super::Vfs,
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
        Ok::<_, super::Error>((out_off, data))
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
