//! POSIX permission rules that the metadata layer enforces itself when the kernel does not.

use crate::error::{Error, Result};
use crate::types::{Attr, Ctx, FileType, S_ISVTX};

/// Read permission.
pub const MAY_READ: u16 = 4;
/// Write permission.
pub const MAY_WRITE: u16 = 2;
/// Execute / search permission.
pub const MAY_EXEC: u16 = 1;

/// Check `mask` (`MAY_*` bits) against the mode bits of `attr` for `ctx`.
pub fn access(ctx: &Ctx, attr: &Attr, mask: u16) -> Result<()> {
    if !ctx.check_permission || mask == 0 {
        return Ok(());
    }
    if ctx.uid == 0 {
        // root may do anything but execute a file that nobody may execute
        if mask & MAY_EXEC != 0 && attr.typ != FileType::Dir && attr.mode & 0o111 == 0 {
            return Err(Error::access("permission denied"));
        }
        return Ok(());
    }
    let bits = if ctx.uid == attr.uid {
        (attr.mode >> 6) & 7
    } else if ctx.in_group(attr.gid) {
        (attr.mode >> 3) & 7
    } else {
        attr.mode & 7
    };
    if bits & mask == mask {
        Ok(())
    } else {
        Err(Error::access("permission denied"))
    }
}

/// The sticky-bit rule: in a sticky directory only the owner of the entry, the owner of the
/// directory or root may remove or rename it. The kernel applies it too; applying it here keeps
/// it true for every caller of the metadata layer.
pub fn sticky(ctx: &Ctx, dir: &Attr, victim: &Attr) -> Result<()> {
    if dir.mode & S_ISVTX != 0 && ctx.uid != 0 && ctx.uid != dir.uid && ctx.uid != victim.uid {
        return Err(Error::not_permitted("sticky directory: not the owner"));
    }
    Ok(())
}
