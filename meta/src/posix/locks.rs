//! File locks shared by every client of a volume: BSD locks (one record per inode, session
//! and owner; `ltype` is `'R'` or `'W'`) and POSIX locks (one record per inode, session and
//! owner, whose ranges are packed as big-endian `type u32, pid u32, start u64, end u64`, type
//! 0 = read, 1 = write, `end` inclusive), as JuiceFS stores them in every layout.
//!
//! Every lock operation is one transaction that first reads the inode, so requests on one file
//! from all clients are serialized by the engine. Nothing here waits for a lock: a conflict
//! answers `WouldBlock`, and the caller decides whether and how to wait.

use super::retry::txn;
use super::rules::lock_poisoned;
use super::Core;
use crate::engine::{Engine, Flock, Mode, Plock, Txn};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{Ino, LockKind, PosixLock};
use std::collections::HashSet;
use std::sync::Mutex;

/// `ltype` of a shared BSD lock.
pub const FLOCK_READ: u8 = b'R';
/// `ltype` of an exclusive BSD lock.
pub const FLOCK_WRITE: u8 = b'W';
const REC_READ: u32 = 0;
const REC_WRITE: u32 = 1;
const REC_LEN: usize = 24;

/// One range of one owner's POSIX locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    /// 0 read, 1 write.
    pub kind: u32,
    /// Process holding it.
    pub pid: u32,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

pub(crate) fn decode(buf: &[u8]) -> Result<Vec<Rec>> {
    if !buf.len().is_multiple_of(REC_LEN) {
        return Err(Error::corrupt(format!(
            "POSIX lock record of {} bytes is not a multiple of {REC_LEN}",
            buf.len()
        )));
    }
    let u32_at = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |b: &[u8], i: usize| (u64::from(u32_at(b, i)) << 32) | u64::from(u32_at(b, i + 4));
    Ok(buf
        .chunks_exact(REC_LEN)
        .map(|c| Rec {
            kind: u32_at(c, 0),
            pid: u32_at(c, 4),
            start: u64_at(c, 8),
            end: u64_at(c, 16),
        })
        .collect())
}

pub(crate) fn encode(recs: &[Rec]) -> Vec<u8> {
    let mut out = Vec::with_capacity(recs.len() * REC_LEN);
    for r in recs {
        out.extend_from_slice(&r.kind.to_be_bytes());
        out.extend_from_slice(&r.pid.to_be_bytes());
        out.extend_from_slice(&r.start.to_be_bytes());
        out.extend_from_slice(&r.end.to_be_bytes());
    }
    out
}

/// The first record of another owner that conflicts with a request for `kind` over
/// `[start, end]`: the ranges overlap and one of the two is a write lock.
pub(crate) fn conflict(held: &[Rec], kind: LockKind, start: u64, end: u64) -> Option<Rec> {
    if kind == LockKind::Unlock {
        return None;
    }
    held.iter()
        .find(|r| {
            r.start <= end && start <= r.end && (kind == LockKind::Write || r.kind == REC_WRITE)
        })
        .copied()
}

/// One owner's ranges after a request: `[start, end]` is cut out of every range, the new range
/// (unless unlocking) put in, and touching ranges of one type joined, as POSIX locks behave.
pub(crate) fn apply(mine: &[Rec], req: PosixLock) -> Vec<Rec> {
    let mut out: Vec<Rec> = Vec::with_capacity(mine.len() + 2);
    for r in mine {
        if r.end < req.start || r.start > req.end {
            out.push(*r);
            continue;
        }
        if r.start < req.start {
            out.push(Rec {
                end: req.start - 1,
                ..*r
            });
        }
        if r.end > req.end {
            out.push(Rec {
                start: req.end + 1,
                ..*r
            });
        }
    }
    let kind = match req.kind {
        LockKind::Unlock => None,
        LockKind::Read => Some(REC_READ),
        LockKind::Write => Some(REC_WRITE),
    };
    if let Some(kind) = kind {
        out.push(Rec {
            kind,
            pid: req.pid,
            start: req.start,
            end: req.end,
        });
    }
    out.sort_by_key(|r| r.start);
    let mut merged: Vec<Rec> = Vec::with_capacity(out.len());
    for r in out {
        match merged.last_mut() {
            Some(last)
                if last.kind == r.kind && last.end != u64::MAX && last.end + 1 >= r.start =>
            {
                last.end = last.end.max(r.end);
                last.pid = r.pid;
            }
            _ => merged.push(r),
        }
    }
    merged
}

