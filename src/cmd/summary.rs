//! `tidefs summary PATH [--depth N] [--entries N] [--csv] [--strict]`: size, files and
//! directories of a tree in a running mount, answered by the mount from directory statistics
//! (or, with `--strict`, by counting every inode).

use super::{human, CmdResult};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use tidefs_meta::ROOT_INODE;

/// Arguments of `summary`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A file or directory inside a mounted tidefs volume.
    path: PathBuf,
    /// Levels of subdirectories shown.
    #[arg(short, long, default_value_t = 2)]
    depth: u32,
    /// Largest subdirectories shown per directory.
    #[arg(short, long, default_value_t = 10)]
    entries: u32,
    /// Comma-separated values instead of a table.
    #[arg(long)]
    csv: bool,
    /// Count every inode instead of reading directory statistics (slow on large trees).
    #[arg(long)]
    strict: bool,
}

pub(super) fn run(a: Args) -> CmdResult {
    let (_mp, rec, socket) = super::info::find_control(&a.path, "summary")?;
    let md = std::fs::metadata(&a.path).map_err(|e| format!("{}: {e}", a.path.display()))?;
    let root = rec
        .get("root")
        .and_then(|v| v.as_u64())
        .unwrap_or(ROOT_INODE);
    let ino = if md.ino() == ROOT_INODE {
        root
    } else {
        md.ino()
    };
    let conn = super::info::connect_control(&socket)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let req = serde_json::json!({
        "op": "summary", "inode": ino, "depth": a.depth, "entries": a.entries, "strict": a.strict,
    });
    writeln!(writer, "{req}")?;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err("the mount process closed the control channel (did it exit?)".into());
    }
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("bad answer from the mount: {e}"))?;
    let Some(tree) = v.get("done") else {
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("unknown answer");
        return Err(msg.to_string().into());
    };
    let mut rows = Vec::new();
    flatten(tree, a.path.display().to_string(), &mut rows);
    if a.csv {
        println!("PATH,SIZE,FILES,DIRS,LENGTH");
        for r in &rows {
            println!("{},{},{},{},{}", csv_field(&r.0), r.1, r.2, r.3, r.4);
        }
    } else {
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
        println!(
            "{:<w$}  {:>12}  {:>12}  {:>10}",
            "PATH", "SIZE", "FILES", "DIRS"
        );
        for r in &rows {
            println!("{:<w$}  {:>12}  {:>12}  {:>10}", r.0, human(r.1), r.2, r.3);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// (path, size, files, dirs, length) of `t` and its children, depth first.
type Row = (String, u64, u64, u64, u64);

fn flatten(t: &serde_json::Value, path: String, rows: &mut Vec<Row>) {
    let n = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    rows.push((path.clone(), n("size"), n("files"), n("dirs"), n("length")));
    for c in t
        .get("children")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        let name = c.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        flatten(c, format!("{}/{name}", path.trim_end_matches('/')), rows);
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
