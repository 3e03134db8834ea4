//! The tables of a mount: open files (their handles, write buffer, read streams and the
//! open-file cache of lengths and resolved slice lists) and handles.

use super::*;

/// An inode open in this mount: how many handles, its write buffer once written, and what reads
/// learned about it.
#[derive(Default)]
pub(super) struct OpenFile {
    pub(super) handles: u32,
    /// The read streams of all the file's handles together (see [`Handle::file_reads`]).
    pub(super) reads: Arc<readahead::Window>,
    pub(super) writer: Option<Arc<FileWriter>>,
    /// Bumped by every change of the file's data made here (commit, truncate, fallocate).
    pub(super) generation: Arc<AtomicU64>,
    pub(super) cache: ReadCache,
}

/// The open-file cache: file length and resolved slice lists, valid for one generation. It is
/// dropped at every open, so another client's changes are seen at the next open
/// (close-to-open), and never costs a metadata round trip per read request.
#[derive(Default)]
pub(super) struct ReadCache {
    pub(super) generation: u64,
    pub(super) length: Option<u64>,
    pub(super) chunks: HashMap<u32, Arc<Vec<Segment>>>,
}

impl ReadCache {
    pub(super) fn valid_for(&mut self, generation: u64) -> &mut Self {
        if self.generation != generation {
            *self = ReadCache {
                generation,
                ..ReadCache::default()
            };
        }
        self
    }
}

pub(super) struct Handle {
    pub(super) ino: Ino,
    /// Readahead window of this handle.
    pub(super) window: readahead::Window,
    /// For a file, the read streams of all its handles in this mount: processes reading one
    /// file share the page cache, so each one's reads skip what the others brought in and
    /// look random through its own handle, while together they read in sequence. A read
    /// continuing either is sequential (and fetches whole blocks, joining loads under way).
    pub(super) file_reads: Option<Arc<readahead::Window>>,
    /// A directory handle's last page of stored entries: the kernel asks for a few dozen
    /// entries per request, the engine answers a page of hundreds or thousands in one query,
    /// and the rest of the page serves the requests that follow.
    pub(super) dir_page: parking_lot::Mutex<DirPage>,
}

impl Vfs {
    pub(super) fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        self.handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::posix(ErrorKind::BadHandle, "unknown file handle"))
    }

    pub(super) fn new_handle(&self, ino: Ino) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let file_reads = self.files.lock().get(&ino).map(|f| f.reads.clone());
        self.handles.lock().insert(
            fh,
            Arc::new(Handle {
                ino,
                window: readahead::Window::default(),
                file_reads,
                dir_page: parking_lot::Mutex::new(DirPage::default()),
            }),
        );
        fh
    }
}
