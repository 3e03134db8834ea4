//! Commits whose answer is lost: the engine cannot know whether they were applied; the core
//! runs the operation again, telling it so, and the operation must neither fail because of its
//! own first run (a rename finding its source gone, a create finding its name taken) nor apply
//! twice (a slice recorded twice, a copy counted twice). One sequence of operations, run on
//! every engine family through a fault of its own (a TCP proxy in front of a database server,
//! a KV store that drops a commit's answer).

use crate::{Ctx, FileType, RenameFlags, Slice, Timestamp, Volume, XattrFlags, ROOT_INODE};
use std::sync::Arc;

/// A fault that applies the next commit and loses its answer.
pub trait Loser {
    /// Lose the answer of the next commit.
    fn arm(&self);
    /// Answers lost so far.
    fn lost(&self) -> u32;
}

/// Run `op` with the next commit's answer lost, and check that one was.
macro_rules! lost {
    ($loser:expr, $what:expr, $op:expr) => {{
        let before = $loser.lost();
        $loser.arm();
        let out = $op
            .await
            .map_err(|e| format!("{}: {e}", $what))
            .expect("an operation whose commit answer was lost");
        assert_eq!(
            $loser.lost(),
            before + 1,
            "{}: no commit answer was lost (the operation committed no transaction?)",
            $what
        );
        out
    }};
}

fn slice(id: u64, pos: u32) -> Slice {
    Slice {
        id,
        size: 4096,
        off: 0,
        len: 4096,
        pos,
    }
}

/// The sequence: create, write, rename, link, unlink, rmdir, copy, compaction and extended
/// attributes, each with its commit's answer lost, then a clean fsck. The volume is formatted
/// and loaded, with a capacity (PostgreSQL then writes slices in a transaction, not in its
/// one-statement path whose text a prepared statement does not resend).
pub async fn sequence(m: &Arc<dyn Volume>, loser: &impl Loser) {
    let ctx = Ctx::root();
    // ids come in batches: take the first batches now, so the next commits are the operations'
    let d = super::mkdir(&**m, &ctx, ROOT_INODE, "d").await.ino;
    let first = m.new_slice_id().await.expect("slice id");
    let f = m
        .mknod(&ctx, d, b"a", FileType::File, 0o644, 0, 0, b"")
        .await
        .expect("create")
        .ino;
    // (a symlink: PostgreSQL creates files in one autocommit statement, without COMMIT)
    let l = lost!(
        loser,
        "create",
        m.mknod(&ctx, d, b"l", FileType::Symlink, 0o777, 0, 0, b"a")
    )
    .ino;
    assert_eq!(m.lookup(&ctx, d, b"l").await.expect("lookup").ino, l);

    let ids: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(m.new_slice_id().await.expect("slice id"));
        }
        v
    };
    assert!(ids[0] > first);
    lost!(
        loser,
        "write",
        m.write_slice(f, 0, slice(ids[0], 0), Timestamp::now(), &[])
    );
    let slices = m.read_chunk(f, 0).await.expect("read chunk");
    assert_eq!(
        slices.iter().filter(|x| x.id == ids[0]).count(),
        1,
        "the slice is recorded once: {slices:?}"
    );

    lost!(
        loser,
        "rename",
        m.rename(&ctx, d, b"a", d, b"b", RenameFlags::default())
    );
    assert_eq!(m.lookup(&ctx, d, b"b").await.expect("lookup b").ino, f);
    assert!(m.lookup(&ctx, d, b"a").await.is_err());

    lost!(loser, "link", m.link(&ctx, f, d, b"c"));
    assert_eq!(m.getattr(f).await.expect("getattr").nlink, 2);
    lost!(loser, "unlink", m.unlink(&ctx, d, b"c"));
    assert_eq!(m.getattr(f).await.expect("getattr").nlink, 1);

    let e = m
        .mknod(&ctx, d, b"e", FileType::Dir, 0o755, 0, 0, b"")
        .await
        .expect("mkdir e");
    lost!(loser, "rmdir", m.rmdir(&ctx, d, b"e"));
    assert!(m.getattr(e.ino).await.is_err());

    // a copy counted twice would keep the shared slice forever
    let g = m
        .mknod(&ctx, d, b"g", FileType::File, 0o644, 0, 0, b"")
        .await
        .expect("create g")
        .ino;
    let (n, _) = lost!(loser, "copy", m.copy_range(f, 0, g, 0, 4096));
    assert_eq!(n, 4096);
    assert_eq!(
        m.read_chunk(g, 0).await.expect("chunk").len(),
        1,
        "copied once"
    );

    // a compaction that reported no swap would make its caller delete the new slice's objects
    m.write_slice(f, 0, slice(ids[1], 4096), Timestamp::now(), &[])
        .await
        .expect("second write");
    let old = m.read_chunk(f, 0).await.expect("chunk");
    let mut merged = slice(ids[2], 0);
    merged.size = 8192;
    merged.len = 8192;
    let swapped = lost!(
        loser,
        "compact",
        m.compact_chunk(f, 0, &old, &[merged], &[])
    );
    assert!(swapped, "the compaction that was applied reports so");
    assert_eq!(m.read_chunk(f, 0).await.expect("chunk"), vec![merged]);

    let create = XattrFlags {
        create: true,
        replace: false,
    };
    lost!(
        loser,
        "setxattr",
        m.setxattr(&ctx, f, b"user.k", b"v", create)
    );
    lost!(loser, "removexattr", m.removexattr(&ctx, f, b"user.k"));
    assert!(m.listxattr(f).await.expect("listxattr").is_empty());

    let problems = m.check(false).await.expect("fsck");
    assert!(problems.is_empty(), "{problems:?}");
}
