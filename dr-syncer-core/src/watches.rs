//! Shared watches: one watch per resource type on a cluster, however many readers need it.
//!
//! Continuous mappings each need the changes of a few types in a few namespaces. Watching per mapping and
//! namespace costs the API server one watch per (mapping, namespace, type); [`SharedWatches`] opens one
//! watch per type across all namespaces instead and hands each [`Subscription`] the events of its own
//! namespace, so the number of watches grows with clusters × types, not with mappings.
//!
//! # Guarantees
//! - A subscriber sees, per type, what a watch of its own namespace would show: [`SourceEvent::Relisting`]
//!   and [`SourceEvent::Resynced`] around every (re)list, and the changes of its namespace's objects. A
//!   subscriber that joins a watch whose list is already complete receives `Resynced` at once.
//! - Events that change nothing a sync could replicate (only `status`, `resourceVersion`,
//!   `managedFields`, timestamps: [`replicable_fingerprint`]) are dropped once, here, for everyone. The
//!   state kept for that is one 64-bit fingerprint per object of a subscribed namespace, not the object.
//! - A watch ends when its last subscriber is dropped (dropping the stream closes the request).
//!
//! # Fallback to per-namespace watches
//! An identity that may only read some namespaces (namespaced Roles) cannot watch a type across all of
//! them: the API server answers 403. The type then falls back to one watch per subscribed namespace
//! ([`WatchScope::PerNamespace`], reported by [`SharedWatches::per_namespace`] so callers can say so).
//!
//! # Caveats
//! An object first seen after its namespace was subscribed to a running watch has no fingerprint yet, so
//! its first event is passed on even if it changes nothing (a sync finds nothing to write). Watch errors
//! are logged here and not passed on: the source resumes by itself.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use tokio::{
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    task::AbortHandle,
};
use tracing::{debug, warn};

use crate::{
    resource::ResourceType,
    source::{ResourceSource, SourceError, SourceEvent, SourceObject, SourceScope},
};

/// How a type is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchScope {
    /// One watch across the cluster (all namespaces).
    Cluster,
    /// One watch per subscribed namespace: the identity may not read the type cluster-wide.
    PerNamespace,
}

/// A fingerprint of what a sync could replicate of `o`: everything but `status` and the metadata the
/// server maintains (resourceVersion, generation, managedFields, timestamps of the object itself).
pub fn replicable_fingerprint(o: &SourceObject) -> u64 {
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

type Item = Result<SourceEvent, SourceError>;

/// One reader: where it reads, and where its events go.
struct Sub {
    /// Its namespace (`None`: every object, for cluster-scoped types).
    namespace: Option<String>,
    tx: UnboundedSender<Item>,
}

/// One running watch of a type: across the cluster (`None`) or of one namespace.
struct Feed {
    task: AbortHandle,
    /// Its first list is complete.
    listed: bool,
}

/// One type's watch and readers.
struct Entry {
    rt: ResourceType,
    scope: WatchScope,
    subs: HashMap<u64, Sub>,
    feeds: HashMap<Option<String>, Feed>,
    /// Readers per namespace (`None`: readers of everything).
    readers: HashMap<Option<String>, usize>,
    /// The last replicable fingerprint of each object of a read namespace, by namespace and name.
    seen: HashMap<Option<String>, HashMap<Box<str>, u64>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        for feed in self.feeds.values() {
            feed.task.abort();
        }
    }
}

impl Entry {
    /// Whether an object in `namespace` has a reader.
    fn is_read(&self, namespace: &Option<String>) -> bool {
        self.readers.contains_key(&None) || self.readers.contains_key(namespace)
    }

    /// The readers served by `feed`.
    fn served_by<'a>(&'a self, feed: &'a Option<String>) -> impl Iterator<Item = &'a Sub> + 'a {
        self.subs
            .values()
            .filter(move |s| feed.is_none() || s.namespace == *feed)
    }

    /// The feed that serves readers of `namespace`.
    fn feed_for(&self, namespace: &Option<String>) -> Option<String> {
        match self.scope {
            WatchScope::Cluster => None,
            WatchScope::PerNamespace => namespace.clone(),
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// By `resource.group`.
    entries: HashMap<String, Entry>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The watches of one cluster, shared by every reader of it (see the [module docs](self)).
#[derive(Clone)]
pub struct SharedWatches {
    source: Arc<dyn ResourceSource>,
    state: Shared,
}

impl std::fmt::Debug for SharedWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWatches")
            .field("watches", &self.watch_count())
            .finish_non_exhaustive()
    }
}

