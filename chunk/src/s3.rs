//! The `s3` storage: S3-compatible object stores (AWS S3, Ceph RGW, MinIO, OSS and COS in their
//! S3 modes) through OpenDAL.
//!
//! Bucket URLs, as JuiceFS takes them:
//! - path style, `http(s)://host[:port]/bucket` (Ceph RGW, MinIO, any endpoint with a path);
//! - virtual-host style, `https://bucket.host` (AWS: `https://bucket.s3.us-west-2.amazonaws.com`,
//!   where the region comes from the host name).
//!
//! Requests time out (connect 10 s, whole request 60 s, no progress on a body 30 s) and are
//! retried with jittered exponential backoff when OpenDAL marks the error temporary (5xx, resets,
//! timeouts, throttling), at most [`RETRIES`] times; a refused credential, a missing bucket or a
//! missing object is answered at once. TLS is rustls with the `ring` provider (no C toolchain
//! needed to build), roots from the platform.

use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use opendal::layers::{RetryEvent, RetryLayer, TimeoutLayer};
use opendal::services::S3;
use opendal::Operator;
use std::sync::Once;
use std::time::Duration;

/// Retries of a temporary failure before it reaches the caller.
pub const RETRIES: usize = 6;

/// User metadata key of an object's CRC32C (sent as `x-amz-meta-crc32c`), as JuiceFS names it.
pub const CRC_META: &str = "crc32c";

/// Credentials and addressing of an S3 bucket.
#[derive(Clone, Default)]
pub struct S3Config {
    /// The bucket URL (see the module docs).
    pub bucket_url: String,
    /// Access key id (empty: anonymous).
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: String,
    /// Region; when empty, taken from an AWS host name, else `us-east-1` (any name signs on
    /// Ceph RGW and MinIO).
    pub region: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // keys never reach logs
        f.debug_struct("S3Config")
            .field("bucket_url", &self.bucket_url)
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Where a bucket URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    /// `scheme://host[:port]` requests go to.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Bucket in the host name rather than the path.
    pub virtual_host: bool,
    /// Region named by the host (AWS), if any.
    pub region: Option<String>,
}

fn bad_url(url: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("bucket {url:?} for --storage s3 {why}: give http(s)://host:port/bucket (path style, e.g. Ceph RGW or MinIO) or https://bucket.s3.region.amazonaws.com"),
    )
}

/// Split a bucket URL into endpoint, bucket and addressing style.
pub fn parse_bucket_url(url: &str) -> Result<BucketUrl> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad_url(url, "is not a URL"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad_url(url, "must start with http:// or https://"));
    }
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains('@') {
        return Err(bad_url(url, "has no host (or has credentials in it)"));
    }
    let region = aws_region(host);
    if !path.is_empty() {
        if path.contains('/') {
            return Err(bad_url(url, "has more than a bucket name in its path"));
        }
        return Ok(BucketUrl {
            endpoint: format!("{scheme}://{host}"),
            bucket: path.to_string(),
            virtual_host: false,
            region,
        });
    }
    let (bucket, domain) = host
        .split_once('.')
        .ok_or_else(|| bad_url(url, "names no bucket"))?;
    if bucket.is_empty() || domain.is_empty() {
        return Err(bad_url(url, "names no bucket"));
    }
    Ok(BucketUrl {
        endpoint: format!("{scheme}://{domain}"),
        bucket: bucket.to_string(),
        virtual_host: true,
        region,
    })
}

/// The region of an AWS S3 host name (`s3.us-west-2.amazonaws.com`, `s3-us-west-2...`,
/// `bucket.s3.eu-central-1.amazonaws.com`).
fn aws_region(host: &str) -> Option<String> {
    let host = host.split(':').next().unwrap_or(host);
    if !host.ends_with(".amazonaws.com") && !host.ends_with(".amazonaws.com.cn") {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    for (i, l) in labels.iter().enumerate() {
        if *l == "s3" {
            return labels
                .get(i + 1)
                .filter(|r| **r != "amazonaws")
                .map(|r| r.to_string());
        }
        if let Some(r) = l.strip_prefix("s3-") {
            return Some(r.to_string());
        }
    }
    None
}

/// Install the process-wide HTTP transport OpenDAL sends requests through, once.
fn install_transport() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // rustls needs one crypto provider per process; another part of the program may
        // have installed the same one already, which is fine
        let _ = rustls::crypto::ring::default_provider().install_default();
        let transport =
            crate::http::Transport::new(Duration::from_secs(10), Duration::from_secs(60), 64);
        match transport {
            Ok(t) => opendal::HttpTransporter::install_default(t),
            Err(e) => tracing::error!(error = %e, "cannot build the HTTP client for S3"),
        }
    });
}

