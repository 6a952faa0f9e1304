//! `dr-syncer-cli`: run a DR drill (stage, cutover, failback) between two clusters without an operator, and
//! the one-sided steps for the day production is down (promote, fence), with status and cleanup.
//!
//! This crate is argument parsing plus calls into `dr-syncer-core` ([`dr_syncer_core::ops::Drill`],
//! [`dr_syncer_core::ops::promote`], [`dr_syncer_core::ops::fence`] and the sync engine); it has no sync
//! logic of its own. The Go CLI's flags keep working: `--mode=Stage|Cutover|Failback` (also spelled with one
//! dash, as Go's flag package allows) runs the matching subcommand.
//!
//! Exit codes ([`exit_code`]): 0 success; 1 unexpected failure; 2 usage error; 3 `diff` found drift;
//! 4 invalid input (kubeconfig, context, mapping, resource type, namespace, source and destination the
//! same); 5 a cluster could not be reached or refused a request; 6 some objects failed, or a cutover left
//! a workload inactive (see the report); 7 timed out; 8 preflight found problems that block the drill;
//! 9 the recorded site state refuses the step (e.g. a stage onto an active DR site); 130 interrupted
//! (SIGINT/SIGTERM: stopped at a safe point, this run's temporary objects removed; run it again to resume).

mod data;
mod interrupt;
mod one_side;
mod output;
mod progress;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use dr_syncer_core::{
    Error,
    api::{NamespaceMapping, NamespaceMappingSpec},
    config::{SyncConfig, parse_duration},
    engine::SyncTarget,
    kube::{
        Client, ClientOptions, ClusterConfig, KubeconfigSource, connect_with_url, custom_resource_types,
        discover, site::Recorder,
    },
    ops::{Drill, DrillOptions, DrillStep},
    plugin::PluginDir,
    resource::ResourceType,
    selection::{CLI_DEFAULT_TYPES, OPERATOR_DEFAULT_TYPES, resolve_resource_types},
};
use tracing::warn;

/// Command-line arguments of `dr-syncer-cli`.
#[derive(Debug, Parser)]
#[command(
    name = "dr-syncer-cli",
    version,
    about = "Kubernetes DR drills: stage, cutover and failback between two clusters",
    after_help = "Exit codes: 0 ok, 1 unexpected failure, 2 usage, 3 drift found (diff), 4 invalid input, \
                  5 cluster unreachable or request refused, 6 some objects failed or a workload left inactive, \
                  7 timed out, 8 preflight blocks, 9 refused by the site state, 130 interrupted."
)]
pub struct Args {
    /// What a [`Cli`] builder added (not a flag).
    #[arg(skip)]
    pub extensions: dr_syncer_core::ops::Extensions,

