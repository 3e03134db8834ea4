//! Point reads of the latest committed value without a timestamp from PD.
//!
//! TiKV answers a get at version `u64::MAX` with the latest committed value of the key (it
//! passes the lock of a transaction whose primary key is not committed yet, and reports any
//! other lock). TiDB reads autocommit point lookups that way and JuiceFS its read-only
//! transactions: one round trip to TiKV instead of two (PD's timestamp, then TiKV).
//! tikv-client 0.4 cannot send such a request: `Timestamp::version()` converts through i64 and
//! panics for `u64::MAX`, and its request builders and PD client are private. So this module
//! sends that one request itself. It asks PD (the leader, found through `GetMembers`) which
//! region holds a key and which peer leads it, and where that store listens, caches both, and
//! sends `KvGet` to the leader.
//!
//! Anything but a plain answer — a region error (moved, split, leader changed), a lock in the
//! way, a transport failure, a slow answer — gives `None`, drops what was cached about the
//! region, and the caller reads through a tikv-client transaction instead (which has its own
//! retries, region cache and lock resolution). Only the plain answer is used from here.
//!
//! The few protobuf messages are declared by hand with their field numbers from the
//! `.proto` files tikv-client ships (kvrpcpb, metapb, pdpb); unknown fields are skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long one request may take before the caller falls back.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[allow(missing_docs)]
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RegionEpoch {
        #[prost(uint64, tag = "1")]
        pub conf_ver: u64,
        #[prost(uint64, tag = "2")]
        pub version: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub store_id: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Region {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(bytes = "vec", tag = "2")]
        pub start_key: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub end_key: Vec<u8>,
        #[prost(message, optional, tag = "4")]
        pub region_epoch: Option<RegionEpoch>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Store {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(string, tag = "2")]
        pub address: String,
    }
    /// kvrpcpb.Context (the fields a leader read needs).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Context {
        #[prost(uint64, tag = "1")]
        pub region_id: u64,
        #[prost(message, optional, tag = "2")]
        pub region_epoch: Option<RegionEpoch>,
        #[prost(message, optional, tag = "3")]
        pub peer: Option<Peer>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetRequest {
        #[prost(message, optional, tag = "1")]
        pub context: Option<Context>,
        #[prost(bytes = "vec", tag = "2")]
        pub key: Vec<u8>,
        #[prost(uint64, tag = "3")]
        pub version: u64,
    }
    /// errorpb.Error and kvrpcpb.KeyError: only whether one came matters here.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyError {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetResponse {
        #[prost(message, optional, tag = "1")]
        pub region_error: Option<AnyError>,
        #[prost(message, optional, tag = "2")]
        pub error: Option<AnyError>,
        #[prost(bytes = "vec", tag = "3")]
        pub value: Vec<u8>,
        #[prost(bool, tag = "4")]
        pub not_found: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RequestHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(message, optional, tag = "2")]
        pub error: Option<AnyError>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Member {
        #[prost(string, repeated, tag = "4")]
        pub client_urls: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetMembersRequest {
        #[prost(message, optional, tag = "1")]
        pub header: Option<RequestHeader>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetMembersResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(message, optional, tag = "3")]
        pub leader: Option<Member>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetRegionRequest {
        #[prost(message, optional, tag = "1")]
        pub header: Option<RequestHeader>,
        #[prost(bytes = "vec", tag = "2")]
        pub region_key: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetRegionResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(message, optional, tag = "2")]
        pub region: Option<Region>,
        #[prost(message, optional, tag = "3")]
        pub leader: Option<Peer>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetStoreRequest {
        #[prost(message, optional, tag = "1")]
        pub header: Option<RequestHeader>,
        #[prost(uint64, tag = "2")]
        pub store_id: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetStoreResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(message, optional, tag = "2")]
        pub store: Option<Store>,
    }
}

/// A region as PD describes it, with its bounds in TiKV's encoded key form.
#[derive(Clone)]
struct RegionInfo {
    start: Vec<u8>,
    /// Empty: no upper bound.
    end: Vec<u8>,
    id: u64,
    epoch: pb::RegionEpoch,
    leader: pb::Peer,
}

impl RegionInfo {
    fn holds(&self, encoded: &[u8]) -> bool {
        self.start.as_slice() <= encoded && (self.end.is_empty() || encoded < self.end.as_slice())
    }
}

