//! `impl fuser::Filesystem` over [`Vfs`].

use super::errno::errno;
use crate::vfs;
use crate::vfs::{LockReq, Vfs, VfsConfig};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType as FT,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner,
    MountOption, Notifier, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tidefs_meta::{
    Attr, Ctx, FallocMode, FileType, Ino, LockKind, PosixLock, SetAttr, StatFs, TimeSet, Timestamp,
    XattrFlags, ROOT_INODE, S_ISGID,
};

/// The FUSE filesystem of one mount.
pub struct TidefsFs {
    inner: Arc<Shared>,
    rt: tokio::runtime::Handle,
}

struct Shared {
    vfs: Arc<Vfs>,
    cfg: VfsConfig,
    /// Inode shown to the kernel as the root (the `--subdir` directory, or the volume root).
    root: Ino,
    /// The kernel checks permissions (`default_permissions`), so the metadata layer need not.
    kernel_checks: bool,
    /// Messages to the kernel outside replies (set once the session exists).
    notifier: Arc<OnceLock<Notifier>>,
    /// Requests that wait (lock waits) and can be interrupted.
    interrupts: parking_lot::Mutex<Interrupts>,
    /// Open handles by how the kernel reads them (read-only mounts with passthrough).
    opens: parking_lot::Mutex<super::passthrough::Opens>,
}

/// How long an interrupt for a request not seen yet is kept: the kernel interrupts only requests
/// a FUSE thread has read, so the request shows up within moments (another thread dispatching
/// it) or was answered already and never will.
const EARLY_INTERRUPT_KEPT: Duration = Duration::from_secs(10);

/// Interruptible requests in flight, by the kernel's request id.
#[derive(Default)]
struct Interrupts {
    waiting: std::collections::HashMap<u64, Arc<tokio::sync::Notify>>,
    /// Interrupts that came before their request was registered, with when.
    early: std::collections::VecDeque<(u64, std::time::Instant)>,
}

impl Interrupts {
    /// Register request `unique` as interruptible: its notify, already notified when its
    /// interrupt came first.
    fn register(&mut self, unique: u64) -> Arc<tokio::sync::Notify> {
        let n = Arc::new(tokio::sync::Notify::new());
        if let Some(i) = self.early.iter().position(|(u, _)| *u == unique) {
            self.early.remove(i);
            n.notify_one();
        }
        self.waiting.insert(unique, n.clone());
        n
    }

    /// The kernel interrupts request `unique`.
    fn interrupt(&mut self, unique: u64) {
        if let Some(n) = self.waiting.get(&unique) {
            n.notify_one();
            return;
        }
        let now = std::time::Instant::now();
        while self
            .early
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > EARLY_INTERRUPT_KEPT)
        {
            self.early.pop_front();
        }
        // interrupts of requests that were answered already are never claimed: bounded
        if self.early.len() >= 4096 {
            self.early.pop_front();
        }
        self.early.push_back((unique, now));
    }
}

