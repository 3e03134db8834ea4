//! `tidefs fsck META-URL`: metadata consistency plus the existence of every slice's objects,
//! and with `--check-data` their content.

use super::CmdResult;
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;
use tidefs_chunk::{Checked, ChunkStore, ErrorKind};

/// Arguments of `fsck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata engine URL.
    meta_url: String,
    /// Fix what can be fixed safely (dangling entries, wrong link counts), and run the cleanup
    /// a mount runs every minute: files of dead sessions, expired trash, pending deletions.
    #[arg(long)]
    repair: bool,
    /// Also read every object and verify its content: against the checksums tidefs recorded
    /// at upload, or else the CRC32C the object was stored with (blocks juicefs wrote to S3),
    /// or else its length. Reads the whole volume from the object store (caches are bypassed).
    #[arg(long)]
    check_data: bool,
    /// Also compare every directory's statistics (sizes and entry counts `summary` and quotas
    /// use) with a count of its entries; with --repair, store the counts. Run it while no
    /// client writes: changes a mount has not stored yet (up to a second) show as differences.
    #[arg(long)]
    dir_stats: bool,
    /// Objects checked at once.
    #[arg(short = 'p', long = "threads", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    threads: u16,
}

/// One object to look at: where it belongs, and its block.
struct Block {
    ino: u64,
    indx: u32,
    id: u64,
    b: u32,
    len: u32,
}

/// What checking objects found.
#[derive(Default)]
struct Found {
    objects: u64,
    bytes: u64,
    by: [u64; 3],
}

/// Look at one object: its size (a HEAD), or with `data` its content.
async fn check(
    store: &ChunkStore,
    blk: &Block,
    data: bool,
    compressed: bool,
) -> CmdResult<Result<Option<Checked>, String>> {
    let key = store.key(blk.id, blk.b, blk.len);
    let at = format!("inode {} chunk {}: object {key}", blk.ino, blk.indx);
    if data {
        return match store.check_block(blk.id, blk.b, blk.len).await {
            Ok(c) => Ok(Ok(Some(c))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Err(format!("{at} is missing"))),
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                let why = e.to_string();
                let why = why.strip_prefix(&format!("object {key} ")).unwrap_or(&why);
                Ok(Err(format!("{at} is corrupt: {why}")))
            }
            Err(e) => Err(e.into()),
        };
    }
    Ok(match store.object_size(&key).await? {
        None => Err(format!("{at} is missing")),
        Some(n) if !compressed && n != u64::from(blk.len) => {
            Err(format!("{at} is {n} bytes, expected {}", blk.len))
        }
        Some(_) => Ok(None),
    })
}

pub(super) async fn run(a: Args) -> CmdResult {
    let (meta, fmt) = super::open_volume(&a.meta_url).await?;
    let store =
        super::open_store(&fmt, 1 << 20)?.with_sums(crate::vfs::sums::MetaSums::new(meta.clone()));
    if a.repair {
        super::install_slice_deleter(&*meta, &store);
        let removed = meta.cleanup().await?;
        println!("cleanup: removed {removed} file(s) of dead sessions, expired trash or pending deletions");
    }
    let mut problems = meta.check(a.repair).await?;
    if a.dir_stats {
        problems.extend(meta.check_dir_stats(a.repair).await?);
    }
    let bs = fmt.block_size() as u32;
    let compressed = !matches!(fmt.compression.as_str(), "" | "none");
    let mut seen = HashSet::new();
    let mut found = Found::default();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut pending = FuturesUnordered::new();
    let mut note = |r: CmdResult<(Result<Option<Checked>, String>, u32)>,
                    problems: &mut Vec<tidefs_meta::Problem>|
     -> CmdResult<()> {
        let (r, len) = r?;
        found.objects += 1;
        found.bytes += u64::from(len);
        match r {
            Ok(c) => match c {
                Some(Checked::Sums) => found.by[0] += 1,
                Some(Checked::StoredCrc) => found.by[1] += 1,
                Some(Checked::Length) => found.by[2] += 1,
                None => {}
            },
            Err(what) => problems.push(tidefs_meta::Problem {
                what,
                repaired: false,
            }),
        }
        if found.objects.is_multiple_of(100) {
            bar.set_message(format!(
                "{} objects checked, {} MiB",
                found.objects,
                found.bytes >> 20
            ));
        }
        Ok(())
    };
    // the chunks a page at a time: memory for the scan stays bounded by the page
    let mut cursor = Vec::new();
    let mut pages = true;
    while pages {
        let (page, next) = meta.chunks_page(&cursor, 1000).await?;
        match next {
            Some(n) => cursor = n,
            None => pages = false,
        }
        for ch in page {
            for s in ch.slices.iter().filter(|s| s.id != 0) {
                if !seen.insert(s.id) {
                    continue;
                }
                for (b, len) in tidefs_chunk::block_lens(s.size, bs) {
                    while pending.len() >= usize::from(a.threads) {
                        if let Some(r) = pending.next().await {
                            note(r, &mut problems)?;
                        }
                    }
                    let blk = Block {
                        ino: ch.ino,
                        indx: ch.indx,
                        id: s.id,
                        b,
                        len,
                    };
                    let st = &store;
                    let data = a.check_data;
                    pending.push(async move {
                        check(st, &blk, data, compressed)
                            .await
                            .map(|r| (r, blk.len))
                    });
                }
            }
        }
    }
    while let Some(r) = pending.next().await {
        note(r, &mut problems)?;
    }
    bar.finish_and_clear();
    for p in &problems {
        println!("{}{}", p.what, if p.repaired { " (repaired)" } else { "" });
    }
    let left = problems.iter().filter(|p| !p.repaired).count();
    println!(
        "checked {} slices, {} objects: {} problem(s), {left} unrepaired",
        seen.len(),
        found.objects,
        problems.len()
    );
    if a.check_data {
        println!(
            "data: {} MiB read; {} object(s) verified against tidefs checksums, {} against the CRC32C they were stored with, {} by length only",
            found.bytes >> 20,
            found.by[0],
            found.by[1],
            found.by[2]
        );
    }
    Ok(if left == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
