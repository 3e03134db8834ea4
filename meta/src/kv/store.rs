//! The transactional key-value interface the KV engine is written against: optimistic
//! transactions with point reads, ordered scans and buffered writes. Two clients implement it:
//! [`super::mem::MemKv`] (in memory, for tests and as the readable template) and TiKV.
//!
//! Contract every client keeps:
//! - a transaction sees its own writes;
//! - `commit` fails with [`ErrorKind::Conflict`] when another transaction changed a key this one
//!   read or wrote (or a key inside a range it scanned) after it began, and then nothing of it
//!   is applied; the caller runs the whole transaction again;
//! - a transaction that is neither committed nor rolled back is rolled back when dropped;
//! - errors are classified where they enter: `Conflict` (run again), `Unavailable` (the
//!   servers cannot be reached; retried for a while), anything else fails the operation.

use crate::error::Result;
use async_trait::async_trait;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// One optimistic transaction.
#[async_trait]
pub trait KvTxn: Send {
    /// The value of `key`.
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The values of `keys`, in their order.
    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }
    /// Up to `limit` pairs with `start <= key < end` in key order (`end` empty: no bound).
    async fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Pair>>;
    /// Set `key` to `value` (applied at commit).
    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()>;
    /// Delete `key` (applied at commit).
    async fn delete(&mut self, key: Vec<u8>) -> Result<()>;
    /// Lock `key` without changing it: the commit conflicts with any transaction that changed
    /// or locked `key` after this one began (and makes later such commits conflict with this
    /// one), as if it were written; its value, or absence, stays. A guard against write skew.
    async fn lock(&mut self, key: Vec<u8>) -> Result<()>;
    /// Apply every write at once, or fail and apply none.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Drop every write.
    async fn rollback(self: Box<Self>);
}

/// A transactional KV store.
#[async_trait]
pub trait KvStore: Send + Sync {
    /// Engine name for messages (`memkv`, `tikv`).
    fn name(&self) -> &'static str;
    /// Begin a transaction.
    async fn begin(&self) -> Result<Box<dyn KvTxn>>;
    /// A read-only view of the latest committed value of each key, for reads that need no
    /// snapshot consistent across keys (point lookups): it may skip what beginning a
    /// transaction costs (TiKV: a timestamp from PD). Writes in it fail. Default: a transaction.
    async fn begin_latest(&self) -> Result<Box<dyn KvTxn>> {
        self.begin().await
    }
    /// Delete every key in `[start, end)`, outside any transaction (destroying a volume).
    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()>;
    /// Periodic upkeep of the store, run by a mount's cleanup job (TiKV: advance the GC safe
    /// point, so old MVCC versions are dropped).
    async fn maintain(&self) -> Result<()> {
        Ok(())
    }
}
