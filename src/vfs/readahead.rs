//! Readahead of blocks for sequential readers: a window per open handle that grows while the
//! reader goes on in sequence and shrinks when memory is short.
//!
//! - A read is sequential when it continues a stream of its handle, or of all the handles of
//!   its file together (readers of one file share the page cache and each sees only the pages
//!   nobody brought in yet: their reads look random one by one, sequential together).
//!
//! - A handle's window starts at one block when its reads turn sequential and doubles each time
//!   the reader enters a new block, up to [`ReadAhead::max_window`]; a random read closes it.
//! - Prefetches of the whole mount are bounded: blocks being fetched ahead (each counted once,
//!   however many readers want it) take their bytes from the mount's buffer budget
//!   (`--buffer-size`, shared with write buffers) and may hold at most half of it, and at most
//!   half the memory block cache (`--mem-cache`), where fetched blocks wait to be read: more
//!   would evict blocks fetched ahead before their reader gets to them. A prefetch refused
//!   for either bound halves the window of the reader that asked.
//! - So memory for reads is the memory cache plus at most half the buffer budget in flight, and
//!   many sequential readers share the bound instead of each holding a fixed window.

use super::writer::BufferBudget;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use tidefs_chunk::ChunkStore;

/// Largest window of one reader, in blocks, whatever the memory cache.
const MAX_WINDOW: u32 = 64;

/// Read streams tracked per handle (a program may read a few places of a file in turn), and
/// per open file for all its handles together.
const STREAMS: usize = 8;

/// Distance from a stream's end within which a read continues it: the kernel's readahead
/// sends several reads at once and FUSE threads serve them in any order.
const NEAR: u64 = 6 << 20;

/// Bytes a stream reads before it counts as sequential (the kernel reads a little ahead of
/// each random read too; that alone must not open a window).
const MIN_RUN: u64 = 512 << 10;

/// One run of reads through a handle.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    /// Furthest end read.
    end: u64,
    /// Bytes read in the run.
    run: u64,
    /// Last use, in reads through the handle (for replacing the oldest).
    used: u64,
    /// Started at offset 0: sequential from its first read.
    from_start: bool,
}

/// The readahead state of one open handle (and, for stream detection only, of one open file).
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Blocks fetched ahead of the reader (0: not sequential).
    blocks: AtomicU32,
    /// File block (offset / block size) of the reader's last sequential read.
    last: AtomicU64,
    streams: parking_lot::Mutex<([Stream; STREAMS], u64)>,
}

impl Window {
    /// Whether a read of `n` bytes at `off` continues a sequential run of this handle. A read
    /// at offset 0 counts (a file read from its start is mostly read whole).
    pub fn is_sequential(&self, off: u64, n: u64) -> bool {
        let mut g = self.streams.lock();
        let (streams, clock) = &mut *g;
        *clock += 1;
        let now = *clock;
        let hit = streams
            .iter_mut()
            .find(|s| s.used > 0 && off + NEAR >= s.end && off <= s.end + NEAR);
        match hit {
            Some(s) => {
                let before = s.run;
                s.end = s.end.max(off + n);
                s.run += n;
                s.used = now;
                s.from_start || before >= MIN_RUN
            }
            None => {
                if let Some(oldest) = streams.iter_mut().min_by_key(|s| s.used) {
                    *oldest = Stream {
                        end: off + n,
                        run: n,
                        used: now,
                        from_start: off == 0,
                    };
                }
                off == 0
            }
        }
    }
}

/// Counters of the readahead, since mount.
#[derive(Debug, Default)]
pub(crate) struct AheadStats {
    /// Blocks fetched ahead.
    pub started: AtomicU64,
    /// Prefetches refused for memory (each halved a window).
    pub refused: AtomicU64,
}

/// The readahead of one mount.
pub(crate) struct ReadAhead {
    budget: Arc<BufferBudget>,
    /// Blocks being fetched ahead now.
    inflight: parking_lot::Mutex<HashSet<(u64, u32)>>,
    /// Their bytes.
    bytes: AtomicU64,
    /// Most bytes fetched ahead at once (half the memory cache).
    limit: u64,
    max_window: u32,
    pub stats: AheadStats,
}

impl ReadAhead {
    /// Readahead for blocks of `block_size` bytes, with a memory block cache of `mem_cache`
    /// bytes and write/read buffers bounded by `budget`.
    pub fn new(budget: Arc<BufferBudget>, mem_cache: u64, block_size: u32) -> Arc<Self> {
        let bs = u64::from(block_size.max(1));
        let half = mem_cache / 2;
        let max_window = u32::try_from((half / bs).max(1))
            .unwrap_or(MAX_WINDOW)
            .min(MAX_WINDOW);
        Arc::new(Self {
            budget,
            inflight: parking_lot::Mutex::new(HashSet::new()),
            bytes: AtomicU64::new(0),
            limit: half.max(bs),
            max_window,
            stats: AheadStats::default(),
        })
    }

