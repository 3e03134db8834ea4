//! The engine contract suite: what the core relies on every engine to keep, checked on the
//! engine directly (no core in between), one independent case per test. An engine's test file
//! expands [`contract_suite!`] with a fixture returning a fresh engine whose layout is
//! prepared:
//!
//! ```text
//! tidefs_meta::contract_suite!(fixture);   // async fn fixture() -> (E, Guard), E: Engine
//! ```
//!
//! A new engine is correct when this suite, the conformance suite and the model test pass.

use crate::engine::{Engine, Flock, Lookup, Mode, Plock, Txn};
use crate::{Attr, ErrorKind, FileType, Slice, Timestamp, ROOT_INODE};
use std::ops::Bound;

/// Expand one `#[tokio::test]` per contract case, each calling `$fixture().await` for a fresh
/// engine. The fixture returns the engine and a guard kept alive for the test.
#[macro_export]
macro_rules! contract_suite {
    ($fixture:path) => {
        $crate::contract_suite!(@cases $fixture;
            duplicate_entry_is_exists, last_reference_is_reported_once, appends_keep_order,
            scans_page_through_everything, reads_see_the_last_commit, rolled_back_writes_vanish,
            compound_reads_agree_with_step_by_step, take_chunks_removes_what_it_returns,
            counters_add_and_default_to_zero, sessions_and_queues_round_trip,
            lock_records_are_per_owner, entries_list_in_name_order, move_and_replace_entries);
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (engine, _guard) = $fixture().await;
                $crate::testkit::contract::$case(&engine).await;
            }
        )*
    };
}

fn dir(ino: u64, parent: u64) -> Attr {
    crate::posix::rules::new_dir_attr(ino, 0o755, parent, Timestamp::now())
}

fn file(ino: u64, parent: u64) -> Attr {
    Attr {
        typ: FileType::File,
        nlink: 1,
        length: 0,
        mode: 0o644,
        ..dir(ino, parent)
    }
}

fn slice(id: u64, pos: u32) -> Slice {
    Slice {
        pos,
        id,
        size: 100,
        off: 0,
        len: 100,
    }
}

/// Run `f` in a write transaction and commit it.
macro_rules! write {
    ($e:expr, |$t:ident| $body:block) => {{
        let mut $t = $e.begin(Mode::Write).await.expect("begin");
        let out = $body;
        $t.commit().await.expect("commit");
        out
    }};
}

/// Run `f` in a read transaction.
macro_rules! read {
    ($e:expr, |$t:ident| $body:block) => {{
        let mut $t = $e.begin(Mode::Read).await.expect("begin");
        let out = $body;
        $t.commit().await.expect("end");
        out
    }};
}

/// A root directory and a file `f` (inode 10) in it.
async fn tree<E: Engine>(e: &E) {
    write!(e, |t| {
        t.create_node(&dir(ROOT_INODE, ROOT_INODE))
            .await
            .expect("root");
        t.create_node(&file(10, ROOT_INODE)).await.expect("file");
        t.create_entry(ROOT_INODE, b"f", FileType::File, 10)
            .await
            .expect("entry");
    });
}

/// A taken name is `Exists`, answered by the call itself, in the same transaction and in a
/// later one.
pub async fn duplicate_entry_is_exists<E: Engine>(e: &E) {
    tree(e).await;
    let mut t = e.begin(Mode::Write).await.expect("begin");
    let again = t.create_entry(ROOT_INODE, b"f", FileType::File, 11).await;
    t.rollback().await;
    assert_eq!(again.map_err(|e| e.kind()), Err(ErrorKind::Exists));
    let mut t = e.begin(Mode::Write).await.expect("begin");
    t.create_entry(ROOT_INODE, b"g", FileType::File, 11)
        .await
        .expect("new name");
    // the answer of the call itself, not of the commit: the core maps it there
    let twice = t.create_entry(ROOT_INODE, b"g", FileType::File, 12).await;
    t.rollback().await;
    assert_eq!(twice.map_err(|e| e.kind()), Err(ErrorKind::Exists));
    let entry = read!(e, |t| { t.entry(ROOT_INODE, b"f").await.expect("read") });
    assert_eq!(entry, Some((FileType::File, 10)), "the first entry stays");
}