/// The S3 error code in an OpenDAL error (`NoSuchBucket`, `SignatureDoesNotMatch`, ...).
fn s3_code(e: &opendal::Error) -> Option<String> {
    let text = format!("{e:?}");
    let start = text.find("code: \"")? + "code: \"".len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_string()).filter(|c| !c.is_empty())
}

/// Classify an OpenDAL error of `op` on `key`: by the S3 error code when there is one, else by
/// OpenDAL's kind. The message names the code, not the whole response.
/// The CRC32C an object's metadata carries in its `crc32c` field, if any. A field that is not a
/// decimal number cannot be checked against: it is logged and the object read unchecked, as one
/// without the field (the field is a hint written next to the data, not the data).
fn crc_field(key: &str, m: &opendal::Metadata) -> Option<u32> {
    let u = m.user_metadata()?;
    let v = u.get(CRC_META)?;
    match v.trim().parse() {
        Ok(c) => Some(c),
        Err(_) => {
            tracing::warn!(
                object = key,
                value = v,
                "object's {CRC_META} metadata is not a number: read unchecked"
            );
            None
        }
    }
}

fn s3_err(op: &str, key: &str, e: opendal::Error) -> Error {
    use opendal::ErrorKind as K;
    let code = s3_code(&e);
    let kind = match (code.as_deref(), e.kind()) {
        (Some("NoSuchBucket"), _) => ErrorKind::NotFound,
        (
            Some(
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "InvalidToken"
                | "ExpiredToken",
            ),
            _,
        ) => ErrorKind::PermissionDenied,
        (_, K::NotFound) => ErrorKind::NotFound,
        (_, K::PermissionDenied) => ErrorKind::PermissionDenied,
        (_, K::ConfigInvalid) => ErrorKind::Config,
        _ => ErrorKind::Unavailable,
    };
    let why = match code {
        Some(c) => c,
        None => {
            // the innermost cause says most ("Connection refused", "timed out")
            let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            let mut last = None;
            while let Some(c) = cause {
                last = Some(c.to_string());
                cause = c.source();
            }
            match last {
                Some(l) => format!("{} ({}: {l})", e.kind(), e.message()),
                None => format!("{} ({})", e.kind(), e.message()),
            }
        }
    };
    Error::new(kind, format!("object {op} of {key} failed: {why}"))
}

/// A bucket in an S3-compatible store.
#[derive(Clone)]
pub struct S3Bucket {
    op: Operator,
    shown: String,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket")
            .field("bucket", &self.shown)
            .finish()
    }
}

