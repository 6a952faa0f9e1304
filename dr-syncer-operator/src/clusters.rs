//! Clients of the remote clusters, built from their RemoteClusters' kubeconfig Secrets and cached: a client
//! is rebuilt only when its Secret changes (uid, resourceVersion or key).
//!
//! What a sync reads on the controller cluster before it starts is cheap when syncs are frequent (a
//! continuous mapping's change batches, many mappings on the same clusters):
//! - RemoteClusters and ClusterMappings come from the controllers' watch caches once
//!   [`Clusters::use_stores`] gave them (a RemoteCluster only once it is pinned to a cluster; an object
//!   not in the cache is read from the API server, which also says when it does not exist);
//! - a kubeconfig Secret is read again at most every [`SECRET_RECHECK`] per RemoteCluster object (a
//!   rotated kubeconfig is used from the first sync after that; a RemoteCluster created again reads it
//!   at once);
//! - the pinned-identity check ([`ClusterHandle::verify_pinned`]) asks the cluster again at most every
//!   [`IDENTITY_RECHECK`] per client. The check guards against a kubeconfig that reaches another
//!   cluster; the engine's site checks read the DR namespace itself before every sync.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use dr_syncer_core::{
    api::{ClusterMapping, NamespaceMapping, RemoteCluster},
    boundaries::Boundaries,
    kube::{Calls, ClientOptions, ClusterConfig, KubeSource, KubeconfigSource, connect, discover},
    resource::ResourceType,
    watches::SharedWatches,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use crate::error::ClusterError;

/// The default key of the kubeconfig in a RemoteCluster's Secret.
pub const DEFAULT_KUBECONFIG_KEY: &str = "kubeconfig";

/// How long a discovery result is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// How long a successful pinned-identity check of a client is reused.
pub const IDENTITY_RECHECK: Duration = Duration::from_secs(1);

/// How long a kubeconfig Secret read is reused for the client built from it.
pub const SECRET_RECHECK: Duration = Duration::from_secs(1);

/// One remote cluster: a client with its limits, and its discovered types.
pub struct ClusterHandle {
    /// `namespace/name` of the RemoteCluster.
    pub name: String,
    /// The client.
    pub client: Client,
    /// Limits and retries of every request to it.
    pub calls: Calls,
    discovery: tokio::sync::Mutex<Option<(Instant, Arc<Vec<ResourceType>>)>>,
    /// Counters already exported as metrics: (retries, throttled).
    pub exported: Mutex<(u64, u64)>,
    /// The cluster's watches, shared by every continuous mapping reading it: one per type.
    pub watches: SharedWatches,
    /// What the identity checks found (see [`Verified`]).
    verified: Mutex<Verified>,
}

/// The identity checks of one client: the last one that found the pinned identity (the identity, and
/// when its request was sent), and when a check last found another cluster. A match is reused only if
/// its request was sent after the last mismatch, so an old answer arriving late cannot cover a newer
/// "another cluster".
#[derive(Debug, Default)]
struct Verified {
    matched: Option<(String, Instant)>,
    mismatch: Option<Instant>,
}

impl Verified {
    /// Whether `uid` was found by a request sent less than [`IDENTITY_RECHECK`] ago, after any mismatch.
    fn reusable(&self, uid: &str) -> bool {
        self.matched.as_ref().is_some_and(|(found, sent)| {
            found == uid && sent.elapsed() < IDENTITY_RECHECK && self.mismatch.is_none_or(|m| *sent > m)
        })
    }

    /// Record what a request sent at `sent` found (`pinned`: whether it was the pinned identity).
    fn record(&mut self, found: String, pinned: bool, sent: Instant) {
        if pinned {
            if self.mismatch.is_none_or(|m| sent > m)
                && self.matched.as_ref().is_none_or(|(_, at)| sent > *at)
            {
                self.matched = Some((found, sent));
            }
        } else {
            self.matched = None;
            self.mismatch = Some(self.mismatch.map_or(sent, |m| m.max(sent)));
        }
    }
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle").field("name", &self.name).finish()
    }
}