/// Mount options for the kernel.
/// (`allow_other` is not among them: it is the session ACL, see `fuser::SessionACL`.)
pub fn mount_options(name: &str, read_only: bool, extra: &[String]) -> Vec<MountOption> {
    let mut v = vec![
        MountOption::FSName(format!("tidefs:{name}")),
        MountOption::Subtype("tidefs".into()),
        MountOption::DefaultPermissions,
    ];
    v.push(if read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    for o in extra {
        match o.as_str() {
            "ro" | "rw" | "default_permissions" | "allow_other" => {}
            "noatime" => v.push(MountOption::NoAtime),
            "nosuid" => v.push(MountOption::NoSuid),
            "nodev" => v.push(MountOption::NoDev),
            "noexec" => v.push(MountOption::NoExec),
            other => v.push(MountOption::CUSTOM(other.to_string())),
        }
    }
    v
}

impl TidefsFs {
    /// The filesystem serving `vfs`, with `root` shown as the mount root.
    pub fn new(vfs: Arc<Vfs>, root: Ino, rt: tokio::runtime::Handle) -> Self {
        let cfg = vfs.config().clone();
        Self {
            inner: Arc::new(Shared {
                vfs,
                cfg,
                root,
                kernel_checks: true,
                notifier: Arc::default(),
                interrupts: Default::default(),
                opens: Default::default(),
            }),
            rt,
        }
    }

    /// Where the mount puts the session's notifier once the session exists: until then (and
    /// if it never does) the file system sends the kernel nothing outside replies.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.inner.notifier.clone()
    }

    /// Serve one request on the calling FUSE thread and answer it: `reply` gets the value `op`
    /// ends with (see [`Answer`]) or its error's errno. Metadata operations finish without
    /// ever yielding (the SQLite engine runs on the caller), so the common request costs no
    /// thread hand-off at all; one that waits (an object read, an upload) blocks only this
    /// thread while the others keep serving. The request is served before the thread reads the
    /// next one, so `op` may borrow the request's arguments.
    fn answer<T, R: Answer<T>>(&self, reply: R, op: impl Future<Output = vfs::Result<T>>) {
        tidefs_chunk::allow_inline_io();
        match self.rt.block_on(op) {
            Ok(v) => reply.answer(v, &self.inner),
            Err(e) => reply.fail(err(&e)),
        }
    }

    /// A lock request; one that may wait runs as a task of its own, so a long wait holds no
    /// FUSE thread.
    fn lock(
        &self,
        unique: u64,
        ino: INodeNo,
        owner: LockOwner,
        req: LockReq,
        wait: bool,
        reply: ReplyEmpty,
    ) {
        let (s, ino) = (self.inner.clone(), self.inner.real(ino));
        if !wait {
            return self.answer(reply, s.vfs.lock(ino, owner.0, req, false, None));
        }
        // registered before this thread lets go of the request, so an interrupt dispatched by
        // another thread finds it (or is kept until it comes)
        let interrupt = s.interrupts.lock().register(unique);
        self.rt.spawn(async move {
            let res = s.vfs.lock(ino, owner.0, req, true, Some(interrupt)).await;
            s.interrupts.lock().waiting.remove(&unique);
            match res {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(err(&e)),
            }
        });
    }
}

fn lock_kind(typ: i32) -> Option<LockKind> {
    match typ {
        libc::F_RDLCK => Some(LockKind::Read),
        libc::F_WRLCK => Some(LockKind::Write),
        libc::F_UNLCK => Some(LockKind::Unlock),
        _ => None,
    }
}

fn lock_type(kind: LockKind) -> i32 {
    match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
        LockKind::Unlock => libc::F_UNLCK,
    }
}

/// A POSIX lock over the whole file.
fn whole_file(kind: LockKind, pid: u32) -> PosixLock {
    PosixLock {
        kind,
        start: 0,
        end: u64::MAX,
        pid,
    }
}

fn err(e: &crate::vfs::Error) -> Errno {
    Errno::from_i32(errno(e))
}

fn ts(t: Timestamp) -> SystemTime {
    t.to_system_time()
}

fn kind(t: FileType) -> FT {
    match t {
        FileType::File => FT::RegularFile,
        FileType::Dir => FT::Directory,
        FileType::Symlink => FT::Symlink,
        FileType::Fifo => FT::NamedPipe,
        FileType::BlockDev => FT::BlockDevice,
        FileType::CharDev => FT::CharDevice,
        FileType::Socket => FT::Socket,
    }
}