/// A slice with three references reports its last one exactly once.
pub async fn last_reference_is_reported_once<E: Engine>(e: &E) {
    write!(e, |t| {
        t.ref_new(7, 100).await.expect("first");
        t.ref_more(7, 100, 2).await.expect("more");
        t.ref_new(8, 100).await.expect("other");
    });
    let mut last = Vec::new();
    for _ in 0..3 {
        last.push(write!(e, |t| { t.unref(7, 100).await.expect("unref") }));
    }
    assert_eq!(last, vec![false, false, true]);
    // within one transaction too
    let both = write!(e, |t| {
        t.ref_more(8, 100, 1).await.expect("more");
        let a = t.unref(8, 100).await.expect("unref");
        let b = t.unref(8, 100).await.expect("unref");
        (a, b)
    });
    assert_eq!(both, (false, true));
    let zero = read!(e, |t| { t.zero_refs().await.expect("zero refs") });
    assert!(
        zero.is_empty(),
        "freed slices leave no zero record: {zero:?}"
    );
}

/// Records appended in several transactions and within one come back in that order.
pub async fn appends_keep_order<E: Engine>(e: &E) {
    tree(e).await;
    write!(e, |t| {
        t.append_chunk(10, 0, &[slice(1, 0)], true)
            .await
            .expect("a");
    });
    write!(e, |t| {
        t.append_chunk(10, 0, &[slice(2, 10), slice(3, 20)], false)
            .await
            .expect("b");
        t.append_chunk(10, 0, &[slice(4, 30)], false)
            .await
            .expect("c");
        // a transaction reads its own appends
        let seen: Vec<u64> = t
            .chunk(10, 0)
            .await
            .expect("own")
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(seen, vec![1, 2, 3, 4]);
    });
    let ids: Vec<u64> = read!(e, |t| { t.chunk(10, 0).await.expect("read") })
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    write!(e, |t| {
        t.set_chunk(10, 0, &[slice(9, 0), slice(4, 30)])
            .await
            .expect("set");
    });
    let ids: Vec<u64> = read!(e, |t| { t.chunk(10, 0).await.expect("read") })
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![9, 4]);
}

