//! Entry point of `dr-syncer-operator`; see the library crate for everything else.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match dr_syncer_operator::run(dr_syncer_operator::Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dr-syncer-operator: {err:#}");
            ExitCode::FAILURE
        }
    }
}
