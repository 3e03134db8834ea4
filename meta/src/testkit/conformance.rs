//! The conformance suite: one list of independent cases that every metadata engine must pass.
//!
//! Each case gets a freshly formatted volume (trash off) from the engine's fixture, so the first
//! failure never hides the others. An engine's test file expands [`conformance_suite!`] with its
//! fixture, which makes every case its own test in the runner's report:
//!
//! ```text
//! tidefs_meta::conformance_suite!(fixture);   // async fn fixture() -> (Arc<dyn Volume>, Guard)
//! ```

use crate::{
    Ctx, ErrorKind, FallocMode, FileType, Format, Meta, RenameFlags, SetAttr, Slice, TimeSet,
    Timestamp, Volume, XattrFlags, CHUNK_SIZE, ROOT_INODE, S_ISGID, S_ISVTX, TRASH_INODE,
};
use std::sync::Arc;

/// Expand one `#[tokio::test]` per conformance case, each calling `$fixture().await` for a
/// fresh volume. The fixture returns the engine and a guard kept alive for the test.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::conformance_suite!(@cases $fixture;
            format_and_load, create_lookup_getattr, name_rules, mkdir_rmdir_nlink,
            unlink_and_hard_links, trash_keeps_last_link, rename_plain_and_replace,
            rename_noreplace_exchange, rename_into_subtree, rename_dir_moves_nlink,
            symlink_readlink, xattrs, write_read_chunk_and_length, truncate_appends_zeros,
            fallocate_modes, readdir_pages_with_cursor, unlinked_open_file_lives_until_close,
            setgid_directory, sticky_directory, permission_checks, read_only_refuses_writes,
            setattr_times_and_owner, check_clean_after_operations, statfs_counts, slice_ids_unique,
            compact_chunk_swaps_its_prefix, copy_range_shares_slices, slice_checksums_kept_with_slices, chunks_page_walks_every_chunk,
            huge_sparse_ranges_cost_only_their_chunks, dir_stats_follow_every_change,
            dir_quota_limits_space_and_inodes, user_group_quotas_follow_owners);
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (meta, _guard) = $fixture().await;
                $crate::testkit::$case(meta).await;
            }
        )*
    };
}

/// A new slice of 1 000 bytes at the start of a chunk.
async fn slice_of_1000<M: Meta + ?Sized>(m: &M) -> Slice {
    Slice {
        pos: 0,
        id: m.new_slice_id().await.expect("id"),
        size: 1000,
        off: 0,
        len: 1000,
    }
}

/// Install a slice deleter that only records the `(id, size)` of each slice freed.
fn record_freed<M: Meta + ?Sized>(m: &M) -> Arc<std::sync::Mutex<Vec<(u64, u32)>>> {
    let freed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = freed.clone();
    m.set_slice_deleter(Arc::new(move |id, size| {
        if let Ok(mut v) = seen.lock() {
            v.push((id, size));
        }
        Box::pin(async { Ok(()) })
    }));
    freed
}

/// A user that is not root.
pub fn user(uid: u32, gid: u32) -> Ctx {
    Ctx {
        uid,
        gid,
        gids: Vec::new(),
        pid: 1,
        check_permission: true,
    }
}

fn root() -> Ctx {
    Ctx {
        check_permission: true,
        ..Ctx::root()
    }
}

/// Churn in one directory, for contention tests: every client runs `tasks` tasks, each
/// creating `files` files in `dir` and removing every `remove_every`-th one right after making
/// it. Err names the first operation that failed.
pub async fn churn_directory<M: Meta + 'static>(
    clients: &[Arc<M>],
    dir: crate::Ino,
    tasks: usize,
    files: usize,
    remove_every: usize,
) -> Result<(), String> {
    let mut jobs = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        for t in 0..tasks {
            let c = c.clone();
            jobs.push(tokio::spawn(async move {
                let ctx = Ctx::root();
                for f in 0..files {
                    let name = format!("c{ci}-t{t}-f{f}");
                    c.mknod(&ctx, dir, name.as_bytes(), FileType::File, 0o644, 0, 0, b"")
                        .await
                        .map_err(|e| format!("create {name}: {e}"))?;
                    if f % remove_every.max(1) == 0 {
                        c.unlink(&ctx, dir, name.as_bytes())
                            .await
                            .map_err(|e| format!("unlink {name}: {e}"))?;
                    }
                }
                Ok::<(), String>(())
            }));
        }
    }
    for j in jobs {
        j.await.map_err(|e| format!("task: {e}"))??;
    }
    Ok(())
}

/// A new volume setting for tests.
pub fn test_format() -> Format {
    let mut f = Format::new("testvol", "file", "/tmp/unused/");
    f.trash_days = 0;
    f
}