impl ClusterHandle {
    /// The cluster's resource types (discovery, cached for a minute).
    pub async fn types(&self) -> Result<Arc<Vec<ResourceType>>, ClusterError> {
        let mut cached = self.discovery.lock().await;
        if let Some((at, types)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(types.clone());
        }
        let types = Arc::new(discover(&self.client, &self.calls).await.map_err(|e| {
            ClusterError::ConnectionFailed {
                cluster: self.name.clone(),
                message: e.to_string(),
            }
        })?);
        *cached = Some((Instant::now(), types.clone()));
        Ok(types)
    }

    /// The cluster's identity now (its `kube-system` UID; `None` when it may not be read).
    pub async fn identity(&self) -> Result<Option<String>, ClusterError> {
        dr_syncer_core::kube::site::cluster_identity(&self.client, &self.calls)
            .await
            .map_err(|e| ClusterError::ConnectionFailed {
                cluster: self.name.clone(),
                message: e.to_string(),
            })
    }

    /// Check that the cluster reached is the one `rc` is pinned to (`status.clusterIdentity`): nothing to
    /// compare (not pinned yet, an identity that may not be read) passes. A cluster that does not answer
    /// passes too: the sync that follows fails on it with its own error and backoff (and writes nothing
    /// there), so an outage is reported as one, not as a changed cluster.
    ///
    /// # Errors
    /// [`ClusterError::IdentityChanged`] on another cluster.
    pub async fn verify_pinned(&self, rc: &RemoteCluster) -> Result<(), ClusterError> {
        let Some(pinned) = rc.status.as_ref().and_then(|s| s.cluster_identity.as_ref()) else {
            return Ok(());
        };
        if self.verified().reusable(&pinned.uid) {
            return Ok(());
        }
        let sent = Instant::now();
        // One attempt's time (no retries): a cluster that does not answer is the sync's to report.
        let limit = self
            .calls
            .timeout()
            .unwrap_or(dr_syncer_core::kube::DEFAULT_REQUEST_TIMEOUT);
        let found = match tokio::time::timeout(limit, self.identity()).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::debug!(cluster = %self.name, error = %e, "identity not checked: no answer");
                None
            }
            Err(_) => {
                tracing::debug!(cluster = %self.name, "identity not checked: no answer in time");
                None
            }
        };
        let Some(found) = found else {
            return Ok(());
        };
        let matches = found == pinned.uid;
        self.verified().record(found.clone(), matches, sent);
        if matches {
            Ok(())
        } else {
            Err(ClusterError::IdentityChanged {
                cluster: self.name.clone(),
                name: rc.name_any(),
                pinned: pinned.uid.clone(),
                found,
            })
        }
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask the cluster for its version (a connectivity check that needs no permission).
    pub async fn check(&self) -> Result<String, ClusterError> {
        self.client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| ClusterError::ConnectionFailed {
                cluster: self.name.clone(),
                message: e.to_string(),
            })
    }
}

struct Cached {
    /// The uid of the RemoteCluster object that last used it (a RemoteCluster deleted and created
    /// again reads its Secret afresh).
    rc_uid: String,
    /// `namespace/name/key` of the kubeconfig the RemoteCluster named.
    secret_ref: String,
    /// The Secret's uid, resourceVersion and key the client was built from.
    secret_version: String,
    /// When the Secret was last read and found unchanged.
    checked: Instant,
    handle: Arc<ClusterHandle>,
}

/// The controllers' watch caches of RemoteClusters and ClusterMappings.
struct Stores {
    remote_clusters: Store<RemoteCluster>,
    cluster_mappings: Store<ClusterMapping>,
}

