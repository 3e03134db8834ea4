//! Lookahead of directory entries (what Lustre calls statahead).
//!
//! A program that stats, opens or removes many names of one directory (`ls -l` on a kernel
//! without readdirplus, `find`, `du`, `rsync`, `tar`, a loop of `stat`) costs one metadata
//! round trip per name. After [`START_AFTER`] lookups in a row in one directory that this
//! cache could not answer, the mount reads the entries that follow the last name (in name
//! order) with their attributes in one query, and answers the next lookups from them.
//!
//! Freshness: an entry is served at most `ttl` (the kernel's attribute/entry TTL) after it was
//! read from the metadata engine, and the kernel is told to keep it only for what is left of
//! that TTL, so changes by other clients show up within the same bound as without the
//! lookahead. Changes made through this mount drop what they touch before they
//! return (see the `forget_*` calls in `vfs`). Files with several names are not kept (a change
//! through one name would leave the other stale).
//!
//! Cost control: a page that served fewer than 1/8 of its entries raises the number of misses
//! needed for the next page of that directory (x4, up to 4096), so random lookups in a huge
//! directory stop paying for pages; a page that served well resets it.
//!
//! Memory: at most [`MAX_ENTRIES`] entries in all (~200 bytes each with the name) over at most
//! [`MAX_DIRS`] directories; least recently used directories are dropped first.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use tidefs_meta::{Attr, FileType, Ino};

/// Lookups in a row that miss before the first page of a directory is read.
pub(crate) const START_AFTER: u32 = 4;
/// Entries read per page.
pub(crate) const PAGE: usize = 1024;
/// Most entries kept over all directories.
const MAX_ENTRIES: usize = 65_536;
/// Most directories tracked.
const MAX_DIRS: usize = 1024;
/// Highest miss count asked for before a page (after pages that served badly).
const MAX_THRESHOLD: u32 = 4096;

#[derive(Default)]
struct Dir {
    names: HashMap<Vec<u8>, Attr>,
    fetched: Option<Instant>,
    misses: u32,
    threshold: u32,
    /// Entries of the current page, and how many of them were served.
    loaded: u32,
    served: u32,
    /// A page is being read.
    busy: bool,
    used: u64,
}

#[derive(Default)]
struct State {
    dirs: HashMap<Ino, Dir>,
    /// Where each kept inode is: (directory, name).
    by_ino: HashMap<Ino, (Ino, Vec<u8>)>,
    entries: usize,
    tick: u64,
}

/// The lookahead cache of one mount.
pub(crate) struct Lookahead {
    state: parking_lot::Mutex<State>,
    ttl: Duration,
}

