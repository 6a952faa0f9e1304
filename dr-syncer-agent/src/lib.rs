//! `dr-syncer-agent`: the PVC data path's two ends.
//!
//! - `serve` — the **reader**, a DaemonSet pod on the nodes of the source cluster: OpenSSH's sshd with a
//!   generated configuration in which every login runs `ssh-command`, the forced command that serves
//!   only an rsync sender rooted at an allowed, mounted volume ([`serve`], [`command`], [`forced`],
//!   [`allow`]).
//! - `mover` — the **writer**, a short-lived pod in the DR namespace that mounts the DR volume and pulls
//!   with rsync through `ssh-bridge`, an SSH connection that checks the pinned host key before
//!   authenticating ([`mover`], `dr_syncer_core::ssh`).
//!
//! Helpers: `probe` (connectivity check from the writer side), `allow` / `revoke` (edit the
//! allow-list), `volume-path` (find a pod's volume under the kubelet root, [`kubelet`]).
//! `docs/data-path.md` in the repository explains the design and the security model.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

pub mod allow;
pub mod beneath;
pub mod checksum;
pub mod command;
pub mod forced;
pub mod grants;
pub mod kubelet;
pub mod mover;
pub mod serve;
pub mod usage;

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
    /// What to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The agent's modes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the reader: sshd with the forced command, key refresh, health endpoint.
    Serve(serve::ServeArgs),
    /// The forced command of every login to the reader (run by sshd; reads SSH_ORIGINAL_COMMAND).
    SshCommand(command::CommandArgs),
    /// rsync's remote shell: a verified SSH connection to the reader (run by the mover's rsync).
    SshBridge(BridgeArgs),
    /// Run the writer: pull a volume from a reader into a local directory (JSON lines on stdout).
    Mover(mover::MoverArgs),
    /// Check that a reader is reachable, presents the pinned host key and accepts the client key.
    Probe(mover::ProbeArgs),
    /// Hold a volume mounted until stopped (the read-only mount pod); exits 0 on SIGTERM or SIGINT.
    Hold,
    /// Allow a volume path on this node (an allow-list entry).
    Allow {
        /// The allow-list directory.
        #[arg(long)]
        allow_dir: PathBuf,
        /// Entry name.
        #[arg(long)]
        name: String,
        /// The volume's path.
        #[arg(long)]
        path: PathBuf,
    },
    /// Remove an allow-list entry.
    Revoke {
        /// The allow-list directory.
        #[arg(long)]
        allow_dir: PathBuf,
        /// Entry name.
        #[arg(long)]
        name: String,
    },
    /// Print the host path of a pod's volume under the kubelet root.
    VolumePath {
        /// The kubelet root.
        #[arg(long, default_value = "/var/lib/kubelet")]
        kubelet_root: PathBuf,
        /// The pod's UID.
        #[arg(long)]
        pod_uid: String,
        /// The PV name (PVC volumes) or the pod's volume name.
        #[arg(long)]
        volume: String,
    },
}

/// Arguments of the SSH bridge, as rsync calls its remote shell: `[-l USER] HOST COMMAND...`.
#[derive(Debug, clap::Args)]
pub struct BridgeArgs {
    /// The bridge configuration (JSON, written by the mover).
    #[arg(long)]
    pub config: PathBuf,
    /// Where to record how the connection went.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Login user given by rsync (the configuration's user is used).
    #[arg(short = 'l')]
    pub login: Option<String>,
    /// Host given by rsync (the configuration's host is used).
    pub host: String,
    /// The remote command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
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
    let Some(command) = args.command else {
        anyhow::bail!("no mode given: use serve, mover, probe, … (see --help)");
    };
    match command {
        Command::Serve(a) => {
            init_tracing();
            runtime()?.block_on(serve::run(a))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SshCommand(a) => Ok(exit(command::run(&a))),
        Command::SshBridge(a) => {
            let code = dr_syncer_core::ssh::run_bridge(&a.config, a.status.as_deref(), &a.command.join(" "));
            Ok(exit(code))
        }
        Command::Mover(a) => {
            init_tracing();
            Ok(ExitCode::from(runtime()?.block_on(mover::run_mover(a))))
        }
        Command::Probe(a) => Ok(ExitCode::from(mover::run_probe(a))),
        Command::Hold => {
            runtime()?.block_on(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Allow {
            allow_dir,
            name,
            path,
        } => {
            let entry = allow::AllowList::new(allow_dir).grant(&name, &path)?;
            println!("{}", entry.path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke { allow_dir, name } => {
            allow::AllowList::new(allow_dir).revoke(&name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::VolumePath {
            kubelet_root,
            pod_uid,
            volume,
        } => {
            println!(
                "{}",
                kubelet::pod_volume_path(&kubelet_root, &pod_uid, &volume)?.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}
