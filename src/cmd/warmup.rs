//! `tidefs warmup PATH... [-f LIST] [-p N] [--check] [--evict]`: fill (check, empty) the disk
//! cache of a running mount with the blocks of the given files and directories. The paths are
//! walked here; the mount process does the block work, asked over its control channel.

use super::{human, CmdResult};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tidefs_meta::ROOT_INODE;

/// Inodes per request: progress is reported within a request, so this only bounds one line.
const BATCH: usize = 10_000;

/// Arguments of `warmup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories inside a mounted tidefs volume (directories are walked).
    paths: Vec<PathBuf>,
    /// A file listing more paths, one per line.
    #[arg(short = 'f', long = "file")]
    list: Option<PathBuf>,
    /// Blocks fetched at once.
    #[arg(short = 'p', long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Only report how much of the paths is in the cache.
    #[arg(long, conflicts_with = "evict")]
    check: bool,
    /// Drop the paths' blocks from the cache.
    #[arg(long)]
    evict: bool,
}

/// The files of one mount to work on: (inode as the mount process knows it, size).
struct Job {
    socket: PathBuf,
    files: Vec<(u64, u64)>,
}

/// Add the regular files at and under `path` to the job of its mount.
fn collect(path: &Path, jobs: &mut BTreeMap<PathBuf, Job>) -> CmdResult<()> {
    let (mp, rec, socket) = super::info::find_control(path, "warmup")?;
    let canon = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let root = rec
        .get("root")
        .and_then(|v| v.as_u64())
        .unwrap_or(ROOT_INODE);
    let job = jobs.entry(mp).or_insert_with(|| Job {
        socket,
        files: Vec::new(),
    });
    let mut stack = vec![canon];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if md.is_dir() {
            let rd = std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            for e in rd {
                stack.push(e.map_err(|e| format!("{}: {e}", p.display()))?.path());
            }
        } else if md.is_file() {
            let ino = if md.ino() == ROOT_INODE {
                root
            } else {
                md.ino()
            };
            job.files.push((ino, md.len()));
        }
    }
    Ok(())
}

/// What the mount reported, summed over requests.
#[derive(Default, Clone, Copy)]
struct Totals {
    files: u64,
    bytes: u64,
    cached: u64,
    fetched: u64,
    failed: u64,
    skipped: u64,
    flat: u64,
}

impl Totals {
    fn from_json(v: &serde_json::Value) -> Self {
        let g = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        Self {
            files: g("files"),
            bytes: g("bytes"),
            cached: g("cached"),
            fetched: g("fetched"),
            failed: g("failed"),
            skipped: g("skipped"),
            flat: g("flat"),
        }
    }

    fn add(&mut self, o: Totals) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.cached += o.cached;
        self.fetched += o.fetched;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.flat += o.flat;
    }
}

/// Run one mount's job, advancing `bar` by block bytes done.
fn run_job(job: &Job, mode: &str, threads: u16, bar: &indicatif::ProgressBar) -> CmdResult<Totals> {
    let conn = super::info::connect_control(&job.socket)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let mut total = Totals::default();
    for batch in job.files.chunks(BATCH) {
        let inodes: Vec<u64> = batch.iter().map(|f| f.0).collect();
        let req = serde_json::json!({ "op": "warmup", "mode": mode, "inodes": inodes, "threads": threads });
        writeln!(writer, "{req}")?;
        let base = total.bytes;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err("the mount process closed the control channel (did it exit?)".into());
            }
            let v: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| format!("bad answer from the mount process: {e}"))?;
            if let Some(p) = v.get("progress") {
                bar.set_position(base + Totals::from_json(p).bytes);
            } else if let Some(d) = v.get("done") {
                total.add(Totals::from_json(d));
                bar.set_position(total.bytes);
                break;
            } else {
                let msg = v
                    .get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("unknown answer");
                return Err(format!("warmup refused by the mount: {msg}").into());
            }
        }
    }
    Ok(total)
}

pub(super) fn run(a: Args) -> CmdResult {
    let mut paths = a.paths.clone();
    if let Some(list) = &a.list {
        let text = std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?;
        paths.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from),
        );
    }
    if paths.is_empty() {
        return Err("give paths to warm up, or a list of them with -f FILE".into());
    }
    let mut jobs = BTreeMap::new();
    for p in &paths {
        collect(p, &mut jobs)?;
    }
    let mode = if a.check {
        "check"
    } else if a.evict {
        "evict"
    } else {
        "fill"
    };
    let size: u64 = jobs
        .values()
        .flat_map(|j| j.files.iter().map(|f| f.1))
        .sum();
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    let started = Instant::now();
    let mut total = Totals::default();
    for job in jobs.values() {
        let t = run_job(job, mode, a.threads, &bar)?;
        total.add(t);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let rate = human((total.bytes as f64 / secs.max(1e-3)) as u64);
    match mode {
        "check" => {
            let pct = if total.bytes == 0 {
                100.0
            } else {
                100.0 * total.cached as f64 / total.bytes as f64
            };
            println!(
                "{} files, {} of data: {} in the cache ({pct:.1}%)",
                total.files,
                human(total.bytes),
                human(total.cached)
            );
        }
        "evict" => println!(
            "{} files, {} of data: {} dropped from the cache in {secs:.1} s",
            total.files,
            human(total.bytes),
            human(total.cached)
        ),
        _ => println!(
            "{} files, {} of data warmed in {secs:.1} s ({rate}/s): {} fetched, {} already cached{}",
            total.files,
            human(total.bytes),
            human(total.fetched),
            human(total.cached),
            if total.failed > 0 {
                format!(", {} blocks FAILED (see the mount log)", total.failed)
            } else {
                String::new()
            }
        ),
    }
    if total.flat > 0 {
        println!(
            "{} files have a flat copy: this read-only mount reads them by passthrough",
            total.flat
        );
    }
    if total.skipped > 0 {
        println!(
            "{} files were gone or changed type meanwhile",
            total.skipped
        );
    }
    Ok(if total.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
