//! `dr-syncer-operator`: keeps a DR cluster in step with production from custom resources.
//!
//! This crate wires `dr-syncer-core` into controllers on kube-runtime; the sync logic is core's. Modules:
//! - [`remote_cluster`], [`cluster_mapping`], [`namespace_mapping`]: the three controllers;
//! - [`runtime`]: the process — controller-cluster client, admin endpoints ([`admin`]), metrics
//!   ([`metrics`]), leader election ([`lease`]), graceful shutdown;
//! - [`clusters`]: clients of the remote clusters, from their kubeconfig Secrets.
//!
//! Flags and environment variables follow the Go operator where they mean the same thing
//! (`--metrics-bind-address`/`METRICS_ADDR` `:8080`, `--health-probe-bind-address`/`PROBE_ADDR` `:8081`,
//! `--leader-elect`/`ENABLE_LEADER_ELECTION`, `LEADER_ELECTION_ID` `dr-syncer.io`, `LOG_LEVEL`).

pub mod admin;
pub mod agents;
pub mod cluster_mapping;
pub mod clusters;
pub mod conditions;
pub mod context;
pub mod error;
pub mod lease;
pub mod metrics;
pub mod namespace_mapping;
pub mod remote_cluster;
pub mod runtime;
pub mod secure_metrics;
pub mod shards;
pub mod slots;
pub mod workers;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use dr_syncer_core::transform::Transformer;

use clap::{ArgAction, Parser, Subcommand};

/// The field manager of the operator's status writes.
pub const OPERATOR_FIELD_MANAGER: &str = "dr-syncer-operator";

fn parse_duration(s: &str) -> Result<Duration, String> {
    dr_syncer_core::config::parse_duration(s).map_err(|e| e.to_string())
}

/// Go's `strconv`-style booleans as the Go operator's config accepted them.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "enabled" => Ok(true),
        "0" | "false" | "no" | "off" | "disabled" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean")),
    }
}

