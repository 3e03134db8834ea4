//! `tidefs fsck META-URL`: metadata consistency plus the existence of every slice's objects.

use super::CmdResult;
use std::collections::HashSet;
use std::process::ExitCode;

/// Arguments of `fsck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata engine URL.
    meta_url: String,
    /// Fix what can be fixed safely (dangling entries, wrong link counts), and run the cleanup
    /// a mount runs every minute: files of dead sessions, expired trash, pending deletions.
    #[arg(long)]
    repair: bool,
}

pub(super) async fn run(a: Args) -> CmdResult {
    let (meta, fmt) = super::open_volume(&a.meta_url).await?;
    let store = super::open_store(&fmt, 1 << 20)?;
    if a.repair {
        super::install_slice_deleter(&*meta, &store);
        let removed = meta.cleanup().await?;
        println!("cleanup: removed {removed} file(s) of dead sessions, expired trash or pending deletions");
    }
    let mut problems = meta.check(a.repair).await?;
    let bs = fmt.block_size() as u32;
    let compressed = !matches!(fmt.compression.as_str(), "" | "none");
    let mut seen = HashSet::new();
    let mut objects = 0u64;
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
                    let key = store.key(s.id, b, len);
                    objects += 1;
                    match store.object_size(&key).await? {
                        None => problems.push(tidefs_meta::Problem {
                            what: format!(
                                "inode {} chunk {}: object {key} is missing",
                                ch.ino, ch.indx
                            ),
                            repaired: false,
                        }),
                        Some(n) if !compressed && n != u64::from(len) => {
                            problems.push(tidefs_meta::Problem {
                                what: format!(
                                    "inode {} chunk {}: object {key} is {n} bytes, expected {len}",
                                    ch.ino, ch.indx
                                ),
                                repaired: false,
                            })
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    for p in &problems {
        println!("{}{}", p.what, if p.repaired { " (repaired)" } else { "" });
    }
    let left = problems.iter().filter(|p| !p.repaired).count();
    println!(
        "checked {} slices, {objects} objects: {} problem(s), {left} unrepaired",
        seen.len(),
        problems.len()
    );
    Ok(if left == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
