//! Whole-block compression, as the format defines it: no header, no framing beyond the codec's.

use crate::error::{Error, ErrorKind, Result};

/// Block compression of a volume (fixed at format time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is; ranged reads work.
    None,
    /// LZ4 block format, no size prefix.
    Lz4,
    /// Zstandard, level 1.
    Zstd,
}

impl Compression {
    /// Parse a volume's `Compression` setting.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "" | "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(Error::new(
                ErrorKind::Config,
                format!("unknown compression {other:?}: use none, lz4 or zstd"),
            )),
        }
    }

    /// Compress one block.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Lz4 => Ok(lz4_flex::block::compress(data)),
            Compression::Zstd => zstd::bulk::compress(data, 1).map_err(|e| {
                Error::new(ErrorKind::Corrupt, "zstd compression failed").with_source(e)
            }),
        }
    }

    /// Decompress one block whose uncompressed length is `len`.
    pub fn decompress(self, data: &[u8], len: usize) -> Result<Vec<u8>> {
        let out = match self {
            Compression::None => return Ok(data.to_vec()),
            Compression::Lz4 => lz4_flex::block::decompress(data, len).map_err(|e| {
                Error::new(ErrorKind::Corrupt, "lz4 block does not decode").with_source(e)
            })?,
            Compression::Zstd => zstd::bulk::decompress(data, len).map_err(|e| {
                Error::new(ErrorKind::Corrupt, "zstd block does not decode").with_source(e)
            })?,
        };
        if out.len() != len {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("block decodes to {} bytes, expected {len}", out.len()),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let z = c.compress(&data).expect("compress");
            assert_eq!(c.decompress(&z, data.len()).expect("decompress"), data);
        }
        assert!(Compression::Lz4.decompress(b"garbage", 10).is_err());
        assert!(Compression::parse("brotli").is_err());
    }
}
