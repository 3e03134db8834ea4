//! TiKV through `tikv-client` (optimistic transactions), behind the KV interface of
//! [`super::store`]. Errors are classified here, where they enter: write conflicts and locks
//! (possibly nested in multi-key errors) are `Conflict`, transport failures and region errors
//! that outlived the client's own retries are `Unavailable`, the rest fails the operation.
//! Every transaction is committed or rolled back; one dropped half way (a cancelled operation)
//! is only logged by the client (its drop check is set to warn, not panic).

use super::latest::LatestReader;
use super::store::{KvStore, KvTxn, Pair};
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use tikv_client::{CheckLevel, TransactionClient, TransactionOptions};

/// A TiKV cluster reached through its PD endpoints.
pub struct TikvStore {
    client: TransactionClient,
    /// Point reads of the latest values straight from region leaders.
    latest: std::sync::Arc<LatestReader>,
    /// How far the GC safe point trails now (zero: this client does not advance it).
    gc_keep: std::time::Duration,
}

/// What a `tikv://` URL says: `tikv://pd1:2379,pd2:2379/volname?ca=..&cert=..&key=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TikvUrl {
    /// PD endpoints.
    pub pd: Vec<String>,
    /// Volume name: the key prefix (with 0xFD).
    pub volume: String,
    /// TLS files (CA, certificate, key), all or none.
    pub tls: Option<(String, String, String)>,
    /// How far the GC safe point trails now (`gc-interval`, default 1 h, `0` disables).
    pub gc_keep: std::time::Duration,
}

impl TikvUrl {
    /// Parse the part of a `tikv://` URL after the scheme.
    pub fn parse(rest: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::config(format!(
                "bad tikv URL: {why}; write it like tikv://pd1:2379,pd2:2379/volname"
            ))
        };
        let (hosts, tail) = rest.split_once('/').ok_or_else(|| bad("no volume name"))?;
        let (volume, query) = match tail.split_once('?') {
            Some((v, q)) => (v, q),
            None => (tail, ""),
        };
        if volume.is_empty() {
            return Err(bad("no volume name"));
        }
        let pd: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        if pd.is_empty() {
            return Err(bad("no PD address"));
        }
        let (mut ca, mut cert, mut key) = (None, None, None);
        let mut gc_keep = std::time::Duration::from_secs(3600);
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "ca" => ca = Some(v.to_string()),
                "cert" => cert = Some(v.to_string()),
                "key" => key = Some(v.to_string()),
                "gc-interval" => {
                    gc_keep = crate::sql::url::parse_duration(v).ok_or_else(|| {
                        bad(&format!(
                            "gc-interval {v:?} is not a duration (e.g. 1h, 30m)"
                        ))
                    })?
                }
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        let tls = match (ca, cert, key) {
            (Some(a), Some(b), Some(c)) => Some((a, b, c)),
            (None, None, None) => None,
            _ => return Err(bad("TLS needs all of ca=, cert= and key=")),
        };
        Ok(Self {
            pd,
            volume: volume.to_string(),
            tls,
            gc_keep,
        })
    }
}

impl TikvStore {
    /// Connect to the PD endpoints of `url`.
    pub async fn connect(url: &TikvUrl) -> Result<Self> {
        let shown = url.pd.join(",");
        let mut config = tikv_client::Config::default();
        if let Some((ca, cert, key)) = &url.tls {
            config = config.with_security(ca, cert, key);
        }
        let client = TransactionClient::new_with_config(url.pd.clone(), config)
            .await
            .map_err(|e| classify("connect", e))
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("cannot reach the TiKV cluster through PD at {shown}: {e}"),
                )
            })?;
        let latest = std::sync::Arc::new(LatestReader::new(&url.pd, url.tls.as_ref())?);
        Ok(Self {
            client,
            latest,
            gc_keep: url.gc_keep,
        })
    }

    /// Point reads answered by the region leaders at the latest timestamp, and those that
    /// fell back to a transaction.
    pub fn latest_reads(&self) -> (u64, u64) {
        self.latest.counts()
    }

    /// Tell the cluster that versions older than `keep` before now may be garbage-collected
    /// (as JuiceFS's clients do; no transaction of this engine runs that long).
    pub async fn advance_gc(&self, keep: std::time::Duration) -> Result<()> {
        let now = self
            .client
            .current_timestamp()
            .await
            .map_err(|e| classify("gc", e))?;
        let keep_ms = keep.as_millis() as i64;
        let ts = tikv_client::Timestamp {
            physical: now.physical - keep_ms,
            logical: 0,
            ..Default::default()
        };
        self.client
            .gc(ts)
            .await
            .map(|_| ())
            .map_err(|e| classify("gc", e))
    }
}

/// Whether `e` (or an error nested in it) is a write conflict or a lock: the transaction may
/// succeed when run again.
fn is_conflict(e: &tikv_client::Error) -> bool {
    use tikv_client::Error as E;
    match e {
        E::KeyError(k) => {
            k.conflict.is_some()
                || k.locked.is_some()
                || !k.retryable.is_empty()
                || k.already_exist.is_some()
                || k.deadlock.is_some()
        }
        E::MultipleKeyErrors(v) | E::ExtractedErrors(v) => v.iter().any(is_conflict),
        E::PessimisticLockError { inner, .. } => is_conflict(inner),
        E::ResolveLockError(_) => true,
        E::TxnNotFound(_) => true,
        _ => false,
    }
}

