//! The block store: upload, download (coalesced and cached), delete.

use crate::cache::{Admit, DiskCache};
use crate::compress::Compression;
use crate::error::{Error, ErrorKind, Result};
use crate::key::{block_key, block_lens};
use crate::local::LocalDir;
use crate::s3::{S3Bucket, S3Config};
use crate::sums::{block_sums, first_bad_segment, SumSource, SUM_SEGMENT};
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
    dir: Bucket,
    cfg: Arc<StoreConfig>,
    /// Decoded blocks by (slice id, block index). Concurrent loads of one block are coalesced by
    /// the cache's `try_get_with`, so a block is fetched once however many readers want it.
    cache: moka::future::Cache<(u64, u32), Bytes>,
    /// The local disk cache, when configured.
    disk: Option<Arc<DiskCache>>,
    /// Block checksums to verify objects read from the store against.
    sums: Option<Arc<dyn SumSource>>,
    /// How long an object read or write keeps being tried while the store is unavailable
    /// (each try is the S3 client's own bounded retries).
    patience: std::time::Duration,
    /// Object GETs in flight at once (`--max-downloads`).
    downloads: Arc<tokio::sync::Semaphore>,
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

/// The object store of a volume.
#[derive(Debug, Clone)]
pub enum Bucket {
    /// A local (or locally mounted) directory: `--storage file`.
    Local(LocalDir),
    /// An S3-compatible store: `--storage s3`.
    S3(S3Bucket),
}

/// An object as a listing of the store shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key from the bucket root.
    pub key: String,
    /// Stored size in bytes.
    pub size: u64,
    /// Last modification, when the store reports it.
    pub modified: Option<std::time::SystemTime>,
}

/// Credentials of an object store (empty for `file`).
#[derive(Clone, Default)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: String,
}

/// Open the bucket of a volume's `Storage` and `Bucket` settings (no credentials).
pub fn open_bucket(storage: &str, bucket: &str) -> Result<Bucket> {
    open_bucket_with(storage, bucket, &Credentials::default())
}

/// Open the bucket of a volume's `Storage` and `Bucket` settings with `creds`.
pub fn open_bucket_with(storage: &str, bucket: &str, creds: &Credentials) -> Result<Bucket> {
    match storage {
        "file" => Ok(Bucket::Local(LocalDir::open(bucket)?)),
        "s3" => Ok(Bucket::S3(S3Bucket::open(&S3Config {
            bucket_url: bucket.to_string(),
            access_key: creds.access_key.clone(),
            secret_key: creds.secret_key.clone(),
            session_token: creds.session_token.clone(),
            region: std::env::var("AWS_REGION").unwrap_or_default(),
        })?)),
        other => Err(Error::new(
            ErrorKind::Config,
            format!(
                "storage {other:?} is not supported by this tidefs build: use --storage file or --storage s3"
            ),
        )),
    }
}

impl Bucket {
    /// Check that the store can be written, read and deleted in (format, mount).
    pub async fn check(&self) -> Result<()> {
        match self {
            // opening checked the directory
            Bucket::Local(_) => Ok(()),
            Bucket::S3(b) => b.check().await,
        }
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        match self {
            Bucket::Local(d) => d.put(key, data).await,
            Bucket::S3(b) => b.put(key, data).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        match self {
            Bucket::Local(d) => d.get(key).await,
            Bucket::S3(b) => b.get(key).await,
        }
    }

    async fn get_range(&self, key: &str, off: u64, len: usize) -> Result<Bytes> {
        match self {
            Bucket::Local(d) => d.get_range(key, off, len).await,
            Bucket::S3(b) => b.get_range(key, off, len).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self {
            Bucket::Local(d) => d.delete(key).await,
            Bucket::S3(b) => b.delete(key).await,
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self {
            Bucket::Local(d) => d.size(key).await,
            Bucket::S3(b) => b.size(key).await,
        }
    }

    /// Every object under `prefix`, streamed: at most 1 024 wait in the channel.
    pub fn list(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<Result<ObjectInfo>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        match self {
            Bucket::Local(d) => d.list(prefix, tx),
            Bucket::S3(b) => b.list(prefix, tx),
        }
        rx
    }

    async fn sync(&self) -> Result<()> {
        match self {
            Bucket::Local(d) => d.sync().await,
            // an S3 PUT is durable when it returns
            Bucket::S3(_) => Ok(()),
        }
    }
}

impl ChunkStore {
    /// A store over the bucket `dir`.
    pub fn new(dir: Bucket, cfg: StoreConfig) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(cfg.mem_cache_bytes.max(1))
            .weigher(|_k: &(u64, u32), v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .build();
        Self {
            dir,
            cfg: Arc::new(cfg),
            cache,
            disk: None,
            sums: None,
            patience: DEFAULT_PATIENCE,
            downloads: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_DOWNLOADS)),
        }
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
    async fn patiently<T, F, Fut>(
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

    async fn lookup_sums(&self, id: u64) -> Option<Arc<Vec<u8>>> {
        match &self.sums {
            Some(src) => src.sums(id).await,
            None => None,
        }
    }

    /// Check bytes `[off, off + data.len())` of block `indx` of slice `id` (object `key`)
    /// against the slice's checksums, when it has them.
    fn verify(
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
            Some(bad) => {
                tracing::error!(
                    object = key,
                    offset = bad,
                    "object failed its checksum: the object store returned corrupted data"
                );
                Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("object {key} failed its checksum at byte {bad}: the object store returned corrupted or truncated data"),
                ))
            }
        }
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
    fn cache_key<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(self.cfg.name.as_str())
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(key)
    }