/// Supplementary groups of a process, for the set-group-id rules (read only when needed).
fn supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Shared {
    fn real(&self, ino: INodeNo) -> Ino {
        if ino.0 == ROOT_INODE {
            self.root
        } else {
            ino.0
        }
    }

    fn shown(&self, ino: Ino) -> INodeNo {
        if ino == self.root {
            INodeNo(ROOT_INODE)
        } else {
            INodeNo(ino)
        }
    }

    fn ctx(&self, req: &Request) -> Ctx {
        Ctx {
            uid: req.uid(),
            gid: req.gid(),
            gids: Vec::new(),
            pid: req.pid(),
            check_permission: !self.kernel_checks,
        }
    }

    /// The caller of a create with `mode`: with its supplementary groups when the mode asks for
    /// set-group-ID (the rule that drops it needs them).
    fn ctx_for_mode(&self, req: &Request, mode: u32) -> Ctx {
        let mut ctx = self.ctx(req);
        if mode as u16 & S_ISGID != 0 {
            ctx.gids = supplementary_groups(ctx.pid);
        }
        ctx
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        let blocks = if a.typ == FileType::Dir || a.typ == FileType::File {
            a.length.div_ceil(512)
        } else {
            0
        };
        FileAttr {
            ino: self.shown(a.ino),
            size: a.length,
            blocks,
            atime: ts(a.atime),
            mtime: ts(a.mtime),
            ctime: ts(a.ctime),
            crtime: ts(a.ctime),
            kind: kind(a.typ),
            perm: a.mode,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: a.rdev,
            blksize: 4096,
            flags: 0,
        }
    }

    fn entry_ttl(&self, a: &Attr) -> Duration {
        if a.typ == FileType::Dir {
            self.cfg.dir_entry_ttl
        } else {
            self.cfg.entry_ttl
        }
    }
}

/// A reply to the kernel, answered with the value of a request's operation or an errno.
trait Answer<T> {
    fn answer(self, v: T, s: &Shared);
    fn fail(self, e: Errno);
}

macro_rules! answers {
    ($($reply:ty, $t:ty, |$r:ident, $v:ident, $s:ident| $body:expr;)*) => {
        $(
            impl Answer<$t> for $reply {
                fn answer(self, $v: $t, $s: &Shared) {
                    let $r = self;
                    $body
                }
                fn fail(self, e: Errno) {
                    self.error(e)
                }
            }
        )*
    };
}

answers! {
    ReplyEmpty, (), |r, _v, _s| r.ok();
    ReplyEntry, Attr, |r, a, s| r.entry_with_ttls(&s.entry_ttl(&a), &s.cfg.attr_ttl, &s.attr(&a), Generation(0));
    // an answer read a while ago is kept for the rest of its TTL only
    ReplyEntry, (Attr, Duration), |r, a, s| {
        let (a, age) = a;
        r.entry_with_ttls(&s.entry_ttl(&a).saturating_sub(age), &s.cfg.attr_ttl.saturating_sub(age), &s.attr(&a), Generation(0))
    };
    ReplyAttr, Attr, |r, a, s| r.attr(&s.cfg.attr_ttl, &s.attr(&a));
    ReplyData, Vec<u8>, |r, d, _s| r.data(&d);
    ReplyData, bytes::Bytes, |r, d, _s| r.data(&d);
    ReplyWrite, u32, |r, n, _s| r.written(n);
    ReplyOpen, u64, |r, fh, _s| r.opened(FileHandle(fh), FopenFlags::empty());
    ReplyCreate, (u64, Attr), |r, v, s| {
        let (fh, a) = v;
        r.created(&s.entry_ttl(&a), &s.attr(&a), Generation(0), FileHandle(fh), FopenFlags::empty())
    };
    ReplyStatfs, StatFs, |r, st, _s| {
        const BSIZE: u64 = 4096;
        r.statfs(
            st.total_space / BSIZE,
            st.avail_space / BSIZE,
            st.avail_space / BSIZE,
            st.used_inodes + st.avail_inodes,
            st.avail_inodes,
            BSIZE as u32,
            tidefs_meta::MAX_NAME_LEN as u32,
            BSIZE as u32,
        )
    };
    // (bytes, size the caller's buffer has): the size alone when asked 0, ERANGE when larger
    ReplyXattr, (Vec<u8>, u32), |r, v, _s| {
        let (v, size) = v;
        if size == 0 {
            r.size(v.len() as u32);
        } else if v.len() > size as usize {
            r.error(Errno::ERANGE);
        } else {
            r.data(&v);
        }
    };
    ReplyLock, (PosixLock, u64, u64), |r, v, _s| {
        // the conflicting lock, or the range asked for as unlocked
        let (l, start, end) = v;
        match l.kind {
            LockKind::Unlock => r.locked(start, end, libc::F_UNLCK, 0),
            k => r.locked(l.start, l.end, lock_type(k), l.pid),
        }
    };
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(st) => TimeSet::At(Timestamp::from(st)),
    }
}

