//! `tidefs bench PATH`: a quick picture of a filesystem from a user's seat. Works on any path
//! (a tidefs or juicefs mount, a local disk), so the same numbers can be taken side by side.

use super::CmdResult;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to run in (a scratch directory is made inside and removed afterwards).
    path: PathBuf,
    /// Size of each big file, MiB.
    #[arg(long, default_value_t = 1024)]
    big_file_size: u64,
    /// Size of each write and read call for big files, MiB.
    #[arg(long, default_value_t = 1)]
    block_size: u64,
    /// Size of each small file, KiB.
    #[arg(long, default_value_t = 128)]
    small_file_size: u64,
    /// Number of small files per thread.
    #[arg(long, default_value_t = 100)]
    small_file_count: u64,
    /// Concurrent threads, each with its own files.
    #[arg(short = 'p', long, default_value_t = 1)]
    threads: u64,
}

struct Row {
    item: &'static str,
    value: String,
    cost: String,
}

impl Row {
    /// Throughput of `mib` MiB moved by `files` files in `t`.
    fn mib(item: &'static str, mib: f64, files: u64, t: Duration) -> Self {
        let secs = t.as_secs_f64();
        Row {
            item,
            value: format!("{:.2} MiB/s", mib / secs),
            cost: format!("{:.2} s/file", secs / files as f64),
        }
    }

    /// Rate of `n` files handled in `t` by `threads` threads.
    fn files(item: &'static str, n: f64, threads: u64, t: Duration) -> Self {
        let secs = t.as_secs_f64();
        Row {
            item,
            value: format!("{:.1} files/s", n / secs),
            cost: format!("{:.2} ms/file", secs * 1000.0 * threads as f64 / n),
        }
    }
}

/// Drop the page cache when allowed (root), so reads come from the filesystem, not memory.
fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", b"3").is_ok()
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:<22} [{bar:40}] {pos}/{len} ({elapsed})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Run `work(thread, i)` for `count` items on each of `threads` threads; the elapsed wall time.
fn parallel<F>(threads: u64, count: u64, what: &str, work: F) -> CmdResult<Duration>
where
    F: Fn(u64, u64) -> std::io::Result<()> + Sync,
{
    let pb = bar(threads * count, what);
    let start = Instant::now();
    let res: Vec<std::io::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (work, pb) = (&work, &pb);
                s.spawn(move || {
                    for i in 0..count {
                        work(t, i)?;
                        pb.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("benchmark thread failed")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    for r in res {
        r.map_err(|e| format!("{what} failed: {e}"))?;
    }
    Ok(elapsed)
}

fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn big_path(dir: &Path, t: u64) -> PathBuf {
    dir.join(format!("big.{t}"))
}

fn small_path(dir: &Path, t: u64, i: u64) -> PathBuf {
    dir.join(format!("small.{t}.{i}"))
}

pub(super) fn run(a: Args) -> CmdResult {
    if a.threads == 0 || a.block_size == 0 {
        return Err("--threads and --block-size must be at least 1".into());
    }
    if !a.path.is_dir() {
        return Err(format!("{} is not a directory", a.path.display()).into());
    }
    let dir = a
        .path
        .join(format!("__tidefs_benchmark_{}__", std::process::id()));
    fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = run_in(&a, &dir);
    let _ = fs::remove_dir_all(&dir);
    let rows = result?;
    println!("{:<18} | {:>16} | {:>14}", "ITEM", "VALUE", "COST");
    println!("{:-<18}-+-{:->16}-+-{:->14}", "", "", "");
    for r in rows {
        println!("{:<18} | {:>16} | {:>14}", r.item, r.value, r.cost);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_in(a: &Args, dir: &Path) -> CmdResult<Vec<Row>> {
    let mut rows = Vec::new();
    let bs = (a.block_size << 20) as usize;
    let blocks = (a.big_file_size << 20).div_ceil(bs as u64);
    let big_mib = (a.big_file_size * a.threads) as f64;
    if a.big_file_size > 0 {
        let t = parallel(a.threads, 1, "write big file", |t, _| {
            let mut f = fs::File::create(big_path(dir, t))?;
            let mut buf = vec![0u8; bs];
            for b in 0..blocks {
                fill(&mut buf, t * 1_000_003 + b);
                f.write_all(&buf)?;
            }
            f.sync_all()
        })?;
        rows.push(Row::mib("Write big file", big_mib, a.threads, t));
        let cold = drop_caches();
        let t = parallel(a.threads, 1, "read big file", |t, _| {
            let mut f = fs::File::open(big_path(dir, t))?;
            let mut buf = vec![0u8; bs];
            while f.read(&mut buf)? > 0 {}
            Ok(())
        })?;
        let item = if cold {
            "Read big file"
        } else {
            "Read big file (warm)"
        };
        rows.push(Row::mib(item, big_mib, a.threads, t));
    }
    if a.small_file_count > 0 {
        let n = (a.small_file_count * a.threads) as f64;
        let size = (a.small_file_size << 10) as usize;
        let t = parallel(
            a.threads,
            a.small_file_count,
            "write small files",
            |t, i| {
                let mut buf = vec![0u8; size];
                fill(&mut buf, t * 7919 + i);
                let mut f = fs::File::create(small_path(dir, t, i))?;
                f.write_all(&buf)?;
                f.sync_all()
            },
        )?;
        rows.push(Row::files("Write small file", n, a.threads, t));
        let cold = drop_caches();
        let t = parallel(a.threads, a.small_file_count, "read small files", |t, i| {
            let mut buf = Vec::with_capacity(size);
            fs::File::open(small_path(dir, t, i))?
                .read_to_end(&mut buf)
                .map(|_| ())
        })?;
        let item = if cold {
            "Read small file"
        } else {
            "Read small (warm)"
        };
        rows.push(Row::files(item, n, a.threads, t));
        let t = parallel(a.threads, a.small_file_count, "stat files", |t, i| {
            fs::metadata(small_path(dir, t, i)).map(|_| ())
        })?;
        rows.push(Row::files("Stat file", n, a.threads, t));
    }
    Ok(rows)
}
