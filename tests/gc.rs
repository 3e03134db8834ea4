//! `tidefs gc` on a real volume (SQLite metadata, local-directory store; tests/s3.rs runs it on
//! S3): leaked objects are found and only they are deleted; young ones are left alone.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};

/// Block objects (and anything else) under the volume's `chunks/`.
fn objects(v: &Volume) -> Vec<PathBuf> {
    let out = sh(&format!(
        "find {} -type f | sort",
        v.bucket.join(&v.name).join("chunks").display()
    ));
    out.lines().map(PathBuf::from).collect()
}

/// Where block `indx` of slice `id` lives (the layout without hash prefix).
fn block_path(v: &Volume, id: u64, indx: u32, len: u64) -> PathBuf {
    v.bucket.join(&v.name).join(format!(
        "chunks/{}/{}/{id}_{indx}_{len}",
        id / 1_000_000,
        id / 1_000
    ))
}

fn plant(from: &Path, to: &Path, age: &str) {
    fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    fs::copy(from, to).expect("copy object");
    sh(&format!("touch -d '{age}' {}", to.display()));
}

fn field(out: &str, line_start: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start:?} line in:\n{out}"))
        .to_string()
}

#[test]
fn gc_deletes_leaked_objects_and_nothing_else() {
    let v = Volume::format("e2e-gc", &["--trash-days", "0"]);
    let files: Vec<(String, Vec<u8>)> = [(5 << 20) + 1, 3 << 20, 1000]
        .iter()
        .enumerate()
        .map(|(i, len)| (format!("f{i}"), bytes(40 + i as u64, *len)))
        .collect();
    {
        let m = v.mount("w", &[]);
        for (n, d) in &files {
            fs::write(m.p(n), d).expect("write");
        }
    }
    let real = objects(&v);
    // 2 + 1 + 1 blocks, or more when a writer had to commit part of a block early
    assert!(real.len() >= 4, "{real:?}");
    let small = real
        .iter()
        .find(|p| p.to_string_lossy().ends_with("_1000"))
        .expect("the small file's block")
        .clone();
    // leaks: a slice id nobody references (old), the same but young, a block index the
    // referenced slice does not have (old); plus a file that is not a block object at all
    let old_leak = block_path(&v, 5_000_123, 0, 1000);
    let young_leak = block_path(&v, 5_000_124, 0, 1000);
    let name = small
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("name");
    let id: u64 = name.split('_').next().expect("id").parse().expect("id");
    let bad_index = block_path(&v, id, 7, 1000);
    plant(&small, &old_leak, "2 hours ago");
    plant(&small, &young_leak, "1 minute ago");
    plant(&small, &bad_index, "3 hours ago");
    // a referenced block's name in a directory the layout does not put it in
    let misplaced = v.bucket.join(&v.name).join("chunks/0/9").join(&name);
    plant(&small, &misplaced, "3 hours ago");
    let foreign = v.bucket.join(&v.name).join("chunks/notes.txt");
    fs::write(&foreign, b"not a block").expect("foreign");
    sh(&format!("touch -d '5 hours ago' {}", foreign.display()));

    // report only: nothing changes
    let out = ok(tidefs(), &["gc", &v.url]);
    let line = field(&out, "objects:");
    assert!(
        line.contains(&format!("{} (8.00 MiB) in use", real.len())),
        "{out}"
    );
    assert!(line.contains("3 (2.93 KiB) leaked"), "{out}");
    assert!(line.contains("1 (1000 B) younger than 3600 s"), "{out}");
    assert!(line.contains("1 (11 B) not block objects"), "{out}");
    assert!(
        out.contains("run again with --delete to remove the 3 leaked objects"),
        "{out}"
    );
    assert_eq!(objects(&v).len(), real.len() + 5);

    // --delete: the three old leaks go, the young one, the foreign file and every block in use stay
    let out = ok(tidefs(), &["gc", &v.url, "--delete", "-p", "3"]);
    assert!(
        out.contains("deleted 3 (2.93 KiB) leaked objects, 0 failed"),
        "{out}"
    );
    assert!(!old_leak.exists() && !bad_index.exists() && !misplaced.exists());
    assert!(young_leak.exists() && foreign.exists());
    for p in &real {
        assert!(p.exists(), "{} was in use", p.display());
    }
    {
        let m = v.mount("r", &[]);
        for (n, d) in &files {
            assert_eq!(&fs::read(m.p(n)).expect("read"), d, "{n}");
        }
    }
    assert!(v.fsck().contains(" 0 problem(s)"));
    v.juicefs_fsck();

    // with no age limit the young leak goes too; a second run finds nothing
    let out = ok(tidefs(), &["gc", &v.url, "--delete", "--min-age", "0"]);
    assert!(out.contains("deleted 1 (1000 B)"), "{out}");
    assert!(!young_leak.exists());
    let out = ok(tidefs(), &["gc", &v.url, "--min-age", "0"]);
    assert!(field(&out, "objects:").contains("0 (0 B) leaked"), "{out}");
}

#[test]
fn gc_frees_files_whose_deletion_was_left_pending() {
    // a file removed while its data could not be freed (here: the database says so directly,
    // as a client that crashed between unlink and freeing leaves it)
    let v = Volume::format("e2e-gc-pending", &["--trash-days", "0"]);
    {
        let m = v.mount("w", &[]);
        fs::write(m.p("big"), bytes(9, 6 << 20)).expect("write");
        fs::write(m.p("keep"), bytes(10, 100)).expect("write");
    }
    let ino = v
        .sql("SELECT inode FROM jfs_edge WHERE name = X'626967'")
        .trim()
        .to_string();
    v.sql(&format!(
        "DELETE FROM jfs_edge WHERE inode = {ino}; DELETE FROM jfs_node WHERE inode = {ino}; \
         INSERT INTO jfs_delfile (inode, length, expire) VALUES ({ino}, {}, 0)",
        6 << 20
    ));
    assert!(objects(&v).len() >= 3);
    let out = ok(tidefs(), &["gc", &v.url]);
    assert!(out.contains("1 file(s) pending deletion"), "{out}");
    let out = ok(tidefs(), &["gc", &v.url, "--delete"]);
    assert!(out.starts_with("freed 1 file(s)"), "{out}");
    assert_eq!(objects(&v).len(), 1, "only the kept file's block is left");
    let out = ok(tidefs(), &["gc", &v.url]);
    assert!(out.contains("0 file(s) pending deletion"), "{out}");
    assert!(v.fsck().contains(" 0 problem(s)"));
}

#[test]
fn gc_refuses_bad_input() {
    let v = Volume::format("e2e-gc-bad", &[]);
    for (args, needle) in [
        (vec!["gc", &v.url, "-p", "0"], "0 is not in 1..=1000"),
        (
            vec!["gc", "sqlite3:///nonexistent/dir/meta.db"],
            "nonexistent",
        ),
        (
            vec!["gc", &v.url, "--min-age", "soon"],
            "invalid value 'soon'",
        ),
    ] {
        let out = run(tidefs(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
