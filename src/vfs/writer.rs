//! Write buffering: per open file, writes become slices; full blocks upload as soon as they
//! fill; a slice commits (one metadata transaction appending its record) only after all of its
//! blocks are stored, and slices of one file commit in the order they were started, so the
//! newest-wins rule of the slice list sees them in write order.
//!
//! Memory is bounded by a budget shared by all files (`--buffer-size`): a write that finds the
//! budget exceeded first flushes its own file, which uploads and commits everything it holds.

use super::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tidefs_chunk::ChunkStore;
use tidefs_meta::{ErrorKind, Ino, Meta, Slice, Timestamp, CHUNK_SIZE};
use tokio::task::JoinHandle;

/// Bytes held in write buffers and in uploads under way, shared by all files of a mount, and
/// the number of block uploads allowed at once.
#[derive(Debug)]
pub struct BufferBudget {
    used: AtomicU64,
    limit: u64,
    max_uploads: usize,
    uploads: Arc<tokio::sync::Semaphore>,
    /// Woken whenever an upload finishes and gives its bytes back.
    freed: tokio::sync::Notify,
}

/// Block uploads under way at once per mount (JuiceFS's `--max-uploads` default).
pub const DEFAULT_MAX_UPLOADS: usize = 20;

impl BufferBudget {
    /// A budget of `limit` bytes and `max_uploads` concurrent uploads.
    pub fn new(limit: u64, max_uploads: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit: limit.max(8 << 20),
            max_uploads: max_uploads.max(1),
            uploads: Arc::new(tokio::sync::Semaphore::new(max_uploads.max(1))),
            freed: tokio::sync::Notify::new(),
        })
    }
    fn uploading(&self) -> bool {
        self.uploads.available_permits() < self.max_uploads
    }
    /// Wait while the budget is exceeded and uploads under way will give bytes back; returns
    /// whether it is still exceeded (then only committing buffered data frees memory).
    async fn wait_below(&self) -> bool {
        while self.over() && self.uploading() {
            let woken = self.freed.notified();
            if !self.over() || !self.uploading() {
                break;
            }
            // an upload that finished between the checks and `notified` is caught by the timeout
            let _ = tokio::time::timeout(std::time::Duration::from_millis(20), woken).await;
        }
        self.over()
    }
    fn add(&self, n: usize) {
        self.used.fetch_add(n as u64, Ordering::Relaxed);
    }
    fn sub(&self, n: usize) {
        self.used.fetch_sub(n as u64, Ordering::Relaxed);
        self.freed.notify_waiters();
    }
    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }
    /// Take `n` bytes for a read buffer if the budget stays within `1/div` of its limit.
    pub(crate) fn try_take(&self, n: usize, div: u64) -> bool {
        let cap = self.limit / div.max(1);
        let before = self.used.fetch_add(n as u64, Ordering::Relaxed);
        if before + n as u64 <= cap {
            return true;
        }
        self.sub(n);
        false
    }

    /// Give back bytes of [`BufferBudget::try_take`].
    pub(crate) fn give_back(&self, n: usize) {
        self.sub(n);
    }

    /// Bytes in use now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// One slice being written: bytes `[base, base + data.len())` of the slice are still in memory
/// (less than one block), bytes before `base` are in whole blocks already uploaded or uploading.
struct SliceBuf {
    indx: u32,
    /// Offset of the slice in its chunk.
    pos: u32,
    id: u64,
    base: u32,
    data: Vec<u8>,
    uploads: Vec<JoinHandle<tidefs_chunk::Result<Vec<u8>>>>,
}

impl SliceBuf {
    fn len(&self) -> u32 {
        self.base + self.data.len() as u32
    }
}

#[derive(Default)]
struct State {
    slices: Vec<SliceBuf>,
    /// Largest file offset written and not yet committed.
    length: u64,
    mtime: Option<Timestamp>,
}

