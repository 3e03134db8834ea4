//! The KV engine's layout against JuiceFS CE's: after a known sequence of operations the store
//! holds exactly the keys JuiceFS would write to TiKV for it (`../shared/FORMAT.md` section 5),
//! and the same sequence on memkv, SQLite and TiKV (the stand-in, through the real client)
//! leaves the same tree.

use std::collections::BTreeMap;
use std::sync::Arc;
use tidefs_meta::kv::{keys::Keys, mem::MemKv, KvMeta};
use tidefs_meta::{testkit, Ctx, FileType, RenameFlags, Slice, Timestamp, Volume, XattrFlags};

/// A key made readable: printable bytes as they are, others as `<hex>`.
fn show(k: &[u8]) -> String {
    let mut s = String::new();
    for &b in k {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' {
            s.push(b as char);
        } else {
            s.push_str(&format!("<{b:02x}>"));
        }
    }
    s
}

fn le(ino: u64) -> String {
    ino.to_le_bytes()
        .iter()
        .map(|b| format!("<{b:02x}>"))
        .collect()
}

/// The operations: a directory, a file in it with data and an attribute, a symlink, a second
/// name for the file in the root.
async fn sequence(m: &Arc<dyn Volume>) -> (u64, u64, u64) {
    let ctx = Ctx::root();
    let d = testkit::mkdir(&**m, &ctx, 1, "d").await.ino;
    let f = m
        .mknod(&ctx, d, b"f", FileType::File, 0o644, 0, 0, b"")
        .await
        .expect("create")
        .ino;
    let id = m.new_slice_id().await.expect("slice id");
    let s = Slice {
        pos: 0,
        id,
        size: 5000,
        off: 0,
        len: 5000,
    };
    m.write_slice(f, 0, s, Timestamp::now(), &[1, 2, 3, 4])
        .await
        .expect("write");
    let l = m
        .mknod(&ctx, 1, b"s", FileType::Symlink, 0o777, 0, 0, b"d/f")
        .await
        .expect("symlink")
        .ino;
    m.link(&ctx, f, 1, b"h").await.expect("link");
    m.setxattr(&ctx, f, b"user.a", b"1", XattrFlags::default())
        .await
        .expect("setxattr");
    (d, f, l)
}

#[tokio::test]
async fn a_known_sequence_writes_the_keys_juicefs_writes() {
    let store = Arc::new(MemKv::new());
    let m: Arc<dyn Volume> = Arc::new(KvMeta::over(
        store.clone(),
        Keys::new("jfs"),
        "memkv://layout".into(),
    ));
    m.init(&testkit::test_format(), false)
        .await
        .expect("format");
    m.load().await.expect("load");
    let (d, f, l) = sequence(&m).await;
    assert_eq!(
        (d, f, l),
        (2, 3, 4),
        "inodes numbered from 2, as JuiceFS does"
    );
    let pairs: BTreeMap<String, Vec<u8>> = store
        .snapshot()
        .into_iter()
        .map(|(k, v)| (show(&k), v))
        .collect();
    let p = "jfs<fd>";
    let want = [
        format!("{p}A{}D", le(1)) + "d",
        format!("{p}A{}D", le(1)) + "h",
        format!("{p}A{}D", le(1)) + "s",
        format!("{p}A{}I", le(1)),
        format!("{p}A{}D", le(2)) + "f",
        format!("{p}A{}I", le(2)),
        format!("{p}A{}C<00><00><00><00>", le(3)),
        format!("{p}A{}I", le(3)),
        format!("{p}A{}P{}", le(3), le(1)),
        format!("{p}A{}P{}", le(3), le(2)),
        format!("{p}A{}Xuser.a", le(3)),
        format!("{p}A{}I", le(4)),
        format!("{p}A{}S", le(4)),
        format!("{p}CnextChunk"),
        format!("{p}CnextInode"),
        // tidefs's block checksums of slice 1
        format!("{p}T<00><00><00><00><00><00><00><01>"),
        // the new directory's (empty) statistics, as JuiceFS's mkdir stores them
        format!("{p}U{}", le(2)),
        format!("{p}setting"),
    ];
    let got: Vec<&String> = pairs.keys().collect();
    let mut want_sorted: Vec<String> = want.to_vec();
    want_sorted.sort();
    assert_eq!(
        got,
        want_sorted.iter().collect::<Vec<_>>(),
        "the volume's keys"
    );
    // a few values, byte for byte
    let v = |k: String| pairs.get(&k).cloned().unwrap_or_default();
    assert_eq!(
        v(format!("{p}A{}D", le(1)) + "d"),
        [&[2u8][..], &2u64.to_be_bytes()].concat()
    );
    assert_eq!(
        v(format!("{p}A{}D", le(1)) + "s"),
        [&[3u8][..], &4u64.to_be_bytes()].concat()
    );
    assert_eq!(v(format!("{p}A{}P{}", le(3), le(2))), 1i64.to_le_bytes());
    assert_eq!(v(format!("{p}A{}S", le(4))), b"d/f");
    assert_eq!(v(format!("{p}CnextInode")), (2i64 + 1024).to_le_bytes());
    let chunk = v(format!("{p}A{}C<00><00><00><00>", le(3)));
    assert_eq!(chunk.len(), 24, "one slice record");
    let attr = v(format!("{p}A{}I", le(3)));
    assert_eq!(attr.len(), 72);
    assert_eq!(&attr[1..3], &((1u16 << 12) | 0o644).to_be_bytes());
    assert_eq!(&attr[47..51], &2u32.to_be_bytes(), "nlink 2");
    assert_eq!(&attr[51..59], &5000u64.to_be_bytes(), "length");
    assert_eq!(&attr[63..71], &0u64.to_be_bytes(), "hard-linked: parent 0");
    // destroying the volume removes every key under its prefix
    m.destroy().await.expect("destroy");
    assert!(store.is_empty());
}

