//! Model-based test: random sequences of metadata operations run through two engines side by
//! side; every result (success and value, or the error's kind) and the final tree must be the
//! same, and both volumes must check clean. Inode and slice numbers come from the same counters
//! in the same batches on every engine, so the two runs name the same inodes.
//!
//! SQLite against memkv always; SQLite against each database server whose URL the environment
//! gives (fewer cases: every operation is a round trip).

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use tidefs_meta::{
    testkit, Attr, Ctx, ErrorKind, FallocMode, FileType, Ino, RenameFlags, SetAttr, Slice,
    Timestamp, Volume, XattrFlags, CHUNK_SIZE, ROOT_INODE,
};

/// One operation; indexes pick among the directories and files made so far.
#[derive(Debug, Clone)]
enum Op {
    Mkdir(usize, u8),
    Create(usize, u8),
    Symlink(usize, u8),
    Link(usize, usize, u8),
    Unlink(usize, u8),
    Rmdir(usize, u8),
    Rename(usize, u8, usize, u8, u8),
    Write(usize, u8, u16, u16),
    Truncate(usize, u32),
    Punch(usize, u32, u32),
    Copy(usize, usize, u16, u16, u16),
    Chmod(usize, u16),
    SetXattr(usize, u8, u8, bool),
    RemoveXattr(usize, u8),
    Open(usize),
    Close(usize),
    Compact(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..8;
    let n = 0u8..5;
    prop_oneof![
        1 => (i.clone(), n.clone()).prop_map(|(p, n)| Op::Mkdir(p, n)),
        3 => (i.clone(), n.clone()).prop_map(|(p, n)| Op::Create(p, n)),
        1 => (i.clone(), n.clone()).prop_map(|(p, n)| Op::Symlink(p, n)),
        1 => (i.clone(), i.clone(), n.clone()).prop_map(|(f, p, n)| Op::Link(f, p, n)),
        2 => (i.clone(), n.clone()).prop_map(|(p, n)| Op::Unlink(p, n)),
        1 => (i.clone(), n.clone()).prop_map(|(p, n)| Op::Rmdir(p, n)),
        2 => (i.clone(), n.clone(), i.clone(), n.clone(), 0u8..4)
            .prop_map(|(p, a, q, b, f)| Op::Rename(p, a, q, b, f)),
        3 => (i.clone(), 0u8..3, any::<u16>(), any::<u16>())
            .prop_map(|(f, c, o, l)| Op::Write(f, c, o, l)),
        1 => (i.clone(), 0u32..200_000_000).prop_map(|(f, l)| Op::Truncate(f, l)),
        1 => (i.clone(), 0u32..100_000_000, 1u32..100_000_000).prop_map(|(f, o, l)| Op::Punch(f, o, l)),
        1 => (i.clone(), i.clone(), any::<u16>(), any::<u16>(), any::<u16>())
            .prop_map(|(s, d, a, b, l)| Op::Copy(s, d, a, b, l)),
        1 => (i.clone(), 0u16..0o7777).prop_map(|(f, m)| Op::Chmod(f, m)),
        1 => (i.clone(), 0u8..3, any::<u8>(), any::<bool>())
            .prop_map(|(f, n, v, c)| Op::SetXattr(f, n, v, c)),
        1 => (i.clone(), 0u8..3).prop_map(|(f, n)| Op::RemoveXattr(f, n)),
        1 => i.clone().prop_map(Op::Open),
        1 => i.clone().prop_map(Op::Close),
        1 => i.prop_map(Op::Compact),
    ]
}

/// What an operation returned, without the times (each engine ran it at its own moment).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Err(ErrorKind),
    Unit,
    Attr(Attr),
    Copied(u64, Attr),
    Bool(bool),
}

fn timeless(mut a: Attr) -> Attr {
    let zero = Timestamp::default();
    a.atime = zero;
    a.mtime = zero;
    a.ctime = zero;
    a
}

fn out<T>(r: tidefs_meta::Result<T>, f: impl FnOnce(T) -> Out) -> Out {
    match r {
        Ok(v) => f(v),
        Err(e) => Out::Err(e.kind()),
    }
}

fn name(n: u8) -> Vec<u8> {
    format!("n{n}").into_bytes()
}

/// One engine's volume and what the sequence made on it so far.
struct Run {
    m: Arc<dyn Volume>,
    /// Slices whose last reference went, as the deleter was told.
    freed: Arc<std::sync::Mutex<Vec<(u64, u32)>>>,
    dirs: Vec<Ino>,
    files: Vec<Ino>,
    _guard: Option<tempfile::TempDir>,
}

impl Run {
    async fn new(url: &str, trash: bool, guard: Option<tempfile::TempDir>) -> Self {
        let m = tidefs_meta::open(url).await.expect("open");
        let mut f = testkit::test_format();
        f.trash_days = u32::from(trash);
        m.init(&f, false).await.expect("format");
        m.load().await.expect("load");
        let freed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = freed.clone();
        m.set_slice_deleter(Arc::new(move |id, size| {
            if let Ok(mut v) = seen.lock() {
                v.push((id, size));
            }
            Box::pin(async { Ok(()) })
        }));
        Self {
            m,
            freed,
            dirs: vec![ROOT_INODE],
            files: Vec::new(),
            _guard: guard,
        }
    }