/// Scans with any page size find every node, entry and chunk exactly once.
pub async fn scans_page_through_everything<E: Engine>(e: &E) {
    const N: u64 = 23;
    write!(e, |t| {
        t.create_node(&dir(ROOT_INODE, ROOT_INODE))
            .await
            .expect("root");
        for i in 0..N {
            let ino = 100 + i;
            t.create_node(&file(ino, ROOT_INODE)).await.expect("node");
            t.create_entry(
                ROOT_INODE,
                format!("n{i:03}").as_bytes(),
                FileType::File,
                ino,
            )
            .await
            .expect("entry");
            t.append_chunk(ino, (i % 3) as u32, &[slice(1000 + i, 0)], true)
                .await
                .expect("chunk");
        }
    });
    for page in [1usize, 2, 7, 1000] {
        let mut nodes = Vec::new();
        let mut cursor = Vec::new();
        loop {
            let (items, next) = read!(e, |t| { t.scan_nodes(&cursor, page).await.expect("scan") });
            assert!(
                items.len() <= page.max(1),
                "page of {page} held {}",
                items.len()
            );
            nodes.extend(items.into_iter().map(|a| a.ino));
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        nodes.sort_unstable();
        let want: Vec<u64> = std::iter::once(ROOT_INODE).chain(100..100 + N).collect();
        assert_eq!(nodes, want, "nodes, pages of {page}");

        let mut names = Vec::new();
        let mut cursor = Vec::new();
        loop {
            let (items, next) = read!(e, |t| {
                t.scan_entries(&cursor, page).await.expect("scan")
            });
            names.extend(items.into_iter().map(|(p, n, _, i)| (p, n, i)));
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        names.sort();
        assert_eq!(names.len(), N as usize, "entries, pages of {page}");
        names.dedup();
        assert_eq!(
            names.len(),
            N as usize,
            "entries seen twice, pages of {page}"
        );

        let mut chunks = Vec::new();
        let mut cursor = Vec::new();
        loop {
            let (items, next) = read!(e, |t| { t.scan_chunks(&cursor, page).await.expect("scan") });
            chunks.extend(items.into_iter().map(|c| (c.ino, c.indx, c.slices[0].id)));
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        chunks.sort_unstable();
        let want: Vec<(u64, u32, u64)> = (0..N)
            .map(|i| (100 + i, (i % 3) as u32, 1000 + i))
            .collect();
        assert_eq!(chunks, want, "chunks, pages of {page}");
    }
}

/// A committed write is seen by every later transaction of every mode.
pub async fn reads_see_the_last_commit<E: Engine>(e: &E) {
    tree(e).await;
    let mut a = file(10, ROOT_INODE);
    a.length = 12345;
    write!(e, |t| {
        t.update_node(&a).await.expect("update");
    });
    for mode in [Mode::Read, Mode::Latest, Mode::Write] {
        let mut t = e.begin(mode).await.expect("begin");
        let seen = t.node(10).await.expect("node").map(|n| n.length);
        t.rollback().await;
        assert_eq!(seen, Some(12345), "{mode:?}");
    }
}

/// Writes of a transaction rolled back (or failed) leave nothing.
pub async fn rolled_back_writes_vanish<E: Engine>(e: &E) {
    tree(e).await;
    let mut t = e.begin(Mode::Write).await.expect("begin");
    t.create_node(&file(11, ROOT_INODE)).await.expect("node");
    t.create_entry(ROOT_INODE, b"gone", FileType::File, 11)
        .await
        .expect("entry");
    t.add_counter("nextInode", 5).await.expect("counter");
    t.rollback().await;
    let (node, entry, counter) = read!(e, |t| {
        (
            t.node(11).await.expect("node"),
            t.entry(ROOT_INODE, b"gone").await.expect("entry"),
            t.counter("nextInode").await.expect("counter"),
        )
    });
    assert_eq!((node, entry, counter), (None, None, 0));
}

/// The one-step compound reads answer what the step-by-step reads answer.
pub async fn compound_reads_agree_with_step_by_step<E: Engine>(e: &E) {
    tree(e).await;
    write!(e, |t| {
        t.create_node(&dir(20, ROOT_INODE)).await.expect("dir");
        t.create_entry(ROOT_INODE, b"d", FileType::Dir, 20)
            .await
            .expect("entry");
        // a dangling entry: its inode does not exist
        t.create_entry(ROOT_INODE, b"dangling", FileType::File, 99)
            .await
            .expect("entry");
        t.set_xattr(10, b"user.a", b"1").await.expect("xattr");
    });
    let mut t = e.begin(Mode::Read).await.expect("begin");
    let f = t.node(10).await.expect("node").expect("file");
    let root = t.node(ROOT_INODE).await.expect("node").expect("root");
    assert_eq!(
        t.lookup(ROOT_INODE, b"f").await.expect("l"),
        Lookup::Found(f.clone())
    );
    assert_eq!(
        t.lookup(ROOT_INODE, b"nope").await.expect("l"),
        Lookup::Missing
    );
    assert_eq!(
        t.lookup(ROOT_INODE, b"dangling").await.expect("l"),
        Lookup::Dangling(99)
    );
    assert_eq!(t.lookup(10, b"x").await.expect("l"), Lookup::NotDir);
    assert_eq!(t.lookup(555, b"x").await.expect("l"), Lookup::NoParent);
    let within = t
        .entry_in(ROOT_INODE, b"f")
        .await
        .expect("entry_in")
        .expect("found");
    assert_eq!((within.dir, within.node), (root, f.clone()));
    assert!(t.entry_in(ROOT_INODE, b"nope").await.expect("e").is_none());
    assert!(t
        .entry_in(ROOT_INODE, b"dangling")
        .await
        .expect("e")
        .is_none());
    assert_eq!(
        t.xattr_of(10, b"user.a").await.expect("x"),
        Some(Some(b"1".to_vec()))
    );
    assert_eq!(t.xattr_of(10, b"user.b").await.expect("x"), Some(None));
    assert_eq!(t.xattr_of(555, b"user.a").await.expect("x"), None);
    t.rollback().await;
    let mut t = e.begin(Mode::Write).await.expect("begin");
    let (src, target) = t
        .rename_pair(ROOT_INODE, b"f", ROOT_INODE, b"d")
        .await
        .expect("pair");
    assert_eq!(src.map(|s| s.node.ino), Some(10));
    if let Some(target) = target {
        assert_eq!(
            target.map(|(typ, ino, _)| (typ, ino)),
            Some((FileType::Dir, 20))
        );
    }
    t.rollback().await;
}

/// `take_chunks` removes exactly what it returns, from the given index on.
pub async fn take_chunks_removes_what_it_returns<E: Engine>(e: &E) {
    tree(e).await;
    write!(e, |t| {
        for indx in [0u32, 1, 5, 6, 900] {
            t.append_chunk(10, indx, &[slice(u64::from(indx) + 1, 0)], true)
                .await
                .expect("chunk");
        }
        assert_eq!(
            t.chunk_indexes(10, 1, 6).await.expect("indexes"),
            vec![1, 5, 6]
        );
        let mid: Vec<u32> = t
            .chunks(10, 5, 900)
            .await
            .expect("chunks")
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(mid, vec![5, 6, 900]);
    });
    let mut taken = Vec::new();
    loop {
        let (chunks, more) = write!(e, |t| { t.take_chunks(10, 5, 2).await.expect("take") });
        taken.extend(chunks.into_iter().map(|(i, s)| (i, s[0].id)));
        if !more {
            break;
        }
    }
    assert_eq!(taken, vec![(5, 6), (6, 7), (900, 901)]);
    let left = read!(e, |t| {
        t.chunk_indexes(10, 0, u32::MAX).await.expect("left")
    });
    assert_eq!(left, vec![0, 1]);
}

/// Counters start at zero and return their new value.
pub async fn counters_add_and_default_to_zero<E: Engine>(e: &E) {
    let (a, b, c) = write!(e, |t| {
        (
            t.counter("nextTrash").await.expect("read"),
            t.add_counter("nextTrash", 3).await.expect("add"),
            t.add_counter("nextTrash", 4).await.expect("add"),
        )
    });
    assert_eq!((a, b, c), (0, 3, 7));
    assert_eq!(
        read!(e, |t| { t.counter("nextTrash").await.expect("read") }),
        7
    );
    assert_eq!(
        write!(e, |t| {
            t.add_counter("usedSpace", -4096).await.expect("neg")
        }),
        -4096
    );
}

/// Sessions, kept-open inodes, the deletion queue and slices set aside round trip, and a
/// session's removal takes its records with it.
pub async fn sessions_and_queues_round_trip<E: Engine>(e: &E) {
    tree(e).await;
    write!(e, |t| {
        t.create_session(3, 1000, b"{}").await.expect("session");
        t.create_session(4, 2000, b"{}").await.expect("session");
        t.sustain(3, 10).await.expect("sustain");
        t.sustain(4, 10).await.expect("sustain");
        t.put_flock(
            10,
            Flock {
                sid: 3,
                owner: 1,
                ltype: b'R',
            },
        )
        .await
        .expect("flock");
        t.queue_delfile(10, 4096, 77).await.expect("queue");
        t.put_delayed(50, 900, &[(5, 100), (6, 200)])
            .await
            .expect("delay");
    });
    let (sessions, kept, files, delayed) = read!(e, |t| {
        (
            t.sessions().await.expect("sessions"),
            t.sustained(None).await.expect("kept"),
            t.delfiles().await.expect("files"),
            t.delayed().await.expect("delayed"),
        )
    });
    let sids: Vec<(u64, i64)> = sessions.iter().map(|s| (s.sid, s.expire)).collect();
    assert_eq!(sids, vec![(3, 1000), (4, 2000)]);
    let mut kept = kept;
    kept.sort_unstable();
    assert_eq!(kept, vec![(3, 10), (4, 10)]);
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].ino, files[0].length, files[0].queued),
        (10, 4096, 77)
    );
    assert_eq!(delayed.len(), 1);
    assert_eq!(
        (delayed[0].when, delayed[0].slices.clone()),
        (50, vec![(5, 100), (6, 200)])
    );
    write!(e, |t| {
        t.refresh_session(3, 1500).await.expect("refresh");
        t.delete_session(4).await.expect("remove");
        assert!(t.unsustain(3, 10).await.expect("unsustain"));
        assert!(!t.unsustain(3, 10).await.expect("twice"));
        t.unqueue_delfile(10).await.expect("unqueue");
        let key = delayed[0].key.clone();
        assert_eq!(
            t.take_delayed(&key).await.expect("take"),
            Some(vec![(5, 100), (6, 200)])
        );
        assert_eq!(t.take_delayed(&key).await.expect("again"), None);
    });
    let (sessions, kept, files, flocks) = read!(e, |t| {
        (
            t.sessions().await.expect("sessions"),
            t.sustained(None).await.expect("kept"),
            t.delfiles().await.expect("files"),
            t.flocks(10).await.expect("flocks"),
        )
    });
    let sids: Vec<(u64, i64)> = sessions.iter().map(|s| (s.sid, s.expire)).collect();
    assert_eq!(sids, vec![(3, 1500)]);
    assert!(kept.is_empty() && files.is_empty(), "{kept:?} {files:?}");
    assert_eq!(flocks.len(), 1, "session 3's lock stays");
    write!(e, |t| {
        t.delete_session(3).await.expect("remove");
    });
    assert!(read!(e, |t| { t.flocks(10).await.expect("flocks") }).is_empty());
}

