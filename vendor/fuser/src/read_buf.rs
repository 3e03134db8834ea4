use std::mem::align_of;

use crate::ll::fuse_abi as abi;
use crate::session::MAX_WRITE_SIZE;

/// Size of the buffer for reading a request from the kernel. Since the kernel may send
/// up to `MAX_WRITE_SIZE` bytes in a write request, we use that value plus some extra space.
const BUFFER_SIZE: usize = MAX_WRITE_SIZE + 4096;

/// Transparent huge page size on x86-64 and arm64 (4 KiB base pages).
const HUGE: usize = 2 << 20;

/// A buffer that provides an aligned sub-slice for FUSE operations.
///
/// tidefs: once a thread has received a large request (a big write), its buffer moves to an
/// anonymous mapping aligned to 2 MiB and advised for transparent huge pages. The kernel pins
/// the buffer's pages for every request it copies in (`get_user_pages`); with 4 KiB pages that
/// cost 7 % of a mount's CPU in a sequential write, with a huge page it is one pin per 2 MiB.
/// Threads that only ever see small requests keep a plain vector (a huge page would cost each
/// of them 2 MiB of memory the first time it is touched); so does every thread when the
/// mapping fails.
#[derive(Debug)]
pub(crate) struct FuseReadBuf {
    map: Option<(*mut u8, usize)>,
    buffer: Vec<u8>,
}

// SAFETY: the mapping is owned by this value alone (like the Vec), freed in Drop.
unsafe impl Send for FuseReadBuf {}

impl FuseReadBuf {
    /// Creates a new `FuseReadBuf` with the default buffer size.
    ///
    /// The actual buffer may be slightly larger to accommodate alignment requirements.
    pub(crate) fn new() -> Self {
        Self {
            map: None,
            buffer: vec![0; BUFFER_SIZE],
        }
    }

    /// A request of `size` bytes was just handled: after a large one, move to a huge page.
    pub(crate) fn note_request(&mut self, size: usize) {
        const LARGE: usize = 256 << 10;
        if size >= LARGE && self.map.is_none() {
            if let Some(map) = Self::huge_mapping() {
                self.map = Some(map);
                self.buffer = Vec::new();
            }
        }
    }

    /// An anonymous read-write mapping of at least `BUFFER_SIZE` bytes starting on a 2 MiB
    /// boundary, advised for huge pages (pages are only backed when touched).
    fn huge_mapping() -> Option<(*mut u8, usize)> {
        let len = BUFFER_SIZE.div_ceil(HUGE) * HUGE;
        let over = len + HUGE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let start = p as usize;
        let aligned = start.div_ceil(HUGE) * HUGE;
        let (head, tail) = (aligned - start, start + over - (aligned + len));
        // SAFETY: both ranges lie inside the mapping just made and outside the part kept.
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
            // advice only: without huge pages the buffer works the same
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        Some((aligned as *mut u8, len))
    }

    /// Returns a mutable reference to the aligned portion of the buffer.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        if let Some((p, len)) = self.map {
            // SAFETY: the mapping is `len` bytes, readable and writable, owned by `self` and
            // borrowed mutably through it; a 2 MiB boundary suits every header alignment.
            return unsafe { std::slice::from_raw_parts_mut(p, len) };
        }
        let alignment = align_of::<abi::fuse_in_header>();
        let off = alignment - (self.buffer.as_ptr() as usize) % alignment;
        if off == alignment {
            &mut self.buffer
        } else {
            &mut self.buffer[off..]
        }
    }
}

impl Drop for FuseReadBuf {
    fn drop(&mut self) {
        if let Some((p, len)) = self.map.take() {
            // SAFETY: the mapping made in `huge_mapping`, no longer borrowed.
            unsafe {
                libc::munmap(p.cast(), len);
            }
        }
    }
}