/// The cache of remote cluster clients.
pub struct Clusters {
    client: Client,
    options: ClientOptions,
    cache: Mutex<HashMap<(String, String), Cached>>,
    boundaries: Boundaries,
    allow_exec: bool,
    ignore_cert: bool,
    user_agent: Option<String>,
    stores: OnceLock<Stores>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters").finish_non_exhaustive()
    }
}

fn controller_error(what: String, e: &kube::Error) -> ClusterError {
    ClusterError::ControllerApi {
        what,
        message: match e {
            kube::Error::Api(s) => s.message.clone(),
            other => other.to_string(),
        },
        transient: dr_syncer_core::kube::is_retryable(e),
    }
}

impl Clusters {
    /// A cache reading RemoteClusters and Secrets through `client` (the controller cluster).
    pub fn new(client: Client, options: ClientOptions) -> Self {
        Clusters {
            client,
            options,
            cache: Mutex::new(HashMap::new()),
            boundaries: Boundaries::default(),
            allow_exec: false,
            ignore_cert: false,
            user_agent: None,
            stores: OnceLock::new(),
        }
    }

    /// Read RemoteClusters and ClusterMappings from these watch caches (the controllers' own) where they
    /// hold the object; the API server is asked for the others. Only the first call counts.
    pub fn use_stores(&self, remote_clusters: Store<RemoteCluster>, cluster_mappings: Store<ClusterMapping>) {
        let _ = self.stores.set(Stores {
            remote_clusters,
            cluster_mappings,
        });
    }

    /// The `User-Agent` of the remote clusters' clients (default: core's `dr-syncer/<version>`).
    #[must_use]
    pub fn with_user_agent(mut self, agent: String) -> Self {
        self.user_agent = Some(agent);
        self
    }

    /// Where references may point, and which namespaces are protected.
    #[must_use]
    pub fn with_boundaries(mut self, boundaries: Boundaries) -> Self {
        self.boundaries = boundaries;
        self
    }

    /// Let kubeconfigs from Secrets run exec plugins and auth providers and name files.
    #[must_use]
    pub fn allowing_kubeconfig_exec(mut self, allow: bool) -> Self {
        self.allow_exec = allow;
        self
    }

    /// Accept any server certificate from remote clusters (`--ignore-cert`, insecure).
    #[must_use]
    pub fn ignoring_certificates(mut self, ignore: bool) -> Self {
        if ignore {
            tracing::warn!(
                "--ignore-cert: remote clusters' certificates are not verified (insecure; for kubeconfigs made \
                 for the Go operator's IGNORE_CERT)"
            );
        }
        self.ignore_cert = ignore;
        self
    }

    /// Where references may point, and which namespaces are protected.
    pub fn boundaries(&self) -> &Boundaries {
        &self.boundaries
    }

    /// Check a reference from a resource in namespace `from` to `what` `namespace/name`
    /// ([`Boundaries::check_reference`]), before anything is read.
    ///
    /// # Errors
    /// [`ClusterError::Boundary`].
    pub fn check_reference(
        &self,
        from: &str,
        what: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), ClusterError> {
        self.boundaries
            .check_reference(from, what, namespace, name)
            .map_err(ClusterError::Boundary)
    }

