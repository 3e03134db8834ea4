//! `tidefs config META-URL [--capacity GiB] [--inodes N] [--trash-days N] ...`: change a
//! volume's setting. Without flags it prints the setting. Each change is validated and shown as
//! `name: before -> after`; a change that would refuse writes or lock clients out needs
//! `--force`. Mounted clients take the new setting up at their next heartbeat.

use super::{human, CmdResult};
use std::process::ExitCode;
use tidefs_meta::QuotaKind;

/// Arguments of `config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata URL of the volume.
    meta_url: String,
    /// Space limit of the volume in GiB (0: none).
    #[arg(long)]
    capacity: Option<u64>,
    /// Inode limit of the volume (0: none).
    #[arg(long)]
    inodes: Option<u64>,
    /// Days removed files stay in the trash (0: no trash).
    #[arg(long)]
    trash_days: Option<u32>,
    /// Keep per-directory statistics (needed by directory quotas and a fast `summary`).
    #[arg(long, value_name = "BOOL")]
    dir_stats: Option<bool>,
    /// Default upload bandwidth limit of a client, Mbps (0: none).
    #[arg(long, value_name = "MBPS")]
    upload_limit: Option<i64>,
    /// Default download bandwidth limit of a client, Mbps (0: none).
    #[arg(long, value_name = "MBPS")]
    download_limit: Option<i64>,
    /// Oldest client version allowed to mount (JuiceFS numbering, e.g. 1.1.0; empty: any).
    #[arg(long)]
    min_client_version: Option<String>,
    /// Newest client version allowed to mount (empty: any).
    #[arg(long)]
    max_client_version: Option<String>,
    /// Turn POSIX ACLs on (irreversible, as in JuiceFS).
    #[arg(long)]
    enable_acl: bool,
    /// Apply changes that refuse writes (limits below current usage) or lock clients out.
    #[arg(long)]
    force: bool,
}

pub(super) async fn run(a: Args) -> CmdResult {
    let (meta, old) = super::open_volume(&a.meta_url).await?;
    let mut new = old.clone();
    let mut changes: Vec<String> = Vec::new();
    let mut risky: Vec<String> = Vec::new();
    let stat = meta.statfs().await?;
    let used_space = stat.total_space.saturating_sub(stat.avail_space);
    if let Some(gib) = a.capacity {
        let bytes = gib
            .checked_mul(1 << 30)
            .ok_or_else(|| format!("--capacity {gib} GiB is too large"))?;
        if bytes != old.capacity {
            changes.push(format!(
                "capacity: {} -> {}",
                limit(old.capacity),
                limit(bytes)
            ));
            if bytes > 0 && bytes < used_space {
                risky.push(format!(
                    "capacity {} is below the {} in use: every write would fail with ENOSPC",
                    human(bytes),
                    human(used_space)
                ));
            }
            new.capacity = bytes;
        }
    }
    if let Some(n) = a.inodes {
        if n != old.inodes {
            changes.push(format!("inodes: {} -> {}", count(old.inodes), count(n)));
            if n > 0 && n < stat.used_inodes {
                risky.push(format!(
                    "inode limit {n} is below the {} inodes in use: every create would fail",
                    stat.used_inodes
                ));
            }
            new.inodes = n;
        }
    }
    if let Some(d) = a.trash_days {
        if d != old.trash_days {
            changes.push(format!("trash-days: {} -> {d}", old.trash_days));
            new.trash_days = d;
        }
    }
    if let Some(on) = a.dir_stats {
        if on != old.dir_stats {
            if !on {
                let quotas = meta
                    .list_quotas()
                    .await?
                    .into_iter()
                    .filter(|q| q.0 == QuotaKind::Dir)
                    .count();
                if quotas > 0 {
                    return Err(format!(
                        "{quotas} directory quota(s) rely on directory statistics: remove them first (tidefs quota delete)"
                    )
                    .into());
                }
            }
            changes.push(format!("dir-stats: {} -> {on}", old.dir_stats));
            new.dir_stats = on;
        }
    }
    for (name, v, field) in [
        ("upload-limit", a.upload_limit, &mut new.upload_limit),
        ("download-limit", a.download_limit, &mut new.download_limit),
    ] {
        if let Some(v) = v {
            if v < 0 {
                return Err(format!("--{name} cannot be negative").into());
            }
            if v != *field {
                changes.push(format!("{name}: {} -> {}", mbps(*field), mbps(v)));
                *field = v;
            }
        }
    }
    for (name, v, field) in [
        (
            "min-client-version",
            &a.min_client_version,
            &mut new.min_client_version,
        ),
        (
            "max-client-version",
            &a.max_client_version,
            &mut new.max_client_version,
        ),
    ] {
        if let Some(v) = v {
            if v != field {
                changes.push(format!("{name}: {:?} -> {v:?}", field.as_str()));
                *field = v.clone();
            }
        }
    }
    if a.enable_acl && !old.enable_acl {
        return Err(
            "POSIX ACLs are not supported by this tidefs build yet: with them on, tidefs could not mount the volume"
                .into(),
        );
    }
    if changes.is_empty() {
        let asked = a.capacity.is_some()
            || a.inodes.is_some()
            || a.trash_days.is_some()
            || a.dir_stats.is_some()
            || a.upload_limit.is_some()
            || a.download_limit.is_some()
            || a.min_client_version.is_some()
            || a.max_client_version.is_some()
            || a.enable_acl;
        if !asked {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(
                    &old.redacted().to_json()?
                )?)?
            );
        } else {
            println!("nothing to change");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // a version window that leaves this client out is a change to force, not an accident
    if let Err(e) = new.check_supported() {
        risky.push(format!("{e}"));
    }
    for c in &changes {
        println!("{c}");
    }
    if !risky.is_empty() && !a.force {
        let why = risky.join("; ");
        return Err(format!("{why}: nothing changed (pass --force to apply anyway)").into());
    }
    meta.configure(&new).await?;
    println!(
        "volume {} updated; mounted clients take it up within one heartbeat",
        new.name
    );
    Ok(ExitCode::SUCCESS)
}

fn limit(bytes: u64) -> String {
    if bytes == 0 {
        "unlimited".into()
    } else {
        human(bytes)
    }
}

fn count(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn mbps(v: i64) -> String {
    if v == 0 {
        "unlimited".into()
    } else {
        format!("{v} Mbps")
    }
}
