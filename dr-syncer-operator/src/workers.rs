//! Continuous mode: one worker per NamespaceMapping, reading the source cluster's shared watches.
//!
//! A worker subscribes to the mapping's selected types in each of its source namespaces (and, with a
//! `namespaceSelector`, to the source Namespaces, filtered by it) through the source cluster's
//! [`SharedWatches`]: one watch per type for every mapping reading that cluster, so the watches grow with
//! clusters × types, not with mappings (an identity confined to namespaces gets one per namespace and
//! type, and the mapping's `Watching` condition says so). It buffers what it sees — the latest state of
//! each changed object, or "a (re)list finished, compare everything" — and asks the controller to
//! reconcile the mapping; the reconcile takes the buffer and syncs (incrementally, or in full after a
//! list). Syncing stays in the reconcile, so it is serialised per mapping with every other sync and
//! status write. While a full sync copies PVC data, that reconcile itself syncs the changes in batches
//! (`Runner::batches_until`), so a long copy does not hold them back.
//!
//! A worker is replaced when the mapping's watch configuration changes (its fingerprint: generation,
//! clusters, namespaces, types) and stopped when the mapping leaves continuous mode, is paused or deleted:
//! stopping cancels its tasks, which drops their subscriptions (a shared watch closes with its last one).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use dr_syncer_core::{
    api::NamespaceMapping,
    engine::{Change, namespace_type},
    matching::selector_matches,
    resource::ResourceType,
    source::{SourceEvent, SourceObject},
    watches::SharedWatches,
};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

mod buffer;

pub use self::buffer::{WatchBuffer, WatchState};

fn object_of(c: &Change) -> &SourceObject {
    match c {
        Change::Applied(o) | Change::Deleted(o) => o,
    }
}

fn change_key(ns: &str, o: &SourceObject) -> (String, String, String) {
    (
        ns.to_owned(),
        o.resource.group_kind(),
        o.object.metadata.name.clone().unwrap_or_default(),
    )
}

struct Worker {
    fingerprint: String,
    cancel: CancellationToken,
    buffer: Arc<WatchBuffer>,
}

/// The running workers, by mapping (`namespace/name`).
#[derive(Default)]
pub struct Workers {
    inner: Mutex<HashMap<String, Worker>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").field("running", &self.count()).finish()
    }
}

/// Asks the controller to reconcile a mapping, at most once per `window`: the first change after a quiet
/// spell schedules a reconcile `window` later, and every change until then joins that batch. (A
/// trailing-edge debounce would be wrong here: under a steady stream of changes it would never fire.)
#[derive(Clone)]
struct Notifier {
    tx: UnboundedSender<ObjectRef<NamespaceMapping>>,
    mapping: ObjectRef<NamespaceMapping>,
    window: std::time::Duration,
    pending: Arc<std::sync::atomic::AtomicBool>,
}

impl Notifier {
    /// Schedule a reconcile; `false` when the controller is gone.
    fn notify(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.tx.is_closed() {
            return false;
        }
        if self.window.is_zero() {
            return self.tx.send(self.mapping.clone()).is_ok();
        }
        if !self.pending.swap(true, Ordering::SeqCst) {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(me.window).await;
                me.pending.store(false, Ordering::SeqCst);
                let _ = me.tx.send(me.mapping.clone());
            });
        }
        true
    }
}

/// What a worker watches.
#[derive(Clone)]
pub struct WatchSpec {
    /// The mapping.
    pub mapping: ObjectRef<NamespaceMapping>,
    /// The source cluster's watches.
    pub watches: SharedWatches,
    /// Source namespaces.
    pub namespaces: Vec<String>,
    /// Types to watch in each.
    pub types: Vec<ResourceType>,
    /// With a `namespaceSelector`: watch source Namespaces matching it.
    pub namespace_selector: Option<LabelSelector>,
    /// How long changes are collected into one batch.
    pub window: std::time::Duration,
}

impl std::fmt::Debug for WatchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSpec")
            .field("mapping", &self.mapping)
            .field("namespaces", &self.namespaces)
            .field("types", &self.types.len())
            .finish_non_exhaustive()
    }
}

