//! `dr-syncer-agent`: the PVC data path's two ends — `serve` (a command-restricted rsync-over-SSH reader next
//! to the source volume) and `mover` (the writer next to the DR volume).

use std::process::ExitCode;

use clap::Parser;

/// Command-line arguments of `dr-syncer-agent`.
#[derive(Debug, Parser)]
#[command(
    name = "dr-syncer-agent",
    version,
    about = "dr-syncer PVC data agent (rsync over SSH)"
)]
pub struct Args {
    /// Print build information as JSON and exit.
    #[arg(long)]
    pub version_json: bool,
}

/// Run the agent with parsed arguments.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.version_json {
        println!(
            "{}",
            serde_json::to_string(&dr_syncer_core::version::build_info("dr-syncer-agent"))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!("no agent mode is available in this build yet")
}
