//! PVC data replication through the Kubernetes API: the pure part (no client).
//!
//! The data path itself (agent, forced command, `RsyncSsh`) is described in `docs/data-path.md`; this
//! module decides **what to create** so that a volume's data moves from a source cluster to a DR cluster:
//!
//! - [`manifests`]: the agent's objects in a source cluster (namespace, key Secrets, the grants ConfigMap,
//!   the DaemonSet), the read-only **mount pod** that mounts a PVC on its node when no application pod
//!   does, and the **mover pod** in the DR namespace;
//! - [`SourceVolume::locate`]: where a PVC is mounted (node, pod UID, PV name) from the pods' status;
//! - [`MoverEvent`]: the mover's JSON lines (log and termination message) parsed back into progress and
//!   results.
//!
//! The IO half (creating these objects, following the mover, locking, cleaning up) is
//! `crate::ops::PvcDataSync`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde::{Deserialize, Serialize};

use crate::{
    api::{PvcSyncSpec, VerificationMode},
    data::{DataMoverError, TransferStats},
};

pub mod exposure;
#[cfg(feature = "data")]
pub mod grant;
pub mod host_path;
#[cfg(feature = "data")]
pub mod manifests;

#[cfg(feature = "data")]
pub use grant::{HostPathGrant, KeyBinding, TransferGrant};

/// Name of the agent's DaemonSet, ServiceAccount and label value.
pub const AGENT_NAME: &str = "dr-syncer-agent";
/// Namespace of the agents unless configured otherwise.
pub const DEFAULT_AGENT_NAMESPACE: &str = "dr-syncer-system";
/// The ConfigMap the agents mount as their grants (see the agent's `grants` module).
pub const GRANTS_CONFIGMAP: &str = "dr-syncer-agent-grants";
/// Label naming the role of a pod dr-syncer created: `agent`, `mount` or `mover`.
pub const ROLE_LABEL: &str = "dr-syncer.io/role";
/// Label with the (source) PVC a mount or mover pod serves.
pub const PVC_LABEL: &str = "dr-syncer.io/pvc";
/// `app.kubernetes.io/managed-by` value of everything this module creates.
pub const MANAGED_BY: &str = "dr-syncer";
/// Default agent image: the published agent image of this version ([`crate::version::AGENT_IMAGE`]), whose
/// entrypoint is `dr-syncer-agent` and which has OpenSSH's `sshd` and `rsync`. The Go project's agent image
/// does not work here (another program behind the same name).
pub const DEFAULT_AGENT_IMAGE: &str = crate::version::AGENT_IMAGE;

