//! `--writeback`: blocks are written to a staging area on the local disk and uploaded in the
//! background after `--upload-delay`; reads find them there meanwhile, a restart resumes their
//! uploads, and `umount --flush` waits for them.

use crate::compress::Compression;
use crate::staging::{Finished, Staging};
use crate::store::ChunkStore;
use bytes::Bytes;
use std::sync::Arc;

/// Blocks written to staging and uploaded in the background (`--writeback`).
pub(crate) struct Writeback {
    pub(crate) staging: Arc<Staging>,
    pub(crate) queue: tokio::sync::mpsc::UnboundedSender<Queued>,
    /// How long a staged block waits before its upload (`--upload-delay`).
    pub(crate) delay: std::time::Duration,
    pub(crate) uploaded: std::sync::atomic::AtomicU64,
    pub(crate) failed: std::sync::atomic::AtomicU64,
    pub(crate) last_error: std::sync::Mutex<Option<String>>,
    /// Staging refusals (full disk, write errors) since mount: those blocks went up at once.
    pub(crate) refused: std::sync::atomic::AtomicU64,
    /// Set by a flush: blocks are uploaded without waiting for their delay.
    pub(crate) hurry: std::sync::atomic::AtomicBool,
    pub(crate) hurried: tokio::sync::Notify,
}

/// A staged block waiting for its upload.
pub(crate) struct Queued {
    /// Object key.
    key: String,
    ready: tokio::time::Instant,
}

/// Pause before a failed upload of a staged block is tried again.
pub(crate) const STAGED_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// State of the `--writeback` uploads of a mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WritebackStats {
    /// Blocks staged and not yet stored.
    pub staged_blocks: u64,
    /// Their bytes.
    pub staged_bytes: u64,
    /// Staged blocks uploaded since mount.
    pub uploaded: u64,
    /// Upload tries that failed since mount (each is tried again).
    pub failed_tries: u64,
    /// The last upload error, if the last try failed.
    pub last_error: Option<String>,
}

impl ChunkStore {
    /// This store writing blocks to `staging` and uploading them in the background, each
    /// after `delay`, at most `max_uploads` at once; blocks a previous mount left staged are
    /// found and queued. Call from inside the runtime, after [`ChunkStore::with_disk_cache`]
    /// (uploaded blocks stay in the disk cache).
    pub fn with_writeback(
        mut self,
        staging: Staging,
        delay: std::time::Duration,
        max_uploads: usize,
    ) -> Self {
        let staging = Arc::new(staging);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let wb = Arc::new(Writeback {
            staging: staging.clone(),
            queue: tx.clone(),
            delay,
            uploaded: Default::default(),
            failed: Default::default(),
            last_error: Default::default(),
            refused: Default::default(),
            hurry: Default::default(),
            hurried: tokio::sync::Notify::new(),
        });
        tokio::spawn(self.clone().run_uploads(wb.clone(), rx, max_uploads.max(1)));
        let name = self.cfg.name.clone();
        tokio::task::spawn_blocking(move || {
            let found = staging.scan();
            if found.is_empty() {
                return;
            }
            let bytes: usize = found.iter().map(|(_, l)| l).sum();
            tracing::info!(
                blocks = found.len(),
                mib = bytes >> 20,
                "uploading blocks an earlier mount left staged"
            );
            let now = tokio::time::Instant::now();
            for (k, _) in found {
                let _ = tx.send(Queued {
                    key: format!("{name}/{k}"),
                    ready: now,
                });
            }
        });
        self.writeback = Some(wb);
        self
    }

    /// Upload staged blocks from now on without waiting for `--upload-delay` (a flush).
    pub fn hurry_uploads(&self) {
        if let Some(wb) = &self.writeback {
            wb.hurry.store(true, std::sync::atomic::Ordering::Relaxed);
            wb.hurried.notify_waiters();
        }
    }

