//! What every reconcile shares: the controller-cluster client, the remote cluster clients, metrics, the
//! event recorder, continuous-mode workers, and per-object error backoff.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use dr_syncer_core::api::{NamespaceMapping, RemoteCluster};
use kube::{
    Client, Resource,
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
    },
};
use tokio::sync::mpsc;
use tracing::warn;

use crate::{clusters::Clusters, metrics::Metrics, workers::Workers};

/// Tunables of the controllers (from flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// How often a healthy RemoteCluster / ClusterMapping is checked again.
    pub recheck_interval: Duration,
    /// How often an unhealthy one is checked again.
    pub unhealthy_recheck_interval: Duration,
    /// The schedule of Scheduled mappings without their own and without a RemoteCluster default.
    pub default_schedule: String,
    /// Objects applied in parallel within one sync.
    pub apply_concurrency: usize,
    /// How often a running sync's progress is written to status.
    pub progress_interval: Duration,
    /// Continuous mode: how long changes are collected into one batch.
    pub debounce: Duration,
    /// PVC data: how long to wait for mount pods, agents and mover pods to start.
    pub data_wait_timeout: Duration,
    /// How long the object sync of one namespace pair may take.
    pub sync_timeout: Duration,
    /// `Stale` after this many schedule periods without a successful sync (Scheduled mode).
    pub stale_periods: u32,
    /// `Stale` in Continuous mode after this long with a source change not on the DR side.
    pub stale_after: Duration,
    /// The transformer plugins mappings may name (`--plugin-dir`).
    pub plugins: Arc<dr_syncer_core::plugin::PluginDir>,
    /// `--once`: the mappings of the one reconcile round, reported as they finish.
    pub round: Option<Arc<Round>>,
    /// What an [`crate::Operator`] builder added: transformers after the built-in chain of every
    /// mapping's sync, and a hook on the PVC data path.
    pub extensions: dr_syncer_core::ops::Extensions,
    /// Syncs at once (`--max-concurrent-syncs`), shared fairly ([`crate::slots`]).
    pub sync_slots: usize,
    /// `--shards`: the shards this replica holds (`None`: it reconciles everything).
    pub shards: Option<Arc<crate::shards::Shards>>,
}

/// `--once`: one reconcile round of the NamespaceMappings present at start; `done` is cancelled when each
/// has finished its first sync attempt (or could not start one).
#[derive(Debug)]
pub struct Round {
    pending: Mutex<std::collections::BTreeSet<String>>,
    failed: Mutex<Vec<String>>,
    /// Cancelled when the round is over.
    pub done: tokio_util::sync::CancellationToken,
}

impl Round {
    /// A round of the mappings `keys` (`namespace/name`); over at once when there are none.
    pub fn new(keys: impl IntoIterator<Item = String>) -> Self {
        let round = Round {
            pending: Mutex::new(keys.into_iter().collect()),
            failed: Mutex::default(),
            done: tokio_util::sync::CancellationToken::new(),
        };
        if round.pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            round.done.cancel();
        }
        round
    }

    /// Mapping `key` finished its attempt (`ok`: synced, or nothing to do).
    pub fn finished(&self, key: &str, ok: bool) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.remove(key) {
            return;
        }
        if !ok {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(key.to_owned());
        }
        if pending.is_empty() {
            self.done.cancel();
        }
    }

    /// Whether `key` is still to be synced in this round.
    pub fn is_pending(&self, key: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    /// The round's deadline passed: the mappings still pending failed (they never got to a sync: deleted
    /// before their first reconcile, or stuck), and the round is over.
    pub fn expire(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.extend(
            pending
                .iter()
                .map(|k| format!("{k} (no sync before the deadline)")),
        );
        pending.clear();
        self.done.cancel();
    }

    /// The mappings whose attempt failed.
    pub fn failed(&self) -> Vec<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            recheck_interval: Duration::from_secs(300),
            unhealthy_recheck_interval: Duration::from_secs(30),
            default_schedule: "*/5 * * * *".into(),
            apply_concurrency: dr_syncer_core::ops::mapping::DEFAULT_APPLY_CONCURRENCY,
            progress_interval: Duration::from_secs(5),
            debounce: Duration::from_millis(100),
            data_wait_timeout: Duration::from_secs(300),
            sync_timeout: dr_syncer_core::ops::mapping::DEFAULT_SYNC_TIMEOUT,
            stale_periods: 3,
            stale_after: Duration::from_secs(600),
            plugins: Arc::new(dr_syncer_core::plugin::PluginDir::none()),
            round: None,
            extensions: dr_syncer_core::ops::Extensions::default(),
            sync_slots: 4,
            shards: None,
        }
    }
}