/// The kind of the error `r` carries; None when the call succeeded (and the assertion comparing
/// it with the expected kind then fails with both sides shown).
async fn kind_of<T: std::fmt::Debug>(r: crate::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

async fn mkfile(m: &Arc<dyn Volume>, ctx: &Ctx, parent: u64, name: &str) -> crate::Attr {
    m.mknod(
        ctx,
        parent,
        name.as_bytes(),
        FileType::File,
        0o644,
        0o022,
        0,
        b"",
    )
    .await
    .expect("create file")
}

/// Make directory `name` (mode 0755 less umask 022) in `parent`; a failure fails the test.
pub async fn mkdir<M: Meta + ?Sized>(m: &M, ctx: &Ctx, parent: u64, name: &str) -> crate::Attr {
    m.mknod(
        ctx,
        parent,
        name.as_bytes(),
        FileType::Dir,
        0o755,
        0o022,
        0,
        b"",
    )
    .await
    .expect("mkdir")
}

/// format, load, refuse to format again without force.
pub async fn format_and_load(m: Arc<dyn Volume>) {
    let f = m.load().await.expect("load");
    assert_eq!(f.name, "testvol");
    let root_attr = m.getattr(ROOT_INODE).await.expect("root");
    assert_eq!(root_attr.typ, FileType::Dir);
    assert_eq!(root_attr.nlink, 2);
    assert_eq!(root_attr.mode, 0o777);
    assert_eq!(
        kind_of(m.init(&test_format(), false).await).await,
        Some(ErrorKind::Exists)
    );
    let mut changed = test_format();
    changed.trash_days = 3;
    m.init(&changed, true).await.expect("force");
    let f2 = m.load().await.expect("reload");
    assert_eq!(f2.trash_days, 3);
    assert_eq!(f2.uuid, f.uuid, "--force keeps the UUID");
}

/// create, lookup, getattr agree.
pub async fn create_lookup_getattr(m: Arc<dyn Volume>) {
    let ctx = user(1000, 1000);
    let a = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    assert_eq!(
        (a.uid, a.gid, a.mode, a.nlink, a.length),
        (1000, 1000, 0o644, 1, 0)
    );
    let l = m.lookup(&ctx, ROOT_INODE, b"f").await.expect("lookup");
    assert_eq!(l, m.getattr(a.ino).await.expect("getattr"));
    assert_eq!(
        kind_of(m.lookup(&ctx, ROOT_INODE, b"nope").await).await,
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        kind_of(m.lookup(&ctx, a.ino, b"x").await).await,
        Some(ErrorKind::NotDir)
    );
    assert_eq!(
        kind_of(mknod_file(&m, &ctx, "f").await).await,
        Some(ErrorKind::Exists)
    );
    let dot = m.lookup(&ctx, ROOT_INODE, b".").await.expect("dot");
    assert_eq!(dot.ino, ROOT_INODE);
}

async fn mknod_file(m: &Arc<dyn Volume>, ctx: &Ctx, name: &str) -> crate::Result<crate::Attr> {
    m.mknod(
        ctx,
        ROOT_INODE,
        name.as_bytes(),
        FileType::File,
        0o644,
        0,
        0,
        b"",
    )
    .await
}

/// names over 255 bytes, empty names, '/' in names.
pub async fn name_rules(m: Arc<dyn Volume>) {
    let ctx = root();
    let long = "x".repeat(256);
    assert_eq!(
        kind_of(mknod_file(&m, &ctx, &long).await).await,
        Some(ErrorKind::NameTooLong)
    );
    assert_eq!(
        kind_of(m.lookup(&ctx, ROOT_INODE, long.as_bytes()).await).await,
        Some(ErrorKind::NameTooLong)
    );
    mknod_file(&m, &ctx, &"y".repeat(255))
        .await
        .expect("255 bytes is fine");
    assert_eq!(
        kind_of(mknod_file(&m, &ctx, "a/b").await).await,
        Some(ErrorKind::Invalid)
    );
    let other = mkfile(&m, &ctx, ROOT_INODE, "src").await;
    assert_eq!(
        kind_of(m.link(&ctx, other.ino, ROOT_INODE, long.as_bytes()).await).await,
        Some(ErrorKind::NameTooLong)
    );
    assert_eq!(
        kind_of(
            m.rename(
                &ctx,
                ROOT_INODE,
                b"src",
                ROOT_INODE,
                long.as_bytes(),
                RenameFlags::default()
            )
            .await
        )
        .await,
        Some(ErrorKind::NameTooLong)
    );
}

/// mkdir raises the parent's nlink, rmdir needs an empty directory.
pub async fn mkdir_rmdir_nlink(m: Arc<dyn Volume>) {
    let ctx = root();
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    assert_eq!(d.nlink, 2);
    assert_eq!(d.length, 4096);
    assert_eq!(m.getattr(ROOT_INODE).await.expect("root").nlink, 3);
    mkfile(&m, &ctx, d.ino, "f").await;
    assert_eq!(
        kind_of(m.rmdir(&ctx, ROOT_INODE, b"d").await).await,
        Some(ErrorKind::NotEmpty)
    );
    assert_eq!(
        kind_of(m.unlink(&ctx, ROOT_INODE, b"d").await).await,
        Some(ErrorKind::IsDir)
    );
    assert_eq!(
        kind_of(m.rmdir(&ctx, d.ino, b"f").await).await,
        Some(ErrorKind::NotDir)
    );
    m.unlink(&ctx, d.ino, b"f").await.expect("unlink");
    m.rmdir(&ctx, ROOT_INODE, b"d").await.expect("rmdir");
    assert_eq!(m.getattr(ROOT_INODE).await.expect("root").nlink, 2);
    assert_eq!(
        kind_of(m.getattr(d.ino).await).await,
        Some(ErrorKind::NotFound)
    );
}

/// hard links count, and the last unlink frees the inode.
pub async fn unlink_and_hard_links(m: Arc<dyn Volume>) {
    let ctx = root();
    let a = mkfile(&m, &ctx, ROOT_INODE, "a").await;
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    let l = m.link(&ctx, a.ino, d.ino, b"b").await.expect("link");
    assert_eq!(l.nlink, 2);
    assert_eq!(l.parent, 0, "hard-linked inodes have parent 0");
    assert_eq!(
        kind_of(m.link(&ctx, d.ino, ROOT_INODE, b"dl").await).await,
        Some(ErrorKind::NotPermitted)
    );
    assert_eq!(
        kind_of(m.link(&ctx, a.ino, d.ino, b"b").await).await,
        Some(ErrorKind::Exists)
    );
    m.unlink(&ctx, ROOT_INODE, b"a").await.expect("unlink a");
    assert_eq!(m.getattr(a.ino).await.expect("still there").nlink, 1);
    m.unlink(&ctx, d.ino, b"b").await.expect("unlink b");
    assert_eq!(
        kind_of(m.getattr(a.ino).await).await,
        Some(ErrorKind::NotFound)
    );
}

/// with trash on, the last name goes to .trash; other names keep the true link count.
pub async fn trash_keeps_last_link(m: Arc<dyn Volume>) {
    let mut f = test_format();
    f.trash_days = 1;
    m.init(&f, true).await.expect("enable trash");
    m.load().await.expect("load");
    let ctx = root();
    let a = mkfile(&m, &ctx, ROOT_INODE, "a").await;
    m.link(&ctx, a.ino, ROOT_INODE, b"b").await.expect("link");
    m.unlink(&ctx, ROOT_INODE, b"a").await.expect("unlink a");
    assert_eq!(
        m.getattr(a.ino).await.expect("b").nlink,
        1,
        "no phantom trash link"
    );
    m.unlink(&ctx, ROOT_INODE, b"b").await.expect("unlink b");
    let kept = m.getattr(a.ino).await.expect("in trash");
    assert!(
        kept.parent > TRASH_INODE,
        "moved into an hour directory of the trash"
    );
    let hours = m
        .readdir(&ctx, TRASH_INODE, 0, 10, false)
        .await
        .expect("trash");
    assert_eq!(hours.len(), 1);
    let inside = m
        .readdir(&ctx, hours[0].ino, 0, 10, false)
        .await
        .expect("hour");
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].name, format!("1-{}-b", a.ino).into_bytes());
    let t = m.lookup(&ctx, ROOT_INODE, b".trash").await.expect(".trash");
    assert_eq!(t.ino, TRASH_INODE);
    // deleting from the trash deletes for real
    m.unlink(&ctx, hours[0].ino, &inside[0].name)
        .await
        .expect("purge");
    assert_eq!(
        kind_of(m.getattr(a.ino).await).await,
        Some(ErrorKind::NotFound)
    );
}

