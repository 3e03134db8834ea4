//! Checks of the whole volume (fsck) and the scans `gc` builds on: every rule about what a
//! consistent namespace is lives here; the engine only pages through its records.

use super::retry::txn;
use super::Core;
use crate::engine::{Engine, Mode, Txn};
use crate::error::Result;
use crate::types::*;
use crate::{ChunkSlices, Problem};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Records read per page when scanning the whole volume.
const SCAN_PAGE: usize = 4096;

impl<E: Engine> Core<E> {
    /// Check the namespace (dangling entries, link counts, orphans, chunks of no file) and fix
    /// what is safe to fix when `repair`.
    pub(crate) async fn check(self: &Arc<Self>, repair: bool) -> Result<Vec<Problem>> {
        if repair {
            self.writable()?;
        }
        let (nodes, edges) = self.scan_namespace().await?;
        let sustained: HashSet<Ino> =
            txn!(self, "fsck", Mode::Read, |tx| { tx.sustained(None).await? })?
                .into_iter()
                .map(|(_, ino)| ino)
                .collect();
        let (mut problems, fixes) = analyze(&nodes, &edges, &sustained, repair);
        for fix in fixes {
            match fix {
                Fix::DropEntry(parent, name) => {
                    txn!(self, "fsck repair", Mode::Write, |tx| {
                        tx.delete_entry(parent, &name).await?;
                    })?;
                }
                Fix::SetNlink(ino, n) => {
                    txn!(self, "fsck repair", Mode::Write, |tx| {
                        if let Some(mut cur) = tx.node(ino).await? {
                            cur.nlink = n;
                            tx.update_node(&cur).await?;
                        }
                    })?;
                }
            }
        }
        let mut cursor = Vec::new();
        loop {
            let (page, next) = self.chunks_page(&cursor, SCAN_PAGE).await?;
            problems.extend(chunk_problems(&nodes, &page));
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        Ok(problems)
    }

    /// Every inode and every entry of the volume: (parent, name, inode).
    #[allow(clippy::type_complexity)]
    async fn scan_namespace(&self) -> Result<(HashMap<Ino, Attr>, Vec<(Ino, Vec<u8>, Ino)>)> {
        let mut nodes: HashMap<Ino, Attr> = HashMap::new();
        let mut cursor = Vec::new();
        loop {
            let (page, next) = txn!(self, "fsck", Mode::Read, |tx| {
                tx.scan_nodes(&cursor, SCAN_PAGE).await?
            })?;
            nodes.extend(page.into_iter().map(|a| (a.ino, a)));
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        let mut edges = Vec::new();
        let mut cursor = Vec::new();
        loop {
            let (page, next) = txn!(self, "fsck", Mode::Read, |tx| {
                tx.scan_entries(&cursor, SCAN_PAGE).await?
            })?;
            edges.extend(page.into_iter().map(|(p, name, _, ino)| (p, name, ino)));
            match next {
                Some(n) => cursor = n,
                None => break,
            }
        }
        Ok((nodes, edges))
    }

    /// Compare the statistics of every directory that has a record with a count of its
    /// entries; with `repair`, store the counts for every directory (records made where
    /// missing). Changes other clients have not stored yet show as differences.
    pub(crate) async fn check_dir_stats(&self, repair: bool) -> Result<Vec<Problem>> {
        if repair {
            self.writable()?;
        }
        let (nodes, edges) = self.scan_namespace().await?;
        let mut counted: HashMap<Ino, DirStat> = nodes
            .values()
            .filter(|a| a.typ == FileType::Dir && a.ino < TRASH_INODE)
            .map(|a| (a.ino, DirStat::default()))
            .collect();
        for (parent, _, ino) in &edges {
            if let (Some(st), Some(a)) = (counted.get_mut(parent), nodes.get(ino)) {
                st.add(DirStat::of_entry(a.typ, a.length));
            }
        }
        let mut dirs: Vec<(Ino, DirStat)> = counted.into_iter().collect();
        dirs.sort_by_key(|(ino, _)| *ino);
        let mut problems = Vec::new();
        for batch in dirs.chunks(SCAN_PAGE) {
            let stored = txn!(self, "fsck", Mode::Read, |tx| {
                let mut out = Vec::with_capacity(batch.len());
                for (ino, _) in batch {
                    out.push(tx.dir_stat(*ino).await?);
                }
                out
            })?;
            let mut fixes = Vec::new();
            for ((ino, want), have) in batch.iter().zip(stored) {
                match have {
                    Some(have) if have != *want => {
                        problems.push(Problem {
                            what: format!(
                                "statistics of directory {ino}: stored {} bytes, {} entries, but its entries make {} bytes, {} entries",
                                have.space, have.inodes, want.space, want.inodes
                            ),
                            repaired: repair,
                        });
                        fixes.push((*ino, *want));
                    }
                    None => fixes.push((*ino, *want)),
                    Some(_) => {}
                }
            }
            if repair && !fixes.is_empty() {
                txn!(self, "fsck repair", Mode::Write, |tx| {
                    for (ino, st) in &fixes {
                        tx.put_dir_stat(*ino, st).await?;
                    }
                })?;
            }
        }
        Ok(problems)
    }

    /// A page of the volume's chunks: about `limit` after `cursor` (empty: from the start).
    pub(crate) async fn chunks_page(
        &self,
        cursor: &[u8],
        limit: usize,
    ) -> Result<(Vec<ChunkSlices>, Option<Vec<u8>>)> {
        let limit = limit.clamp(1, 100_000);
        txn!(self, "list chunks", Mode::Read, |tx| {
            tx.scan_chunks(cursor, limit).await?
        })
    }

    /// Slices and files whose objects are held outside the files of the volume (for gc).
    pub(crate) async fn leftovers(&self) -> Result<Leftovers> {
        txn!(self, "list leftovers", Mode::Read, |tx| {
            let mut out = Leftovers::default();
            for d in tx.delayed().await? {
                out.delayed
                    .extend(d.slices.iter().map(|&(id, size)| (id, size, d.when)));
            }
            out.unreferenced = tx.zero_refs().await?;
            out.pending_files = tx.delfiles().await?.len() as u64;
            out
        })
    }

    /// Release slices set aside before `before` and slices left at zero references (their
    /// objects first); returns how many records went.
    pub(crate) async fn purge_held_slices(&self, before: i64) -> Result<u64> {
        self.writable()?;
        let mut purged = self.purge_delayed(before).await?;
        txn!(self, "drop stale checksums", Mode::Write, |tx| {
            tx.drop_orphan_sums().await?;
        })?;
        let zero = txn!(self, "list unreferenced slices", Mode::Read, |tx| {
            tx.zero_refs().await?
        })?;
        for (id, size) in zero {
            self.delete_objects(vec![(id, size)]).await;
            txn!(self, "purge unreferenced slice", Mode::Write, |tx| {
                tx.drop_zero_ref(id, size).await?;
            })?;
            purged += 1;
        }
        Ok(purged)
    }
}

/// A repair `check` asks the engine to make.
pub(crate) enum Fix {
    /// Delete the entry (it names a missing inode).
    DropEntry(Ino, Vec<u8>),
    /// Set the link count of an inode.
    SetNlink(Ino, u32),
}

/// The namespace analysis of fsck: entries pointing at missing inodes or living in missing
/// directories, orphans, wrong link counts; with the repairs that are safe to make. `edges`
/// are (parent, name, child).
pub(crate) fn analyze(
    nodes: &HashMap<Ino, Attr>,
    edges: &[(Ino, Vec<u8>, Ino)],
    sustained: &HashSet<Ino>,
    repair: bool,
) -> (Vec<Problem>, Vec<Fix>) {
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let mut names: HashMap<Ino, u32> = HashMap::new();
    let mut subdirs: HashMap<Ino, u32> = HashMap::new();
    for (parent, name, ino) in edges {
        let shown = String::from_utf8_lossy(name);
        match (nodes.get(parent), nodes.get(ino)) {
            (_, None) => {
                problems.push(Problem {
                    what: format!(
                        "entry {shown:?} in directory {parent} points at missing inode {ino}"
                    ),
                    repaired: repair,
                });
                if repair {
                    fixes.push(Fix::DropEntry(*parent, name.clone()));
                }
            }
            (None, Some(_)) => problems.push(Problem {
                what: format!("entry {shown:?} of inode {ino} lives in missing directory {parent}"),
                repaired: false,
            }),
            (Some(_), Some(a)) => {
                *names.entry(*ino).or_default() += 1;
                if a.typ == FileType::Dir {
                    *subdirs.entry(*parent).or_default() += 1;
                }
            }
        }
    }
    for a in nodes.values() {
        let expect = if a.typ == FileType::Dir {
            if a.ino == ROOT_INODE || a.ino == TRASH_INODE || names.contains_key(&a.ino) {
                2 + subdirs.get(&a.ino).copied().unwrap_or(0)
            } else {
                problems.push(Problem {
                    what: format!("directory {} has no entry (orphan)", a.ino),
                    repaired: false,
                });
                continue;
            }
        } else {
            let n = names.get(&a.ino).copied().unwrap_or(0);
            if n == 0 && !sustained.contains(&a.ino) {
                problems.push(Problem {
                    what: format!(
                        "inode {} has no entry and is not open (orphan, {} bytes)",
                        a.ino, a.length
                    ),
                    repaired: false,
                });
                continue;
            }
            n
        };
        // juicefs moves removed directories into the trash's hour directories without
        // counting their links there
        let trash_dir = a.typ == FileType::Dir && a.ino > TRASH_INODE;
        if a.nlink != expect && !trash_dir {
            problems.push(Problem {
                what: format!("inode {} has nlink {} but {} links", a.ino, a.nlink, expect),
                repaired: repair,
            });
            if repair {
                fixes.push(Fix::SetNlink(a.ino, expect));
            }
        }
    }
    (problems, fixes)
}

/// Problems of chunks that belong to no file: of a missing inode or a non-file.
pub(crate) fn chunk_problems(
    nodes: &HashMap<Ino, Attr>,
    chunks: &[crate::ChunkSlices],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for ch in chunks {
        match nodes.get(&ch.ino) {
            None => problems.push(Problem {
                what: format!("chunk {} of missing inode {}", ch.indx, ch.ino),
                repaired: false,
            }),
            Some(a) if a.typ != FileType::File => problems.push(Problem {
                what: format!("chunk {} belongs to non-file inode {}", ch.indx, ch.ino),
                repaired: false,
            }),
            _ => {}
        }
    }
    problems
}