    /// The drill step (or use `--mode`, the Go CLI's form).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Go-CLI form of the subcommands: Stage, Cutover or Failback.
    #[arg(
        help_heading = "Clusters and namespaces",
        long,
        global = true,
        value_enum,
        ignore_case = true
    )]
    pub mode: Option<Mode>,

    /// Kubeconfig of the source (production) cluster [default: KUBECONFIG or ~/.kube/config].
    #[arg(
        help_heading = "Clusters and namespaces",
        long,
        global = true,
        env = "DR_SYNCER_SOURCE_KUBECONFIG"
    )]
    pub source_kubeconfig: Option<PathBuf>,
    /// Kubeconfig of the destination (DR) cluster [default: KUBECONFIG or ~/.kube/config].
    #[arg(
        help_heading = "Clusters and namespaces",
        long,
        global = true,
        env = "DR_SYNCER_DEST_KUBECONFIG"
    )]
    pub dest_kubeconfig: Option<PathBuf>,
    /// Context in the source kubeconfig [default: its current context].
    #[arg(help_heading = "Clusters and namespaces", long, global = true)]
    pub source_context: Option<String>,
    /// Context in the destination kubeconfig [default: its current context].
    #[arg(help_heading = "Clusters and namespaces", long, global = true)]
    pub dest_context: Option<String>,
    /// Source namespace (or from `--mapping`).
    #[arg(help_heading = "Clusters and namespaces", long, global = true)]
    pub source_namespace: Option<String>,
    /// Destination namespace [default: the source namespace].
    #[arg(help_heading = "Clusters and namespaces", long, global = true)]
    pub dest_namespace: Option<String>,
    /// Take the configuration from a NamespaceMapping manifest (the operator's transformations).
    #[arg(help_heading = "Clusters and namespaces", long, global = true)]
    pub mapping: Option<PathBuf>,
    /// Resource types to copy (kinds, plurals, short names or resource.group; comma-separated or repeated)
    /// [default: the Go CLI's 13 types plus cronjobs].
    #[arg(help_heading = "What is copied", long, global = true, value_delimiter = ',')]
    pub resource_types: Vec<String>,
    /// Resource types to leave out.
    #[arg(help_heading = "What is copied", long, global = true, value_delimiter = ',')]
    pub exclude_resource_types: Vec<String>,
    /// Also copy every custom resource type of the namespace.
    #[arg(help_heading = "What is copied", long, global = true)]
    pub include_custom_resources: bool,
    /// Report what would happen; write nothing.
    #[arg(help_heading = "Drill steps", long, global = true)]
    pub dry_run: bool,
    /// Do not ask for confirmation before cutover, failback, promote, fence or cleanup.
    #[arg(help_heading = "Drill steps", long, short = 'y', global = true)]
    pub yes: bool,
    /// Wait until the activated side's workloads are ready (cutover, failback, promote), e.g. `5m`; also
    /// bounds the wait for the quieted side's pods to stop [default for that: 5m].
    /// (`--wait 5m` works too: [`normalize_go_flags`] joins a duration that follows; any other word is
    /// never taken as its value.)
    #[arg(help_heading = "Drill steps", long, global = true, num_args = 0..=1, default_missing_value = "5m", require_equals = true)]
    pub wait: Option<String>,
    /// Output format.
    #[arg(help_heading = "Output", long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Failback: copy what changed on the DR side since the cutover back to the source first.
    #[arg(help_heading = "Drill steps", long, global = true)]
    pub sync_back: bool,
    /// Show Secret values in plans and diffs (redacted by default).
    #[arg(help_heading = "Output", long, global = true)]
    pub show_secrets: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(help_heading = "Output", long, global = true, default_value = "warn")]
    pub log_level: String,
    /// Copy PVC data too (Go CLI flag).
    #[arg(help_heading = "PVC data", long, global = true)]
    pub migrate_pvc_data: bool,
    /// Copy PVC data back on failback (Go CLI flag).
    #[arg(help_heading = "PVC data", long, global = true)]
    pub reverse_migrate_pvc_data: bool,
    /// Image of the temporary agents and mover pods of `--migrate-pvc-data` / `--reverse-migrate-pvc-data`.
    #[arg(help_heading = "PVC data", long, global = true, env = "DR_SYNCER_AGENT_IMAGE", default_value = dr_syncer_core::pvc::DEFAULT_AGENT_IMAGE)]
    pub agent_image: String,
    /// Namespace of the temporary agents (created if missing).
    #[arg(help_heading = "PVC data", long, global = true, default_value = dr_syncer_core::pvc::DEFAULT_AGENT_NAMESPACE)]
    pub agent_namespace: String,
    /// Address a transfer's key is accepted from (repeatable; IP address, CIDR range, or `*` for any)
    /// when the mover pods reach the agents through NAT [default: the mover pod's and its node's
    /// addresses].
    #[arg(help_heading = "PVC data", long = "mover-source-address", global = true, value_parser = parse_source_address)]
    pub mover_source_addresses: Vec<String>,
    /// How the mover pods reach the temporary agents: NodeInternalIP, NodeExternalIP, NodePort,
    /// LoadBalancer or Address (`--agent-address`) [default: the node's InternalIP, then its ExternalIP].
    #[arg(help_heading = "PVC data", long, global = true, value_parser = parse_exposure)]
    pub agent_exposure: Option<dr_syncer_core::api::ExposureMode>,
    /// `host[:port]` of a proxy or tunnel to the agents (`{node}` is replaced by the node's name);
    /// implies `--agent-exposure Address`.
    #[arg(help_heading = "PVC data", long, global = true)]
    pub agent_address: Option<String>,
    /// The kubelet's root directory on the reading cluster's nodes [default: discovered from the nodes,
    /// else /var/lib/kubelet].
    #[arg(help_heading = "PVC data", long, global = true)]
    pub kubelet_root: Option<String>,
    /// A node directory below which hostPath PVs may be read (repeatable) [default: the local-path
    /// provisioner's, kind's and k3s' directories].
    #[arg(help_heading = "PVC data", long = "host-path-prefix", global = true)]
    pub host_path_prefixes: Vec<String>,
    /// PVCs whose data is copied at the same time [default: the mapping's concurrentSyncs, else 2].
    #[arg(help_heading = "PVC data", long, global = true)]
    pub data_concurrency: Option<usize>,
    /// Cutover: skip the data copy made while the source still runs (only the final copy, after the
    /// source is quiet, is made; the downtime is then the whole copy).
    #[arg(help_heading = "PVC data", long, global = true)]
    pub no_pre_copy: bool,
    /// How long to wait for agents, mount pods and mover pods to start, e.g. `5m`.
    #[arg(help_heading = "PVC data", long, global = true, default_value = "5m")]
    pub data_wait_timeout: String,
    /// Accepted for compatibility with the Go CLI and ignored (it drove the external pv-migrate).
    #[arg(help_heading = "PVC data", long, global = true)]
    pub pv_migrate_flags: Option<String>,
    /// Accept a source cluster other than the one the DR namespace was filled from (it records the
    /// source's `kube-system` UID; by default a different cluster is refused with exit 4).
    #[arg(help_heading = "Drill steps", long, global = true)]
    pub accept_source_cluster: bool,
    /// PVC data: mirror source volumes that look wiped (empty or nearly empty while the DR copy is not;
    /// by default they are not copied and the DR copy is left untouched).
    #[arg(help_heading = "PVC data", long, global = true)]
    pub allow_wiped_source: bool,
    /// Let deletions go ahead that the deletion brake holds (prune removing more than half, and more
    /// than 10, of the DR objects this mapping manages: see the mapping's `deletionBrake`).
    #[arg(help_heading = "What is copied", long, global = true)]
    pub allow_deletions: bool,
    /// Take over DR objects that exist already and were not put there by dr-syncer (no
    /// `dr-syncer.io/synced-by`); by default they are left alone and reported as skipped (a mapping's
    /// `adoptExisting` says the same).
    #[arg(help_heading = "What is copied", long, global = true)]
    pub adopt_existing: bool,

    /// Directory of transformer plugins (executables; see docs/plugins.md) that `--plugin` and a
    /// `--mapping`'s `transformPlugins` name.
    #[arg(help_heading = "What is copied", long, global = true, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,

    /// Run the plugin NAME of `--plugin-dir` on the objects of the copied types (not CRDs or the
    /// Namespace), after the built-in transformers and transformRules, with string flags (its `extras`);
    /// repeatable, in order, after a `--mapping`'s transformPlugins. Not run on failback's copy back.
    #[arg(help_heading = "What is copied", long = "plugin", global = true,
          value_name = "NAME[:KEY=VALUE,...]", value_parser = parse_plugin)]
    pub plugins: Vec<dr_syncer_core::plugin::PluginRef>,

    /// How long a plugin may take per object.
    #[arg(help_heading = "What is copied", long, global = true, default_value = "10s",
          value_parser = parse_duration)]
    pub plugin_timeout: Duration,
    /// Do not run the preflight checks before stage, cutover and failback.
    #[arg(help_heading = "Drill steps", long, global = true)]
    pub skip_preflight: bool,
    /// How long one request may take before it fails as timed out (it is retried a few times), e.g. `60s`;
    /// connecting is bounded at 10 s.
    #[arg(
        help_heading = "Clusters and namespaces",
        long,
        global = true,
        default_value = "60s"
    )]
    pub request_timeout: String,
    /// rbac: for the source (production) side's identity.
    #[arg(
        help_heading = "Options of rbac",
        long,
        global = true,
        conflicts_with = "destination"
    )]
    pub source: bool,
    /// rbac: for the destination (DR) side's identity.
    #[arg(help_heading = "Options of rbac", long, global = true)]
    pub destination: bool,
    /// rbac: a namespace on that side (repeatable) [default: the `--mapping`'s].
    #[arg(
        help_heading = "Options of rbac",
        long = "namespace",
        global = true,
        value_name = "NAMESPACE"
    )]
    pub rbac_namespaces: Vec<String>,
    /// rbac: Roles per namespace, or one ClusterRole [default: namespace when namespaces are known].
    #[arg(help_heading = "Options of rbac", long, global = true, value_enum)]
    pub scope: Option<RbacScope>,
    /// rbac: PVC data: the DR side also runs the movers (pods, their logs and key Secrets in its
    /// namespaces); the source side also deploys the agents (`--agent-namespace`) and runs mount pods
    /// [default: when the `--mapping` copies PVC data].
    #[arg(help_heading = "Options of rbac", long, global = true)]
    pub pvc_data: bool,
    /// rbac: the roles' name [default: dr-syncer-source-reader / dr-syncer-dr-writer].
    #[arg(help_heading = "Options of rbac", long, global = true)]
    pub role_name: Option<String>,
    /// rbac: also bind the roles to this user.
    #[arg(
        help_heading = "Options of rbac",
        long,
        global = true,
        conflicts_with = "bind_service_account"
    )]
    pub bind_user: Option<String>,
    /// rbac: also bind the roles to this ServiceAccount (`namespace/name`).
    #[arg(help_heading = "Options of rbac", long, global = true)]
    pub bind_service_account: Option<String>,
    /// cleanup: only the leftovers of this run (its id, as labelled `dr-syncer.io/cli-run`).
    #[arg(help_heading = "Options of cleanup", long, global = true)]
    pub run: Option<String>,
    /// Print build information as JSON and exit.
    #[arg(long)]
    pub version_json: bool,
}

/// Subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check what would break on the DR side before anything is written (exit 8 when something blocks).
    Preflight,
    /// Sync the namespace to the DR side, which stays quiet (workloads at 0, CronJobs suspended).
    Stage,
    /// Sync, quiet the source, activate the DR side and mark it active.
    Cutover,
    /// Quiet the DR side, reactivate the source from its recorded originals, clear the active mark.
    Failback,
    /// Show what a stage would create, update or leave unchanged, with a diff per object.
    Plan,
    /// Report drift between source and DR (exit 3 when there is any).
    Diff,
    /// Production is down: make the DR side live without contacting production (needs only the DR
    /// kubeconfig and namespace); prints how fresh the DR copy is.
    Promote,
    /// Production is back after a promote: quiet it and mark it standby without contacting the DR side
    /// (needs only the source kubeconfig and namespace). Then `failback` works as after a cutover.
    Fence,
    /// The pair's site state (either side may be unreachable), how fresh the DR copy is, and what each
    /// step would do next.
    Status,
    /// Remove what interrupted runs left behind (temporary agents, keys, grants, mover pods, locks) on the
    /// clusters given.
    Cleanup,
    /// Print least-privilege RBAC (YAML) for the identity of one side (`--source` or `--destination`), for
    /// the types in scope (`--resource-types`, or a `--mapping`'s, else the operator's defaults). Offline:
    /// no kubeconfig needed.
    Rbac,
    /// Print a shell completion script (e.g. `dr-syncer-cli completions bash > /etc/bash_completion.d/dr-syncer-cli`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `dr-syncer-cli man > dr-syncer-cli.1`).
    Man,
}

/// `rbac --scope` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RbacScope {
    /// Roles in each `--namespace` (least privilege).
    Namespace,
    /// One ClusterRole (all namespaces; what the operator's shared watches need).
    Cluster,
}

/// `--mode` values of the Go CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Stage.
    Stage,
    /// Cutover.
    Cutover,
    /// Failback.
    Failback,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable summary.
    Table,
    /// The report as JSON (documented in docs/cli.md).
    Json,
    /// The same report as YAML.
    Yaml,
    /// One line per object the report changed, would change or found different (`Kind/namespace/name`);
    /// reports about namespaces only (preflight, status, cleanup): `namespace/NAME`.
    Name,
}