/// rename within and across directories, replacing a file.
pub async fn rename_plain_and_replace(m: Arc<dyn Volume>) {
    let ctx = root();
    let a = mkfile(&m, &ctx, ROOT_INODE, "a").await;
    let b = mkfile(&m, &ctx, ROOT_INODE, "b").await;
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    m.rename(&ctx, ROOT_INODE, b"a", d.ino, b"a2", RenameFlags::default())
        .await
        .expect("move");
    assert_eq!(
        m.lookup(&ctx, d.ino, b"a2").await.expect("moved").ino,
        a.ino
    );
    assert_eq!(m.getattr(a.ino).await.expect("a").parent, d.ino);
    m.rename(&ctx, d.ino, b"a2", ROOT_INODE, b"b", RenameFlags::default())
        .await
        .expect("replace");
    assert_eq!(
        m.lookup(&ctx, ROOT_INODE, b"b").await.expect("b").ino,
        a.ino
    );
    assert_eq!(
        kind_of(m.getattr(b.ino).await).await,
        Some(ErrorKind::NotFound)
    );
    let e = mkdir(&*m, &ctx, ROOT_INODE, "e").await;
    assert_eq!(
        kind_of(
            m.rename(
                &ctx,
                ROOT_INODE,
                b"b",
                ROOT_INODE,
                b"e",
                RenameFlags::default()
            )
            .await
        )
        .await,
        Some(ErrorKind::IsDir)
    );
    assert_eq!(
        kind_of(
            m.rename(
                &ctx,
                ROOT_INODE,
                b"e",
                ROOT_INODE,
                b"b",
                RenameFlags::default()
            )
            .await
        )
        .await,
        Some(ErrorKind::NotDir)
    );
    mkfile(&m, &ctx, d.ino, "x").await;
    assert_eq!(
        kind_of(
            m.rename(
                &ctx,
                ROOT_INODE,
                b"e",
                ROOT_INODE,
                b"d",
                RenameFlags::default()
            )
            .await
        )
        .await,
        Some(ErrorKind::NotEmpty)
    );
    // a directory replaces an empty one
    m.unlink(&ctx, d.ino, b"x").await.expect("unlink");
    m.rename(
        &ctx,
        ROOT_INODE,
        b"e",
        ROOT_INODE,
        b"d",
        RenameFlags::default(),
    )
    .await
    .expect("dir over empty dir");
    assert_eq!(
        m.lookup(&ctx, ROOT_INODE, b"d").await.expect("d").ino,
        e.ino
    );
    assert_eq!(m.getattr(ROOT_INODE).await.expect("root").nlink, 3);
    // a rename onto another name of the same inode does nothing
    m.link(&ctx, a.ino, ROOT_INODE, b"c").await.expect("link");
    m.rename(
        &ctx,
        ROOT_INODE,
        b"b",
        ROOT_INODE,
        b"c",
        RenameFlags::default(),
    )
    .await
    .expect("noop");
    assert!(m.lookup(&ctx, ROOT_INODE, b"b").await.is_ok());
}

/// RENAME_NOREPLACE and RENAME_EXCHANGE.
pub async fn rename_noreplace_exchange(m: Arc<dyn Volume>) {
    let ctx = root();
    let a = mkfile(&m, &ctx, ROOT_INODE, "a").await;
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    let nr = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    assert_eq!(
        kind_of(m.rename(&ctx, ROOT_INODE, b"a", ROOT_INODE, b"d", nr).await).await,
        Some(ErrorKind::Exists)
    );
    let ex = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    let sub = mkdir(&*m, &ctx, d.ino, "sub").await;
    m.rename(&ctx, ROOT_INODE, b"a", d.ino, b"sub", ex)
        .await
        .expect("exchange");
    assert_eq!(
        m.lookup(&ctx, ROOT_INODE, b"a").await.expect("a").ino,
        sub.ino
    );
    assert_eq!(m.lookup(&ctx, d.ino, b"sub").await.expect("sub").ino, a.ino);
    assert_eq!(m.getattr(sub.ino).await.expect("sub").parent, ROOT_INODE);
    assert_eq!(m.getattr(ROOT_INODE).await.expect("root").nlink, 4);
    assert_eq!(m.getattr(d.ino).await.expect("d").nlink, 2);
    assert_eq!(
        kind_of(
            m.rename(&ctx, ROOT_INODE, b"a", ROOT_INODE, b"none", ex)
                .await
        )
        .await,
        Some(ErrorKind::NotFound)
    );
}

