//! Cache warm-up of whole files, for `tidefs warmup` (asked over the mount's control channel):
//! fill the local disk cache with a file's blocks, check how much of it is there, or drop it.

use super::{Result, Vfs};
use futures::stream::{self, StreamExt};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use tidefs_meta::{FileType, Ino, CHUNK_SIZE};

/// What to do with the blocks of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmMode {
    /// Fetch what is not cached yet.
    Fill,
    /// Only count what is cached.
    Check,
    /// Drop the blocks from the cache.
    Evict,
}

impl WarmMode {
    /// From its name in the control protocol.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fill" => Some(Self::Fill),
            "check" => Some(Self::Check),
            "evict" => Some(Self::Evict),
            _ => None,
        }
    }
}

/// What a warm-up did, in bytes of blocks (uncompressed).
#[derive(Debug, Default)]
pub struct WarmReport {
    /// Regular files handled.
    pub files: AtomicU64,
    /// Bytes of the files' blocks.
    pub bytes: AtomicU64,
    /// Bytes that were in the cache already (fill, check) or were dropped (evict).
    pub cached: AtomicU64,
    /// Bytes fetched from the object store (fill).
    pub fetched: AtomicU64,
    /// Blocks that could not be fetched (fill).
    pub failed: AtomicU64,
    /// Inodes that are gone or not regular files.
    pub skipped: AtomicU64,
    /// Files with a flat copy for passthrough reads afterwards (fill on read-only mounts).
    pub flat: AtomicU64,
}

impl WarmReport {
    /// As a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "files": g(&self.files),
            "bytes": g(&self.bytes),
            "cached": g(&self.cached),
            "fetched": g(&self.fetched),
            "failed": g(&self.failed),
            "skipped": g(&self.skipped),
            "flat": g(&self.flat),
        })
    }
}

impl Vfs {
    /// The distinct blocks `(slice id, block index, block length)` holding the data of `ino`.
    async fn blocks_of(&self, ino: Ino, length: u64) -> Result<BTreeSet<(u64, u32, u32)>> {
        let bs = u64::from(self.store.config().block_size);
        let mut out = BTreeSet::new();
        for indx in 0..length.div_ceil(CHUNK_SIZE) {
            let chunk_end = (length - indx * CHUNK_SIZE).min(CHUNK_SIZE);
            for seg in self.segments(ino, indx as u32).await?.iter() {
                if seg.id == 0 || seg.pos >= chunk_end || seg.len == 0 {
                    continue;
                }
                let len = seg.len.min(chunk_end - seg.pos);
                let (first, last) = (seg.off / bs, (seg.off + len - 1) / bs);
                for b in first..=last {
                    let blen = (u64::from(seg.size).saturating_sub(b * bs)).min(bs);
                    if blen > 0 {
                        out.insert((seg.id, b as u32, blen as u32));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Warm (check, evict) the files `inodes` with `threads` block operations at once; `report`
    /// is updated as blocks complete, so a caller can show progress while this runs.
    pub async fn warm(&self, inodes: &[Ino], mode: WarmMode, threads: usize, report: &WarmReport) {
        let mut blocks = Vec::new();
        let mut files = Vec::new();
        for &ino in inodes {
            let attr = match self.meta.getattr(ino).await {
                Ok(a) if a.typ == FileType::File => a,
                _ => {
                    report.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            match self.blocks_of(ino, attr.length).await {
                Ok(b) => {
                    report.files.fetch_add(1, Ordering::Relaxed);
                    blocks.extend(b);
                    if attr.length >= super::flat::FLAT_MIN {
                        files.push(ino);
                    }
                }
                Err(e) => {
                    tracing::warn!(ino, error = %e, "warmup: cannot read the file's slices");
                    report.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let store = &self.store;
        stream::iter(blocks)
            .for_each_concurrent(threads.max(1), |(id, indx, len)| async move {
                let n = u64::from(len);
                match mode {
                    WarmMode::Check => {
                        if store.is_disk_cached(id, indx, len) {
                            report.cached.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    WarmMode::Evict => {
                        if store.is_disk_cached(id, indx, len) {
                            report.cached.fetch_add(n, Ordering::Relaxed);
                        }
                        store.evict_block(id, indx, len).await;
                    }
                    WarmMode::Fill => match store.warm_block(id, indx, len).await {
                        Ok(true) => {
                            report.fetched.fetch_add(n, Ordering::Relaxed);
                        }
                        Ok(false) => {
                            report.cached.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(slice = id, block = indx, error = %e, "warmup: block fetch failed");
                            report.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                }
                report.bytes.fetch_add(n, Ordering::Relaxed);
            })
            .await;
        if mode == WarmMode::Evict {
            if let Some(d) = self.store.disk_cache() {
                for &ino in &files {
                    d.flat_evict(ino);
                }
            }
        }
        if mode == WarmMode::Fill && self.passthrough() {
            // a warmed file of a read-only mount is read by passthrough from its flat copy
            for ino in files {
                match self.flat_fill(ino).await {
                    Ok(true) => {
                        report.flat.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(ino, error = %e, "warmup: no flat copy of the file"),
                }
            }
        }
    }

    /// Whether this mount has a disk cache.
    pub fn has_disk_cache(&self) -> bool {
        self.store.disk_cache().is_some()
    }
}
