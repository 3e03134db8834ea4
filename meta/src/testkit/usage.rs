//! Conformance cases of directory statistics and directory quotas (expanded with the others by
//! [`crate::conformance_suite!`]).

use super::conformance::{mkdir, test_format};
use crate::{
    Ctx, ErrorKind, FileType, QuotaKind, RenameFlags, Slice, Timestamp, Volume, ROOT_INODE,
};
use std::sync::Arc;

fn root() -> Ctx {
    Ctx {
        check_permission: true,
        ..Ctx::root()
    }
}

async fn file(m: &Arc<dyn Volume>, parent: u64, name: &str) -> crate::Result<crate::Attr> {
    m.mknod(
        &root(),
        parent,
        name.as_bytes(),
        FileType::File,
        0o644,
        0,
        0,
        b"",
    )
    .await
}

/// Write `len` bytes at the start of chunk `indx` of `ino`.
async fn write(m: &Arc<dyn Volume>, ino: u64, indx: u32, len: u32) -> crate::Result<()> {
    let id = m.new_slice_id().await?;
    let s = Slice {
        pos: 0,
        id,
        size: len,
        off: 0,
        len,
    };
    m.write_slice(ino, indx, s, Timestamp::now(), &[]).await
}

/// The summary from statistics (this client's pending changes included) and the one counting
/// every inode, of the whole volume and of `dir`.
async fn assert_stats_exact(m: &Arc<dyn Volume>, dir: u64, what: &str) {
    for ino in [ROOT_INODE, dir] {
        let fast = m.summary(ino, 3, 100, false).await.expect("summary");
        let strict = m.summary(ino, 3, 100, true).await.expect("strict summary");
        assert_eq!(fast, strict, "statistics of inode {ino} after {what}");
    }
}

/// every namespace and data change keeps the directory statistics equal to a recount:
/// creates, writes, hard links, renames across directories (replacing and exchanging),
/// truncates, unlinks and rmdir.
pub async fn dir_stats_follow_every_change(m: Arc<dyn Volume>) {
    let ctx = root();
    assert!(
        test_format().dir_stats,
        "new volumes keep directory statistics"
    );
    let a = mkdir(&*m, &ctx, ROOT_INODE, "a").await;
    let b = mkdir(&*m, &ctx, a.ino, "b").await;
    let f = file(&m, a.ino, "f").await.expect("create");
    write(&m, f.ino, 0, 5000).await.expect("write");
    write(&m, f.ino, 1, 100).await.expect("write second chunk");
    assert_stats_exact(&m, a.ino, "creates and writes").await;
    let st = m
        .summary(a.ino, 0, 0, false)
        .await
        .expect("summary")
        .summary;
    assert_eq!((st.dirs, st.files), (2, 1));
    assert_eq!(st.length, crate::CHUNK_SIZE + 100);

    m.link(&ctx, f.ino, b.ino, b"f2").await.expect("link");
    write(&m, f.ino, 2, 7000)
        .await
        .expect("write to a hard-linked file");
    assert_stats_exact(&m, a.ino, "a hard link and a write through it").await;

    let g = file(&m, b.ino, "g").await.expect("create");
    write(&m, g.ino, 0, 3000).await.expect("write");
    m.rename(&ctx, b.ino, b"g", a.ino, b"f", RenameFlags::default())
        .await
        .expect("rename over a hard link");
    let x = mkdir(&*m, &ctx, ROOT_INODE, "x").await;
    let flags = RenameFlags {
        exchange: true,
        ..RenameFlags::default()
    };
    m.rename(&ctx, ROOT_INODE, b"x", a.ino, b"b", flags)
        .await
        .expect("exchange a directory");
    let _ = x;
    assert_stats_exact(&m, a.ino, "renames").await;

    m.truncate(&ctx, g.ino, 10).await.expect("truncate");
    m.truncate(&ctx, g.ino, 20_000).await.expect("extend");
    m.unlink(&ctx, ROOT_INODE, b"b")
        .await
        .expect_err("b is a directory");
    m.unlink(&ctx, a.ino, b"f").await.expect("unlink");
    assert_stats_exact(&m, a.ino, "truncates and unlinks").await;

    // a file written after its last name went (kept open) is in no directory
    let kept = file(&m, a.ino, "kept").await.expect("create");
    m.open(&ctx, kept.ino).await.expect("open");
    m.unlink(&ctx, a.ino, b"kept")
        .await
        .expect("unlink an open file");
    write(&m, kept.ino, 0, 9000).await.expect("write to it");
    m.truncate(&ctx, kept.ino, 100).await.expect("truncate it");
    assert_stats_exact(&m, a.ino, "writes to an open unlinked file").await;
    m.close(kept.ino).await.expect("close");
}