/// a directory cannot move into its own subtree.
pub async fn rename_into_subtree(m: Arc<dyn Volume>) {
    let ctx = root();
    let a = mkdir(&*m, &ctx, ROOT_INODE, "a").await;
    let b = mkdir(&*m, &ctx, a.ino, "b").await;
    let c = mkdir(&*m, &ctx, b.ino, "c").await;
    assert_eq!(
        kind_of(
            m.rename(&ctx, ROOT_INODE, b"a", c.ino, b"x", RenameFlags::default())
                .await
        )
        .await,
        Some(ErrorKind::Invalid)
    );
    assert_eq!(
        kind_of(
            m.rename(&ctx, ROOT_INODE, b"a", a.ino, b"x", RenameFlags::default())
                .await
        )
        .await,
        Some(ErrorKind::Invalid)
    );
    m.rename(&ctx, b.ino, b"c", ROOT_INODE, b"c", RenameFlags::default())
        .await
        .expect("up is fine");
}

/// moving a directory moves one link from the old parent to the new one.
pub async fn rename_dir_moves_nlink(m: Arc<dyn Volume>) {
    let ctx = root();
    let p1 = mkdir(&*m, &ctx, ROOT_INODE, "p1").await;
    let p2 = mkdir(&*m, &ctx, ROOT_INODE, "p2").await;
    let c = mkdir(&*m, &ctx, p1.ino, "c").await;
    assert_eq!(m.getattr(p1.ino).await.expect("p1").nlink, 3);
    m.rename(&ctx, p1.ino, b"c", p2.ino, b"c", RenameFlags::default())
        .await
        .expect("move dir");
    assert_eq!(m.getattr(p1.ino).await.expect("p1").nlink, 2);
    assert_eq!(m.getattr(p2.ino).await.expect("p2").nlink, 3);
    assert_eq!(m.getattr(c.ino).await.expect("c").parent, p2.ino);
    assert_eq!(m.lookup(&ctx, c.ino, b"..").await.expect("..").ino, p2.ino);
}

/// symlinks keep their target and report its length.
pub async fn symlink_readlink(m: Arc<dyn Volume>) {
    let ctx = root();
    let s = m
        .mknod(
            &ctx,
            ROOT_INODE,
            b"s",
            FileType::Symlink,
            0o777,
            0o022,
            0,
            b"../target/x",
        )
        .await
        .expect("symlink");
    assert_eq!(s.length, 11);
    assert_eq!(s.mode, 0o777);
    assert_eq!(m.readlink(s.ino).await.expect("readlink"), b"../target/x");
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    assert_eq!(
        kind_of(m.readlink(f.ino).await).await,
        Some(ErrorKind::Invalid)
    );
    let long = vec![b'a'; 4097];
    assert_eq!(
        kind_of(
            m.mknod(
                &ctx,
                ROOT_INODE,
                b"l",
                FileType::Symlink,
                0o777,
                0,
                0,
                &long
            )
            .await
        )
        .await,
        Some(ErrorKind::NameTooLong)
    );
}

/// xattr create/replace flags, missing attributes, listing.
pub async fn xattrs(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    assert_eq!(
        kind_of(m.getxattr(f.ino, b"user.a").await).await,
        Some(ErrorKind::NoAttr)
    );
    m.setxattr(&ctx, f.ino, b"user.a", b"1", XattrFlags::default())
        .await
        .expect("set");
    let create = XattrFlags {
        create: true,
        replace: false,
    };
    let replace = XattrFlags {
        create: false,
        replace: true,
    };
    assert_eq!(
        kind_of(m.setxattr(&ctx, f.ino, b"user.a", b"2", create).await).await,
        Some(ErrorKind::Exists)
    );
    assert_eq!(
        kind_of(m.setxattr(&ctx, f.ino, b"user.b", b"2", replace).await).await,
        Some(ErrorKind::NoAttr)
    );
    m.setxattr(&ctx, f.ino, b"user.a", b"", replace)
        .await
        .expect("replace with empty");
    assert_eq!(m.getxattr(f.ino, b"user.a").await.expect("get"), b"");
    m.setxattr(&ctx, f.ino, b"user.b", b"bee", create)
        .await
        .expect("create");
    assert_eq!(
        m.listxattr(f.ino).await.expect("list"),
        vec![b"user.a".to_vec(), b"user.b".to_vec()]
    );
    m.removexattr(&ctx, f.ino, b"user.a").await.expect("remove");
    assert_eq!(
        kind_of(m.removexattr(&ctx, f.ino, b"user.a").await).await,
        Some(ErrorKind::NoAttr)
    );
}

/// committed slices extend the length and come back in order.
pub async fn write_read_chunk_and_length(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let id1 = m.new_slice_id().await.expect("id");
    let id2 = m.new_slice_id().await.expect("id");
    let t = Timestamp::now();
    let s1 = Slice {
        pos: 0,
        id: id1,
        size: 100,
        off: 0,
        len: 100,
    };
    let s2 = Slice {
        pos: 50,
        id: id2,
        size: 10,
        off: 0,
        len: 10,
    };
    m.write_slice(f.ino, 0, s1, t, &[]).await.expect("w1");
    m.write_slice(f.ino, 0, s2, t, &[]).await.expect("w2");
    m.write_slice(f.ino, 2, s1, t, &[]).await.expect("w3");
    assert_eq!(m.read_chunk(f.ino, 0).await.expect("read"), vec![s1, s2]);
    assert_eq!(
        m.getattr(f.ino).await.expect("attr").length,
        2 * CHUNK_SIZE + 100
    );
    assert!(m.read_chunk(f.ino, 1).await.expect("hole").is_empty());
}

/// shrinking appends zero records so old bytes never come back.
pub async fn truncate_appends_zeros(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let s = slice_of_1000(&*m).await;
    m.write_slice(f.ino, 0, s, Timestamp::now(), &[])
        .await
        .expect("write");
    m.write_slice(f.ino, 1, s, Timestamp::now(), &[])
        .await
        .expect("write");
    let a = m.truncate(&ctx, f.ino, 10).await.expect("shrink");
    assert_eq!(a.length, 10);
    let recs = m.read_chunk(f.ino, 0).await.expect("chunk");
    assert_eq!(
        recs.last(),
        Some(&Slice::zeros(10, (CHUNK_SIZE - 10) as u32))
    );
    assert!(
        m.read_chunk(f.ino, 1).await.expect("dropped").is_empty(),
        "chunks past the end are dropped"
    );
    assert_eq!(
        m.truncate(&ctx, f.ino, 5000).await.expect("grow").length,
        5000
    );
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    assert_eq!(
        kind_of(m.truncate(&ctx, d.ino, 0).await).await,
        Some(ErrorKind::IsDir)
    );
}

