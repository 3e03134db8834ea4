//! Directory listings: the kernel asks for a few dozen entries per request; a handle reads pages
//! of stored entries (growing from 256 to 4 096) and serves the requests from them, reading the
//! next page while the kernel consumes the current one.

use super::*;

/// First readdir offset used by real entries: 1 and 2 are `.` and `..`, 3 is `.trash` at the root.
pub(super) const DIR_OFFSET_BASE: u64 = 3;

/// An entry as readdir hands it to the kernel: with its resume offset.
#[derive(Debug, Clone)]
pub struct ListedEntry {
    /// The entry.
    pub entry: DirEntry,
    /// Offset to resume after it.
    pub offset: u64,
}

/// The page of stored entries an open directory handle keeps.
#[derive(Default)]
pub(super) struct DirPage {
    /// Read with attributes (readdirplus).
    pub(super) plus: bool,
    pub(super) entries: Vec<ListedEntry>,
    /// Entries of `entries` already handed out (where the next request most likely resumes).
    pub(super) served: usize,
    /// Pages read through this handle so far: each is larger than the one before, up to
    /// [`DIR_PAGE_MAX`], so `ls` of a small directory reads little and a long listing pays the
    /// per-query cost rarely.
    pub(super) pages: u32,
    /// When the page was read: attributes older than the kernel's cache TTL are not handed out
    /// (the kernel would keep them for another TTL).
    pub(super) read_at: Option<std::time::Instant>,
    /// Whether the page came back full (more entries may follow).
    pub(super) full: bool,
    /// The page after this one, read while the kernel consumes this one.
    pub(super) next: Option<NextPage>,
}

/// A directory page being read in the background.
pub(super) struct NextPage {
    /// Entry cursor it starts after.
    pub(super) after: u64,
    pub(super) plus: bool,
    pub(super) read_at: std::time::Instant,
    pub(super) task: Option<tokio::task::JoinHandle<tidefs_meta::Result<Vec<DirEntry>>>>,
}

impl NextPage {
    /// Its entries, or None when the read failed or was cancelled (the caller reads again and
    /// reports that read's error).
    pub(super) async fn entries(mut self) -> Option<Vec<DirEntry>> {
        match self.task.take()?.await {
            Ok(Ok(entries)) => Some(entries),
            _ => None,
        }
    }
}

impl Drop for NextPage {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl DirPage {
    /// Entries after kernel offset `offset`, at most `limit`, if this page holds them.
    /// With the page's age: attributes are handed out only while younger than `max_age`.
    pub(super) fn serve(
        &mut self,
        plus: bool,
        offset: u64,
        limit: usize,
        max_age: Duration,
    ) -> Option<(Vec<ListedEntry>, Duration)> {
        let age = self.read_at.map(|t| t.elapsed()).unwrap_or(Duration::MAX);
        if plus != self.plus || (plus && age >= max_age) {
            return None;
        }
        let hint = self.served.checked_sub(1);
        let at = match hint.filter(|&i| self.entries.get(i).map(|e| e.offset) == Some(offset)) {
            Some(i) => i,
            None => self.entries.iter().position(|e| e.offset == offset)?,
        };
        let start = at + 1;
        if start >= self.entries.len() {
            return None;
        }
        let end = (start + limit.max(1)).min(self.entries.len());
        self.served = end;
        Some((self.entries[start..end].to_vec(), age))
    }

    /// The page read ahead to start after entry cursor `after`, if there is one young enough.
    pub(super) fn take_next(
        &mut self,
        after: u64,
        plus: bool,
        max_age: Duration,
    ) -> Option<NextPage> {
        let next = self.next.take()?;
        (next.after == after && next.plus == plus && (!plus || next.read_at.elapsed() < max_age))
            .then_some(next)
    }

    /// Whether to read the next page now: this one was full, the listing went on past its first
    /// request (so it is not one small `ls`), and no read of the next is under way.
    pub(super) fn wants_next(&self) -> bool {
        self.full
            && self.next.is_none()
            && (self.pages > 1 || self.served * 2 >= self.entries.len())
    }

    /// Size of the next page to read.
    pub(super) fn next_size(&self) -> usize {
        (DIR_PAGE << (2 * self.pages.min(4))).min(DIR_PAGE_MAX)
    }
}

/// Stored entries read by the first directory query of a handle; later ones read 4x more each,
/// up to [`DIR_PAGE_MAX`].
pub(super) const DIR_PAGE: usize = 256;

/// Most stored entries one directory query reads, and so one open directory handle keeps
/// (about 1 MiB with attributes).
pub(super) const DIR_PAGE_MAX: usize = 4096;

impl Vfs {
    /// Open a directory.
    pub async fn opendir(&self, ctx: &Ctx, ino: Ino) -> Result<u64> {
        let a = self.meta.getattr(ino).await?;
        if a.typ != FileType::Dir {
            return Err(Error::posix(ErrorKind::NotDir, "not a directory"));
        }
        let _ = ctx;
        Ok(self.new_handle(ino))
    }