fn is_unavailable(e: &tikv_client::Error) -> bool {
    use tikv_client::Error as E;
    match e {
        E::Grpc(_) | E::RegionError(_) | E::LeaderNotFound { .. } => true,
        E::GrpcAPI(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        E::MultipleKeyErrors(v) | E::ExtractedErrors(v) => v.iter().any(is_unavailable),
        _ => false,
    }
}

/// Classify an error of `tikv-client` for `op`.
fn classify(op: &str, e: tikv_client::Error) -> Error {
    let kind = if is_conflict(&e) {
        ErrorKind::Conflict
    } else if is_unavailable(&e) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Engine
    };
    Error::new(kind, format!("tikv {op}: {e}"))
}

#[async_trait]
impl KvStore for TikvStore {
    fn name(&self) -> &'static str {
        "tikv"
    }

    async fn begin(&self) -> Result<Box<dyn KvTxn>> {
        let opts = txn_options();
        let txn = self
            .client
            .begin_with_options(opts)
            .await
            .map_err(|e| classify("begin", e))?;
        Ok(Box::new(TikvTxn {
            txn: Some(txn),
            latest: None,
            client: self.client.clone(),
        }))
    }

    async fn begin_latest(&self) -> Result<Box<dyn KvTxn>> {
        // no timestamp yet: point gets go to the region leaders at the latest version; a
        // transaction begins only if one of them, or a scan, needs it
        Ok(Box::new(TikvTxn {
            txn: None,
            latest: Some(self.latest.clone()),
            client: self.client.clone(),
        }))
    }

    async fn maintain(&self) -> Result<()> {
        if self.gc_keep.is_zero() {
            return Ok(());
        }
        self.advance_gc(self.gc_keep).await
    }

    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let range: tikv_client::BoundRange = if end.is_empty() {
            (start.to_vec()..).into()
        } else {
            (start.to_vec()..end.to_vec()).into()
        };
        self.client
            .unsafe_destroy_range(range)
            .await
            .map_err(|e| classify("destroy", e))
    }
}

struct TikvTxn {
    /// None until needed, in a read-only view of the latest values.
    txn: Option<tikv_client::Transaction>,
    /// Set in a read-only view of the latest values.
    latest: Option<std::sync::Arc<LatestReader>>,
    client: TransactionClient,
}

/// Options of every transaction of this adapter: optimistic, and a transaction dropped half
/// way (a cancelled operation) is only logged, never a panic.
fn txn_options() -> TransactionOptions {
    TransactionOptions::new_optimistic().drop_check(CheckLevel::Warn)
}

fn read_only() -> Error {
    Error::new(
        ErrorKind::Engine,
        "tikv: a write in a read-only view of the latest values (a bug in the caller)",
    )
}

impl TikvTxn {
    /// The transaction, begun now if this view had none yet.
    async fn txn(&mut self) -> Result<&mut tikv_client::Transaction> {
        if self.txn.is_none() {
            let opts = txn_options();
            let t = self
                .client
                .begin_with_options(opts)
                .await
                .map_err(|e| classify("begin", e))?;
            self.txn = Some(t);
        }
        self.txn
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Engine, "tikv: no transaction"))
    }

    /// The transaction for a write: never in a read-only view.
    async fn writer(&mut self) -> Result<&mut tikv_client::Transaction> {
        if self.latest.is_some() {
            return Err(read_only());
        }
        self.txn().await
    }
}

#[async_trait]
impl KvTxn for TikvTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(r) = &self.latest {
            if let Some(v) = r.get(key).await {
                return Ok(v);
            }
        }
        self.txn()
            .await?
            .get(key.to_vec())
            .await
            .map_err(|e| classify("get", e))
    }

    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let got: std::collections::HashMap<Vec<u8>, Vec<u8>> = self
            .txn()
            .await?
            .batch_get(keys.to_vec())
            .await
            .map_err(|e| classify("batch get", e))?
            .map(|p| (Vec::<u8>::from(p.0), p.1))
            .collect();
        Ok(keys.iter().map(|k| got.get(k).cloned()).collect())
    }

    async fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Pair>> {
        let range: tikv_client::BoundRange = if end.is_empty() {
            (start.to_vec()..).into()
        } else {
            (start.to_vec()..end.to_vec()).into()
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        Ok(self
            .txn()
            .await?
            .scan(range, limit)
            .await
            .map_err(|e| classify("scan", e))?
            .map(|p| (Vec::<u8>::from(p.0), p.1))
            .collect())
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let t = self.writer().await?;
        t.put(key, value).await.map_err(|e| classify("put", e))
    }

    async fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        let t = self.writer().await?;
        t.delete(key).await.map_err(|e| classify("delete", e))
    }

    async fn lock(&mut self, key: Vec<u8>) -> Result<()> {
        // an optimistic transaction sends it as a Lock mutation at prewrite: TiKV checks it for
        // newer writes like a put and commits a record that carries no value
        self.writer()
            .await?
            .lock_keys([key])
            .await
            .map_err(|e| classify("lock", e))
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let Some(t) = self.txn.as_mut() else {
            return Ok(());
        };
        if self.latest.is_some() {
            // a read-only view: nothing to commit
            let _ = t.rollback().await;
            return Ok(());
        }
        match t.commit().await {
            Ok(_) => Ok(()),
            Err(tikv_client::Error::UndeterminedError(inner)) => {
                // the commit may or may not have been applied: the core runs the operation
                // again, telling it so, and the operation recognises its own effect
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("tikv commit outcome undetermined: {inner}"),
                ))
            }
            Err(e) => {
                let err = classify("commit", e);
                let _ = t.rollback().await;
                Err(err)
            }
        }
    }

    async fn rollback(mut self: Box<Self>) {
        if let Some(t) = self.txn.as_mut() {
            let _ = t.rollback().await;
        }
    }
}