/// How the agents of one cluster are deployed and reached.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// Name of the DaemonSet and value of its pods' `app.kubernetes.io/name` (their selector): the
    /// operator's agents are [`AGENT_NAME`]; a CLI run's temporary agents have a name of their own, so
    /// the two never touch each other's pods.
    pub name: String,
    /// The ConfigMap the agents mount as their grants.
    pub grants_configmap: String,
    /// Labels put on every object created for these agents and their transfers (DaemonSet, Secrets,
    /// grants, mount and mover pods, locks), e.g. a CLI run's [`crate::annotations::CLI_RUN`].
    pub owner_labels: BTreeMap<String, String>,
    /// Namespace of the DaemonSet, its Secrets and the grants ConfigMap.
    pub namespace: String,
    /// The agent image (also used for mount and mover pods).
    pub image: String,
    /// Image pull policy.
    pub pull_policy: Option<String>,
    /// SSH port (host network).
    pub port: u16,
    /// Port of the agent's health endpoint.
    pub health_port: u16,
    /// The kubelet's root directory on the nodes (`pvcSync.kubeletRoot`); `None`: discovered from the
    /// nodes when the agents are deployed ([`host_path::discover_kubelet_root`]).
    pub kubelet_root: Option<String>,
    /// Node directories below which `hostPath` PVs are served (`pvcSync.hostPathPrefixes`).
    pub host_path_prefixes: Vec<String>,
    /// How movers reach the agents (`pvcSync.exposure`).
    pub exposure: exposure::Exposure,
    /// Node selector of the agent pods.
    pub node_selector: BTreeMap<String, String>,
    /// Extra pod labels and annotations.
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    pub annotations: BTreeMap<String, String>,
    /// Priority class.
    pub priority_class_name: Option<String>,
    /// Tolerations as given in the CRD (maps of `key`, `operator`, `value`, `effect`, `tolerationSeconds`);
    /// empty means "tolerate everything" (the agent must run where volumes are mounted).
    pub tolerations: Vec<BTreeMap<String, String>>,
    /// Resource limits and requests.
    pub resources: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
    /// Extra environment variables (literal values).
    pub env: Vec<AgentEnv>,
    /// Run the agent pods on the host network (`deployment.hostNetwork`, default true); without it the
    /// SSH port is published as a hostPort on each node (movers still dial the node's address).
    pub host_network: bool,
    /// Run the agent container privileged (`deployment.privileged`, the Go default when `deployment` is
    /// written; needed where SELinux keeps even root from reading volumes); otherwise root with only the
    /// capabilities sshd and rsync need.
    pub privileged: bool,
    /// Concurrent transfers across the cluster.
    pub global_concurrency: usize,
    /// Concurrent transfers reading from one node (`pvcSync.concurrency`; `None`: no per-node limit).
    pub node_concurrency: Option<usize>,
    /// How a transfer is retried (`pvcSync.retryConfig`), unless a mapping says otherwise.
    pub retry: AgentRetry,
    /// Verification of copies whose mapping sets none (`pvcSync.defaultVerificationMode`).
    pub default_verification: VerificationMode,
    /// Percentage of files sample verification checks, for mappings that set none
    /// (`pvcSync.defaultSamplePercent`).
    pub default_sample_percent: u8,
    /// How the agents are checked (`pvcSync.healthCheck`).
    pub health: AgentHealth,
    /// Client addresses a transfer's key is accepted from besides the mover pod's and its node's
    /// (`pvcSync.moverSourceAddresses`; `*` for any).
    pub mover_source_addresses: Vec<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            name: AGENT_NAME.into(),
            grants_configmap: GRANTS_CONFIGMAP.into(),
            owner_labels: BTreeMap::new(),
            namespace: DEFAULT_AGENT_NAMESPACE.into(),
            image: DEFAULT_AGENT_IMAGE.into(),
            pull_policy: None,
            port: 2222,
            health_port: 2223,
            kubelet_root: None,
            host_path_prefixes: host_path::DEFAULT_HOST_PATH_PREFIXES
                .iter()
                .map(|p| (*p).to_string())
                .collect(),
            exposure: exposure::Exposure::default(),
            node_selector: BTreeMap::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            priority_class_name: None,
            tolerations: Vec::new(),
            resources: None,
            env: Vec::new(),
            host_network: true,
            privileged: false,
            global_concurrency: 4,
            node_concurrency: None,
            retry: AgentRetry::default(),
            default_verification: VerificationMode::None,
            default_sample_percent: 10,
            health: AgentHealth::default(),
            mover_source_addresses: Vec::new(),
        }
    }
}

impl AgentSettings {
    /// Temporary agents of one CLI run: DaemonSet `dr-syncer-agent-<run>`, grants `…-grants`, and every
    /// object labelled [`crate::annotations::CLI_RUN`]` = run`.
    pub fn for_cli_run(run: &str) -> Self {
        let name = format!("{AGENT_NAME}-{run}");
        AgentSettings {
            grants_configmap: format!("{name}-grants"),
            owner_labels: BTreeMap::from([(crate::annotations::CLI_RUN.to_owned(), run.to_owned())]),
            name,
            ..AgentSettings::default()
        }
    }

