//! The kernel boundary: the only code that names fuser types.
//!
//! Every request is answered on the tokio runtime, so a slow metadata transaction or object read
//! never holds up other requests; the FUSE reader threads only decode and dispatch.

mod adapter;
pub mod errno;
mod passthrough;

pub use adapter::{mount_options, TidefsFs};
