//! One NamespaceMapping's sync as an operation above the engine: which namespace pairs and types it
//! covers, the engine each pair runs with, the per-pair runs (bounded by a deadline, failures kept per
//! pair), which pairs may get PVC data, the site checks, and the deletion of what the mapping synced.
//!
//! [`MappingRun`] holds no status, Events, metrics or watches: the host (the operator's reconciler, or a
//! platform's own controller) writes those from what it returns. Every write it makes goes through the
//! engine's or the site module's checks: nothing is deleted in an active DR namespace, in a protected
//! namespace, or (for a namespace that left the selector) when production cannot be read.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Client, ResourceExt};
use tracing::info;

use crate::{
    Error, Result, annotations,
    api::{NamespaceMapping, RecentDeletions},
    apply::{Applier, ApplyOptions},
    boundaries::Boundaries,
    brake::{DeletionLedger, GoAhead, ledger_key},
    config::SyncConfig,
    engine::{AcceptIdentity, Change, ProgressFn, SyncEngine, SyncReport, SyncTarget},
    failure::FailureCategory,
    kube::{Calls, KubeApplier, KubeSource},
    plugin::{PluginDir, Plugins},
    resource::{ObjectKey, ResourceType},
    selection::{OPERATOR_DEFAULT_TYPES, resolve_resource_types},
    site,
    source::{ResourceSource, SourceScope},
    transform::TransformerChain,
};

/// One cluster of a mapping, as the run reaches it.
#[derive(Clone)]
pub struct Cluster {
    /// The name recorded on the DR objects (`dr-syncer.io/source-cluster`): the RemoteCluster's name.
    pub name: String,
    /// The client.
    pub client: Client,
    /// Limits and retries of every request to it.
    pub calls: Calls,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Objects applied in parallel within one sync, unless the host says otherwise.
pub const DEFAULT_APPLY_CONCURRENCY: usize = 64;
/// How long the object sync of one namespace pair may take, unless the host says otherwise.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What a process running many mappings shares between their runs. [`Host::default`] is what the
/// bundled operator uses without flags: the built-in transformer chain (which keeps the DR side quiet),
/// no protected namespaces beyond the built-in ones, 64 objects in parallel, 30 minutes per pair.
#[derive(Clone)]
pub struct Host {
    /// Namespaces no mapping may read or write.
    pub boundaries: Boundaries,
    /// The deletion brake's ledger (deletions per DR namespace within the brake's window).
    pub ledger: Arc<DeletionLedger>,
    /// The transformers every sync runs (the built-ins, and a builder's additions).
    pub chain: TransformerChain,
    /// Objects applied in parallel within one sync.
    pub apply_concurrency: usize,
    /// How long the object sync of one namespace pair may take.
    pub sync_timeout: Duration,
}

/// What a run is resolved from.
#[derive(Debug)]
pub struct MappingInput<'a> {
    /// The mapping.
    pub mapping: &'a NamespaceMapping,
    /// Its validated configuration.
    pub config: Arc<SyncConfig>,
    /// Production.
    pub source: Cluster,
    /// The DR cluster.
    pub destination: Cluster,
    /// The source RemoteCluster's `defaultResourceTypes`, used when the mapping names no types.
    pub default_types: Vec<String>,
    /// The types served where they are resolved: the source for a sync, the destination for a cleanup
    /// (so that a source cluster that is gone, the disaster, cannot block it).
    pub discovered: &'a [ResourceType],
    /// Which source cluster the engine accepts where a DR namespace records another.
    pub accept: AcceptIdentity,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            boundaries: Boundaries::default(),
            ledger: Arc::default(),
            chain: TransformerChain::builtin(),
            apply_concurrency: DEFAULT_APPLY_CONCURRENCY,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("apply_concurrency", &self.apply_concurrency)
            .field("sync_timeout", &self.sync_timeout)
            .finish_non_exhaustive()
    }
}