/// Lock records are kept per (session, owner): a put replaces that owner's, a delete removes
/// only it.
pub async fn lock_records_are_per_owner<E: Engine>(e: &E) {
    tree(e).await;
    write!(e, |t| {
        t.put_flock(
            10,
            Flock {
                sid: 1,
                owner: 1,
                ltype: b'R',
            },
        )
        .await
        .expect("a");
        t.put_flock(
            10,
            Flock {
                sid: 1,
                owner: 2,
                ltype: b'R',
            },
        )
        .await
        .expect("b");
        t.put_flock(
            10,
            Flock {
                sid: 1,
                owner: 1,
                ltype: b'W',
            },
        )
        .await
        .expect("a again");
        t.put_plock(
            10,
            &Plock {
                sid: 2,
                owner: 9,
                records: vec![1; 24],
            },
        )
        .await
        .expect("p");
        t.put_plock(
            10,
            &Plock {
                sid: 2,
                owner: 9,
                records: vec![2; 48],
            },
        )
        .await
        .expect("p2");
    });
    let (mut fl, pl) = read!(e, |t| {
        (
            t.flocks(10).await.expect("f"),
            t.plocks(10).await.expect("p"),
        )
    });
    fl.sort_by_key(|l| l.owner);
    assert_eq!(
        fl,
        vec![
            Flock {
                sid: 1,
                owner: 1,
                ltype: b'W'
            },
            Flock {
                sid: 1,
                owner: 2,
                ltype: b'R'
            }
        ]
    );
    assert_eq!(
        pl,
        vec![Plock {
            sid: 2,
            owner: 9,
            records: vec![2; 48]
        }]
    );
    write!(e, |t| {
        t.delete_flock(10, 1, 1).await.expect("del");
        t.delete_plock(10, 2, 9).await.expect("del");
        t.delete_plock(10, 2, 9).await.expect("del twice");
    });
    let (fl, pl) = read!(e, |t| {
        (
            t.flocks(10).await.expect("f"),
            t.plocks(10).await.expect("p"),
        )
    });
    assert_eq!(
        fl,
        vec![Flock {
            sid: 1,
            owner: 2,
            ltype: b'R'
        }]
    );
    assert!(pl.is_empty());
}