    /// How often a RemoteCluster's agents are checked again, when its enabled `pvcSync.healthCheck` says
    /// (`None`: the operator's own interval).
    pub fn recheck_interval(spec: &crate::api::RemoteClusterSpec) -> Option<std::time::Duration> {
        spec.enabled_pvc_sync()
            .and_then(|p| Self::from_spec(Some(p)).health.interval)
    }

    /// Settings from a RemoteCluster's `spec.pvcSync` (defaults where it says nothing).
    pub fn from_spec(spec: Option<&PvcSyncSpec>) -> Self {
        let mut s = AgentSettings::default();
        let Some(spec) = spec else {
            return s;
        };
        if let Some(image) = &spec.image {
            if let Some(repo) = image.repository.as_deref().filter(|r| !r.is_empty()) {
                let tag = image.tag.as_deref().filter(|t| !t.is_empty()).unwrap_or("latest");
                s.image = format!("{repo}:{tag}");
            }
            s.pull_policy = image.pull_policy.clone().filter(|p| !p.is_empty());
        }
        if let Some(ssh) = &spec.ssh
            && let Ok(port) = u16::try_from(ssh.port)
            && port > 0
        {
            s.port = port;
            s.health_port = port.saturating_add(1);
        }
        if let Some(d) = &spec.deployment {
            s.node_selector = d.node_selector.clone().unwrap_or_default();
            s.labels = d.labels.clone().unwrap_or_default();
            s.annotations = d.annotations.clone().unwrap_or_default();
            s.priority_class_name = d.priority_class_name.clone();
            s.tolerations = d.tolerations.clone().unwrap_or_default();
            s.resources = d.resources.as_ref().map(|r| {
                (
                    r.limits.clone().unwrap_or_default(),
                    r.requests.clone().unwrap_or_default(),
                )
            });
            s.env = d
                .extra_env
                .iter()
                .flatten()
                .map(
                    |e| match e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()) {
                        Some(f) => AgentEnv::FieldRef(e.name.clone(), f.field_path.clone()),
                        None => AgentEnv::Value(e.name.clone(), e.value.clone().unwrap_or_default()),
                    },
                )
                .collect();
            s.host_network = d.host_network;
            s.privileged = d.privileged;
        }
        s.global_concurrency = usize::try_from(spec.global_concurrency_limit.max(1)).unwrap_or(1);
        s.node_concurrency = spec
            .concurrency
            .filter(|c| *c > 0)
            .and_then(|c| usize::try_from(c).ok());
        if let Some(r) = &spec.retry_config {
            if let Some(n) = r.max_retries {
                s.retry.max_retries = u32::try_from(n.max(0)).unwrap_or(0);
            }
            let duration =
                |v: &Option<String>| v.as_deref().and_then(|t| crate::config::parse_duration(t).ok());
            if let Some(d) = duration(&r.initial_delay) {
                s.retry.initial_delay = d;
            }
            if let Some(d) = duration(&r.max_delay) {
                s.retry.max_delay = d.max(s.retry.initial_delay);
            }
        }
        s.default_verification = spec.default_verification_mode;
        s.default_sample_percent = u8::try_from(spec.default_sample_percent.clamp(1, 100)).unwrap_or(10);
        if let Some(h) = &spec.health_check {
            let duration =
                |v: &Option<String>| v.as_deref().and_then(|t| crate::config::parse_duration(t).ok());
            if let Some(d) = duration(&h.interval) {
                s.health.interval = Some(d);
            }
            if let Some(d) = duration(&h.ssh_timeout) {
                s.health.ssh_timeout = d;
            }
            if let Some(d) = duration(&h.retry_interval) {
                s.health.retry_interval = d;
            }
            if let Some(n) = h.retry_attempts {
                s.health.retry_attempts = u32::try_from(n.max(0)).unwrap_or(0);
            }
        }
        s.mover_source_addresses = spec.mover_source_addresses.clone().unwrap_or_default();
        s.kubelet_root = spec.kubelet_root.clone().filter(|r| !r.is_empty());
        if let Some(prefixes) = &spec.host_path_prefixes {
            s.host_path_prefixes = prefixes.clone();
        }
        if let Some(e) = &spec.exposure {
            s.exposure = exposure::Exposure {
                mode: e.mode,
                address: e.address.clone().filter(|a| !a.is_empty()),
                node_port: e.node_port.and_then(|p| u16::try_from(p).ok()),
                service_annotations: e.service_annotations.clone().unwrap_or_default(),
            };
        }
        s
    }

    /// The kubelet root the agents use: the configured or discovered one, else the default.
    pub fn kubelet_root(&self) -> &str {
        self.kubelet_root
            .as_deref()
            .unwrap_or(host_path::DEFAULT_KUBELET_ROOT)
    }

    /// Check the settings a user wrote: the exposure, the kubelet root and the hostPath prefixes.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.exposure.validate()?;
        host_path::check_absolute(self.kubelet_root()).map_err(|e| format!("pvcSync.kubeletRoot: {e}"))?;
        if self.kubelet_root() == "/" {
            return Err("pvcSync.kubeletRoot: \"/\" is not a kubelet root".into());
        }
        for p in &self.host_path_prefixes {
            host_path::check_prefix(p, self.kubelet_root())?;
        }
        Ok(())
    }
}