impl S3Bucket {
    /// A bucket handle (no request is sent: see [`check`](Self::check)).
    pub fn open(cfg: &S3Config) -> Result<Self> {
        install_transport();
        let u = parse_bucket_url(&cfg.bucket_url)?;
        let region = if !cfg.region.is_empty() {
            cfg.region.clone()
        } else {
            u.region.clone().unwrap_or_else(|| "us-east-1".into())
        };
        let mut b = S3::default()
            .endpoint(&u.endpoint)
            .bucket(&u.bucket)
            .region(&region)
            .disable_config_load()
            .disable_ec2_metadata();
        if u.virtual_host {
            b = b.enable_virtual_host_style();
        }
        if cfg.access_key.is_empty() {
            b = b.skip_signature();
        } else {
            b = b
                .access_key_id(&cfg.access_key)
                .secret_access_key(&cfg.secret_key);
            if !cfg.session_token.is_empty() {
                b = b.session_token(&cfg.session_token);
            }
        }
        let op = Operator::new(b)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("bad S3 settings for {}", cfg.bucket_url),
                )
                .with_source(e)
            })?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(60))
                    .with_io_timeout(Duration::from_secs(30)),
            )
            .layer(
                RetryLayer::new()
                    .with_notify(|ev: RetryEvent<'_>| {
                        // one line per retry (the default notice logs a whole backtrace)
                        tracing::warn!(
                            op = %ev.op,
                            attempt = ev.attempt,
                            after_ms = ev.retry_after.as_millis() as u64,
                            error = %ev.err.kind(),
                            detail = ev.err.message(),
                            "object store request failed, retrying"
                        );
                    })
                    .with_jitter()
                    .with_max_times(RETRIES)
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5)),
            );
        Ok(Self {
            op,
            shown: cfg.bucket_url.clone(),
        })
    }

    /// Check that the bucket exists and the credentials may write, read and delete in it.
    pub async fn check(&self) -> Result<()> {
        let key = format!(".tidefs-probe-{}", std::process::id());
        self.put(&key, Bytes::from_static(b"probe"))
            .await
            .map_err(|e| {
                let hint = match e.kind() {
                    ErrorKind::NotFound => "the bucket does not exist: create it first",
                    ErrorKind::PermissionDenied => {
                        "the store refused the credentials: check --access-key / --secret-key"
                    }
                    _ => "the object store cannot be reached or refused the request",
                };
                Error::new(
                    e.kind(),
                    format!("cannot use bucket {}: {hint}", self.shown),
                )
                .with_source(e)
            })?;
        let back = self.get(&key).await?;
        if &back[..] != b"probe" {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "bucket {} returned other bytes than were stored",
                    self.shown
                ),
            ));
        }
        self.delete(&key).await
    }

    /// Store `data` under `key` (a PUT is atomic and durable when it returns). The object
    /// carries the CRC32C of its bytes as stored (decimal, user metadata `crc32c`), as JuiceFS
    /// writes it: juicefs checks it when it reads an object whole, so blocks tidefs wrote are
    /// verified by juicefs clients too.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let crc = crc32c::crc32c(&data);
        self.put_with_crc(key, data, crc).await
    }

    /// Store `data` under `key` with `crc` in its CRC32C field as given, not computed: for
    /// copying an object with the field its source had (and for tests that play a store whose
    /// bytes rotted under the field).
    pub async fn put_with_crc(&self, key: &str, data: Bytes, crc: u32) -> Result<()> {
        self.op
            .write_with(key, data)
            .user_metadata([(CRC_META.to_string(), crc.to_string())])
            .await
            .map(|_| ())
            .map_err(|e| s3_err("put", key, e))
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        self.get_with_crc(key).await.map(|(b, _)| b)
    }

    /// The whole object, with the CRC32C its user metadata says its bytes had when they were
    /// stored (None when it carries none); read from the GET's own response headers, so it
    /// costs no extra request.
    pub async fn get_with_crc(&self, key: &str) -> Result<(Bytes, Option<u32>)> {
        let reader = self
            .op
            .reader(key)
            .await
            .map_err(|e| s3_err("get", key, e))?;
        let data = reader
            .read(..)
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| s3_err("get", key, e))?;
        Ok((data, reader.metadata().and_then(|m| crc_field(key, m))))
    }

    /// The whole object `key`, which must be exactly `len` bytes (a block: the length is in its
    /// key); any other length is a corrupt object. A plain GET, into a pooled page-aligned
    /// buffer (see [`crate::pool`]), with the CRC32C of its user metadata as in
    /// [`S3Bucket::get_with_crc`].
    pub async fn get_exact(&self, key: &str, len: usize) -> Result<(Bytes, Option<u32>)> {
        self.read_pooled(key, None, len).await
    }

    /// Exactly `len` bytes of `key` from `off` (a ranged GET); fewer is a corrupt object.
    pub async fn get_range(&self, key: &str, off: u64, len: usize) -> Result<Bytes> {
        self.read_pooled(key, Some(off), len).await.map(|(b, _)| b)
    }

    /// `len` bytes of `key`: the whole object (`from` None) or a range from `from`, read into a
    /// pooled buffer whose data starts page aligned; a different length is a corrupt object.
    /// A whole read comes with the object's CRC32C field (a range cannot be checked with it).
    async fn read_pooled(
        &self,
        key: &str,
        from: Option<u64>,
        len: usize,
    ) -> Result<(Bytes, Option<u32>)> {
        let (mut buf, pad) = crate::pool::take_aligned(len);
        let reader = self
            .op
            .reader(key)
            .await
            .map_err(|e| s3_err("get", key, e))?;
        let got = match from {
            None => reader.read_into(&mut buf, ..).await,
            Some(off) => reader.read_into(&mut buf, off..off + len as u64).await,
        };
        if let Err(e) = got {
            crate::pool::give(buf);
            return Err(s3_err("get", key, e));
        }
        let b = crate::pool::into_bytes(buf).slice(pad..);
        if b.len() != len {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "object {key} gave {} bytes at {}, expected {len}",
                    b.len(),
                    from.unwrap_or(0)
                ),
            ));
        }
        let crc = match from {
            None => reader.metadata().and_then(|m| crc_field(key, m)),
            Some(_) => None,
        };
        Ok((b, crc))
    }

    /// Remove `key`; a missing object is fine.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.op.delete(key).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(s3_err("delete", key, e)),
        }
    }

    /// Every object under `prefix` (a key prefix ending in `/`), sent to `tx` page by page as
    /// the store lists them; stops early when the receiver goes away.
    pub fn list(&self, prefix: &str, tx: tokio::sync::mpsc::Sender<Result<crate::ObjectInfo>>) {
        use futures::TryStreamExt;
        let (op, prefix) = (self.op.clone(), prefix.to_string());
        tokio::spawn(async move {
            let mut lister = match op.lister_with(&prefix).recursive(true).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(s3_err("list", &prefix, e))).await;
                    return;
                }
            };
            loop {
                match lister.try_next().await {
                    Ok(Some(entry)) => {
                        let md = entry.metadata();
                        if md.is_dir() {
                            continue;
                        }
                        let info = crate::ObjectInfo {
                            key: entry.path().to_string(),
                            size: md.content_length(),
                            modified: md.last_modified().map(std::time::SystemTime::from),
                        };
                        if tx.send(Ok(info)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(s3_err("list", &prefix, e))).await;
                        return;
                    }
                }
            }
        });
    }

    /// The CRC32C an object carries in its user metadata (written by tidefs or juicefs), or
    /// None when it has none (a HEAD request; an object missing is an error).
    pub async fn stored_crc32c(&self, key: &str) -> Result<Option<u32>> {
        let m = self
            .op
            .stat(key)
            .await
            .map_err(|e| s3_err("stat", key, e))?;
        Ok(crc_field(key, &m))
    }

    /// Size of `key`, or None when missing.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.op.stat(key).await {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(s3_err("stat", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls() {
        let u = parse_bucket_url("http://127.0.0.1:7480/tidefs-test").expect("path style");
        assert_eq!(u.endpoint, "http://127.0.0.1:7480");
        assert_eq!(u.bucket, "tidefs-test");
        assert!(!u.virtual_host);
        let u = parse_bucket_url("https://mybucket.s3.us-west-2.amazonaws.com").expect("aws");
        assert_eq!(u.endpoint, "https://s3.us-west-2.amazonaws.com");
        assert_eq!(u.bucket, "mybucket");
        assert!(u.virtual_host);
        assert_eq!(u.region.as_deref(), Some("us-west-2"));
        let u = parse_bucket_url("https://s3-eu-west-1.amazonaws.com/b/").expect("legacy");
        assert_eq!(u.region.as_deref(), Some("eu-west-1"));
        assert_eq!(u.bucket, "b");
        for bad in [
            "127.0.0.1:7480/b",
            "ftp://h/b",
            "http:///b",
            "http://h/b/extra",
            "http://localhost",
            "http://key:secret@h/b",
        ] {
            let e = parse_bucket_url(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            assert!(e.to_string().contains("http(s)://host:port/bucket"), "{e}");
        }
    }

    #[test]
    fn keys_stay_out_of_debug_output() {
        let c = S3Config {
            bucket_url: "http://h/b".into(),
            access_key: "AK".into(),
            secret_key: "very-secret".into(),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
