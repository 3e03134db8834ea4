//! End-to-end checksums of blocks: one CRC32C per 64 KiB segment of a block's (uncompressed)
//! bytes, computed when the block is uploaded and kept in the metadata next to the slice (a
//! tidefs table JuiceFS ignores). Every object read from the store is checked against them, so
//! an object the store corrupted or cut short is an error, never data.
//!
//! A slice's sums are its blocks' sums in block order: block `i` starts at sum
//! `i * segments(block_size)`.

use futures::future::BoxFuture;
use std::sync::Arc;

/// Bytes covered by one checksum.
pub const SUM_SEGMENT: usize = 64 << 10;

/// Checksums of a block: CRC32C (little endian) per [`SUM_SEGMENT`].
pub fn block_sums(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * data.len().div_ceil(SUM_SEGMENT));
    for seg in data.chunks(SUM_SEGMENT) {
        out.extend_from_slice(&crc32c::crc32c(seg).to_le_bytes());
    }
    out
}

/// Where the checksums of a slice come from (the metadata engine, in a mount).
pub trait SumSource: Send + Sync {
    /// Sums of slice `id`, or None when it has none (written by JuiceFS, or before tidefs kept
    /// them) or they cannot be read now.
    fn sums(&self, id: u64) -> BoxFuture<'static, Option<Arc<Vec<u8>>>>;
}

/// Check `data`, bytes `[off, off + data.len())` of block `indx` of a slice (blocks of
/// `block_size`), against the slice's `sums`. `off` must be segment aligned, and `data` must end
/// at a segment boundary or at the end of the block. Returns the first bad segment (its offset
/// in the block), or None when all match. Sums too short to cover the data check nothing.
pub fn first_bad_segment(
    sums: &[u8],
    block_size: u32,
    indx: u32,
    off: usize,
    data: &[u8],
) -> Option<usize> {
    let per_block = (block_size as usize).div_ceil(SUM_SEGMENT);
    let first = indx as usize * per_block + off / SUM_SEGMENT;
    for (i, seg) in data.chunks(SUM_SEGMENT).enumerate() {
        let at = 4 * (first + i);
        // sums too short to cover this segment check nothing more
        let want = sums.get(at..at + 4)?;
        if crc32c::crc32c(seg).to_le_bytes() != want {
            return Some(off + i * SUM_SEGMENT);
        }
    }
    None
}