    /// Entries of a directory from kernel offset `offset`, at most `limit`. `.` and `..` come
    /// first (offsets 1 and 2), `.trash` next at the root, then the stored entries, each with an
    /// offset derived from its stable entry id, so a listing resumes correctly however the
    /// directory changes in between.
    /// `fh` is the directory handle: the rest of a page read for an earlier request of the same
    /// listing is served from it, with its age (the kernel should keep attributes only for the
    /// rest of their TTL); entries read by this call come with age zero.
    pub async fn readdir(
        &self,
        ctx: &Ctx,
        fh: u64,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> Result<(Vec<ListedEntry>, Duration)> {
        let handle = self.handle(fh).ok().filter(|h| h.ino == ino);
        if offset >= DIR_OFFSET_BASE {
            if let Some(h) = &handle {
                let mut page = h.dir_page.lock();
                if let Some(served) = page.serve(plus, offset, limit, self.page_life) {
                    if page.wants_next() {
                        self.read_next_page(&mut page, ctx, ino);
                    }
                    return Ok(served);
                }
            }
        }
        let mut out = Vec::new();
        let dir = if offset < 2 {
            Some(self.meta.getattr(ino).await?)
        } else {
            None
        };
        if offset < 1 {
            out.push(ListedEntry {
                entry: DirEntry {
                    name: b".".to_vec(),
                    ino,
                    typ: FileType::Dir,
                    attr: dir.clone(),
                    cursor: 0,
                },
                offset: 1,
            });
        }
        if offset < 2 {
            let parent = match &dir {
                Some(d) if ino != ROOT_INODE => d.parent,
                _ => ROOT_INODE,
            };
            let pattr = if plus {
                self.meta.getattr(parent).await.ok()
            } else {
                None
            };
            out.push(ListedEntry {
                entry: DirEntry {
                    name: b"..".to_vec(),
                    ino: parent,
                    typ: FileType::Dir,
                    attr: pattr,
                    cursor: 0,
                },
                offset: 2,
            });
        }
        if offset < DIR_OFFSET_BASE && ino == ROOT_INODE {
            if let Ok(t) = self.meta.getattr(TRASH_INODE).await {
                out.push(ListedEntry {
                    entry: DirEntry {
                        name: TRASH_NAME.as_bytes().to_vec(),
                        ino: TRASH_INODE,
                        typ: FileType::Dir,
                        attr: Some(t),
                        cursor: 0,
                    },
                    offset: DIR_OFFSET_BASE,
                });
            }
        }
        let after = offset.saturating_sub(DIR_OFFSET_BASE);
        let size = match (&handle, offset) {
            (Some(h), o) if o >= DIR_OFFSET_BASE => h.dir_page.lock().next_size(),
            _ => DIR_PAGE,
        };
        let ahead = match (&handle, offset >= DIR_OFFSET_BASE) {
            (Some(h), true) => h.dir_page.lock().take_next(after, plus, self.page_life),
            _ => None,
        };
        let (mut read_at, mut entries) = (std::time::Instant::now(), None);
        if let Some(next) = ahead {
            read_at = next.read_at;
            entries = next.entries().await;
        }
        // a page read ahead has no commit count of its own (0 re-reads where needed)
        let mut seen = 0;
        let entries = match entries {
            Some(e) => e,
            None => {
                read_at = std::time::Instant::now();
                seen = self.commits_seen();
                self.meta.readdir(ctx, ino, after, size, plus).await?
            }
        };
        let full = entries.len() >= size;
        let mut page = Vec::new();
        for e in entries {
            let offset = e.cursor + DIR_OFFSET_BASE;
            let mut e = e;
            if let Some(a) = e.attr.take() {
                e.attr = Some(self.overlay(a, seen).await);
            }
            page.push(ListedEntry { entry: e, offset });
        }
        let room = limit.saturating_sub(out.len()).max(1);
        out.extend(page.iter().take(room).cloned());
        if let Some(h) = &handle {
            let mut kept = h.dir_page.lock();
            let pages = if offset >= DIR_OFFSET_BASE {
                kept.pages.saturating_add(1)
            } else {
                1
            };
            *kept = DirPage {
                plus,
                served: room.min(page.len()),
                entries: page,
                pages,
                read_at: Some(read_at),
                full,
                next: None,
            };
            if kept.wants_next() {
                self.read_next_page(&mut kept, ctx, ino);
            }
        }
        Ok((out, read_at.elapsed()))
    }

    /// Start reading the page that follows `page` in the background.
    pub(super) fn read_next_page(&self, page: &mut DirPage, ctx: &Ctx, ino: Ino) {
        let Some(last) = page.entries.last() else {
            return;
        };
        let (meta, ctx, after) = (self.meta.clone(), ctx.clone(), last.entry.cursor);
        let (size, plus) = (page.next_size(), page.plus);
        page.next = Some(NextPage {
            after,
            plus,
            read_at: std::time::Instant::now(),
            task: Some(tokio::spawn(async move {
                meta.readdir(&ctx, ino, after, size, plus).await
            })),
        });
    }

    /// Close a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }
}
