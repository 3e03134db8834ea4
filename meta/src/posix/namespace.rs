//! Names and directories: lookup, create, link, unlink, rmdir, rename, readdir.

use super::delete::Removed;
use super::retry::txn;
use super::rules::{
    check_name, check_rename, check_target, lock_poisoned, new_attr, new_dir_attr,
    new_mode_and_gid, trash_hour,
};
use super::usage::owner_usage;
use super::{Core, W};
use crate::engine::{Engine, EntryIn, Lookup, Mode, Txn};
use crate::error::{Error, ErrorKind, Result};
use crate::perm::{self, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::types::*;
use std::ops::Bound;
use std::sync::Arc;

/// What `mknod` makes.
pub(crate) struct NewNode<'a> {
    pub typ: FileType,
    pub mode: u16,
    pub umask: u16,
    pub rdev: u32,
    /// Target of a symlink.
    pub target: &'a [u8],
}

/// Whether `name` in `parent` is `.`, `..` or the trash at the root: names answered from
/// the directory itself rather than its entries.
fn special(parent: Ino, name: &[u8]) -> bool {
    name == b"." || name == b".." || (parent == ROOT_INODE && name == TRASH_NAME.as_bytes())
}

/// After an attempt that may have been applied: inode `ino`, which this operation created as
/// `name` in `parent`, when the entry is there and names it.
async fn created_before<T: Txn>(
    tx: &mut W<T>,
    parent: Ino,
    name: &[u8],
    ino: Ino,
) -> Result<Option<Attr>> {
    match tx.entry(parent, name).await? {
        Some((_, found)) if found == ino => tx.node(ino).await,
        _ => Ok(None),
    }
}

/// The error for a name that `entry_in` did not find: the directory's, the permission's, or
/// a missing entry.
async fn missing_entry<T: Txn>(tx: &mut W<T>, ctx: &Ctx, parent: Ino, name: &[u8]) -> Error {
    let p = match tx.must_dir(parent).await {
        Ok(p) => p,
        Err(e) => return e,
    };
    if let Err(e) = perm::access(ctx, &p, MAY_WRITE | MAY_EXEC) {
        return e;
    }
    match tx.entry(parent, name).await {
        Ok(Some((_, ino))) => Error::not_found(format!("entry names missing inode {ino}")),
        Ok(None) => Error::not_found("no such entry"),
        Err(e) => e,
    }
}

impl<E: Engine> Core<E> {
    pub(crate) async fn getattr(&self, ino: Ino) -> Result<Attr> {
        txn!(self, "getattr", Mode::Latest, |tx| {
            tx.must_node(ino).await?
        })
    }

