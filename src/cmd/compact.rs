//! `tidefs compact PATH...`: rewrite fragmented chunks of files in a mounted volume (see
//! `vfs::compact`). The work is done here, against the volume's metadata and store, so the
//! mount is not slowed; the mount's readers find the new slices on their next resolve.

use super::{human, CmdResult};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tidefs_meta::{Ino, Meta, CHUNK_SIZE};

/// Arguments of `compact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (recursively) inside mounted tidefs volumes.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Chunks compacted at once.
    #[arg(short = 'p', long = "threads", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

/// What a compaction pass did.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub chunks: u64,
    pub compacted: u64,
    pub before: u64,
    pub after: u64,
    pub written: u64,
    pub failed: u64,
}

impl Totals {
    pub fn summary(&self) -> String {
        format!(
            "{} of {} chunk(s) compacted: {} slice records -> {}, {} rewritten{}",
            self.compacted,
            self.chunks,
            self.before,
            self.after,
            human(self.written),
            if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            }
        )
    }
}

/// Compact each of `chunks` that has more than one record, `threads` at a time.
pub(super) async fn compact_all(
    meta: Arc<dyn Meta>,
    store: tidefs_chunk::ChunkStore,
    chunks: impl IntoIterator<Item = (Ino, u32)>,
    threads: usize,
    bar: &indicatif::ProgressBar,
) -> Totals {
    let mut t = Totals::default();
    let mut running = FuturesUnordered::new();
    let note = |t: &mut Totals, r: crate::vfs::error::Result<Option<_>>, what: (Ino, u32)| {
        bar.inc(1);
        match r {
            Ok(Some(c)) => {
                let c: crate::vfs::compact::Compacted = c;
                t.compacted += 1;
                t.before += c.before as u64;
                t.after += c.after as u64;
                t.written += c.written;
            }
            Ok(None) => {}
            Err(e) => {
                t.failed += 1;
                // println on a hidden bar (stderr not a terminal) prints nothing: the reason
                // must reach logs too
                bar.suspend(|| eprintln!("inode {} chunk {}: {e}", what.0, what.1));
            }
        }
    };
    for (ino, indx) in chunks {
        t.chunks += 1;
        while running.len() >= threads.max(1) {
            if let Some((r, what)) = running.next().await {
                note(&mut t, r, what);
            }
        }
        let (meta, store) = (meta.clone(), store.clone());
        running.push(async move {
            let r = crate::vfs::compact::compact_chunk(&*meta, &store, ino, indx, 2).await;
            (r, (ino, indx))
        });
    }
    while let Some((r, what)) = running.next().await {
        note(&mut t, r, what);
    }
    t
}

/// Regular files at and under `path` (not following symlinks), with their lengths.
fn walk(path: &Path, out: &mut Vec<(Ino, u64)>) -> CmdResult<()> {
    let md = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if md.is_file() {
        out.push((md.ino(), md.len()));
    } else if md.is_dir() {
        for e in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
            walk(&e?.path(), out)?;
        }
    }
    Ok(())
}

pub(super) async fn run(a: Args) -> CmdResult {
    // files grouped by the volume (meta URL) their mount serves
    let mut by_url: BTreeMap<String, Vec<(Ino, u64)>> = BTreeMap::new();
    for p in &a.paths {
        let path = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let (_, rec) = super::info::find_mount(&path).ok_or_else(|| {
            format!(
                "{} is not inside a tidefs mount (or the mount left no record: is it running?)",
                path.display()
            )
        })?;
        let url = super::info::record_meta_url(&rec)?;
        walk(&path, by_url.entry(url).or_default())?;
    }
    let started = Instant::now();
    let mut failed = 0;
    for (url, mut files) in by_url {
        files.sort_unstable();
        files.dedup();
        let (meta, fmt) = super::open_volume(&url).await?;
        let store = super::open_store(&fmt, 64 << 20)?
            .with_sums(crate::vfs::sums::MetaSums::new(meta.clone()));
        super::install_slice_deleter(&*meta, &store);
        let chunks: Vec<(Ino, u32)> = files
            .iter()
            .flat_map(|&(ino, len)| (0..len.div_ceil(CHUNK_SIZE) as u32).map(move |i| (ino, i)))
            .collect();
        let bar = indicatif::ProgressBar::new(chunks.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} chunks {pos}/{len} [{wide_bar}] eta {eta}",
        ) {
            bar.set_style(style);
        }
        let t = compact_all(meta, store, chunks, usize::from(a.threads), &bar).await;
        bar.finish_and_clear();
        println!("{} file(s): {}", files.len(), t.summary());
        failed += t.failed;
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
