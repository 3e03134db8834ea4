//! A test double of a TiKV cluster: one PD and one TiKV store in one process, on one gRPC port,
//! speaking the protocol `tikv-client` speaks (servers generated from the `.proto` files that
//! crate ships). **It is not TiKV**: one region covering every key, one store, no Raft, no
//! persistence, no coprocessor, no pessimistic or async-commit transactions. What it does
//! model is what a transactional client depends on:
//!
//! - PD: members (itself as leader), a monotonic TSO stream (physical ms << 18 | logical), the
//!   one region and store, GC safe points;
//! - TiKV: Percolator MVCC over a map of keys, each with an optional lock and its committed
//!   versions: snapshot reads at a timestamp that stop at other transactions' locks, prewrite
//!   with write-conflict and lock checks, commit (idempotent), rollback records, cleanup,
//!   check-txn-status with TTL expiry, resolve-lock, heartbeats, range deletion;
//! - faults for tests: write conflicts, region errors (server busy) and leftover locks of a
//!   dead transaction, injected through [`StandIn`].

#![allow(clippy::result_large_err)]

mod proto {
    #![allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/mods.rs"));
}

use proto::{errorpb, kvrpcpb, metapb, pdpb};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Request, Response, Status};

const CLUSTER_ID: u64 = 0x7469_6465_6673; // "tidefs"
const STORE_ID: u64 = 1;
const REGION_ID: u64 = 2;
const PEER_ID: u64 = 3;
/// Bits of a timestamp that hold the logical part.
const LOGICAL_BITS: u32 = 18;

#[derive(Debug, Clone)]
enum WriteKind {
    Put(Vec<u8>),
    Delete,
    Lock,
    Rollback,
}

#[derive(Debug, Clone)]
struct Write {
    start_ts: u64,
    kind: WriteKind,
}

#[derive(Debug, Clone)]
struct Lock {
    primary: Vec<u8>,
    start_ts: u64,
    ttl: u64,
    op: i32,
    value: Vec<u8>,
    txn_size: u64,
}

#[derive(Debug, Default)]
struct KeyState {
    lock: Option<Lock>,
    /// Committed versions by commit timestamp (rollbacks at their start timestamp).
    writes: BTreeMap<u64, Write>,
}

#[derive(Debug, Default)]
struct Inner {
    keys: BTreeMap<Vec<u8>, KeyState>,
    /// TSO state: last physical ms and logical counter handed out.
    physical: u64,
    logical: u64,
    gc_safe_point: u64,
}

/// Faults to inject and counters of what happened.
#[derive(Debug, Default)]
struct Faults {
    write_conflicts: AtomicU64,
    region_errors: AtomicU64,
    prewrites: AtomicU64,
    conflicts_answered: AtomicU64,
    timestamps: AtomicU64,
}

