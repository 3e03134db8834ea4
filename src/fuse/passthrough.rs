//! Which open files of a read-only mount the kernel reads itself (FUSE passthrough), and the
//! backing files it reads them from.
//!
//! Kernel rules (`fs/fuse/iomode.c`) this keeps: while an inode has a file open through
//! passthrough, every open of it must be through passthrough *with the same backing file* (any
//! other open fails with EIO), and a passthrough open fails while the inode has files open the
//! ordinary way. So an open goes through passthrough when the inode has passthrough opens
//! already (same backing), or when it has no other opens and a flat copy of the file as it is now
//! exists; otherwise it is an ordinary open. The backing file is registered with the kernel at
//! the first passthrough open of an inode and unregistered when its last one is released (the
//! kernel drops its own reference at close, before it sends the release).

use crate::vfs::Vfs;
use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};
use std::collections::HashMap;
use tidefs_meta::{Attr, Ino};

#[derive(Default)]
struct Inode {
    backing: Option<BackingId>,
    through: u32,
    ordinary: u32,
}

/// Open handles of the mount, by how the kernel reads them.
#[derive(Default)]
pub(super) struct Opens {
    inodes: HashMap<Ino, Inode>,
    /// Handle -> (inode, through passthrough).
    handles: HashMap<u64, (Ino, bool)>,
}

impl Opens {
    /// Answer the read-only open `fh` of the file with attributes `a` through passthrough when
    /// the rules allow and a flat copy exists; otherwise the reply is handed back for an
    /// ordinary open (counted as one).
    pub(super) fn open(
        &mut self,
        vfs: &Vfs,
        fh: u64,
        a: &Attr,
        reply: ReplyOpen,
    ) -> Option<ReplyOpen> {
        let node = self.inodes.entry(a.ino).or_default();
        if node.backing.is_none() && node.ordinary == 0 {
            if let Some(f) = vfs.flat_file(a) {
                match reply.open_backing(&f) {
                    Ok(id) => node.backing = Some(id),
                    Err(e) => {
                        tracing::warn!(error = %e, "the kernel refused a passthrough backing file (needs CAP_SYS_ADMIN, and a cache dir that is not on a stacked file system); reads go through this process");
                        vfs.disable_passthrough();
                    }
                }
            }
        }
        if let Some(id) = &node.backing {
            vfs.note_passthrough_open();
            node.through += 1;
            self.handles.insert(fh, (a.ino, true));
            reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), id);
            return None;
        }
        node.ordinary += 1;
        self.handles.insert(fh, (a.ino, false));
        Some(reply)
    }

    /// Handle `fh` was released.
    pub(super) fn release(&mut self, fh: u64) {
        let Some((ino, through)) = self.handles.remove(&fh) else {
            return;
        };
        let Some(node) = self.inodes.get_mut(&ino) else {
            return;
        };
        if through {
            node.through = node.through.saturating_sub(1);
        } else {
            node.ordinary = node.ordinary.saturating_sub(1);
        }
        if node.through == 0 {
            // unregisters the backing file
            node.backing = None;
            if node.ordinary == 0 {
                self.inodes.remove(&ino);
            }
        }
    }
}