pub(crate) fn wire(r: Rec) -> PosixLock {
    PosixLock {
        kind: if r.kind == REC_WRITE {
            LockKind::Write
        } else {
            LockKind::Read
        },
        start: r.start,
        end: r.end,
        pid: r.pid,
    }
}

fn held_by_others() -> Error {
    Error::new(ErrorKind::WouldBlock, "the file is locked by another owner")
}

/// Whether this session holds a lock of `key` (an unknown answer counts as held).
fn held(set: &Mutex<HashSet<(Ino, u64)>>, key: (Ino, u64)) -> bool {
    set.lock().map(|s| s.contains(&key)).unwrap_or(true)
}

/// Remember whether this session holds a lock of `key`.
fn remember(set: &Mutex<HashSet<(Ino, u64)>>, key: (Ino, u64), holds: bool) -> Result<()> {
    let mut set = set.lock().map_err(|_| lock_poisoned())?;
    if holds {
        set.insert(key);
    } else {
        set.remove(&key);
    }
    Ok(())
}

impl<E: Engine> Core<E> {
    /// Take, change or release the BSD lock of `owner` on `ino` without waiting.
    pub(crate) async fn flock(&self, ino: Ino, owner: u64, kind: LockKind) -> Result<()> {
        let key = (ino, owner);
        if kind == LockKind::Unlock && !held(&self.flocks, key) {
            return Ok(()); // the common close: nothing held here, no transaction
        }
        let sid = self.sid();
        txn!(self, "flock", Mode::Write, |tx| {
            // reading the inode first serializes the requests on one file from every client
            if tx.node(ino).await?.is_none() {
                return Err(Error::not_found(format!("inode {ino} does not exist")));
            }
            if kind == LockKind::Unlock {
                tx.delete_flock(ino, sid, owner).await?;
                return Ok(());
            }
            for l in tx.flocks(ino).await? {
                let mine = l.sid == sid && l.owner == owner;
                if !mine && (kind == LockKind::Write || l.ltype == FLOCK_WRITE) {
                    return Err(held_by_others());
                }
            }
            let ltype = if kind == LockKind::Write {
                FLOCK_WRITE
            } else {
                FLOCK_READ
            };
            tx.put_flock(ino, Flock { sid, owner, ltype }).await?;
        })?;
        remember(&self.flocks, key, kind != LockKind::Unlock)
    }

    /// The POSIX locks on `ino` of owners other than `owner` (of this session) that conflict
    /// with `lock`, one per owner, with whether the owner is of this session.
    async fn conflicting(
        &self,
        ino: Ino,
        owner: u64,
        lock: PosixLock,
    ) -> Result<Vec<(bool, u64, PosixLock)>> {
        let sid = self.sid();
        txn!(self, "getlk", Mode::Read, |tx| {
            let mut found = Vec::new();
            for l in tx.plocks(ino).await? {
                if l.sid == sid && l.owner == owner {
                    continue;
                }
                if let Some(hit) = conflict(&decode(&l.records)?, lock.kind, lock.start, lock.end) {
                    found.push((l.sid == sid, l.owner, wire(hit)));
                }
            }
            found
        })
    }

    /// The first POSIX lock of another owner that conflicts with `lock` (F_GETLK).
    pub(crate) async fn getlk(
        &self,
        ino: Ino,
        owner: u64,
        lock: PosixLock,
    ) -> Result<Option<PosixLock>> {
        let found = self.conflicting(ino, owner, lock).await?;
        Ok(found.into_iter().next().map(|(_, _, l)| l))
    }

    /// Owners of this session whose POSIX locks on `ino` conflict with `lock` of `owner`.
    pub(crate) async fn lock_blockers(
        &self,
        ino: Ino,
        owner: u64,
        lock: PosixLock,
    ) -> Result<Vec<u64>> {
        let found = self.conflicting(ino, owner, lock).await?;
        Ok(found
            .into_iter()
            .filter_map(|(mine, o, _)| mine.then_some(o))
            .collect())
    }