/// Entries list in byte order of their names, from any start, in pages.
pub async fn entries_list_in_name_order<E: Engine>(e: &E) {
    write!(e, |t| {
        t.create_node(&dir(ROOT_INODE, ROOT_INODE))
            .await
            .expect("root");
        for (i, name) in ["b", "a", "\u{e9}", "B", "ab", "z"].iter().enumerate() {
            let ino = 30 + i as u64;
            t.create_node(&file(ino, ROOT_INODE)).await.expect("node");
            t.create_entry(ROOT_INODE, name.as_bytes(), FileType::File, ino)
                .await
                .expect("entry");
        }
    });
    let mut t = e.begin(Mode::Read).await.expect("begin");
    let names =
        |l: Vec<crate::engine::Listed>| -> Vec<Vec<u8>> { l.into_iter().map(|x| x.name).collect() };
    let all = names(
        t.list_entries(ROOT_INODE, Bound::Unbounded, 100, false)
            .await
            .expect("all"),
    );
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all.len(), 6);
    let after = names(
        t.list_entries(ROOT_INODE, Bound::Excluded(b"ab"), 2, false)
            .await
            .expect("after"),
    );
    assert_eq!(after, vec![b"b".to_vec(), b"z".to_vec()]);
    let from = t
        .list_entries(ROOT_INODE, Bound::Included(b"ab"), 1, true)
        .await
        .expect("from");
    assert_eq!(from.len(), 1);
    assert_eq!(from[0].name, b"ab".to_vec());
    assert_eq!(from[0].attr.as_ref().map(|a| a.ino), Some(from[0].ino));
    assert!(!t.dir_is_empty(ROOT_INODE).await.expect("empty"));
    assert!(t.dir_is_empty(30).await.expect("empty"));
    t.rollback().await;
}

