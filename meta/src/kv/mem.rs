//! `memkv://`: an in-memory transactional KV store, the reference client of the KV engine and
//! the template for new ones. It is not durable and not shared between processes.
//!
//! Concurrency control is optimistic, as TiKV's: a transaction reads the latest committed
//! values, buffers its writes, and at commit is checked against everything committed since it
//! began: a key it read or wrote, or any key inside a range it scanned (deletions leave
//! versioned tombstones for this), that changed meanwhile makes the commit fail with a
//! conflict. That makes committed transactions serializable. Tests can inject conflicts to
//! exercise the retry loop.

use super::store::{KvStore, KvTxn, Pair};
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug)]
struct Versioned {
    /// None: deleted (a tombstone, kept while a transaction that began before may check it).
    value: Option<Vec<u8>>,
    version: u64,
}

#[derive(Debug, Default)]
struct State {
    data: BTreeMap<Vec<u8>, Versioned>,
    /// Version of the last commit.
    version: u64,
    /// Start versions of open transactions (with counts).
    open: BTreeMap<u64, usize>,
    commits_since_sweep: u64,
}

impl State {
    fn changed_after(&self, key: &[u8], start: u64) -> bool {
        self.data.get(key).is_some_and(|v| v.version > start)
    }

    fn end(&mut self, start: u64) {
        if let Some(n) = self.open.get_mut(&start) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&start);
            }
        }
    }

    /// Drop tombstones no open transaction can need.
    fn sweep(&mut self) {
        let oldest = self.open.keys().next().copied().unwrap_or(self.version);
        self.data
            .retain(|_, v| v.value.is_some() || v.version > oldest);
    }
}

/// The in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemKv {
    state: Arc<Mutex<State>>,
    /// Commits to fail with a conflict before the next real one (tests).
    inject: Arc<AtomicU64>,
    /// Conflicts answered so far.
    conflicts: Arc<AtomicU64>,
}

impl MemKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store named `name` in this process (`memkv://<name>`), made empty on first use:
    /// every engine opened with the same URL in one process shares it.
    pub fn named(name: &str) -> Arc<Self> {
        static STORES: std::sync::OnceLock<Mutex<std::collections::HashMap<String, Arc<MemKv>>>> =
            std::sync::OnceLock::new();
        let all = STORES.get_or_init(|| Mutex::new(std::collections::HashMap::new()));
        let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(name.to_string())
            .or_insert_with(|| Arc::new(MemKv::new()))
            .clone()
    }

    /// Make the next `n` commits fail with a conflict (to test retries).
    pub fn inject_conflicts(&self, n: u64) {
        self.inject.store(n, Ordering::Relaxed);
    }

    /// Conflicts answered since the store was made.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Every live pair in key order (tests, debugging).
    pub fn snapshot(&self) -> Vec<Pair> {
        lock(&self.state)
            .data
            .iter()
            .filter_map(|(k, v)| v.value.as_ref().map(|val| (k.clone(), val.clone())))
            .collect()
    }

    /// Number of live keys (tests).
    pub fn len(&self) -> usize {
        lock(&self.state)
            .data
            .values()
            .filter(|v| v.value.is_some())
            .count()
    }

    /// Whether the store holds no live key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // every change to the state is made whole under the lock: a panic elsewhere leaves it usable
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl KvStore for MemKv {
    fn name(&self) -> &'static str {
        "memkv"
    }

    async fn begin(&self) -> Result<Box<dyn KvTxn>> {
        let start = {
            let mut s = lock(&self.state);
            let v = s.version;
            *s.open.entry(v).or_default() += 1;
            v
        };
        Ok(Box::new(MemTxn {
            kv: self.clone(),
            start,
            reads: HashSet::new(),
            ranges: Vec::new(),
            writes: BTreeMap::new(),
            locks: HashSet::new(),
            open: true,
        }))
    }

    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut s = lock(&self.state);
        s.version += 1;
        let v = s.version;
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end.to_vec())
        };
        for (_, val) in s.data.range_mut((Bound::Included(start.to_vec()), upper)) {
            val.value = None;
            val.version = v;
        }
        Ok(())
    }
}

/// A transaction of [`MemKv`].
struct MemTxn {
    kv: MemKv,
    start: u64,
    reads: HashSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Buffered writes (None: delete).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Keys locked without a change.
    locks: HashSet<Vec<u8>>,
    open: bool,
}

