//! Object keys of blocks, exactly as the JuiceFS CE 1.x format lays them out.

/// Key of block `indx` (of uncompressed length `len`) of slice `id` in volume `name`.
///
/// `<name>/chunks/<id / 1e6>/<id / 1e3>/<id>_<indx>_<len>`, or with hash prefix
/// `<name>/chunks/<%02X of id % 256>/<id / 1e6>/<id>_<indx>_<len>`.
pub fn block_key(name: &str, hash_prefix: bool, id: u64, indx: u32, len: u32) -> String {
    if hash_prefix {
        format!(
            "{name}/chunks/{:02X}/{}/{id}_{indx}_{len}",
            id % 256,
            id / 1_000_000
        )
    } else {
        format!(
            "{name}/chunks/{}/{}/{id}_{indx}_{len}",
            id / 1_000_000,
            id / 1_000
        )
    }
}

/// A block object's name parsed from its key: (slice id, block index, length), and whether it
/// is a temporary file a `file` store writes before renaming (`<name>.tmp.<pid>.<seq>`).
pub fn parse_block_key(key: &str) -> Option<(u64, u32, u32, bool)> {
    let base = key.rsplit('/').next()?;
    let (name, temporary) = match base.split_once(".tmp.") {
        Some((n, _)) => (n, true),
        None => (base, false),
    };
    let mut it = name.splitn(3, '_');
    let id = it.next()?.parse().ok()?;
    let indx = it.next()?.parse().ok()?;
    let len = it.next()?.parse().ok()?;
    Some((id, indx, len, temporary))
}

/// Lengths of the blocks of a slice of `size` bytes cut in `block_size` blocks.
pub fn block_lens(size: u32, block_size: u32) -> impl Iterator<Item = (u32, u32)> {
    let n = size.div_ceil(block_size.max(1));
    (0..n).map(move |i| (i, (size - i * block_size).min(block_size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_juicefs_layout() {
        // seen in a bucket the juicefs 1.4 binary wrote
        assert_eq!(
            block_key("myjfs", false, 1, 0, 4194304),
            "myjfs/chunks/0/0/1_0_4194304"
        );
        assert_eq!(
            block_key("myjfs", false, 1, 1, 805696),
            "myjfs/chunks/0/0/1_1_805696"
        );
        assert_eq!(
            block_key("v", false, 12_345_678, 2, 10),
            "v/chunks/12/12345/12345678_2_10"
        );
        assert_eq!(
            block_key("v", true, 12_345_678, 2, 10),
            "v/chunks/4E/12/12345678_2_10"
        );
    }

    #[test]
    fn block_keys_parse_back() {
        for hp in [false, true] {
            let k = block_key("v", hp, 1_234_567, 3, 4096);
            assert_eq!(parse_block_key(&k), Some((1_234_567, 3, 4096, false)));
        }
        assert_eq!(
            parse_block_key("v/chunks/0/0/7_0_10.tmp.55.2"),
            Some((7, 0, 10, true))
        );
        assert_eq!(parse_block_key("v/chunks/0/0/junk"), None);
        assert_eq!(parse_block_key("v/chunks/0/0/7_0"), None);
        assert_eq!(parse_block_key("v/chunks/0/0/7_0_x"), None);
    }

    #[test]
    fn blocks_cover_the_slice() {
        let v: Vec<_> = block_lens(5_000_000, 4 << 20).collect();
        assert_eq!(v, vec![(0, 4194304), (1, 805696)]);
        assert_eq!(block_lens(0, 4 << 20).count(), 0);
        assert_eq!(
            block_lens(4 << 20, 4 << 20).collect::<Vec<_>>(),
            vec![(0, 4 << 20)]
        );
    }
}