/// Per-object exponential backoff of failed reconciles (kube-runtime has none), reset on success.
#[derive(Debug, Default)]
pub struct Backoffs(Mutex<HashMap<String, u32>>);

impl Backoffs {
    /// The delay before retrying `key` after one more failure: 1 s, 2 s, 4 s … capped at 5 min.
    pub fn next(&self, key: &str) -> Duration {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = (*n + 1).min(16);
        let secs = 2u64.saturating_pow(*n - 1).min(300);
        // Up to 10 % jitter so that many failing objects do not retry in lockstep.
        Duration::from_millis(secs * 1000 + fastrand::u64(0..=secs * 100))
    }

    /// Forget `key`'s failures.
    pub fn reset(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

/// The shared context of the controllers.
pub struct Context {
    /// The controller cluster.
    pub client: Client,
    /// Remote cluster clients.
    pub clusters: Clusters,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder (reporting controller `dr-syncer`).
    pub recorder: Recorder,
    /// Continuous-mode watch sets, one per mapping.
    pub workers: Workers,
    /// Sends a NamespaceMapping to its controller for a reconcile (continuous-mode changes).
    pub trigger: mpsc::UnboundedSender<ObjectRef<NamespaceMapping>>,
    /// Error backoff per object.
    pub backoffs: Backoffs,
    /// Tunables.
    pub options: Options,
    /// This process's identity (lease holder, PVC lock holder).
    pub identity: String,
    /// Sends a RemoteCluster to its controller for a check now (a mapping found it reaching another
    /// cluster).
    rc_trigger: mpsc::UnboundedSender<ObjectRef<RemoteCluster>>,
    rc_triggers: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<RemoteCluster>>>>,
    /// Deletions made per mapping and DR namespace, for the deletion brake's sliding window.
    pub deletions: Arc<dr_syncer_core::brake::DeletionLedger>,
    /// The sync slots.
    pub slots: Arc<crate::slots::SyncSlots>,
    /// Global limits of PVC data copies, per source RemoteCluster (`pvcSync.globalConcurrencyLimit`).
    data_limits: Mutex<HashMap<String, (usize, Arc<tokio::sync::Semaphore>)>>,
    node_limits: Mutex<HashMap<String, Arc<dr_syncer_core::ops::NodeLimits>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context on `client`; returns the receiving end of [`Context::trigger`].
    pub fn new(
        client: Client,
        clusters: Clusters,
        metrics: Arc<Metrics>,
        identity: &str,
        options: Options,
    ) -> (Context, mpsc::UnboundedReceiver<ObjectRef<NamespaceMapping>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (rc_tx, rc_rx) = mpsc::unbounded_channel();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "dr-syncer".into(),
                instance: Some(identity.to_owned()),
            },
        );
        let slots = crate::slots::SyncSlots::new(options.sync_slots);
        let ctx = Context {
            client,
            clusters,
            metrics,
            recorder,
            workers: Workers::default(),
            trigger: tx,
            backoffs: Backoffs::default(),
            options,
            identity: identity.to_owned(),
            rc_trigger: rc_tx,
            rc_triggers: Mutex::new(Some(rc_rx)),
            deletions: Arc::default(),
            slots,
            data_limits: Mutex::new(HashMap::new()),
            node_limits: Mutex::new(HashMap::new()),
        };
        (ctx, rx)
    }

