//! Keys and values of the transactional-KV layout, byte for byte as JuiceFS CE 1.x writes them
//! to TiKV (its `pkg/meta/tkv.go`; `../shared/FORMAT.md` section 5):
//!
//! - every key starts with the volume name and the byte `0xFD`;
//! - inode numbers inside keys are 8-byte little-endian; chunk indexes 4-byte big-endian; slice
//!   ids, session ids, lengths and timestamps 8-byte big-endian;
//! - counters (`C<name>`, slice references `K...`, link parents `A..P..`) hold 8-byte
//!   little-endian values; timestamps set directly (session expiry, pending deletions) hold
//!   8-byte big-endian ones;
//! - records inside values (attributes, entries, locks) are big-endian.
//!
//! Two additions of tidefs: block checksums of slices under `T<slice id>` (a range JuiceFS
//! never reads; it deletes it with the rest of the volume's keys), and directory guards
//! `G<ino><shard u8>`, keys that are only ever locked, never given a value (see
//! [`Keys::dir_guard`]), so they never show in a scan or a dump.

use crate::error::{Error, Result};
use crate::types::{Attr, DirStat, FileType, Ino, Quota, Timestamp};

/// The byte after the volume name in every key.
pub const NAME_END: u8 = 0xFD;

/// Length of an attribute record as JuiceFS writes it: 71 bytes of fields and one zero byte
/// (its buffer is sized 72), or 80 with ACL ids.
pub const ATTR_LEN: usize = 72;

/// Builds the keys of one volume.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Vec<u8>,
}