/// The write buffer of one inode, shared by all its handles in this mount.
pub struct FileWriter {
    ino: Ino,
    meta: Arc<dyn Meta>,
    store: ChunkStore,
    budget: Arc<BufferBudget>,
    block_size: u32,
    state: tokio::sync::Mutex<State>,
    /// The open file's generation, bumped after each commit so readers drop cached slice lists.
    generation: Arc<AtomicU64>,
    /// Told of each commit (chunks that get many are compacted).
    compactor: Arc<super::compact::Compactor>,
    /// The mount's count of flushes that committed, bumped after each (see `Vfs::overlay`).
    commits: Arc<AtomicU64>,
}

impl FileWriter {
    /// A writer for `ino`.
    pub fn new(
        ino: Ino,
        meta: Arc<dyn Meta>,
        store: ChunkStore,
        budget: Arc<BufferBudget>,
        generation: Arc<AtomicU64>,
        compactor: Arc<super::compact::Compactor>,
        commits: Arc<AtomicU64>,
    ) -> Self {
        let block_size = store.config().block_size;
        Self {
            ino,
            meta,
            store,
            budget,
            block_size,
            state: tokio::sync::Mutex::new(State::default()),
            generation,
            compactor,
            commits,
        }
    }

    /// Length and mtime of uncommitted writes, if any.
    pub async fn pending(&self) -> Option<(u64, Timestamp)> {
        let st = self.state.lock().await;
        if st.slices.is_empty() {
            return None;
        }
        st.mtime.map(|m| (st.length, m))
    }

    /// Whether anything is buffered.
    pub async fn is_dirty(&self) -> bool {
        !self.state.lock().await.slices.is_empty()
    }