/// An environment variable of the agent pods (`deployment.extraEnv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEnv {
    /// A value.
    Value(String, String),
    /// A field of the pod (`valueFrom.fieldRef.fieldPath`, e.g. `spec.nodeName`).
    FieldRef(String, String),
}

/// How transfers are retried (`pvcSync.retryConfig`): the mover's attempts after a transient failure
/// and the delays between them (doubling from `initial_delay` up to `max_delay`, with jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRetry {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First delay.
    pub initial_delay: std::time::Duration,
    /// Longest delay.
    pub max_delay: std::time::Duration,
}

impl Default for AgentRetry {
    fn default() -> Self {
        AgentRetry {
            max_retries: 3,
            initial_delay: std::time::Duration::from_secs(1),
            max_delay: std::time::Duration::from_secs(30),
        }
    }
}

/// How the agents are checked (`pvcSync.healthCheck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentHealth {
    /// How often the RemoteCluster's agents (and a ClusterMapping's SSH connectivity) are checked again
    /// (`None`: the operator's `--recheck-interval`).
    pub interval: Option<std::time::Duration>,
    /// How long a connectivity probe waits for an agent's SSH answer.
    pub ssh_timeout: std::time::Duration,
    /// Delay between the attempts of a probe that failed.
    pub retry_interval: std::time::Duration,
    /// Attempts after the first of a probe that failed.
    pub retry_attempts: u32,
}

impl Default for AgentHealth {
    fn default() -> Self {
        AgentHealth {
            interval: None,
            ssh_timeout: std::time::Duration::from_secs(10),
            retry_interval: std::time::Duration::from_secs(2),
            retry_attempts: 1,
        }
    }
}

/// Where a source PVC's data can be read: the pod that has it mounted and its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVolume {
    /// The pod's name.
    pub pod: String,
    /// The pod's UID (part of the volume's path on the node).
    pub pod_uid: String,
    /// The node the pod runs on.
    pub node: String,
    /// The PV bound to the claim (the volume's directory name on the node).
    pub pv: String,
    /// Whether the pod is one of dr-syncer's read-only mount pods.
    pub mount_pod: bool,
}

