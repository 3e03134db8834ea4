//! `tidefs destroy META-URL UUID`: delete a volume: its objects (in a `file` bucket) and every
//! metadata table of it. The UUID (from `tidefs status`) confirms which volume is meant; a
//! volume that is mounted anywhere is refused.

use super::CmdResult;
use std::process::ExitCode;

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
        println!(
            "objects in {} {} are not deleted by this build; remove them with the store's tools",
            fmt.storage, fmt.bucket
        );
    }
    meta.destroy().await?;
    println!("volume {:?} ({}) destroyed", fmt.name, fmt.uuid);
    Ok(ExitCode::SUCCESS)
}
