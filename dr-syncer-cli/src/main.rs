//! Entry point of `dr-syncer-cli`; see the library crate for everything else.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: a first copy allocates and frees a few JSON trees per object; glibc's allocator took about a
/// quarter of the CLI's CPU there, CPU the API server on the same machine could use (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = dr_syncer_cli::Args::parse_from(dr_syncer_cli::normalize_go_flags(std::env::args()));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dr-syncer-cli: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dr_syncer_cli::run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dr-syncer-cli: {}", dr_syncer_cli::error_message(&err));
            ExitCode::from(dr_syncer_cli::exit_code(&err))
        }
    }
}