/// A namespace pair whose sync could not run (as opposed to objects that failed within it, which the
/// pair's [`SyncReport`] holds).
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    /// Source namespace.
    pub source_namespace: String,
    /// Destination namespace.
    pub destination_namespace: String,
    /// Stable error kind ([`Error::kind`]).
    pub kind: String,
    /// `failureHandling` category.
    pub category: FailureCategory,
    /// The message.
    pub message: String,
}

impl RunError {
    /// The run error of pair `src` → `dst` that failed with `e`.
    pub fn of(src: &str, dst: &str, e: &Error) -> RunError {
        RunError {
            source_namespace: src.to_owned(),
            destination_namespace: dst.to_owned(),
            kind: e.kind().to_owned(),
            category: e.category(),
            message: e.to_string(),
        }
    }
}

/// What [`MappingRun::sync_pairs`] did.
#[derive(Debug, Default)]
pub struct PairsOutcome {
    /// One report per pair that ran.
    pub reports: Vec<SyncReport>,
    /// The pairs that could not run.
    pub run_errors: Vec<RunError>,
    /// Changes of the pairs that could not run, per source namespace: to be synced with the next batch.
    pub unsynced: BTreeMap<String, Vec<Change>>,
}

/// What [`MappingRun::delete_synced`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// This many objects (the namespace included) were deleted.
    Deleted(usize),
    /// Nothing was deleted: the site state holds it.
    Held(site::Reason),
}

/// A pair whose DR namespace is active, and whether production runs next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePair {
    /// The DR namespace.
    pub destination_namespace: String,
    /// Production's workloads run unfenced (both sites active), as far as production can be read.
    pub both_active: bool,
    /// For both sites active: which workloads run on production, for status and Events.
    pub description: Option<String>,
}

/// One sync's worth of a mapping: its clusters, namespace pairs and types, resolved once.
pub struct MappingRun {
    key: String,
    config: Arc<SyncConfig>,
    source: Cluster,
    destination: Cluster,
    types: Vec<ResourceType>,
    pairs: Vec<(String, String)>,
    plugins: Plugins,
    go_ahead: GoAhead,
    accept: AcceptIdentity,
    recorded_namespaces: Vec<String>,
    host: Host,
}

impl std::fmt::Debug for MappingRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappingRun")
            .field("key", &self.key)
            .field("pairs", &self.pairs)
            .finish_non_exhaustive()
    }
}

/// `namespace/name` of a mapping: the value of `dr-syncer.io/synced-by` on what it syncs.
pub fn mapping_key(nm: &NamespaceMapping) -> String {
    format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any())
}

/// The namespace pair of a mapping that names its namespaces (`None` for one with a selector). The
/// destination defaults to the source's name.
pub fn fixed_pair(nm: &NamespaceMapping) -> Option<(String, String)> {
    if nm.spec.namespace_selector.is_some() {
        return None;
    }
    let src = nm.spec.source_namespace.clone().unwrap_or_default();
    let dst = nm
        .spec
        .destination_namespace
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| src.clone());
    Some((src, dst))
}

impl MappingRun {
    /// A sync: types resolved against the source's, namespace pairs from the spec or the selector
    /// (read on the source), and the plugins the mapping names from `plugins`.
    ///
    /// # Errors
    /// Unknown types, an unreadable source, an unknown plugin, and a pair in a protected namespace
    /// ([`Error::Boundary`]: the mapping is refused as a whole).
    pub async fn for_sync(input: MappingInput<'_>, host: Host, plugins: &PluginDir) -> Result<MappingRun> {
        let selector = input.mapping.spec.namespace_selector.clone();
        let mut run = Self::build(input, host)?;
        if let Some(sel) = selector {
            let mut names = run
                .source_reader()
                .namespaces_matching(&sel.label_selector)
                .await?;
            names.sort();
            run.pairs = names
                .into_iter()
                .map(|n| {
                    let d = format!("{n}{}", sel.destination_suffix);
                    (n, d)
                })
                .collect();
        }
        run.plugins = plugins.resolve(&run.config.plugins).await?;
        // A protected namespace is never a source or a destination (a selector that matches one is to be
        // fixed, e.g. with `kubernetes.io/metadata.name notin`).
        for (src, dst) in &run.pairs {
            run.host.boundaries.check_pair(src, dst)?;
        }
        Ok(run)
    }

