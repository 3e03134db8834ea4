//! The suites that keep engines honest (built for this crate's own tests, feature `testkit`):
//!
//! - [`conformance`]: POSIX and JuiceFS behaviour through the [`crate::Meta`] surface, one
//!   independent case per test, run on every engine;
//! - [`contract`]: the engine contract itself ([`crate::engine`]): what the core relies on an
//!   engine to keep, checked directly on every engine.

pub mod conformance;
pub mod contract;
pub mod lost;
pub mod usage;

pub use conformance::*;
pub use usage::*;