    /// Buffer `data` at file offset `off`.
    pub async fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        // Over budget: uploads under way give their bytes back soon, so wait for them first;
        // commit this file's buffers (freeing them) only when that is not enough, e.g. when
        // many files hold partly filled blocks.
        if self.budget.over() && self.budget.wait_below().await {
            self.flush().await?;
        }
        let mut st = self.state.lock().await;
        let mut done = 0usize;
        while done < data.len() {
            let at = off + done as u64;
            let indx = (at / CHUNK_SIZE) as u32;
            let pos = (at % CHUNK_SIZE) as u32;
            let room = (CHUNK_SIZE - u64::from(pos)) as usize;
            let n = room.min(data.len() - done);
            self.write_chunk(&mut st, indx, pos, &data[done..done + n])
                .await?;
            done += n;
        }
        let end = off + data.len() as u64;
        st.length = st.length.max(end);
        st.mtime = Some(Timestamp::now());
        Ok(())
    }

    async fn write_chunk(&self, st: &mut State, indx: u32, pos: u32, data: &[u8]) -> Result<()> {
        // The newest slice of this chunk may take the write if it lands in (or right after) the
        // part of it still in memory; older slices may not, since newer ones would hide it.
        let target = st.slices.iter().rposition(|s| s.indx == indx).filter(|&i| {
            let s = &st.slices[i];
            pos >= s.pos + s.base && pos <= s.pos + s.len()
        });
        let i = match target {
            Some(i) => i,
            None => {
                let id = self.meta.new_slice_id().await?;
                st.slices.push(SliceBuf {
                    indx,
                    pos,
                    id,
                    base: 0,
                    data: Vec::new(),
                    uploads: Vec::new(),
                });
                st.slices.len() - 1
            }
        };
        let bs = self.block_size as usize;
        let s = &mut st.slices[i];
        let mut at = (pos - s.pos - s.base) as usize;
        let mut rest = data;
        while !rest.is_empty() {
            // fill the block in memory, never past its end
            let end = (at + rest.len()).min(bs);
            let n = end - at;
            if end > s.data.len() {
                if s.data.capacity() == 0 {
                    s.data = tidefs_chunk::pool::take(bs);
                } else if s.data.capacity() < bs {
                    s.data.reserve_exact(bs - s.data.len());
                }
                self.budget.add(end - s.data.len());
            }
            if at == s.data.len() {
                // appending (the common case): copy once, no zero fill first
                s.data.extend_from_slice(&rest[..n]);
            } else {
                if end > s.data.len() {
                    s.data.resize(end, 0);
                }
                s.data[at..end].copy_from_slice(&rest[..n]);
            }
            rest = &rest[n..];
            at = end;
            if s.data.len() == bs {
                // a whole block: hand the buffer itself to the upload (no copy), once a slot
                // is free; waiting here is the back-pressure on a writer faster than the store
                let block = std::mem::replace(&mut s.data, tidefs_chunk::pool::take(bs));
                let bindx = s.base / self.block_size;
                s.base += self.block_size;
                at = 0;
                let permit = self
                    .budget
                    .uploads
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::posix(ErrorKind::Engine, "upload queue closed"))?;
                let store = self.store.clone();
                let budget = self.budget.clone();
                let id = s.id;
                s.uploads.push(tokio::spawn(async move {
                    // the buffer goes back to the pool once the upload (and a cache write
                    // of it, if any) is done with it: fresh memory for every block cost a
                    // third of the mount's CPU in a 1 GiB write (page faults and zeroing)
                    let r = store
                        .put_block(id, bindx, tidefs_chunk::pool::into_bytes(block))
                        .await;
                    budget.sub(bs);
                    drop(permit);
                    r
                }));
            }
        }
        Ok(())
    }

    /// Delete, in the background and best effort, the blocks of a slice that will not be
    /// committed. (If this fails too, the objects are unreferenced and left for gc.)
    fn discard(&self, id: u64, size: u32) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.delete_slice(id, size).await {
                tracing::warn!(slice = id, error = %e, "could not delete the blocks of an uncommitted slice");
            }
        });
    }

    /// Upload everything buffered and commit the slices in order. On error the data that failed
    /// is dropped and the error returned, so fsync/close report it.
    pub async fn flush(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        let slices = std::mem::take(&mut st.slices);
        let committing = !slices.is_empty();
        let mut first_err: Option<Error> = None;
        for mut s in slices {
            let size = s.len();
            // checksums of the slice's blocks, in block order: the full ones, then the tail
            let mut sums = Vec::new();
            let mut tail_sums = Vec::new();
            if !s.data.is_empty() {
                let tail = std::mem::take(&mut s.data);
                let n = tail.len();
                let bindx = s.base / self.block_size;
                let r = self
                    .store
                    .put_block(s.id, bindx, tidefs_chunk::pool::into_bytes(tail))
                    .await;
                self.budget.sub(n);
                match r {
                    Ok(t) => tail_sums = t,
                    Err(e) => {
                        first_err.get_or_insert(e.into());
                    }
                }
            }
            for h in s.uploads.drain(..) {
                match h.await {
                    Ok(Ok(block)) => sums.extend(block),
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e.into());
                    }
                    Err(e) => {
                        first_err.get_or_insert(Error::posix(
                            ErrorKind::Engine,
                            format!("upload task failed: {e}"),
                        ));
                    }
                }
            }
            if first_err.is_some() {
                // a failed block leaves the slice incomplete: never commit it, nor anything
                // written after it (the order of records must hold); what was uploaded of it
                // belongs to nobody, so it is deleted rather than left to fill the store
                self.discard(s.id, size);
                continue;
            }
            let rec = Slice {
                pos: s.pos,
                id: s.id,
                size,
                off: 0,
                len: size,
            };
            let mtime = st.mtime.unwrap_or_else(Timestamp::now);
            sums.extend(tail_sums);
            match self
                .meta
                .write_slice(self.ino, s.indx, rec, mtime, &sums)
                .await
            {
                Ok(()) => self.compactor.committed(self.ino, s.indx),
                Err(e) => {
                    first_err.get_or_insert(e.into());
                    self.discard(s.id, size);
                }
            }
        }
        st.length = 0;
        st.mtime = None;
        self.generation.fetch_add(1, Ordering::Relaxed);
        // before the state lock is released: whoever waits in `pending` sees the count moved
        // (an empty flush, as at most closes, commits nothing and moves nothing)
        if committing {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        match first_err {
            Some(e) => {
                tracing::error!(ino = self.ino, error = %e, "writing file data failed");
                Err(e)
            }
            None => Ok(()),
        }
    }
}