    /// Remove annotation `key` from `obj` (on the controller cluster) if it still has `value`: a JSON
    /// patch with a test, so that a value set again meanwhile stays. An object that is gone, or whose
    /// value changed, is left alone.
    ///
    /// # Errors
    /// The patch failed otherwise.
    pub async fn remove_annotation<K>(&self, obj: &K, key: &str, value: &str) -> crate::error::Result<()>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        use kube::ResourceExt;
        let api: kube::Api<K> =
            kube::Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        let path = format!(
            "/metadata/annotations/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "test", "path": path, "value": value},
            {"op": "remove", "path": path},
        ]))
        .map_err(|e| {
            crate::error::Error::Core(dr_syncer_core::Error::Json {
                context: format!("removing annotation {key}"),
                source: e,
            })
        })?;
        match api
            .patch(
                &obj.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::<()>::Json(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // The test failed (set again meanwhile) or the object is gone: nothing to remove.
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(()),
            Err(e) => Err(crate::error::Error::kube(format!("removing annotation {key}"), e)),
        }
    }

    /// Check RemoteCluster `rc` now (see [`Context::take_rc_triggers`]).
    pub fn recheck(&self, rc: &RemoteCluster) {
        let _ = self.rc_trigger.send(ObjectRef::from_obj(rc));
    }

    /// Whether this replica reconciles `obj`: `Some` when it runs unsharded or holds the object's shard
    /// (the guard keeps the shard from being given back while the reconcile runs), `None` when another
    /// replica does.
    pub fn admit<K: Resource>(&self, obj: &K) -> Option<Option<crate::shards::ShardGuard>> {
        match &self.options.shards {
            None => Some(None),
            Some(shards) => shards
                .admit(obj.meta().uid.as_deref().unwrap_or_default())
                .map(Some),
        }
    }

    /// The receiving end of [`Context::recheck`], for the RemoteCluster controller (once).
    pub fn take_rc_triggers(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<RemoteCluster>>> {
        self.rc_triggers.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The global limit of PVC data copies reading from `cluster` (`limit` slots; a changed limit
    /// takes effect for copies that start afterwards).
    pub fn data_limit(&self, cluster: &str, limit: usize) -> Arc<tokio::sync::Semaphore> {
        let mut map = self.data_limits.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry(cluster.to_owned())
            .or_insert_with(|| (limit, Arc::new(tokio::sync::Semaphore::new(limit.max(1)))));
        if entry.0 != limit {
            *entry = (limit, Arc::new(tokio::sync::Semaphore::new(limit.max(1))));
        }
        entry.1.clone()
    }

    /// The per-node limits of PVC data copies reading from `cluster` (`pvcSync.concurrency`; a changed
    /// limit takes effect for copies that start afterwards).
    pub fn node_limits(&self, cluster: &str, limit: usize) -> Arc<dr_syncer_core::ops::NodeLimits> {
        let mut map = self.node_limits.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry(cluster.to_owned())
            .or_insert_with(|| Arc::new(dr_syncer_core::ops::NodeLimits::new(limit)));
        if entry.limit() != limit.max(1) {
            *entry = Arc::new(dr_syncer_core::ops::NodeLimits::new(limit));
        }
        entry.clone()
    }

    /// Publish an Event on `obj` (best effort: a failure is logged, never fails the reconcile).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        self.event_about(obj, warning, reason, action, note, None).await;
    }

    /// [`Context::event`] about a second object (`related`, e.g. the DR namespace a cleanup kept): events
    /// with the same reason about different objects stay separate (kube's recorder folds events with the
    /// same object, reason and action into one series).
    pub async fn event_about<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: impl Into<String>,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    ) {
        let mut note: String = note.into();
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "could not publish an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let b = Backoffs::default();
        let d: Vec<u64> = (0..12).map(|_| b.next("x").as_secs()).collect();
        assert_eq!(&d[..4], &[1, 2, 4, 8]);
        assert!(d.iter().all(|s| *s <= 330), "{d:?}");
        assert!((300..=330).contains(&d[11]), "{d:?}");
        b.reset("x");
        assert_eq!(b.next("x").as_secs(), 1);
    }
}
