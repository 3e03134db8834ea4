//! The conformance suite: one list of independent cases that every metadata engine must pass.
//!
//! Each case gets a freshly formatted volume from the engine's fixture, so the first failure never
//! hides the others. An engine's test file calls [`run_case`] once per case name (see
//! `meta/tests/sqlite.rs`), which makes every case its own test in the runner's report.