impl MemTxn {
    fn finish(&mut self) {
        if self.open {
            self.open = false;
            lock(&self.kv.state).end(self.start);
        }
    }
}

impl Drop for MemTxn {
    fn drop(&mut self) {
        self.finish();
    }
}

#[async_trait]
impl KvTxn for MemTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        self.reads.insert(key.to_vec());
        let s = lock(&self.kv.state);
        Ok(s.data.get(key).and_then(|v| v.value.clone()))
    }

    async fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Pair>> {
        let upper = |e: &[u8]| {
            if e.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(e.to_vec())
            }
        };
        let range = (Bound::Included(start.to_vec()), upper(end));
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        {
            let s = lock(&self.kv.state);
            // committed pairs, enough of them to fill `limit` after local deletions
            let mut taken = 0usize;
            for (k, v) in s.data.range(range.clone()) {
                if let Some(val) = &v.value {
                    out.insert(k.clone(), val.clone());
                    taken += 1;
                    if taken >= limit.saturating_add(self.writes.len()) {
                        break;
                    }
                }
            }
        }
        for (k, w) in self.writes.range(range) {
            match w {
                Some(v) => {
                    out.insert(k.clone(), v.clone());
                }
                None => {
                    out.remove(k);
                }
            }
        }
        let pairs: Vec<Pair> = out.into_iter().take(limit).collect();
        // the conflict range is what the caller saw: up to the last key returned, or the
        // whole range when it was not filled
        let seen_end = match pairs.last() {
            Some((k, _)) if pairs.len() == limit => {
                let mut e = k.clone();
                e.push(0);
                e
            }
            _ => end.to_vec(),
        };
        self.ranges.push((start.to_vec(), seen_end));
        Ok(pairs)
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.writes.insert(key, Some(value));
        Ok(())
    }

    async fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.writes.insert(key, None);
        Ok(())
    }

    async fn lock(&mut self, key: Vec<u8>) -> Result<()> {
        self.locks.insert(key);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let kv = self.kv.clone();
        let mut s = lock(&kv.state);
        let injected = kv
            .inject
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let start = self.start;
        let stale_key = self
            .reads
            .iter()
            .chain(self.writes.keys())
            .chain(self.locks.iter())
            .find(|k| s.changed_after(k, start))
            .cloned();
        let stale_range = self.ranges.iter().any(|(a, b)| {
            let upper = if b.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(b.clone())
            };
            s.data
                .range((Bound::Included(a.clone()), upper))
                .any(|(_, v)| v.version > start)
        });
        if injected || stale_key.is_some() || stale_range {
            s.end(start);
            self.open = false;
            kv.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::Conflict,
                if injected {
                    "write conflict (injected by the test)".to_string()
                } else {
                    "write conflict: another transaction changed what this one read".to_string()
                },
            ));
        }
        if !self.writes.is_empty() || !self.locks.is_empty() {
            s.version += 1;
            let v = s.version;
            // a locked key gets the new version and keeps its value (or stays absent: a
            // tombstone, swept like the others)
            for k in std::mem::take(&mut self.locks) {
                if self.writes.contains_key(&k) {
                    continue;
                }
                let entry = s.data.entry(k).or_insert(Versioned {
                    value: None,
                    version: v,
                });
                entry.version = v;
            }
            for (k, w) in std::mem::take(&mut self.writes) {
                s.data.insert(
                    k,
                    Versioned {
                        value: w,
                        version: v,
                    },
                );
            }
        }
        s.end(start);
        self.open = false;
        s.commits_since_sweep += 1;
        if s.commits_since_sweep >= 1024 {
            s.commits_since_sweep = 0;
            s.sweep();
        }
        Ok(())
    }

    async fn rollback(mut self: Box<Self>) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transactions_see_their_writes_and_conflict_on_what_they_read() -> Result<()> {
        let kv = MemKv::new();
        let mut a = kv.begin().await?;
        a.put(b"k1".to_vec(), b"v1".to_vec()).await?;
        assert_eq!(a.get(b"k1").await?, Some(b"v1".to_vec()));
        a.commit().await?;

        // b reads k1, c changes it and commits first: b fails
        let mut b = kv.begin().await?;
        let mut c = kv.begin().await?;
        assert_eq!(b.get(b"k1").await?, Some(b"v1".to_vec()));
        c.put(b"k1".to_vec(), b"v2".to_vec()).await?;
        c.commit().await?;
        b.put(b"k2".to_vec(), b"x".to_vec()).await?;
        let e = b.commit().await.expect_err("conflict");
        assert_eq!(e.kind(), ErrorKind::Conflict);

        // a scan conflicts with an insert inside its range, not outside
        let mut d = kv.begin().await?;
        let got = d.scan(b"k", b"l", 10).await?;
        assert_eq!(got.len(), 1);
        let mut e2 = kv.begin().await?;
        e2.put(b"m".to_vec(), b"outside".to_vec()).await?;
        e2.commit().await?;
        d.put(b"z".to_vec(), b"1".to_vec()).await?;
        d.commit().await?;
        let mut f = kv.begin().await?;
        f.scan(b"k", b"l", 10).await?;
        let mut g = kv.begin().await?;
        g.put(b"k5".to_vec(), b"inside".to_vec()).await?;
        g.commit().await?;
        f.put(b"y".to_vec(), b"1".to_vec()).await?;
        assert!(f.commit().await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn locked_keys_conflict_without_changing() -> Result<()> {
        let kv = MemKv::new();
        let mut t = kv.begin().await?;
        t.put(b"v".to_vec(), b"1".to_vec()).await?;
        t.commit().await?;
        // two transactions lock the same absent key: the second to commit fails
        let mut a = kv.begin().await?;
        let mut b = kv.begin().await?;
        a.lock(b"g".to_vec()).await?;
        b.lock(b"g".to_vec()).await?;
        b.put(b"x".to_vec(), b"1".to_vec()).await?;
        a.commit().await?;
        assert_eq!(
            b.commit().await.expect_err("conflict").kind(),
            ErrorKind::Conflict
        );
        // a lock conflicts with a put after the start, and leaves values as they were
        let mut c = kv.begin().await?;
        c.lock(b"v".to_vec()).await?;
        let mut d = kv.begin().await?;
        d.lock(b"v".to_vec()).await?;
        d.commit().await?;
        assert!(c.commit().await.is_err());
        let mut r = kv.begin().await?;
        assert_eq!(r.get(b"v").await?, Some(b"1".to_vec()));
        assert_eq!(r.get(b"g").await?, None);
        assert!(r
            .scan(b"", b"", 10)
            .await?
            .iter()
            .all(|(k, _)| k.as_slice() != b"g"));
        r.rollback().await;
        Ok(())
    }

    #[tokio::test]
    async fn scans_merge_local_writes_and_respect_limits() -> Result<()> {
        let kv = MemKv::new();
        let mut t = kv.begin().await?;
        for i in 0..5u8 {
            t.put(vec![b'a', i], vec![i]).await?;
        }
        t.commit().await?;
        let mut t = kv.begin().await?;
        t.delete(vec![b'a', 1]).await?;
        t.put(vec![b'a', 9], vec![9]).await?;
        let got: Vec<u8> = t
            .scan(b"a", b"b", 3)
            .await?
            .into_iter()
            .map(|(k, _)| k[1])
            .collect();
        assert_eq!(got, vec![0, 2, 3]);
        let all: Vec<u8> = t
            .scan(b"a", b"", 100)
            .await?
            .into_iter()
            .map(|(k, _)| k[1])
            .collect();
        assert_eq!(all, vec![0, 2, 3, 4, 9]);
        t.rollback().await;
        kv.delete_range(b"a", b"b").await?;
        assert!(kv.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn injected_conflicts_fail_commits_then_stop() -> Result<()> {
        let kv = MemKv::new();
        kv.inject_conflicts(2);
        for _ in 0..2 {
            let mut t = kv.begin().await?;
            t.put(b"a".to_vec(), b"1".to_vec()).await?;
            assert!(t.commit().await.is_err());
        }
        let mut t = kv.begin().await?;
        t.put(b"a".to_vec(), b"1".to_vec()).await?;
        t.commit().await?;
        assert_eq!(kv.conflicts(), 2);
        // a dropped transaction leaves nothing open
        let t = kv.begin().await?;
        drop(t);
        assert!(lock(&kv.state).open.is_empty());
        Ok(())
    }
}