    /// For deleting what the mapping synced: types resolved against the destination's, namespaces from
    /// the spec and the status (what was synced), so a source cluster that is gone cannot block it.
    ///
    /// # Errors
    /// Unknown types.
    pub fn for_cleanup(input: MappingInput<'_>, host: Host) -> Result<MappingRun> {
        Self::build(input, host)
    }

    fn build(input: MappingInput<'_>, host: Host) -> Result<MappingRun> {
        let nm = input.mapping;
        let requested: Vec<String> = if input.config.resource_types.is_empty() {
            input.default_types
        } else {
            input.config.resource_types.clone()
        };
        let types = resolve_resource_types(
            &requested,
            &input.config.namespace_scoped_resources,
            &OPERATOR_DEFAULT_TYPES,
            input.discovered,
        )?;
        let go_ahead = nm
            .annotations()
            .get(annotations::ALLOW_DELETIONS)
            .and_then(|v| GoAhead::parse_annotation(v).ok())
            .unwrap_or_default();
        Ok(MappingRun {
            key: mapping_key(nm),
            config: input.config,
            source: input.source,
            destination: input.destination,
            types,
            pairs: fixed_pair(nm).into_iter().collect(),
            plugins: Plugins::none(),
            go_ahead,
            accept: input.accept,
            recorded_namespaces: nm
                .status
                .iter()
                .flat_map(|s| s.namespaces.iter().flatten())
                .map(|n| n.destination.clone())
                .collect(),
            host,
        })
    }

    /// `namespace/name` of the mapping (the value of `dr-syncer.io/synced-by`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The (source, destination) namespace pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The types synced.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Production.
    pub fn source(&self) -> &Cluster {
        &self.source
    }

    /// The DR cluster.
    pub fn destination(&self) -> &Cluster {
        &self.destination
    }

    /// What the engine gets for pair `src` → `dst`.
    pub fn target(&self, src: &str, dst: &str) -> SyncTarget {
        SyncTarget {
            source_cluster: self.source.name.clone(),
            destination_cluster: self.destination.name.clone(),
            source_namespace: src.to_owned(),
            destination_namespace: dst.to_owned(),
            synced_by: self.key.clone(),
            types: self.types.clone(),
            config: self.config.clone(),
        }
    }

    /// A reader of production.
    pub fn source_reader(&self) -> KubeSource {
        KubeSource::new(self.source.client.clone(), self.source.calls.clone())
    }

    /// A writer to the DR cluster (a fresh live-object cache).
    pub fn new_applier(&self) -> KubeApplier {
        KubeApplier::new(self.destination.client.clone(), self.destination.calls.clone())
    }

    /// The engine of one pair: the host's boundaries, brake ledger, concurrency and chain, the mapping's
    /// plugins and deletion go-ahead, stopping at the first failure of a `fail_fast` category.
    pub fn engine(
        &self,
        source: Arc<dyn ResourceSource>,
        applier: Arc<dyn Applier>,
        fail_fast: &[FailureCategory],
    ) -> SyncEngine {
        SyncEngine::new(source, applier)
            .with_boundaries(self.host.boundaries.clone())
            .accepting_source_identity(self.accept.clone())
            .with_deletion_ledger(self.host.ledger.clone())
            .with_deletion_go_ahead(self.go_ahead)
            .with_concurrency(self.host.apply_concurrency)
            .with_fail_fast(fail_fast.to_vec())
            .with_storage_class_check(true)
            .with_chain(self.host.chain.clone())
            .with_plugins(self.plugins.clone())
    }

