//! Slice records of a chunk and their resolution.
//!
//! A chunk's metadata is an append-only list of 24-byte big-endian records, one per write
//! (`pos u32 | id u64 | size u32 | off u32 | len u32`). Reading resolves the list newest record
//! wins, byte by byte; bytes that no record covers read as zeros, and so do bytes of records with
//! slice id 0 (written by truncate and hole punching).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::types::CHUNK_SIZE;

/// Length of one encoded record.
pub const SLICE_RECORD_LEN: usize = 24;

/// One record: the window `[off, off + len)` of slice `id` (whose object is `size` bytes long)
/// placed at `pos` in the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Slice {
    /// Offset of the window in the chunk.
    pub pos: u32,
    /// Slice id; 0 means zeros.
    pub id: u64,
    /// Full length of the slice object.
    pub size: u32,
    /// Start of the window inside the slice.
    pub off: u32,
    /// Length of the window.
    pub len: u32,
}

impl Slice {
    /// A record of zeros over `[pos, pos + len)`.
    pub fn zeros(pos: u32, len: u32) -> Self {
        Slice {
            pos,
            id: 0,
            size: len,
            off: 0,
            len,
        }
    }

    /// Encode as the 24-byte record.
    pub fn encode(&self) -> [u8; SLICE_RECORD_LEN] {
        let mut b = [0u8; SLICE_RECORD_LEN];
        b[0..4].copy_from_slice(&self.pos.to_be_bytes());
        b[4..12].copy_from_slice(&self.id.to_be_bytes());
        b[12..16].copy_from_slice(&self.size.to_be_bytes());
        b[16..20].copy_from_slice(&self.off.to_be_bytes());
        b[20..24].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Decode one record.
    pub fn decode(b: &[u8; SLICE_RECORD_LEN]) -> Self {
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[4..12]);
        Slice {
            pos: u32_at(0),
            id: u64::from_be_bytes(id),
            size: u32_at(12),
            off: u32_at(16),
            len: u32_at(20),
        }
    }

    /// Chunk offset one past the window.
    pub fn end(&self) -> u64 {
        u64::from(self.pos) + u64::from(self.len)
    }
}

/// Decode a whole chunk value.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Slice>> {
    if !buf.len().is_multiple_of(SLICE_RECORD_LEN) {
        return Err(Error::corrupt(format!(
            "chunk slice list is {} bytes, not a multiple of {SLICE_RECORD_LEN}",
            buf.len()
        )));
    }
    Ok(buf
        .chunks_exact(SLICE_RECORD_LEN)
        .map(|c| {
            let mut rec = [0u8; SLICE_RECORD_LEN];
            rec.copy_from_slice(c);
            Slice::decode(&rec)
        })
        .collect())
}

/// Encode a list of records.
pub fn encode_all(slices: &[Slice]) -> Vec<u8> {
    let mut out = Vec::with_capacity(slices.len() * SLICE_RECORD_LEN);
    for s in slices {
        out.extend_from_slice(&s.encode());
    }
    out
}

/// A resolved run of the chunk: `[pos, pos + len)` reads bytes `[off, off + len)` of slice `id`
/// (zeros when `id` is 0). Runs are sorted, disjoint, and only cover written ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset in the chunk.
    pub pos: u64,
    /// Length of the run.
    pub len: u64,
    /// Slice id (0 = zeros).
    pub id: u64,
    /// Full length of the slice object.
    pub size: u32,
    /// Offset inside the slice.
    pub off: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.pos + self.len
    }
}

/// Resolve records (oldest first) into disjoint runs, newest record winning.
pub fn resolve(slices: &[Slice]) -> Vec<Segment> {
    let mut segs: Vec<Segment> = Vec::new();
    for s in slices.iter().filter(|s| s.len > 0) {
        let new = Segment {
            pos: u64::from(s.pos),
            len: u64::from(s.len),
            id: s.id,
            size: s.size,
            off: u64::from(s.off),
        };
        let (start, end) = (new.pos, new.end());
        // First run that ends after `start`: everything before it is untouched.
        let first = segs.partition_point(|g| g.end() <= start);
        let mut keep_tail = Vec::new();
        let mut i = first;
        let mut head: Option<Segment> = None;
        while i < segs.len() && segs[i].pos < end {
            let g = segs[i];
            if g.pos < start {
                head = Some(Segment {
                    len: start - g.pos,
                    ..g
                });
            }
            if g.end() > end {
                let cut = end - g.pos;
                keep_tail.push(Segment {
                    pos: end,
                    len: g.end() - end,
                    off: g.off + cut,
                    ..g
                });
            }
            i += 1;
        }
        let mut replacement = Vec::with_capacity(3);
        replacement.extend(head);
        replacement.push(new);
        replacement.extend(keep_tail);
        segs.splice(first..i, replacement);
    }
    segs
}

