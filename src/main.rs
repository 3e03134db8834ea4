use clap::Parser;

/// The mount moves 4 MiB block buffers between threads all the time; glibc malloc maps and unmaps
/// each one, and the resulting mmap-lock contention with the kernel's copies from user memory
/// cost more than half the write throughput. mimalloc keeps freed blocks for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use tidefs::cmd::{self, Cli};

/// mimalloc option number of `purge_delay` (mimalloc.h, `mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Return freed memory to the OS 100 ms after it is freed: later, a long write holds far more
    // memory than it uses (with the daemon's lazy arena commit, see `mount -d`); at once, block
    // buffers freed and taken again within a stream cost a page fault and zeroing per page
    // (figures: docs/design/0002). An idle daemon frees nothing on its own, so the mount also
    // collects once a second (`cmd::mount`). An explicit MIMALLOC_PURGE_DELAY in the environment
    // wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an integer option; any value is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100) };
    }
    let cli = Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidefs: {e}");
            ExitCode::FAILURE
        }
    }
}