    /// Sync every pair: all of it (`changes: None`, a full sync), or the changes waiting per source
    /// namespace (pairs without changes are left out). `applier_for` gives the applier of a DR namespace
    /// (continuous mode keeps its live-object caches between batches). Each pair is bounded by the
    /// host's `sync_timeout`; a pair that cannot run is a [`RunError`] and its changes come back in
    /// [`PairsOutcome::unsynced`].
    pub async fn sync_pairs(
        &self,
        mut changes: Option<BTreeMap<String, Vec<Change>>>,
        applier_for: &(dyn Fn(&str) -> Arc<dyn Applier> + Send + Sync),
        progress: Option<ProgressFn>,
        fail_fast: &[FailureCategory],
    ) -> PairsOutcome {
        let mut out = PairsOutcome::default();
        let source: Arc<dyn ResourceSource> = Arc::new(self.source_reader());
        for (src, dst) in &self.pairs {
            let target = self.target(src, dst);
            let mut engine = self.engine(source.clone(), applier_for(dst), fail_fast);
            if let Some(p) = &progress {
                engine = engine.with_progress(p.clone());
            }
            let deadline = self.host.sync_timeout;
            let mut taken = None;
            // (Boxed: the engine's futures are large, and this one lives inside the caller's.)
            let result = match changes.as_mut() {
                None => tokio::time::timeout(deadline, Box::pin(engine.sync(&target))).await,
                Some(changes) => {
                    let list = changes.remove(src).unwrap_or_default();
                    if list.is_empty() {
                        continue;
                    }
                    taken = Some(list.clone());
                    tokio::time::timeout(deadline, Box::pin(engine.sync_changes(&target, list))).await
                }
            };
            let result = result.unwrap_or_else(|_| {
                Err(Error::Timeout(format!(
                    "the sync of {src} -> {dst} timed out after {} (--sync-timeout)",
                    crate::schedule::format_duration(deadline)
                )))
            });
            match result {
                Ok(r) => out.reports.push(r),
                Err(e) => {
                    tracing::warn!(source = %src, destination = %dst, error = %e, "sync could not run");
                    if let Some(list) = taken {
                        out.unsynced.insert(src.clone(), list);
                    }
                    out.run_errors.push(RunError::of(src, dst, &e));
                }
            }
        }
        out
    }