    fn dir(&self, i: usize) -> Ino {
        self.dirs[i % self.dirs.len()]
    }

    fn file(&self, i: usize) -> Option<Ino> {
        (!self.files.is_empty()).then(|| self.files[i % self.files.len()])
    }

    async fn apply(&mut self, op: &Op) -> Out {
        let ctx = Ctx::root();
        let m = self.m.clone();
        match *op {
            Op::Mkdir(p, n) => {
                let r = m
                    .mknod(&ctx, self.dir(p), &name(n), FileType::Dir, 0o755, 0, 0, b"")
                    .await;
                if let Ok(a) = &r {
                    self.dirs.push(a.ino);
                }
                out(r, |a| Out::Attr(timeless(a)))
            }
            Op::Create(p, n) => {
                let r = m
                    .mknod(
                        &ctx,
                        self.dir(p),
                        &name(n),
                        FileType::File,
                        0o644,
                        0,
                        0,
                        b"",
                    )
                    .await;
                if let Ok(a) = &r {
                    self.files.push(a.ino);
                }
                out(r, |a| Out::Attr(timeless(a)))
            }
            Op::Symlink(p, n) => {
                let r = m
                    .mknod(
                        &ctx,
                        self.dir(p),
                        &name(n),
                        FileType::Symlink,
                        0,
                        0,
                        0,
                        b"target",
                    )
                    .await;
                out(r, |a| Out::Attr(timeless(a)))
            }
            Op::Link(f, p, n) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => out(m.link(&ctx, ino, self.dir(p), &name(n)).await, |a| {
                    Out::Attr(timeless(a))
                }),
            },
            Op::Unlink(p, n) => out(m.unlink(&ctx, self.dir(p), &name(n)).await, |_| Out::Unit),
            Op::Rmdir(p, n) => out(m.rmdir(&ctx, self.dir(p), &name(n)).await, |_| Out::Unit),
            Op::Rename(p, a, q, b, f) => {
                let flags = RenameFlags {
                    noreplace: f == 1,
                    exchange: f == 2,
                };
                let r = m
                    .rename(&ctx, self.dir(p), &name(a), self.dir(q), &name(b), flags)
                    .await;
                out(r, |_| Out::Unit)
            }
            Op::Write(f, indx, off, len) => {
                let Some(ino) = self.file(f) else {
                    return Out::Unit;
                };
                let id = m.new_slice_id().await.expect("slice id");
                let len = u32::from(len).max(1);
                let s = Slice {
                    pos: u32::from(off) * 997 % (CHUNK_SIZE as u32 - len),
                    id,
                    size: len,
                    off: 0,
                    len,
                };
                let sums = vec![indx; 4];
                let r = m
                    .write_slice(ino, u32::from(indx), s, Timestamp::now(), &sums)
                    .await;
                out(r, |_| Out::Unit)
            }
            Op::Truncate(f, len) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => out(m.truncate(&ctx, ino, u64::from(len)).await, |a| {
                    Out::Attr(timeless(a))
                }),
            },
            Op::Punch(f, off, len) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => {
                    let mode = FallocMode {
                        keep_size: true,
                        punch_hole: true,
                        zero_range: false,
                    };
                    let r = m
                        .fallocate(&ctx, ino, mode, u64::from(off), u64::from(len))
                        .await;
                    out(r, |a| Out::Attr(timeless(a)))
                }
            },
            Op::Copy(s, d, a, b, l) => match (self.file(s), self.file(d)) {
                (Some(src), Some(dst)) => {
                    let scale = |x: u16| u64::from(x) * 3001;
                    let r = m.copy_range(src, scale(a), dst, scale(b), scale(l)).await;
                    out(r, |(n, a)| Out::Copied(n, timeless(a)))
                }
                _ => Out::Unit,
            },
            Op::Chmod(f, mode) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => {
                    let set = SetAttr {
                        mode: Some(mode),
                        ..SetAttr::default()
                    };
                    out(m.setattr(&ctx, ino, &set).await, |a| Out::Attr(timeless(a)))
                }
            },
            Op::SetXattr(f, n, v, create) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => {
                    let flags = XattrFlags {
                        create,
                        replace: false,
                    };
                    let key = format!("user.k{n}");
                    let r = m.setxattr(&ctx, ino, key.as_bytes(), &[v], flags).await;
                    out(r, |_| Out::Unit)
                }
            },
            Op::RemoveXattr(f, n) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => {
                    let key = format!("user.k{n}");
                    out(m.removexattr(&ctx, ino, key.as_bytes()).await, |_| {
                        Out::Unit
                    })
                }
            },
            Op::Open(f) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => out(m.open(&ctx, ino).await, |a| Out::Attr(timeless(a))),
            },
            Op::Close(f) => match self.file(f) {
                None => Out::Unit,
                Some(ino) => out(m.close(ino).await, |_| Out::Unit),
            },
            Op::Compact(f) => {
                let Some(ino) = self.file(f) else {
                    return Out::Unit;
                };
                let old = match m.read_chunk(ino, 0).await {
                    Ok(old) if old.len() > 1 => old,
                    Ok(_) => return Out::Unit,
                    Err(e) => return Out::Err(e.kind()),
                };
                // the first two records as one new record of the same bytes is beyond this
                // test: a zero record over their span stands for "a new slice" here
                let end = old[..2].iter().map(|s| s.pos + s.len).max().unwrap_or(0);
                let start = old[..2].iter().map(|s| s.pos).min().unwrap_or(0);
                let new = [Slice::zeros(start, end - start)];
                out(
                    m.compact_chunk(ino, 0, &old[..2], &new, &[]).await,
                    Out::Bool,
                )
            }
        }
    }

    /// The whole tree from the root, without times: every entry with its attributes, and per
    /// inode its symlink target, extended attributes and chunk records.
    async fn tree(&self) -> BTreeMap<String, String> {
        let ctx = Ctx::root();
        let mut out = BTreeMap::new();
        let mut todo = vec![(ROOT_INODE, String::new())];
        while let Some((dir, path)) = todo.pop() {
            let mut after = 0;
            loop {
                let page = self
                    .m
                    .readdir(&ctx, dir, after, 3, true)
                    .await
                    .expect("readdir");
                let Some(last) = page.last() else { break };
                after = last.cursor;
                for e in page {
                    let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                    let a = timeless(e.attr.clone().expect("plus"));
                    let mut what = format!("{a:?}");
                    match a.typ {
                        FileType::Dir => todo.push((a.ino, p.clone())),
                        FileType::Symlink => {
                            let t = self.m.readlink(a.ino).await.expect("readlink");
                            what.push_str(&format!(" -> {t:?}"));
                        }
                        _ => {
                            for indx in 0..3 {
                                let c = self.m.read_chunk(a.ino, indx).await.expect("chunk");
                                what.push_str(&format!(" c{indx}={c:?}"));
                            }
                        }
                    }
                    let x = self.m.listxattr(a.ino).await.expect("listxattr");
                    let mut x: Vec<_> = x.into_iter().collect();
                    x.sort();
                    what.push_str(&format!(" x={x:?}"));
                    out.insert(p, what);
                }
            }
        }
        let fs = self.m.statfs().await.expect("statfs");
        out.insert("#statfs".into(), format!("{fs:?}"));
        // deletions run in the background: wait for them (no session to close)
        self.m.close_session().await.expect("drain");
        let mut freed = self.freed.lock().map(|v| v.clone()).unwrap_or_default();
        freed.sort_unstable();
        out.insert("#freed".into(), format!("{freed:?}"));
        let left = self.m.leftovers().await.expect("leftovers");
        out.insert("#leftovers".into(), format!("{left:?}"));
        out
    }
}

