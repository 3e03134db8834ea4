//! `tidefs format META-URL NAME`: create a volume (or change its settings with --force).

use super::CmdResult;
use std::process::ExitCode;
use tidefs_meta::format::{valid_volume_name, Format, MAX_BLOCK_SIZE_KIB, MIN_BLOCK_SIZE_KIB};

/// Arguments of `format`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata engine URL, e.g. sqlite3:///var/lib/tidefs/vol.db
    meta_url: String,
    /// Volume name: 3-63 lowercase letters, digits and '-'.
    name: String,
    /// Object storage kind: `file` (a directory) or `s3` (any S3-compatible store).
    #[arg(long, default_value = "file")]
    storage: String,
    /// Bucket: for --storage file, a directory (default: a `tidefs-data` directory beside the
    /// database); for --storage s3, a URL: http(s)://host:port/bucket or https://bucket.host.
    #[arg(long)]
    bucket: Option<String>,
    /// Access key of the object store.
    #[arg(long, env = "ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// Secret key of the object store (stored encrypted; better passed in $SECRET_KEY).
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Session token of temporary object store credentials.
    #[arg(long, env = "SESSION_TOKEN", hide_env_values = true)]
    session_token: Option<String>,
    /// Block size in KiB (64..16384, a power of two).
    #[arg(long, default_value_t = 4096)]
    block_size: u32,
    /// Compression of blocks.
    #[arg(long, default_value = "none", value_parser = ["none", "lz4", "zstd"])]
    compress: String,
    /// Days deleted files stay in .trash (0 disables the trash).
    #[arg(long, default_value_t = 1)]
    trash_days: u32,
    /// Capacity limit in GiB (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    capacity: u64,
    /// Inode limit (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    inodes: u64,
    /// Spread objects over hashed key prefixes.
    #[arg(long)]
    hash_prefix: bool,
    /// Change the settings of an existing volume.
    #[arg(long)]
    force: bool,
}

pub(super) async fn run(a: Args) -> CmdResult {
    if !valid_volume_name(&a.name) {
        return Err(format!(
            "invalid volume name {:?}: use 3-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            a.name
        )
        .into());
    }
    if !(MIN_BLOCK_SIZE_KIB..=MAX_BLOCK_SIZE_KIB).contains(&a.block_size)
        || !a.block_size.is_power_of_two()
    {
        return Err(format!(
            "invalid --block-size {}: give a power of two between {MIN_BLOCK_SIZE_KIB} and {MAX_BLOCK_SIZE_KIB} (KiB)",
            a.block_size
        )
        .into());
    }
    let bucket = match (a.storage.as_str(), a.bucket) {
        ("file", Some(b)) => dir_bucket(&b)?,
        ("file", None) => {
            let db = a
                .meta_url
                .split_once("://")
                .map(|(_, p)| p.split('?').next().unwrap_or(p).to_string())
                .unwrap_or_default();
            let dir = std::path::Path::new(&db)
                .parent()
                .map(|p| p.join("tidefs-data"))
                .ok_or("cannot derive a bucket directory: pass --bucket DIR")?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create bucket directory {}: {e}", dir.display()))?;
            dir_bucket(&dir.to_string_lossy())?
        }
        ("s3", Some(b)) => {
            // the URL is checked here, before anything is stored
            tidefs_chunk::parse_bucket_url(&b)?;
            b.trim_end_matches('/').to_string()
        }
        ("s3", None) => {
            return Err("--storage s3 needs --bucket http(s)://host:port/bucket".into())
        }
        (other, _) => {
            return Err(format!(
                "storage {other:?} is not supported by this tidefs build: use --storage file or --storage s3"
            )
            .into())
        }
    };
    let mut fmt = Format::new(&a.name, &a.storage, &bucket);
    fmt.access_key = a.access_key.unwrap_or_default();
    fmt.secret_key = a.secret_key.unwrap_or_default();
    if let Some(t) = a.session_token.filter(|t| !t.is_empty()) {
        fmt.extra
            .insert("SessionToken".into(), serde_json::Value::String(t));
    }
    fmt.block_size_kib = a.block_size;
    fmt.compression = a.compress;
    fmt.trash_days = a.trash_days;
    fmt.capacity = a.capacity << 30;
    fmt.inodes = a.inodes;
    fmt.hash_prefix = a.hash_prefix;
    // check the object store before touching metadata, so a bad bucket changes nothing
    let store = super::open_store(&fmt, 1 << 20)?;
    store.check().await?;
    fmt.encrypt_keys()?;
    let meta = tidefs_meta::open(&a.meta_url).await?;
    meta.init(&fmt, a.force).await?;
    let fmt = meta.load().await?;
    store
        .put_raw(
            &format!("{}/juicefs_uuid", fmt.name),
            fmt.uuid.clone().into_bytes(),
        )
        .await?;
    let sep = if fmt.bucket.ends_with('/') { "" } else { "/" };
    println!(
        "volume {} formatted (UUID {}), data in {}{sep}{}",
        fmt.name, fmt.uuid, fmt.bucket, fmt.name
    );
    Ok(ExitCode::SUCCESS)
}

/// A `file` bucket: an existing directory, absolute, ending in '/'.
fn dir_bucket(b: &str) -> CmdResult<String> {
    let p = std::path::Path::new(b);
    if !p.is_dir() {
        return Err(
            format!("bucket directory {b} does not exist: create it first (mkdir -p {b})").into(),
        );
    }
    let abs = std::fs::canonicalize(p)?;
    let mut s = abs.to_string_lossy().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}
