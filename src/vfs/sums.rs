//! Block checksums from the metadata engine, for the chunk store to verify objects against.

use std::sync::Arc;
use tidefs_chunk::sums::SumSource;
use tidefs_meta::Meta;

/// Checksums of slices read from the metadata engine, the recent ones kept in memory (at most
/// 16 384 slices, about 4 KiB each at most).
pub struct MetaSums {
    meta: Arc<dyn Meta>,
    cache: moka::future::Cache<u64, Option<Arc<Vec<u8>>>>,
}

impl MetaSums {
    /// A source over `meta`.
    pub fn new(meta: Arc<dyn Meta>) -> Arc<Self> {
        Arc::new(Self {
            meta,
            cache: moka::future::Cache::new(16_384),
        })
    }
}

impl SumSource for MetaSums {
    fn sums(&self, id: u64) -> futures::future::BoxFuture<'static, Option<Arc<Vec<u8>>>> {
        let (meta, cache) = (self.meta.clone(), self.cache.clone());
        Box::pin(async move {
            if let Some(hit) = cache.get(&id).await {
                return hit;
            }
            // a slice is visible only after the commit that stored its sums, so "none" is
            // final and kept; a failed lookup is not (the read goes on unverified)
            match meta.slice_sums(id).await {
                Ok(found) => {
                    let found = found.map(Arc::new);
                    cache.insert(id, found.clone()).await;
                    found
                }
                Err(e) => {
                    tracing::debug!(slice = id, error = %e, "checksums not readable now; object read unverified");
                    None
                }
            }
        })
    }
}
