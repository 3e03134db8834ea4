//! The object store of a volume, from its `Storage` and `Bucket` settings: a local directory
//! or an S3-compatible store, behind one small interface the block store uses.

use crate::error::{Error, ErrorKind, Result};
use crate::local::LocalDir;
use crate::s3::{S3Bucket, S3Config};
use bytes::Bytes;

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

    /// Store `data` under `key`; `crc`, its CRC32C when the caller knows it already (S3 keeps
    /// it with the object; computed here otherwise).
    pub(crate) async fn put(&self, key: &str, data: Bytes, crc: Option<u32>) -> Result<()> {
        match (self, crc) {
            (Bucket::Local(d), _) => d.put(key, data).await,
            (Bucket::S3(b), Some(crc)) => b.put_with_crc(key, data, crc).await,
            (Bucket::S3(b), None) => b.put(key, data).await,
        }
    }

    /// The whole object `key`, with the CRC32C of its stored bytes when the store keeps one
    /// next to it (S3 user metadata, written by tidefs and juicefs; a directory has none).
    pub(crate) async fn get(&self, key: &str) -> Result<(Bytes, Option<u32>)> {
        match self {
            Bucket::Local(d) => d.get(key).await.map(|b| (b, None)),
            Bucket::S3(b) => b.get_with_crc(key).await,
        }
    }

    /// The whole object `key`, exactly `len` bytes long, with its CRC32C as in [`Bucket::get`].
    pub(crate) async fn get_exact(&self, key: &str, len: usize) -> Result<(Bytes, Option<u32>)> {
        match self {
            Bucket::Local(d) => d.get_range(key, 0, len).await.map(|b| (b, None)),
            Bucket::S3(b) => b.get_exact(key, len).await,
        }
    }

    pub(crate) async fn get_range(&self, key: &str, off: u64, len: usize) -> Result<Bytes> {
        match self {
            Bucket::Local(d) => d.get_range(key, off, len).await,
            Bucket::S3(b) => b.get_range(key, off, len).await,
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        match self {
            Bucket::Local(d) => d.delete(key).await,
            Bucket::S3(b) => b.delete(key).await,
        }
    }

    pub(crate) async fn size(&self, key: &str) -> Result<Option<u64>> {
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

    pub(crate) async fn sync(&self) -> Result<()> {
        match self {
            Bucket::Local(d) => d.sync().await,
            // an S3 PUT is durable when it returns
            Bucket::S3(_) => Ok(()),
        }
    }
}
