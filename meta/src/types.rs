//! The metadata data model: inodes, attributes, entries, the volume format.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An inode number. Root is 1; numbers are never reused.
pub type Ino = u64;

/// The root directory.
pub const ROOT_INODE: Ino = 1;
/// The trash root directory (`.trash` in the root).
pub const TRASH_INODE: Ino = 0x7FFF_FFFF_1000_0000;
/// First inode number of the virtual files that live at the root.
pub const VIRTUAL_INODE_BASE: Ino = 0x7FFF_FFFF_0000_0000;
/// Name of the trash directory at the root.
pub const TRASH_NAME: &str = ".trash";
/// The longest name of one directory entry, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The longest symlink target, in bytes.
pub const MAX_SYMLINK_LEN: usize = 4096;
/// Logical split of file data (64 MiB), fixed by the format.
pub const CHUNK_SIZE: u64 = 64 << 20;
/// Length reported for directories.
pub const DIR_LENGTH: u64 = 4096;
/// Largest file length accepted: 2^31 chunks (128 PiB), as JuiceFS (`ChunkSize << 31`); past it
/// a chunk index would not fit the format's 32-bit (signed, in JuiceFS) field. Writes, truncates
/// and fallocates past it are EFBIG.
pub const MAX_FILE_LEN: u64 = CHUNK_SIZE << 31;

/// `st_mode` bits for the special permission flags.
pub const S_ISUID: u16 = 0o4000;
/// Set-group-id.
pub const S_ISGID: u16 = 0o2000;
/// Sticky bit.
pub const S_ISVTX: u16 = 0o1000;

/// Kind of inode, with the numbers the JuiceFS format stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileType {
    /// Regular file (1).
    File,
    /// Directory (2).
    Dir,
    /// Symbolic link (3).
    Symlink,
    /// FIFO (4).
    Fifo,
    /// Block device (5).
    BlockDev,
    /// Character device (6).
    CharDev,
    /// Unix socket (7).
    Socket,
}

impl FileType {
    /// The format's number for this type.
    pub fn code(self) -> u8 {
        match self {
            FileType::File => 1,
            FileType::Dir => 2,
            FileType::Symlink => 3,
            FileType::Fifo => 4,
            FileType::BlockDev => 5,
            FileType::CharDev => 6,
            FileType::Socket => 7,
        }
    }

    /// The type stored as `code`, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => FileType::File,
            2 => FileType::Dir,
            3 => FileType::Symlink,
            4 => FileType::Fifo,
            5 => FileType::BlockDev,
            6 => FileType::CharDev,
            7 => FileType::Socket,
            _ => return None,
        })
    }

    /// The type named by the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & 0o170000 {
            0o100000 => FileType::File,
            0o040000 => FileType::Dir,
            0o120000 => FileType::Symlink,
            0o010000 => FileType::Fifo,
            0o060000 => FileType::BlockDev,
            0o020000 => FileType::CharDev,
            0o140000 => FileType::Socket,
            _ => return None,
        })
    }
}

/// A timestamp as the format keeps it: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (may be negative).
    pub sec: i64,
    /// Nanoseconds within the second, < 1e9.
    pub nsec: u32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Microseconds since the epoch, as the SQL layout stores them.
    pub fn to_micros(self) -> i64 {
        self.sec
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(self.nsec / 1000))
    }

    /// The sub-microsecond rest, in nanoseconds, as the SQL layout stores it.
    pub fn sub_micro_nanos(self) -> i64 {
        i64::from(self.nsec % 1000)
    }

    /// Rebuild from the SQL layout's microseconds and nanosecond rest.
    pub fn from_micros(micros: i64, nsec_rest: i64) -> Self {
        let sec = micros.div_euclid(1_000_000);
        let us = micros.rem_euclid(1_000_000);
        let rest = nsec_rest.clamp(0, 999);
        Self {
            sec,
            nsec: (us * 1000 + rest) as u32,
        }
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        if self.sec >= 0 {
            UNIX_EPOCH + Duration::new(self.sec as u64, self.nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.sec.unsigned_abs())
                + Duration::from_nanos(u64::from(self.nsec))
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut sec = -(d.as_secs() as i64);
                let mut nsec = d.subsec_nanos();
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                Self { sec, nsec }
            }
        }
    }
}