/// One line per path: type, mode, owner, links, length, symlink target or chunk records.
async fn tree(m: &Arc<dyn Volume>) -> Vec<String> {
    let ctx = Ctx::root();
    let mut out = Vec::new();
    let mut stack = vec![(1u64, String::new())];
    while let Some((dir, path)) = stack.pop() {
        for e in m
            .readdir(&ctx, dir, 0, 10_000, true)
            .await
            .expect("readdir")
        {
            let a = e.attr.clone().expect("plus");
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let extra = match a.typ {
                FileType::Symlink => {
                    String::from_utf8_lossy(&m.readlink(a.ino).await.expect("readlink"))
                        .into_owned()
                }
                FileType::File => {
                    let mut parts = Vec::new();
                    for indx in 0..a.length.div_ceil(64 << 20) as u32 {
                        let recs = m.read_chunk(a.ino, indx).await.expect("chunk");
                        parts.push(format!("{indx}:{recs:?}"));
                    }
                    parts.join(";")
                }
                _ => String::new(),
            };
            out.push(format!(
                "{p} {:?} {:o} {}:{} n{} l{} {extra}",
                a.typ, a.mode, a.uid, a.gid, a.nlink, a.length
            ));
            if a.typ == FileType::Dir {
                stack.push((a.ino, p));
            }
        }
    }
    out.sort();
    out
}

/// A longer sequence touching every kind of change.
async fn busy_sequence(m: &Arc<dyn Volume>) {
    let root = Ctx::root();
    let user = testkit::user(1000, 100);
    sequence(m).await;
    let a = m
        .mknod(&root, 1, b"a", FileType::Dir, 0o777, 0, 0, b"")
        .await
        .expect("mkdir a")
        .ino;
    for i in 0..20u32 {
        let name = format!("file{i}");
        let f = m
            .mknod(
                &user,
                a,
                name.as_bytes(),
                FileType::File,
                0o640,
                0o022,
                0,
                b"",
            )
            .await
            .expect("create")
            .ino;
        let id = m.new_slice_id().await.expect("id");
        let size = 1000 + i * 100;
        m.write_slice(
            f,
            0,
            Slice {
                pos: i * 10,
                id,
                size,
                off: 0,
                len: size,
            },
            Timestamp::now(),
            &[],
        )
        .await
        .expect("write");
    }
    for i in 0..5 {
        let (from, to) = (format!("file{i}"), format!("moved{i}"));
        m.rename(
            &user,
            a,
            from.as_bytes(),
            1,
            to.as_bytes(),
            RenameFlags::default(),
        )
        .await
        .expect("rename");
    }
    for i in 5..8 {
        m.unlink(&user, a, format!("file{i}").as_bytes())
            .await
            .expect("unlink");
    }
    let f9 = m.lookup(&user, a, b"file9").await.expect("lookup").ino;
    m.truncate(&user, f9, 100).await.expect("truncate");
    m.truncate(&user, f9, 70 << 20).await.expect("extend");
    m.link(&user, f9, 1, b"nine").await.expect("link");
    m.rename(&root, 1, b"d", a, b"d2", RenameFlags::default())
        .await
        .expect("rename dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_operations_leave_the_same_tree_on_memkv_sqlite_and_the_tikv_standin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = tidefs_meta::open(&format!("sqlite3://{}/meta.db", dir.path().display()))
        .await
        .expect("sqlite");
    let memkv = tidefs_meta::open("memkv://same-tree").await.expect("memkv");
    let (_standin, addr) = tikv_standin::StandIn::start("127.0.0.1:0")
        .await
        .expect("stand-in");
    let tikv = tidefs_meta::open(&format!("tikv://{addr}/same-tree"))
        .await
        .expect("tikv stand-in");
    let mut trees = Vec::new();
    for m in [sqlite, memkv, tikv] {
        m.init(&testkit::test_format(), false)
            .await
            .expect("format");
        m.load().await.expect("load");
        busy_sequence(&m).await;
        assert!(m.check(false).await.expect("fsck").is_empty());
        trees.push(tree(&m).await);
    }
    assert!(trees[0].len() > 20, "{:?}", trees[0]);
    assert_eq!(trees[0], trees[1], "sqlite vs memkv");
    assert_eq!(trees[0], trees[2], "sqlite vs the tikv stand-in");
}