/// fallocate default, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE.
pub async fn fallocate_modes(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let a = m
        .fallocate(&ctx, f.ino, FallocMode::default(), 0, 8192)
        .await
        .expect("alloc");
    assert_eq!(a.length, 8192);
    let keep = FallocMode {
        keep_size: true,
        ..Default::default()
    };
    assert_eq!(
        m.fallocate(&ctx, f.ino, keep, 0, 100_000)
            .await
            .expect("keep")
            .length,
        8192
    );
    let punch = FallocMode {
        keep_size: true,
        punch_hole: true,
        zero_range: false,
    };
    // a chunk without records reads as zeros already: punching it writes nothing
    m.fallocate(&ctx, f.ino, punch, 100, 200)
        .await
        .expect("punch");
    assert!(m.read_chunk(f.ino, 0).await.expect("chunk").is_empty());
    let data = slice_of_1000(&*m).await;
    m.write_slice(f.ino, 0, data, Timestamp::now(), &[])
        .await
        .expect("write");
    m.fallocate(&ctx, f.ino, punch, 100, 200)
        .await
        .expect("punch");
    assert_eq!(
        m.read_chunk(f.ino, 0).await.expect("chunk").last(),
        Some(&Slice::zeros(100, 200))
    );
    let bad = FallocMode {
        keep_size: false,
        punch_hole: true,
        zero_range: false,
    };
    assert_eq!(
        kind_of(m.fallocate(&ctx, f.ino, bad, 0, 1).await).await,
        Some(ErrorKind::Unsupported)
    );
    let zero = FallocMode {
        keep_size: false,
        punch_hole: false,
        zero_range: true,
    };
    assert_eq!(
        m.fallocate(&ctx, f.ino, zero, 8000, 1000)
            .await
            .expect("zero")
            .length,
        9000
    );
}

/// Ranges over a huge sparse file cost only the chunks that hold records: a truncate from the
/// largest length down drops chunks without zeroing the ones in between (it allocated one
/// record per chunk in memory before: 2^31 of them killed the mount), a zeroed range writes
/// records only where there is data, and lengths past [`crate::MAX_FILE_LEN`] are EFBIG.
pub async fn huge_sparse_ranges_cost_only_their_chunks(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let far = 1u32 << 20;
    for indx in [0, far] {
        let s = slice_of_1000(&*m).await;
        m.write_slice(f.ino, indx, s, Timestamp::now(), &[])
            .await
            .expect("write");
    }
    assert_eq!(
        m.truncate(&ctx, f.ino, crate::MAX_FILE_LEN)
            .await
            .expect("largest length")
            .length,
        crate::MAX_FILE_LEN
    );
    assert_eq!(
        kind_of(m.truncate(&ctx, f.ino, crate::MAX_FILE_LEN + 1).await).await,
        Some(ErrorKind::FileTooBig)
    );
    let zero = FallocMode {
        keep_size: true,
        punch_hole: false,
        zero_range: true,
    };
    // 2^20 + 1 chunks, two with records
    m.fallocate(
        &ctx,
        f.ino,
        zero,
        500,
        (u64::from(far) + 1) * CHUNK_SIZE - 500,
    )
    .await
    .expect("zero range");
    assert_eq!(
        m.read_chunk(f.ino, 0).await.expect("chunk").last(),
        Some(&Slice::zeros(500, (CHUNK_SIZE - 500) as u32))
    );
    assert_eq!(
        m.read_chunk(f.ino, far).await.expect("chunk").last(),
        Some(&Slice::zeros(0, CHUNK_SIZE as u32))
    );
    assert!(m.read_chunk(f.ino, 7).await.expect("hole").is_empty());
    let a = m.truncate(&ctx, f.ino, 10).await.expect("shrink");
    assert_eq!(a.length, 10);
    assert!(m.read_chunk(f.ino, far).await.expect("dropped").is_empty());
    assert_eq!(
        m.read_chunk(f.ino, 0).await.expect("chunk").last(),
        Some(&Slice::zeros(10, (CHUNK_SIZE - 10) as u32))
    );
}