/// Command-line arguments of `dr-syncer-operator` (flags and environment compatible with the Go operator).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dr-syncer-operator",
    version,
    about = "Kubernetes DR operator for dr-syncer.io custom resources"
)]
pub struct Args {
    /// Address of the Prometheus metrics endpoint (`/metrics`; `0` disables it).
    #[arg(long, env = "METRICS_ADDR", default_value = ":8080")]
    pub metrics_bind_address: String,
    /// Serve `/metrics` over TLS to clients whose bearer token the controller cluster authenticates
    /// (TokenReview) and allows `get` on the non-resource URL `/metrics` (SubjectAccessReview).
    #[arg(long, env = "METRICS_SECURE", value_parser = parse_bool, default_value = "false",
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub metrics_secure: bool,
    /// The metrics endpoint's certificate chain (PEM) [default: a self-signed one made at start].
    #[arg(long, requires = "metrics_key_file")]
    pub metrics_cert_file: Option<PathBuf>,
    /// The metrics endpoint's private key (PEM).
    #[arg(long, requires = "metrics_cert_file")]
    pub metrics_key_file: Option<PathBuf>,
    /// Address of the `/healthz` and `/readyz` probes.
    #[arg(long, env = "PROBE_ADDR", default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Run only while holding the leader Lease (for more than one replica).
    #[arg(long, env = "ENABLE_LEADER_ELECTION", value_parser = parse_bool, default_value = "false",
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub leader_elect: bool,
    /// Spread the work over the replicas in this many shards, each held through a Lease
    /// (`<leader-election-id>-shard-<i>`): a replica reconciles only the objects of the shards it holds,
    /// and the others take over a dead replica's shards. Instead of `--leader-elect` (and not with
    /// `--once`, whose round is every mapping); 0: off.
    #[arg(long, env = "SHARDS", default_value_t = 0, conflicts_with_all = ["leader_elect", "once"])]
    pub shards: u32,
    /// Name of the leader Lease (and the prefix of the shard Leases).
    #[arg(long, env = "LEADER_ELECTION_ID", default_value = "dr-syncer.io")]
    pub leader_election_id: String,
    /// Namespace of the leader Lease [default: the operator's own namespace (POD_NAMESPACE), else `dr-syncer`].
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// This replica's identity in the election [default: POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Kubeconfig of the controller cluster [default: KUBECONFIG, ~/.kube/config, or in-cluster].
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Context in that kubeconfig.
    #[arg(long)]
    pub context: Option<String>,
    /// Only watch custom resources in this namespace [default: all namespaces].
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// The operator's own namespace: resources may reference Secrets and mappings in it, and it is never
    /// synced, pruned or deleted [default: POD_NAMESPACE, else `dr-syncer`].
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Also allow references (Secrets, ClusterMappings) into this namespace from any namespace
    /// (repeatable).
    #[arg(long = "allow-reference-namespace", value_name = "NAMESPACE")]
    pub allow_reference_namespaces: Vec<String>,
    /// Also protect this namespace: never a source or destination, never pruned or deleted (repeatable;
    /// kube-system, kube-public, kube-node-lease and the operator's namespace always are).
    #[arg(long = "protected-namespace", value_name = "NAMESPACE")]
    pub protected_namespaces: Vec<String>,
    /// Let kubeconfigs in RemoteCluster Secrets run exec plugins and auth providers and name files
    /// (tokenFile, certificate paths). Whoever can write such a Secret can then run commands as the
    /// operator and send its files (its own token) to a server of their choice; see docs/security.md.
    #[arg(long, env = "ALLOW_KUBECONFIG_EXEC", value_parser = parse_bool, default_value = "false",
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub allow_kubeconfig_exec: bool,
    /// Accept any certificate from remote clusters' API servers (the Go operator's `IGNORE_CERT`).
    /// Insecure: anyone between the operator and a cluster can read and change what it sends, its
    /// credentials included. A kubeconfig's own `insecure-skip-tls-verify: true` works without it.
    #[arg(long, env = "IGNORE_CERT", value_parser = parse_bool, default_value = "false",
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub ignore_cert: bool,
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON", value_parser = parse_bool, default_value = "false",
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub log_json: bool,
    /// NamespaceMapping syncs at the same time, shared fairly: continuous change batches first, then
    /// requested syncs (first, manual, retries), then periodic ones; full syncs leave one slot to change
    /// batches.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 4)]
    pub max_concurrent_syncs: u16,
    /// Objects applied in parallel within one sync.
    #[arg(long, default_value_t = 64)]
    pub apply_concurrency: usize,
    /// Schedule of Scheduled mappings that have none (nor a RemoteCluster defaultSchedule).
    #[arg(long, env = "DEFAULT_SCHEDULE", default_value = "*/5 * * * *")]
    pub default_schedule: String,
    /// How often healthy RemoteClusters and ClusterMappings are checked again.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub recheck_interval: Duration,
    /// How often unhealthy ones are checked again.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub unhealthy_recheck_interval: Duration,
    /// Continuous mode: how long changes are collected into one batch (a change never waits longer).
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    pub debounce: Duration,
    /// PVC data: how long to wait for a mount pod, a ready agent or a mover pod to start.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub data_wait_timeout: Duration,
    /// How long a graceful shutdown waits for running syncs.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub shutdown_timeout: Duration,
    /// Leader lease duration.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub lease_duration: Duration,
    /// Leader lease renew deadline.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub renew_deadline: Duration,
    /// Leader election retry period.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub retry_period: Duration,
    /// Client-side limit of requests per second to each remote cluster (0: unlimited).
    #[arg(long, default_value_t = 0.0)]
    pub qps: f64,
    /// Burst above `--qps`.
    #[arg(long, default_value_t = 100)]
    pub burst: u32,
    /// How long one request to a remote cluster may take before it fails as timed out (and is retried a
    /// few times), and how long any request to the operator's own cluster may wait for an answer;
    /// connecting is bounded at 10 s. Watches are not bounded by it.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub request_timeout: Duration,
    /// How long the object sync of one namespace pair may take before it fails as timed out (PVC data
    /// copies have their own `dataSyncConfig.timeout`).
    #[arg(long, value_parser = parse_duration, default_value = "30m")]
    pub sync_timeout: Duration,
    /// A Scheduled mapping is `Stale` after this many schedule periods without a successful sync (or
    /// PVC data copy).
    #[arg(long, default_value_t = 3)]
    pub stale_periods: u32,
    /// A Continuous mapping is `Stale` when a source change has waited this long to reach the DR side
    /// (or its last successful sync is this old while it fails).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub stale_after: Duration,
    /// Directory of the transformer plugins NamespaceMappings may name in `transformPlugins` (executables,
    /// see docs/plugins.md); a mapping naming a plugin that is not there fails with `PluginNotFound`.
    #[arg(long, env = "PLUGIN_DIR", default_value = dr_syncer_core::plugin::DEFAULT_OPERATOR_PLUGIN_DIR)]
    pub plugin_dir: PathBuf,
    /// How long a transformer plugin may take per object (and to answer its metadata request).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub plugin_timeout: Duration,
    /// Sync each NamespaceMapping present at start once, as if triggered (Manual and not-yet-due
    /// Scheduled ones too; a paused one is left alone), then stop; the exit status is 1 when one failed
    /// or could not run, or when the round did not end within `--sync-timeout`. For a Job or CronJob,
    /// tests and examples; the RemoteCluster and ClusterMapping controllers run meanwhile as usual.
    #[arg(long)]
    pub once: bool,
    /// Print build information as JSON and exit.
    #[arg(long)]
    pub version_json: bool,
    /// What to do (default: run the controllers).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of the operator binary.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (YAML) and exit.
    Crd,
}