impl Lookahead {
    /// A cache serving entries for `ttl` after they were read; a zero `ttl` turns it off.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            state: parking_lot::Mutex::new(State::default()),
            ttl,
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The attributes of `name` in `parent` if a page read them recently (taken out: the
    /// kernel caches the answer from here on).
    /// Also returns how long ago the entry was read.
    pub(crate) fn take(&self, parent: Ino, name: &[u8]) -> Option<(Attr, Duration)> {
        if !self.enabled() {
            return None;
        }
        let mut st = self.state.lock();
        st.tick += 1;
        let tick = st.tick;
        let ttl = self.ttl;
        let d = st.dirs.get_mut(&parent)?;
        d.used = tick;
        let age = d.fetched.map(|t| t.elapsed()).unwrap_or(Duration::MAX);
        let fresh = age < ttl;
        if !fresh {
            d.fetched = None;
            clear_page(&mut st, parent);
            return None;
        }
        let a = d.names.remove(name)?;
        d.served += 1;
        d.misses = 0;
        st.entries -= 1;
        st.by_ino.remove(&a.ino);
        Some((a, age))
    }

    /// Note a lookup of an existing `name` in `parent` that this cache could not answer.
    /// Returns the name to read the next page from when it is time to read one; the caller
    /// then calls [`fill`](Self::fill) (or [`failed`](Self::failed)).
    pub(crate) fn missed(&self, parent: Ino, name: &[u8]) -> Option<Vec<u8>> {
        if !self.enabled() {
            return None;
        }
        let mut st = self.state.lock();
        st.tick += 1;
        let tick = st.tick;
        if !st.dirs.contains_key(&parent) && st.dirs.len() >= MAX_DIRS {
            evict_one(&mut st, parent);
        }
        let d = st.dirs.entry(parent).or_default();
        if d.threshold == 0 {
            d.threshold = START_AFTER;
        }
        d.used = tick;
        d.misses += 1;
        if d.busy || d.misses < d.threshold {
            return None;
        }
        d.busy = true;
        d.misses = 0;
        // the smallest name after `name` (names hold no NUL byte)
        let mut from = name.to_vec();
        from.push(0);
        Some(from)
    }

    /// Keep a page of `parent`'s entries (replacing the previous one).
    pub(crate) fn fill(&self, parent: Ino, page: Vec<(Vec<u8>, Attr)>) {
        let mut st = self.state.lock();
        let Some(d) = st.dirs.get_mut(&parent) else {
            return;
        };
        d.busy = false;
        // pages that served badly make the next one wait longer
        if (d.loaded > 0 && d.served * 8 < d.loaded) || page.is_empty() {
            d.threshold = (d.threshold * 4).min(MAX_THRESHOLD);
        } else {
            d.threshold = START_AFTER;
        }
        let keep: Vec<(Vec<u8>, Attr)> = page
            .into_iter()
            .filter(|(_, a)| a.typ == FileType::Dir || a.nlink <= 1)
            .collect();
        d.loaded = keep.len() as u32;
        d.served = 0;
        d.fetched = Some(Instant::now());
        clear_page(&mut st, parent);
        while st.entries + keep.len() > MAX_ENTRIES && st.dirs.len() > 1 {
            if !evict_one(&mut st, parent) {
                break;
            }
        }
        if st.entries + keep.len() > MAX_ENTRIES {
            return;
        }
        st.entries += keep.len();
        let mut names = HashMap::with_capacity(keep.len());
        for (name, a) in keep {
            st.by_ino.insert(a.ino, (parent, name.clone()));
            names.insert(name, a);
        }
        if let Some(d) = st.dirs.get_mut(&parent) {
            d.names = names;
        }
    }

    /// A page could not be read: let a later miss try again.
    pub(crate) fn failed(&self, parent: Ino) {
        if let Some(d) = self.state.lock().dirs.get_mut(&parent) {
            d.busy = false;
        }
    }

    /// Drop what is kept about `name` in `parent` (it was created, removed or renamed here).
    pub(crate) fn forget_name(&self, parent: Ino, name: &[u8]) {
        if !self.enabled() {
            return;
        }
        let mut st = self.state.lock();
        let removed = st.dirs.get_mut(&parent).and_then(|d| d.names.remove(name));
        if let Some(a) = removed {
            st.entries -= 1;
            st.by_ino.remove(&a.ino);
        }
    }

    /// Drop what is kept about inode `ino` (its attributes changed here).
    pub(crate) fn forget_ino(&self, ino: Ino) {
        if !self.enabled() {
            return;
        }
        let mut st = self.state.lock();
        if let Some((dir, name)) = st.by_ino.remove(&ino) {
            if st
                .dirs
                .get_mut(&dir)
                .and_then(|d| d.names.remove(&name))
                .is_some()
            {
                st.entries -= 1;
            }
        }
    }

    /// Entries kept now (for tests and status).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().entries
    }
}

/// Drop the least recently used directory other than `keep`; false when there is none.
fn evict_one(st: &mut State, keep: Ino) -> bool {
    let victim = st
        .dirs
        .iter()
        .filter(|(ino, d)| **ino != keep && !d.busy)
        .min_by_key(|(_, d)| d.used)
        .map(|(ino, _)| *ino);
    let Some(v) = victim else {
        return false;
    };
    clear_page(st, v);
    st.dirs.remove(&v);
    true
}

