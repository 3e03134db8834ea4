//! `tidefs destroy META-URL UUID`: delete a volume: every object under its name in the bucket
//! (a `file` directory or an S3 bucket) and every metadata table of it. The UUID (from `tidefs
//! status`) confirms which volume is meant; a volume that is mounted anywhere is refused. The
//! metadata goes last, and only once every object is gone: a destroy that fails part way can
//! be run again.

use super::{human, CmdResult};
use futures::stream::{FuturesUnordered, StreamExt};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `destroy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata engine URL.
    meta_url: String,
    /// UUID of the volume (shown by `tidefs status`).
    uuid: String,
    /// Destroy even when sessions of live-looking clients remain.
    #[arg(long)]
    force: bool,
    /// Object deletions in flight at once (object stores).
    #[arg(short = 'p', long = "threads", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    threads: u16,
}

pub(super) async fn run(a: Args) -> CmdResult {
    let (meta, fmt) = super::open_volume(&a.meta_url).await?;
    if fmt.uuid != a.uuid {
        return Err(format!(
            "UUID {} does not match the volume {:?} ({}); nothing was deleted",
            a.uuid, fmt.name, fmt.uuid
        )
        .into());
    }
    let now = chrono::Utc::now().timestamp();
    let live: Vec<_> = meta
        .list_sessions()
        .await?
        .into_iter()
        .filter(|s| s.expire > now)
        .collect();
    if !live.is_empty() && !a.force {
        let at: Vec<String> = live
            .iter()
            .map(|s| format!("{}:{}", s.host_name, s.mount_point))
            .collect();
        return Err(format!(
            "volume {:?} is mounted ({}); unmount it first (or pass --force); nothing was deleted",
            fmt.name,
            at.join(", ")
        )
        .into());
    }
    if fmt.storage == "file" {
        let dir = std::path::Path::new(&fmt.bucket).join(&fmt.name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => println!("deleted the objects in {}", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot delete the objects in {}: {e}; nothing else was deleted",
                    dir.display()
                )
                .into())
            }
        }
    } else {
        let store = super::open_store(&fmt, 0)?;
        delete_objects(&store, &fmt, a.threads).await?;
    }
    meta.destroy().await?;
    println!("volume {:?} ({}) destroyed", fmt.name, fmt.uuid);
    Ok(ExitCode::SUCCESS)
}

/// Delete every object under the volume's name in its object store (blocks, `juicefs_uuid`,
/// metadata backups), `threads` at a time, with a progress line. Any failure stops the destroy
/// before the metadata is touched.
async fn delete_objects(
    store: &tidefs_chunk::ChunkStore,
    fmt: &tidefs_meta::Format,
    threads: u16,
) -> CmdResult<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(200));
    let (mut n, mut bytes, mut failed) = (0u64, 0u64, 0u64);
    let mut pending = FuturesUnordered::new();
    let mut rx = store.list_volume_objects();
    let mut done = |r: Option<(tidefs_chunk::ObjectInfo, tidefs_chunk::Result<()>)>| match r {
        Some((o, Ok(()))) => {
            n += 1;
            bytes += o.size;
            if n.is_multiple_of(100) {
                bar.set_message(format!("{n} objects deleted ({})", human(bytes)));
            }
        }
        Some((o, Err(e))) => {
            failed += 1;
            bar.suspend(|| eprintln!("cannot delete {}: {e}", o.key));
        }
        None => {}
    };
    while let Some(obj) = rx.recv().await {
        let obj = match obj {
            Ok(o) => o,
            Err(e) => {
                bar.finish_and_clear();
                return Err(format!(
                    "cannot list the objects of volume {:?} in {}: {e}; the metadata was kept, run destroy again",
                    fmt.name, fmt.bucket
                )
                .into());
            }
        };
        while pending.len() >= usize::from(threads) {
            done(pending.next().await);
        }
        let st = store.clone();
        pending.push(async move {
            let r = st.delete_object(&obj.key).await;
            (obj, r)
        });
    }
    while let Some(r) = pending.next().await {
        done(Some(r));
    }
    bar.finish_and_clear();
    if failed > 0 {
        return Err(format!(
            "{failed} object(s) of volume {:?} could not be deleted; the metadata was kept, run destroy again",
            fmt.name
        )
        .into());
    }
    println!(
        "deleted {n} objects ({}) in {} {}",
        human(bytes),
        fmt.storage,
        fmt.bucket
    );
    Ok(())
}