/// A moved entry leaves its old name; a replaced entry names the new inode.
pub async fn move_and_replace_entries<E: Engine>(e: &E) {
    tree(e).await;
    write!(e, |t| {
        t.create_node(&dir(20, ROOT_INODE)).await.expect("dir");
        t.create_entry(ROOT_INODE, b"d", FileType::Dir, 20)
            .await
            .expect("entry");
    });
    write!(e, |t| {
        t.move_entry(ROOT_INODE, b"f", 20, b"g", FileType::File, 10)
            .await
            .expect("move");
    });
    write!(e, |t| {
        t.replace_entry(ROOT_INODE, b"d", FileType::File, 10)
            .await
            .expect("replace");
    });
    let got = read!(e, |t| {
        (
            t.entry(ROOT_INODE, b"f").await.expect("old"),
            t.entry(20, b"g").await.expect("new"),
            t.entry(ROOT_INODE, b"d").await.expect("replaced"),
        )
    });
    assert_eq!(
        got,
        (None, Some((FileType::File, 10)), Some((FileType::File, 10)))
    );
    write!(e, |t| {
        t.delete_entry(20, b"g").await.expect("delete");
        t.delete_inode(&file(10, ROOT_INODE))
            .await
            .expect("delete inode");
    });
    let got = read!(e, |t| {
        (
            t.entry(20, b"g").await.expect("e"),
            t.node(10).await.expect("n"),
        )
    });
    assert_eq!(got, (None, None));
}
