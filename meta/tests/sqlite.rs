//! What is particular to the SQLite engine (the conformance suite runs in `conformance.rs`).

use std::sync::Arc;
use tidefs_meta::{testkit, Volume};

async fn fixture() -> (Arc<dyn Volume>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite3://{}/meta.db", dir.path().display());
    let meta = tidefs_meta::open(&url).await.expect("open");
    meta.init(&testkit::test_format(), false)
        .await
        .expect("format");
    meta.load().await.expect("load");
    (meta, dir)
}

#[tokio::test]
async fn ddl_matches_the_juicefs_snapshot() {
    // What `sqlite3 meta.db .schema` printed for a volume the juicefs 1.4.2 binary formatted,
    // minus sqlite's own `sqlite_sequence` table; tidefs's own tables (`jfs_tidefs_*`, which
    // JuiceFS ignores) follow them.
    let (_m, dir) = fixture().await;
    let own = std::process::Command::new("sqlite3")
        .arg(dir.path().join("meta.db"))
        .arg("SELECT name FROM sqlite_master WHERE name LIKE 'jfs_tidefs_%' ORDER BY rowid")
        .output()
        .expect("sqlite3");
    assert_eq!(
        String::from_utf8_lossy(&own.stdout).trim(),
        "jfs_tidefs_sum"
    );
    let out = std::process::Command::new("sqlite3")
        .arg(dir.path().join("meta.db"))
        .arg("SELECT sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE 'jfs_tidefs_%' ORDER BY rowid")
        .output();
    let Ok(out) = out else {
        panic!("the sqlite3 command-line tool is needed for this test (apt-get install sqlite3)");
    };
    let got = String::from_utf8_lossy(&out.stdout);
    let want: Vec<&str> = tidefs_meta::sql::SQLITE_DDL.to_vec();
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
}

#[tokio::test]
async fn bad_urls_are_clear() {
    for (url, needle) in [
        ("/tmp/x.db", "no scheme"),
        ("redis://localhost/1", "not supported"),
        ("foo://bar", "unknown metadata engine"),
    ] {
        let e = tidefs_meta::open(url).await.err().expect("must fail");
        assert!(e.to_string().contains(needle), "{url}: {e}");
    }
    let m = tidefs_meta::open("sqlite3:///nonexistent-dir/x.db")
        .await
        .expect("lazy open");
    let e = m.load().await.expect_err("missing file");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!std::path::Path::new("/nonexistent-dir/x.db").exists());
}

#[tokio::test]
async fn check_detects_and_repairs_damage() {
    let (m, dir) = fixture().await;
    let ctx = tidefs_meta::Ctx::root();
    let f = m
        .mknod(&ctx, 1, b"f", tidefs_meta::FileType::File, 0o644, 0, 0, b"")
        .await
        .expect("create");
    let db = dir.path().join("meta.db");
    let sql = format!(
        "UPDATE jfs_node SET nlink = 5 WHERE inode = {}; INSERT INTO jfs_edge (parent, name, inode, type) VALUES (1, X'6768', 999999, 1);",
        f.ino
    );
    let st = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(sql)
        .status()
        .expect("sqlite3");
    assert!(st.success());
    let found = m.check(false).await.expect("check");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|p| !p.repaired));
    let fixed = m.check(true).await.expect("repair");
    assert!(fixed.iter().all(|p| p.repaired), "{fixed:?}");
    assert!(m.check(false).await.expect("recheck").is_empty());
    assert_eq!(m.getattr(f.ino).await.expect("attr").nlink, 1);
}
