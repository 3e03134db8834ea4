//! Reads: file range -> chunks -> resolved slice runs -> block windows.
//!
//! Sequential reads fetch whole blocks (kept in the block cache) and prefetch the next block of
//! the slice; small random reads of uncompressed blocks use ranged reads and leave the cache alone.

use super::error::Result;
use bytes::Bytes;
use futures::future::try_join_all;
use tidefs_chunk::ChunkStore;
use tidefs_meta::{Ino, CHUNK_SIZE};

/// Blocks loaded ahead of a sequential reader (6 x 4 MiB by default: enough to keep the store
/// busy while the kernel consumes one block, well inside the memory cache).
const PREFETCH_BLOCKS: u32 = 6;

/// A piece of the output filled from one slice: `len` bytes at `out_off` from slice offset `soff`.
struct Piece {
    out_off: usize,
    id: u64,
    size: u32,
    soff: u64,
    len: usize,
}

/// Read `n` bytes of `ino` at `off` (the caller has clipped the range to the file length).
pub(crate) async fn read(
    vfs: &super::Vfs,
    store: &ChunkStore,
    ino: Ino,
    off: u64,
    n: usize,
    sequential: bool,
) -> Result<Bytes> {
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
        let data = if sequential || take * 2 >= blen || store.is_cached(id, bindx) {
            let why = if sequential {
                tidefs_chunk::Admit::Sequential
            } else {
                tidefs_chunk::Admit::Random
            };
            let block = store.read_block_for(id, bindx, blen, why).await?;
            if sequential {
                for ahead in 1..=PREFETCH_BLOCKS {
                    prefetch(store, id, size, bindx + ahead, bs);
                }
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

/// Start loading block `bindx` of slice `id` into the cache if the slice has one.
fn prefetch(store: &ChunkStore, id: u64, size: u32, bindx: u32, bs: u64) {
    let start = u64::from(bindx) * bs;
    if start >= u64::from(size) || store.is_cached(id, bindx) {
        return;
    }
    let blen = (u64::from(size) - start).min(bs) as u32;
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.read_block(id, bindx, blen).await {
            tracing::debug!(slice = id, block = bindx, error = %e, "prefetch failed");
        }
    });
}