impl Keys {
    /// The keys of volume `name` (`tikv://pd/<name>`); an empty name means no prefix (an
    /// engine holding one volume, as memkv does).
    pub fn new(name: &str) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        if !prefix.is_empty() {
            prefix.push(NAME_END);
        }
        Self { prefix }
    }

    /// The volume's prefix (every key of the volume starts with it).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let n = self.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut k = Vec::with_capacity(n);
        k.extend_from_slice(&self.prefix);
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    /// The volume setting (format JSON).
    pub fn setting(&self) -> Vec<u8> {
        self.key(&[b"setting"])
    }

    /// Counter `name` (`nextInode`, `nextChunk`, `nextSession`, `nextTrash`, `usedSpace`,
    /// `totalInodes`, ...).
    pub fn counter(&self, name: &str) -> Vec<u8> {
        self.key(&[b"C", name.as_bytes()])
    }

    /// Every key of inode `ino` (attributes, entries, chunks, ...).
    pub fn inode_all(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes()])
    }

    /// Attributes of `ino`.
    pub fn inode(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"I"])
    }

    /// Entry `name` of directory `parent`.
    pub fn entry(&self, parent: Ino, name: &[u8]) -> Vec<u8> {
        self.key(&[b"A", &parent.to_le_bytes(), b"D", name])
    }

    /// Prefix of every entry of directory `parent` (entries sort by name after it).
    pub fn entries(&self, parent: Ino) -> Vec<u8> {
        self.key(&[b"A", &parent.to_le_bytes(), b"D"])
    }

    /// Link count of hard-linked `ino` in directory `parent`.
    pub fn parent(&self, ino: Ino, parent: Ino) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"P", &parent.to_le_bytes()])
    }

    /// Prefix of every link-parent key of `ino`.
    pub fn parents(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"P"])
    }

    /// Slice records of chunk `indx` of `ino`.
    pub fn chunk(&self, ino: Ino, indx: u32) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"C", &indx.to_be_bytes()])
    }

    /// Prefix of every chunk key of `ino` (in index order after it).
    pub fn chunks(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"C"])
    }

    /// Target of symlink `ino`.
    pub fn symlink(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"S"])
    }

    /// Extended attribute `name` of `ino`.
    pub fn xattr(&self, ino: Ino, name: &[u8]) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"X", name])
    }

    /// Prefix of every extended attribute of `ino`.
    pub fn xattrs(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"A", &ino.to_le_bytes(), b"X"])
    }

    /// Pending deletion of the data of `ino`, `length` bytes long.
    pub fn delfile(&self, ino: Ino, length: u64) -> Vec<u8> {
        self.key(&[b"D", &ino.to_le_bytes(), &length.to_be_bytes()])
    }

    /// BSD locks of `ino`.
    pub fn flock(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"F", &ino.to_le_bytes()])
    }

    /// POSIX locks of `ino`.
    pub fn plock(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"P", &ino.to_le_bytes()])
    }

    /// References of slice `id` of `size` bytes, less one.
    pub fn slice_ref(&self, id: u64, size: u32) -> Vec<u8> {
        self.key(&[b"K", &id.to_be_bytes(), &size.to_be_bytes()])
    }

    /// Slices set aside by a compaction at `ts` (seconds) whose first new slice is `id`.
    pub fn delslices(&self, ts: i64, id: u64) -> Vec<u8> {
        self.key(&[b"L", &(ts as u64).to_be_bytes(), &id.to_be_bytes()])
    }

    /// Expiry (seconds) of session `sid`.
    pub fn session(&self, sid: u64) -> Vec<u8> {
        self.key(&[b"SE", &sid.to_be_bytes()])
    }

    /// Information (JSON) of session `sid`.
    pub fn session_info(&self, sid: u64) -> Vec<u8> {
        self.key(&[b"SI", &sid.to_be_bytes()])
    }

    /// Inode `ino` kept alive by session `sid` (unlinked while open).
    pub fn sustained(&self, sid: u64, ino: Ino) -> Vec<u8> {
        self.key(&[b"SS", &sid.to_be_bytes(), &ino.to_le_bytes()])
    }

    /// Prefix of the inodes session `sid` keeps alive.
    pub fn sustained_of(&self, sid: u64) -> Vec<u8> {
        self.key(&[b"SS", &sid.to_be_bytes()])
    }

    /// Usage statistics of directory `ino`.
    pub fn dir_stats(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"U", &ino.to_le_bytes()])
    }

    /// Quota of directory `ino`.
    pub fn dir_quota(&self, ino: Ino) -> Vec<u8> {
        self.key(&[b"QD", &ino.to_le_bytes()])
    }

    /// Quota of user (`b"QU"`) or group (`b"QG"`) `id`.
    pub fn owner_quota(&self, tag: &'static [u8], id: u64) -> Vec<u8> {
        self.key(&[tag, &id.to_be_bytes()])
    }

    /// Block checksums of slice `id` (tidefs only).
    pub fn sums(&self, id: u64) -> Vec<u8> {
        self.key(&[b"T", &id.to_be_bytes()])
    }

    /// Number of guard keys per directory.
    pub const DIR_GUARDS: u8 = 64;

    /// Guard `shard` (< [`Self::DIR_GUARDS`]) of directory `ino`. An entry added without
    /// writing the directory's attributes locks one guard (picked by the name); removing the
    /// directory locks all of them. Under snapshot isolation that turns "rmdir saw no entries
    /// while a create added one" into a write conflict, and creates in one directory conflict
    /// only when they pick the same guard.
    pub fn dir_guard(&self, ino: Ino, shard: u8) -> Vec<u8> {
        self.key(&[b"G", &ino.to_le_bytes(), &[shard]])
    }

    /// The key of every key kind: `tag` (e.g. `b"A"`, `b"SE"`) under the volume prefix.
    pub fn kind(&self, tag: &[u8]) -> Vec<u8> {
        self.key(&[tag])
    }

    /// The part of `key` after the volume prefix and `tag`, if it has them.
    pub fn strip<'k>(&self, key: &'k [u8], tag: &[u8]) -> Option<&'k [u8]> {
        key.strip_prefix(self.prefix.as_slice())?.strip_prefix(tag)
    }

    /// A key of an inode (`A<ino><tag><rest>`): the inode, the tag byte and the rest.
    pub fn parse_inode_key<'k>(&self, key: &'k [u8]) -> Option<(Ino, u8, &'k [u8])> {
        let tail = self.strip(key, b"A")?;
        let ino = le64(tail.get(..8)?)?;
        Some((ino, *tail.get(8)?, tail.get(9..)?))
    }

    /// The inode and index of a chunk key.
    pub fn parse_chunk(&self, key: &[u8]) -> Option<(Ino, u32)> {
        match self.parse_inode_key(key)? {
            (ino, b'C', rest) => Some((ino, u32::from_be_bytes(rest.try_into().ok()?))),
            _ => None,
        }
    }

    /// The session of a session-expiry key (`SE<sid>`).
    pub fn parse_session(&self, key: &[u8]) -> Option<u64> {
        be64(self.strip(key, b"SE")?)
    }

    /// Session and inode of a kept-open key (`SS<sid><ino>`).
    pub fn parse_sustained(&self, key: &[u8]) -> Option<(u64, Ino)> {
        let tail = self.strip(key, b"SS")?;
        Some((be64(tail.get(..8)?)?, le64(tail.get(8..)?)?))
    }

    /// Inode and length of a pending-deletion key (`D<ino><length>`).
    pub fn parse_delfile(&self, key: &[u8]) -> Option<(Ino, u64)> {
        let tail = self.strip(key, b"D")?;
        Some((le64(tail.get(..8)?)?, be64(tail.get(8..)?)?))
    }

    /// Time (seconds) and first new slice of a delayed-slices key (`L<ts><id>`).
    pub fn parse_delslices(&self, key: &[u8]) -> Option<(i64, u64)> {
        let tail = self.strip(key, b"L")?;
        Some((be64(tail.get(..8)?)? as i64, be64(tail.get(8..)?)?))
    }

    /// Slice id and size of a reference key (`K<id><size>`).
    pub fn parse_slice_ref(&self, key: &[u8]) -> Option<(u64, u32)> {
        let tail = self.strip(key, b"K")?;
        let size = u32::from_be_bytes(tail.get(8..)?.try_into().ok()?);
        Some((be64(tail.get(..8)?)?, size))
    }

    /// The kept-open inodes of every session (`SS`).
    pub fn all_sustained(&self) -> Vec<u8> {
        self.kind(b"SS")
    }

    /// Every session expiry (`SE`).
    pub fn sessions(&self) -> Vec<u8> {
        self.kind(b"SE")
    }

    /// Every pending deletion (`D`), or those of `ino`.
    pub fn delfiles(&self, ino: Option<Ino>) -> Vec<u8> {
        match ino {
            Some(ino) => self.key(&[b"D", &ino.to_le_bytes()]),
            None => self.kind(b"D"),
        }
    }

    /// Every record of delayed slices (`L`).
    pub fn all_delslices(&self) -> Vec<u8> {
        self.kind(b"L")
    }

    /// Every slice reference (`K`).
    pub fn slice_refs(&self) -> Vec<u8> {
        self.kind(b"K")
    }

    /// Every BSD lock (`F`) or POSIX lock (`P`) value: `posix` picks which.
    pub fn all_locks(&self, posix: bool) -> Vec<u8> {
        self.kind(if posix { b"P" } else { b"F" })
    }

    /// Every key of every inode (`A`): nodes, entries, chunks, ...
    pub fn all_inodes(&self) -> Vec<u8> {
        self.kind(b"A")
    }

    /// The guard a name of directory `ino` locks (one of [`Self::DIR_GUARDS`], by an FNV-1a
    /// hash of the name, so creates of different names rarely pick the same).
    pub fn dir_guard_of(&self, ino: Ino, name: &[u8]) -> Vec<u8> {
        let hash = name.iter().fold(0x811c_9dc5_u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        self.dir_guard(ino, (hash % u32::from(Self::DIR_GUARDS)) as u8)
    }
}

