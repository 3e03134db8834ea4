use clap::Parser;
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