/// Attributes of one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Kind of inode.
    pub typ: FileType,
    /// Permission bits including suid/sgid/sticky (`mode & 0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last data change.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Number of names.
    pub nlink: u32,
    /// Length in bytes (4096 for directories, target length for symlinks).
    pub length: u64,
    /// Device number for device nodes.
    pub rdev: u32,
    /// Parent directory, 0 for hard-linked inodes.
    pub parent: Ino,
    /// Flags as the format stores them (immutable/append-only bits).
    pub flags: u8,
}

impl Attr {
    /// The full `st_mode`: type bits and permission bits.
    pub fn st_mode(&self) -> u32 {
        let fmt = match self.typ {
            FileType::File => 0o100000,
            FileType::Dir => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::Fifo => 0o010000,
            FileType::BlockDev => 0o060000,
            FileType::CharDev => 0o020000,
            FileType::Socket => 0o140000,
        };
        fmt | u32::from(self.mode & 0o7777)
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.typ == FileType::Dir
    }
}

/// A directory entry as `readdir` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name (bytes; not necessarily UTF-8).
    pub name: Vec<u8>,
    /// Inode the entry names.
    pub ino: Ino,
    /// Kind of that inode.
    pub typ: FileType,
    /// Attributes, when asked for (readdirplus).
    pub attr: Option<Attr>,
    /// Opaque resume position: a later `readdir` with `after = cursor` continues past this entry.
    pub cursor: u64,
}

/// Who asks: the credentials of the calling process.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups, when known (empty when not looked up).
    pub gids: Vec<u32>,
    /// Calling process.
    pub pid: u32,
    /// Whether the metadata layer should check permission bits itself. False when the kernel
    /// already checked (FUSE `default_permissions`), since it knows all supplementary groups.
    pub check_permission: bool,
}

impl Ctx {
    /// The superuser, as used by administrative commands.
    pub fn root() -> Self {
        Self::default()
    }

    /// Whether the caller is in group `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }
}

/// Which attributes a `setattr` changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u16>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
}

/// A time given to `setattr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    /// The current time (UTIME_NOW).
    Now,
    /// A given time.
    At(Timestamp),
}

/// Flags of `rename`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenameFlags {
    /// Fail with EEXIST when the target exists.
    pub noreplace: bool,
    /// Swap the two names atomically.
    pub exchange: bool,
}

/// Modes of `fallocate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FallocMode {
    /// Do not change the file length.
    pub keep_size: bool,
    /// Deallocate the range (reads return zeros); requires keep_size.
    pub punch_hole: bool,
    /// Zero the range.
    pub zero_range: bool,
}

/// What a lock request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Shared (F_RDLCK, LOCK_SH).
    Read,
    /// Exclusive (F_WRLCK, LOCK_EX).
    Write,
    /// Release (F_UNLCK, LOCK_UN).
    Unlock,
}

/// A POSIX (`fcntl`) byte-range lock; `end` is inclusive (`u64::MAX` or `i64::MAX` = to the end
/// of the file), as the kernel passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixLock {
    /// Read, write or unlock.
    pub kind: LockKind,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// Process holding or asking (reported by `F_GETLK`).
    pub pid: u32,
}

/// Numbers for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Capacity in bytes.
    pub total_space: u64,
    /// Free bytes.
    pub avail_space: u64,
    /// Inodes in use.
    pub used_inodes: u64,
    /// Inodes still available.
    pub avail_inodes: u64,
}

/// A live client session, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session id.
    #[serde(skip)]
    pub sid: u64,
    /// Expiry, seconds since the epoch.
    #[serde(skip)]
    pub expire: i64,
    /// Client version.
    #[serde(rename = "Version")]
    pub version: String,
    /// Host the client runs on.
    #[serde(rename = "HostName")]
    pub host_name: String,
    /// Mount point.
    #[serde(rename = "MountPoint")]
    pub mount_point: String,
    /// Mount time (RFC 3339).
    #[serde(rename = "MountTime", default)]
    pub mount_time: String,
    /// Client process id.
    #[serde(rename = "ProcessID")]
    pub process_id: u32,
}

/// What holds objects besides the chunks of files, as `gc` accounts for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Slices set aside by compaction while the trash may still need them (`jfs_delslices`):
    /// (id, size, seconds since the epoch when set aside).
    pub delayed: Vec<(u64, u32, i64)>,
    /// Slice references at zero whose objects were not deleted yet (JuiceFS keeps such rows
    /// until its deleter is done): (id, size).
    pub unreferenced: Vec<(u64, u32)>,
    /// Files removed whose data is still to be freed (`jfs_delfile`).
    pub pending_files: u64,
}

