// The same test-engine switches as the metadata crate's (see meta/build.rs).
include!("meta/build.rs");