    /// Take, change or release (part of) the POSIX locks of `owner` on `ino` without waiting.
    pub(crate) async fn setlk(&self, ino: Ino, owner: u64, lock: PosixLock) -> Result<()> {
        let key = (ino, owner);
        if lock.kind == LockKind::Unlock && !held(&self.plocks, key) {
            return Ok(()); // every close of a file unlocks: most hold nothing
        }
        if lock.start > lock.end {
            return Err(Error::invalid("lock range ends before it starts"));
        }
        let sid = self.sid();
        let left = txn!(self, "setlk", Mode::Write, |tx| {
            if tx.node(ino).await?.is_none() {
                return Err(Error::not_found(format!("inode {ino} does not exist")));
            }
            let mut mine: Option<Vec<Rec>> = None;
            for l in tx.plocks(ino).await? {
                let recs = decode(&l.records)?;
                if l.sid == sid && l.owner == owner {
                    mine = Some(recs);
                } else if conflict(&recs, lock.kind, lock.start, lock.end).is_some() {
                    return Err(held_by_others());
                }
            }
            let existed = mine.is_some();
            let next = apply(&mine.unwrap_or_default(), lock);
            if !next.is_empty() {
                let records = encode(&next);
                tx.put_plock(
                    ino,
                    &Plock {
                        sid,
                        owner,
                        records,
                    },
                )
                .await?;
            } else if existed {
                tx.delete_plock(ino, sid, owner).await?;
            }
            !next.is_empty()
        })?;
        remember(&self.plocks, key, left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: u32, start: u64, end: u64) -> Rec {
        Rec {
            kind,
            pid: 7,
            start,
            end,
        }
    }

    fn req(kind: LockKind, start: u64, end: u64) -> PosixLock {
        PosixLock {
            kind,
            start,
            end,
            pid: 7,
        }
    }

    #[test]
    fn records_round_trip_in_the_juicefs_layout() -> Result<()> {
        // what juicefs 1.4.2 stored for lockf(LOCK_EX, 100 bytes at 10), pid 0x60e7
        let juicefs = [
            0, 0, 0, 1, 0, 0, 0x60, 0xe7, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0x6d,
        ];
        let recs = decode(&juicefs)?;
        assert_eq!(
            recs,
            vec![Rec {
                kind: REC_WRITE,
                pid: 0x60e7,
                start: 10,
                end: 109
            }]
        );
        assert_eq!(encode(&recs), juicefs.to_vec());
        assert!(decode(&juicefs[..23]).is_err());
        Ok(())
    }

    #[test]
    fn ranges_split_join_and_conflict() {
        let mine = apply(&[], req(LockKind::Write, 0, 99));
        assert_eq!(mine, vec![rec(REC_WRITE, 0, 99)]);
        // unlocking the middle splits
        let mine = apply(&mine, req(LockKind::Unlock, 40, 59));
        assert_eq!(mine, vec![rec(REC_WRITE, 0, 39), rec(REC_WRITE, 60, 99)]);
        // a read lock over the hole and beyond changes the type there
        let mine = apply(&mine, req(LockKind::Read, 30, 69));
        assert_eq!(
            mine,
            vec![
                rec(REC_WRITE, 0, 29),
                rec(REC_READ, 30, 69),
                rec(REC_WRITE, 70, 99)
            ]
        );
        // adjacent same-type ranges join
        let mine = apply(&mine, req(LockKind::Write, 30, 69));
        assert_eq!(mine, vec![rec(REC_WRITE, 0, 99)]);
        assert!(apply(&mine, req(LockKind::Unlock, 0, u64::MAX)).is_empty());
        // conflicts: overlap and a writer on either side
        let held = [rec(REC_READ, 10, 19)];
        assert!(conflict(&held, LockKind::Read, 0, 100).is_none());
        assert!(conflict(&held, LockKind::Write, 19, 30).is_some());
        assert!(conflict(&held, LockKind::Write, 20, 30).is_none());
        assert!(conflict(&[rec(REC_WRITE, 10, 19)], LockKind::Read, 0, 10).is_some());
        assert!(conflict(&[rec(REC_WRITE, 0, u64::MAX)], LockKind::Unlock, 0, 1).is_none());
    }
}