#[derive(Default)]
struct Cache {
    /// PD leader and the cluster id its answers carry.
    pd: Option<(Channel, u64)>,
    regions: Vec<RegionInfo>,
    stores: HashMap<u64, Channel>,
}

/// Reads the latest committed value of a key straight from the region's leader.
pub struct LatestReader {
    pd_endpoints: Vec<String>,
    tls: Option<ClientTlsConfig>,
    cache: Mutex<Cache>,
    served: AtomicU64,
    fell_back: AtomicU64,
}

/// Why a read was not answered here (logged at debug level; the caller falls back).
type Miss = String;

/// TiKV's order-preserving encoding of a transactional key (as region bounds are kept): groups
/// of 8 bytes, the last padded with zeros, each followed by 0xFF minus its padding.
pub fn encode_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / 8 + 1) * 9);
    let mut i = 0;
    loop {
        let group = &key[i.min(key.len())..(i + 8).min(key.len())];
        let pad = 8 - group.len();
        out.extend_from_slice(group);
        out.extend(std::iter::repeat_n(0u8, pad));
        out.push(0xFF - pad as u8);
        if pad > 0 {
            return out;
        }
        i += 8;
    }
}

async fn unary<Q, R>(ch: &Channel, path: &'static str, req: Q) -> Result<R, Miss>
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.map_err(|e| format!("{path}: {e}"))?;
    let codec = tonic::codec::ProstCodec::<Q, R>::default();
    let call = grpc.unary(
        tonic::Request::new(req),
        PathAndQuery::from_static(path),
        codec,
    );
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(format!("{path}: {status}")),
        Err(_) => Err(format!("{path}: no answer in {REQUEST_TIMEOUT:?}")),
    }
}

fn header_ok(h: &Option<pb::ResponseHeader>) -> Result<(), Miss> {
    match h {
        Some(h) if h.error.is_some() => Err("PD answered with an error".into()),
        _ => Ok(()),
    }
}

