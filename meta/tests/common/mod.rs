//! Fixtures the engine test files share: names no other case or run uses, server URLs with a
//! table prefix of their own, and a guard that drops a server volume's tables when a case ends.

#![allow(dead_code)]

/// Drops the tables of the volume at `server` (a meta URL) when dropped; keeps `_dir` (a
/// temporary directory, for SQLite) alive until then.
pub struct Guard {
    pub server: Option<String>,
    pub _dir: Option<tempfile::TempDir>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(url) = self.server.take() {
            // On a thread and runtime of their own, through connections of their own: the
            // test's runtime is blocked in this drop and cannot drive its pool.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Runtime::new() {
                    rt.block_on(async {
                        if let Ok(m) = tidefs_meta::open(&url).await {
                            let _ = m.destroy().await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// A table prefix (or store name) no other case or run uses, starting with `tag`.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}{}_{}_{}_",
        std::process::id(),
        nanos % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The server URL in environment variable `var`, with a table prefix of its own.
pub fn server_url(var: &str) -> String {
    let base = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}table_prefix={}", unique("t"))
}
