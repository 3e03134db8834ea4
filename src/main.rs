use clap::Parser;

/// The mount moves 4 MiB block buffers between threads all the time; glibc malloc maps and unmaps
/// each one, and the resulting mmap-lock contention with the kernel's copies from user memory
/// cost more than half the write throughput. mimalloc keeps freed blocks for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use tidefs::cmd::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidefs: {e}");
            ExitCode::FAILURE
        }
    }
}