impl Filesystem for TidefsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_ASYNC_DIO,
            // drop cached pages when getattr shows another client changed mtime or size
            InitFlags::FUSE_AUTO_INVAL_DATA,
            // locks go to the volume, so they exclude across every mount of it
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
            // this daemon drops set-user-id, set-group-id and capabilities of modified files
            // (`Vfs::kill_privs`): the kernel then stops asking for `security.capability`
            // before every write(2) (a round trip per small write otherwise)
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            let _ = config.add_capabilities(flag);
        }
        if self.inner.vfs.passthrough() {
            // stack depth 1: the cache dir must not be on a stacked file system (overlayfs),
            // and this mount can still be the lower layer of one
            let granted = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok();
            if !granted {
                tracing::info!(
                    "the kernel offers no FUSE passthrough; reads go through this process"
                );
                self.inner.vfs.disable_passthrough();
            }
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        let vfs = self.inner.vfs.clone();
        let res = self.rt.block_on(async move { vfs.flush_all().await });
        if let Err(e) = res {
            tracing::error!(error = %e, "flushing buffered writes at unmount failed");
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = &self.inner;
        let (ctx, parent) = (s.ctx(req), s.real(parent));
        self.answer(reply, s.vfs.lookup_aged(&ctx, parent, name.as_bytes()));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = &self.inner;
        self.answer(reply, s.vfs.getattr(s.real(ino)));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        kill_suidgid: bool,
        reply: ReplyAttr,
    ) {
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        let set = SetAttr {
            mode: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
        };
        self.answer(reply, async {
            let mut a = s.vfs.setattr(&ctx, ino, &set, size).await?;
            // a truncate drops capabilities; the kernel marks chowns, and the truncates of
            // callers without CAP_FSETID, to drop set-user-id and set-group-id too
            if size.is_some() || kill_suidgid {
                if let Some(mode) = s.vfs.kill_privs(ino, kill_suidgid).await? {
                    a.mode = mode;
                }
            }
            Ok(a)
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let s = &self.inner;
        self.answer(reply, s.vfs.readlink(s.real(ino)));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let s = &self.inner;
        let Some(typ) =
            FileType::from_mode(mode).or((mode & 0o170000 == 0).then_some(FileType::File))
        else {
            return reply.error(Errno::EINVAL);
        };
        let ctx = s.ctx_for_mode(req, mode);
        let (mode, umask) = ((mode & 0o7777) as u16, (umask & 0o7777) as u16);
        let op = s.vfs.mknod(
            &ctx,
            s.real(parent),
            name.as_bytes(),
            typ,
            mode,
            umask,
            rdev,
        );
        self.answer(reply, op);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let s = &self.inner;
        let (ctx, parent) = (s.ctx(req), s.real(parent));
        let (mode, umask) = ((mode & 0o7777) as u16, (umask & 0o7777) as u16);
        let op = s
            .vfs
            .mknod(&ctx, parent, name.as_bytes(), FileType::Dir, mode, umask, 0);
        self.answer(reply, op);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = &self.inner;
        let (ctx, parent) = (s.ctx(req), s.real(parent));
        self.answer(reply, s.vfs.unlink(&ctx, parent, name.as_bytes()));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = &self.inner;
        let (ctx, parent) = (s.ctx(req), s.real(parent));
        self.answer(reply, s.vfs.rmdir(&ctx, parent, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let s = &self.inner;
        let (ctx, parent) = (s.ctx(req), s.real(parent));
        let (name, target) = (link_name.as_bytes(), target.as_os_str().as_bytes());
        self.answer(reply, s.vfs.symlink(&ctx, parent, name, target));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let s = &self.inner;
        let (ctx, parent, newparent) = (s.ctx(req), s.real(parent), s.real(newparent));
        let f = tidefs_meta::RenameFlags {
            noreplace: flags.contains(RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
        };
        let (name, newname) = (name.as_bytes(), newname.as_bytes());
        self.answer(
            reply,
            s.vfs.rename(&ctx, parent, name, newparent, newname, f),
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let s = &self.inner;
        let (ctx, ino, parent) = (s.ctx(req), s.real(ino), s.real(newparent));
        self.answer(reply, s.vfs.link(&ctx, ino, parent, newname.as_bytes()));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let kernel_ino = ino;
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        // the passthrough set-up below starts flat-copy tasks, so the whole handler runs in
        // the runtime's context, not only the awaited open
        let _rt = self.rt.enter();
        tidefs_chunk::allow_inline_io();
        let (fh, a, keep) = match self.rt.block_on(s.vfs.open(&ctx, ino, write)) {
            Ok(opened) => opened,
            Err(e) => return reply.error(err(&e)),
        };
        if !keep {
            // close-to-open: the file changed since this mount last opened it (another client
            // wrote it), so the size and times the kernel holds are stale too, not only its
            // pages; without this a reader here sees the old size until the attribute TTL runs
            // out (passthrough opens included: the kernel reads their data, not their
            // attributes, itself)
            if let Some(n) = s.notifier.get() {
                if let Err(e) = n.inval_inode(kernel_ino, -1, 0) {
                    tracing::debug!(error = %e, "attribute invalidation at open refused");
                }
            }
        }
        let reply = if !write && s.vfs.passthrough() {
            let Some(reply) = s.opens.lock().open(&s.vfs, fh, &a, reply) else {
                return;
            };
            // read through this process: the reads may make the flat copy
            s.vfs.flat_start(&a);
            reply
        } else {
            reply
        };
        let flags = if keep {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        reply.opened(FileHandle(fh), flags)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let s = &self.inner;
        let (ctx, parent) = (s.ctx_for_mode(req, mode), s.real(parent));
        let (mode, umask) = ((mode & 0o7777) as u16, (umask & 0o7777) as u16);
        self.answer(
            reply,
            s.vfs.create(&ctx, parent, name.as_bytes(), mode, umask),
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.answer(reply, self.inner.vfs.read(fh.0, offset, size));
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // served on this thread before it reads the next request: the write copies straight
        // from the request buffer into the file's block
        let s = &self.inner;
        let ino = s.real(ino);
        let suidgid = wf.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        self.answer(reply, async {
            s.vfs.kill_privs(ino, suidgid).await?;
            s.vfs.write(fh.0, offset, data).await
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        let s = &self.inner;
        let ino = s.real(ino);
        self.answer(reply, async {
            let flushed = s.vfs.flush(fh.0).await;
            // a close drops the POSIX locks its process held on the file
            let unlock = LockReq::Posix(whole_file(LockKind::Unlock, 0));
            let unlocked = s.vfs.lock(ino, lock.0, unlock, false, None).await;
            flushed.and(unlocked)
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let s = &self.inner;
        let ino = s.real(ino);
        self.answer(reply, async {
            // the last close of an open file drops its BSD lock
            let unlocked = match lock {
                Some(owner) => {
                    let unlock = LockReq::Flock(LockKind::Unlock);
                    s.vfs.lock(ino, owner.0, unlock, false, None).await
                }
                None => Ok(()),
            };
            s.opens.lock().release(fh.0);
            s.vfs.release(fh.0).await.and(unlocked)
        });
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let Some(kind) = lock_kind(typ) else {
            return reply.error(Errno::EINVAL);
        };
        let s = &self.inner;
        let want = PosixLock {
            kind,
            start,
            end,
            pid,
        };
        self.answer(reply, async {
            let found = s.vfs.getlk(s.real(ino), lock_owner.0, want).await?;
            Ok((found.unwrap_or(whole_file(LockKind::Unlock, 0)), start, end))
        });
    }

    fn interrupt(&self, _req: &Request, unique: fuser::RequestId) {
        self.inner.interrupts.lock().interrupt(unique.0);
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let Some(kind) = lock_kind(typ) else {
            return reply.error(Errno::EINVAL);
        };
        let lock = LockReq::Posix(PosixLock {
            kind,
            start,
            end,
            pid,
        });
        self.lock(req.unique().0, ino, lock_owner, lock, sleep, reply);
    }

    fn flock(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        typ: i32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let Some(kind) = lock_kind(typ) else {
            return reply.error(Errno::EINVAL);
        };
        let unique = req.unique().0;
        self.lock(unique, ino, lock_owner, LockReq::Flock(kind), sleep, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.answer(reply, self.inner.vfs.fsync(fh.0));
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.inner;
        self.answer(reply, s.vfs.opendir(&s.ctx(req), s.real(ino)));
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        tidefs_chunk::allow_inline_io();
        let list = match self
            .rt
            .block_on(s.vfs.readdir(&ctx, fh.0, ino, offset, 512, false))
        {
            Ok((list, _)) => list,
            Err(e) => return reply.error(err(&e)),
        };
        for e in list {
            let name = OsStr::from_bytes(&e.entry.name);
            if reply.add(s.shown(e.entry.ino), e.offset, kind(e.entry.typ), name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        tidefs_chunk::allow_inline_io();
        let (list, age) = match self
            .rt
            .block_on(s.vfs.readdir(&ctx, fh.0, ino, offset, 256, true))
        {
            Ok(listed) => listed,
            Err(e) => return reply.error(err(&e)),
        };
        for e in list {
            // an entry whose inode vanished meanwhile is skipped, not faked
            let Some(a) = e.entry.attr.as_ref() else {
                continue;
            };
            // entries read a while ago are kept by the kernel for the rest of their TTL
            let ttl = s.entry_ttl(a).min(s.cfg.attr_ttl).saturating_sub(age);
            let name = OsStr::from_bytes(&e.entry.name);
            if reply.add(
                s.shown(e.entry.ino),
                e.offset,
                name,
                &ttl,
                &s.attr(a),
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inner.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // every metadata change is committed when its request is answered
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let s = &self.inner;
        self.answer(reply, s.vfs.statfs(s.real(ino)));
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        let f = XattrFlags {
            create: flags & libc::XATTR_CREATE != 0,
            replace: flags & libc::XATTR_REPLACE != 0,
        };
        self.answer(reply, s.vfs.setxattr(&ctx, ino, name.as_bytes(), value, f));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let s = &self.inner;
        let value = s.vfs.getxattr(s.real(ino), name.as_bytes());
        self.answer(reply, async { Ok((value.await?, size)) });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let s = &self.inner;
        let names = s.vfs.listxattr(s.real(ino));
        self.answer(reply, async { Ok((names.await?, size)) });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        self.answer(reply, s.vfs.removexattr(&ctx, ino, name.as_bytes()));
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        self.answer(reply, s.vfs.access(&ctx, ino, (mask.bits() & 7) as u16));
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let known =
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & !known != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let s = &self.inner;
        let (ctx, ino) = (s.ctx(req), s.real(ino));
        let m = FallocMode {
            keep_size: mode & libc::FALLOC_FL_KEEP_SIZE != 0,
            punch_hole: mode & libc::FALLOC_FL_PUNCH_HOLE != 0,
            zero_range: mode & libc::FALLOC_FL_ZERO_RANGE != 0,
        };
        // the kernel sends no kill flag with these: a caller other than root is taken to
        // lack CAP_FSETID
        let suidgid = req.uid() != 0;
        self.answer(reply, async {
            s.vfs.kill_privs(ino, suidgid).await?;
            s.vfs.fallocate(&ctx, fh.0, m, offset, length).await
        });
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // No ioctls are supported; runtimes probe every file they open (isatty -> TCGETS), so
        // this is answered quietly, as any non-terminal file answers it.
        reply.error(Errno::ENOTTY);
    }

    fn copy_file_range(
        &self,
        req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let s = &self.inner;
        let ino_out = s.real(ino_out);
        let len = len.min(u64::from(u32::MAX) & !0xfff);
        // as for fallocate: no kill flag comes with these
        let suidgid = req.uid() != 0;
        self.answer(reply, async {
            s.vfs.kill_privs(ino_out, suidgid).await?;
            let n = s
                .vfs
                .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
                .await?;
            Ok(n as u32)
        });
    }
}