    /// Offer a block to the disk cache, written in the background (dropped when too many
    /// writes are waiting).
    fn cache_later(&self, key: &str, data: &Bytes, why: Admit) {
        let Some(d) = &self.disk else { return };
        if !d.admits(data.len(), why) || !d.reserve(data.len()) {
            return;
        }
        let (d, key, data) = (d.clone(), self.cache_key(key).to_string(), data.clone());
        tokio::task::spawn_blocking(move || {
            d.put(&key, &data);
            d.release(data.len());
        });
    }

    /// Block `key` of `len` bytes from the disk cache, if there.
    async fn read_disk_cache(&self, key: &str, len: u32) -> Option<Bytes> {
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
        self.disk
            .as_ref()
            .is_some_and(|d| d.contains(self.cache_key(&key)))
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
        let data = self.fetch_from_store(id, indx, &key, len).await?;
        if let Some(d) = self.disk.clone() {
            let key = self.cache_key(&key).to_string();
            let _ = tokio::task::spawn_blocking(move || d.put(&key, &data)).await;
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
        self.dir.put(key, Bytes::from(data)).await
    }

    /// Store block `indx` of slice `id`; returns the block's checksums (see [`crate::sums`]).
    pub async fn put_block(&self, id: u64, indx: u32, data: Bytes) -> Result<Vec<u8>> {
        let len = u32::try_from(data.len())
            .map_err(|_| Error::new(ErrorKind::Config, "block larger than 4 GiB"))?;
        let key = self.key(id, indx, len);
        let sums = block_sums(&data);
        let body = match self.cfg.compression {
            Compression::None => data.clone(),
            c => Bytes::from(c.compress(&data)?),
        };
        self.patiently("upload", &key, None, || self.dir.put(&key, body.clone()))
            .await?;
        // written blocks are not kept in memory: most are not read back by this client, and
        // keeping them would grow the mount by the cache size on every large write; the disk
        // cache takes them when it has one
        self.cache_later(&key, &data, Admit::Written);
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

    async fn fetch_block(&self, id: u64, indx: u32, len: u32, why: Admit) -> Result<Bytes> {
        let key = self.key(id, indx, len);
        if let Some(b) = self.read_disk_cache(&key, len).await {
            return Ok(b);
        }
        let data = self.fetch_from_store(id, indx, &key, len).await?;
        self.cache_later(&key, &data, why);
        Ok(data)
    }

    /// Block `indx` of slice `id` (object `key`, `len` bytes) from the object store, decoded
    /// and checked (length, and checksums when the slice has them, looked up during the GET).
    async fn fetch_from_store(&self, id: u64, indx: u32, key: &str, len: u32) -> Result<Bytes> {
        let get = async {
            match self.cfg.compression {
                // the length is in the key: read exactly that, a shorter object is corrupt
                Compression::None => {
                    self.patiently("read", key, Some(&self.downloads), || self.dir.get_range(key, 0, len as usize))
                        .await
                }
                c => c
                    .decompress(
                        &self.patiently("read", key, Some(&self.downloads), || self.dir.get(key)).await?,
                        len as usize,
                    )
                    .map(Bytes::from)
                    .map_err(|e| {
                        tracing::error!(object = key, error = %e, "object does not decode: the object store returned corrupted data");
                        Error::new(e.kind(), format!("object {key}: {e}"))
                    }),
            }
        };
        let (data, sums) = tokio::join!(get, self.lookup_sums(id));
        let data = data?;
        if data.len() != len as usize {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("object {key} is {} bytes, expected {len}", data.len()),
            ));
        }
        self.verify(sums.as_deref().map(|v| v.as_slice()), key, indx, 0, &data)?;
        Ok(data)
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
                        self.dir.get_range(&key, u64::from(s0), (e0 - s0) as usize)
                    })
                    .await?;
                self.verify(Some(&sums), &key, indx, s0 as usize, &got)?;
                got.slice((off - s0) as usize..(end - s0) as usize)
            }
            None => {
                self.patiently("read", &key, Some(&self.downloads), || {
                    self.dir
                        .get_range(&key, u64::from(off), (end - off) as usize)
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
            self.dir.delete(&key).await?;
        }
        Ok(())
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
        self.dir.get(key).await
    }

    /// Make every object stored so far durable (called at fsync).
    pub async fn sync(&self) -> Result<()> {
        self.dir.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