    pub(crate) async fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        txn!(self, "lookup", Mode::Latest, |tx| {
            if !ctx.check_permission && !special(parent, name) {
                // the kernel checked the search permission: the common case in one read
                match tx.lookup(parent, name).await? {
                    Lookup::Found(a) => return Ok(a),
                    Lookup::Missing => return Err(Error::not_found("no such entry")),
                    Lookup::NoParent => {
                        return Err(Error::not_found(format!("inode {parent} does not exist")))
                    }
                    Lookup::NotDir => {
                        return Err(Error::not_dir(format!("inode {parent} is not a directory")))
                    }
                    Lookup::Dangling(ino) => {
                        return Err(Error::not_found(format!("entry names missing inode {ino}")))
                    }
                }
            }
            let p = tx.must_dir(parent).await?;
            perm::access(ctx, &p, MAY_EXEC)?;
            if name == b"." {
                return Ok(p);
            }
            if name == b".." {
                let up = if parent == ROOT_INODE {
                    ROOT_INODE
                } else {
                    p.parent
                };
                return tx.must_node(up).await;
            }
            if parent == ROOT_INODE && name == TRASH_NAME.as_bytes() {
                if let Some(a) = tx.node(TRASH_INODE).await? {
                    return Ok(a);
                }
            }
            let Some((_, ino)) = tx.entry(parent, name).await? else {
                return Err(Error::not_found("no such entry"));
            };
            tx.node(ino)
                .await?
                .ok_or_else(|| Error::not_found(format!("entry names missing inode {ino}")))?
        })
    }

    pub(crate) async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        txn!(self, "readlink", Mode::Latest, |tx| {
            match tx.symlink(ino).await? {
                Some(t) => t,
                None => {
                    let a = tx.must_node(ino).await?;
                    return Err(if a.typ == FileType::Symlink {
                        Error::corrupt(format!("symlink {ino} has no target"))
                    } else {
                        Error::invalid("not a symlink")
                    });
                }
            }
        })
    }

    pub(crate) async fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new: NewNode<'_>,
    ) -> Result<Attr> {
        self.writable()?;
        check_name(name)?;
        if name == b"." || name == b".." {
            return Err(Error::exists("entry exists"));
        }
        let typ = new.typ;
        if typ == FileType::Symlink {
            check_target(new.target)?;
        }
        let fmt = self.format()?;
        let ino = self.next_inode().await?;
        let now = Timestamp::now();
        let plain = new_attr(
            ctx,
            ino,
            parent,
            typ,
            new.mode,
            new.umask,
            new.rdev,
            new.target.len(),
            now,
        );
        let entry = DirStat::of_entry(typ, 0);
        if self.features.one_step
            && typ != FileType::Symlink
            && fmt.inodes == 0
            && !self.has_dir_quotas()
            && !self.user_group_on()
            && (!ctx.check_permission || ctx.uid == 0)
            && !special(parent, name)
        {
            // The common case in one step; the engine does nothing when any rule needs a
            // closer look, and the transaction below then decides.
            let made = txn!(self, "mknod", Mode::Single, |tx, again| {
                if again && created_before(tx, parent, name, ino).await?.is_some() {
                    return Ok(true);
                }
                let made = tx.create_fast(&plain, name).await?;
                if made {
                    tx.inodes += 1;
                    tx.space += align4k(0);
                    tx.used(parent, entry);
                }
                made
            })?;
            if made {
                return Ok(plain);
            }
        }
        txn!(self, "mknod", Mode::Write, lock = parent, |tx, again| {
            if again {
                if let Some(made) = created_before(tx, parent, name, ino).await? {
                    return Ok(made);
                }
            }
            let mut p = tx.must_dir(parent).await?;
            if p.nlink == 0 {
                return Err(Error::not_found("parent directory was removed"));
            }
            if parent == TRASH_INODE || p.parent == TRASH_INODE {
                return Err(Error::not_permitted("cannot create entries in the trash"));
            }
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            if parent == ROOT_INODE && name == TRASH_NAME.as_bytes() {
                return Err(Error::exists("the trash directory exists"));
            }
            if fmt.inodes > 0 {
                let used = tx.counter("totalInodes").await? + self.pending_stats().1 + tx.inodes;
                if used as u64 >= fmt.inodes {
                    return Err(Error::new(
                        ErrorKind::NoSpace,
                        "inode limit of the volume reached",
                    ));
                }
            }
            self.charge(tx, parent, entry).await?;
            let (mode, gid) = new_mode_and_gid(ctx, &p, typ, plain.mode);
            let attr = Attr {
                mode,
                gid,
                ..plain.clone()
            };
            let (us, ui) = owner_usage(typ, 0);
            self.charge_owner(tx, attr.uid, attr.gid, us, ui).await?;
            tx.create_node(&attr).await?;
            tx.create_entry(parent, name, typ, ino).await?;
            if typ == FileType::Symlink {
                tx.create_symlink(ino, new.target).await?;
            }
            if typ == FileType::Dir {
                tx.create_dir_stat(ino).await?;
                self.note_dir_parent(ino, Some(parent));
            }
            // a new subdirectory changes the link count: always written
            let keep = typ != FileType::Dir && self.keep_dir_times(&p, now);
            if typ == FileType::Dir {
                p.nlink += 1;
            }
            self.entry_added(tx, &mut p, name, now, keep).await?;
            tx.inodes += 1;
            tx.space += align4k(0);
            attr
        })
    }

    /// Record that `name` was added to directory `p` at `now`: set its times, or, when `keep`
    /// (they changed moments ago), leave its record unwritten and guard against its removal.
    async fn entry_added(
        &self,
        tx: &mut W<E::Txn<'_>>,
        p: &mut Attr,
        name: &[u8],
        now: Timestamp,
        keep: bool,
    ) -> Result<()> {
        if keep {
            return tx.guard_entry(p.ino, name).await;
        }
        p.mtime = now;
        p.ctime = now;
        tx.update_node(p).await
    }

    pub(crate) async fn link(
        &self,
        ctx: &Ctx,
        ino: Ino,
        new_parent: Ino,
        new_name: &[u8],
    ) -> Result<Attr> {
        self.writable()?;
        check_name(new_name)?;
        let now = Timestamp::now();
        txn!(self, "link", Mode::Write, lock = new_parent, |tx, again| {
            let mut p = tx.must_dir(new_parent).await?;
            if p.nlink == 0 {
                return Err(Error::not_found("parent directory was removed"));
            }
            if new_parent >= TRASH_INODE {
                return Err(Error::not_permitted("cannot link into the trash"));
            }
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            let mut a = tx.must_node(ino).await?;
            if a.typ == FileType::Dir {
                return Err(Error::not_permitted(
                    "hard links to directories are not allowed",
                ));
            }
            if a.nlink == 0 {
                return Err(Error::not_found("the file was removed"));
            }
            if let Some((_, found)) = tx.entry(new_parent, new_name).await? {
                if again && found == ino {
                    // an attempt that may have been applied made this link
                    return Ok(a);
                }
                return Err(Error::exists("entry exists"));
            }
            if a.nlink == u32::MAX {
                return Err(Error::new(ErrorKind::TooManyLinks, "too many links"));
            }
            self.charge(tx, new_parent, DirStat::of_entry(a.typ, a.length))
                .await?;
            tx.create_entry(new_parent, new_name, a.typ, ino).await?;
            // a hard-linked inode has parent 0 (JuiceFS's layout)
            if a.parent != 0 {
                tx.link_parent(ino, a.parent, 1).await?;
            }
            tx.link_parent(ino, new_parent, 1).await?;
            a.nlink += 1;
            a.parent = 0;
            a.ctime = now;
            tx.update_node(&a).await?;
            let keep = self.keep_dir_times(&p, now);
            self.entry_added(tx, &mut p, new_name, now, keep).await?;
            a
        })
    }

    pub(crate) async fn unlink(
        self: &Arc<Self>,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
    ) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        let now = Timestamp::now();
        let mut found = false;
        let removed = txn!(self, "unlink", Mode::Write, lock = parent, |tx, again| {
            let Some(EntryIn { dir: mut p, node }) = tx.entry_in(parent, name).await? else {
                if again && found {
                    // gone since an attempt that may have been applied
                    return Ok(Removed::Kept);
                }
                return Err(missing_entry(tx, ctx, parent, name).await);
            };
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            if node.typ == FileType::Dir {
                return Err(Error::is_dir("is a directory"));
            }
            perm::sticky(ctx, &p, &node)?;
            found = true;
            if !self.keep_dir_times(&p, now) {
                p.mtime = now;
                p.ctime = now;
                tx.update_node(&p).await?;
            }
            self.drop_link(tx, node, parent, name, now).await?
        })?;
        self.after_remove(removed).await;
        Ok(())
    }

    pub(crate) async fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        if name == b"." {
            return Err(Error::invalid("cannot remove '.'"));
        }
        if name == b".." {
            return Err(Error::not_empty("cannot remove '..'"));
        }
        let now = Timestamp::now();
        let mut found = false;
        txn!(self, "rmdir", Mode::Write, lock = parent, |tx, again| {
            let Some(EntryIn { dir: mut p, node }) = tx.entry_in(parent, name).await? else {
                if again && found {
                    return Ok(());
                }
                return Err(missing_entry(tx, ctx, parent, name).await);
            };
            perm::access(ctx, &p, MAY_WRITE | MAY_EXEC)?;
            if node.typ != FileType::Dir {
                return Err(Error::not_dir("not a directory"));
            }
            perm::sticky(ctx, &p, &node)?;
            if !tx.dir_is_empty(node.ino).await? {
                return Err(Error::not_empty("directory not empty"));
            }
            found = true;
            tx.delete_entry(parent, name).await?;
            if parent < TRASH_INODE {
                tx.used(parent, -DirStat::of_entry(FileType::Dir, 0));
            }
            self.note_dir_parent(node.ino, None);
            p.nlink = p.nlink.saturating_sub(1);
            p.mtime = now;
            p.ctime = now;
            tx.update_node(&p).await?;
            let mut none = Vec::new();
            self.free_inode(tx, &node, now, false, &mut none).await?;
        })
    }

    pub(crate) async fn rename(
        self: &Arc<Self>,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        self.writable()?;
        check_rename(name, new_name, flags)?;
        let now = Timestamp::now();
        let mut moved: Option<Ino> = None;
        // one local lock (the lower-numbered parent) keeps two renames of this client from
        // deadlocking on two stripes
        let lock = parent.min(new_parent);
        // what moving each side takes out of one quota and into another, read beforehand
        let sizes = if parent != new_parent && self.has_dir_quotas() {
            let mut sizes = vec![self.moved_size(parent, name).await?];
            if flags.exchange {
                sizes.push(self.moved_size(new_parent, new_name).await?);
            }
            sizes
        } else {
            Vec::new()
        };
        let removed = txn!(self, "rename", Mode::Write, lock = lock, |tx, again| {
            // An exchange needs its target to exist: it is read on its own below, never from
            // a combined read whose snapshot may predate the target.
            let (src, target) = if flags.exchange {
                (tx.entry_in(parent, name).await?, None)
            } else {
                tx.rename_pair(parent, name, new_parent, new_name).await?
            };
            let mut dst_attr = None;
            let (mut sp, src, dst) = match src {
                Some(EntryIn { dir, node }) => {
                    let dst = target.map(|t| {
                        t.map(|(typ, ino, a)| {
                            dst_attr = a;
                            (typ, ino)
                        })
                    });
                    (dir, Some(node), dst)
                }
                None => (tx.must_dir(parent).await?, None, None),
            };
            let mut dp = if new_parent == parent {
                sp.clone()
            } else {
                tx.must_dir(new_parent).await?
            };
            perm::access(ctx, &sp, MAY_WRITE | MAY_EXEC)?;
            perm::access(ctx, &dp, MAY_WRITE | MAY_EXEC)?;
            if dp.parent == TRASH_INODE || new_parent == TRASH_INODE {
                return Err(Error::not_permitted("cannot move entries into the trash"));
            }
            let Some(mut sattr) = src else {
                if let (true, Some(m)) = (again, moved) {
                    // an attempt that may have been applied moved it already
                    if matches!(tx.entry(new_parent, new_name).await?, Some((_, i)) if i == m) {
                        return Ok(Removed::Kept);
                    }
                }
                return Err(Error::not_found("no such entry"));
            };
            let (sino, styp) = (sattr.ino, sattr.typ);
            moved = Some(sino);
            perm::sticky(ctx, &sp, &sattr)?;
            let dst = match dst {
                Some(d) => d,
                None => tx.entry(new_parent, new_name).await?,
            };
            if styp == FileType::Dir
                && new_parent != parent
                && tx.is_below(sino, new_parent).await?
            {
                return Err(Error::invalid("cannot move a directory into itself"));
            }
            let mut removed = Removed::Kept;
            if flags.exchange {
                let Some((dtyp, dino)) = dst else {
                    return Err(Error::not_found("exchange target does not exist"));
                };
                if dino == sino {
                    return Ok(Removed::Kept);
                }
                let mut dattr = tx.must_node(dino).await?;
                perm::sticky(ctx, &dp, &dattr)?;
                if dtyp == FileType::Dir
                    && new_parent != parent
                    && tx.is_below(dino, parent).await?
                {
                    return Err(Error::invalid("cannot move a directory into itself"));
                }
                tx.replace_entry(parent, name, dtyp, dino).await?;
                tx.replace_entry(new_parent, new_name, styp, sino).await?;
                if new_parent != parent {
                    if styp == FileType::Dir && dtyp != FileType::Dir {
                        sp.nlink -= 1;
                        dp.nlink += 1;
                    } else if styp != FileType::Dir && dtyp == FileType::Dir {
                        sp.nlink += 1;
                        dp.nlink -= 1;
                    }
                    if sattr.parent == 0 {
                        tx.link_parent(sino, parent, -1).await?;
                        tx.link_parent(sino, new_parent, 1).await?;
                    }
                    if dattr.parent == 0 {
                        tx.link_parent(dino, new_parent, -1).await?;
                        tx.link_parent(dino, parent, 1).await?;
                    }
                }
                if sattr.parent != 0 {
                    sattr.parent = new_parent;
                }
                if dattr.parent != 0 {
                    dattr.parent = parent;
                }
                if new_parent != parent {
                    self.moved(tx, &sattr, parent, new_parent, &sizes).await?;
                    self.moved(tx, &dattr, new_parent, parent, &sizes).await?;
                }
                dattr.ctime = now;
                tx.update_node(&dattr).await?;
            } else {
                if let Some((dtyp, dino)) = dst {
                    if flags.noreplace {
                        return Err(Error::exists("target exists"));
                    }
                    if dino == sino {
                        // two names of one inode: POSIX says do nothing
                        return Ok(Removed::Kept);
                    }
                    let dattr = match dst_attr.take() {
                        Some(a) => a,
                        None => tx.must_node(dino).await?,
                    };
                    perm::sticky(ctx, &dp, &dattr)?;
                    match (styp == FileType::Dir, dtyp == FileType::Dir) {
                        (true, false) => return Err(Error::not_dir("target is not a directory")),
                        (false, true) => return Err(Error::is_dir("target is a directory")),
                        _ => {}
                    }
                    if dtyp == FileType::Dir {
                        if !tx.dir_is_empty(dino).await? {
                            return Err(Error::not_empty("target directory not empty"));
                        }
                        tx.delete_entry(new_parent, new_name).await?;
                        tx.used(new_parent, -DirStat::of_entry(FileType::Dir, 0));
                        self.note_dir_parent(dino, None);
                        let mut none = Vec::new();
                        self.free_inode(tx, &dattr, now, false, &mut none).await?;
                        dp.nlink -= 1;
                    } else {
                        removed = self.drop_link(tx, dattr, new_parent, new_name, now).await?;
                    }
                }
                tx.move_entry(parent, name, new_parent, new_name, styp, sino)
                    .await?;
                if new_parent != parent {
                    if styp == FileType::Dir {
                        sp.nlink -= 1;
                        dp.nlink += 1;
                    }
                    if sattr.parent == 0 {
                        tx.link_parent(sino, parent, -1).await?;
                        tx.link_parent(sino, new_parent, 1).await?;
                    }
                }
                if sattr.parent != 0 {
                    sattr.parent = new_parent;
                }
                if new_parent != parent {
                    self.moved(tx, &sattr, parent, new_parent, &sizes).await?;
                }
            }
            sattr.ctime = now;
            tx.update_node(&sattr).await?;
            sp.mtime = now;
            sp.ctime = now;
            dp.mtime = now;
            dp.ctime = now;
            if new_parent != parent {
                tx.update_node(&sp).await?;
            }
            // with one parent, `dp` is the same record and carries every link-count change
            tx.update_node(&dp).await?;
            removed
        })?;
        self.after_remove(removed).await;
        Ok(())
    }

    pub(crate) async fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        after: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        let limit = limit.clamp(1, 10_000);
        let known = if after == 0 {
            None
        } else {
            self.cursors
                .lock()
                .map_err(|_| lock_poisoned())?
                .get(ino, after)
        };
        let rows = txn!(self, "readdir", Mode::Read, |tx| {
            let d = tx.must_dir(ino).await?;
            perm::access(ctx, &d, MAY_READ)?;
            let from = match &known {
                Some(name) => Some(name.clone()),
                None if after != 0 => tx.entry_name(ino, after).await?,
                None => None,
            };
            let start = match &from {
                Some(name) => Bound::Excluded(name.as_slice()),
                None => Bound::Unbounded,
            };
            tx.list_entries(ino, start, limit, plus).await?
        })?;
        let mut cursors = self.cursors.lock().map_err(|_| lock_poisoned())?;
        Ok(rows
            .into_iter()
            .map(|l| {
                let cursor = cursors.put(ino, l.id, &l.name);
                DirEntry {
                    name: l.name,
                    ino: l.ino,
                    typ: l.typ,
                    attr: if plus { l.attr } else { None },
                    cursor,
                }
            })
            .collect())
    }

    pub(crate) async fn entries_from(
        &self,
        parent: Ino,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Attr)>> {
        let limit = limit.clamp(1, 10_000);
        let rows = txn!(self, "lookahead", Mode::Read, |tx| {
            tx.list_entries(parent, Bound::Included(from), limit, true)
                .await?
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|l| Some((l.name, l.attr?)))
            .collect())
    }

    /// The trash directory for the hour of `now`, created when missing.
    pub(crate) async fn trash_dir(&self, tx: &mut W<E::Txn<'_>>, now: Timestamp) -> Result<Ino> {
        let name = trash_hour(now)?;
        if let Some((_, ino)) = tx.entry(TRASH_INODE, name.as_bytes()).await? {
            return Ok(ino);
        }
        let mut root = match tx.node(TRASH_INODE).await? {
            Some(a) => a,
            None => {
                let a = new_dir_attr(TRASH_INODE, 0o555, ROOT_INODE, now);
                tx.create_node(&a).await?;
                a
            }
        };
        let n = tx.add_counter("nextTrash", 1).await?;
        let ino = TRASH_INODE + n as u64;
        tx.create_node(&new_dir_attr(ino, 0o555, TRASH_INODE, now))
            .await?;
        tx.create_entry(TRASH_INODE, name.as_bytes(), FileType::Dir, ino)
            .await
            .map_err(|e| match e.kind() {
                // another client made this hour's directory meanwhile: run again to use it
                ErrorKind::Exists => {
                    Error::new(ErrorKind::Conflict, "trash directory made meanwhile")
                }
                _ => e,
            })?;
        // counted like any inode, so purging it later (rmdir) balances the count
        tx.inodes += 1;
        tx.space += align4k(0);
        root.nlink += 1;
        root.mtime = now;
        root.ctime = now;
        tx.update_node(&root).await?;
        Ok(ino)
    }

    /// What moving entry `name` of `dir` moves between quotas, if it is a directory: the
    /// inode and the usage of its tree.
    async fn moved_size(&self, dir: Ino, name: &[u8]) -> Result<Option<(Ino, i64, i64)>> {
        let found = txn!(self, "rename", Mode::Latest, |tx| {
            tx.entry(dir, name).await?
        })?;
        match found {
            Some((FileType::Dir, ino)) => {
                let t = self.summary(ino, 0, 0, false).await?;
                let s = t.summary;
                Ok(Some((ino, s.size as i64, (s.files + s.dirs) as i64)))
            }
            _ => Ok(None),
        }
    }

    /// Record that `a` moved from directory `from` to `to`: its entry in their statistics, and
    /// its usage (its tree's, for a directory, from `sizes`) from the quotas above `from`
    /// alone to those above `to` alone, checking the latter.
    async fn moved(
        &self,
        tx: &mut W<E::Txn<'_>>,
        a: &Attr,
        from: Ino,
        to: Ino,
        sizes: &[Option<(Ino, i64, i64)>],
    ) -> Result<()> {
        let e = DirStat::of_entry(a.typ, a.length);
        let (space, inodes) = sizes
            .iter()
            .flatten()
            .find(|(ino, _, _)| *ino == a.ino)
            .map(|(_, s, i)| (*s, *i))
            .unwrap_or((e.space, e.inodes));
        let from_chain = if from < TRASH_INODE {
            tx.dirs.push((from, -e));
            tx.tree(from, -space, -inodes);
            self.quota_chain(tx, from).await?
        } else {
            Vec::new()
        };
        self.check_quotas(tx, to, space, inodes, &from_chain)
            .await?;
        tx.dirs.push((to, e));
        tx.tree(to, space, inodes);
        if a.typ == FileType::Dir {
            self.note_dir_parent(a.ino, Some(to));
        }
        Ok(())
    }
}
