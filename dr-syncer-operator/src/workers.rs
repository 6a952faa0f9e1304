//! Continuous mode: exactly one watch set per NamespaceMapping.
//!
//! A worker watches the mapping's selected types in each of its source namespaces (and, with a
//! `namespaceSelector`, the source Namespaces matching it). It buffers what it sees — the latest state of
//! each changed object, or "a (re)list finished, compare everything" — and asks the controller to
//! reconcile the mapping; the reconcile takes the buffer and syncs (incrementally, or in full after a
//! list). Syncing stays in the reconcile, so it is serialised per mapping with every other sync and
//! status write. While a full sync copies PVC data, that reconcile itself syncs the changes in batches
//! (`Runner::batches_until`), so a long copy does not hold them back.
//!
//! A worker is replaced when the mapping's watch configuration changes (its fingerprint: generation,
//! clusters, namespaces, types) and stopped when the mapping leaves continuous mode, is paused or deleted:
//! stopping cancels its tasks, which drops their watch streams (and so closes the watch requests).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use dr_syncer_core::{
    api::NamespaceMapping,
    engine::Change,
    kube::{KubeSource, selector_string},
    resource::ResourceType,
    source::{ResourceSource, SourceEvent, SourceObject, SourceScope},
};
use futures::StreamExt;
use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector::ObjectRef, watcher},
};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

mod buffer;

pub use self::buffer::{WatchBuffer, WatchState};

fn seen_key(o: &SourceObject) -> (String, String) {
    (
        o.resource.group_kind(),
        o.object.metadata.name.clone().unwrap_or_default(),
    )
}

/// A fingerprint of what a sync could replicate of `o`: everything but `status` and the metadata the
/// server maintains (resourceVersion, generation, managedFields, timestamps).
fn fingerprint(o: &SourceObject) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut obj = o.object.clone();
    obj.metadata.resource_version = None;
    obj.metadata.generation = None;
    obj.metadata.managed_fields = None;
    if let Some(body) = obj.data.as_object_mut() {
        body.remove("status");
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&obj).unwrap_or_default().hash(&mut h);
    h.finish()
}

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
    /// The source cluster.
    pub source: KubeSource,
    /// Its client (for the Namespace watch).
    pub client: Client,
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
    for ns in &spec.namespaces {
        let scope = SourceScope {
            namespace: Some(ns.clone()),
            types: spec.types.clone(),
        };
        let mut stream = spec.source.watch(&scope);
        let (buffer, notifier, cancel, ns) = (buffer.clone(), notifier.clone(), cancel.clone(), ns.clone());
        let types = spec.types.len();
        let span = info_span!("watch", mapping = %key, namespace = %ns);
        tokio::spawn(
            async move {
                // Types whose (re)list is under way: their Applied events are the list, not changes.
                let mut listing: Vec<ResourceType> = Vec::new();
                // Types that have not finished their first list: the first full sync waits for all.
                let mut first_lists = types;
                // What each object looked like last, without what the server alone changes (status,
                // resourceVersion …): an event that changes nothing else is not a change to replicate.
                let mut seen: HashMap<(String, String), u64> = HashMap::new();
                loop {
                    let event = tokio::select! {
                        () = cancel.cancelled() => break,
                        e = stream.next() => e,
                    };
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
                        Some(Ok(SourceEvent::Applied(o))) if listing.contains(&o.resource) => {
                            seen.insert(seen_key(&o), fingerprint(&o));
                            false
                        }
                        Some(Ok(SourceEvent::Applied(o))) => {
                            let fp = fingerprint(&o);
                            if seen.insert(seen_key(&o), fp) == Some(fp) {
                                false
                            } else {
                                buffer.record(&ns, Change::Applied(o));
                                true
                            }
                        }
                        Some(Ok(SourceEvent::Deleted(o))) => {
                            seen.remove(&seen_key(&o));
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
        let api: Api<Namespace> = Api::all(spec.client.clone());
        let config = watcher::Config::default().labels(&selector_string(&sel));
        let mut stream = watcher(api, config).default_backoff().boxed();
        tokio::spawn(
            async move {
                let mut initial = true;
                loop {
                    let event = tokio::select! {
                        () = cancel.cancelled() => break,
                        e = stream.next() => e,
                    };
                    match event {
                        None => break,
                        Some(Ok(watcher::Event::InitDone)) => initial = false,
                        Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) if !initial => {
                            // The set of namespaces may have changed: the reconcile recomputes it.
                            buffer.relisted();
                            if !notifier.notify() {
                                break;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => warn!(error = %e, "namespace watch error (the watch resumes)"),
                    }
                }
            }
            .instrument(info_span!("watch-namespaces", mapping = %key)),
        );
    }
}