/// The first key after every key that starts with `prefix` (the end of a prefix scan).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    // all 0xFF (or empty): the end of the key space
    Vec::new()
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(a)
}

/// A little-endian u64 from 8 bytes.
pub fn le64(b: &[u8]) -> Option<u64> {
    let a: [u8; 8] = b.try_into().ok()?;
    Some(u64::from_le_bytes(a))
}

/// A big-endian u64 from 8 bytes.
pub fn be64(b: &[u8]) -> Option<u64> {
    let a: [u8; 8] = b.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

/// The attribute record of `a`.
pub fn encode_attr(a: &Attr) -> Vec<u8> {
    let mut b = Vec::with_capacity(ATTR_LEN);
    b.push(a.flags);
    b.extend_from_slice(&((u16::from(a.typ.code()) << 12) | (a.mode & 0o7777)).to_be_bytes());
    b.extend_from_slice(&a.uid.to_be_bytes());
    b.extend_from_slice(&a.gid.to_be_bytes());
    for t in [a.atime, a.mtime, a.ctime] {
        b.extend_from_slice(&t.sec.to_be_bytes());
        b.extend_from_slice(&t.nsec.to_be_bytes());
    }
    b.extend_from_slice(&a.nlink.to_be_bytes());
    b.extend_from_slice(&a.length.to_be_bytes());
    b.extend_from_slice(&a.rdev.to_be_bytes());
    b.extend_from_slice(&a.parent.to_be_bytes());
    // JuiceFS sizes the buffer at 72 and writes 71: the last byte stays zero
    b.resize(ATTR_LEN, 0);
    b
}

/// The attributes of `ino` from its record.
pub fn decode_attr(ino: Ino, b: &[u8]) -> Result<Attr> {
    if b.len() < 63 {
        return Err(Error::corrupt(format!(
            "attribute record of inode {ino} is {} bytes",
            b.len()
        )));
    }
    let mode = u16::from_be_bytes([b[1], b[2]]);
    let code = (mode >> 12) as u8;
    let typ = FileType::from_code(code)
        .ok_or_else(|| Error::corrupt(format!("inode {ino} has unknown type {code}")))?;
    let ts = |i: usize| Timestamp {
        sec: u64_at(b, i) as i64,
        nsec: u32_at(b, i + 8),
    };
    Ok(Attr {
        ino,
        typ,
        flags: b[0],
        mode: mode & 0o7777,
        uid: u32_at(b, 3),
        gid: u32_at(b, 7),
        atime: ts(11),
        mtime: ts(23),
        ctime: ts(35),
        nlink: u32_at(b, 47),
        length: u64_at(b, 51),
        rdev: u32_at(b, 59),
        parent: if b.len() >= 71 { u64_at(b, 63) } else { 0 },
    })
}

/// An entry value: type and inode.
pub fn encode_entry(typ: FileType, ino: Ino) -> Vec<u8> {
    let mut b = Vec::with_capacity(9);
    b.push(typ.code());
    b.extend_from_slice(&ino.to_be_bytes());
    b
}

/// Type and inode of an entry value.
pub fn decode_entry(b: &[u8]) -> Result<(FileType, Ino)> {
    if b.len() != 9 {
        return Err(Error::corrupt(format!("entry value of {} bytes", b.len())));
    }
    let typ = FileType::from_code(b[0])
        .ok_or_else(|| Error::corrupt(format!("entry of unknown type {}", b[0])))?;
    Ok((typ, u64_at(b, 1)))
}

/// A counter value (little-endian).
pub fn encode_counter(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// A counter value; a missing one is 0.
pub fn decode_counter(b: Option<&[u8]>) -> Result<i64> {
    match b {
        None => Ok(0),
        Some(b) => le64(b)
            .map(|v| v as i64)
            .ok_or_else(|| Error::corrupt(format!("counter value of {} bytes", b.len()))),
    }
}

/// A directly set 64-bit value: a timestamp (big-endian).
pub fn encode_i64(v: i64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// A directly set 64-bit value; a missing one is 0.
pub fn decode_i64(b: Option<&[u8]>) -> Result<i64> {
    match b {
        None => Ok(0),
        Some(b) => be64(b)
            .map(|v| v as i64)
            .ok_or_else(|| Error::corrupt(format!("timestamp value of {} bytes", b.len()))),
    }
}

/// Directory statistics: length, space, inodes (24 bytes, big-endian).
pub fn encode_dir_stat(st: &DirStat) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    for v in [st.length, st.space, st.inodes] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

/// Directory statistics as [`encode_dir_stat`] stores them.
pub fn decode_dir_stat(b: &[u8]) -> Result<DirStat> {
    if b.len() != 24 {
        return Err(Error::corrupt(format!(
            "directory statistics of {} bytes",
            b.len()
        )));
    }
    Ok(DirStat {
        length: u64_at(b, 0) as i64,
        space: u64_at(b, 8) as i64,
        inodes: u64_at(b, 16) as i64,
    })
}

/// A quota: max space, max inodes, used space, used inodes (32 bytes, big-endian).
pub fn encode_quota(q: &Quota) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    for v in [q.max_space, q.max_inodes, q.used_space, q.used_inodes] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

/// A quota as [`encode_quota`] stores it.
pub fn decode_quota(b: &[u8]) -> Result<Quota> {
    if b.len() != 32 {
        return Err(Error::corrupt(format!("quota of {} bytes", b.len())));
    }
    Ok(Quota {
        max_space: u64_at(b, 0) as i64,
        max_inodes: u64_at(b, 8) as i64,
        used_space: u64_at(b, 16) as i64,
        used_inodes: u64_at(b, 24) as i64,
    })
}

pub use crate::engine::{Flock, Plock};

/// The BSD locks of one inode (17 bytes each).
pub fn encode_flocks(ls: &[Flock]) -> Vec<u8> {
    let mut b = Vec::with_capacity(17 * ls.len());
    for l in ls {
        b.extend_from_slice(&l.sid.to_be_bytes());
        b.extend_from_slice(&l.owner.to_be_bytes());
        b.push(l.ltype);
    }
    b
}

/// The BSD locks of one inode.
pub fn decode_flocks(b: &[u8]) -> Result<Vec<Flock>> {
    if !b.len().is_multiple_of(17) {
        return Err(Error::corrupt(format!(
            "flock value of {} bytes is not a multiple of 17",
            b.len()
        )));
    }
    Ok(b.chunks_exact(17)
        .map(|c| Flock {
            sid: u64_at(c, 0),
            owner: u64_at(c, 8),
            ltype: c[16],
        })
        .collect())
}

/// The POSIX locks of one inode: per owner `sid u64, owner u64, size u32, records`.
pub fn encode_plocks(ls: &[Plock]) -> Vec<u8> {
    let mut b = Vec::new();
    for l in ls {
        b.extend_from_slice(&l.sid.to_be_bytes());
        b.extend_from_slice(&l.owner.to_be_bytes());
        b.extend_from_slice(&(l.records.len() as u32).to_be_bytes());
        b.extend_from_slice(&l.records);
    }
    b
}

/// The POSIX locks of one inode.
pub fn decode_plocks(b: &[u8]) -> Result<Vec<Plock>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b.len() - i < 20 {
            return Err(Error::corrupt("plock value cut short"));
        }
        let n = u32_at(b, i + 16) as usize;
        if b.len() - i - 20 < n {
            return Err(Error::corrupt("plock value cut short"));
        }
        out.push(Plock {
            sid: u64_at(b, i),
            owner: u64_at(b, i + 8),
            records: b[i + 20..i + 20 + n].to_vec(),
        });
        i += 20 + n;
    }
    Ok(out)
}

pub use crate::posix::rules::{decode_delayed, encode_delayed};

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Keys of volume "jfs" for a fixed set of arguments, as JuiceFS CE builds them (checked
    /// by hand against its `fmtKey`: inode little-endian, the rest big-endian).
    #[test]
    fn keys_match_the_juicefs_layout() {
        let k = Keys::new("jfs");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (k.setting(), "6a6673fd73657474696e67"),
            (k.counter("nextInode"), "6a6673fd436e657874496e6f6465"),
            (k.inode(1), "6a6673fd41010000000000000049"),
            (k.entry(1, b"a"), "6a6673fd4101000000000000004461"),
            (
                k.parent(0x1234, 1),
                "6a6673fd413412000000000000500100000000000000",
            ),
            (k.chunk(2, 3), "6a6673fd4102000000000000004300000003"),
            (k.symlink(2), "6a6673fd41020000000000000053"),
            (k.xattr(2, b"u"), "6a6673fd4102000000000000005875"),
            (
                k.delfile(5, 4096),
                "6a6673fd4405000000000000000000000000001000",
            ),
            (k.flock(5), "6a6673fd460500000000000000"),
            (k.plock(5), "6a6673fd500500000000000000"),
            (k.slice_ref(7, 4096), "6a6673fd4b000000000000000700001000"),
            (
                k.delslices(1_700_000_000, 9),
                "6a6673fd4c000000006553f1000000000000000009",
            ),
            (k.session(3), "6a6673fd53450000000000000003"),
            (k.session_info(3), "6a6673fd53490000000000000003"),
            (
                k.sustained(3, 9),
                "6a6673fd535300000000000000030900000000000000",
            ),
        ];
        for (key, want) in cases {
            assert_eq!(hex(&key), want);
        }
        assert_eq!(Keys::new("").inode(1), b"A\x01\0\0\0\0\0\0\0I".to_vec());
    }

    #[test]
    fn attribute_records_are_72_bytes_big_endian() {
        let a = Attr {
            ino: 9,
            typ: FileType::File,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            atime: Timestamp { sec: 1, nsec: 2 },
            mtime: Timestamp { sec: 3, nsec: 4 },
            ctime: Timestamp { sec: 5, nsec: 6 },
            nlink: 1,
            length: 4097,
            rdev: 0,
            parent: 1,
            flags: 0,
        };
        let b = encode_attr(&a);
        assert_eq!(b.len(), ATTR_LEN);
        assert_eq!(
            hex(&b),
            concat!(
                "00",       // flags
                "11a4",     // type 1 << 12 | 0644
                "000003e8", // uid
                "00000064", // gid
                "0000000000000001",
                "00000002",
                "0000000000000003",
                "00000004",
                "0000000000000005",
                "00000006",
                "00000001",         // nlink
                "0000000000001001", // length
                "00000000",         // rdev
                "0000000000000001", // parent
                "00"                // JuiceFS's unused last byte
            )
        );
        assert_eq!(decode_attr(9, &b).expect("decode"), a);
        // a record with ACL ids (80 bytes) decodes too
        let mut acl = b[..71].to_vec();
        acl.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(decode_attr(9, &acl).expect("decode acl"), a);
        assert!(decode_attr(9, &b[..40]).is_err());
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(hex(&encode_entry(FileType::Dir, 5)), "020000000000000005");
        assert_eq!(
            decode_entry(&encode_entry(FileType::Symlink, 77)).expect("entry"),
            (FileType::Symlink, 77)
        );
        assert_eq!(hex(&encode_counter(2)), "0200000000000000");
        assert_eq!(decode_counter(None).expect("none"), 0);
        assert_eq!(hex(&encode_i64(2)), "0000000000000002");
        let fl = vec![
            Flock {
                sid: 1,
                owner: 2,
                ltype: b'W',
            },
            Flock {
                sid: 3,
                owner: 4,
                ltype: b'R',
            },
        ];
        assert_eq!(decode_flocks(&encode_flocks(&fl)).expect("flocks"), fl);
        let pl = vec![
            Plock {
                sid: 1,
                owner: 2,
                records: vec![7; 24],
            },
            Plock {
                sid: 1,
                owner: 3,
                records: vec![],
            },
        ];
        assert_eq!(decode_plocks(&encode_plocks(&pl)).expect("plocks"), pl);
        assert!(decode_plocks(&[0; 10]).is_err());
        assert_eq!(hex(&encode_delayed(&[(1, 2)])), "000000000000000100000002");
        assert_eq!(prefix_end(b"ab\xff"), b"ac".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), Vec::<u8>::new());
    }
}
