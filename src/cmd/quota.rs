//! `tidefs quota set|get|list|delete|check META-URL --path P | --uid U | --gid G ...`:
//! directory, user and group quotas, with JuiceFS's flags (`--capacity` in GiB, `--inodes`,
//! `--create`, `--strict`, `--repair`).

use super::{human, CmdResult};
use std::process::ExitCode;
use std::sync::Arc;
use tidefs_meta::{Ctx, FileType, Ino, Quota, QuotaKind, Volume, ROOT_INODE};

/// Arguments of `quota`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, clap::Subcommand)]
enum Op {
    /// Set (or change) the limits of a directory quota; a new quota counts what is there.
    Set(Target),
    /// Show one quota.
    Get(Target),
    /// Show every quota.
    #[command(alias = "ls")]
    List(Url),
    /// Remove a quota.
    #[command(alias = "rm")]
    Delete(Target),
    /// Recount what quotas cover and compare with what they store (--repair: store the counts).
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct Url {
    /// Metadata URL of the volume.
    meta_url: String,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// Metadata URL of the volume.
    meta_url: String,
    /// Directory, from the volume's root (e.g. /projects/a).
    #[arg(long)]
    path: Option<String>,
    /// A user quota: what files of this uid take, anywhere in the volume.
    #[arg(long, conflicts_with_all = ["path", "gid"])]
    uid: Option<u32>,
    /// A group quota: what files of this gid take.
    #[arg(long, conflicts_with_all = ["path", "uid"])]
    gid: Option<u32>,
    /// Space limit in GiB (0: none).
    #[arg(long)]
    capacity: Option<u64>,
    /// Inode limit (0: none).
    #[arg(long)]
    inodes: Option<u64>,
    /// Create the directory (and its parents) when missing.
    #[arg(long)]
    create: bool,
    /// Count every inode for the usage of a new quota instead of reading directory statistics.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Metadata URL of the volume.
    meta_url: String,
    /// Only the quota of this directory.
    #[arg(long)]
    path: Option<String>,
    /// Store the counted usage where it differs.
    #[arg(long)]
    repair: bool,
    /// Count every inode instead of reading directory statistics.
    #[arg(long)]
    strict: bool,
}

pub(super) async fn run(a: Args) -> CmdResult {
    match a.op {
        Op::Set(t) => {
            let (m, (kind, key), path) = target(&t, t.create).await?;
            let gib = |v: u64| -> CmdResult<i64> {
                v.checked_mul(1 << 30)
                    .and_then(|b| i64::try_from(b).ok())
                    .ok_or_else(|| format!("--capacity {v} GiB is too large").into())
            };
            let space = t.capacity.map(gib).transpose()?;
            let inodes = t
                .inodes
                .map(|v| i64::try_from(v).map_err(|_| format!("--inodes {v} is too large")))
                .transpose()?;
            if space.is_none() && inodes.is_none() {
                return Err("give --capacity (GiB) and/or --inodes".into());
            }
            let q = m.set_quota(kind, key, space, inodes, t.strict).await?;
            show(&[(path, q)]);
        }
        Op::Get(t) => {
            let (m, (kind, key), path) = target(&t, false).await?;
            let q = m
                .get_quota(kind, key)
                .await?
                .ok_or_else(|| format!("no quota on {path}"))?;
            show(&[(path, q)]);
        }
        Op::List(u) => {
            let (m, _) = super::open_volume(&u.meta_url).await?;
            let mut rows = Vec::new();
            // user and group records without limits only hold usage: not quotas to list
            let quotas = m.list_quotas().await?;
            let limited = quotas
                .into_iter()
                .filter(|(k, _, q)| *k == QuotaKind::Dir || q.max_space > 0 || q.max_inodes > 0);
            for (kind, key, q) in limited {
                let name = match kind {
                    QuotaKind::Dir => path_of(&m, key).await,
                    QuotaKind::User => format!("uid:{key}"),
                    QuotaKind::Group => format!("gid:{key}"),
                };
                rows.push((name, q));
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            show(&rows);
        }
        Op::Delete(t) => {
            let (m, (kind, key), path) = target(&t, false).await?;
            if !m.delete_quota(kind, key).await? {
                return Err(format!("no quota on {path}").into());
            }
            println!("removed the quota of {path}");
        }
        Op::Check(c) => {
            let (m, _) = super::open_volume(&c.meta_url).await?;
            let key = match &c.path {
                Some(p) => Some(resolve(&m, p, false).await?),
                None => None,
            };
            let mut checks = m.check_quotas(key, c.repair, c.strict).await?;
            if key.is_none() {
                checks.extend(m.check_owner_quotas(c.repair).await?);
            }
            let mut bad = 0;
            for ch in &checks {
                let path = match ch.kind {
                    QuotaKind::Dir => path_of(&m, ch.key).await,
                    QuotaKind::User => format!("uid:{}", ch.key),
                    QuotaKind::Group => format!("gid:{}", ch.key),
                };
                if ch.consistent() {
                    println!(
                        "{path}: consistent ({} inodes, {})",
                        ch.counted.1,
                        human(ch.counted.0.max(0) as u64)
                    );
                    continue;
                }
                bad += 1;
                println!(
                    "{path}: stored {} inodes, {} but counted {} inodes, {}{}",
                    ch.stored.used_inodes,
                    human(ch.stored.used_space.max(0) as u64),
                    ch.counted.1,
                    human(ch.counted.0.max(0) as u64),
                    if c.repair { " (repaired)" } else { "" }
                );
            }
            if bad > 0 && !c.repair {
                return Err(format!("{bad} quota(s) inconsistent: run again with --repair").into());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The volume and the quota a command names: a directory, a user or a group.
async fn target(
    t: &Target,
    create: bool,
) -> CmdResult<(Arc<dyn Volume>, (QuotaKind, u64), String)> {
    let (m, _) = super::open_volume(&t.meta_url).await?;
    if let Some(uid) = t.uid {
        return Ok((m, (QuotaKind::User, u64::from(uid)), format!("uid:{uid}")));
    }
    if let Some(gid) = t.gid {
        return Ok((m, (QuotaKind::Group, u64::from(gid)), format!("gid:{gid}")));
    }
    let path = t
        .path
        .clone()
        .ok_or("give the directory with --path (or --uid / --gid)")?;
    let ino = resolve(&m, &path, create).await?;
    Ok((m, (QuotaKind::Dir, ino), path))
}

/// The inode of `path` from the root, making missing directories when `create`.
async fn resolve(m: &Arc<dyn Volume>, path: &str, create: bool) -> CmdResult<Ino> {
    let ctx = Ctx::root();
    let mut ino = ROOT_INODE;
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        ino = match m.lookup(&ctx, ino, part.as_bytes()).await {
            Ok(a) => a.ino,
            Err(e) if e.kind() == tidefs_meta::ErrorKind::NotFound && create => {
                m.mknod(&ctx, ino, part.as_bytes(), FileType::Dir, 0o755, 0, 0, b"")
                    .await?
                    .ino
            }
            Err(e) if e.kind() == tidefs_meta::ErrorKind::NotFound => {
                return Err(
                    format!("{path}: no such directory in the volume (--create makes it)").into(),
                )
            }
            Err(e) => return Err(format!("{path}: {e}").into()),
        };
    }
    Ok(ino)
}

/// The path of directory `ino` from the root (its inode number when it cannot be found).
async fn path_of(m: &Arc<dyn Volume>, ino: Ino) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut cur = ino;
    while cur != ROOT_INODE {
        let Ok(a) = m.getattr(cur).await else {
            return format!("inode:{ino}");
        };
        let Some(name) = name_in(m, a.parent, cur).await else {
            return format!("inode:{ino}");
        };
        names.push(name);
        cur = a.parent;
    }
    names.reverse();
    format!("/{}", names.join("/"))
}

/// The name of `ino` in directory `dir`.
async fn name_in(m: &Arc<dyn Volume>, dir: Ino, ino: Ino) -> Option<String> {
    let mut from: Vec<u8> = Vec::new();
    loop {
        let page = m.entries_from(dir, &from, 1000).await.ok()?;
        let n = page.len();
        for (name, a) in &page {
            if a.ino == ino {
                return Some(String::from_utf8_lossy(name).into_owned());
            }
        }
        let (last, _) = page.last()?;
        if n < 1000 {
            return None;
        }
        from = last.clone();
        from.push(0);
    }
}

fn show(rows: &[(String, Quota)]) {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<w$}  {:>10}  {:>10}  {:>5}  {:>10}  {:>10}  {:>5}",
        "PATH", "SIZE", "USED", "USE%", "INODES", "IUSED", "IUSE%"
    );
    let pct = |used: i64, max: i64| {
        if max > 0 {
            format!("{}%", used.max(0) * 100 / max)
        } else {
            String::new()
        }
    };
    for (p, q) in rows {
        let size = if q.max_space > 0 {
            human(q.max_space as u64)
        } else {
            "unlimited".into()
        };
        let inodes = if q.max_inodes > 0 {
            q.max_inodes.to_string()
        } else {
            "unlimited".into()
        };
        println!(
            "{:<w$}  {:>10}  {:>10}  {:>5}  {:>10}  {:>10}  {:>5}",
            p,
            size,
            human(q.used_space.max(0) as u64),
            pct(q.used_space, q.max_space),
            inodes,
            q.used_inodes,
            pct(q.used_inodes, q.max_inodes)
        );
    }
}