impl SourceVolume {
    /// The running pod (preferring application pods over dr-syncer's mount pods) that mounts `pvc`,
    /// from the pods of its namespace; `None` when no running pod mounts it or the claim is not bound.
    pub fn locate(pvc: &PersistentVolumeClaim, pods: &[Pod]) -> Option<SourceVolume> {
        let claim = pvc.metadata.name.as_deref()?;
        let pv = pvc.spec.as_ref()?.volume_name.clone().filter(|v| !v.is_empty())?;
        let mut found: Vec<SourceVolume> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter(|p| {
                p.spec.as_ref().is_some_and(|s| {
                    s.volumes.iter().flatten().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == claim)
                    })
                })
            })
            .filter_map(|p| {
                Some(SourceVolume {
                    pod: p.metadata.name.clone()?,
                    pod_uid: p.metadata.uid.clone()?,
                    node: p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())?,
                    pv: pv.clone(),
                    mount_pod: p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(ROLE_LABEL))
                        .is_some_and(|r| r == "mount"),
                })
            })
            .collect();
        found.sort_by(|a, b| (a.mount_pod, &a.pod).cmp(&(b.mount_pod, &b.pod)));
        found.into_iter().next()
    }

    /// The grant's value the agents resolve (`<pod UID>/<PV>`).
    pub fn grant_value(&self) -> String {
        format!("{}/{}", self.pod_uid, self.pv)
    }
}

/// A short hash suffix that keeps generated names unique and within limits.
pub fn name_hash(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..5].iter().map(|b| format!("{b:02x}")).collect()
}

/// `prefix-<name>-<hash>` cut to a valid object name (≤ 63 characters, DNS label).
pub fn object_name(prefix: &str, name: &str, hash_parts: &[&str]) -> String {
    let hash = name_hash(hash_parts);
    let room = 63 - prefix.len() - hash.len() - 2;
    let mut middle: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    middle = middle.trim_matches('-').to_string();
    if middle.is_empty() {
        format!("{prefix}-{hash}")
    } else {
        format!("{prefix}-{middle}-{hash}")
    }
}

/// The grant's name for a copy of source PVC `namespace/pvc` into `destination` (`namespace/pvc` of the
/// DR side): a ConfigMap key (`[-._a-zA-Z0-9]`, ≤ 200 characters), `<namespace>.<pvc>.<hash>`. Two copies
/// of one source PVC into different destinations (two mappings, or a drill next to the operator) have
/// grants of their own: neither renews nor removes the other's.
pub fn grant_name(namespace: &str, pvc: &str, destination: (&str, &str)) -> String {
    let hash = name_hash(&[namespace, pvc, destination.0, destination.1]);
    let name = format!("{namespace}.{pvc}");
    if name.len() <= 180 {
        format!("{name}.{hash}")
    } else {
        format!("{}.{hash}", &name[..180])
    }
}

/// Settings of one transfer, from a NamespaceMapping's `pvcConfig.dataSyncConfig` (or the CLI).
#[derive(Debug, Clone, PartialEq)]
pub struct TransferSettings {
    /// rsync exclude patterns.
    pub exclude: Vec<String>,
    /// Extra rsync options (from the allow-list).
    pub rsync_options: Vec<String>,
    /// Bandwidth limit in KiB/s.
    pub bandwidth_limit_kib: Option<u32>,
    /// Time limit of one transfer.
    pub timeout: std::time::Duration,
    /// Verification after the copy.
    pub verification: VerificationMode,
    /// Percentage of files checked by sample verification.
    pub sample_percent: u8,
    /// Retries of transient failures inside one mover.
    pub retries: u32,
    /// First delay before a retry (doubling up to `retry_max_delay`).
    pub retry_initial_delay: std::time::Duration,
    /// Longest delay between retries.
    pub retry_max_delay: std::time::Duration,
    /// Mirror a source volume that looks wiped (empty or nearly empty while the DR copy is not); by
    /// default such a copy is refused (`SourceLooksWiped`) and the DR copy left untouched.
    pub allow_wiped_source: bool,
}

