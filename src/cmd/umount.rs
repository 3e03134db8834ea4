//! `tidefs umount MOUNTPOINT`: unmount and wait for the mount process to finish its work.

use super::CmdResult;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `umount`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The mount point.
    mountpoint: PathBuf,
    /// Detach even if busy (lazy unmount).
    #[arg(short, long)]
    force: bool,
}

pub(super) fn run(a: Args) -> CmdResult {
    let mp = std::fs::canonicalize(&a.mountpoint).unwrap_or(a.mountpoint.clone());
    if !super::mount::is_mounted(&mp) {
        return Err(format!("{} is not mounted", mp.display()).into());
    }
    let pid = std::fs::read_to_string(super::mount::runtime_file(&mp))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("pid").and_then(|p| p.as_u64()));
    let flag = if a.force { "-uz" } else { "-u" };
    let out = std::process::Command::new("fusermount3")
        .arg(flag)
        .arg(&mp)
        .output();
    let ok = match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            let msg = String::from_utf8_lossy(&o.stderr).trim().to_string();
            // root can always fall back to umount(8)
            let alt = std::process::Command::new("umount")
                .args(if a.force { vec!["-l"] } else { vec![] })
                .arg(&mp)
                .status();
            if matches!(alt, Ok(s) if s.success()) {
                true
            } else {
                return Err(format!(
                    "cannot unmount {}: {msg} (busy? close files using it, or pass --force)",
                    mp.display()
                )
                .into());
            }
        }
        Err(e) => {
            return Err(format!("cannot run fusermount3 ({e}): install the fuse3 package").into())
        }
    };
    if ok {
        if let Some(pid) = pid {
            // wait for the mount process to commit its buffers and close its session
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::path::Path::new(&format!("/proc/{pid}")).exists()
                && Instant::now() < deadline
            {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.split(' ').nth(2) == Some("Z") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