/// Go's flag package accepts `-flag=value` for long flags and `--switch=true|false` for booleans; clap
/// wants `--flag` and bare switches. Rewrites single-dash long flags (two or more letters; short flags
/// such as `-o`, `-y` stay), and `--switch=VALUE` of this CLI's boolean switches: `true`, `1`, `yes`, `on`
/// (any case) to `--switch`, `false`, `0`, `no`, `off` to nothing. Other values are left for clap to
/// refuse. A bare `--switch` never takes the next word as its value, so `--dry-run stage` stays a
/// switch and a subcommand.
pub fn normalize_go_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    use clap::CommandFactory;
    fn switches(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                out.extend(arg.get_long().map(str::to_string));
                out.extend(arg.get_all_aliases().into_iter().flatten().map(str::to_string));
            }
        }
        for sub in cmd.get_subcommands() {
            switches(sub, out);
        }
    }
    let mut names = std::collections::BTreeSet::new();
    switches(&Args::command(), &mut names);
    let normalized: Vec<String> = args
        .into_iter()
        .enumerate()
        .filter_map(|(i, a)| {
            if i == 0 {
                return Some(a);
            }
            let name = a.strip_prefix('-').unwrap_or("");
            let flag = name.split('=').next().unwrap_or("");
            let a = if !a.starts_with("--")
                && flag.len() > 1
                && flag.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                format!("-{a}")
            } else {
                a
            };
            let Some((flag, value)) = a.strip_prefix("--").and_then(|f| f.split_once('=')) else {
                return Some(a);
            };
            if !names.contains(flag) {
                return Some(a);
            }
            match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(format!("--{flag}")),
                "false" | "0" | "no" | "off" => None,
                _ => Some(a),
            }
        })
        .collect();
    // `--wait 5m`: a duration after `--wait` is its value; anything else (a subcommand) is not.
    let mut out = Vec::with_capacity(normalized.len());
    let mut words = normalized.into_iter().peekable();
    while let Some(a) = words.next() {
        if a == "--wait"
            && let Some(next) = words.next_if(|n| dr_syncer_core::config::parse_duration(n).is_ok())
        {
            out.push(format!("--wait={next}"));
        } else {
            out.push(a);
        }
    }
    out
}

/// An error with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// Exit code.
    pub code: u8,
    /// Message.
    pub message: String,
}

/// The one-line message of an error: the error and its causes, each cause left out when the text so far
/// already says it (dr-syncer's errors often quote their source).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The exit code for an error (see the crate docs).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<Exit>() {
        return e.code;
    }
    let core = err.downcast_ref::<Error>();
    if let Some(Error::Source(e)) = core
        && !e.transient
    {
        return 4; // e.g. the source namespace does not exist
    }
    match core.map(Error::kind) {
        Some(
            "InvalidConfig"
            | "UnknownResourceType"
            | "InvalidKubeconfig"
            | "TransformFailed"
            | "ClusterIdentityChanged"
            | "ProtectedNamespace"
            | "ReferenceNotAllowed",
        ) => 4,
        Some("SourceFailed" | "ApplyFailed" | "KubeApi" | "Connection" | "Unauthorized" | "NotFound") => 5,
        Some("Incomplete") => 6,
        Some("Timeout") => 7,
        Some("Refused") => 9,
        Some("Interrupted") => 130,
        _ => 1,
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},kube=warn,hyper=warn,tower=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The client options of `args` (`--request-timeout`; an unparsable value was refused by `run`).
pub(crate) fn client_options(args: &Args) -> ClientOptions {
    ClientOptions {
        request_timeout: parse_duration(&args.request_timeout).ok(),
        ..ClientOptions::default()
    }
}

/// Who runs this CLI, for the Events drill steps record (`user@host`).
fn recorder() -> Recorder {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    Recorder::new("dr-syncer-cli", format!("{user}@{host}"))
}

/// An id for this run: names and labels its temporary objects (lower-case hex: a DNS label).
fn run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("r{secs:x}{:x}", std::process::id())
}

