//! `tidefs info PATH`: inode, length, and the chunks, slices and objects of a file.

use super::CmdResult;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tidefs_meta::{slice::resolve, CHUNK_SIZE, ROOT_INODE};

/// Arguments of `info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A file or directory inside a mounted tidefs volume.
    path: PathBuf,
    /// Metadata URL (found from the mount when omitted).
    #[arg(long)]
    meta_url: Option<String>,
}

/// The mount point holding `path` and what its mount process recorded.
/// A connection to the control channel at `socket` of a running mount.
pub(super) fn connect_control(socket: &Path) -> super::CmdResult<std::os::unix::net::UnixStream> {
    std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the mount process at {}: {e} (is the mount still running?)",
            socket.display()
        )
        .into()
    })
}

/// The mount point holding `path` (canonicalized), its runtime record, and the path of its
/// control socket; `what` names the command in the message when there is none.
pub(super) fn find_control(
    path: &Path,
    what: &str,
) -> super::CmdResult<(PathBuf, serde_json::Value, PathBuf)> {
    let canon = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mp, rec) = find_mount(&canon).ok_or_else(|| {
        format!(
            "{} is not inside a tidefs mount ({what} works on a running mount)",
            path.display()
        )
    })?;
    let socket = rec
        .get("control")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!(
                "the mount at {} has no control channel (mounted by an older tidefs?): remount it",
                mp.display()
            )
        })?;
    Ok((mp, rec, socket))
}

pub(super) fn find_mount(path: &Path) -> Option<(PathBuf, serde_json::Value)> {
    let mut p = Some(path);
    while let Some(dir) = p {
        if super::mount::is_mounted(dir) {
            let rec = std::fs::read_to_string(super::mount::runtime_file(dir)).ok()?;
            return Some((dir.to_path_buf(), serde_json::from_str(&rec).ok()?));
        }
        p = dir.parent();
    }
    None
}

/// The metadata URL a mount recorded.
pub(super) fn record_meta_url(rec: &serde_json::Value) -> CmdResult<String> {
    Ok(rec
        .get("meta_url")
        .and_then(|v| v.as_str())
        .ok_or("the mount record has no meta URL")?
        .to_string())
}

pub(super) async fn run(a: Args) -> CmdResult {
    let path = std::fs::canonicalize(&a.path).map_err(|e| format!("{}: {e}", a.path.display()))?;
    let md = std::fs::symlink_metadata(&path)?;
    let rec = find_mount(&path);
    let url = match (&a.meta_url, &rec) {
        (Some(u), _) => u.clone(),
        (None, Some((_, r))) => record_meta_url(r)?,
        (None, None) => {
            return Err(format!(
                "{} is not inside a tidefs mount: pass --meta-url",
                path.display()
            )
            .into())
        }
    };
    let root = rec
        .as_ref()
        .and_then(|(_, r)| r.get("root").and_then(|v| v.as_u64()))
        .unwrap_or(ROOT_INODE);
    let ino = if md.ino() == ROOT_INODE {
        root
    } else {
        md.ino()
    };
    let (meta, fmt) = super::open_volume(&url).await?;
    let store = super::open_store(&fmt, 1 << 20)?;
    let attr = meta.getattr(ino).await?;
    println!(
        "{}:\n  inode: {}\n  type: {:?}\n  mode: {:o}\n  nlink: {}\n  length: {}",
        path.display(),
        ino,
        attr.typ,
        attr.mode,
        attr.nlink,
        attr.length
    );
    if attr.typ != tidefs_meta::FileType::File {
        return Ok(ExitCode::SUCCESS);
    }
    let chunks = attr.length.div_ceil(CHUNK_SIZE);
    println!("  chunks: {chunks}");
    let bs = fmt.block_size() as u32;
    for indx in 0..chunks as u32 {
        let slices = meta.read_chunk(ino, indx).await?;
        println!("  chunk {indx}: {} slice record(s)", slices.len());
        for s in &slices {
            println!(
                "    pos {} id {} size {} off {} len {}",
                s.pos, s.id, s.size, s.off, s.len
            );
        }
        for seg in resolve(&slices).iter().filter(|g| g.id != 0) {
            for (b, len) in tidefs_chunk::block_lens(seg.size, bs) {
                println!("      object {}", store.key(seg.id, b, len));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