/// a directory quota refuses growth past its limits with EDQUOT, nested quotas all hold, and
/// usage follows renames out, unlinks and truncates, so a recount finds no drift.
pub async fn dir_quota_limits_space_and_inodes(m: Arc<dyn Volume>) {
    let ctx = root();
    let q = mkdir(&*m, &ctx, ROOT_INODE, "q").await;
    let inner = mkdir(&*m, &ctx, q.ino, "inner").await;
    m.set_quota(QuotaKind::Dir, q.ino, Some(64 << 10), Some(5), false)
        .await
        .expect("set quota");
    let set = m.get_quota(QuotaKind::Dir, q.ino).await.expect("get");
    let set = set.expect("the quota exists");
    assert_eq!((set.used_space, set.used_inodes), (4096, 1), "inner counts");
    m.set_quota(QuotaKind::Dir, inner.ino, None, Some(2), false)
        .await
        .expect("nested quota");

    // inodes: the nested quota stops the third entry in `inner`
    file(&m, inner.ino, "1").await.expect("1");
    file(&m, inner.ino, "2").await.expect("2");
    let third = file(&m, inner.ino, "3").await;
    assert_eq!(
        third.err().map(|e| e.kind()),
        Some(ErrorKind::QuotaExceeded)
    );
    // the outer one stops the sixth inode below `q`
    let f = file(&m, q.ino, "f").await.expect("4th");
    file(&m, q.ino, "g").await.expect("5th");
    let sixth = file(&m, q.ino, "h").await;
    assert_eq!(
        sixth.err().map(|e| e.kind()),
        Some(ErrorKind::QuotaExceeded)
    );

    // space: 64 KiB in all, 5 inodes of 4 KiB already
    write(&m, f.ino, 0, 40 << 10)
        .await
        .expect("within the limit");
    let over = write(&m, f.ino, 1, 8 << 10).await;
    assert_eq!(over.err().map(|e| e.kind()), Some(ErrorKind::QuotaExceeded));
    let grow = m.truncate(&ctx, f.ino, 1 << 20).await;
    assert_eq!(grow.err().map(|e| e.kind()), Some(ErrorKind::QuotaExceeded));

    // moving out and removing give the room back
    m.rename(&ctx, q.ino, b"f", ROOT_INODE, b"f", RenameFlags::default())
        .await
        .expect("move out");
    file(&m, q.ino, "h").await.expect("room after the move");
    m.unlink(&ctx, inner.ino, b"1").await.expect("unlink");
    file(&m, inner.ino, "3")
        .await
        .expect("room after the unlink");
    // a directory moved in brings its whole tree
    let big = mkdir(&*m, &ctx, ROOT_INODE, "big").await;
    for i in 0..3 {
        file(&m, big.ino, &format!("{i}")).await.expect("create");
    }
    let moved = m
        .rename(
            &ctx,
            ROOT_INODE,
            b"big",
            q.ino,
            b"big",
            RenameFlags::default(),
        )
        .await;
    assert_eq!(
        moved.err().map(|e| e.kind()),
        Some(ErrorKind::QuotaExceeded)
    );

    for c in m.check_quotas(None, false, true).await.expect("check") {
        assert!(c.consistent(), "quota of {} drifted: {c:?}", c.key);
    }
    let listed = m.list_quotas().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert!(m
        .delete_quota(QuotaKind::Dir, inner.ino)
        .await
        .expect("delete"));
    let full = file(&m, inner.ino, "4").await;
    assert_eq!(
        full.err().map(|e| e.kind()),
        Some(ErrorKind::QuotaExceeded),
        "q is full"
    );
    m.set_quota(QuotaKind::Dir, q.ino, None, Some(10), false)
        .await
        .expect("raise the limit");
    file(&m, inner.ino, "4")
        .await
        .expect("room under the raised limit");
    m.rmdir(&ctx, ROOT_INODE, b"q")
        .await
        .expect_err("not empty");
}

/// user and group quotas: what exists when they are turned on is counted, creates, writes,
/// chown and unlink move usage, growth past a limit is EDQUOT, and a recount agrees.
pub async fn user_group_quotas_follow_owners(m: Arc<dyn Volume>) {
    let ctx = root();
    let shared = m
        .mknod(&ctx, ROOT_INODE, b"shared", FileType::Dir, 0o777, 0, 0, b"")
        .await
        .expect("mkdir");
    let alice = super::conformance::user(1000, 1000);
    let mk = |c: Ctx, name: &'static str| {
        let m = m.clone();
        async move {
            m.mknod(
                &c,
                shared.ino,
                name.as_bytes(),
                FileType::File,
                0o644,
                0,
                0,
                b"",
            )
            .await
        }
    };
    let before = mk(alice.clone(), "before").await.expect("create");
    write(&m, before.ino, 0, 5000).await.expect("write");
    m.set_quota(QuotaKind::User, 1000, None, Some(3), false)
        .await
        .expect("set user quota");
    let q = m.get_quota(QuotaKind::User, 1000).await.expect("get");
    let q = q.expect("the user's record");
    assert_eq!(
        (q.used_space, q.used_inodes),
        (8192, 1),
        "counted when turned on"
    );
    let f1 = mk(alice.clone(), "f1").await.expect("2nd inode");
    mk(alice.clone(), "f2").await.expect("3rd inode");
    let over = mk(alice.clone(), "f3").await;
    assert_eq!(over.err().map(|e| e.kind()), Some(ErrorKind::QuotaExceeded));

    // a group limit on space stops a write
    m.set_quota(QuotaKind::Group, 2000, Some(64 << 10), None, false)
        .await
        .expect("set group quota");
    let bob = super::conformance::user(1001, 2000);
    let g = mk(bob, "g").await.expect("create");
    write(&m, g.ino, 0, 40 << 10)
        .await
        .expect("within the group limit");
    let big = write(&m, g.ino, 1, 40 << 10).await;
    assert_eq!(big.err().map(|e| e.kind()), Some(ErrorKind::QuotaExceeded));

    // chown moves the usage: alice has room again
    let chown = crate::SetAttr {
        uid: Some(1001),
        ..crate::SetAttr::default()
    };
    m.setattr(&ctx, before.ino, &chown).await.expect("chown");
    mk(alice.clone(), "f3").await.expect("room after the chown");
    m.unlink(&ctx, shared.ino, b"f1").await.expect("unlink");
    let _ = f1;
    mk(alice, "f4").await.expect("room after the unlink");

    let checks = m.check_owner_quotas(false).await.expect("check");
    assert!(checks
        .iter()
        .any(|c| c.kind == QuotaKind::Group && c.key == 2000));
    for c in checks {
        assert!(c.consistent(), "{:?} {} drifted: {c:?}", c.kind, c.key);
    }
}
