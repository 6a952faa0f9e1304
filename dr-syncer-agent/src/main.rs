//! Entry point of `dr-syncer-agent`; see the library crate for everything else.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match dr_syncer_agent::run(dr_syncer_agent::Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dr-syncer-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
