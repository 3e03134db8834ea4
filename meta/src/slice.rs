//! Slice records of a chunk and their resolution.
//!
//! A chunk's metadata is an append-only list of 24-byte big-endian records, one per write
//! (`pos u32 | id u64 | size u32 | off u32 | len u32`). Reading resolves the list newest record
//! wins, byte by byte; bytes that no record covers read as zeros, and so do bytes of records with
//! slice id 0 (written by truncate and hole punching).

use crate::error::{Error, Result};

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
        fn records_round_trip(pos: u32, id: u64, size: u32, off: u32, len: u32) {
            let s = Slice { pos, id, size, off, len };
            prop_assert_eq!(decode_all(&encode_all(&[s, s])).expect("decode"), vec![s, s]);
        }
    }
}
