//! The block store: upload, download (coalesced and cached), delete.

use crate::bucket::{Bucket, ObjectInfo};
use crate::cache::{Admit, DiskCache};
use crate::compress::Compression;
use crate::error::{Error, ErrorKind, Result};
use crate::key::{block_key, block_lens};
use crate::limit::Bandwidth;
use crate::sums::{
    block_sums, first_bad_segment, first_bad_segment_by_parts, whole_crc_by_parts, SumSource,
    SUM_SEGMENT,
};
use crate::writeback::Writeback;
use bytes::Bytes;
use std::sync::Arc;

/// How blocks of one volume are laid out and kept.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Volume name: the key prefix.
    pub name: String,
    /// Block size in bytes.
    pub block_size: u32,
    /// Block compression.
    pub compression: Compression,
    /// Whether keys carry the hash prefix.
    pub hash_prefix: bool,
    /// Bytes of decoded blocks kept in memory.
    pub mem_cache_bytes: u64,
}

/// Blocks of one volume in one object store.
#[derive(Clone)]
pub struct ChunkStore {
    pub(crate) dir: Bucket,
    pub(crate) cfg: Arc<StoreConfig>,
    /// Decoded blocks by (slice id, block index). Concurrent loads of one block are coalesced by
    /// the cache's `try_get_with`, so a block is fetched once however many readers want it.
    pub(crate) cache: moka::future::Cache<(u64, u32), Bytes>,
    /// The local disk cache, when configured.
    pub(crate) disk: Option<Arc<DiskCache>>,
    /// Block checksums to verify objects read from the store against.
    pub(crate) sums: Option<Arc<dyn SumSource>>,
    /// How long an object read or write keeps being tried while the store is unavailable
    /// (each try is the S3 client's own bounded retries).
    pub(crate) patience: std::time::Duration,
    /// Object GETs in flight at once (`--max-downloads`).
    pub(crate) downloads: Arc<tokio::sync::Semaphore>,
    /// Staging and background upload of written blocks (`--writeback`).
    pub(crate) writeback: Option<Arc<Writeback>>,
    /// `--upload-limit` and `--download-limit`.
    pub(crate) limits: Arc<Limits>,
    /// Blocks whose whole-block load is under way (see [`ChunkStore::has_or_loads`]).
    pub(crate) loading: Arc<std::sync::Mutex<std::collections::HashSet<(u64, u32)>>>,
    /// Object reads that returned data, and their bytes, since the store was opened.
    pub downloaded: Arc<Downloaded>,
}

/// What a block read from the object store was verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The checksums tidefs recorded for the block's slice when it was uploaded.
    Sums,
    /// The CRC32C the object was stored with (`x-amz-meta-crc32c`; slices juicefs wrote).
    StoredCrc,
    /// Its length only: no checksum of either kind exists for it.
    Length,
}

/// Counters of successful object GETs (whole and ranged).
#[derive(Debug, Default)]
pub struct Downloaded {
    /// GETs.
    pub gets: std::sync::atomic::AtomicU64,
    /// Their bytes.
    pub bytes: std::sync::atomic::AtomicU64,
}

impl Downloaded {
    pub(crate) fn count(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.gets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(n as u64, Relaxed);
    }
}

/// Marks a block as loading for as long as it lives.
struct Loading<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<(u64, u32)>>,
    block: (u64, u32),
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.block);
        }
    }
}

/// Bandwidth limits of object PUTs and GETs (None: unlimited).
#[derive(Debug, Default)]
pub(crate) struct Limits {
    up: Option<Bandwidth>,
    down: Option<Bandwidth>,
}

/// Default of [`ChunkStore::with_max_downloads`] (JuiceFS's default too).
pub const DEFAULT_MAX_DOWNLOADS: usize = 200;