impl SharedWatches {
    /// The watches of `source` (whose `watch` with no namespace watches a type across the cluster).
    pub fn new(source: Arc<dyn ResourceSource>) -> Self {
        SharedWatches {
            source,
            state: Arc::default(),
        }
    }

    /// Read `types` in `namespace` (`None` for cluster-scoped types: every object). Must be called within
    /// a tokio runtime (it may start watches).
    pub fn subscribe(&self, namespace: Option<&str>, types: &[ResourceType]) -> Subscription {
        let namespace = namespace.map(str::to_owned);
        let (tx, rx) = unbounded_channel();
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        let mut keys = Vec::with_capacity(types.len());
        for rt in types {
            let key = rt.resource_group();
            let entry = state.entries.entry(key.clone()).or_insert_with(|| Entry {
                rt: rt.clone(),
                scope: WatchScope::Cluster,
                subs: HashMap::new(),
                feeds: HashMap::new(),
                readers: HashMap::new(),
                seen: HashMap::new(),
            });
            entry.subs.insert(
                id,
                Sub {
                    namespace: namespace.clone(),
                    tx: tx.clone(),
                },
            );
            *entry.readers.entry(namespace.clone()).or_default() += 1;
            let feed = entry.feed_for(&namespace);
            match entry.feeds.get(&feed) {
                Some(f) if f.listed => {
                    let _ = tx.send(Ok(SourceEvent::Resynced(rt.clone())));
                }
                Some(_) => {}
                None => {
                    let task = self.start(&key, rt, feed.clone());
                    entry.feeds.insert(feed, Feed { task, listed: false });
                }
            }
            keys.push(key);
        }
        Subscription {
            id,
            keys,
            rx,
            state: self.state.clone(),
        }
    }

    /// Those of `types` watched per namespace (the identity may not watch them cluster-wide).
    pub fn per_namespace(&self, types: &[ResourceType]) -> Vec<ResourceType> {
        let state = lock(&self.state);
        types
            .iter()
            .filter(|rt| {
                state
                    .entries
                    .get(&rt.resource_group())
                    .is_some_and(|e| e.scope == WatchScope::PerNamespace)
            })
            .cloned()
            .collect()
    }

    /// The watches running (one per type, or per type and namespace after a fallback).
    pub fn watch_count(&self) -> usize {
        lock(&self.state).entries.values().map(|e| e.feeds.len()).sum()
    }

    fn start(&self, key: &str, rt: &ResourceType, feed: Option<String>) -> AbortHandle {
        WeakWatches {
            source: self.source.clone(),
            state: Arc::downgrade(&self.state),
        }
        .start(key, rt, feed)
    }
}

/// What a feed task holds: not the state itself, so the watches end with their last reader.
#[derive(Clone)]
struct WeakWatches {
    source: Arc<dyn ResourceSource>,
    state: Weak<Mutex<State>>,
}

impl WeakWatches {
    /// Start the watch of `rt` across the cluster (`feed` `None`) or in namespace `feed`.
    fn start(&self, key: &str, rt: &ResourceType, feed: Option<String>) -> AbortHandle {
        let stream = self.source.watch(&SourceScope {
            namespace: feed.clone(),
            types: vec![rt.clone()],
        });
        let run = Feeder {
            watches: self.clone(),
            key: key.to_owned(),
            feed,
        };
        tokio::spawn(run.run(stream)).abort_handle()
    }
}

struct Feeder {
    watches: WeakWatches,
    key: String,
    feed: Option<String>,
}