/// Drop the kept entries of directory `dir` (and their places in the inode index).
fn clear_page(st: &mut State, dir: Ino) {
    let Some(d) = st.dirs.get_mut(&dir) else {
        return;
    };
    let gone: Vec<Ino> = d.names.drain().map(|(_, a)| a.ino).collect();
    st.entries -= gone.len();
    for ino in gone {
        st.by_ino.remove(&ino);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidefs_meta::Timestamp;

    fn attr(ino: Ino, nlink: u32) -> Attr {
        let now = Timestamp::now();
        Attr {
            ino,
            typ: FileType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            ctime: now,
            nlink,
            length: 0,
            rdev: 0,
            parent: 1,
            flags: 0,
        }
    }

    fn page(from: u64, n: u64) -> Vec<(Vec<u8>, Attr)> {
        (from..from + n)
            .map(|i| (format!("f{i:05}").into_bytes(), attr(100 + i, 1)))
            .collect()
    }

    #[test]
    fn reads_a_page_after_misses_and_serves_it_once() {
        let la = Lookahead::new(Duration::from_secs(5));
        for i in 0..START_AFTER - 1 {
            assert!(la.missed(1, format!("f{i:05}").as_bytes()).is_none());
        }
        let from = la.missed(1, b"f00003").expect("time for a page");
        assert_eq!(from, b"f00003\0");
        la.fill(1, page(4, 10));
        assert_eq!(la.len(), 10);
        assert_eq!(la.take(1, b"f00004").map(|(a, _)| a.ino), Some(104));
        assert!(la.take(1, b"f00004").is_none(), "served once");
        assert!(la.take(2, b"f00005").is_none(), "other directory");
        assert_eq!(la.len(), 9);
    }

    #[test]
    fn local_changes_and_age_drop_entries() {
        let la = Lookahead::new(Duration::from_millis(200));
        for i in 0..START_AFTER {
            la.missed(1, format!("x{i}").as_bytes());
        }
        la.fill(1, page(0, 4));
        la.forget_name(1, b"f00000");
        la.forget_ino(101);
        assert!(la.take(1, b"f00000").is_none());
        assert!(la.take(1, b"f00001").is_none());
        assert!(la.take(1, b"f00002").is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert!(la.take(1, b"f00003").is_none(), "too old");
        assert_eq!(la.len(), 0);
    }

    #[test]
    fn files_with_several_names_are_not_kept() {
        let la = Lookahead::new(Duration::from_secs(5));
        for i in 0..START_AFTER {
            la.missed(1, format!("x{i}").as_bytes());
        }
        la.fill(
            1,
            vec![(b"a".to_vec(), attr(7, 2)), (b"b".to_vec(), attr(8, 1))],
        );
        assert!(la.take(1, b"a").is_none());
        assert!(la.take(1, b"b").is_some());
    }

    #[test]
    fn pages_that_serve_badly_back_off() {
        let la = Lookahead::new(Duration::from_secs(5));
        let mut pages = 0;
        for i in 0..2000u32 {
            if la.missed(1, format!("r{i}").as_bytes()).is_some() {
                pages += 1;
                la.fill(1, page(u64::from(i) * 1000, 100)); // never hit
            }
        }
        // 4, then 16, 64, 256, 1024 misses between pages: far fewer than 2000 / 4
        assert!(pages <= 6, "{pages} pages");
    }

    #[test]
    fn memory_is_bounded() {
        let la = Lookahead::new(Duration::from_secs(5));
        for dir in 0..200u64 {
            for i in 0..START_AFTER {
                la.missed(dir, format!("x{i}").as_bytes());
            }
            la.fill(dir, page(dir * 1000, 1000));
            assert!(la.len() <= MAX_ENTRIES);
        }
        assert!(la.len() >= MAX_ENTRIES - 1000);
    }

    #[test]
    fn zero_ttl_turns_it_off() {
        let la = Lookahead::new(Duration::ZERO);
        for i in 0..100 {
            assert!(la.missed(1, format!("f{i}").as_bytes()).is_none());
        }
    }
}
