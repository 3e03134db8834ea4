//! `tidefs stats MOUNTPOINT [-i SECS] [-c N] [--json]`: what a running mount is doing, asked
//! over its control channel: object downloads, disk-cache hits, readahead, write buffers and
//! `--writeback` uploads, as one line per interval (rates over the interval), or the raw
//! counters once with `--json`.

use super::{human, CmdResult};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The mount point of a running tidefs mount (or any path inside it).
    path: PathBuf,
    /// Seconds between lines.
    #[arg(short = 'i', long, default_value_t = 1.0)]
    interval: f64,
    /// Lines to print, then stop (0: until interrupted).
    #[arg(short = 'c', long, default_value_t = 0)]
    count: u64,
    /// Print the mount's counters once, as JSON, and stop.
    #[arg(long)]
    json: bool,
}

/// One `stats` answer of the mount at `socket`.
fn ask(socket: &Path) -> CmdResult<serde_json::Value> {
    let conn = super::info::connect_control(socket)?;
    let mut w = conn.try_clone()?;
    writeln!(w, "{}", serde_json::json!({ "op": "stats" }))?;
    let mut line = String::new();
    if BufReader::new(conn).read_line(&mut line)? == 0 {
        return Err("the mount process closed the control channel (did it exit?)".into());
    }
    let v: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| format!("bad answer from the mount process: {e}"))?;
    match v.get("done") {
        Some(d) => Ok(d.clone()),
        None => Err(format!(
            "the mount did not answer stats: {} (mounted by an older tidefs?)",
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("unknown answer")
        )
        .into()),
    }
}

/// Counter `path` (slash-separated keys) of a stats answer, 0 when absent.
fn num(v: &serde_json::Value, path: &str) -> u64 {
    path.split('/')
        .try_fold(v, |v, k| v.get(k))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// Growth of counter `path` from `a` to `b` per second of `secs`.
fn rate(a: &serde_json::Value, b: &serde_json::Value, path: &str, secs: f64) -> f64 {
    num(b, path).saturating_sub(num(a, path)) as f64 / secs
}

const HEADER: &str =
    "    GET/s    GET MiB/s  cache hit/s miss/s  ahead/s    buffer  staged   uploaded/s";

/// One line: the rates between `a` and `b`, `secs` apart, and the levels of `b`.
fn line(a: &serde_json::Value, b: &serde_json::Value, secs: f64) -> String {
    format!(
        "{:>9.0} {:>12.1} {:>12.0} {:>6.0} {:>8.0} {:>9} {:>7} {:>12.1}",
        rate(a, b, "store/gets", secs),
        rate(a, b, "store/get_bytes", secs) / f64::from(1u32 << 20),
        rate(a, b, "disk_cache/hits", secs),
        rate(a, b, "disk_cache/misses", secs),
        rate(a, b, "readahead/started", secs),
        human(num(b, "buffer_used_bytes")),
        num(b, "writeback/staged_blocks"),
        rate(a, b, "writeback/uploaded", secs),
    )
}

pub(super) fn run(a: Args) -> CmdResult {
    if !(a.interval.is_finite() && (0.1..=3600.0).contains(&a.interval)) {
        return Err(format!(
            "invalid --interval {}: give seconds between 0.1 and 3600",
            a.interval
        )
        .into());
    }
    let (mp, _, socket) = super::info::find_control(&a.path, "stats")?;
    let mut prev = ask(&socket)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&prev)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}  (every {} s)", mp.display(), a.interval);
    println!("{HEADER}");
    let mut t = Instant::now();
    let mut printed = 0u64;
    while a.count == 0 || printed < a.count {
        std::thread::sleep(Duration::from_secs_f64(a.interval));
        let cur = ask(&socket)?;
        let now = Instant::now();
        let secs = now.duration_since(t).as_secs_f64().max(1e-3);
        println!("{}", line(&prev, &cur, secs));
        std::io::stdout().flush()?;
        (prev, t) = (cur, now);
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_differences_per_second_and_missing_counters_are_zero() {
        let a = serde_json::json!({"store": {"gets": 10, "get_bytes": 0}});
        let b = serde_json::json!({"store": {"gets": 30, "get_bytes": 8 << 20},
            "buffer_used_bytes": 0});
        assert_eq!(rate(&a, &b, "store/gets", 2.0), 10.0);
        assert_eq!(rate(&a, &b, "store/get_bytes", 2.0), f64::from(4u32 << 20));
        assert_eq!(rate(&a, &b, "disk_cache/hits", 2.0), 0.0);
        // a counter that went down (a remount between answers) reads as no growth
        assert_eq!(rate(&b, &a, "store/gets", 1.0), 0.0);
        let l = line(&a, &b, 2.0);
        assert!(l.trim_start().starts_with("10 "), "{l}");
    }
}
