//! What removing a name does to its inode, and the freeing of data that follows: the keep /
//! trash / keep-while-open / free decision, inode deletion, the deletion queue of large files,
//! and object deletions after commit.

use super::retry::txn;
use super::rules::trash_name;
use super::{Core, W};
use crate::engine::{Engine, Mode, Txn};
use crate::error::Result;
use crate::types::*;
use std::sync::Arc;

/// Files up to this length have their chunks freed in the transaction that removes them; larger
/// ones are queued, so one unlink never becomes an unbounded transaction.
const INLINE_FREE_MAX: u64 = 16 * CHUNK_SIZE;
/// Chunks freed per transaction when a queued file's data goes.
pub(crate) const FREE_BATCH: usize = 1000;

/// What removing one name did to the inode it named.
pub(crate) enum Removed {
    /// Other names remain, or it moved to the trash.
    Kept,
    /// No names remain but it is open here: freed at the last close.
    Sustained,
    /// Gone. A small file's chunks went in the same transaction and `objects` are to be
    /// deleted; a large one's are `deferred` to transactions of their own (the deletion queue
    /// stands for them meanwhile).
    Freed {
        ino: Ino,
        deferred: bool,
        objects: Vec<(u64, u32)>,
    },
}

impl<E: Engine> Core<E> {
    /// Remove entry `name` of `parent`, naming `attr`, and drop the link it held: the inode is
    /// kept (more links), moved to the trash (the last name of a file, while the volume keeps
    /// a trash), kept while open here, or freed.
    pub(crate) async fn drop_link(
        &self,
        tx: &mut W<E::Txn<'_>>,
        mut attr: Attr,
        parent: Ino,
        name: &[u8],
        now: Timestamp,
    ) -> Result<Removed> {
        tx.delete_entry(parent, name).await?;
        if parent < TRASH_INODE {
            tx.used(parent, -DirStat::of_entry(attr.typ, attr.length));
        }
        attr.ctime = now;
        if attr.parent == 0 {
            // hard-linked: one link fewer in this directory
            tx.link_parent(attr.ino, parent, -1).await?;
        }
        if attr.nlink > 1 {
            attr.nlink -= 1;
            tx.update_node(&attr).await?;
            return Ok(Removed::Kept);
        }
        // trash directories are the only inodes numbered at or above TRASH_INODE
        let in_trash = parent >= TRASH_INODE;
        if self.trash_days() > 0 && attr.typ == FileType::File && !in_trash {
            let dir = self.trash_dir(tx, now).await?;
            let mut tname = trash_name(parent, attr.ino, name, now, false);
            if tx.entry(dir, &tname).await?.is_some() {
                tname = trash_name(parent, attr.ino, name, now, true);
            }
            tx.create_entry(dir, &tname, attr.typ, attr.ino).await?;
            attr.parent = dir;
            tx.update_node(&attr).await?;
            return Ok(Removed::Kept);
        }
        attr.nlink = 0;
        if attr.typ == FileType::File && self.is_open(attr.ino) {
            tx.update_node(&attr).await?;
            tx.sustain(self.sid(), attr.ino).await?;
            if let Ok(mut set) = self.sustained.lock() {
                set.insert(attr.ino);
            }
            return Ok(Removed::Sustained);
        }
        let deferred = attr.typ == FileType::File && attr.length > INLINE_FREE_MAX;
        let mut objects = Vec::new();
        self.free_inode(tx, &attr, now, deferred, &mut objects)
            .await?;
        Ok(Removed::Freed {
            ino: attr.ino,
            deferred,
            objects,
        })
    }

