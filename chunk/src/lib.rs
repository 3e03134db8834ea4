//! tidefs-chunk: file data as immutable blocks in object storage.
//!
//! A slice (one contiguous write run inside a 64 MiB chunk, with a volume-unique id) is stored as
//! `ceil(size / block_size)` objects keyed as the JuiceFS format says ([`block_key`]). Blocks are
//! written once and never changed, so any copy of one (memory cache, disk cache) is valid forever.
//!
//! Place in the data flow: `vfs` cuts writes into slices and hands full blocks here; reads ask for
//! block windows. This crate knows nothing of inodes or metadata.

#![warn(missing_docs)]

mod blockfile;
mod bucket;
pub mod cache;
mod compress;
pub mod error;
pub mod flat;
mod http;
mod key;
pub mod limit;
mod local;
pub mod pool;
mod s3;
pub mod staging;
mod store;
pub mod sums;
mod writeback;

pub use bucket::{open_bucket, open_bucket_with, Bucket, Credentials, ObjectInfo};
pub use cache::{Admit, CacheStats, DiskCache, DiskCacheConfig};
pub use compress::Compression;
pub use error::{Error, ErrorKind, Result};
pub use flat::FlatWriter;
pub use key::{block_key, block_lens, parse_block_key};
pub use local::{allow_inline_io, LocalDir};
pub use s3::{parse_bucket_url, BucketUrl, S3Bucket, S3Config};
pub use staging::Staging;
pub use store::{
    Checked, ChunkStore, Downloaded, StoreConfig, DEFAULT_MAX_DOWNLOADS, DEFAULT_PATIENCE,
};
pub use writeback::WritebackStats;