/// The stand-in cluster. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct StandIn {
    inner: Arc<Mutex<Inner>>,
    faults: Arc<Faults>,
    addr: Arc<Mutex<String>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn physical(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

impl StandIn {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // every change is made whole under the lock
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve PD and TiKV on `addr` (port 0: any free port) in the background; returns the
    /// address to give `tikv-client` as its PD endpoint.
    pub async fn start(addr: &str) -> std::io::Result<(StandIn, SocketAddr)> {
        let me = StandIn::default();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        *me.addr.lock().unwrap_or_else(|p| p.into_inner()) = local.to_string();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let (pd, kv) = (me.clone(), me.clone());
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(pdpb::pd_server::PdServer::new(pd))
                .add_service(proto::tikvpb::tikv_server::TikvServer::new(kv))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "tikv stand-in stopped");
            }
        });
        Ok((me, local))
    }

    /// Make the next `n` prewrites fail with a write conflict.
    pub fn inject_write_conflicts(&self, n: u64) {
        self.faults.write_conflicts.store(n, Ordering::Relaxed);
    }

    /// Answer the next `n` TiKV requests with a region error (server busy).
    pub fn inject_region_errors(&self, n: u64) {
        self.faults.region_errors.store(n, Ordering::Relaxed);
    }

    /// Leave a lock on `key` as a transaction that died after prewrite would: its primary is
    /// `key` itself, with a TTL of `ttl_ms`; readers must wait it out or resolve it.
    pub fn leave_lock(&self, key: &[u8], ttl_ms: u64) {
        let ts = self.next_ts(1);
        let mut g = self.lock();
        g.keys.entry(key.to_vec()).or_default().lock = Some(Lock {
            primary: key.to_vec(),
            start_ts: ts,
            ttl: ttl_ms,
            op: kvrpcpb::Op::Put as i32,
            value: b"left by a dead transaction".to_vec(),
            txn_size: 1,
        });
    }

    /// Prewrites seen and conflicts answered so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.faults.prewrites.load(Ordering::Relaxed),
            self.faults.conflicts_answered.load(Ordering::Relaxed),
        )
    }

    /// Timestamp requests (TSO) answered so far.
    pub fn timestamp_requests(&self) -> u64 {
        self.faults.timestamps.load(Ordering::Relaxed)
    }

    /// The GC safe point clients last set.
    pub fn gc_safe_point(&self) -> u64 {
        self.lock().gc_safe_point
    }

    /// Keys holding at least one committed value or lock (tests).
    pub fn key_count(&self) -> usize {
        self.lock()
            .keys
            .values()
            .filter(|k| k.lock.is_some() || !k.writes.is_empty())
            .count()
    }

    /// Reserve `count` timestamps; returns the last one.
    fn next_ts(&self, count: u64) -> u64 {
        let mut g = self.lock();
        let now = now_ms();
        if now > g.physical {
            g.physical = now;
            g.logical = 0;
        }
        g.logical += count;
        if g.logical >= 1 << LOGICAL_BITS {
            g.physical += 1;
            g.logical = count;
        }
        (g.physical << LOGICAL_BITS) | g.logical
    }

    fn region_error(&self) -> Option<errorpb::Error> {
        let taken = self
            .faults
            .region_errors
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        taken.then(|| errorpb::Error {
            message: "server is busy (injected by the stand-in)".into(),
            server_is_busy: Some(errorpb::ServerIsBusy {
                reason: "injected".into(),
                backoff_ms: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn region(&self) -> metapb::Region {
        metapb::Region {
            id: REGION_ID,
            start_key: Vec::new(),
            end_key: Vec::new(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![self.peer()],
            ..Default::default()
        }
    }

    fn peer(&self) -> metapb::Peer {
        metapb::Peer {
            id: PEER_ID,
            store_id: STORE_ID,
            ..Default::default()
        }
    }

    fn store(&self) -> metapb::Store {
        metapb::Store {
            id: STORE_ID,
            address: self.addr.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            state: metapb::StoreState::Up as i32,
            ..Default::default()
        }
    }

    fn header(&self) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: CLUSTER_ID,
            ..Default::default()
        })
    }
}

fn lock_info(key: &[u8], l: &Lock) -> kvrpcpb::LockInfo {
    kvrpcpb::LockInfo {
        primary_lock: l.primary.clone(),
        lock_version: l.start_ts,
        key: key.to_vec(),
        lock_ttl: l.ttl,
        txn_size: l.txn_size,
        lock_type: l.op,
        ..Default::default()
    }
}

fn locked(key: &[u8], l: &Lock) -> kvrpcpb::KeyError {
    kvrpcpb::KeyError {
        locked: Some(lock_info(key, l)),
        ..Default::default()
    }
}

fn abort(msg: impl Into<String>) -> kvrpcpb::KeyError {
    kvrpcpb::KeyError {
        abort: msg.into(),
        ..Default::default()
    }
}

impl Inner {
    /// The value of `key` at `ts`: Err with the lock when another transaction's lock from
    /// before `ts` is in the way.
    fn read(&self, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>, kvrpcpb::KeyError> {
        let Some(k) = self.keys.get(key) else {
            return Ok(None);
        };
        if let Some(l) = &k.lock {
            // As TiKV does: a read at the largest timestamp ("the latest committed version")
            // passes the lock on a transaction's primary key, whose commit decides the
            // transaction and is not visible yet, but stops at the locks on its other keys.
            let latest_past_primary = ts == u64::MAX && l.primary == key;
            if l.start_ts <= ts && l.op != kvrpcpb::Op::Lock as i32 && !latest_past_primary {
                return Err(locked(key, l));
            }
        }
        for (_, w) in k.writes.range(..=ts).rev() {
            match &w.kind {
                WriteKind::Put(v) => return Ok(Some(v.clone())),
                WriteKind::Delete => return Ok(None),
                WriteKind::Lock | WriteKind::Rollback => continue,
            }
        }
        Ok(None)
    }

    /// The committed write of transaction `start_ts` on `key`: Some(commit_ts) when committed,
    /// Some(0) when rolled back.
    fn outcome(&self, key: &[u8], start_ts: u64) -> Option<u64> {
        let k = self.keys.get(key)?;
        k.writes.iter().find_map(|(cts, w)| {
            (w.start_ts == start_ts).then_some(match w.kind {
                WriteKind::Rollback => 0,
                _ => *cts,
            })
        })
    }

    fn commit_key(
        &mut self,
        key: &[u8],
        start_ts: u64,
        commit_ts: u64,
    ) -> Result<(), kvrpcpb::KeyError> {
        let k = self.keys.entry(key.to_vec()).or_default();
        match k.lock.take() {
            Some(l) if l.start_ts == start_ts => {
                let kind = match kvrpcpb::Op::try_from(l.op) {
                    Ok(kvrpcpb::Op::Put) | Ok(kvrpcpb::Op::Insert) => WriteKind::Put(l.value),
                    Ok(kvrpcpb::Op::Del) => WriteKind::Delete,
                    _ => WriteKind::Lock,
                };
                k.writes.insert(commit_ts, Write { start_ts, kind });
                Ok(())
            }
            other => {
                k.lock = other;
                match self.outcome(key, start_ts) {
                    Some(c) if c > 0 => Ok(()),
                    Some(_) => Err(abort(format!(
                        "txn {start_ts} was rolled back on this key; it cannot commit"
                    ))),
                    None => Err(abort(format!("txn {start_ts} holds no lock on this key"))),
                }
            }
        }
    }

    fn rollback_key(&mut self, key: &[u8], start_ts: u64) -> Result<(), kvrpcpb::KeyError> {
        if let Some(c) = self.outcome(key, start_ts) {
            return if c > 0 {
                Err(abort(format!("txn {start_ts} is already committed")))
            } else {
                Ok(())
            };
        }
        let k = self.keys.entry(key.to_vec()).or_default();
        if k.lock.as_ref().is_some_and(|l| l.start_ts == start_ts) {
            k.lock = None;
        }
        k.writes.insert(
            start_ts,
            Write {
                start_ts,
                kind: WriteKind::Rollback,
            },
        );
        Ok(())
    }
}

type Grpc<T> = Result<Response<T>, Status>;

/// Answer the request with an injected region error, if one is due.
macro_rules! busy_or {
    ($self:expr, $resp:ident) => {
        if let Some(e) = $self.region_error() {
            return Ok(Response::new(kvrpcpb::$resp {
                region_error: Some(e),
                ..Default::default()
            }));
        }
    };
}

#[tonic::async_trait]
impl pdpb::pd_server::Pd for StandIn {
    async fn get_members(
        &self,
        _r: Request<pdpb::GetMembersRequest>,
    ) -> Grpc<pdpb::GetMembersResponse> {
        let url = format!(
            "http://{}",
            self.addr.lock().unwrap_or_else(|p| p.into_inner())
        );
        let me = pdpb::Member {
            name: "tikv-standin".into(),
            member_id: 1,
            peer_urls: vec![url.clone()],
            client_urls: vec![url],
            ..Default::default()
        };
        Ok(Response::new(pdpb::GetMembersResponse {
            header: self.header(),
            members: vec![me.clone()],
            leader: Some(me.clone()),
            etcd_leader: Some(me),
            ..Default::default()
        }))
    }

    async fn tso(
        &self,
        r: Request<tonic::Streaming<pdpb::TsoRequest>>,
    ) -> Grpc<tonic::codegen::BoxStream<pdpb::TsoResponse>> {
        use futures::StreamExt;
        let me = self.clone();
        let out = r.into_inner().map(move |req| {
            let req = req?;
            me.faults.timestamps.fetch_add(1, Ordering::Relaxed);
            let count = u64::from(req.count.max(1));
            let ts = me.next_ts(count);
            Ok(pdpb::TsoResponse {
                header: me.header(),
                count: req.count.max(1),
                timestamp: Some(pdpb::Timestamp {
                    physical: physical(ts) as i64,
                    logical: (ts & ((1 << LOGICAL_BITS) - 1)) as i64,
                    ..Default::default()
                }),
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_store(&self, _r: Request<pdpb::GetStoreRequest>) -> Grpc<pdpb::GetStoreResponse> {
        Ok(Response::new(pdpb::GetStoreResponse {
            header: self.header(),
            store: Some(self.store()),
            ..Default::default()
        }))
    }

    async fn get_all_stores(
        &self,
        _r: Request<pdpb::GetAllStoresRequest>,
    ) -> Grpc<pdpb::GetAllStoresResponse> {
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: self.header(),
            stores: vec![self.store()],
        }))
    }

    async fn get_region(
        &self,
        _r: Request<pdpb::GetRegionRequest>,
    ) -> Grpc<pdpb::GetRegionResponse> {
        Ok(Response::new(pdpb::GetRegionResponse {
            header: self.header(),
            region: Some(self.region()),
            leader: Some(self.peer()),
            ..Default::default()
        }))
    }

    async fn get_region_by_id(
        &self,
        _r: Request<pdpb::GetRegionByIdRequest>,
    ) -> Grpc<pdpb::GetRegionResponse> {
        Ok(Response::new(pdpb::GetRegionResponse {
            header: self.header(),
            region: Some(self.region()),
            leader: Some(self.peer()),
            ..Default::default()
        }))
    }

    async fn scan_regions(
        &self,
        _r: Request<pdpb::ScanRegionsRequest>,
    ) -> Grpc<pdpb::ScanRegionsResponse> {
        Ok(Response::new(pdpb::ScanRegionsResponse {
            header: self.header(),
            regions: vec![pdpb::Region {
                region: Some(self.region()),
                leader: Some(self.peer()),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    async fn get_gc_safe_point(
        &self,
        _r: Request<pdpb::GetGcSafePointRequest>,
    ) -> Grpc<pdpb::GetGcSafePointResponse> {
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: self.header(),
            safe_point: self.lock().gc_safe_point,
        }))
    }

    async fn update_gc_safe_point(
        &self,
        r: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Grpc<pdpb::UpdateGcSafePointResponse> {
        let want = r.into_inner().safe_point;
        let mut g = self.lock();
        if want > g.gc_safe_point {
            g.gc_safe_point = want;
            // drop versions no reader at or after the safe point can see
            for k in g.keys.values_mut() {
                let keep_from = k
                    .writes
                    .range(..=want)
                    .rev()
                    .find(|(_, w)| matches!(w.kind, WriteKind::Put(_) | WriteKind::Delete))
                    .map(|(c, _)| *c);
                if let Some(from) = keep_from {
                    k.writes = k.writes.split_off(&from);
                }
            }
            g.keys.retain(|_, k| {
                k.lock.is_some()
                    || k.writes
                        .values()
                        .any(|w| !matches!(w.kind, WriteKind::Delete))
            });
        }
        let now = g.gc_safe_point;
        Ok(Response::new(pdpb::UpdateGcSafePointResponse {
            header: self.header(),
            new_safe_point: now,
        }))
    }
}

#[tonic::async_trait]
impl proto::tikvpb::tikv_server::Tikv for StandIn {
    async fn kv_get(&self, r: Request<kvrpcpb::GetRequest>) -> Grpc<kvrpcpb::GetResponse> {
        busy_or!(self, GetResponse);
        let r = r.into_inner();
        let g = self.lock();
        Ok(Response::new(match g.read(&r.key, r.version) {
            Ok(Some(v)) => kvrpcpb::GetResponse {
                value: v,
                ..Default::default()
            },
            Ok(None) => kvrpcpb::GetResponse {
                not_found: true,
                ..Default::default()
            },
            Err(e) => kvrpcpb::GetResponse {
                error: Some(e),
                ..Default::default()
            },
        }))
    }

    async fn kv_batch_get(
        &self,
        r: Request<kvrpcpb::BatchGetRequest>,
    ) -> Grpc<kvrpcpb::BatchGetResponse> {
        busy_or!(self, BatchGetResponse);
        let r = r.into_inner();
        let g = self.lock();
        let mut pairs = Vec::new();
        for key in r.keys {
            match g.read(&key, r.version) {
                Ok(Some(value)) => pairs.push(kvrpcpb::KvPair {
                    key,
                    value,
                    ..Default::default()
                }),
                Ok(None) => {}
                Err(e) => pairs.push(kvrpcpb::KvPair {
                    key,
                    error: Some(e),
                    ..Default::default()
                }),
            }
        }
        Ok(Response::new(kvrpcpb::BatchGetResponse {
            pairs,
            ..Default::default()
        }))
    }

    async fn kv_scan(&self, r: Request<kvrpcpb::ScanRequest>) -> Grpc<kvrpcpb::ScanResponse> {
        busy_or!(self, ScanResponse);
        let r = r.into_inner();
        let g = self.lock();
        let (lo, hi) = if r.reverse {
            (r.end_key.clone(), r.start_key.clone())
        } else {
            (r.start_key.clone(), r.end_key.clone())
        };
        let upper = if hi.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(hi)
        };
        let keys: Box<dyn Iterator<Item = &Vec<u8>>> = if r.reverse {
            Box::new(
                g.keys
                    .range((Bound::Included(lo), upper))
                    .rev()
                    .map(|(k, _)| k),
            )
        } else {
            Box::new(g.keys.range((Bound::Included(lo), upper)).map(|(k, _)| k))
        };
        let mut pairs = Vec::new();
        for key in keys {
            if pairs.len() >= r.limit as usize {
                break;
            }
            match g.read(key, r.version) {
                Ok(Some(v)) => pairs.push(kvrpcpb::KvPair {
                    key: key.clone(),
                    value: if r.key_only { Vec::new() } else { v },
                    ..Default::default()
                }),
                Ok(None) => {}
                Err(e) => pairs.push(kvrpcpb::KvPair {
                    key: key.clone(),
                    error: Some(e),
                    ..Default::default()
                }),
            }
        }
        Ok(Response::new(kvrpcpb::ScanResponse {
            pairs,
            ..Default::default()
        }))
    }

    async fn kv_prewrite(
        &self,
        r: Request<kvrpcpb::PrewriteRequest>,
    ) -> Grpc<kvrpcpb::PrewriteResponse> {
        busy_or!(self, PrewriteResponse);
        let r = r.into_inner();
        self.faults.prewrites.fetch_add(1, Ordering::Relaxed);
        let inject = self
            .faults
            .write_conflicts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let mut g = self.lock();
        let mut errors = Vec::new();
        for m in &r.mutations {
            let conflict = |conflict_ts: u64, commit_ts: u64| kvrpcpb::KeyError {
                conflict: Some(kvrpcpb::WriteConflict {
                    start_ts: r.start_version,
                    conflict_ts,
                    key: m.key.clone(),
                    primary: r.primary_lock.clone(),
                    conflict_commit_ts: commit_ts,
                    reason: kvrpcpb::write_conflict::Reason::Optimistic as i32,
                }),
                ..Default::default()
            };
            if inject && errors.is_empty() {
                errors.push(conflict(r.start_version, r.start_version));
                continue;
            }
            let Some(k) = g.keys.get(&m.key) else {
                continue;
            };
            if let Some(l) = &k.lock {
                if l.start_ts != r.start_version {
                    errors.push(locked(&m.key, l));
                }
                continue;
            }
            if let Some((cts, w)) = k.writes.iter().next_back() {
                if w.start_ts == r.start_version && matches!(w.kind, WriteKind::Rollback) {
                    errors.push(abort("the transaction was rolled back"));
                } else if *cts >= r.start_version {
                    errors.push(conflict(w.start_ts, *cts));
                }
            }
        }
        if errors.is_empty() {
            for m in r.mutations {
                let k = g.keys.entry(m.key).or_default();
                k.lock = Some(Lock {
                    primary: r.primary_lock.clone(),
                    start_ts: r.start_version,
                    ttl: r.lock_ttl,
                    op: m.op,
                    value: m.value,
                    txn_size: r.txn_size,
                });
            }
        } else if errors.iter().any(|e| e.conflict.is_some()) {
            self.faults
                .conflicts_answered
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(Response::new(kvrpcpb::PrewriteResponse {
            errors,
            ..Default::default()
        }))
    }

    async fn kv_commit(&self, r: Request<kvrpcpb::CommitRequest>) -> Grpc<kvrpcpb::CommitResponse> {
        busy_or!(self, CommitResponse);
        let r = r.into_inner();
        let mut g = self.lock();
        for key in &r.keys {
            if let Err(e) = g.commit_key(key, r.start_version, r.commit_version) {
                return Ok(Response::new(kvrpcpb::CommitResponse {
                    error: Some(e),
                    ..Default::default()
                }));
            }
        }
        Ok(Response::new(kvrpcpb::CommitResponse {
            commit_version: r.commit_version,
            ..Default::default()
        }))
    }

    async fn kv_batch_rollback(
        &self,
        r: Request<kvrpcpb::BatchRollbackRequest>,
    ) -> Grpc<kvrpcpb::BatchRollbackResponse> {
        let r = r.into_inner();
        let mut g = self.lock();
        for key in &r.keys {
            if let Err(e) = g.rollback_key(key, r.start_version) {
                return Ok(Response::new(kvrpcpb::BatchRollbackResponse {
                    error: Some(e),
                    ..Default::default()
                }));
            }
        }
        Ok(Response::new(kvrpcpb::BatchRollbackResponse::default()))
    }

    async fn kv_cleanup(
        &self,
        r: Request<kvrpcpb::CleanupRequest>,
    ) -> Grpc<kvrpcpb::CleanupResponse> {
        let r = r.into_inner();
        let mut g = self.lock();
        if let Some(c) = g.outcome(&r.key, r.start_version) {
            return Ok(Response::new(kvrpcpb::CleanupResponse {
                commit_version: c,
                ..Default::default()
            }));
        }
        let lock = g.keys.get(&r.key).and_then(|k| k.lock.clone());
        if let Some(l) = lock.filter(|l| l.start_ts == r.start_version) {
            if physical(r.current_ts) < physical(l.start_ts) + l.ttl {
                return Ok(Response::new(kvrpcpb::CleanupResponse {
                    error: Some(locked(&r.key, &l)),
                    ..Default::default()
                }));
            }
        }
        let res = g.rollback_key(&r.key, r.start_version);
        Ok(Response::new(kvrpcpb::CleanupResponse {
            error: res.err(),
            ..Default::default()
        }))
    }

    async fn kv_check_txn_status(
        &self,
        r: Request<kvrpcpb::CheckTxnStatusRequest>,
    ) -> Grpc<kvrpcpb::CheckTxnStatusResponse> {
        let r = r.into_inner();
        let mut g = self.lock();
        let lock = g.keys.get(&r.primary_key).and_then(|k| k.lock.clone());
        if let Some(l) = lock.filter(|l| l.start_ts == r.lock_ts) {
            if physical(r.current_ts) >= physical(l.start_ts) + l.ttl {
                let _ = g.rollback_key(&r.primary_key, r.lock_ts);
                return Ok(Response::new(kvrpcpb::CheckTxnStatusResponse {
                    action: kvrpcpb::Action::TtlExpireRollback as i32,
                    ..Default::default()
                }));
            }
            return Ok(Response::new(kvrpcpb::CheckTxnStatusResponse {
                lock_ttl: l.ttl,
                lock_info: Some(lock_info(&r.primary_key, &l)),
                action: kvrpcpb::Action::NoAction as i32,
                ..Default::default()
            }));
        }
        match g.outcome(&r.primary_key, r.lock_ts) {
            Some(c) => Ok(Response::new(kvrpcpb::CheckTxnStatusResponse {
                commit_version: c,
                action: kvrpcpb::Action::NoAction as i32,
                ..Default::default()
            })),
            None if r.rollback_if_not_exist => {
                let _ = g.rollback_key(&r.primary_key, r.lock_ts);
                Ok(Response::new(kvrpcpb::CheckTxnStatusResponse {
                    action: kvrpcpb::Action::LockNotExistRollback as i32,
                    ..Default::default()
                }))
            }
            None => Ok(Response::new(kvrpcpb::CheckTxnStatusResponse {
                error: Some(kvrpcpb::KeyError {
                    txn_not_found: Some(kvrpcpb::TxnNotFound {
                        start_ts: r.lock_ts,
                        primary_key: r.primary_key,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    async fn kv_resolve_lock(
        &self,
        r: Request<kvrpcpb::ResolveLockRequest>,
    ) -> Grpc<kvrpcpb::ResolveLockResponse> {
        let r = r.into_inner();
        let mut g = self.lock();
        let mut txns: Vec<(u64, u64)> = r.txn_infos.iter().map(|t| (t.txn, t.status)).collect();
        if txns.is_empty() {
            txns.push((r.start_version, r.commit_version));
        }
        for (start, commit) in txns {
            let keys: Vec<Vec<u8>> = if r.keys.is_empty() {
                g.keys
                    .iter()
                    .filter(|(_, k)| k.lock.as_ref().is_some_and(|l| l.start_ts == start))
                    .map(|(key, _)| key.clone())
                    .collect()
            } else {
                r.keys.clone()
            };
            for key in keys {
                let res = if commit > 0 {
                    g.commit_key(&key, start, commit)
                } else {
                    g.rollback_key(&key, start)
                };
                if let Err(e) = res {
                    return Ok(Response::new(kvrpcpb::ResolveLockResponse {
                        error: Some(e),
                        ..Default::default()
                    }));
                }
            }
        }
        Ok(Response::new(kvrpcpb::ResolveLockResponse::default()))
    }

    async fn kv_txn_heart_beat(
        &self,
        r: Request<kvrpcpb::TxnHeartBeatRequest>,
    ) -> Grpc<kvrpcpb::TxnHeartBeatResponse> {
        let r = r.into_inner();
        let mut g = self.lock();
        match g
            .keys
            .get_mut(&r.primary_lock)
            .and_then(|k| k.lock.as_mut())
            .filter(|l| l.start_ts == r.start_version)
        {
            Some(l) => {
                l.ttl = l.ttl.max(r.advise_lock_ttl);
                Ok(Response::new(kvrpcpb::TxnHeartBeatResponse {
                    lock_ttl: l.ttl,
                    ..Default::default()
                }))
            }
            None => Ok(Response::new(kvrpcpb::TxnHeartBeatResponse {
                error: Some(abort("no lock of this transaction")),
                ..Default::default()
            })),
        }
    }

    async fn kv_scan_lock(
        &self,
        r: Request<kvrpcpb::ScanLockRequest>,
    ) -> Grpc<kvrpcpb::ScanLockResponse> {
        let r = r.into_inner();
        let g = self.lock();
        let upper = if r.end_key.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(r.end_key.clone())
        };
        let limit = if r.limit == 0 {
            usize::MAX
        } else {
            r.limit as usize
        };
        let locks = g
            .keys
            .range((Bound::Included(r.start_key.clone()), upper))
            .filter_map(|(k, st)| {
                st.lock
                    .as_ref()
                    .filter(|l| l.start_ts <= r.max_version)
                    .map(|l| lock_info(k, l))
            })
            .take(limit)
            .collect();
        Ok(Response::new(kvrpcpb::ScanLockResponse {
            locks,
            ..Default::default()
        }))
    }

    async fn kv_delete_range(
        &self,
        r: Request<kvrpcpb::DeleteRangeRequest>,
    ) -> Grpc<kvrpcpb::DeleteRangeResponse> {
        let r = r.into_inner();
        self.delete_range(&r.start_key, &r.end_key);
        Ok(Response::new(kvrpcpb::DeleteRangeResponse::default()))
    }

    async fn unsafe_destroy_range(
        &self,
        r: Request<kvrpcpb::UnsafeDestroyRangeRequest>,
    ) -> Grpc<kvrpcpb::UnsafeDestroyRangeResponse> {
        let r = r.into_inner();
        self.delete_range(&r.start_key, &r.end_key);
        Ok(Response::new(kvrpcpb::UnsafeDestroyRangeResponse::default()))
    }
}

impl StandIn {
    fn delete_range(&self, start: &[u8], end: &[u8]) {
        let mut g = self.lock();
        let doomed: Vec<Vec<u8>> = g
            .keys
            .range::<[u8], _>((
                Bound::Included(start),
                if end.is_empty() {
                    Bound::Unbounded
                } else {
                    Bound::Excluded(end)
                },
            ))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            g.keys.remove(&k);
        }
    }
}