    /// Most blocks one reader fetches ahead.
    pub fn max_window(&self) -> u32 {
        self.max_window
    }

    /// Bytes being fetched ahead now.
    pub fn inflight_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A sequential read at file block `fblock` through the handle of `w`: the window to use.
    pub fn sequential(&self, w: &Window, fblock: u64) -> u32 {
        let cur = w.blocks.load(Ordering::Relaxed);
        let last = w.last.fetch_max(fblock, Ordering::Relaxed);
        if cur == 0 || fblock > last {
            let next = if cur == 0 {
                1
            } else {
                (cur * 2).min(self.max_window)
            };
            w.blocks.store(next, Ordering::Relaxed);
            return next;
        }
        cur
    }

    /// A random read through the handle of `w`: no readahead until it is sequential again.
    pub fn random(&self, w: &Window) {
        w.blocks.store(0, Ordering::Relaxed);
    }

    /// Halve the window of `w` (memory is short).
    fn shrink(&self, w: &Window) {
        let cur = w.blocks.load(Ordering::Relaxed);
        w.blocks.store((cur / 2).max(1), Ordering::Relaxed);
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Fetch blocks `from..from + n` of slice `id` (of `size` bytes) into the memory cache in
    /// the background, skipping those cached or under way; stops, halving the window of `w`,
    /// when memory is short.
    pub fn prefetch(
        self: &Arc<Self>,
        w: &Window,
        store: &ChunkStore,
        id: u64,
        size: u32,
        from: u32,
        n: u32,
    ) {
        let bs = u64::from(store.block_size());
        for bindx in from..from.saturating_add(n) {
            let start = u64::from(bindx) * bs;
            if start >= u64::from(size) {
                return;
            }
            if store.has_or_loads(id, bindx) {
                continue;
            }
            let blen = (u64::from(size) - start).min(bs);
            {
                let mut fl = self.inflight.lock();
                if fl.contains(&(id, bindx)) {
                    continue;
                }
                let room = self.bytes.load(Ordering::Relaxed) + blen <= self.limit;
                if !room || !self.budget.try_take(blen as usize, 2) {
                    drop(fl);
                    self.shrink(w);
                    return;
                }
                fl.insert((id, bindx));
                self.bytes.fetch_add(blen, Ordering::Relaxed);
            }
            self.stats.started.fetch_add(1, Ordering::Relaxed);
            let (this, store) = (self.clone(), store.clone());
            tokio::spawn(async move {
                if let Err(e) = store.read_block(id, bindx, blen as u32).await {
                    tracing::debug!(slice = id, block = bindx, error = %e, "prefetch failed");
                }
                this.inflight.lock().remove(&(id, bindx));
                this.bytes.fetch_sub(blen, Ordering::Relaxed);
                this.budget.give_back(blen as usize);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grow_per_new_block_and_close_on_random_reads() {
        let ra = ReadAhead::new(BufferBudget::new(300 << 20, 4), 64 << 20, 4 << 20);
        assert_eq!(ra.max_window(), 8);
        let w = Window::default();
        assert_eq!(ra.sequential(&w, 0), 1);
        // more reads in the same block keep the window
        assert_eq!(ra.sequential(&w, 0), 1);
        let grown: Vec<u32> = (1..6).map(|b| ra.sequential(&w, b)).collect();
        assert_eq!(grown, vec![2, 4, 8, 8, 8]);
        // a read behind the frontier (the kernel's readahead out of order) does not grow it
        assert_eq!(ra.sequential(&w, 3), 8);
        ra.random(&w);
        assert_eq!(ra.sequential(&w, 100), 1);
        ra.shrink(&w);
        assert_eq!(w.blocks.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn runs_turn_sequential_after_a_while_and_scattered_reads_do_not() {
        let w = Window::default();
        assert!(w.is_sequential(0, 4096), "a read from the start");
        assert!(w.is_sequential(4096, 8192), "and on from there");
        // scattered small reads, each followed by a little kernel readahead
        for k in 1..50u64 {
            let off = k * 7_777_777 % (1 << 30);
            assert!(!w.is_sequential(off, 4096), "read {k}");
            assert!(!w.is_sequential(off + 4096, 65536), "readahead of {k}");
        }
        // a run from the middle: sequential once it has read MIN_RUN, out of order or not
        let base = 3u64 << 30;
        let seq: Vec<bool> = (0..8u64)
            .map(|i| w.is_sequential(base + (i ^ 1) * (128 << 10), 128 << 10))
            .collect();
        assert_eq!(seq, [false, false, false, false, true, true, true, true]);
    }

    #[test]
    fn a_small_memory_cache_still_reads_one_block_ahead() {
        let ra = ReadAhead::new(BufferBudget::new(8 << 20, 4), 1 << 20, 4 << 20);
        assert_eq!(ra.max_window(), 1);
        assert_eq!(ra.limit, 4 << 20);
    }
}