/// The records that make `[off_out, off_out + len)` of a file read as `[off_in, off_in + len)`
/// of a source file whose chunks are `src` (by chunk index; a missing chunk is a hole): the
/// source's visible runs, pointing into the same slices, and zero records over its holes and
/// zero runs. Grouped by destination chunk, in order; every record lies inside its chunk. This is
/// how `copy_file_range` shares data instead of copying it: each returned record with a slice id
/// is one more reference to that slice.
pub fn copy_plan(
    src: &BTreeMap<u32, Vec<Slice>>,
    off_in: u64,
    len: u64,
    off_out: u64,
) -> Vec<(u32, Vec<Slice>)> {
    copy_plan_in(CHUNK_SIZE, src, off_in, len, off_out)
}

fn copy_plan_in(
    chunk: u64,
    src: &BTreeMap<u32, Vec<Slice>>,
    off_in: u64,
    len: u64,
    off_out: u64,
) -> Vec<(u32, Vec<Slice>)> {
    let mut out: BTreeMap<u32, Vec<Slice>> = BTreeMap::new();
    if len == 0 {
        return Vec::new();
    }
    let end_in = off_in + len;
    // place source bytes `[at, at + n)` (slice `id` from `off`) at their destination, split at
    // destination chunk boundaries; contiguous zero records in one chunk become one
    let mut place = |at: u64, n: u64, id: u64, size: u32, off: u64| {
        let (mut d, mut n, mut off) = (at - off_in + off_out, n, off);
        while n > 0 {
            let indx = (d / chunk) as u32;
            let pos = d % chunk;
            let take = n.min(chunk - pos);
            let recs = out.entry(indx).or_default();
            match recs.last_mut() {
                Some(last) if id == 0 && last.id == 0 && last.end() == pos => {
                    last.len += take as u32;
                    last.size = last.len;
                }
                _ if id == 0 => recs.push(Slice::zeros(pos as u32, take as u32)),
                _ => recs.push(Slice {
                    pos: pos as u32,
                    id,
                    size,
                    off: off as u32,
                    len: take as u32,
                }),
            }
            d += take;
            off += take;
            n -= take;
        }
    };
    let empty = Vec::new();
    for indx in off_in / chunk..=(end_in - 1) / chunk {
        let base = indx * chunk;
        let (lo, hi) = (off_in.max(base), end_in.min(base + chunk));
        let records = src.get(&(indx as u32)).unwrap_or(&empty);
        let mut at = lo;
        for g in resolve(records) {
            let (gs, ge) = (base + g.pos, base + g.end());
            if ge <= at {
                continue;
            }
            if gs >= hi {
                break;
            }
            if gs > at {
                place(at, gs - at, 0, 0, 0);
                at = gs;
            }
            let e = ge.min(hi);
            place(at, e - at, g.id, g.size, g.off + (at - gs));
            at = e;
        }
        if at < hi {
            place(at, hi - at, 0, 0, 0);
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_layout_is_big_endian() {
        let s = Slice {
            pos: 1,
            id: 0x0102_0304_0506_0708,
            size: 5_000_000,
            off: 3,
            len: 4,
        };
        let b = s.encode();
        assert_eq!(
            b,
            [0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x4c, 0x4b, 0x40, 0, 0, 0, 3, 0, 0, 0, 4]
        );
        assert_eq!(Slice::decode(&b), s);
    }

    #[test]
    fn juicefs_written_record_decodes() {
        // A record the juicefs 1.4 binary wrote for a 5,000,000-byte file.
        let hex = "000000000000000000000001004C4B4000000000004C4B40";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let v = decode_all(&bytes).expect("decode");
        assert_eq!(
            v,
            vec![Slice {
                pos: 0,
                id: 1,
                size: 5_000_000,
                off: 0,
                len: 5_000_000
            }]
        );
    }

    #[test]
    fn bad_length_is_corrupt() {
        assert!(decode_all(&[0u8; 25]).is_err());
    }

    /// The naive model: for each byte of the chunk, which slice and which offset in it.
    fn model(slices: &[Slice], size: usize) -> Vec<Option<(u64, u64)>> {
        let mut bytes = vec![None; size];
        for s in slices {
            for i in 0..s.len as usize {
                bytes[s.pos as usize + i] = Some((s.id, u64::from(s.off) + i as u64));
            }
        }
        bytes
    }

    fn flatten(segs: &[Segment], size: usize) -> Vec<Option<(u64, u64)>> {
        let mut bytes = vec![None; size];
        for g in segs {
            for i in 0..g.len as usize {
                assert!(bytes[g.pos as usize + i].is_none(), "segments overlap");
                bytes[g.pos as usize + i] = Some((g.id, g.off + i as u64));
            }
        }
        bytes
    }

    proptest! {
        #[test]
        fn resolve_matches_byte_model(raw in proptest::collection::vec((0u32..200, 1u32..80, 0u64..5, 0u32..20), 0..30)) {
            let slices: Vec<Slice> = raw.iter().enumerate().map(|(i, &(pos, len, zero, off))| Slice {
                pos,
                id: if zero == 0 { 0 } else { i as u64 + 1 },
                size: off + len,
                off,
                len,
            }).collect();
            let segs = resolve(&slices);
            for w in segs.windows(2) {
                prop_assert!(w[0].end() <= w[1].pos);
            }
            prop_assert_eq!(flatten(&segs, 300), model(&slices, 300));
        }

        #[test]
        fn copy_plan_reproduces_the_source_range(
            src_raw in proptest::collection::vec((0u32..4, 0u32..64, 1u32..40, 0u64..4, 0u32..9), 0..16),
            dst_raw in proptest::collection::vec((0u32..4, 0u32..64, 1u32..40, 0u32..9), 0..6),
            off_in in 0u64..256,
            len in 0u64..200,
            off_out in 0u64..300,
        ) {
            const CH: u64 = 64;
            const FILE: usize = 700;
            // source and destination chunks: records clipped to their chunk, distinct ids
            let mut src: BTreeMap<u32, Vec<Slice>> = BTreeMap::new();
            for (i, &(indx, pos, len, zero, off)) in src_raw.iter().enumerate() {
                let len = len.min(CH as u32 - pos);
                let id = if zero == 0 { 0 } else { 100 + i as u64 };
                src.entry(indx).or_default().push(Slice { pos, id, size: off + len, off, len });
            }
            let mut dst: BTreeMap<u32, Vec<Slice>> = BTreeMap::new();
            for (i, &(indx, pos, len, off)) in dst_raw.iter().enumerate() {
                let len = len.min(CH as u32 - pos);
                if len == 0 { continue; }
                dst.entry(indx + 1).or_default().push(Slice { pos, id: 900 + i as u64, size: off + len, off, len });
            }
            // the file as bytes: which slice and offset, or None for zeros
            let bytes_of = |chunks: &BTreeMap<u32, Vec<Slice>>| {
                let mut b = vec![None; FILE];
                for (indx, recs) in chunks {
                    for (j, x) in model(recs, CH as usize).into_iter().enumerate() {
                        b[*indx as usize * CH as usize + j] = x.filter(|(id, _)| *id != 0);
                    }
                }
                b
            };
            let before = bytes_of(&dst);
            let plan = copy_plan_in(CH, &src, off_in, len, off_out);
            for (indx, recs) in &plan {
                for r in recs {
                    prop_assert!(r.len > 0 && r.end() <= CH, "record {:?} outside its chunk", r);
                }
                dst.entry(*indx).or_default().extend_from_slice(recs);
            }
            let after = bytes_of(&dst);
            let source = bytes_of(&src);
            for i in 0..FILE as u64 {
                if i >= off_out && i < off_out + len {
                    prop_assert_eq!(after[i as usize], source[(i - off_out + off_in) as usize], "byte {}", i);
                } else {
                    prop_assert_eq!(after[i as usize], before[i as usize], "byte {} outside the range", i);
                }
            }
        }

        #[test]
        fn records_round_trip(pos: u32, id: u64, size: u32, off: u32, len: u32) {
            let s = Slice { pos, id, size, off, len };
            prop_assert_eq!(decode_all(&encode_all(&[s, s])).expect("decode"), vec![s, s]);
        }
    }
}