/// Run the operator with parsed arguments (the bundled binary: [`Operator`] with nothing added).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    Operator::new(args).run()
}

/// The bundled operator as a builder. `Operator::from_env().main()` is exactly the `dr-syncer-operator`
/// binary; a platform's own operator adds its transformers and runs the same way, with every flag,
/// the health and metrics endpoints, leader election and the plugins:
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
///     dr_syncer_operator::Operator::from_env().with_transformer(label_dr).main()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Operator {
    args: Args,
    extensions: dr_syncer_core::ops::Extensions,
}

impl Operator {
    /// The operator configured from the command line and environment (as the binary is).
    pub fn from_env() -> Self {
        Self::new(Args::parse())
    }

    /// The operator with these arguments.
    pub fn new(args: Args) -> Self {
        Operator {
            args,
            extensions: dr_syncer_core::ops::Extensions::default(),
        }
    }

    /// Run `transformer` in every mapping's sync, after the built-in transformers and the mapping's
    /// `transformRules`, before its plugins (forward syncs only, as everything of the chain).
    pub fn with_transformer(mut self, transformer: impl Transformer + 'static) -> Self {
        self.extensions.add_transformer(transformer);
        self
    }

    /// Copy PVC data with what `hook` makes of the built-in data path (configured per mapping): the same
    /// wrapped, or a snapshot- or CSI-based mover of the platform's. The operator still checks the site
    /// state before each copy.
    pub fn with_volume_sync(
        mut self,
        hook: impl Fn(dr_syncer_core::ops::PvcDataSync) -> std::sync::Arc<dyn dr_syncer_core::ops::VolumeSync>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.extensions.set_volume_sync(hook);
        self
    }

    /// Run until stopped (SIGTERM, a lost lease, or the end of `--once`'s round).
    ///
    /// # Errors
    /// What stops the operator from starting (no controller cluster, a bad flag value).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Operator { args, extensions } = self;
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
            None => {
                // A reconcile nests the sync engine, the data copies and continuous mode's batches in one
                // future; polling it is deep (more so in debug builds), so the workers get 8 MiB stacks
                // instead of 2 (the largest parts are also boxed).
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_stack_size(8 << 20)
                    .build()?;
                let code = rt.block_on(runtime::run_with(args, extensions));
                // Whatever is still in flight (a request to a stalled cluster, a blocking lookup) must not
                // keep a replica that lost its lease alive: the process ends promptly.
                rt.shutdown_timeout(std::time::Duration::from_millis(500));
                code
            }
        }
    }

    /// [`Operator::run`], with an error printed as the binary prints it and turned into exit status 1.
    pub fn main(self) -> ExitCode {
        match self.run() {
            Ok(code) => code,
            Err(err) => {
                eprintln!("dr-syncer-operator: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}