/// Run the CLI with parsed arguments.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.version_json {
        println!(
            "{}",
            serde_json::to_string(&dr_syncer_core::version::build_info("dr-syncer-cli"))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&args.log_level);
    match &args.command {
        Some(Command::Rbac) => return rbac(&args),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Args::command();
            let name = cmd.get_name().to_owned();
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, name, &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Man) => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout())?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let command = match (args.command, args.mode) {
        (Some(c), None) => c,
        (None, Some(Mode::Stage)) => Command::Stage,
        (None, Some(Mode::Cutover)) => Command::Cutover,
        (None, Some(Mode::Failback)) => Command::Failback,
        (Some(_), Some(_)) => return Err(usage("use either a subcommand or --mode, not both")),
        (None, None) => {
            return Err(usage(
                "a subcommand (stage, cutover, failback, promote, fence, status, cleanup, plan, diff) or --mode \
                 is required",
            ));
        }
    };
    if args.pv_migrate_flags.is_some() {
        warn!("--pv-migrate-flags is ignored: dr-syncer moves PVC data itself");
    }
    if args.migrate_pvc_data && !matches!(command, Command::Stage | Command::Cutover | Command::Preflight) {
        return Err(usage(
            "--migrate-pvc-data applies to stage, cutover and preflight",
        ));
    }
    if args.reverse_migrate_pvc_data && command != Command::Failback {
        return Err(usage("--reverse-migrate-pvc-data applies to failback"));
    }
    let data_wait =
        parse_duration(&args.data_wait_timeout).map_err(|e| usage(&format!("--data-wait-timeout: {e}")))?;
    parse_duration(&args.request_timeout).map_err(|e| usage(&format!("--request-timeout: {e}")))?;
    let wait = args
        .wait
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| usage(&format!("--wait: {e}")))?;
    let options = DrillOptions {
        dry_run: args.dry_run,
        wait,
        sync_back: args.sync_back,
        drain_timeout: wait.unwrap_or(DrillOptions::default().drain_timeout),
    };
    let out = output::Printer::new(args.output, args.show_secrets);
    // The writing steps stop at a safe point on SIGINT/SIGTERM; the others just end.
    let interrupt = if matches!(
        command,
        Command::Stage | Command::Cutover | Command::Failback | Command::Promote | Command::Fence
    ) {
        interrupt::install()
    } else {
        tokio::sync::watch::channel(false).1
    };
    match command {
        Command::Promote => return one_side::promote(&args, options, &out, interrupt).await,
        Command::Fence => return one_side::fence(&args, options, &out, interrupt).await,
        Command::Status => return one_side::status(&args, &out).await,
        Command::Cleanup => return one_side::cleanup(&args, &out).await,
        _ => {}
    }

    let drill = build(&args).await?;
    if matches!(command, Command::Cutover | Command::Failback) && !args.dry_run && !args.yes {
        confirm(&format!(
            "{command:?}: {} on {} -> {} on {}",
            drill.target().source_namespace,
            drill.target().source_cluster,
            drill.target().destination_namespace,
            drill.target().destination_cluster
        ))?;
    }
    if command == Command::Preflight {
        let mut report = drill.preflight(DrillStep::Cutover).await?;
        if args.migrate_pvc_data {
            // The data path as a transfer would take it: temporary agents, probed from the DR side.
            report
                .checks
                .push(data::check_path(&args, &drill, &run_id(), data_wait).await?);
        }
        return out.preflight(&report);
    }
    let step = match command {
        Command::Stage => Some(DrillStep::Stage),
        Command::Cutover => Some(DrillStep::Cutover),
        Command::Failback => Some(DrillStep::Failback {
            sync_back: args.sync_back,
        }),
        _ => None,
    };
    if let (Some(step), false) = (step, args.skip_preflight) {
        let report = drill.preflight(step).await?;
        if report.blocks() {
            out.preflight(&report)?;
            let problems: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.status == dr_syncer_core::ops::CheckStatus::Fail)
                .map(|c| format!("{}: {}", c.name, c.message))
                .collect();
            return Err(Exit {
                code: 8,
                message: format!(
                    "preflight blocks this drill (--skip-preflight to run anyway): {}",
                    problems.join("; ")
                ),
            }
            .into());
        }
    }
    let (progress, _display) = progress::display(&format!("{command:?}").to_lowercase());
    let drill = drill
        .with_progress(progress)
        .with_recorder(recorder())
        .with_interrupt(interrupt.clone())
        .accepting_source_identity(if args.accept_source_cluster {
            dr_syncer_core::engine::AcceptIdentity::Any
        } else {
            dr_syncer_core::engine::AcceptIdentity::Recorded
        })
        .with_deletion_go_ahead(if args.allow_deletions {
            dr_syncer_core::brake::GoAhead::All
        } else {
            dr_syncer_core::brake::GoAhead::None
        });
    let run = run_id();
    let data = if (args.migrate_pvc_data || args.reverse_migrate_pvc_data) && !args.dry_run {
        Some(data::prepare(&args, &drill, &run, args.reverse_migrate_pvc_data, data_wait).await?)
    } else {
        None
    };
    let drill = match &data {
        Some(d) => drill.with_data(d.drill_data.clone()),
        None => drill,
    };
    let result = run_command(command, &args, &drill, options, &out).await;
    if let Some(d) = data {
        d.remove().await;
    }
    interrupted(result)
}

/// An interruption becomes exit 130 with what to do next.
fn interrupted(result: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match result {
        Err(e) if matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted(_))) => Err(Exit {
            code: 130,
            message: format!(
                "{}: stopped at a safe point; this run's temporary objects are removed and the progress made is \
                 recorded on the clusters: run the same command again to resume",
                error_message(&e)
            ),
        }
        .into()),
        other => other,
    }
}

async fn run_command(
    command: Command,
    args: &Args,
    drill: &Drill,
    options: DrillOptions,
    out: &output::Printer,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Stage => out.drill(drill.stage(args.dry_run).await?),
        Command::Cutover => out.drill(drill.cutover(options).await?),
        Command::Failback => out.drill(drill.failback(options).await?),
        Command::Plan => out.drill(dr_syncer_core::ops::DrillReport {
            mode: "plan".into(),
            dry_run: true,
            sync: Some(drill.engine().plan(drill.target()).await?),
            ..Default::default()
        }),
        Command::Diff => {
            let mut target = drill.target().clone();
            let mut config = (*target.config).clone();
            config.prune = true; // extra DR objects are drift too
            config.deletion_brake = dr_syncer_core::brake::DeletionBrake::off();
            target.config = Arc::new(config);
            let plan = drill.engine().plan(&target).await?;
            out.diff(plan)
        }
        Command::Preflight
        | Command::Promote
        | Command::Fence
        | Command::Status
        | Command::Cleanup
        | Command::Rbac
        | Command::Completions { .. }
        | Command::Man => {
            unreachable!("handled before a drill is built")
        }
    }
}

fn usage(message: &str) -> anyhow::Error {
    Exit {
        code: 2,
        message: message.into(),
    }
    .into()
}

