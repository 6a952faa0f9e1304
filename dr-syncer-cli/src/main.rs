//! Entry point of `dr-syncer-cli`; see the library crate for everything else.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match dr_syncer_cli::run(dr_syncer_cli::Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dr-syncer-cli: {err:#}");
            ExitCode::FAILURE
        }
    }
}