impl LatestReader {
    /// A reader for the cluster behind `pd_endpoints` (`host:port`), with the TLS files
    /// (CA, certificate, key) when the cluster needs them.
    pub fn new(
        pd_endpoints: &[String],
        tls: Option<&(String, String, String)>,
    ) -> crate::Result<Self> {
        let tls = match tls {
            None => None,
            Some((ca, cert, key)) => {
                let read = |p: &str| {
                    std::fs::read(p)
                        .map_err(|e| crate::Error::config(format!("cannot read TLS file {p}: {e}")))
                };
                Some(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(read(ca)?))
                        .identity(Identity::from_pem(read(cert)?, read(key)?)),
                )
            }
        };
        Ok(Self {
            pd_endpoints: pd_endpoints.to_vec(),
            tls,
            cache: Mutex::new(Cache::default()),
            served: AtomicU64::new(0),
            fell_back: AtomicU64::new(0),
        })
    }

    /// Reads answered here, and reads left to the caller's fallback.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.fell_back.load(Ordering::Relaxed),
        )
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // the cache holds only hints: one left half-changed by a panic is still usable
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn channel(&self, addr: &str) -> Result<Channel, Miss> {
        let bare = addr
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{bare}"))
            .map_err(|e| format!("address {addr}: {e}"))?
            .connect_timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS for {addr}: {e}"))?;
        }
        Ok(ep.connect_lazy())
    }

    /// The PD leader's channel and the cluster id.
    async fn pd(&self) -> Result<(Channel, u64), Miss> {
        if let Some(pd) = self.cache().pd.clone() {
            return Ok(pd);
        }
        let mut last = String::from("no PD endpoint");
        for ep in &self.pd_endpoints {
            let ch = self.channel(ep)?;
            let got: Result<pb::GetMembersResponse, Miss> = unary(
                &ch,
                "/pdpb.PD/GetMembers",
                pb::GetMembersRequest { header: None },
            )
            .await;
            match got {
                Ok(r) => {
                    header_ok(&r.header)?;
                    let cluster = r.header.map(|h| h.cluster_id).unwrap_or(0);
                    let leader = match r.leader.and_then(|l| l.client_urls.into_iter().next()) {
                        Some(url) => self.channel(&url)?,
                        None => ch,
                    };
                    self.cache().pd = Some((leader.clone(), cluster));
                    return Ok((leader, cluster));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn region(&self, encoded: &[u8]) -> Result<RegionInfo, Miss> {
        if let Some(r) = self.cache().regions.iter().find(|r| r.holds(encoded)) {
            return Ok(r.clone());
        }
        let (pd, cluster) = self.pd().await?;
        let header = Some(pb::RequestHeader {
            cluster_id: cluster,
        });
        let r: pb::GetRegionResponse = match unary(
            &pd,
            "/pdpb.PD/GetRegion",
            pb::GetRegionRequest {
                header,
                region_key: encoded.to_vec(),
            },
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                self.cache().pd = None;
                return Err(e);
            }
        };
        header_ok(&r.header)?;
        let (Some(region), Some(leader)) = (r.region, r.leader) else {
            return Err("PD knows no region or leader for the key".into());
        };
        let info = RegionInfo {
            start: region.start_key,
            end: region.end_key,
            id: region.id,
            epoch: region.region_epoch.unwrap_or_default(),
            leader,
        };
        if !info.holds(encoded) {
            return Err("PD answered with a region that does not hold the key".into());
        }
        let mut c = self.cache();
        c.regions.retain(|r| r.id != info.id);
        if c.regions.len() >= 4096 {
            c.regions.clear();
        }
        c.regions.push(info.clone());
        Ok(info)
    }

    async fn store(&self, id: u64) -> Result<Channel, Miss> {
        if let Some(ch) = self.cache().stores.get(&id) {
            return Ok(ch.clone());
        }
        let (pd, cluster) = self.pd().await?;
        let r: pb::GetStoreResponse = unary(
            &pd,
            "/pdpb.PD/GetStore",
            pb::GetStoreRequest {
                header: Some(pb::RequestHeader {
                    cluster_id: cluster,
                }),
                store_id: id,
            },
        )
        .await?;
        header_ok(&r.header)?;
        let Some(store) = r.store.filter(|s| !s.address.is_empty()) else {
            return Err(format!("PD knows no address of store {id}"));
        };
        let ch = self.channel(&store.address)?;
        self.cache().stores.insert(id, ch.clone());
        Ok(ch)
    }

    fn forget(&self, region: u64, store: u64) {
        let mut c = self.cache();
        c.regions.retain(|r| r.id != region);
        c.stores.remove(&store);
    }

    async fn try_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Miss> {
        let encoded = encode_key(key);
        let region = self.region(&encoded).await?;
        let ch = self.store(region.leader.store_id).await?;
        let req = pb::GetRequest {
            context: Some(pb::Context {
                region_id: region.id,
                region_epoch: Some(region.epoch.clone()),
                peer: Some(region.leader.clone()),
            }),
            key: key.to_vec(),
            version: u64::MAX,
        };
        let r: pb::GetResponse = match unary(&ch, "/tikvpb.Tikv/KvGet", req).await {
            Ok(r) => r,
            Err(e) => {
                self.forget(region.id, region.leader.store_id);
                return Err(e);
            }
        };
        if r.region_error.is_some() {
            self.forget(region.id, region.leader.store_id);
            return Err(format!("region {} error", region.id));
        }
        if r.error.is_some() {
            return Err("the key is locked".into());
        }
        Ok(if r.not_found { None } else { Some(r.value) })
    }

    /// The latest committed value of `key` (`Some(None)`: no such key), or None when the
    /// caller must read it through a transaction.
    pub async fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        match self.try_get(key).await {
            Ok(v) => {
                self.served.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(why) => {
                self.fell_back.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%why, "latest read falls back to a transaction");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encode_key;

    #[test]
    fn keys_encode_in_groups_of_eight() {
        assert_eq!(encode_key(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
        assert_eq!(encode_key(b"abc"), b"abc\0\0\0\0\0\xFA".to_vec());
        assert_eq!(
            encode_key(b"12345678"),
            b"12345678\xFF\0\0\0\0\0\0\0\0\xF7".to_vec()
        );
        // order is kept, a prefix sorts first
        let mut keys: Vec<&[u8]> = vec![b"b", b"a\xFF", b"a", b"abcdefghi", b"abcdefgh"];
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode_key(k)).collect();
        keys.sort();
        encoded.sort();
        let again: Vec<Vec<u8>> = keys.iter().map(|k| encode_key(k)).collect();
        assert_eq!(encoded, again);
    }
}
