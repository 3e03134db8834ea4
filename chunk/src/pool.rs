//! Reuse of block-sized buffers.
//!
//! Every block read or written needs a buffer of up to the block size (4 MiB). Fresh memory costs
//! a page fault and the kernel zeroing each page; with memory handed back to the OS promptly (the
//! daemon's allocator setting, which keeps RSS low) that is a large part of the daemon's CPU in
//! a cold sequential read (figures: docs/design/0002). A few freed buffers are
//! kept here instead, so a stream of blocks reuses the same pages. The pool holds at most
//! `MAX_POOLED` buffers (64 MiB with 4 MiB blocks); more than that are freed as usual.

use bytes::Bytes;
use std::sync::Mutex;

/// Free buffers kept for reuse (x 4 MiB with the default block size): enough for the blocks
/// a sequential reader's prefetch cycles through the memory cache.
const MAX_POOLED: usize = 16;
/// Buffers smaller than this are not worth keeping.
const MIN_POOLED: usize = 1 << 20;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A pooled buffer with room for `cap` bytes, with whatever length it had when given back.
fn reuse(cap: usize) -> Option<Vec<u8>> {
    if cap < MIN_POOLED {
        return None;
    }
    let mut free = FREE.lock().ok()?;
    // big enough, and not a much bigger buffer (a block's) taken for a small request
    let i = free
        .iter()
        .position(|b| b.capacity() >= cap && b.capacity() <= 2 * cap + ALIGN)?;
    Some(free.swap_remove(i))
}

/// An empty buffer with room for at least `cap` bytes (reused when one is free).
pub fn take(cap: usize) -> Vec<u8> {
    match reuse(cap) {
        Some(mut b) => {
            b.clear();
            b
        }
        None => Vec::with_capacity(cap),
    }
}

/// Alignment of buffers that may be written to disk with `O_DIRECT` (the page size; every
/// block device's logical block size divides it).
pub const ALIGN: usize = 4096;

/// An empty-looking buffer for at least `cap` bytes that start at an [`ALIGN`] boundary: the
/// buffer holds `pad` filler bytes, so what is appended next begins aligned. Returns the buffer
/// and `pad`; the caller slices the filler off (`into_bytes(b).slice(pad..)`).
pub fn take_aligned(cap: usize) -> (Vec<u8>, usize) {
    let mut b = take(cap + ALIGN);
    let pad = b.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
    b.resize(pad, 0);
    (b, pad)
}

/// A buffer of exactly `len` bytes whose contents are unspecified (the caller overwrites all of
/// it). A reused buffer keeps the bytes it held (they stay initialized, so shortening it is
/// free); only growth past its old length is zeroed.
pub fn take_filled(len: usize) -> Vec<u8> {
    let mut b = reuse(len).unwrap_or_default();
    if b.len() >= len {
        b.truncate(len);
    } else {
        b.resize(len, 0);
    }
    b
}

/// Give a buffer back for reuse.
pub fn give(b: Vec<u8>) {
    if b.capacity() < MIN_POOLED {
        return;
    }
    if let Ok(mut free) = FREE.lock() {
        if free.len() < MAX_POOLED {
            free.push(b);
        }
    }
}

/// A pooled buffer as `Bytes`: it returns to the pool when the last reference is dropped.
pub fn into_bytes(b: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(b))
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_keep_their_contents_hidden_behind_len() {
        let mut b = take(2 << 20);
        b.extend_from_slice(&[7u8; 2 << 20]);
        let ptr = b.as_ptr();
        let bytes = into_bytes(b);
        assert_eq!(bytes.len(), 2 << 20);
        drop(bytes);
        // another test may race for the same pool: only check what take promises
        let again = take(1 << 20);
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        let filled = take_filled(2 << 20);
        assert_eq!(filled.len(), 2 << 20);
        let _ = ptr;
    }

    #[test]
    fn aligned_buffers_start_their_data_on_a_page_boundary() {
        for _ in 0..3 {
            let (mut b, pad) = take_aligned(3 << 20);
            assert_eq!(b.len(), pad);
            b.extend_from_slice(&[1u8; 3 << 20]);
            assert!(b.capacity() - pad >= 3 << 20);
            let bytes = into_bytes(b).slice(pad..);
            assert_eq!(bytes.as_ptr() as usize % ALIGN, 0);
            assert_eq!(bytes.len(), 3 << 20);
        }
    }

    #[test]
    fn a_small_request_does_not_take_a_block_sized_buffer() {
        // other tests share the pool: look only at what this one's request may get
        give(Vec::with_capacity(8 << 20));
        let b = take(1 << 20);
        assert!(b.capacity() >= 1 << 20 && b.capacity() <= (2 << 20) + ALIGN);
    }

    #[test]
    fn small_buffers_are_not_pooled() {
        let b = take(100);
        assert!(b.capacity() >= 100);
        give(b);
    }
}