/// Ask on a terminal (nothing to ask elsewhere: scripts pass `--yes` or run without a terminal).
pub(crate) fn confirm(what: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Ok(());
    }
    eprint!("{what}. Continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Exit {
            code: 1,
            message: "aborted".into(),
        }
        .into())
    }
}

/// The mapping spec (from `--mapping`, or the schema's defaults) with the namespace flags applied, and
/// whether it came from a mapping.
pub(crate) fn load_spec(args: &Args) -> anyhow::Result<(NamespaceMappingSpec, bool)> {
    let (mut spec, from_mapping) = match &args.mapping {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let mapping: NamespaceMapping = serde_saphyr::from_str(&text).map_err(|e| Exit {
                code: 4,
                message: format!("{}: not a NamespaceMapping: {e}", path.display()),
            })?;
            (mapping.spec, true)
        }
        // The schema's defaults (scaleToZero: true …), as an empty mapping would get them.
        None => (
            serde_json::from_value::<NamespaceMappingSpec>(serde_json::json!({}))?,
            false,
        ),
    };
    if let Some(ns) = &args.source_namespace {
        spec.source_namespace = Some(ns.clone());
    }
    if let Some(ns) = &args.dest_namespace {
        spec.destination_namespace = Some(ns.clone());
    }
    Ok((spec, from_mapping))
}

