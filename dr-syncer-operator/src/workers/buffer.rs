//! What a worker saw and the reconcile has not synced yet: the latest change of each object, or "a
//! (re)list finished", and the DR appliers whose live-object caches continuous mode keeps.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Instant,
};

use dr_syncer_core::{engine::Change, kube::KubeApplier, resource::ResourceType, watches::SharedWatches};
use k8s_openapi::jiff::Timestamp;

use super::{change_key, object_of};

/// Whole live objects a kept applier may hold between syncs; past that its cache is compacted.
pub(crate) const KEEP_WHOLE: usize = 64;

/// What continuous mode's watches have for the next reconcile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchState {
    /// A (re)list finished: compare the whole namespace.
    pub relisted: bool,
    /// Individual changes are waiting.
    pub changes: bool,
}

#[derive(Debug, Default)]
struct Buffer {
    relisted: bool,
    /// (namespace, group/kind, name) → the latest change.
    changes: BTreeMap<(String, String, String), Change>,
    oldest: Option<Instant>,
    last_event: Option<Timestamp>,
}

impl Buffer {
    fn take_changes(&mut self) -> BTreeMap<String, Vec<Change>> {
        let mut by_ns: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for ((ns, _, _), change) in std::mem::take(&mut self.changes) {
            by_ns.entry(ns).or_default().push(change);
        }
        // A finished list still waiting keeps the lag running: its comparison is still owed.
        if !self.relisted {
            self.oldest = None;
        }
        by_ns
    }
}

/// What a worker has seen since the last reconcile took it.
#[derive(Debug, Default)]
pub struct WatchBuffer {
    inner: Mutex<Buffer>,
    /// Appliers per destination namespace, kept between syncs so that their live caches stay warm.
    appliers: Mutex<HashMap<String, Arc<KubeApplier>>>,
    /// A status whose only news are times, not written yet (see `run::only_times_moved`).
    deferred: Mutex<Option<dr_syncer_core::api::NamespaceMappingStatus>>,
    /// Signalled when a change is recorded (for the batches that run while PVC data is copied).
    news: tokio::sync::Notify,
    /// The shared watches the worker reads, and its types.
    reads: std::sync::OnceLock<(SharedWatches, Vec<ResourceType>)>,
}

impl WatchBuffer {
    /// Record which watches the worker reads (once, when it starts).
    pub(super) fn read_through(&self, watches: SharedWatches, types: Vec<ResourceType>) {
        let _ = self.reads.set((watches, types));
    }

    /// The worker's types watched per namespace rather than across the cluster (the source identity
    /// may not watch them cluster-wide).
    pub fn per_namespace(&self) -> Vec<ResourceType> {
        self.reads
            .get()
            .map(|(watches, types)| watches.per_namespace(types))
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is waiting (for the decision).
    pub fn state(&self) -> WatchState {
        let b = self.lock();
        WatchState {
            relisted: b.relisted,
            changes: !b.changes.is_empty(),
        }
    }

    /// Take everything waiting: whether a list finished, and the changes per source namespace.
    pub fn take(&self) -> (bool, BTreeMap<String, Vec<Change>>) {
        let mut b = self.lock();
        let relisted = std::mem::take(&mut b.relisted);
        (relisted, b.take_changes())
    }

    /// Take the waiting changes per source namespace, leaving a finished list for the next full sync.
    pub fn take_changes(&self) -> BTreeMap<String, Vec<Change>> {
        self.lock().take_changes()
    }

    /// Wait until a change is recorded (one recorded since the last wait counts too).
    pub async fn changed(&self) {
        self.news.notified().await;
    }

    /// Put changes back (their sync could not run).
    pub fn restore(&self, relisted: bool, changes: BTreeMap<String, Vec<Change>>) {
        let mut b = self.lock();
        b.relisted |= relisted;
        for (ns, list) in changes {
            for c in list {
                let key = change_key(&ns, object_of(&c));
                b.changes.entry(key).or_insert(c);
            }
        }
        if !b.changes.is_empty() || b.relisted {
            b.oldest.get_or_insert_with(Instant::now);
        }
    }

    /// Keep `status` to be written later.
    pub fn defer_status(&self, status: dr_syncer_core::api::NamespaceMappingStatus) {
        *self.deferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    /// The status kept to be written later, if any.
    pub fn take_deferred_status(&self) -> Option<dr_syncer_core::api::NamespaceMappingStatus> {
        self.deferred.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// How long the oldest waiting change has waited (continuous mode's replication lag).
    pub fn oldest_pending(&self) -> Option<std::time::Duration> {
        self.lock().oldest.map(|t| t.elapsed())
    }

    /// When the last source change was seen.
    pub fn last_event(&self) -> Option<Timestamp> {
        self.lock().last_event
    }

    /// Compact the kept appliers' live caches (see [`KubeApplier::compact`]), each keeping up to 64
    /// objects whole (those of the last batches: the next change of one needs no read).
    pub fn compact_appliers(&self) {
        let appliers: Vec<Arc<KubeApplier>> = self
            .appliers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for a in appliers {
            a.compact(KEEP_WHOLE);
        }
    }

    /// The applier for destination namespace `ns`, created with `make` the first time.
    pub fn applier(&self, ns: &str, make: impl FnOnce() -> KubeApplier) -> Arc<KubeApplier> {
        let mut a = self.appliers.lock().unwrap_or_else(|p| p.into_inner());
        a.entry(ns.to_owned()).or_insert_with(|| Arc::new(make())).clone()
    }

    pub(super) fn record(&self, ns: &str, change: Change) {
        let mut b = self.lock();
        let key = change_key(ns, object_of(&change));
        b.changes.insert(key, change);
        b.oldest.get_or_insert_with(Instant::now);
        b.last_event = Some(Timestamp::now());
        drop(b);
        self.news.notify_one();
    }

    pub(super) fn relisted(&self) {
        let mut b = self.lock();
        b.relisted = true;
        b.oldest.get_or_insert_with(Instant::now);
    }
}
