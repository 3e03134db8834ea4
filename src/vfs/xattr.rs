//! Extended attributes, and the privileges a write drops: set-user-id and set-group-id bits,
//! and the `security.capability` attribute the kernel asks for before every write.

use super::*;

/// The attribute holding a file's capabilities, which the kernel reads before each write.
pub(super) const CAPS_XATTR: &[u8] = b"security.capability";

/// Attributes the kernel or tools interpret but tidefs does not implement are refused as
/// unsupported rather than stored and ignored: POSIX ACLs (not yet), and SELinux labels (a FUSE
/// volume shared by many hosts has no label policy; JuiceFS answers the same). Answering
/// EOPNOTSUPP for `security.selinux` also tells `ls -l` to stop asking for every entry.
/// The bits modifying a file with `mode` clears: set-user-id, and set-group-id when the file is
/// group-executable (without group execute it marks mandatory locking, and stays).
pub(super) fn kill_bits(mode: u16) -> u16 {
    let mut kill = mode & S_ISUID;
    if mode & (S_ISGID | 0o010) == (S_ISGID | 0o010) {
        kill |= S_ISGID;
    }
    kill
}

pub(super) fn check_xattr_namespace(name: &[u8]) -> Result<()> {
    if name.starts_with(b"system.posix_acl_") {
        return Err(Error::posix(
            ErrorKind::Unsupported,
            "POSIX ACLs are not supported",
        ));
    }
    if name == b"security.selinux" {
        return Err(Error::posix(
            ErrorKind::Unsupported,
            "SELinux labels are not supported",
        ));
    }
    Ok(())
}

impl Vfs {
    /// getxattr(2).
    pub async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        check_xattr_namespace(name)?;
        let caps = name == CAPS_XATTR;
        if caps && self.no_caps.as_ref().is_some_and(|c| c.contains_key(&ino)) {
            return Err(Error::posix(ErrorKind::NoAttr, "no such attribute"));
        }
        let res = self.meta.getxattr(ino, name).await;
        if caps {
            if let (Some(c), Err(e)) = (&self.no_caps, &res) {
                if e.kind() == ErrorKind::NoAttr {
                    c.insert(ino, ());
                }
            }
        }
        Ok(res?)
    }

    /// listxattr(2): names, each NUL-terminated.
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for n in self.meta.listxattr(ino).await? {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    /// setxattr(2).
    pub async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()> {
        self.writable()?;
        check_xattr_namespace(name)?;
        let res = self.meta.setxattr(ctx, ino, name, value, flags).await;
        self.lookahead.forget_ino(ino);
        self.forget_caps(ino);
        Ok(res?)
    }

    /// removexattr(2).
    pub async fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_xattr_namespace(name)?;
        let res = self.meta.removexattr(ctx, ino, name).await;
        self.lookahead.forget_ino(ino);
        self.forget_caps(ino);
        Ok(res?)
    }

    /// Drop what is known of `ino`'s capabilities attribute (it was set or removed).
    pub(super) fn forget_caps(&self, ino: Ino) {
        if let Some(c) = &self.no_caps {
            c.invalidate(&ino);
        }
    }

    /// Drop "nothing in the mode to kill" for `ino` (its mode may have changed).
    pub(super) fn forget_plain(&self, ino: Ino) {
        if let Some(c) = &self.plain {
            c.invalidate(&ino);
        }
    }

    /// Take from regular file `ino` what modifying it takes, as the kernel does for local file
    /// systems and leaves to the daemon on a mount that negotiated `FUSE_HANDLE_KILLPRIV_V2`:
    /// its `security.capability` attribute always, and when `suidgid` (the kernel marks the
    /// write, truncate or chown of a caller without `CAP_FSETID`, and every chown) set-user-id,
    /// plus set-group-id when the file is group-executable. Returns the new permission bits
    /// when they changed. What was found is remembered for the attribute TTL (no capabilities
    /// in `no_caps`, which the kernel's own first `getxattr` fills; nothing in the mode to drop
    /// in `plain`, which opens and creates fill), so a stream of writes costs two lookups in
    /// memory each, not the `getxattr` round trip per write(2) the kernel made before.
    pub async fn kill_privs(&self, ino: Ino, suidgid: bool) -> Result<Option<u16>> {
        let known = |c: &Option<moka::sync::Cache<Ino, ()>>| {
            c.as_ref().is_some_and(|c| c.contains_key(&ino))
        };
        let (mode_plain, no_caps) = (known(&self.plain), known(&self.no_caps));
        if mode_plain && no_caps {
            return Ok(None);
        }
        self.writable()?;
        let mut changed = None;
        if !mode_plain {
            let a = self.meta.getattr(ino).await?;
            if a.typ != FileType::File {
                return Ok(None);
            }
            let kill = kill_bits(a.mode);
            if kill != 0 && suidgid {
                let set = SetAttr {
                    mode: Some(a.mode & !kill),
                    ..SetAttr::default()
                };
                let res = self.meta.setattr(&Ctx::root(), ino, &set).await;
                self.lookahead.forget_ino(ino);
                changed = Some(res?.mode);
            }
            self.note_mode(ino, changed.unwrap_or(a.mode));
        }
        if !no_caps {
            match self.getxattr(ino, CAPS_XATTR).await {
                Ok(_) => {
                    let res = self.meta.removexattr(&Ctx::root(), ino, CAPS_XATTR).await;
                    self.lookahead.forget_ino(ino);
                    self.forget_caps(ino);
                    match res {
                        Err(e) if e.kind() != ErrorKind::NoAttr => return Err(e.into()),
                        _ => {}
                    }
                }
                Err(e) if e.meta_kind() == Some(ErrorKind::NoAttr) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Record what regular file `ino`, of permission bits `mode` as just read or set, has in
    /// its mode for a write to drop: nothing (remembered), or set-id bits (forgotten).
    pub(super) fn note_mode(&self, ino: Ino, mode: u16) {
        match (&self.plain, kill_bits(mode)) {
            (Some(c), 0) => c.insert(ino, ()),
            _ => self.forget_plain(ino),
        }
    }
}