/// `rbac`: print the least-privilege RBAC of one side ([`dr_syncer_core::rbac`]).
fn rbac(args: &Args) -> anyhow::Result<ExitCode> {
    use dr_syncer_core::rbac::{Request, Scope, Side, Subject};
    let side = match (args.source, args.destination) {
        (true, false) => Side::Source,
        (false, true) => Side::Destination,
        _ => return Err(usage("rbac needs --source or --destination")),
    };
    let (spec, from_mapping) = load_spec(args)?;
    let namespaces: Vec<String> = if args.rbac_namespaces.is_empty() {
        let ns = match side {
            Side::Source => spec.source_namespace.clone(),
            Side::Destination => spec
                .destination_namespace
                .clone()
                .filter(|d| !d.is_empty())
                .or_else(|| spec.source_namespace.clone()),
        };
        ns.filter(|n| !n.is_empty()).into_iter().collect()
    } else {
        args.rbac_namespaces.clone()
    };
    let scope = match args.scope {
        Some(RbacScope::Namespace) => Scope::Namespace,
        Some(RbacScope::Cluster) => Scope::Cluster,
        None if namespaces.is_empty() => Scope::Cluster,
        None => Scope::Namespace,
    };
    let subject = match (&args.bind_user, &args.bind_service_account) {
        (Some(u), _) => Some(Subject::User(u.clone())),
        (None, Some(sa)) => {
            let (namespace, name) = sa
                .split_once('/')
                .filter(|(n, s)| !n.is_empty() && !s.is_empty())
                .ok_or_else(|| usage("--bind-service-account takes namespace/name"))?;
            Some(Subject::ServiceAccount {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        (None, None) => None,
    };
    let resource_types = if args.resource_types.is_empty() && from_mapping {
        spec.resource_types.clone().unwrap_or_default()
    } else {
        args.resource_types.clone()
    };
    let request = Request {
        side,
        scope,
        namespaces,
        resource_types,
        defaults: OPERATOR_DEFAULT_TYPES.iter().map(|s| (*s).to_owned()).collect(),
        sync_crds: spec.sync_crds,
        namespace_selector: spec.namespace_selector.is_some(),
        sync_back: args.sync_back,
        pvc_data: args.pvc_data || spec.pvc_config.as_ref().is_some_and(|p| p.sync_data),
        agent_namespace: args.agent_namespace.clone(),
        name: args.role_name.clone(),
        subject,
    };
    let yaml = dr_syncer_core::rbac::manifests(&request).map_err(|e| Exit {
        code: 4,
        message: e.to_string(),
    })?;
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}

/// A client for one side (`--*-kubeconfig`, `--*-context`) and its API server's URL.
pub(crate) async fn connect_side(
    path: &Option<PathBuf>,
    context: &Option<String>,
) -> anyhow::Result<(Client, String)> {
    let cluster = ClusterConfig {
        kubeconfig: path
            .clone()
            .map(KubeconfigSource::File)
            .unwrap_or(KubeconfigSource::Infer),
        context: context.clone(),
        insecure_skip_tls_verify: false,
        user_agent: Some(format!("dr-syncer-cli/{}", env!("CARGO_PKG_VERSION"))),
    };
    Ok(connect_with_url(&cluster).await?)
}

/// The resource types in scope, resolved against `client`'s discovery.
pub(crate) async fn resolve_types(
    client: &Client,
    args: &Args,
    config: &SyncConfig,
    from_mapping: bool,
) -> anyhow::Result<Vec<ResourceType>> {
    let options = client_options(args);
    let discovered = discover(client, &options.calls()).await?;
    let requested: Vec<String> = if args.resource_types.is_empty() {
        config.resource_types.clone()
    } else {
        args.resource_types.clone()
    };
    let defaults: &[&str] = if from_mapping {
        &OPERATOR_DEFAULT_TYPES
    } else {
        &CLI_DEFAULT_TYPES
    };
    let mut types = resolve_resource_types(
        &requested,
        &config.namespace_scoped_resources,
        defaults,
        &discovered,
    )
    .map_err(Error::from)?;
    if args.include_custom_resources {
        for rt in custom_resource_types(client, &options.calls(), &discovered).await? {
            if !types.contains(&rt) {
                types.push(rt);
            }
        }
    }
    if !args.exclude_resource_types.is_empty() {
        let excluded: Vec<ResourceType> =
            resolve_resource_types(&args.exclude_resource_types, &[], &[], &discovered)
                .map_err(Error::from)?;
        types.retain(|t| !excluded.contains(t));
    }
    Ok(types)
}

/// The bundled CLI as a builder: `Cli::from_env().main()` is exactly the `dr-syncer-cli` binary (the Go
/// CLI's flag forms included); a platform's own CLI adds its transformers, which every forward sync of
/// the drills (stage, cutover, plan, diff) runs and a failback's copy back does not.
///
/// ```no_run
/// use dr_syncer_core::transform::{Outcome, TransformContext};
/// use kube::core::DynamicObject;
///
/// fn main() -> std::process::ExitCode {
///     let label_dr = |mut obj: DynamicObject, _: &TransformContext| {
///         obj.metadata.labels.get_or_insert_with(Default::default).insert("site".into(), "dr".into());
///         Ok(Outcome::Keep(obj))
///     };
///     dr_syncer_cli::Cli::from_env().with_transformer(label_dr).main()
/// }
/// ```
#[derive(Debug)]
pub struct Cli {
    args: Args,
}

impl Cli {
    /// The CLI configured from the command line (with the Go CLI's flag forms normalised).
    pub fn from_env() -> Self {
        Self::new(Args::parse_from(normalize_go_flags(std::env::args())))
    }

    /// The CLI with these arguments.
    pub fn new(args: Args) -> Self {
        Cli { args }
    }

    /// Run `transformer` on every forward sync, after the built-in transformers and `transformRules`,
    /// before plugins.
    pub fn with_transformer(
        mut self,
        transformer: impl dr_syncer_core::transform::Transformer + 'static,
    ) -> Self {
        self.args.extensions.add_transformer(transformer);
        self
    }

    /// Copy PVC data (`--migrate-pvc-data`, `--reverse-migrate-pvc-data`) with what `hook` makes of the
    /// built-in data path: the same wrapped, or a snapshot- or CSI-based mover of the platform's.
    pub fn with_volume_sync(
        mut self,
        hook: impl Fn(dr_syncer_core::ops::PvcDataSync) -> Arc<dyn dr_syncer_core::ops::VolumeSync>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.args.extensions.set_volume_sync(hook);
        self
    }

    /// Run the command.
    ///
    /// # Errors
    /// As [`run`]: [`error_message`] and [`exit_code`] turn it into what the binary prints and returns.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        run(self.args).await
    }

    /// Run the command on a new async runtime, printing an error as the binary does and returning its
    /// exit code.
    pub fn main(self) -> ExitCode {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("dr-syncer-cli: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(self.run()) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("dr-syncer-cli: {}", error_message(&err));
                ExitCode::from(exit_code(&err))
            }
        }
    }
}

/// Build the drill from the arguments: validate everything before any write.
async fn build(args: &Args) -> anyhow::Result<Drill> {
    let (mut spec, from_mapping) = load_spec(args)?;
    let source_ns = spec
        .source_namespace
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| usage("--source-namespace (or a --mapping with sourceNamespace) is required"))?;
    let dest_ns = spec
        .destination_namespace
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| source_ns.clone());
    spec.destination_namespace = Some(dest_ns.clone());
    if args.adopt_existing {
        spec.adopt_existing = Some(true);
    }
    spec.transform_plugins
        .get_or_insert_with(Vec::new)
        .extend(args.plugins.iter().map(|p| dr_syncer_core::api::TransformPlugin {
            name: p.name.clone(),
            extras: (!p.extras.is_empty()).then(|| p.extras.clone()),
        }));
    let config = SyncConfig::from_spec(&spec).map_err(Error::from)?;
    // Plugins are found (and asked for their metadata) before anything is connected or written.
    let plugin_dir = match &args.plugin_dir {
        Some(dir) => PluginDir::new(dir),
        None => PluginDir::none(),
    }
    .with_timeout(args.plugin_timeout);
    let plugins = plugin_dir
        .resolve(&config.plugins)
        .await
        .map_err(|e| usage(&e.to_string()))?;

    let options = client_options(args);
    let (source, source_url) = connect_side(&args.source_kubeconfig, &args.source_context).await?;
    let (destination, dest_url) = connect_side(&args.dest_kubeconfig, &args.dest_context).await?;
    // A source that is the destination, namespace and all, would have the drill quiet and overwrite
    // production itself: refused before anything else runs (before preflight, before any write); when it
    // cannot be told (neither side may read the namespaces), refused too.
    if source_ns == dest_ns {
        let same = dr_syncer_core::kube::site::same_cluster(
            (&source, &source_url),
            (&destination, &dest_url),
            &source_ns,
            &options.calls(),
        )
        .await?;
        let why = match same {
            Some(false) => None,
            Some(true) => Some(format!(
                "the source and the destination are the same cluster ({source_url}) and the same namespace \
                 ({source_ns})"
            )),
            None => Some(format!(
                "cannot tell whether the source ({source_url}) and the destination ({dest_url}) are the same \
                 cluster (neither the namespace {source_ns} nor kube-system can be compared) and the namespace \
                 is the same"
            )),
        };
        if let Some(why) = why {
            return Err(Exit {
                code: 4,
                message: format!(
                    "{why}: give the DR cluster's kubeconfig (--dest-kubeconfig) or another namespace \
                     (--dest-namespace)"
                ),
            }
            .into());
        }
    }
    let types = resolve_types(&source, args, &config, from_mapping).await?;
    // The destination must answer too, before anything is written (one request; preflight and the
    // engine ask it the rest).
    destination
        .apiserver_version()
        .await
        .map_err(|e| Error::kube("reaching the destination cluster", e))?;
    // When an operator mapping syncs this pair, the drill writes under its name (the mapping's prune
    // then keeps track of everything on the DR side); otherwise as `cli/<source-namespace>`.
    let synced_by =
        dr_syncer_core::kube::site::pair_writer(&destination, &options.calls(), &dest_ns, &source_ns)
            .await?
            .unwrap_or_else(|| format!("cli/{source_ns}"));
    let cluster_name =
        |ctx: &Option<String>, fallback: &str| ctx.clone().unwrap_or_else(|| fallback.to_owned());
    let target = SyncTarget {
        source_cluster: spec
            .source_cluster
            .clone()
            .unwrap_or_else(|| cluster_name(&args.source_context, "source")),
        destination_cluster: spec
            .destination_cluster
            .clone()
            .unwrap_or_else(|| cluster_name(&args.dest_context, "destination")),
        source_namespace: source_ns.clone(),
        destination_namespace: dest_ns,
        synced_by,
        types,
        config: Arc::new(config),
    };
    Ok(Drill::new(source, destination, options, target)
        .with_chain(args.extensions.chain())
        .with_plugins(plugins))
}

