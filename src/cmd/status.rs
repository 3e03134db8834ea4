//! `tidefs status META-URL`: the volume setting (secrets removed) and the live sessions.

use super::CmdResult;
use std::process::ExitCode;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata engine URL.
    meta_url: String,
}

pub(super) async fn run(a: Args) -> CmdResult {
    let (meta, fmt) = super::open_volume(&a.meta_url).await?;
    let sessions = meta.list_sessions().await?;
    let setting: serde_json::Value = serde_json::from_str(&fmt.redacted().to_json()?)?;
    let sessions: Vec<_> = sessions
        .iter()
        .map(|s| {
            serde_json::json!({
                "Sid": s.sid,
                "Expire": chrono::DateTime::from_timestamp(s.expire, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
                "Version": s.version,
                "HostName": s.host_name,
                "MountPoint": s.mount_point,
                "MountTime": s.mount_time,
                "ProcessID": s.process_id,
            })
        })
        .collect();
    let out = serde_json::json!({ "Setting": setting, "Sessions": sessions });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
