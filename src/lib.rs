//! tidefs: a distributed POSIX filesystem client that speaks the JuiceFS CE 1.x volume format.
//!
//! Data flow: kernel (FUSE) -> [`fuse`] -> [`vfs`] -> `tidefs_meta` (inodes, entries, slice
//! lists in a transactional engine) and `tidefs_chunk` (blocks in object storage). The CLI in
//! [`cmd`] drives the same crates for administration.

pub mod cmd;
pub mod control;
pub mod fuse;
pub mod vfs;