    /// Delete inode `attr`, which has no names left: its records, and a file's data inline
    /// (collecting the slices that lost their last reference in `freed`) or, when `queue`,
    /// through the deletion queue. Counts it gone.
    pub(crate) async fn free_inode(
        &self,
        tx: &mut W<E::Txn<'_>>,
        attr: &Attr,
        now: Timestamp,
        queue: bool,
        freed: &mut Vec<(u64, u32)>,
    ) -> Result<()> {
        tx.delete_inode(attr).await?;
        match attr.typ {
            // conflicts with any create that added an entry unseen by the emptiness check
            FileType::Dir => tx.guard_removal(attr.ino).await?,
            FileType::File => {
                if queue {
                    tx.queue_delfile(attr.ino, attr.length, now.sec).await?;
                } else {
                    loop {
                        let (chunks, more) = tx.take_chunks(attr.ino, 0, FREE_BATCH).await?;
                        for (_, records) in &chunks {
                            tx.unref_all(records, freed).await?;
                        }
                        if !more {
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        let length = if attr.typ == FileType::File {
            attr.length
        } else {
            0
        };
        tx.space -= align4k(length);
        tx.inodes -= 1;
        let (us, ui) = super::usage::owner_usage(attr.typ, length);
        tx.owned(attr.uid, attr.gid, -us, -ui);
        Ok(())
    }

    /// Free the chunks of a deleted file (on the deletion queue), a batch per transaction, and
    /// the objects nobody references any more; the last batch takes it off the queue.
    pub(crate) async fn free_file_data(&self, ino: Ino) -> Result<()> {
        loop {
            let (freed, done) = txn!(self, "free file data", Mode::Write, |tx| {
                let (chunks, more) = tx.take_chunks(ino, 0, FREE_BATCH).await?;
                let mut freed = Vec::new();
                for (_, records) in &chunks {
                    tx.unref_all(records, &mut freed).await?;
                }
                if !more {
                    tx.unqueue_delfile(ino).await?;
                }
                (freed, !more)
            })?;
            self.delete_objects(freed).await;
            if done {
                return Ok(());
            }
        }
    }

    /// Delete the objects of slices that lost their last reference, then their checksums.
    /// A failure leaves them for `gc`; it never fails the caller.
    pub(crate) async fn delete_objects(&self, freed: Vec<(u64, u32)>) {
        if freed.is_empty() {
            return;
        }
        let deleter = self.deleter.read().ok().and_then(|d| d.clone());
        let Some(deleter) = deleter else {
            tracing::warn!(
                count = freed.len(),
                "no slice deleter installed; objects left for gc"
            );
            return;
        };
        let mut gone = Vec::with_capacity(freed.len());
        for (id, size) in freed {
            match deleter(id, size).await {
                Ok(()) => gone.push(id),
                Err(e) => {
                    tracing::warn!(slice = id, error = %e, "deleting objects of a freed slice failed; left for gc")
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        // each on its own: nothing else depends on them, and one statement per slice is all
        // a SQL server is sent
        let dropped = txn!(self, "drop checksums", Mode::Single, |tx| {
            for id in &gone {
                tx.delete_sums(*id).await?;
            }
        });
        if let Err(e) = dropped {
            tracing::debug!(error = %e, "dropping checksums of freed slices failed; gc --delete drops them");
        }
    }

    /// After a removal committed: free what it freed, off the request path. A deletion lost to
    /// a crash leaves orphans for `gc`, never missing data.
    pub(crate) async fn after_remove(self: &Arc<Self>, removed: Removed) {
        let Removed::Freed {
            ino,
            deferred,
            objects,
        } = removed
        else {
            return;
        };
        let me = Arc::clone(self);
        let work = async move {
            me.delete_objects(objects).await;
            if deferred {
                if let Err(e) = me.free_file_data(ino).await {
                    tracing::warn!(ino, error = %e, "freeing file data failed; will retry in cleanup");
                }
            }
        };
        let unqueued = match self.deletions.lock() {
            Ok(mut set) => {
                while set.try_join_next().is_some() {}
                set.spawn(work);
                None
            }
            Err(_) => Some(work),
        };
        if let Some(work) = unqueued {
            work.await;
        }
    }

    /// Wait for the object deletions under way.
    pub(crate) async fn drain_deletions(&self) {
        let mut set = match self.deletions.lock() {
            Ok(mut set) => std::mem::take(&mut *set),
            Err(_) => return,
        };
        while set.join_next().await.is_some() {}
    }
}