/// Default of [`ChunkStore::with_patience`]: an object store restart or a network outage of up
/// to two minutes delays reads and writes instead of failing them.
pub const DEFAULT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl ChunkStore {
    /// A store over the bucket `dir`.
    pub fn new(dir: Bucket, cfg: StoreConfig) -> Self {
        // least recently used goes first: blocks fetched ahead are inserted before anyone reads
        // them, and the default TinyLFU admission would turn many of them away (seen once,
        // against blocks read twice) once the cache is full, to be fetched again
        let cache = moka::future::Cache::builder()
            .max_capacity(cfg.mem_cache_bytes.max(1))
            .weigher(|_k: &(u64, u32), v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        Self {
            dir,
            cfg: Arc::new(cfg),
            cache,
            disk: None,
            sums: None,
            patience: DEFAULT_PATIENCE,
            downloads: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_DOWNLOADS)),
            writeback: None,
            limits: Arc::new(Limits::default()),
            loading: Arc::default(),
            downloaded: Arc::default(),
        }
    }

    /// This store sending at most `up_mbps` and receiving at most `down_mbps` megabits per
    /// second of object data (0: no limit), as JuiceFS's `--upload-limit`/`--download-limit`.
    pub fn with_bandwidth(mut self, up_mbps: u64, down_mbps: u64) -> Self {
        self.limits = Arc::new(Limits {
            up: Bandwidth::from_mbps(up_mbps),
            down: Bandwidth::from_mbps(down_mbps),
        });
        self
    }

    /// PUT object `key`, within the upload limit.
    pub(crate) async fn put_object(&self, key: &str, body: Bytes, crc: Option<u32>) -> Result<()> {
        if let Some(b) = &self.limits.up {
            b.take(body.len()).await;
        }
        self.dir.put(key, body, crc).await
    }

    /// GET object `key`, within the download limit (counted once it arrived: its size is not
    /// known before).
    pub(crate) async fn get_object(&self, key: &str) -> Result<(Bytes, Option<u32>)> {
        let got = self.dir.get(key).await?;
        self.downloaded.count(got.0.len());
        if let Some(b) = &self.limits.down {
            b.take(got.0.len()).await;
        }
        Ok(got)
    }

    /// GET the whole object `key` of `len` bytes, within the download limit.
    pub(crate) async fn get_object_exact(
        &self,
        key: &str,
        len: usize,
    ) -> Result<(Bytes, Option<u32>)> {
        if let Some(b) = &self.limits.down {
            b.take(len).await;
        }
        let got = self.dir.get_exact(key, len).await?;
        self.downloaded.count(got.0.len());
        Ok(got)
    }

    /// GET `len` bytes of object `key` from `off`, within the download limit.
    pub(crate) async fn get_object_range(&self, key: &str, off: u64, len: usize) -> Result<Bytes> {
        if let Some(b) = &self.limits.down {
            b.take(len).await;
        }
        let got = self.dir.get_range(key, off, len).await?;
        self.downloaded.count(got.len());
        Ok(got)
    }

    /// This store with at most `n` object GETs in flight (at least 1).
    pub fn with_max_downloads(mut self, n: usize) -> Self {
        self.downloads = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// This store trying object reads and writes for `patience` while the store is
    /// unavailable (zero: one try, which the S3 client already retries a few times).
    pub fn with_patience(mut self, patience: std::time::Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Run `op` on object `key` again while it fails as unavailable, for up to the patience,
    /// with pauses growing from 1 s to 10 s; each try holds one of `slots` when given (the
    /// `--max-downloads` slots for GETs).
    pub(crate) async fn patiently<T, F, Fut>(
        &self,
        what: &str,
        key: &str,
        slots: Option<&tokio::sync::Semaphore>,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut pause = std::time::Duration::from_secs(1);
        loop {
            // a download slot per try when asked (the semaphore is never closed)
            let slot = match slots {
                Some(sem) => sem.acquire().await.ok(),
                None => None,
            };
            let res = op().await;
            drop(slot);
            match res {
                Err(e)
                    if e.kind() == ErrorKind::Unavailable
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::warn!(object = key, error = %e, retry_in_s = pause.as_secs(), "object {what} failed; trying again while the store is unavailable");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(10));
                }
                other => return other,
            }
        }
    }

    /// This store verifying every object it reads against the checksums `src` gives.
    pub fn with_sums(mut self, src: Arc<dyn SumSource>) -> Self {
        self.sums = Some(src);
        self
    }

    pub(crate) async fn lookup_sums(&self, id: u64) -> Option<Arc<Vec<u8>>> {
        match &self.sums {
            Some(src) => src.sums(id).await,
            None => None,
        }
    }

    /// Check bytes `[off, off + data.len())` of block `indx` of slice `id` (object `key`)
    /// against the slice's checksums, when it has them.
    pub(crate) fn verify(
        &self,
        sums: Option<&[u8]>,
        key: &str,
        indx: u32,
        off: usize,
        data: &[u8],
    ) -> Result<()> {
        let Some(sums) = sums else { return Ok(()) };
        match first_bad_segment(sums, self.cfg.block_size, indx, off, data) {
            None => Ok(()),
            Some(bad) => Err(self.corrupt(key, bad)),
        }
    }

    /// The error (logged) of object `key` whose bytes have CRC32C `got` where the store says
    /// they were stored with `want`.
    pub(crate) fn crc_mismatch(&self, key: &str, want: u32, got: u32) -> Error {
        tracing::error!(
            object = key,
            stored_crc32c = want,
            read_crc32c = got,
            "object does not match the CRC32C it was stored with: the object store returned corrupted data"
        );
        Error::new(
            ErrorKind::Corrupt,
            format!("object {key} does not match the CRC32C it was stored with ({want}, read {got}): the object store returned corrupted or truncated data"),
        )
    }

    /// The error (logged) of object `key` failing its checksum at byte `bad`.
    pub(crate) fn corrupt(&self, key: &str, bad: usize) -> Error {
        tracing::error!(
            object = key,
            offset = bad,
            "object failed its checksum: the object store returned corrupted data"
        );
        Error::new(
            ErrorKind::Corrupt,
            format!("object {key} failed its checksum at byte {bad}: the object store returned corrupted or truncated data"),
        )
    }

    /// This store with a local disk cache in front of the object store.
    pub fn with_disk_cache(mut self, disk: DiskCache) -> Self {
        self.disk = disk.enabled().then(|| Arc::new(disk));
        self
    }

    /// The disk cache, if one is in use.
    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.disk.as_deref()
    }

    /// Key of a block in the disk cache: its object key without the volume-name prefix.
    pub(crate) fn cache_key<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(self.cfg.name.as_str())
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(key)
    }

    /// Offer a block to the disk cache, written in the background (dropped when too many
    /// writes are waiting).
    pub(crate) fn cache_later(
        &self,
        key: &str,
        data: &Bytes,
        trailer: Option<Vec<u8>>,
        why: Admit,
    ) {
        let Some(d) = &self.disk else { return };
        if !d.admits(data.len(), why) || !d.reserve(data.len()) {
            return;
        }
        let (d, key, data) = (d.clone(), self.cache_key(key).to_string(), data.clone());
        tokio::task::spawn_blocking(move || {
            d.put_with_trailer(&key, &data, trailer.as_deref());
            d.release(data.len());
        });
    }

    /// Block `key` of `len` bytes from the disk cache, if there.
    pub(crate) async fn read_disk_cache(&self, key: &str, len: u32) -> Option<Bytes> {
        let d = self.disk.clone()?;
        let key = self.cache_key(key).to_string();
        tokio::task::spawn_blocking(move || d.get(&key, len as usize))
            .await
            .ok()
            .flatten()
    }

    /// Whether block `indx` of slice `id` is in the disk cache.
    pub fn is_disk_cached(&self, id: u64, indx: u32, len: u32) -> bool {
        let key = self.key(id, indx, len);
        let ck = self.cache_key(&key);
        self.disk.as_ref().is_some_and(|d| d.contains(ck))
            || self
                .writeback
                .as_ref()
                .is_some_and(|w| w.staging.contains(ck))
    }

    /// Drop block `indx` of slice `id` from the disk cache (and memory).
    pub async fn evict_block(&self, id: u64, indx: u32, len: u32) {
        self.cache.invalidate(&(id, indx)).await;
        let Some(d) = self.disk.clone() else { return };
        let key = self.cache_key(&self.key(id, indx, len)).to_string();
        let _ = tokio::task::spawn_blocking(move || d.remove(&key)).await;
    }

    /// Make sure block `indx` of slice `id` is in the disk cache (fetching it when not), for
    /// `warmup`. Returns whether it had to be fetched.
    pub async fn warm_block(&self, id: u64, indx: u32, len: u32) -> Result<bool> {
        if self.is_disk_cached(id, indx, len) {
            return Ok(false);
        }
        let key = self.key(id, indx, len);
        let (data, trailer, _) = self.fetch_from_store(id, indx, &key, len).await?;
        if let Some(d) = self.disk.clone() {
            let key = self.cache_key(&key).to_string();
            let _ = tokio::task::spawn_blocking(move || {
                d.put_with_trailer(&key, &data, trailer.as_deref())
            })
            .await;
        }
        Ok(true)
    }

    /// The layout settings.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Key of one block.
    pub fn key(&self, id: u64, indx: u32, len: u32) -> String {
        block_key(&self.cfg.name, self.cfg.hash_prefix, id, indx, len)
    }

    /// Check that the object store can be written, read and deleted in.
    pub async fn check(&self) -> Result<()> {
        self.dir.check().await
    }

    /// Store one whole object under `key` (used for `juicefs_uuid`).
    pub async fn put_raw(&self, key: &str, data: Vec<u8>) -> Result<()> {
        self.put_object(key, Bytes::from(data), None).await
    }

    /// Store block `indx` of slice `id`; returns the block's checksums (see [`crate::sums`]).
    pub async fn put_block(&self, id: u64, indx: u32, data: Bytes) -> Result<Vec<u8>> {
        let len = u32::try_from(data.len())
            .map_err(|_| Error::new(ErrorKind::Config, "block larger than 4 GiB"))?;
        let key = self.key(id, indx, len);
        let sums = block_sums(&data);
        if let Some(wb) = &self.writeback {
            if self.stage(wb, &key, &data).await {
                return Ok(sums);
            }
        }
        // the stored bytes' CRC32C: for an uncompressed block, the block sums combined (table
        // lookups) instead of a second pass over 4 MiB
        let (body, crc) = match self.cfg.compression {
            Compression::None => (
                data.clone(),
                whole_crc_by_parts(data.len(), &sums, crate::sums::SUM_SEGMENT),
            ),
            c => (Bytes::from(c.compress(&data)?), None),
        };
        self.patiently("upload", &key, None, || {
            self.put_object(&key, body.clone(), crc)
        })
        .await?;
        // written blocks are not kept in memory: most are not read back by this client, and
        // keeping them would grow the mount by the cache size on every large write; the disk
        // cache takes them when it has one
        self.cache_later(&key, &data, None, Admit::Written);
        Ok(sums)
    }

    /// Whole block `indx` (uncompressed length `len`) of slice `id`, from memory when cached,
    /// read as part of a sequential read.
    pub async fn read_block(&self, id: u64, indx: u32, len: u32) -> Result<Bytes> {
        self.read_block_for(id, indx, len, Admit::Sequential).await
    }

    /// Whole block, saying why it is read (which the disk cache may weigh).
    pub async fn read_block_for(&self, id: u64, indx: u32, len: u32, why: Admit) -> Result<Bytes> {
        let this = self.clone();
        self.cache
            .try_get_with((id, indx), async move {
                this.fetch_block(id, indx, len, why).await
            })
            .await
            .map_err(|e: Arc<Error>| Error::new(e.kind(), e.to_string()))
    }

    /// Whether block `indx` of slice `id` is in the memory cache.
    pub fn is_cached(&self, id: u64, indx: u32) -> bool {
        self.cache.contains_key(&(id, indx))
    }

    /// Whether block `indx` of slice `id` is in the memory cache or being loaded whole (for
    /// another reader, or read ahead): a small read of it then waits for that load rather
    /// than fetching its own range of the same object. Several processes reading one file
    /// share the page cache, so each one's reads skip what the others brought in and look
    /// random; without this they re-fetched ranges of blocks already on their way (15 % more
    /// bytes from the store with eight readers of one model file).
    pub fn has_or_loads(&self, id: u64, indx: u32) -> bool {
        self.is_cached(id, indx) || self.loading.lock().is_ok_and(|s| s.contains(&(id, indx)))
    }

    pub(crate) async fn fetch_block(
        &self,
        id: u64,
        indx: u32,
        len: u32,
        why: Admit,
    ) -> Result<Bytes> {
        // one load per block at a time (the memory cache coalesces callers), so a set will do
        if let Ok(mut s) = self.loading.lock() {
            s.insert((id, indx));
        }
        let _loading = Loading {
            set: &self.loading,
            block: (id, indx),
        };
        let key = self.key(id, indx, len);
        if let Some(b) = self.read_disk_cache(&key, len).await {
            return Ok(b);
        }
        // staged (--writeback) and not uploaded yet: its file becomes a cache file after upload
        if let Some(b) = self.read_staged(&key, len).await {
            return Ok(b);
        }
        let (data, trailer, _) = self.fetch_from_store(id, indx, &key, len).await?;
        self.cache_later(&key, &data, trailer, why);
        Ok(data)
    }

    /// Block `indx` of slice `id` (object `key`, `len` bytes) from the object store, decoded
    /// and checked (length, and checksums when the slice has them, looked up during the GET).
    /// With a disk cache, the block's cache trailer comes along: its CRC32Cs are computed once
    /// and serve both the check here and the cache file.
    pub(crate) async fn fetch_from_store(
        &self,
        id: u64,
        indx: u32,
        key: &str,
        len: u32,
    ) -> Result<(Bytes, Option<Vec<u8>>, Checked)> {
        // the decoded block, and the stored bytes with the CRC32C the store keeps for them
        let get = async {
            let (stored, crc) = match self.cfg.compression {
                // the length is in the key: read exactly that, a shorter object is corrupt
                Compression::None => {
                    self.patiently("read", key, Some(&self.downloads), || {
                        self.get_object_exact(key, len as usize)
                    })
                    .await?
                }
                _ => {
                    self.patiently("read", key, Some(&self.downloads), || self.get_object(key))
                        .await?
                }
            };
            let data = match self.cfg.compression {
                Compression::None => stored.clone(),
                c => c.decompress(&stored, len as usize).map(Bytes::from).map_err(|e| {
                    tracing::error!(object = key, error = %e, "object does not decode: the object store returned corrupted data");
                    Error::new(e.kind(), format!("object {key}: {e}"))
                })?,
            };
            Ok::<_, Error>((data, stored, crc))
        };
        let (got, sums) = tokio::join!(get, self.lookup_sums(id));
        let (data, stored, crc) = got?;
        if data.len() != len as usize {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("object {key} is {} bytes, expected {len}", data.len()),
            ));
        }
        let sums = sums.as_deref().map(|v| v.as_slice());
        let trailer = self.disk.as_ref().map(|_| crate::blockfile::trailer(&data));
        let checked = match (sums.is_some(), crc.is_some()) {
            (true, _) => Checked::Sums,
            (false, true) => Checked::StoredCrc,
            (false, false) => Checked::Length,
        };
        match (sums, &trailer) {
            (Some(sums), Some(trailer)) => {
                let bad = first_bad_segment_by_parts(
                    sums,
                    self.cfg.block_size,
                    indx,
                    data.len(),
                    trailer,
                    crate::blockfile::SEGMENT,
                );
                if let Some(bad) = bad {
                    return Err(self.corrupt(key, bad));
                }
            }
            (Some(_), None) => self.verify(sums, key, indx, 0, &data)?,
            // no sums of ours (a slice juicefs wrote): the CRC32C the object was stored with,
            // when the store kept one; for an uncompressed block with a cache trailer it is
            // the trailer's CRCs combined, not another pass over the bytes
            (None, _) => {
                if let Some(want) = crc {
                    let combined = match (&trailer, self.cfg.compression) {
                        (Some(t), Compression::None) => {
                            whole_crc_by_parts(data.len(), t, crate::blockfile::SEGMENT)
                        }
                        _ => None,
                    };
                    let got = combined.unwrap_or_else(|| crc32c::crc32c(&stored));
                    if got != want {
                        return Err(self.crc_mismatch(key, want, got));
                    }
                }
            }
        }
        Ok((data, trailer, checked))
    }

    /// Read block `indx` of slice `id` from the object store itself (never from a cache),
    /// decode and verify it as a read would, and keep nothing: `fsck --check-data`. Says what
    /// the block was verified against; a bad block is an error of kind `Corrupt`, a missing
    /// one `NotFound`.
    pub async fn check_block(&self, id: u64, indx: u32, len: u32) -> Result<Checked> {
        let key = self.key(id, indx, len);
        self.fetch_from_store(id, indx, &key, len)
            .await
            .map(|(_, _, checked)| checked)
    }

    /// Bytes `[off, off + n)` of block `indx` of slice `id`. Uses a ranged GET, uncached, when the
    /// block is not cached and not compressed: right for small random reads.
    pub async fn read_block_range(
        &self,
        id: u64,
        indx: u32,
        len: u32,
        off: u32,
        n: u32,
    ) -> Result<Bytes> {
        let end = off.checked_add(n).filter(|e| *e <= len).ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!("range {off}+{n} outside block of {len} bytes"),
            )
        })?;
        if let Some(b) = self.cache.get(&(id, indx)).await {
            return Ok(b.slice(off as usize..end as usize));
        }
        if self.cfg.compression != Compression::None {
            let b = self.read_block_for(id, indx, len, Admit::Random).await?;
            return Ok(b.slice(off as usize..end as usize));
        }
        let key = self.key(id, indx, len);
        if let Some(d) = self.disk.clone() {
            let ck = self.cache_key(&key).to_string();
            let got = tokio::task::spawn_blocking(move || {
                d.get_range(&ck, len as usize, off as usize, (end - off) as usize)
            })
            .await
            .ok()
            .flatten();
            if let Some(b) = got {
                return Ok(b);
            }
        }
        if let Some(b) = self.read_staged(&key, len).await {
            return Ok(b.slice(off as usize..end as usize));
        }
        let part = match self.lookup_sums(id).await {
            Some(sums) => {
                // whole checksum segments around the range, verified, then cut to it
                let seg = SUM_SEGMENT as u32;
                let (s0, e0) = (
                    off / seg * seg,
                    end.div_ceil(seg).saturating_mul(seg).min(len),
                );
                let got = self
                    .patiently("read", &key, Some(&self.downloads), || {
                        self.get_object_range(&key, u64::from(s0), (e0 - s0) as usize)
                    })
                    .await?;
                self.verify(Some(&sums), &key, indx, s0 as usize, &got)?;
                got.slice((off - s0) as usize..(end - s0) as usize)
            }
            None => {
                self.patiently("read", &key, Some(&self.downloads), || {
                    self.get_object_range(&key, u64::from(off), (end - off) as usize)
                })
                .await?
            }
        };
        // the whole block goes to the disk cache in the background, for the next read near here
        if let Some(d) = self.disk.clone() {
            if d.admits(len as usize, Admit::Random)
                && !d.contains(self.cache_key(&key))
                && d.reserve(len as usize)
            {
                let this = self.clone();
                tokio::spawn(async move {
                    let _ = this.read_block_for(id, indx, len, Admit::Random).await;
                    d.release(len as usize);
                });
            }
        }
        Ok(part)
    }

    /// Delete every block of slice `id` of `size` bytes (missing blocks are fine).
    pub async fn delete_slice(&self, id: u64, size: u32) -> Result<()> {
        for (indx, len) in block_lens(size, self.cfg.block_size) {
            let key = self.key(id, indx, len);
            self.evict_block(id, indx, len).await;
            if let Some(wb) = &self.writeback {
                let (st, ck) = (wb.staging.clone(), self.cache_key(&key).to_string());
                let _ = tokio::task::spawn_blocking(move || st.discard(&ck)).await;
            }
            self.dir.delete(&key).await?;
        }
        Ok(())
    }

    /// Every object of the volume (under `<name>/`), streamed.
    pub fn list_volume_objects(&self) -> tokio::sync::mpsc::Receiver<Result<ObjectInfo>> {
        self.dir.list(&format!("{}/", self.cfg.name))
    }

    /// Every object under the volume's `chunks/` prefix, streamed.
    pub fn list_objects(&self) -> tokio::sync::mpsc::Receiver<Result<ObjectInfo>> {
        self.dir.list(&format!("{}/chunks/", self.cfg.name))
    }

    /// Delete one object by key (gc), and drop it from the caches when it is a block.
    pub async fn delete_object(&self, key: &str) -> Result<()> {
        if let Some((id, indx, len, false)) = crate::key::parse_block_key(key) {
            self.evict_block(id, indx, len).await;
        }
        self.dir.delete(key).await
    }

    /// Block size of the volume.
    pub fn block_size(&self) -> u32 {
        self.cfg.block_size
    }

    /// Stored size of the object at `key`, or None when missing.
    pub async fn object_size(&self, key: &str) -> Result<Option<u64>> {
        self.dir.size(key).await
    }

    /// Read a whole object (raw bytes).
    pub async fn get_raw(&self, key: &str) -> Result<Bytes> {
        self.get_object(key).await.map(|(b, _)| b)
    }

    /// Make every object stored so far durable (called at fsync).
    pub async fn sync(&self) -> Result<()> {
        self.dir.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::open_bucket;

    fn store(dir: &std::path::Path, c: Compression) -> ChunkStore {
        let bucket = open_bucket("file", &format!("{}/", dir.display())).expect("bucket");
        ChunkStore::new(
            bucket,
            StoreConfig {
                name: "vol".into(),
                block_size: 1 << 16,
                compression: c,
                hash_prefix: false,
                mem_cache_bytes: 1 << 20,
            },
        )
    }

    /// Test double of the metadata engine's checksum table: a fixed map.
    struct FixedSums(std::collections::HashMap<u64, Arc<Vec<u8>>>);

    impl SumSource for FixedSums {
        fn sums(&self, id: u64) -> futures::future::BoxFuture<'static, Option<Arc<Vec<u8>>>> {
            let got = self.0.get(&id).cloned();
            Box::pin(async move { got })
        }
    }

    #[tokio::test]
    async fn objects_are_verified_against_their_checksums() {
        for c in [Compression::None, Compression::Lz4] {
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = |c| StoreConfig {
                name: "vol".into(),
                block_size: 4 * SUM_SEGMENT as u32,
                compression: c,
                hash_prefix: false,
                mem_cache_bytes: 1 << 20,
            };
            let bucket = || open_bucket("file", &format!("{}/", dir.path().display())).expect("b");
            let w = ChunkStore::new(bucket(), cfg(c));
            let len = 4 * SUM_SEGMENT;
            let data: Vec<u8> = (0..len as u32).map(|i| (i * 13 % 251) as u8).collect();
            let sums = w
                .put_block(5, 0, Bytes::from(data.clone()))
                .await
                .expect("put");
            assert_eq!(sums.len(), 16);
            let src = Arc::new(FixedSums([(5u64, Arc::new(sums))].into_iter().collect()));
            let reader = || ChunkStore::new(bucket(), cfg(c)).with_sums(src.clone());
            assert_eq!(
                &reader().read_block(5, 0, len as u32).await.expect("good")[..],
                &data[..]
            );
            // the store flips one byte in the third segment, size unchanged
            let path = dir.path().join(format!("vol/chunks/0/0/5_0_{len}"));
            let mut raw = std::fs::read(&path).expect("object");
            let at = if c == Compression::None {
                2 * SUM_SEGMENT + 9
            } else {
                raw.len() / 2
            };
            raw[at] ^= 0x20;
            std::fs::write(&path, &raw).expect("corrupt");
            let err = reader()
                .read_block(5, 0, len as u32)
                .await
                .expect_err("corrupt block");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            assert!(err.to_string().contains("5_0_"), "names the object: {err}");
            if c == Compression::None {
                // ranged reads check the segments they touch: the first is fine, the third not
                let r = reader();
                let part = r
                    .read_block_range(5, 0, len as u32, 100, 4096)
                    .await
                    .expect("seg 0");
                assert_eq!(&part[..], &data[100..4196]);
                let err = r
                    .read_block_range(5, 0, len as u32, (2 * SUM_SEGMENT + 1) as u32, 10)
                    .await
                    .expect_err("seg 2");
                assert_eq!(err.kind(), ErrorKind::Corrupt);
                // a slice without checksums (written by JuiceFS) is read as it is
                let plain = ChunkStore::new(bucket(), cfg(c));
                assert!(plain.read_block(5, 0, len as u32).await.is_ok());
            }
        }
    }

    #[tokio::test]
    async fn blocks_round_trip_with_each_codec() {
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = store(dir.path(), c);
            let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
            s.put_block(9, 0, Bytes::from(data.clone()))
                .await
                .expect("put");
            assert!(dir.path().join("vol/chunks/0/0/9_0_50000").exists());
            // a fresh store has a cold cache
            let cold = store(dir.path(), c);
            assert_eq!(
                &cold.read_block(9, 0, 50_000).await.expect("get")[..],
                &data[..]
            );
            let r = store(dir.path(), c)
                .read_block_range(9, 0, 50_000, 100, 1000)
                .await
                .expect("range");
            assert_eq!(&r[..], &data[100..1100]);
            cold.delete_slice(9, 50_000).await.expect("delete");
            assert!(!dir.path().join("vol/chunks/0/0/9_0_50000").exists());
        }
    }

    #[tokio::test]
    async fn short_object_is_corrupt_not_wrong_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), Compression::None);
        std::fs::create_dir_all(dir.path().join("vol/chunks/0/0")).expect("mkdir");
        std::fs::write(dir.path().join("vol/chunks/0/0/5_0_100"), [1u8; 60]).expect("write");
        let e = s.read_block(5, 0, 100).await.expect_err("short");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(
            s.read_block(6, 0, 100).await.expect_err("missing").kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn missing_bucket_is_a_config_error() {
        let e = open_bucket("file", "/nonexistent/tidefs/bucket/").expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("does not exist"));
    }
}
