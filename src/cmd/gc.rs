//! `tidefs gc META-URL [--delete]`: account for every object of the volume's bucket.
//!
//! Objects are listed (streamed, never held all at once) and checked against the slices the
//! metadata references: slices of files, slices set aside by compaction for the trash, and
//! reference rows at zero whose objects are still to go. An object that none of them covers is
//! leaked (an upload whose slice was never committed, a deletion that failed). Objects younger
//! than `--min-age` are left alone: an upload in flight looks exactly like a leak.
//!
//! Memory: one map entry per referenced slice (about 40 bytes), as JuiceFS's gc.

use super::{human, CmdResult};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// Arguments of `gc`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata engine URL.
    meta_url: String,
    /// Delete leaked objects, free files whose deletion is pending, and release delayed slices
    /// whose trash time is over (without it gc only reports).
    #[arg(long)]
    delete: bool,
    /// First compact every chunk of more than one slice record (rewriting what overwrites
    /// left fragmented, and freeing the objects only old records held).
    #[arg(long)]
    compact: bool,
    /// Object deletions (and with --compact, chunk compactions) in flight at once.
    #[arg(short = 'p', long = "threads", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    threads: u16,
    /// Leave objects younger than this many seconds alone: an upload whose slice is not
    /// committed yet looks like a leak until it is.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    min_age: u64,
}

#[derive(Default)]
struct Tally {
    n: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.n += 1;
        self.bytes += bytes;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.n, human(self.bytes))
    }
}

/// Chunks read per page of the volume scan.
const PAGE: usize = 1000;

pub(super) async fn run(a: Args) -> CmdResult {
    let (meta, fmt) = super::open_volume(&a.meta_url).await?;
    let store = super::open_store(&fmt, 1 << 20)?;
    let started = Instant::now();
    if a.delete {
        super::install_slice_deleter(&*meta, &store);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let released = meta
            .purge_held_slices(now - i64::from(fmt.trash_days) * 86_400)
            .await?;
        let freed = meta.cleanup().await?;
        println!(
            "freed {freed} file(s) (pending deletions, files of dead sessions, expired trash); released {released} delayed or unreferenced slice record(s)"
        );
    }
    if a.compact {
        super::install_slice_deleter(&*meta, &store);
        let mut chunks: Vec<(tidefs_meta::Ino, u32)> = Vec::new();
        let mut cursor = Vec::new();
        loop {
            let (page, next) = meta.chunks_page(&cursor, PAGE).await?;
            chunks.extend(
                page.into_iter()
                    .filter(|c| c.slices.len() > 1)
                    .map(|c| (c.ino, c.indx)),
            );
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        let bar = indicatif::ProgressBar::new(chunks.len() as u64);
        let t = super::compact::compact_all(
            meta.clone(),
            store.clone(),
            chunks,
            usize::from(a.threads),
            &bar,
        )
        .await;
        bar.finish_and_clear();
        println!("compaction: {}", t.summary());
    }
    // every slice something still refers to, with its size
    let mut held: HashMap<u64, u32> = HashMap::new();
    let mut in_files = 0u64;
    let mut cursor = Vec::new();
    loop {
        let (page, next) = meta.chunks_page(&cursor, PAGE).await?;
        for ch in page {
            for s in ch.slices.iter().filter(|s| s.id != 0) {
                if held.insert(s.id, s.size).is_none() {
                    in_files += 1;
                }
            }
        }
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    let left = meta.leftovers().await?;
    for &(id, size, _) in &left.delayed {
        held.insert(id, size);
    }
    for &(id, size) in &left.unreferenced {
        held.insert(id, size);
    }

    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(200));
    let bs = store.block_size();
    let min_age = Duration::from_secs(a.min_age);
    let now = SystemTime::now();
    let (mut valid, mut leaked, mut young, mut foreign, mut deleted) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let mut failed = 0u64;
    let mut pending = FuturesUnordered::new();
    let mut rx = store.list_objects();
    while let Some(obj) = rx.recv().await {
        let obj = obj?;
        let Some((id, indx, len, temporary)) = tidefs_chunk::parse_block_key(&obj.key) else {
            foreign.add(obj.size);
            continue;
        };
        // in use: a block the slice has, under exactly the key the volume's layout gives it
        let belongs = !temporary
            && held.get(&id).is_some_and(|&size| {
                tidefs_chunk::block_lens(size, bs).any(|(i, l)| i == indx && l == len)
            })
            && obj.key == store.key(id, indx, len);
        if belongs {
            valid.add(obj.size);
        } else if obj
            .modified
            .is_none_or(|m| now.duration_since(m).unwrap_or_default() < min_age)
        {
            young.add(obj.size);
        } else {
            leaked.add(obj.size);
            tracing::debug!(object = %obj.key, "leaked object");
            if a.delete {
                while pending.len() >= usize::from(a.threads) {
                    note(pending.next().await, &mut deleted, &mut failed);
                }
                let st = store.clone();
                pending.push(async move {
                    let r = st.delete_object(&obj.key).await;
                    (obj, r)
                });
            }
        }
        let seen = valid.n + leaked.n + young.n + foreign.n;
        if seen.is_multiple_of(1000) {
            bar.set_message(format!("{seen} objects listed, {} leaked", leaked.n));
        }
    }
    while let Some(done) = pending.next().await {
        note(Some(done), &mut deleted, &mut failed);
    }
    bar.finish_and_clear();

    println!(
        "slices: {in_files} in files, {} delayed for the trash, {} unreferenced awaiting deletion; {} file(s) pending deletion",
        left.delayed.len(),
        left.unreferenced.len(),
        left.pending_files
    );
    println!(
        "objects: {valid} in use, {leaked} leaked, {young} younger than {} s left alone, {foreign} not block objects",
        a.min_age
    );
    if a.delete {
        println!("deleted {deleted} leaked objects, {failed} failed");
    } else if leaked.n > 0 {
        println!(
            "run again with --delete to remove the {} leaked objects",
            leaked.n
        );
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn note(
    done: Option<(tidefs_chunk::ObjectInfo, tidefs_chunk::Result<()>)>,
    deleted: &mut Tally,
    failed: &mut u64,
) {
    match done {
        Some((obj, Ok(()))) => deleted.add(obj.size),
        Some((obj, Err(e))) => {
            *failed += 1;
            eprintln!("cannot delete {}: {e}", obj.key);
        }
        None => {}
    }
}
