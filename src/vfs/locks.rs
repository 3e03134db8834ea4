//! File locks through the VFS: the metadata engine decides every request without waiting; a
//! request that may wait (F_SETLKW, flock without LOCK_NB) is retried here until it is granted,
//! its owner gives up, or the mount ends.
//!
//! A waiter gives up with EINTR when the kernel interrupts its request (the waiting process got
//! a signal, e.g. was killed): otherwise a process killed while it waits could never exit, and
//! the locks it holds would block the others for good.
//!
//! A waiter is woken at once by any release in this mount, and otherwise polls the shared lock
//! tables with a pause that grows from 1 ms to 50 ms, so a lock released by another client is
//! picked up within ~50 ms (never the 1 s of a fixed poll), while a long wait costs about 20
//! small transactions per second.

use super::{Error, Result, Vfs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidefs_meta::{ErrorKind, Ino, LockKind, PosixLock};
use tokio::sync::Notify;

const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// Longest chain of waiting owners followed when looking for a deadlock (the kernel's limit for
/// local locks is 10 too).
const MAX_DEADLOCK_DEPTH: u32 = 10;
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// A lock request.
#[derive(Debug, Clone, Copy)]
pub enum LockReq {
    /// BSD lock (`flock`).
    Flock(LockKind),
    /// POSIX byte-range lock (`fcntl`).
    Posix(PosixLock),
}

impl LockReq {
    fn releases(&self) -> bool {
        match self {
            LockReq::Flock(k) => *k == LockKind::Unlock,
            LockReq::Posix(l) => l.kind == LockKind::Unlock,
        }
    }
}

/// A lock request waiting in this mount.
pub(crate) struct Waiter {
    /// Set when the owner releases the file: the wait gives up.
    cancelled: Arc<AtomicBool>,
    /// What it waits for, when a POSIX lock (for finding deadlocks).
    posix: Option<PosixLock>,
}

impl Vfs {
    async fn try_lock(&self, ino: Ino, owner: u64, req: LockReq) -> Result<()> {
        match req {
            LockReq::Flock(kind) => self.meta.flock(ino, owner, kind).await?,
            LockReq::Posix(lock) => self.meta.setlk(ino, owner, lock).await?,
        }
        Ok(())
    }

    /// Take, change or release a lock of `owner` on `ino`; with `wait`, wait while another
    /// owner holds a conflicting one (EAGAIN otherwise) or until `interrupt` is notified
    /// (EINTR; a notification given before the wait began counts).
    pub async fn lock(
        &self,
        ino: Ino,
        owner: u64,
        req: LockReq,
        wait: bool,
        interrupt: Option<Arc<Notify>>,
    ) -> Result<()> {
        if req.releases() {
            // the owner gives up whatever it was waiting for on this file
            if let Some(w) = self.lock_waiters.lock().remove(&(ino, owner)) {
                w.cancelled.store(true, Ordering::Relaxed);
            }
            let res = self.try_lock(ino, owner, req).await;
            self.lock_released.notify_waiters();
            return res;
        }
        if !wait {
            return self.try_lock(ino, owner, req).await;
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let posix = match req {
            LockReq::Posix(lock) => Some(lock),
            LockReq::Flock(_) => None,
        };
        self.lock_waiters.lock().insert(
            (ino, owner),
            Waiter {
                cancelled: Arc::clone(&cancelled),
                posix,
            },
        );
        let mut pause = FIRST_PAUSE;
        let mut checked = false;
        let res = loop {
            // registered before the attempt, so a release between the two is not missed
            let released = self.lock_released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.try_lock(ino, owner, req).await {
                Err(e) if e.meta_kind() == Some(ErrorKind::WouldBlock) => {}
                other => break other,
            }
            // a POSIX lock about to wait: it must not close a cycle of owners of this mount
            // waiting for each other (as the kernel answers local locks: EDEADLK)
            if let (Some(lock), false) = (posix, checked) {
                checked = true;
                if self.closes_a_cycle(owner, ino, lock).await {
                    break Err(Error::posix(
                        ErrorKind::Deadlock,
                        "waiting for this lock would deadlock: its holder waits for a lock of the caller",
                    ));
                }
            }
            if cancelled.load(Ordering::Relaxed) {
                break Err(Error::posix(
                    ErrorKind::WouldBlock,
                    "the lock owner released the file while waiting",
                ));
            }
            let interrupted = async {
                match &interrupt {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut released => {}
                _ = tokio::time::sleep(pause) => {}
                _ = interrupted => {
                    break Err(Error::posix(
                        ErrorKind::Interrupted,
                        "interrupted by a signal while waiting for the lock",
                    ));
                }
            }
            pause = (pause * 2).min(LONGEST_PAUSE);
        };
        let mut waiters = self.lock_waiters.lock();
        if waiters
            .get(&(ino, owner))
            .is_some_and(|w| Arc::ptr_eq(&w.cancelled, &cancelled))
        {
            waiters.remove(&(ino, owner));
        }
        res
    }

    /// Whether `me`, waiting for `lock` on `ino`, would wait for itself: following "holds a
    /// lock that blocks" from the owners in the way through the owners of this mount that wait
    /// in turn, up to [`MAX_DEADLOCK_DEPTH`] steps. Owners of other mounts are not followed (their
    /// waits are not known here); a lookup that fails finds no deadlock.
    async fn closes_a_cycle(&self, me: u64, ino: Ino, lock: PosixLock) -> bool {
        let mut todo = vec![(ino, me, lock, 0u32)];
        let mut seen = std::collections::HashSet::new();
        while let Some((ino, owner, lock, depth)) = todo.pop() {
            let Ok(blockers) = self.meta.lock_blockers(ino, owner, lock).await else {
                return false;
            };
            for b in blockers {
                if b == me {
                    return true;
                }
                if depth + 1 >= MAX_DEADLOCK_DEPTH || !seen.insert(b) {
                    continue;
                }
                // what owner `b` waits for in this mount, if it waits for a POSIX lock
                let next = self
                    .lock_waiters
                    .lock()
                    .iter()
                    .find_map(|((i, o), w)| w.posix.filter(|_| *o == b).map(|l| (*i, l)));
                if let Some((i, l)) = next {
                    todo.push((i, b, l, depth + 1));
                }
            }
        }
        false
    }

    /// The first conflicting POSIX lock of another owner (F_GETLK).
    pub async fn getlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<Option<PosixLock>> {
        Ok(self.meta.getlk(ino, owner, lock).await?)
    }
}