/// Run `ops` through the engines of `a` and `b`; panics at the first difference.
async fn compare(a: &mut Run, b: &mut Run, ops: &[Op]) {
    for (i, op) in ops.iter().enumerate() {
        let ra = a.apply(op).await;
        let rb = b.apply(op).await;
        assert_eq!(
            ra,
            rb,
            "step {i}: {op:?} ({} vs {})",
            a.m.engine(),
            b.m.engine()
        );
    }
    assert_eq!(a.tree().await, b.tree().await, "final trees differ");
    for r in [&*a, &*b] {
        let problems = r.m.check(false).await.expect("check");
        assert!(problems.is_empty(), "{}: {problems:?}", r.m.engine());
    }
}

fn sqlite() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite3://{}/meta.db", dir.path().display());
    (url, dir)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "m{}_{}_",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn run_pair(other: impl Fn() -> String, ops: Vec<Op>, trash: bool) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (url, dir) = sqlite();
        let mut a = Run::new(&url, trash, Some(dir)).await;
        let other = other();
        let mut b = Run::new(&other, trash, None).await;
        compare(&mut a, &mut b, &ops).await;
        if !other.starts_with("memkv") {
            b.m.destroy().await.expect("destroy");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_and_memkv_agree(ops in prop::collection::vec(op(), 1..60), trash in any::<bool>()) {
        run_pair(|| format!("memkv://{}", unique()), ops, trash);
    }
}

#[cfg(tidefs_test_mysql)]
proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_and_mariadb_agree(ops in prop::collection::vec(op(), 1..40), trash in any::<bool>()) {
        let base = std::env::var("TIDEFS_TEST_MYSQL").expect("TIDEFS_TEST_MYSQL");
        let sep = if base.contains('?') { '&' } else { '?' };
        run_pair(|| format!("{base}{sep}table_prefix={}", unique()), ops, trash);
    }
}

#[cfg(tidefs_test_postgres)]
proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_and_postgres_agree(ops in prop::collection::vec(op(), 1..40), trash in any::<bool>()) {
        let base = std::env::var("TIDEFS_TEST_POSTGRES").expect("TIDEFS_TEST_POSTGRES");
        let sep = if base.contains('?') { '&' } else { '?' };
        run_pair(|| format!("{base}{sep}table_prefix={}", unique()), ops, trash);
    }
}