/// Usage of the entries directly in one directory, as JuiceFS keeps it (`jfs_dir_stats`, `U`
/// keys): the lengths of its regular files, their space (each 4 KiB aligned, 4 KiB at least;
/// 4 KiB for every other entry) and its number of entries. Also a change of such usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStat {
    /// Sum of the lengths of the regular files.
    pub length: i64,
    /// Space in bytes.
    pub space: i64,
    /// Entries.
    pub inodes: i64,
}

impl DirStat {
    /// The usage one entry of type `typ` and length `length` adds to its directory.
    pub fn of_entry(typ: FileType, length: u64) -> Self {
        let length = if typ == FileType::File { length } else { 0 };
        DirStat {
            length: length as i64,
            space: align4k(length),
            inodes: 1,
        }
    }

    /// Add `o` to this one.
    pub fn add(&mut self, o: DirStat) {
        self.length += o.length;
        self.space += o.space;
        self.inodes += o.inodes;
    }

    /// Whether it changes nothing.
    pub fn is_zero(&self) -> bool {
        *self == DirStat::default()
    }
}

impl std::ops::Neg for DirStat {
    type Output = DirStat;
    /// The opposite change.
    fn neg(self) -> DirStat {
        DirStat {
            length: -self.length,
            space: -self.space,
            inodes: -self.inodes,
        }
    }
}

/// The space JuiceFS counts for `len` bytes of a file: 4 KiB aligned, and 4 KiB for an empty
/// one (every inode takes 4 KiB in `usedSpace`).
pub fn align4k(len: u64) -> i64 {
    (len.max(1).div_ceil(4096) * 4096) as i64
}

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// A directory and everything below it (key: its inode).
    Dir,
    /// What one user owns (key: uid).
    User,
    /// What one group owns (key: gid).
    Group,
}

impl QuotaKind {
    /// JuiceFS's number for the kind (`qtype` of `jfs_user_group_quota`).
    pub fn code(self) -> u32 {
        match self {
            QuotaKind::Dir => 0,
            QuotaKind::User => 1,
            QuotaKind::Group => 2,
        }
    }

    /// The kind JuiceFS numbers `code`.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(QuotaKind::Dir),
            1 => Some(QuotaKind::User),
            2 => Some(QuotaKind::Group),
            _ => None,
        }
    }
}

/// A quota: limits (0 or less: none) and usage, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Bytes allowed (4 KiB per inode counted as JuiceFS counts them).
    pub max_space: i64,
    /// Inodes allowed.
    pub max_inodes: i64,
    /// Bytes used.
    pub used_space: i64,
    /// Inodes used.
    pub used_inodes: i64,
}

impl Quota {
    /// Whether using `space` and `inodes` more, on top of `pending` not yet stored, goes past
    /// a limit. Only growth is refused.
    pub fn exceeded_by(&self, pending: (i64, i64), space: i64, inodes: i64) -> bool {
        (space > 0 && self.max_space > 0 && self.used_space + pending.0 + space > self.max_space)
            || (inodes > 0
                && self.max_inodes > 0
                && self.used_inodes + pending.1 + inodes > self.max_inodes)
    }
}

/// What a directory tree holds, as `summary` reports it: the tree's root counts too (4 KiB
/// and one directory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sum of the lengths of the regular files.
    pub length: u64,
    /// Space, 4 KiB per inode at least (as [`align4k`] counts it).
    pub size: u64,
    /// Inodes that are not directories.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
}

impl Summary {
    /// Add `o` to this one.
    pub fn add(&mut self, o: &Summary) {
        self.length += o.length;
        self.size += o.size;
        self.files += o.files;
        self.dirs += o.dirs;
    }
}

/// A summary of a directory and of its largest subdirectories, down to a depth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSummary {
    /// Name of the directory in its parent (empty for the root asked for).
    pub name: Vec<u8>,
    /// Its inode.
    pub ino: Ino,
    /// What it holds, all levels below included.
    pub summary: Summary,
    /// Its subdirectories (largest first) while the depth lasts.
    pub children: Vec<TreeSummary>,
}