/// The mapping's `pvcConfig.dataSyncConfig` (from `--mapping`), if any.
fn mapping_data_config(args: &Args) -> anyhow::Result<Option<dr_syncer_core::api::DataSyncConfig>> {
    let Some(path) = &args.mapping else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mapping: NamespaceMapping = serde_saphyr::from_str(&text).map_err(|e| Exit {
        code: 4,
        message: format!("{}: not a NamespaceMapping: {e}", path.display()),
    })?;
    Ok(mapping.spec.pvc_config.and_then(|p| p.data_sync_config))
}

fn parse_plugin(s: &str) -> Result<dr_syncer_core::plugin::PluginRef, String> {
    dr_syncer_core::plugin::PluginRef::parse(s)
}

fn parse_exposure(s: &str) -> Result<dr_syncer_core::api::ExposureMode, String> {
    dr_syncer_core::api::ExposureMode::parse(s).ok_or_else(|| {
        format!("{s:?}: one of NodeInternalIP, NodeExternalIP, NodePort, LoadBalancer, Address")
    })
}

fn parse_source_address(s: &str) -> Result<String, String> {
    dr_syncer_core::pvc::grant::check_address(s).map(|()| s.to_string())
}

#[cfg(test)]
mod error_message_tests {
    use super::*;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let inner = dr_syncer_core::data::DataMoverError::Failed {
            message: "PVC data copy failed for shop/data".into(),
            transient: true,
        };
        let err = anyhow::Error::from(Error::Data(inner));
        assert_eq!(
            error_message(&err),
            "data: transfer failed: PVC data copy failed for shop/data"
        );
        let io = std::io::Error::other("disk full");
        let err = anyhow::Error::from(io).context("writing the report");
        assert_eq!(error_message(&err), "writing the report: disk full");
    }
}

#[cfg(test)]
mod go_flag_tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_go_flags(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_boolean_and_single_dash_forms_become_clap_forms() {
        assert_eq!(
            norm(&[
                "dr-syncer-cli",
                "--mode=Stage",
                "--include-custom-resources=true",
                "--migrate-pvc-data=TRUE",
                "-dry-run=false",
                "--yes=1",
                "--show-secrets=off",
                "-o",
                "json",
                "--wait=30s",
            ]),
            [
                "dr-syncer-cli",
                "--mode=Stage",
                "--include-custom-resources",
                "--migrate-pvc-data",
                "--yes",
                "-o",
                "json",
                "--wait=30s",
            ]
        );
        // A value that is not a boolean is left for clap to refuse, with its own message.
        assert_eq!(norm(&["x", "--dry-run=maybe"]), ["x", "--dry-run=maybe"]);
        let err = Args::try_parse_from(norm(&["x", "--dry-run=maybe", "stage"])).unwrap_err();
        assert!(err.to_string().contains("--dry-run"), "{err}");
        // Parsed: the Go README's example.
        let args = Args::try_parse_from(norm(&[
            "dr-syncer-cli",
            "--source-kubeconfig=/a",
            "--dest-kubeconfig=/b",
            "--source-namespace=my-namespace",
            "--dest-namespace=my-namespace-dr",
            "--mode=Stage",
            "--include-custom-resources=true",
            "--migrate-pvc-data=true",
            "--resource-types=configmaps,secrets,deployments",
        ]))
        .unwrap();
        assert!(args.include_custom_resources && args.migrate_pvc_data);
        let off = Args::try_parse_from(norm(&["x", "--migrate-pvc-data=false", "stage"])).unwrap();
        assert!(!off.migrate_pvc_data);
        // `--wait`: a duration after it is its value, a subcommand never is.
        assert_eq!(
            norm(&["x", "--wait", "5m", "cutover"]),
            ["x", "--wait=5m", "cutover"]
        );
        assert_eq!(norm(&["x", "--wait", "cutover"]), ["x", "--wait", "cutover"]);
        let bare = Args::try_parse_from(norm(&["x", "--wait", "cutover"])).unwrap();
        assert_eq!(bare.wait.as_deref(), Some("5m"));
        assert!(
            matches!(bare.command, Some(Command::Cutover)),
            "{:?}",
            bare.command
        );
        let timed = Args::try_parse_from(norm(&["x", "cutover", "--wait", "20s"])).unwrap();
        assert_eq!(timed.wait.as_deref(), Some("20s"));
    }
}
