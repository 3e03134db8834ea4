//! The control channel of a mount: a Unix socket (mode 0600, next to the mount's runtime record)
//! over which `tidefs warmup` asks the mount process to fill, check or empty its cache.
//!
//! Protocol: one JSON object per line. A request is
//! `{"op": "warmup", "mode": "fill"|"check"|"evict", "inodes": [...], "threads": N}`; the mount
//! answers with `{"progress": REPORT}` lines (at most every 200 ms) and one final
//! `{"done": REPORT}`, or `{"error": "..."}`. REPORT is [`crate::vfs::warm::WarmReport`] as JSON.
//!
//! `{"op": "flush"}` (from `tidefs umount --flush`) makes the mount wait, when it ends, until
//! every block staged by `--writeback` is uploaded, and answers with `{"progress": STATE}` lines
//! until nothing is staged, then `{"done": STATE}`; `{"op": "writeback"}` answers one
//! `{"done": STATE}`; `{"op": "stats"}` answers the mount's buffer, readahead, disk-cache and
//! writeback counters in one `{"done": {...}}`. STATE is `{"writeback": bool, "staged_blocks", "staged_bytes",
//! "uploaded", "failed_tries", "last_error"}`.
//!
//! `{"op": "summary", "inode": N, "depth": D, "entries": E, "strict": bool}` answers one
//! `{"done": TREE}`: what the tree at the inode holds (`length`, `size`, `files`, `dirs`) and
//! its largest `children` (E per directory, D levels down), each a TREE with its `name`.
//!
//! Requests on one connection run one after another.

use crate::vfs::warm::{WarmMode, WarmReport};
use crate::vfs::Vfs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Most block operations one warm-up runs at once.
const MAX_THREADS: usize = 256;

/// Socket path of the mount whose runtime record is `record`.
pub fn socket_path(record: &Path) -> PathBuf {
    record.with_extension("sock")
}

/// Serve the control channel on `path` until the process ends.
pub fn start(path: PathBuf, vfs: Arc<Vfs>) -> std::io::Result<()> {
    // a socket left by a process that died holds the name
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    let vfs = vfs.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_conn(conn, vfs).await {
                            tracing::debug!(error = %e, "control connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control channel accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

async fn send(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    v: serde_json::Value,
) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    w.write_all(line.as_bytes()).await
}

async fn serve_conn(conn: UnixStream, vfs: Arc<Vfs>) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let req: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                send(
                    &mut w,
                    serde_json::json!({ "error": format!("bad request: {e}") }),
                )
                .await?;
                continue;
            }
        };
        match req.get("op").and_then(|v| v.as_str()) {
            Some("flush") => {
                vfs.drain_at_exit();
                loop {
                    let st = writeback_json(&vfs);
                    if st["staged_blocks"].as_u64().unwrap_or(0) == 0 {
                        send(&mut w, serde_json::json!({ "done": st })).await?;
                        break;
                    }
                    send(&mut w, serde_json::json!({ "progress": st })).await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                continue;
            }
            Some("stats") => {
                let mut st = vfs.read_stats();
                st["writeback"] = writeback_json(&vfs);
                send(&mut w, serde_json::json!({ "done": st })).await?;
                continue;
            }
            Some("writeback") => {
                send(&mut w, serde_json::json!({ "done": writeback_json(&vfs) })).await?;
                continue;
            }
            Some("summary") => {
                let msg = match summary(&vfs, &req).await {
                    Ok(t) => serde_json::json!({ "done": t }),
                    Err(e) => serde_json::json!({ "error": e }),
                };
                send(&mut w, msg).await?;
                continue;
            }
            _ => {}
        }
        match parse_warmup(&req) {
            Ok((mode, inodes, threads)) => {
                if !vfs.has_disk_cache() && mode != WarmMode::Evict {
                    let msg = "this mount has no disk cache (mount with --cache-dir, and a --cache-size above 0)";
                    send(&mut w, serde_json::json!({ "error": msg })).await?;
                    continue;
                }
                let report = Arc::new(WarmReport::default());
                let job = {
                    let (vfs, report) = (vfs.clone(), report.clone());
                    tokio::spawn(async move { vfs.warm(&inodes, mode, threads, &report).await })
                };
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                tokio::pin!(job);
                loop {
                    tokio::select! {
                        res = &mut job => {
                            let msg = match res {
                                Ok(()) => serde_json::json!({ "done": report.to_json() }),
                                Err(e) => serde_json::json!({ "error": format!("warmup failed: {e}") }),
                            };
                            send(&mut w, msg).await?;
                            break;
                        }
                        _ = tick.tick() => {
                            send(&mut w, serde_json::json!({ "progress": report.to_json() })).await?;
                        }
                    }
                }
            }
            Err(e) => send(&mut w, serde_json::json!({ "error": e })).await?,
        }
    }
    Ok(())
}

/// A `summary` request: `{"op": "summary", "inode": N, "depth": D, "entries": E, "strict":
/// bool}`; the tree as JSON.
async fn summary(vfs: &Vfs, req: &serde_json::Value) -> Result<serde_json::Value, String> {
    let ino = req
        .get("inode")
        .and_then(|v| v.as_u64())
        .ok_or("summary needs an inode")?;
    let depth = req.get("depth").and_then(|v| v.as_u64()).unwrap_or(0);
    let entries = req.get("entries").and_then(|v| v.as_u64()).unwrap_or(10);
    let strict = req.get("strict").and_then(|v| v.as_bool()).unwrap_or(false);
    let t = vfs
        .meta()
        .summary(ino, depth.min(64) as u32, entries as usize, strict)
        .await
        .map_err(|e| format!("summary failed: {e}"))?;
    Ok(tree_json(&t))
}

fn tree_json(t: &tidefs_meta::TreeSummary) -> serde_json::Value {
    serde_json::json!({
        "name": String::from_utf8_lossy(&t.name),
        "inode": t.ino,
        "length": t.summary.length,
        "size": t.summary.size,
        "files": t.summary.files,
        "dirs": t.summary.dirs,
        "children": t.children.iter().map(tree_json).collect::<Vec<_>>(),
    })
}

/// The state of `--writeback` uploads as the protocol gives it.
fn writeback_json(vfs: &Vfs) -> serde_json::Value {
    match vfs.writeback_stats() {
        Some(st) => serde_json::json!({
            "writeback": true,
            "staged_blocks": st.staged_blocks,
            "staged_bytes": st.staged_bytes,
            "uploaded": st.uploaded,
            "failed_tries": st.failed_tries,
            "last_error": st.last_error,
        }),
        None => serde_json::json!({ "writeback": false, "staged_blocks": 0, "staged_bytes": 0 }),
    }
}

fn parse_warmup(req: &serde_json::Value) -> Result<(WarmMode, Vec<u64>, usize), String> {
    if req.get("op").and_then(|v| v.as_str()) != Some("warmup") {
        return Err("unknown op (this mount knows: warmup, flush, writeback, stats)".into());
    }
    let mode = req
        .get("mode")
        .and_then(|v| v.as_str())
        .and_then(WarmMode::parse)
        .ok_or("warmup needs mode fill, check or evict")?;
    let inodes = req
        .get("inodes")
        .and_then(|v| v.as_array())
        .ok_or("warmup needs inodes")?
        .iter()
        .map(|v| v.as_u64().ok_or("inodes must be numbers"))
        .collect::<Result<Vec<u64>, _>>()?;
    let threads = req
        .get("threads")
        .and_then(|v| v.as_u64())
        .unwrap_or(50)
        .clamp(1, MAX_THREADS as u64) as usize;
    Ok((mode, inodes, threads))
}