impl Default for TransferSettings {
    fn default() -> Self {
        TransferSettings {
            exclude: Vec::new(),
            rsync_options: Vec::new(),
            bandwidth_limit_kib: None,
            timeout: std::time::Duration::from_secs(30 * 60),
            verification: VerificationMode::None,
            sample_percent: 10,
            retries: 3,
            retry_initial_delay: std::time::Duration::from_secs(1),
            retry_max_delay: std::time::Duration::from_secs(30),
            allow_wiped_source: false,
        }
    }
}

impl TransferSettings {
    /// From a NamespaceMapping's `dataSyncConfig`, with the source RemoteCluster's defaults
    /// (`pvcSync.retryConfig`, `defaultVerificationMode`, `defaultSamplePercent`) where the mapping leaves
    /// them at their defaults (no verification, 10 %).
    ///
    /// # Errors
    /// As [`Self::from_config`].
    pub fn from_config_and_agents(
        config: Option<&crate::api::DataSyncConfig>,
        agents: &AgentSettings,
    ) -> Result<Self, String> {
        let mut s = Self::from_config(config)?;
        s.retries = agents.retry.max_retries;
        s.retry_initial_delay = agents.retry.initial_delay;
        s.retry_max_delay = agents.retry.max_delay;
        if s.verification == VerificationMode::None {
            s.verification = agents.default_verification;
        }
        let mapping_percent = config.map_or(10, |c| c.sample_percent);
        if mapping_percent == 10 {
            s.sample_percent = agents.default_sample_percent;
        }
        Ok(s)
    }

    /// From a NamespaceMapping's `dataSyncConfig`.
    ///
    /// # Errors
    /// A message naming the field when a value is invalid (timeout, rsync option).
    pub fn from_config(config: Option<&crate::api::DataSyncConfig>) -> Result<Self, String> {
        let mut s = TransferSettings::default();
        let Some(c) = config else {
            return Ok(s);
        };
        s.exclude = c.exclude_paths.clone().unwrap_or_default();
        s.rsync_options = c.rsync_options.clone().unwrap_or_default();
        crate::data::validate_extra_options(&s.rsync_options)
            .map_err(|e| format!("pvcConfig.dataSyncConfig.rsyncOptions: {e}"))?;
        s.bandwidth_limit_kib = c
            .bandwidth_limit
            .filter(|b| *b > 0)
            .and_then(|b| u32::try_from(b).ok());
        s.timeout = crate::config::parse_duration(&c.timeout)
            .map_err(|e| format!("pvcConfig.dataSyncConfig.timeout: {e}"))?;
        s.verification = c.verification_mode;
        s.sample_percent = u8::try_from(c.sample_percent.clamp(1, 100)).unwrap_or(10);
        Ok(s)
    }

    /// The mover's command-line options for these settings.
    pub fn mover_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for e in &self.exclude {
            a.push(format!("--exclude={e}"));
        }
        for o in &self.rsync_options {
            a.push(format!("--rsync-option={o}"));
        }
        if let Some(b) = self.bandwidth_limit_kib {
            a.push(format!("--bwlimit-kib={b}"));
        }
        a.push(format!("--timeout-secs={}", self.timeout.as_secs().max(1)));
        a.push(format!(
            "--verification={}",
            match self.verification {
                VerificationMode::None => "none",
                VerificationMode::Sample => "sample",
                VerificationMode::Full => "full",
            }
        ));
        a.push(format!("--sample-percent={}", self.sample_percent));
        a.push(format!("--retries={}", self.retries));
        a.push(format!(
            "--retry-initial-ms={}",
            self.retry_initial_delay.as_millis()
        ));
        a.push(format!("--retry-max-ms={}", self.retry_max_delay.as_millis()));
        if self.allow_wiped_source {
            a.push("--allow-wiped-source".into());
        }
        a
    }
}