    /// The pairs whose PVC data may be copied after these reports: never into an active DR namespace,
    /// never from a production namespace that is being deleted.
    pub fn data_pairs(&self, reports: &[SyncReport]) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|(src, dst)| {
                !reports.iter().any(|r| {
                    &r.source_namespace == src
                        && &r.destination_namespace == dst
                        && (r.destination_active
                            || r.held
                                .as_ref()
                                .is_some_and(|h| h.reason == site::Reason::SourceGone.kind()))
                })
            })
            .cloned()
            .collect()
    }

    /// The PVCs whose data follows the objects of `namespaces` (pairs of [`MappingRun::data_pairs`]): those
    /// on both sides whose DR claim this mapping synced.
    ///
    /// # Errors
    /// When the PVCs cannot be listed.
    pub async fn pvc_pairs(&self, namespaces: &[(String, String)]) -> Result<Vec<super::PvcPair>> {
        let mut out = Vec::new();
        for (src, dst) in namespaces {
            out.extend(
                super::synced_pvc_pairs(
                    &self.source.client,
                    src,
                    &self.destination.client,
                    dst,
                    super::ManagedBy::Writer(&self.key),
                    super::SyncedSide::Receiving,
                )
                .await?,
            );
        }
        Ok(out)
    }

    /// Take over the deletion brake's window from status (deletions an earlier process made).
    pub fn import_deletions(&self, recorded: &[RecentDeletions]) {
        for (_, dst) in &self.pairs {
            let mine: Vec<(SystemTime, usize)> = recorded
                .iter()
                .filter(|r| &r.namespace == dst)
                .map(|r| (r.at.0.into(), usize::try_from(r.count).unwrap_or(usize::MAX)))
                .collect();
            self.host.ledger.import(&ledger_key(&self.key, dst), &mine);
        }
    }

    /// The deletions within the brake's window, for status.
    pub fn export_deletions(&self) -> Vec<RecentDeletions> {
        let window = self.config.deletion_brake.window;
        let mut out = Vec::new();
        for (_, dst) in &self.pairs {
            for (at, count) in self.host.ledger.export(&ledger_key(&self.key, dst), window) {
                let Ok(at) = Timestamp::try_from(at) else {
                    continue;
                };
                out.push(RecentDeletions {
                    namespace: dst.clone(),
                    at: Time(at),
                    count: count as u64,
                });
            }
        }
        out
    }

    /// For the pairs of `reports` whose DR namespace is active: whether production runs next to it
    /// (best effort: an unreachable production is the usual case after a promote).
    pub async fn active_pairs(&self, reports: &[SyncReport]) -> Vec<ActivePair> {
        let workloads = crate::kube::site::workload_types_in(&self.types);
        let mut out = Vec::new();
        for r in reports.iter().filter(|r| r.destination_active) {
            let source = crate::kube::site::read_source(
                &self.source.client,
                &self.source.calls,
                &r.source_namespace,
                &workloads,
            )
            .await
            .unwrap_or_default();
            let state = site::SiteState {
                source,
                destination: site::DestinationState::Active {
                    since: None,
                    by: site::ActivatedBy::Manual,
                },
            };
            let both_active = state.both_active();
            let description = match &state.source {
                site::SourceState::Live { running, .. } if both_active => Some(format!(
                    "{} (running on production in {}: {})",
                    r.destination_namespace,
                    r.source_namespace,
                    running.join(", ")
                )),
                _ => None,
            };
            out.push(ActivePair {
                destination_namespace: r.destination_namespace.clone(),
                both_active,
                description,
            });
        }
        out
    }

    /// The site state of a pair (namespaces only, no workloads); a side that cannot be read is unknown.
    pub async fn site_of(&self, src: &str, dst: &str) -> site::SiteState {
        let (source, destination) = tokio::join!(
            crate::kube::site::read_source(&self.source.client, &self.source.calls, src, &[]),
            crate::kube::site::read_destination(&self.destination.client, &self.destination.calls, dst)
        );
        site::SiteState {
            source: source.unwrap_or_default(),
            destination: destination.map(|(d, _)| d).unwrap_or_default(),
        }
    }

    /// `cleanupOnUnlabel` for source namespace `src`, which left the selector, synced into `dst`: a
    /// namespace deleted on production (or one that cannot be read) is not "unlabelled" (that is an
    /// outage, not a request), and an active DR namespace is never cleaned up.
    ///
    /// # Errors
    /// As [`MappingRun::delete_synced`].
    pub async fn cleanup_unselected(&self, src: &str, dst: &str) -> Result<Cleanup> {
        let state = self.site_of(src, dst).await;
        match site::decide(site::Actor::Operator, site::Step::CleanupOnUnlabel, &state) {
            site::Decision::Skip(reason) | site::Decision::Refuse(reason) => Ok(Cleanup::Held(reason)),
            site::Decision::Proceed => self.delete_synced(dst).await,
        }
    }

    /// Delete what this mapping synced into DR namespace `dst` (objects carrying its
    /// `dr-syncer.io/synced-by`), then the namespace itself if dr-syncer created it
    /// (`dr-syncer.io/created-by`) and it holds nothing dr-syncer did not put there. Never in an active
    /// DR namespace: the site state holds it ([`Cleanup::Held`]).
    ///
    /// # Errors
    /// A protected namespace ([`Error::Boundary`]), and the DR cluster's API errors.
    pub async fn delete_synced(&self, dst: &str) -> Result<Cleanup> {
        // Never in a protected namespace, whatever the status says was synced there.
        self.host.boundaries.check_namespace("destination", dst)?;
        let (destination, live) =
            crate::kube::site::read_destination(&self.destination.client, &self.destination.calls, dst)
                .await?;
        let state = site::SiteState {
            source: site::SourceState::Unknown,
            destination,
        };
        if let site::Decision::Skip(reason) | site::Decision::Refuse(reason) =
            site::decide(site::Actor::Operator, site::Step::DeleteSynced, &state)
        {
            return Ok(Cleanup::Held(reason));
        }
        let Some(live) = live else {
            return Ok(Cleanup::Deleted(0));
        };
        let applier = self.new_applier();
        let options = ApplyOptions::default();
        let mut deleted = 0;
        for rt in &self.types {
            for obj in applier.list_managed(rt, Some(dst), &self.key).await? {
                if applier.delete(rt, &rt.key_of(&obj), options.clone()).await? {
                    deleted += 1;
                }
            }
        }
        if crate::transform::annotation(&live, annotations::CREATED_BY).is_none() {
            return Ok(Cleanup::Deleted(deleted));
        }
        // Only when nothing is left in it that dr-syncer did not put there (what the cluster itself puts
        // in every namespace, and dependents of dr-syncer's objects, aside).
        let foreign = self.foreign_objects(dst).await?;
        if !foreign.is_empty() {
            info!(namespace = dst, kept_for = %foreign.join(", "), "namespace kept: it holds objects dr-syncer did not put there");
            return Ok(Cleanup::Deleted(deleted));
        }
        let ns_key = ObjectKey {
            group_kind: "Namespace".into(),
            namespace: None,
            name: dst.to_owned(),
        };
        if applier
            .delete(&crate::engine::namespace_type(), &ns_key, options)
            .await?
        {
            deleted += 1;
        }
        Ok(Cleanup::Deleted(deleted))
    }

    /// Objects in DR namespace `dst`, of every type the DR cluster serves, that dr-syncer did not put
    /// there: not synced by any dr-syncer writer, not owned by another object (dependents go with their
    /// owners), not dr-syncer's data-path objects, and not what the cluster creates in every namespace.
    async fn foreign_objects(&self, dst: &str) -> Result<Vec<String>> {
        let types = crate::kube::discover(&self.destination.client, &self.destination.calls).await?;
        let namespaced: Vec<ResourceType> = types
            .into_iter()
            .filter(|t| {
                t.namespaced
                    && t.verbs.iter().any(|v| v == "list")
                    && !(t.kind == "Event" && (t.group.is_empty() || t.group == "events.k8s.io"))
            })
            .collect();
        let objects = KubeSource::new(self.destination.client.clone(), self.destination.calls.clone())
            .list(&SourceScope {
                namespace: Some(dst.to_owned()),
                types: namespaced,
            })
            .await?;
        let services: BTreeSet<String> = objects
            .iter()
            .filter(|o| o.resource.is("", "Service"))
            .filter_map(|o| o.object.metadata.name.clone())
            .collect();
        Ok(objects
            .iter()
            .filter(|o| {
                let meta = &o.object.metadata;
                let name = meta.name.as_deref().unwrap_or_default();
                let ours = meta
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(annotations::SYNCED_BY))
                    || meta.labels.as_ref().is_some_and(|l| {
                        l.get("app.kubernetes.io/managed-by").map(String::as_str)
                            == Some(crate::pvc::MANAGED_BY)
                    });
                let dependent = meta.owner_references.as_ref().is_some_and(|r| !r.is_empty());
                let cluster_made = matches!(
                    (o.resource.kind.as_str(), name),
                    ("ConfigMap", "kube-root-ca.crt") | ("ServiceAccount", "default")
                ) || (o.resource.kind == "Endpoints" && services.contains(name));
                !(ours || dependent || cluster_made)
            })
            .map(|o| {
                format!(
                    "{}/{}",
                    o.resource.kind,
                    o.object.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect())
    }

    /// `deletionPolicy: DeleteSynced`: every DR namespace the mapping synced (its pairs, and those its
    /// status records). Returns the objects deleted and the namespaces kept (active ones, with why).
    ///
    /// # Errors
    /// As [`MappingRun::delete_synced`]; the first error ends it.
    pub async fn delete_synced_everywhere(&self) -> Result<(usize, Vec<String>)> {
        let mut destinations: Vec<String> = self.pairs.iter().map(|(_, d)| d.clone()).collect();
        for d in &self.recorded_namespaces {
            if !destinations.contains(d) {
                destinations.push(d.clone());
            }
        }
        let mut deleted = 0;
        let mut held = Vec::new();
        for d in destinations {
            match self.delete_synced(&d).await? {
                Cleanup::Deleted(n) => deleted += n,
                Cleanup::Held(reason) => held.push(format!("{d} ({reason})")),
            }
        }
        Ok((deleted, held))
    }
}
