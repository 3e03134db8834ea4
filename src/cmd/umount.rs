//! `tidefs umount MOUNTPOINT [--flush]`: unmount and wait for the mount process to finish its
//! work; with `--flush`, first wait until every block a `--writeback` mount staged is uploaded.

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
    /// Wait until the blocks a --writeback mount has staged are uploaded (also those staged at
    /// unmount) before the mount process exits; without it they stay staged and the next mount
    /// with the same cache directory uploads them.
    #[arg(long)]
    flush: bool,
}

/// Ask the mount process (control socket `sock`) to upload everything staged before it exits,
/// and show the uploads until nothing is staged.
fn flush_staged(sock: &std::path::Path) -> CmdResult<()> {
    use std::io::{BufRead, BufReader, Write};
    let conn = std::os::unix::net::UnixStream::connect(sock).map_err(|e| {
        format!(
            "cannot reach the mount process at {} to flush: {e}",
            sock.display()
        )
    })?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    writeln!(writer, "{}", serde_json::json!({ "op": "flush" }))?;
    let bar = indicatif::ProgressBar::new_spinner();
    let mut first: Option<u64> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err("the mount process closed the control channel during the flush".into());
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("bad answer from the mount process: {e}"))?;
        let st = v.get("progress").or_else(|| v.get("done"));
        let Some(st) = st else {
            let msg = v
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("unknown answer");
            return Err(format!("flush refused by the mount: {msg}").into());
        };
        let g = |k: &str| st.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        let bytes = g("staged_bytes");
        let total = *first.get_or_insert(bytes);
        let mut msg = format!(
            "uploading staged blocks: {} left ({} of {}), {} uploaded",
            g("staged_blocks"),
            super::human(bytes),
            super::human(total),
            g("uploaded")
        );
        if let Some(e) = st.get("last_error").and_then(|e| e.as_str()) {
            msg.push_str(&format!("; retrying after: {e}"));
        }
        bar.set_message(msg);
        bar.tick();
        if v.get("done").is_some() {
            bar.finish_and_clear();
            if st.get("writeback").and_then(|w| w.as_bool()) == Some(true) {
                eprintln!("staged blocks uploaded ({} this mount)", g("uploaded"));
            }
            return Ok(());
        }
    }
}

pub(super) fn run(a: Args) -> CmdResult {
    let mp = std::fs::canonicalize(&a.mountpoint).unwrap_or(a.mountpoint.clone());
    if !super::mount::is_mounted(&mp) {
        return Err(format!("{} is not mounted", mp.display()).into());
    }
    let record = std::fs::read_to_string(super::mount::runtime_file(&mp))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let pid = record
        .as_ref()
        .and_then(|v| v.get("pid").and_then(|p| p.as_u64()));
    if a.flush {
        let sock = record
            .as_ref()
            .and_then(|v| v.get("control").and_then(|c| c.as_str()))
            .ok_or("--flush: the mount has no control channel (mounted by an older tidefs?)")?;
        flush_staged(std::path::Path::new(sock))?;
    }
    let flag = if a.force { "-uz" } else { "-u" };
    let out = std::process::Command::new("fusermount3")
        .arg(flag)
        .arg(&mp)
        .output();
    let failure = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Some(format!("cannot run fusermount3 ({e})")),
    };
    let ok = match failure {
        None => true,
        // root can always fall back to umount(8), with or without fuse3 installed
        Some(msg) => {
            let alt = std::process::Command::new("umount")
                .args(if a.force { vec!["-l"] } else { vec![] })
                .arg(&mp)
                .output();
            match alt {
                Ok(o) if o.status.success() => true,
                _ if msg.starts_with("cannot run") => {
                    return Err(
                        format!("{msg}: install the fuse3 package, or unmount as root").into(),
                    )
                }
                _ => {
                    return Err(format!(
                        "cannot unmount {}: {msg} (busy? close files using it, or pass --force)",
                        mp.display()
                    )
                    .into())
                }
            }
        }
    };
    if ok {
        if let Some(pid) = pid {
            // wait for the mount process to commit its buffers and close its session (and,
            // with --flush, to upload what was staged at unmount: no deadline then)
            let started = Instant::now();
            let deadline = started + Duration::from_secs(60);
            let mut told = false;
            while std::path::Path::new(&format!("/proc/{pid}")).exists()
                && (a.flush || Instant::now() < deadline)
            {
                if a.flush && !told && started.elapsed() > Duration::from_secs(5) {
                    eprintln!("waiting for the mount process (pid {pid}) to upload its last staged blocks");
                    told = true;
                }
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
