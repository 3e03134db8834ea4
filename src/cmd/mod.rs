//! The `tidefs` command line: one module per subcommand.

mod bench;
mod compact;
mod config;
mod destroy;
mod format;
mod fsck;
mod gc;
mod info;
mod mount;
mod quota;
mod stats;
mod status;
mod summary;
mod umount;
mod warmup;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::sync::Arc;

/// What a subcommand reports on failure: one line saying what is wrong and what to do.
pub type CmdResult<T = ExitCode> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// tidefs: a POSIX filesystem on object storage, compatible with JuiceFS CE 1.x volumes.
#[derive(Debug, Parser)]
#[command(name = "tidefs", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more (repeat for trace level).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Format a new volume (or change the settings of one with --force).
    Format(format::Args),
    /// Mount a volume.
    Mount(mount::Args),
    /// Change a volume's setting (capacity, inodes, trash, statistics, limits, versions).
    Config(config::Args),
    /// Unmount a volume.
    Umount(umount::Args),
    /// Show the volume setting (secrets removed) and live sessions.
    Status(status::Args),
    /// Show the inode, length, chunks and slices of a file in a mounted volume.
    Info(info::Args),
    /// Check metadata consistency and that every slice's objects exist.
    Fsck(fsck::Args),
    /// Delete a volume: its metadata and (in a `file` bucket) its objects.
    Destroy(destroy::Args),
    /// Rewrite files' fragmented chunks (many slice records) as few slices.
    Compact(compact::Args),
    /// Find objects no file references (leaked), and with --delete remove them and finish
    /// pending deletions.
    Gc(gc::Args),
    /// Fill (--check: measure, --evict: empty) the disk cache of a running mount with files.
    Warmup(warmup::Args),
    /// Show what a running mount is doing: downloads, disk cache, readahead, buffers, uploads.
    Stats(stats::Args),
    /// Size, files and directories of a tree in a running mount (from directory statistics).
    Summary(summary::Args),
    /// Manage directory quotas: set, get, list, delete, check.
    Quota(quota::Args),
    /// Quick benchmark of any directory: big-file and small-file throughput, stat rate.
    Bench(bench::Args),
    /// Print the version.
    Version,
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> CmdResult {
    let log_file = match &cli.command {
        Command::Mount(a) if a.is_daemon_child() => a.log.clone(),
        _ => None,
    };
    init_tracing(cli.verbose, log_file.as_deref())?;
    match cli.command {
        Command::Format(a) => block_on(format::run(a)),
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => umount::run(a),
        Command::Status(a) => block_on(status::run(a)),
        Command::Config(a) => block_on(config::run(a)),
        Command::Info(a) => block_on(info::run(a)),
        Command::Warmup(a) => warmup::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Fsck(a) => block_on(fsck::run(a)),
        Command::Gc(a) => block_on(gc::run(a)),
        Command::Compact(a) => block_on(compact::run(a)),
        Command::Bench(a) => bench::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Quota(a) => block_on(quota::run(a)),
        Command::Destroy(a) => block_on(destroy::run(a)),
        Command::Version => {
            println!(
                "tidefs {} (JuiceFS CE 1.x volume format)",
                env!("CARGO_PKG_VERSION")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn block_on<F: std::future::Future<Output = CmdResult>>(f: F) -> CmdResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(f)
}

fn init_tracing(verbose: u8, file: Option<&std::path::Path>) -> CmdResult<()> {
    use tracing_subscriber::EnvFilter;
    // fuser logs its own housekeeping at warn (e.g. a second unmount attempt after
    // `tidefs umount` already detached the mount); keep it at error unless asked. tikv-client
    // logs every connection at info: keep it at warn.
    let default = match verbose {
        0 => "info,fuser=error,tikv_client=warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("TIDEFS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let res = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder.with_ansi(false).with_writer(Arc::new(f)).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    res.map_err(|e| format!("cannot set up logging: {e}").into())
}

/// Bytes for people: `512 B`, `1.50 MiB`.
fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Open the engine of `url` and load its volume.
async fn open_volume(url: &str) -> CmdResult<(Arc<dyn tidefs_meta::Volume>, tidefs_meta::Format)> {
    let meta = tidefs_meta::open(url).await?;
    let fmt = meta.load().await?;
    Ok((meta, fmt))
}

/// The block store of a loaded volume.
fn open_store(
    fmt: &tidefs_meta::Format,
    mem_cache_bytes: u64,
) -> CmdResult<tidefs_chunk::ChunkStore> {
    let creds = tidefs_chunk::Credentials {
        access_key: fmt.access_key.clone(),
        secret_key: fmt.plain_secret_key()?,
        session_token: fmt.plain_session_token()?,
    };
    let bucket = tidefs_chunk::open_bucket_with(&fmt.storage, &fmt.bucket, &creds)?;
    let block_size = u32::try_from(fmt.block_size()).map_err(|_| "block size out of range")?;
    Ok(tidefs_chunk::ChunkStore::new(
        bucket,
        tidefs_chunk::StoreConfig {
            name: fmt.name.clone(),
            block_size,
            compression: tidefs_chunk::Compression::parse(&fmt.compression)?,
            hash_prefix: fmt.hash_prefix,
            mem_cache_bytes,
        },
    ))
}

/// Let the metadata engine delete the objects of slices that lose their last reference.
fn install_slice_deleter(meta: &dyn tidefs_meta::Meta, store: &tidefs_chunk::ChunkStore) {
    let st = store.clone();
    meta.set_slice_deleter(Arc::new(move |id, size| {
        let st = st.clone();
        Box::pin(async move {
            st.delete_slice(id, size).await.map_err(|e| {
                tidefs_meta::Error::new(
                    tidefs_meta::ErrorKind::Engine,
                    "deleting slice objects failed",
                )
                .with_source(e)
            })
        })
    }));
}