    /// The ClusterMapping a NamespaceMapping's `clusterMappingRef` names (in the mapping's namespace
    /// unless the reference says another), with its namespace; `None` without a reference.
    ///
    /// # Errors
    /// [`ClusterError::Boundary`] for a reference out of bounds (nothing is read),
    /// [`ClusterError::ClusterMappingNotFound`], or the read failed.
    pub async fn cluster_mapping_of(
        &self,
        nm: &NamespaceMapping,
    ) -> Result<Option<(String, ClusterMapping)>, ClusterError> {
        let Some(r) = &nm.spec.cluster_mapping_ref else {
            return Ok(None);
        };
        let ns = nm.namespace().unwrap_or_default();
        let cm_ns = r
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| ns.clone());
        self.check_reference(&ns, "ClusterMapping", &cm_ns, &r.name)?;
        if let Some(cm) = self
            .stores
            .get()
            .and_then(|s| s.cluster_mappings.get(&ObjectRef::new(&r.name).within(&cm_ns)))
        {
            return Ok(Some((cm_ns, ClusterMapping::clone(&cm))));
        }
        let api: Api<ClusterMapping> = Api::namespaced(self.client.clone(), &cm_ns);
        match api.get_opt(&r.name).await {
            Ok(Some(cm)) => Ok(Some((cm_ns, cm))),
            Ok(None) => Err(ClusterError::ClusterMappingNotFound(format!(
                "{cm_ns}/{}",
                r.name
            ))),
            Err(e) => Err(controller_error(
                format!("reading ClusterMapping {cm_ns}/{}", r.name),
                &e,
            )),
        }
    }

    /// Every cached handle (for exporting their counters).
    pub fn handles(&self) -> Vec<Arc<ClusterHandle>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.values().map(|c| c.handle.clone()).collect()
    }

    /// Get RemoteCluster `namespace/name`.
    pub async fn remote_cluster(&self, namespace: &str, name: &str) -> Result<RemoteCluster, ClusterError> {
        // (Only pinned ones: a RemoteCluster still being set up, or created again, is read afresh.)
        if let Some(rc) = self
            .stores
            .get()
            .and_then(|s| s.remote_clusters.get(&ObjectRef::new(name).within(namespace)))
            .filter(|rc| rc.status.as_ref().is_some_and(|s| s.cluster_identity.is_some()))
        {
            return Ok(RemoteCluster::clone(&rc));
        }
        let api: Api<RemoteCluster> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(rc)) => Ok(rc),
            Ok(None) => Err(ClusterError::RemoteClusterNotFound(format!("{namespace}/{name}"))),
            Err(e) => Err(controller_error(
                format!("reading RemoteCluster {namespace}/{name}"),
                &e,
            )),
        }
    }

    /// The client of `rc`, from its kubeconfig Secret (rebuilt when the Secret changed).
    pub async fn handle_for(&self, rc: &RemoteCluster) -> Result<Arc<ClusterHandle>, ClusterError> {
        let rc_ns = rc.namespace().unwrap_or_default();
        let rc_name = rc.name_any();
        let r = &rc.spec.kubeconfig_secret_ref;
        let secret_ns = if r.namespace.is_empty() {
            rc_ns.clone()
        } else {
            r.namespace.clone()
        };
        let secret_id = format!("{secret_ns}/{}", r.name);
        // Never read a Secret outside the boundaries (not even to say it is missing).
        self.check_reference(&rc_ns, "Secret", &secret_ns, &r.name)?;
        let key = r
            .key
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| DEFAULT_KUBECONFIG_KEY.to_owned());
        let cache_key = (rc_ns.clone(), rc_name.clone());
        let secret_ref = format!("{secret_id}/{key}");
        let rc_uid = rc.metadata.uid.clone().unwrap_or_default();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(&cache_key)
                && c.rc_uid == rc_uid
                && c.secret_ref == secret_ref
                && c.checked.elapsed() < SECRET_RECHECK
            {
                return Ok(c.handle.clone());
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &secret_ns);
        let secret = match secrets.get_opt(&r.name).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(ClusterError::SecretNotFound(secret_id)),
            Err(e) => return Err(controller_error(format!("reading Secret {secret_id}"), &e)),
        };
        let version = format!(
            "{}/{}/{key}",
            secret.metadata.uid.clone().unwrap_or_default(),
            secret.metadata.resource_version.clone().unwrap_or_default()
        );
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get_mut(&cache_key)
                && c.secret_version == version
            {
                c.rc_uid = rc_uid;
                c.secret_ref = secret_ref;
                c.checked = Instant::now();
                return Ok(c.handle.clone());
            }
        }
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key))
            .map(|b| b.0.clone())
            .ok_or_else(|| ClusterError::KeyNotFound {
                secret: secret_id.clone(),
                key: key.clone(),
            })?;
        let client = connect(&ClusterConfig {
            kubeconfig: if self.allow_exec {
                KubeconfigSource::BytesAllowingExec(bytes)
            } else {
                KubeconfigSource::Bytes(bytes)
            },
            context: None,
            insecure_skip_tls_verify: self.ignore_cert,
            user_agent: self.user_agent.clone(),
        })
        .await
        .map_err(|e| ClusterError::InvalidKubeconfig {
            secret: secret_id,
            // What is wrong, never what was read (core's kubeconfig checks say it that way).
            message: match e {
                dr_syncer_core::Error::Kubeconfig(m) => m,
                other => other.kind().to_owned(),
            },
        })?;
        let calls = self.options.calls();
        let handle = Arc::new(ClusterHandle {
            name: format!("{rc_ns}/{rc_name}"),
            watches: SharedWatches::new(Arc::new(KubeSource::new(client.clone(), calls.clone()))),
            client,
            calls,
            discovery: tokio::sync::Mutex::new(None),
            exported: Mutex::new((0, 0)),
            verified: Mutex::default(),
        });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            cache_key,
            Cached {
                rc_uid,
                secret_ref,
                secret_version: version,
                checked: Instant::now(),
                handle: handle.clone(),
            },
        );
        Ok(handle)
    }

    /// Forget the client of RemoteCluster `namespace/name` (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// The source and destination RemoteCluster names of a NamespaceMapping: from its
    /// `clusterMappingRef` (ClusterMapping `sourceCluster`/`targetCluster`, in the ClusterMapping's
    /// namespace) or from `sourceCluster`/`destinationCluster` (in the mapping's namespace).
    pub async fn cluster_names(
        &self,
        nm: &NamespaceMapping,
    ) -> Result<((String, String), (String, String)), ClusterError> {
        let ns = nm.namespace().unwrap_or_default();
        if let Some((cm_ns, cm)) = self.cluster_mapping_of(nm).await? {
            return Ok((
                (cm_ns.clone(), cm.spec.source_cluster.clone()),
                (cm_ns, cm.spec.target_cluster.clone()),
            ));
        }
        match (
            nm.spec.source_cluster.as_deref().filter(|s| !s.is_empty()),
            nm.spec.destination_cluster.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(s), Some(d)) => Ok(((ns.clone(), s.to_owned()), (ns, d.to_owned()))),
            _ => Err(ClusterError::ClustersUnspecified(
                "either clusterMappingRef or both sourceCluster and destinationCluster must be specified"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_match_is_reused_only_for_its_uid_and_never_over_a_newer_mismatch() {
        let t0 = Instant::now();
        let later = |ms: u64| t0 + Duration::from_millis(ms);
        let mut v = Verified::default();
        assert!(!v.reusable("a"), "nothing checked yet");
        v.record("a".into(), true, later(1));
        assert!(v.reusable("a"));
        assert!(!v.reusable("b"), "another pin is checked afresh");
        // A check sent later finds another cluster: no reuse.
        v.record("x".into(), false, later(3));
        assert!(!v.reusable("a"));
        // The answer of a check sent before that mismatch arrives late: still no reuse.
        v.record("a".into(), true, later(2));
        assert!(!v.reusable("a"), "{v:?}");
        // A check sent after the mismatch finds the pinned cluster again.
        v.record("a".into(), true, later(4));
        assert!(v.reusable("a"));
        // An older match never replaces a newer one.
        v.record("a".into(), true, later(3));
        assert_eq!(v.matched.as_ref().map(|(_, at)| *at), Some(later(4)));
    }

    #[test]
    fn an_identity_match_expires() {
        let mut v = Verified::default();
        let old = Instant::now()
            .checked_sub(IDENTITY_RECHECK + Duration::from_millis(1))
            .expect("a monotonic clock past its first second");
        v.record("a".into(), true, old);
        assert!(!v.reusable("a"));
    }
}