impl Feeder {
    async fn run(self, mut stream: crate::source::BoxStream<'static, Item>) {
        while let Some(item) = stream.next().await {
            // Computed before the lock: it serialises the object.
            let fingerprint = match &item {
                Ok(SourceEvent::Applied(o)) => replicable_fingerprint(o),
                _ => 0,
            };
            let Some(state) = self.watches.state.upgrade() else {
                return;
            };
            let mut guard = lock(&state);
            let Some(entry) = guard.entries.get_mut(&self.key) else {
                return;
            };
            match item {
                Err(e) => {
                    if e.is_forbidden() && self.feed.is_none() && entry.rt.namespaced {
                        self.fall_back(entry);
                        return;
                    }
                    warn!(error = %e, "watch error (the watch resumes)");
                }
                Ok(SourceEvent::Relisting(rt)) => {
                    for sub in entry.served_by(&self.feed) {
                        let _ = sub.tx.send(Ok(SourceEvent::Relisting(rt.clone())));
                    }
                }
                Ok(SourceEvent::Resynced(rt)) => {
                    if let Some(f) = entry.feeds.get_mut(&self.feed) {
                        f.listed = true;
                    }
                    for sub in entry.served_by(&self.feed) {
                        let _ = sub.tx.send(Ok(SourceEvent::Resynced(rt.clone())));
                    }
                }
                Ok(SourceEvent::Applied(o)) => {
                    let ns = o.object.metadata.namespace.clone();
                    if !entry.is_read(&ns) {
                        continue;
                    }
                    let name: Box<str> = o.object.metadata.name.as_deref().unwrap_or_default().into();
                    if entry
                        .seen
                        .entry(ns.clone())
                        .or_default()
                        .insert(name, fingerprint)
                        == Some(fingerprint)
                    {
                        continue;
                    }
                    deliver(entry, &ns, SourceEvent::Applied(o));
                }
                Ok(SourceEvent::Deleted(o)) => {
                    let ns = o.object.metadata.namespace.clone();
                    if !entry.is_read(&ns) {
                        continue;
                    }
                    if let Some(names) = entry.seen.get_mut(&ns) {
                        names.remove(o.object.metadata.name.as_deref().unwrap_or_default());
                    }
                    deliver(entry, &ns, SourceEvent::Deleted(o));
                }
            }
        }
        debug!(resource = %self.key, "watch ended");
    }

    /// The cluster-wide watch was refused: watch each read namespace instead.
    fn fall_back(&self, entry: &mut Entry) {
        warn!(
            resource = %entry.rt,
            "the source identity may not watch {} across namespaces: watching each namespace instead",
            entry.rt
        );
        entry.scope = WatchScope::PerNamespace;
        // This feed's own task: it returns right after.
        entry.feeds.remove(&None);
        let namespaces: Vec<Option<String>> = entry.readers.keys().cloned().collect();
        for ns in namespaces {
            let task = self.watches.start(&self.key, &entry.rt, ns.clone());
            entry.feeds.insert(ns, Feed { task, listed: false });
        }
    }
}

fn deliver(entry: &Entry, namespace: &Option<String>, event: SourceEvent) {
    let readers: Vec<&Sub> = entry
        .subs
        .values()
        .filter(|s| s.namespace.is_none() || s.namespace == *namespace)
        .collect();
    if let Some((last, rest)) = readers.split_last() {
        for sub in rest {
            let _ = sub.tx.send(Ok(event.clone()));
        }
        // The last reader takes the event itself (usually there is one).
        let _ = last.tx.send(Ok(event));
    }
}

/// One reader's events (a [`Stream`] that never ends while the watches run); dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    keys: Vec<String>,
    rx: UnboundedReceiver<Item>,
    state: Shared,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("types", &self.keys).finish()
    }
}

impl Stream for Subscription {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        for key in &self.keys {
            let Some(entry) = state.entries.get_mut(key) else {
                continue;
            };
            let Some(sub) = entry.subs.remove(&self.id) else {
                continue;
            };
            if entry.subs.is_empty() {
                // Dropping the entry stops its watches.
                state.entries.remove(key);
                continue;
            }
            let ns = sub.namespace;
            let left = entry.readers.get_mut(&ns).map_or(0, |n| {
                *n -= 1;
                *n
            });
            if left == 0 {
                entry.readers.remove(&ns);
                entry.seen.remove(&ns);
                if entry.scope == WatchScope::PerNamespace
                    && let Some(feed) = entry.feeds.remove(&ns)
                {
                    feed.task.abort();
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "watches_tests.rs"]
mod tests;