/// Progress of one transfer as the mover reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoverProgress {
    /// Attempt number (1 for the first).
    #[serde(default)]
    pub attempt: u32,
    /// Bytes transferred so far.
    #[serde(default)]
    pub bytes: u64,
    /// Percent done.
    #[serde(default)]
    pub percent: u8,
    /// Current speed.
    #[serde(default)]
    pub bytes_per_second: f64,
    /// Estimated seconds left.
    #[serde(default)]
    pub remaining_seconds: Option<u64>,
    /// Files transferred so far.
    #[serde(default)]
    pub files_transferred: u64,
    /// Files in the transfer.
    #[serde(default)]
    pub files_total: u64,
}

/// One line of the mover's output (its log and its termination message).
#[derive(Debug, Clone, PartialEq)]
pub enum MoverEvent {
    /// Transfer progress.
    Progress(MoverProgress),
    /// The mover waits for the reader to serve the grant.
    Waiting(String),
    /// Done.
    Completed(TransferStats),
    /// Failed, with the error kind (as [`DataMoverError::kind`]) and whether a retry may help.
    Failed {
        /// The error's kind.
        kind: String,
        /// Whether a retry may help.
        transient: bool,
        /// The message.
        message: String,
    },
}

impl MoverEvent {
    /// Parse one JSON line; `None` for anything else (e.g. a log line of the agent).
    pub fn parse(line: &str) -> Option<MoverEvent> {
        let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
        match v.get("event")?.as_str()? {
            "progress" => serde_json::from_value(v.clone()).ok().map(MoverEvent::Progress),
            "waiting" => Some(MoverEvent::Waiting(text("message"))),
            "failed" => Some(MoverEvent::Failed {
                kind: text("kind"),
                transient: v.get("transient").and_then(|t| t.as_bool()).unwrap_or(false),
                message: text("message"),
            }),
            "completed" => {
                let s = v.get("stats")?;
                let n = |k: &str| s.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                Some(MoverEvent::Completed(TransferStats {
                    bytes_sent: n("bytesSent"),
                    bytes_received: n("bytesReceived"),
                    literal_bytes: n("literalBytes"),
                    total_bytes: n("totalBytes"),
                    files_transferred: n("filesTransferred"),
                    files_deleted: n("filesDeleted"),
                    files_total: n("filesTotal"),
                    files_verified: n("filesVerified"),
                    duration: std::time::Duration::from_secs_f64(
                        s.get("durationSeconds")
                            .and_then(|x| x.as_f64())
                            .unwrap_or(0.0)
                            .max(0.0),
                    ),
                    attempts: u32::try_from(n("attempts")).unwrap_or(1),
                }))
            }
            _ => None,
        }
    }

    /// The last event of a log (or termination message) text.
    pub fn last_in(text: &str) -> Option<MoverEvent> {
        text.lines().rev().find_map(MoverEvent::parse)
    }

    /// The error a `Failed` event stands for (its kind kept when it is one dr-syncer knows).
    pub fn into_error(kind: &str, transient: bool, message: String) -> DataMoverError {
        const KINDS: [&str; 10] = [
            "InvalidTransferRequest",
            "HostKeyMismatch",
            "AuthenticationFailed",
            "TransferRefused",
            "TransferFailed",
            "TransferIncomplete",
            "TransferTimedOut",
            "VerificationFailed",
            "Io",
            "SourceLooksWiped",
        ];
        DataMoverError::Reported {
            kind: KINDS.into_iter().find(|k| *k == kind).unwrap_or("TransferFailed"),
            message,
            transient,
        }
    }
}

/// What a transfer is doing, reported while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum PvcSyncStage {
    /// Waiting for the source volume to be mounted (mount pod).
    Mounting,
    /// The mover pod was created and waits to start.
    Starting {
        /// The source node.
        node: String,
    },
    /// The mover reports progress.
    Moving(MoverProgress),
}

#[cfg(test)]
#[path = "pvc_tests.rs"]
mod tests;
