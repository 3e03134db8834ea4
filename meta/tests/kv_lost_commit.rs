//! Commits whose answer is lost on the KV engine family: a store that applies the commit and
//! then reports it unavailable, as TiKV reports a commit whose outcome it cannot know (an
//! undetermined commit). A test double around the in-memory store, not TiKV: what it checks is
//! the core's one handling of such commits, the same that `sql_lost_commit.rs` checks through a
//! real database server.

use async_trait::async_trait;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tidefs_meta::kv::keys::Keys;
use tidefs_meta::kv::mem::MemKv;
use tidefs_meta::kv::store::{KvStore, KvTxn, Pair};
use tidefs_meta::kv::KvMeta;
use tidefs_meta::{testkit, Error, ErrorKind, Result, Volume};

#[derive(Default)]
struct Faults {
    armed: AtomicU32,
    lost: AtomicU32,
}

/// A store whose next writing commit, when armed, is applied and its answer lost.
struct LosingStore {
    inner: Arc<MemKv>,
    faults: Arc<Faults>,
}

struct LosingTxn {
    t: Box<dyn KvTxn>,
    faults: Arc<Faults>,
    wrote: bool,
}

#[async_trait]
impl KvStore for LosingStore {
    fn name(&self) -> &'static str {
        "memkv"
    }
    async fn begin(&self) -> Result<Box<dyn KvTxn>> {
        Ok(Box::new(LosingTxn {
            t: self.inner.begin().await?,
            faults: self.faults.clone(),
            wrote: false,
        }))
    }
    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        self.inner.delete_range(start, end).await
    }
}

#[async_trait]
impl KvTxn for LosingTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.t.get(key).await
    }
    async fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Pair>> {
        self.t.scan(start, end, limit).await
    }
    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.wrote = true;
        self.t.put(key, value).await
    }
    async fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.wrote = true;
        self.t.delete(key).await
    }
    async fn lock(&mut self, key: Vec<u8>) -> Result<()> {
        self.t.lock(key).await
    }
    async fn commit(self: Box<Self>) -> Result<()> {
        let (wrote, faults) = (self.wrote, self.faults.clone());
        self.t.commit().await?;
        if wrote && faults.armed.swap(0, Ordering::SeqCst) > 0 {
            faults.lost.fetch_add(1, Ordering::SeqCst);
            return Err(Error::new(
                ErrorKind::Unavailable,
                "commit answer lost (injected by the test)",
            ));
        }
        Ok(())
    }
    async fn rollback(self: Box<Self>) {
        self.t.rollback().await
    }
}

/// The test's handle on the faults.
struct Handle(Arc<Faults>);

impl testkit::lost::Loser for Handle {
    fn arm(&self) {
        self.0.armed.store(1, Ordering::SeqCst);
    }
    fn lost(&self) -> u32 {
        self.0.lost.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn kv_lost_commit_answers() {
    let faults = Arc::new(Faults::default());
    let store = Arc::new(LosingStore {
        inner: MemKv::named("lost-commits"),
        faults: faults.clone(),
    });
    let m: Arc<dyn Volume> = Arc::new(KvMeta::over(store, Keys::new(""), "memkv://lost".into()));
    let mut fmt = testkit::test_format();
    fmt.capacity = 1 << 40;
    m.init(&fmt, false).await.expect("format");
    m.load().await.expect("load");
    testkit::lost::sequence(&m, &Handle(faults)).await;
}