/// [`first_bad_segment`] for a whole block of `len` bytes whose CRC32Cs per `part` bytes are
/// known already (`parts`, little endian, e.g. a disk-cache trailer): each checksum's segment
/// CRC is combined from its parts instead of reading the bytes again. `part` must divide
/// [`SUM_SEGMENT`].
pub fn first_bad_segment_by_parts(
    sums: &[u8],
    block_size: u32,
    indx: u32,
    len: usize,
    parts: &[u8],
    part: usize,
) -> Option<usize> {
    if part == 0 || !SUM_SEGMENT.is_multiple_of(part) || parts.len() != 4 * len.div_ceil(part) {
        // not the parts of this block: nothing can be vouched for
        return Some(0);
    }
    let per_sum = SUM_SEGMENT / part;
    let per_block = (block_size as usize).div_ceil(SUM_SEGMENT);
    let first = indx as usize * per_block;
    let crc = |i: usize| {
        parts
            .get(4 * i..4 * i + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    for s in 0..len.div_ceil(SUM_SEGMENT) {
        let at = 4 * (first + s);
        let want = sums.get(at..at + 4)?;
        let mut got: Option<u32> = None;
        for p in s * per_sum..((s + 1) * per_sum).min(len.div_ceil(part)) {
            let plen = (len - p * part).min(part);
            let c = crc(p)?;
            got = Some(append_crc(got, c, plen, part));
        }
        if got.map(|g| g.to_le_bytes()) != Some([want[0], want[1], want[2], want[3]]) {
            return Some(s * SUM_SEGMENT);
        }
    }
    None
}

/// The CRC32C of the bytes `so_far` covers followed by a piece of `plen` bytes whose CRC32C is
/// `c` (pieces are `part` bytes but for a short last one).
fn append_crc(so_far: Option<u32>, c: u32, plen: usize, part: usize) -> u32 {
    match so_far {
        None => c,
        // a whole part: four table lookups; a block's short last part: the general (slow:
        // ~40 32x32 bit-matrix products) combination, once per block at most
        Some(g) if plen == part => zero_shift(part).apply(g) ^ c,
        Some(g) => crc32c::crc32c_combine(g, c, plen),
    }
}

/// The CRC32C of a byte string followed by `len` zero bytes, from the CRC32C of the string:
/// a linear map over GF(2) (`crc32c_combine(c1, c2, len) == shift(c1) ^ c2`), kept as four
/// byte-indexed tables so a combination costs four lookups instead of the matrix products
/// `crc32c_combine` repeats on every call (that was a quarter of the mount's CPU in a cold read).
#[derive(Clone)]
struct ZeroShift {
    len: usize,
    table: [[u32; 256]; 4],
}

impl ZeroShift {
    fn new(len: usize) -> Self {
        // the images of the 32 unit vectors; every table entry is a sum of some of them
        let basis: Vec<u32> = (0..32)
            .map(|i| crc32c::crc32c_combine(1u32 << i, 0, len))
            .collect();
        let mut table = [[0u32; 256]; 4];
        for (k, row) in table.iter_mut().enumerate() {
            for (b, e) in row.iter_mut().enumerate() {
                *e = (0..8)
                    .filter(|bit| b & (1 << bit) != 0)
                    .fold(0, |acc, bit| acc ^ basis[8 * k + bit]);
            }
        }
        ZeroShift { len, table }
    }

    fn apply(&self, crc: u32) -> u32 {
        self.table[0][(crc & 0xff) as usize]
            ^ self.table[1][((crc >> 8) & 0xff) as usize]
            ^ self.table[2][((crc >> 16) & 0xff) as usize]
            ^ self.table[3][(crc >> 24) as usize]
    }
}

/// The shift by `len` zero bytes, built once per process for the one part size in use (built
/// afresh, uncached, for any other).
fn zero_shift(len: usize) -> std::borrow::Cow<'static, ZeroShift> {
    static CACHED: std::sync::OnceLock<ZeroShift> = std::sync::OnceLock::new();
    let z = CACHED.get_or_init(|| ZeroShift::new(len));
    if z.len == len {
        std::borrow::Cow::Borrowed(z)
    } else {
        std::borrow::Cow::Owned(ZeroShift::new(len))
    }
}

/// The CRC32C of a whole block of `len` bytes from the CRC32Cs of its `part`-byte pieces
/// (little endian, as a disk-cache trailer holds them), combined as in
/// [`first_bad_segment_by_parts`]: no second pass over the bytes. None when `parts` are not the
/// pieces of `len` bytes.
pub fn whole_crc_by_parts(len: usize, parts: &[u8], part: usize) -> Option<u32> {
    if part == 0 || parts.len() != 4 * len.div_ceil(part) {
        return None;
    }
    let mut whole: Option<u32> = None;
    for (i, c) in parts.chunks_exact(4).enumerate() {
        let plen = (len - i * part).min(part);
        let c = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        whole = Some(append_crc(whole, c, plen, part));
    }
    // the CRC32C of no bytes
    Some(whole.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_shift_table_combines_as_crc32c_combine_does() {
        for len in [1usize, 7, 4096, 32 << 10] {
            let z = ZeroShift::new(len);
            for c1 in [0u32, 1, 0xdead_beef, u32::MAX, 0x8000_0000] {
                for c2 in [0u32, 0x1234_5678] {
                    assert_eq!(z.apply(c1) ^ c2, crc32c::crc32c_combine(c1, c2, len));
                }
            }
        }
    }

    #[test]
    fn a_whole_crc_combined_from_parts_is_the_crc_of_the_bytes() {
        let part = SUM_SEGMENT / 2;
        for n in [
            0usize,
            1,
            part - 1,
            part,
            part + 1,
            4 * SUM_SEGMENT,
            3 * part + 17,
        ] {
            let d: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(29) ^ 0x5a).collect();
            let parts: Vec<u8> = d
                .chunks(part)
                .flat_map(|c| crc32c::crc32c(c).to_le_bytes())
                .collect();
            assert_eq!(
                whole_crc_by_parts(n, &parts, part),
                Some(crc32c::crc32c(&d)),
                "{n} bytes"
            );
        }
        // pieces of some other length vouch for nothing
        assert_eq!(whole_crc_by_parts(10, &[0; 8], part), None);
    }

    #[test]
    fn sums_combined_from_parts_agree_with_sums_over_the_bytes() {
        let bs = 4 * SUM_SEGMENT as u32;
        let part = SUM_SEGMENT / 2;
        let parts_of = |d: &[u8]| -> Vec<u8> {
            d.chunks(part)
                .flat_map(|c| crc32c::crc32c(c).to_le_bytes())
                .collect()
        };
        for n in [bs as usize, 100_000, 1, part, part + 1, 3 * SUM_SEGMENT + 7] {
            let blocks: Vec<Vec<u8>> = (0..2u8)
                .map(|b| (0..n).map(|i| (i as u8).wrapping_mul(13) ^ b).collect())
                .collect();
            let sums: Vec<u8> = blocks.iter().flat_map(|b| block_sums(b)).collect();
            // block 1 of a slice whose block 0 is full
            let full: Vec<u8> = (0..bs as usize).map(|i| i as u8).collect();
            let sums1: Vec<u8> = block_sums(&full)
                .into_iter()
                .chain(block_sums(&blocks[1]))
                .collect();
            assert_eq!(
                first_bad_segment_by_parts(&sums, bs, 0, n, &parts_of(&blocks[0]), part),
                None,
                "{n}"
            );
            assert_eq!(
                first_bad_segment_by_parts(&sums1, bs, 1, n, &parts_of(&blocks[1]), part),
                None,
                "{n}"
            );
            let mut bad = blocks[0].clone();
            bad[n - 1] ^= 4;
            assert_eq!(
                first_bad_segment_by_parts(&sums, bs, 0, n, &parts_of(&bad), part),
                first_bad_segment(&sums, bs, 0, 0, &bad),
                "{n}"
            );
            assert!(first_bad_segment(&sums, bs, 0, 0, &bad).is_some());
        }
    }

    #[test]
    fn sums_find_the_bad_segment_of_any_block() {
        let bs = 4 * SUM_SEGMENT as u32;
        let blocks: Vec<Vec<u8>> = (0..3u8)
            .map(|b| {
                let n = if b == 2 { 100_000 } else { bs as usize };
                (0..n).map(|i| (i as u8).wrapping_mul(7) ^ b).collect()
            })
            .collect();
        let sums: Vec<u8> = blocks.iter().flat_map(|b| block_sums(b)).collect();
        assert_eq!(sums.len(), 4 * (4 + 4 + 2));
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(first_bad_segment(&sums, bs, i as u32, 0, b), None);
        }
        // a range of the last block, segment aligned
        let tail = &blocks[2][SUM_SEGMENT..];
        assert_eq!(first_bad_segment(&sums, bs, 2, SUM_SEGMENT, tail), None);
        let mut bad = blocks[1].clone();
        bad[3 * SUM_SEGMENT + 5] ^= 1;
        assert_eq!(
            first_bad_segment(&sums, bs, 1, 0, &bad),
            Some(3 * SUM_SEGMENT)
        );
        // a short block (cut) fails on its last segment
        let cut = &blocks[1][..bs as usize - 10];
        assert_eq!(
            first_bad_segment(&sums, bs, 1, 0, cut),
            Some(3 * SUM_SEGMENT)
        );
    }
}