    /// State of the `--writeback` uploads, when on.
    pub fn writeback_stats(&self) -> Option<WritebackStats> {
        use std::sync::atomic::Ordering::Relaxed;
        let wb = self.writeback.as_ref()?;
        let (staged_blocks, staged_bytes) = wb.staging.pending();
        Some(WritebackStats {
            staged_blocks,
            staged_bytes,
            uploaded: wb.uploaded.load(Relaxed),
            failed_tries: wb.failed.load(Relaxed),
            last_error: wb.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }

    /// The uploader of staged blocks: takes them in queue order once their delay is over.
    pub(crate) async fn run_uploads(
        self,
        wb: Arc<Writeback>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Queued>,
        max_uploads: usize,
    ) {
        let slots = Arc::new(tokio::sync::Semaphore::new(max_uploads));
        use std::sync::atomic::Ordering::Relaxed;
        while let Some(q) = rx.recv().await {
            if !wb.hurry.load(Relaxed) {
                let hurried = wb.hurried.notified();
                tokio::pin!(hurried);
                hurried.as_mut().enable();
                if !wb.hurry.load(Relaxed) {
                    tokio::select! {
                        _ = tokio::time::sleep_until(q.ready) => {}
                        _ = hurried => {}
                    }
                }
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (this, wb) = (self.clone(), wb.clone());
            tokio::spawn(async move {
                this.upload_staged(&wb, q).await;
                drop(slot);
            });
        }
    }

    /// Upload one staged block; on failure it is queued again after a pause.
    pub(crate) async fn upload_staged(&self, wb: &Arc<Writeback>, q: Queued) {
        use std::sync::atomic::Ordering::Relaxed;
        let ck = self.cache_key(&q.key).to_string();
        let Some((path, len)) = wb.staging.begin(&ck) else {
            return; // deleted, or uploaded already
        };
        let p = path.clone();
        let data = tokio::task::spawn_blocking(move || {
            crate::blockfile::read_block_file_with_crc(&p, len)
        })
        .await
        .ok()
        .flatten();
        let Some((data, data_crc)) = data else {
            if wb.staging.forget(&ck) {
                tracing::error!(file = %path.display(), object = %q.key, "a staged block cannot be read back (removed or corrupted on the cache disk): its data is lost; fsck will report the object missing");
            }
            return;
        };
        // uncompressed, the stored bytes' CRC32C is the one the staging trailer gave
        let body = match self.cfg.compression {
            Compression::None => Ok((data.clone(), data_crc)),
            c => c.compress(&data).map(|b| (Bytes::from(b), None)),
        };
        let put = match body {
            Ok((body, crc)) => {
                self.patiently("upload", &q.key, None, || {
                    self.put_object(&q.key, body.clone(), crc)
                })
                .await
            }
            Err(e) => Err(e),
        };
        drop(data);
        match put {
            Ok(()) => {
                wb.uploaded.fetch_add(1, Relaxed);
                if let Ok(mut last) = wb.last_error.lock() {
                    *last = None;
                }
                match wb.staging.finish(&ck) {
                    Some(Finished::Deleted(p)) => {
                        let _ = tokio::fs::remove_file(&p).await;
                        if let Err(e) = self.dir.delete(&q.key).await {
                            tracing::warn!(object = %q.key, error = %e, "could not delete the object of a block deleted during its upload; gc will");
                        }
                    }
                    Some(Finished::Done(p)) => {
                        let disk = self.disk.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let kept = disk.is_some_and(|d| d.adopt(&ck, &p, len));
                            if !kept {
                                let _ = std::fs::remove_file(&p);
                            }
                        })
                        .await;
                    }
                    None => {}
                }
            }
            Err(e) => {
                wb.failed.fetch_add(1, Relaxed);
                tracing::warn!(object = %q.key, error = %e, retry_in_s = STAGED_RETRY.as_secs(), "upload of a staged block failed; it stays staged and is tried again");
                if let Ok(mut last) = wb.last_error.lock() {
                    *last = Some(e.to_string());
                }
                if wb.staging.retry_later(&ck) {
                    let queue = wb.queue.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(STAGED_RETRY).await;
                        let _ = queue.send(Queued {
                            ready: tokio::time::Instant::now(),
                            ..q
                        });
                    });
                }
            }
        }
    }

    /// Stage block `key` for a background upload; false when staging refused it (the caller
    /// uploads it now).
    pub(crate) async fn stage(&self, wb: &Arc<Writeback>, key: &str, data: &Bytes) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let (st, ck, d) = (
            wb.staging.clone(),
            self.cache_key(key).to_string(),
            data.clone(),
        );
        match tokio::task::spawn_blocking(move || st.stage(&ck, &d)).await {
            Ok(Ok(())) => {
                let _ = wb.queue.send(Queued {
                    key: key.to_string(),
                    ready: tokio::time::Instant::now() + wb.delay,
                });
                true
            }
            Ok(Err(e)) => {
                let n = wb.refused.fetch_add(1, Relaxed);
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(error = %e, refused = n + 1, "cannot stage a written block (cache disk full or failing?); uploading it now instead");
                }
                false
            }
            Err(_) => false,
        }
    }

    /// A staged block, read from the staging area.
    pub(crate) async fn read_staged(&self, key: &str, len: u32) -> Option<Bytes> {
        let st = self.writeback.as_ref()?.staging.clone();
        let ck = self.cache_key(key).to_string();
        if !st.contains(&ck) {
            return None;
        }
        tokio::task::spawn_blocking(move || st.read(&ck, len as usize))
            .await
            .ok()
            .flatten()
    }
}