/// readdir returns every entry once across pages, whatever is removed in between.
pub async fn readdir_pages_with_cursor(m: Arc<dyn Volume>) {
    let ctx = root();
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    for i in 0..25 {
        mkfile(&m, &ctx, d.ino, &format!("f{i:02}")).await;
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = m.readdir(&ctx, d.ino, after, 7, true).await.expect("page");
        if page.is_empty() {
            break;
        }
        for e in &page {
            assert!(e.attr.is_some(), "plus listing carries attributes");
        }
        after = page.last().map(|e| e.cursor).unwrap_or(after);
        // deleting entries already listed must not make later ones disappear
        m.unlink(&ctx, d.ino, &page[0].name).await.expect("unlink");
        seen.extend(page.into_iter().map(|e| e.name));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
    // `rm -r` removes every entry of a page, the cursor's too, before asking for the next
    let e = mkdir(&*m, &ctx, ROOT_INODE, "e").await;
    for i in 0..40 {
        mkfile(&m, &ctx, e.ino, &format!("g{i:02}")).await;
    }
    let (mut after, mut removed) = (0, 0);
    loop {
        let page = m.readdir(&ctx, e.ino, after, 6, false).await.expect("page");
        let Some(last) = page.last() else { break };
        after = last.cursor;
        for x in &page {
            m.unlink(&ctx, e.ino, &x.name).await.expect("unlink listed");
            removed += 1;
        }
    }
    assert_eq!(
        removed, 40,
        "every entry listed once while the listing removes them"
    );
    assert!(m
        .readdir(&ctx, e.ino, 0, 10, false)
        .await
        .expect("empty")
        .is_empty());
}

/// an unlinked file stays readable while open and is freed at the last close.
pub async fn unlinked_open_file_lives_until_close(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    m.open(&ctx, f.ino).await.expect("open");
    m.unlink(&ctx, ROOT_INODE, b"f").await.expect("unlink");
    let a = m.getattr(f.ino).await.expect("still there");
    assert_eq!(a.nlink, 0);
    let id = m.new_slice_id().await.expect("id");
    m.write_slice(
        f.ino,
        0,
        Slice {
            pos: 0,
            id,
            size: 5,
            off: 0,
            len: 5,
        },
        Timestamp::now(),
        &[],
    )
    .await
    .expect("write while unlinked");
    m.close(f.ino).await.expect("close");
    assert_eq!(
        kind_of(m.getattr(f.ino).await).await,
        Some(ErrorKind::NotFound)
    );
}

/// set-group-id directories pass their group and the bit on.
pub async fn setgid_directory(m: Arc<dyn Volume>) {
    let rootc = root();
    let d = mkdir(&*m, &rootc, ROOT_INODE, "d").await;
    m.setattr(
        &rootc,
        d.ino,
        &SetAttr {
            mode: Some(0o2777),
            gid: Some(500),
            ..Default::default()
        },
    )
    .await
    .expect("chmod");
    let u = user(1000, 1000);
    let f = mkfile(&m, &u, d.ino, "f").await;
    assert_eq!(f.gid, 500);
    let sub = mkdir(&*m, &u, d.ino, "sub").await;
    assert_eq!(sub.gid, 500);
    assert_ne!(sub.mode & S_ISGID, 0, "subdirectories inherit set-group-id");
    let g = m
        .mknod(&u, d.ino, b"g", FileType::File, 0o2755, 0, 0, b"")
        .await
        .expect("create sgid");
    assert_eq!(
        g.mode & S_ISGID,
        0,
        "not a member of the group: set-group-id is dropped"
    );
}

/// in a sticky directory only owners may remove entries.
pub async fn sticky_directory(m: Arc<dyn Volume>) {
    let rootc = root();
    let d = mkdir(&*m, &rootc, ROOT_INODE, "tmp").await;
    m.setattr(
        &rootc,
        d.ino,
        &SetAttr {
            mode: Some(0o777 | S_ISVTX),
            ..Default::default()
        },
    )
    .await
    .expect("chmod");
    let alice = user(1001, 1001);
    let bob = user(1002, 1002);
    mkfile(&m, &alice, d.ino, "a").await;
    assert_eq!(
        kind_of(m.unlink(&bob, d.ino, b"a").await).await,
        Some(ErrorKind::NotPermitted)
    );
    assert_eq!(
        kind_of(
            m.rename(&bob, d.ino, b"a", d.ino, b"b", RenameFlags::default())
                .await
        )
        .await,
        Some(ErrorKind::NotPermitted)
    );
    m.unlink(&alice, d.ino, b"a").await.expect("owner may");
}

/// permission bits are enforced when the caller asks the metadata layer to check.
pub async fn permission_checks(m: Arc<dyn Volume>) {
    let rootc = root();
    let d = mkdir(&*m, &rootc, ROOT_INODE, "private").await;
    m.setattr(
        &rootc,
        d.ino,
        &SetAttr {
            mode: Some(0o700),
            ..Default::default()
        },
    )
    .await
    .expect("chmod");
    let u = user(1000, 1000);
    assert_eq!(
        kind_of(m.lookup(&u, d.ino, b"x").await).await,
        Some(ErrorKind::Access)
    );
    assert_eq!(
        kind_of(
            m.mknod(&u, d.ino, b"x", FileType::File, 0o644, 0, 0, b"")
                .await
        )
        .await,
        Some(ErrorKind::Access)
    );
    let f = mkfile(&m, &u, ROOT_INODE, "mine").await;
    let other = user(2000, 2000);
    assert_eq!(
        kind_of(
            m.setattr(
                &other,
                f.ino,
                &SetAttr {
                    mode: Some(0o777),
                    ..Default::default()
                }
            )
            .await
        )
        .await,
        Some(ErrorKind::NotPermitted)
    );
    assert_eq!(
        kind_of(
            m.setattr(
                &u,
                f.ino,
                &SetAttr {
                    uid: Some(2000),
                    ..Default::default()
                }
            )
            .await
        )
        .await,
        Some(ErrorKind::NotPermitted)
    );
    // the kernel checked already: no second check
    let trusted = Ctx {
        check_permission: false,
        ..u.clone()
    };
    assert!(m
        .lookup(&trusted, d.ino, b"x")
        .await
        .is_err_and(|e| e.kind() == ErrorKind::NotFound));
}

/// a read-only engine refuses every write with EROFS.
pub async fn read_only_refuses_writes(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    m.set_read_only(true);
    assert_eq!(
        kind_of(mknod_file(&m, &ctx, "g").await).await,
        Some(ErrorKind::ReadOnly)
    );
    assert_eq!(
        kind_of(m.unlink(&ctx, ROOT_INODE, b"f").await).await,
        Some(ErrorKind::ReadOnly)
    );
    assert_eq!(
        kind_of(m.truncate(&ctx, f.ino, 0).await).await,
        Some(ErrorKind::ReadOnly)
    );
    assert_eq!(
        kind_of(
            m.setxattr(&ctx, f.ino, b"user.a", b"", XattrFlags::default())
                .await
        )
        .await,
        Some(ErrorKind::ReadOnly)
    );
    assert!(m.getattr(f.ino).await.is_ok());
    m.set_read_only(false);
}

/// utimens with explicit times and UTIME_NOW, chown clearing set-user-id.
pub async fn setattr_times_and_owner(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let t = Timestamp {
        sec: 1_000_000_000,
        nsec: 123_456_789,
    };
    let a = m
        .setattr(
            &ctx,
            f.ino,
            &SetAttr {
                atime: Some(TimeSet::At(t)),
                mtime: Some(TimeSet::At(t)),
                ..Default::default()
            },
        )
        .await
        .expect("utimens");
    assert_eq!((a.atime, a.mtime), (t, t));
    assert_eq!(
        m.getattr(f.ino).await.expect("attr").mtime,
        t,
        "nanoseconds survive storage"
    );
    let b = m
        .setattr(
            &ctx,
            f.ino,
            &SetAttr {
                mtime: Some(TimeSet::Now),
                ..Default::default()
            },
        )
        .await
        .expect("now");
    assert!(b.mtime > t && b.atime == t);
    m.setattr(
        &ctx,
        f.ino,
        &SetAttr {
            mode: Some(0o4755),
            ..Default::default()
        },
    )
    .await
    .expect("suid");
    let c = m
        .setattr(
            &ctx,
            f.ino,
            &SetAttr {
                uid: Some(7),
                gid: Some(8),
                ..Default::default()
            },
        )
        .await
        .expect("chown");
    assert_eq!((c.uid, c.gid, c.mode), (7, 8, 0o755));
    assert!(c.ctime >= b.ctime);
    let neg = Timestamp { sec: -5, nsec: 1 };
    let d = m
        .setattr(
            &ctx,
            f.ino,
            &SetAttr {
                mtime: Some(TimeSet::At(neg)),
                ..Default::default()
            },
        )
        .await
        .expect("pre-epoch");
    assert_eq!(m.getattr(f.ino).await.expect("attr").mtime, d.mtime);
}

/// after a mix of namespace operations, check finds nothing wrong.
pub async fn check_clean_after_operations(m: Arc<dyn Volume>) {
    let ctx = root();
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    let f = mkfile(&m, &ctx, d.ino, "f").await;
    m.link(&ctx, f.ino, ROOT_INODE, b"l").await.expect("link");
    mkdir(&*m, &ctx, d.ino, "e").await;
    m.rename(&ctx, d.ino, b"e", ROOT_INODE, b"e", RenameFlags::default())
        .await
        .expect("rename");
    m.unlink(&ctx, d.ino, b"f").await.expect("unlink");
    let problems = m.check(false).await.expect("check");
    assert!(problems.is_empty(), "{problems:?}");
}

/// statfs counts inodes and space.
pub async fn statfs_counts(m: Arc<dyn Volume>) {
    let ctx = root();
    let before = m.statfs().await.expect("statfs");
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let id = m.new_slice_id().await.expect("id");
    m.write_slice(
        f.ino,
        0,
        Slice {
            pos: 0,
            id,
            size: 5000,
            off: 0,
            len: 5000,
        },
        Timestamp::now(),
        &[],
    )
    .await
    .expect("write");
    let after = m.statfs().await.expect("statfs");
    assert_eq!(after.used_inodes, before.used_inodes + 1);
    assert_eq!(before.avail_space - after.avail_space, 8192);
}

/// slice ids never repeat, also across engine instances batches.
pub async fn slice_ids_unique(m: Arc<dyn Volume>) {
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5000 {
        assert!(ids.insert(m.new_slice_id().await.expect("id")));
    }
    assert!(!ids.contains(&0), "id 0 means zeros");
}

/// compaction swaps the records it read for new ones, keeps records appended meanwhile, frees
/// the replaced slices, and refuses a chunk that changed under it.
pub async fn compact_chunk_swaps_its_prefix(m: Arc<dyn Volume>) {
    let ctx = root();
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let freed = record_freed(&*m);
    let t = Timestamp::now();
    let mut recs = Vec::new();
    for (pos, len) in [(0u32, 100u32), (50, 100), (400, 10)] {
        let s = Slice {
            pos,
            id: m.new_slice_id().await.expect("id"),
            size: len,
            off: 0,
            len,
        };
        m.write_slice(f.ino, 0, s, t, &[]).await.expect("write");
        recs.push(s);
    }
    let old = m.read_chunk(f.ino, 0).await.expect("read");
    // a write lands after compaction read the chunk
    let late = Slice {
        pos: 20,
        id: m.new_slice_id().await.expect("id"),
        size: 5,
        off: 0,
        len: 5,
    };
    m.write_slice(f.ino, 0, late, t, &[])
        .await
        .expect("late write");
    let new = Slice {
        pos: 0,
        id: m.new_slice_id().await.expect("id"),
        size: 410,
        off: 0,
        len: 410,
    };
    assert!(m
        .compact_chunk(f.ino, 0, &old, &[new], &[])
        .await
        .expect("compact"));
    assert_eq!(m.read_chunk(f.ino, 0).await.expect("read"), vec![new, late]);
    let mut got = freed.lock().map(|v| v.clone()).unwrap_or_default();
    got.sort_unstable();
    let mut want: Vec<(u64, u32)> = recs.iter().map(|s| (s.id, s.size)).collect();
    want.sort_unstable();
    assert_eq!(got, want, "the replaced slices are freed");
    // the same swap again: the chunk no longer starts with those records
    assert!(!m
        .compact_chunk(f.ino, 0, &old, &[new], &[])
        .await
        .expect("stale compact"));
    assert_eq!(m.read_chunk(f.ino, 0).await.expect("read"), vec![new, late]);
    assert!(m.check(false).await.expect("check").is_empty());
    let left = m.leftovers().await.expect("leftovers");
    assert!(left.delayed.is_empty() && left.unreferenced.is_empty());
}

/// copy_file_range shares the source's slices: the destination's records point into them
/// (holes become zero records), each shared record is one more reference, and a slice is freed
/// only when the last file holding it lets go.
pub async fn copy_range_shares_slices(m: Arc<dyn Volume>) {
    let ctx = root();
    let freed = record_freed(&*m);
    let freed_now = || {
        let mut v = freed.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_unstable();
        v
    };
    let a = mkfile(&m, &ctx, ROOT_INODE, "a").await;
    let b = mkfile(&m, &ctx, ROOT_INODE, "b").await;
    let t = Timestamp::now();
    let slice = |id: u64, pos: u32, len: u32| Slice {
        pos,
        id,
        size: len,
        off: 0,
        len,
    };
    let sa = slice(m.new_slice_id().await.expect("id"), 0, 1000);
    let sb = slice(m.new_slice_id().await.expect("id"), 500, 100);
    let sc = slice(m.new_slice_id().await.expect("id"), 0, 1000);
    m.write_slice(a.ino, 0, sa, t, &[]).await.expect("write");
    m.write_slice(a.ino, 0, sb, t, &[]).await.expect("write");
    m.write_slice(a.ino, 1, sc, t, &[]).await.expect("write");
    // a: sa [0,500) sb [500,600) sa [600,1000), a hole to the next chunk, sc [0,1000) there
    let (n, attr) = m
        .copy_range(a.ino, 200, b.ino, 10, u64::MAX)
        .await
        .expect("copy");
    assert_eq!(n, CHUNK_SIZE + 800, "clipped at the source's end");
    assert_eq!(attr.length, CHUNK_SIZE + 810);
    assert_eq!(m.getattr(b.ino).await.expect("b").length, CHUNK_SIZE + 810);
    let at = |s: Slice, pos: u32, off: u32, len: u32| Slice { pos, off, len, ..s };
    let tail = (CHUNK_SIZE - 190) as u32;
    assert_eq!(
        m.read_chunk(b.ino, 0).await.expect("chunk 0"),
        vec![
            at(sa, 10, 200, 300),
            at(sb, 310, 0, 100),
            at(sa, 410, 600, 400),
            Slice::zeros(810, tail - 810),
            at(sc, tail, 0, 190),
        ]
    );
    assert_eq!(
        m.read_chunk(b.ino, 1).await.expect("chunk 1"),
        vec![at(sc, 0, 190, 810)]
    );
    // nothing past the source's end, and no overlapping copy onto the same file
    let (n, _) = m
        .copy_range(a.ino, CHUNK_SIZE + 1000, b.ino, 0, 10)
        .await
        .expect("copy at the end");
    assert_eq!(n, 0);
    assert_eq!(
        kind_of(m.copy_range(a.ino, 0, a.ino, 500, 1000).await).await,
        Some(ErrorKind::Invalid)
    );
    let (n, _) = m
        .copy_range(a.ino, 0, a.ino, 2000, 100)
        .await
        .expect("copy within the file");
    assert_eq!(n, 100);
    let d = mkdir(&*m, &ctx, ROOT_INODE, "d").await;
    assert_eq!(
        kind_of(m.copy_range(a.ino, 0, d.ino, 0, 10).await).await,
        Some(ErrorKind::IsDir)
    );
    assert!(m.check(false).await.expect("check").is_empty());
    // the source lets go: everything is still held by the copy
    m.truncate(&ctx, a.ino, 0).await.expect("truncate a");
    assert_eq!(
        freed_now(),
        Vec::<(u64, u32)>::new(),
        "shared slices were freed"
    );
    // the copy lets go: each slice is freed once
    m.truncate(&ctx, b.ino, 0).await.expect("truncate b");
    let mut want = vec![(sa.id, sa.size), (sb.id, sb.size), (sc.id, sc.size)];
    want.sort_unstable();
    assert_eq!(freed_now(), want);
    let left = m.leftovers().await.expect("leftovers");
    assert!(left.delayed.is_empty() && left.unreferenced.is_empty());
}

/// block checksums are stored with the slice they belong to (also by compaction), read back,
/// and dropped with the slice's objects.
pub async fn slice_checksums_kept_with_slices(m: Arc<dyn Volume>) {
    let ctx = root();
    m.set_slice_deleter(Arc::new(|_, _| Box::pin(async { Ok(()) })));
    let f = mkfile(&m, &ctx, ROOT_INODE, "f").await;
    let s = Slice {
        pos: 0,
        id: m.new_slice_id().await.expect("id"),
        size: 1000,
        off: 0,
        len: 1000,
    };
    let sums = vec![1u8, 2, 3, 4];
    m.write_slice(f.ino, 0, s, Timestamp::now(), &sums)
        .await
        .expect("write");
    assert_eq!(m.slice_sums(s.id).await.expect("sums"), Some(sums));
    let n = Slice {
        id: m.new_slice_id().await.expect("id"),
        ..s
    };
    assert!(m
        .compact_chunk(f.ino, 0, &[s], &[n], &[vec![9, 9, 9, 9]])
        .await
        .expect("compact"));
    assert_eq!(
        m.slice_sums(n.id).await.expect("sums"),
        Some(vec![9, 9, 9, 9])
    );
    assert_eq!(m.slice_sums(s.id).await.expect("sums"), None, "freed");
    m.unlink(&ctx, ROOT_INODE, b"f").await.expect("unlink");
    // the data of a removed file is freed in the background
    let mut gone = false;
    for _ in 0..100 {
        gone = m.slice_sums(n.id).await.expect("sums").is_none();
        if gone {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "checksums of a removed file's slice are still there");
}

/// Paging through the volume's chunks (as gc and fsck do) meets every chunk once.
pub async fn chunks_page_walks_every_chunk(m: Arc<dyn Volume>) {
    let ctx = Ctx::root();
    let mut all: Vec<(u64, u32)> = Vec::new();
    for f in 0..3u32 {
        let ino = mkfile(&m, &ctx, ROOT_INODE, &format!("paged{f}")).await.ino;
        for indx in 0..=f {
            all.push((ino, indx));
            let id = m.new_slice_id().await.expect("slice id");
            let s = Slice {
                pos: 0,
                id,
                size: 100,
                off: 0,
                len: 100,
            };
            m.write_slice(ino, indx, s, Timestamp::now(), &[])
                .await
                .expect("write");
        }
    }
    all.sort_unstable();
    assert_eq!(all.len(), 6);
    let mut paged = Vec::new();
    let mut cursor = Vec::new();
    let mut pages = 0;
    loop {
        let (page, next) = m.chunks_page(&cursor, 2).await.expect("page");
        assert!(page.len() <= 2, "a page holds at most its limit");
        paged.extend(page.iter().map(|c| (c.ino, c.indx)));
        pages += 1;
        assert!(pages < 20, "paging does not end");
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    paged.sort_unstable();
    assert_eq!(paged, all, "every chunk once");
}
