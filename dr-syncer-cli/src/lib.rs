//! `dr-syncer-cli`: run a DR drill (stage, cutover, failback) between two clusters without an operator.
//!
//! This crate is argument parsing plus calls into `dr-syncer-core`; it has no sync logic of its own.

use std::process::ExitCode;

use clap::Parser;

/// Command-line arguments of `dr-syncer-cli`.
#[derive(Debug, Parser)]
#[command(
    name = "dr-syncer-cli",
    version,
    about = "Kubernetes DR drills: stage, cutover and failback"
)]
pub struct Args {
    /// Print build information as JSON and exit.
    #[arg(long)]
    pub version_json: bool,
}

/// Run the CLI with parsed arguments.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.version_json {
        println!(
            "{}",
            serde_json::to_string(&dr_syncer_core::version::build_info("dr-syncer-cli"))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!(
        "no drill operation is available in this build yet (stage, cutover and failback are in progress)"
    )
}
