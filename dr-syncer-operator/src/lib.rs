//! `dr-syncer-operator`: keeps a DR cluster in step with production from custom resources.
//!
//! This crate wires `dr-syncer-core` into controllers; it has no sync logic of its own.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command-line arguments of `dr-syncer-operator` (flags and environment compatible with the Go operator).
#[derive(Debug, Parser)]
#[command(
    name = "dr-syncer-operator",
    version,
    about = "Kubernetes DR operator for dr-syncer.io custom resources"
)]
pub struct Args {
    /// Address of the Prometheus metrics endpoint.
    #[arg(long, env = "METRICS_ADDR", default_value = ":8080")]
    pub metrics_bind_address: String,
    /// Address of the /healthz and /readyz probes.
    #[arg(long, env = "PROBE_ADDR", default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Print build information as JSON and exit.
    #[arg(long)]
    pub version_json: bool,
    /// What to do (default: run the controllers).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of the operator binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (YAML) and exit.
    Crd,
}

/// Run the operator with parsed arguments.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.version_json {
        println!(
            "{}",
            serde_json::to_string(&dr_syncer_core::version::build_info("dr-syncer-operator"))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    match args.command {
        Some(Command::Crd) => {
            print!("{}", dr_syncer_core::api::crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("the controllers are not available in this build yet"),
    }
}