impl Workers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Workers running.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The buffer of `key`'s worker, if it runs.
    pub fn buffer(&self, key: &str) -> Option<Arc<WatchBuffer>> {
        self.lock().get(key).map(|w| w.buffer.clone())
    }

    /// Make sure `key` has a worker for `fingerprint` (replacing one with another fingerprint); returns
    /// its buffer and whether it was (re)started.
    pub fn ensure(
        &self,
        key: &str,
        fingerprint: &str,
        spec: WatchSpec,
        trigger: UnboundedSender<ObjectRef<NamespaceMapping>>,
    ) -> (Arc<WatchBuffer>, bool) {
        let mut workers = self.lock();
        if let Some(w) = workers.get(key)
            && w.fingerprint == fingerprint
        {
            return (w.buffer.clone(), false);
        }
        if let Some(old) = workers.remove(key) {
            old.cancel.cancel();
        }
        let buffer = Arc::new(WatchBuffer::default());
        let cancel = CancellationToken::new();
        spawn(spec, buffer.clone(), trigger, cancel.clone(), key);
        workers.insert(
            key.to_owned(),
            Worker {
                fingerprint: fingerprint.to_owned(),
                cancel,
                buffer: buffer.clone(),
            },
        );
        (buffer, true)
    }

    /// Stop `key`'s worker; returns whether one ran.
    pub fn stop(&self, key: &str) -> bool {
        match self.lock().remove(key) {
            Some(w) => {
                w.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Stop every worker (shutdown, lost leadership).
    pub fn stop_all(&self) {
        for (_, w) in self.lock().drain() {
            w.cancel.cancel();
        }
    }

    /// The (mapping, buffer) pairs, for the replication-lag gauge.
    pub fn buffers(&self) -> Vec<(String, Arc<WatchBuffer>)> {
        self.lock()
            .iter()
            .map(|(k, w)| (k.clone(), w.buffer.clone()))
            .collect()
    }
}

fn spawn(
    spec: WatchSpec,
    buffer: Arc<WatchBuffer>,
    trigger: UnboundedSender<ObjectRef<NamespaceMapping>>,
    cancel: CancellationToken,
    key: &str,
) {
    let notifier = Notifier {
        tx: trigger,
        mapping: spec.mapping.clone(),
        window: spec.window,
        pending: Arc::default(),
    };
    buffer.read_through(spec.watches.clone(), spec.types.clone());
    for ns in &spec.namespaces {
        let mut stream = spec.watches.subscribe(Some(ns), &spec.types);
        let (buffer, notifier, cancel, ns) = (buffer.clone(), notifier.clone(), cancel.clone(), ns.clone());
        let types = spec.types.len();
        let span = info_span!("watch", mapping = %key, namespace = %ns);
        tokio::spawn(
            async move {
                // Types whose (re)list is under way: their Applied events are the list, not changes.
                let mut listing: Vec<ResourceType> = Vec::new();
                // Types that have not finished their first list: the first full sync waits for all.
                let mut first_lists = types;
                loop {
                    let event = tokio::select! {
                        () = cancel.cancelled() => break,
                        e = stream.next() => e,
                    };
                    // (Events that change nothing a sync could copy were dropped by the shared watch.)
                    let notify = match event {
                        None => break,
                        Some(Err(e)) => {
                            warn!(error = %e, "watch error (the watch resumes)");
                            false
                        }
                        Some(Ok(SourceEvent::Relisting(rt))) => {
                            listing.push(rt);
                            false
                        }
                        Some(Ok(SourceEvent::Resynced(rt))) => {
                            listing.retain(|t| *t != rt);
                            first_lists = first_lists.saturating_sub(1);
                            if first_lists == 0 {
                                buffer.relisted();
                                true
                            } else {
                                false
                            }
                        }
                        Some(Ok(SourceEvent::Applied(o))) if listing.contains(&o.resource) => false,
                        Some(Ok(SourceEvent::Applied(o))) => {
                            buffer.record(&ns, Change::Applied(o));
                            true
                        }
                        Some(Ok(SourceEvent::Deleted(o))) => {
                            buffer.record(&ns, Change::Deleted(o));
                            true
                        }
                    };
                    if notify && !notifier.notify() {
                        break;
                    }
                }
                debug!("watch stopped");
            }
            .instrument(span),
        );
    }
    if let Some(sel) = spec.namespace_selector {
        let mut stream = spec.watches.subscribe(None, &[namespace_type()]);
        tokio::spawn(
            async move {
                let mut initial = true;
                // The source Namespaces matching the selector, as last seen.
                let mut matching: std::collections::HashSet<String> = std::collections::HashSet::new();
                loop {
                    let event = tokio::select! {
                        () = cancel.cancelled() => break,
                        e = stream.next() => e,
                    };
                    let changed = match event {
                        None => break,
                        Some(Ok(SourceEvent::Resynced(_))) => {
                            initial = false;
                            false
                        }
                        Some(Ok(SourceEvent::Applied(o))) => {
                            let name = name_of(&o);
                            let labels = o.object.metadata.labels.clone().unwrap_or_default();
                            if selector_matches(&sel, &labels) {
                                // Any change of a selected namespace (e.g. it is being deleted).
                                matching.insert(name);
                                true
                            } else {
                                matching.remove(&name)
                            }
                        }
                        Some(Ok(SourceEvent::Deleted(o))) => matching.remove(&name_of(&o)),
                        Some(Ok(SourceEvent::Relisting(_))) => false,
                        Some(Err(e)) => {
                            warn!(error = %e, "namespace watch error (the watch resumes)");
                            false
                        }
                    };
                    // The set of namespaces changed: the reconcile recomputes it.
                    if changed && !initial {
                        buffer.relisted();
                        if !notifier.notify() {
                            break;
                        }
                    }
                }
            }
            .instrument(info_span!("watch-namespaces", mapping = %key)),
        );
    }
}

fn name_of(o: &SourceObject) -> String {
    o.object.metadata.name.clone().unwrap_or_default()
}
