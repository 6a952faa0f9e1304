//! The sync engine: source → selection → transformers → applier, with a report.
//!
//! [`SyncEngine`] is generic over the four traits (it holds them as trait objects), so the same engine
//! runs the operator's scheduled and manual syncs, the CLI's stage/cutover/failback and `plan`, and
//! embedding tools' pipelines with their own parts. One call syncs one namespace pair ([`SyncTarget`]):
//!
//! 1. **fetch** the selected types of the source namespace (one list per type) and the source Namespace;
//! 2. **validate/select**: per object, the mapping's selection rules ([`crate::selection::ObjectFilter`]);
//! 3. **transform** (pure) with the transformer chain; a transformer error fails that object only;
//! 4. **apply** in dependency order ([`crate::order`]), waves of tiers one after the other, the objects
//!    of a wave in parallel (bounded by [`SyncEngine::with_concurrency`]); the DR Namespace first (per
//!    `namespaceConfig`), CRDs of replicated custom resources next (waited for until Established, with
//!    `syncCRDs`); per-object failures are recorded and the rest carries on. Nothing is written unless
//!    every read of step 1 succeeded;
//! 5. **prune** (only with `prune`): DR objects of the selected types whose `dr-syncer.io/synced-by` is
//!    this mapping's and whose source object is gone are deleted — nothing else ever is, and nothing
//!    while the production namespace is terminating;
//! 6. **report**: per kind created / updated / unchanged / recreated / skipped / deleted / failed, the
//!    failures with object names, what changed, and the duration.
//!
//! A DR namespace annotated `dr-syncer.io/active: "true"` (a cutover, a promote, or a person: the DR side is
//! the live site) takes no write at all: the sync reads the two namespaces, stops, and says so in
//! [`SyncReport::held`] ([`crate::site`] holds the rule). Prune and mirrored deletions also stop while the
//! production namespace is being deleted. A newly created DR namespace records who created it
//! (`dr-syncer.io/created-by`): only such a namespace is ever deleted by dr-syncer.

mod report;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use kube::core::{DynamicObject, ObjectMeta};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

pub use self::report::{
    Held, KindStats, ObjectChange, ObjectFailure, SkippedObject, SyncReport, WorkloadScale,
};
use crate::{
    Error, Result, activation, annotations,
    apply::{Applier, ApplyAction, ApplyError, ApplyOptions, ApplyResult},
    boundaries::Boundaries,
    brake::{DeletionLedger, GoAhead, Verdict},
    config::SyncConfig,
    failure::FailureCategory,
    order::tier,
    plugin::{self, Plugins},
    resource::{ObjectKey, ResourceType},
    selection::ObjectFilter,
    site,
    source::{ResourceSource, SourceError, SourceObject, SourceScope},
    transform::{Outcome, Sanitize, TransformContext, Transformer, TransformerChain, annotation},
};

/// The Namespace type.
pub fn namespace_type() -> ResourceType {
    ResourceType::namespaced("", "v1", "Namespace", "namespaces").cluster_scoped()
}

/// The CustomResourceDefinition type.
pub fn crd_type() -> ResourceType {
    ResourceType::namespaced(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    )
    .cluster_scoped()
}

/// Whether a sync of `target` takes over existing DR objects dr-syncer did not create: as the mapping
/// says (`adoptExisting`), else only in a DR namespace the Go operator marked as its own
/// (`dr-syncer.io/managed-by=dr-syncer`: it marked namespaces, not the objects it copied).
fn adopts(target: &SyncTarget, live_ns: Option<&DynamicObject>) -> bool {
    target.config.adopt_existing.unwrap_or_else(|| {
        live_ns
            .and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get(annotations::GO_MANAGED_BY))
            .is_some_and(|v| v == "dr-syncer")
    })
}

/// Why a DR object whose type is being removed at the source is kept.
const TYPE_REMOVED: &str =
    "deleted at the source while its CustomResourceDefinition is being deleted; the DR copy is kept";

/// Record the types [`SyncEngine`] found being removed at the source in `report`.
fn note_removed_types(removed: BTreeSet<String>, report: &mut SyncReport) {
    for gk in removed {
        if !report.removed_types.contains(&gk) {
            report.removed_types.push(gk);
        }
    }
}

/// A change of one source object, for [`SyncEngine::sync_changes`] (continuous replication).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Created or updated: its current state.
    Applied(SourceObject),
    /// Deleted: its last known state.
    Deleted(SourceObject),
}

fn namespace_key(target: &SyncTarget) -> ObjectKey {
    ObjectKey {
        group_kind: "Namespace".into(),
        namespace: None,
        name: target.destination_namespace.clone(),
    }
}

/// The site state of a production namespace as the engine read it (workloads are not looked at).
fn source_state(ns: &DynamicObject) -> site::SourceState {
    if site::is_terminating(ns) {
        site::SourceState::Terminating
    } else {
        site::SourceState::Live {
            standby: annotation(ns, annotations::STANDBY) == Some("true"),
            running: Vec::new(),
            held: Vec::new(),
        }
    }
}

/// A site state for the engine's decisions: `source` and a destination that is active or not.
fn site_with(source: site::SourceState, active: bool) -> site::SiteState {
    site::SiteState {
        source,
        destination: if active {
            site::DestinationState::Active {
                since: None,
                by: site::ActivatedBy::Manual,
            }
        } else {
            site::DestinationState::Standby
        },
    }
}

/// Sort the report, stamp its duration and log it (`info` for full syncs, `debug` for batches of
/// changes, which continuous replication runs many times a second).
fn finish(mut report: SyncReport, started: Instant, full: bool) -> SyncReport {
    report.failures.sort_by(|a, b| a.object.cmp(&b.object));
    report.changes.sort_by(|a, b| a.object.cmp(&b.object));
    report
        .workloads
        .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    report.duration = started.elapsed();
    let t = report.totals();
    if !full {
        debug!(
            created = t.created,
            updated = t.updated,
            unchanged = t.unchanged,
            deleted = t.deleted,
            skipped = t.skipped,
            failed = t.failed,
            seconds = report.duration.as_secs_f64(),
            "changes synced"
        );
        return report;
    }
    info!(
        created = t.created,
        updated = t.updated,
        unchanged = t.unchanged,
        recreated = t.recreated,
        deleted = t.deleted,
        skipped = t.skipped,
        failed = t.failed,
        seconds = report.duration.as_secs_f64(),
        "sync finished"
    );
    report
}

/// One namespace pair to sync, with everything the transformers need to know.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    /// Name of the source cluster (recorded in `dr-syncer.io/source-cluster`).
    pub source_cluster: String,
    /// Name of the destination cluster.
    pub destination_cluster: String,
    /// The source namespace.
    pub source_namespace: String,
    /// The destination namespace.
    pub destination_namespace: String,
    /// The value of `dr-syncer.io/synced-by`: `<namespace>/<mapping>`, or `cli/<source-namespace>`.
    pub synced_by: String,
    /// The types to replicate, resolved against discovery ([`crate::selection::resolve_resource_types`]).
    pub types: Vec<ResourceType>,
    /// The mapping's validated configuration.
    pub config: Arc<SyncConfig>,
}

impl SyncTarget {
    /// What the transformers get for an object of `resource` (`active`: the DR namespace is marked
    /// active).
    pub fn context(&self, resource: &ResourceType, active: bool) -> TransformContext {
        TransformContext {
            source_cluster: self.source_cluster.clone(),
            destination_cluster: self.destination_cluster.clone(),
            source_namespace: self.source_namespace.clone(),
            destination_namespace: self.destination_namespace.clone(),
            synced_by: self.synced_by.clone(),
            resource: resource.clone(),
            destination_active: active,
            config: self.config.clone(),
        }
    }
}

/// Where a sync (or a drill built on it) is, for progress bars and status.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Progress {
    /// The source was read, selected and transformed: `total` objects are to be applied.
    Planned {
        /// Objects to apply.
        total: usize,
    },
    /// One object was applied (or failed; the report tells which).
    Applied {
        /// Objects applied so far, this one included.
        done: usize,
        /// Objects to apply.
        total: usize,
        /// The object (`Kind.group/namespace/name`).
        object: String,
    },
    /// A step of a drill started (e.g. `quiet source workloads`).
    Step {
        /// What the step does.
        name: String,
    },
    /// A PVC's data copy moved on.
    #[cfg(feature = "client")]
    Data {
        /// `source/pvc → destination/pvc`.
        pvc: String,
        /// Where it is.
        stage: crate::pvc::PvcSyncStage,
    },
}

/// A progress callback. Called from the sync's tasks: it must be cheap and must not block.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Runs syncs and plans (see the module docs).
#[derive(Clone)]
pub struct SyncEngine {
    source: Arc<dyn ResourceSource>,
    applier: Arc<dyn Applier>,
    chain: TransformerChain,
    plugins: Plugins,
    concurrency: usize,
    crd_timeout: Duration,
    keep_activation: bool,
    progress: Option<ProgressFn>,
    fail_fast: Vec<FailureCategory>,
    check_storage_classes: bool,
    go_ahead: GoAhead,
    ledger: Arc<DeletionLedger>,
    accepted_source_identity: AcceptIdentity,
    boundaries: Boundaries,
    only: Option<BTreeSet<String>>,
}

/// Which source cluster a sync accepts where a DR namespace records another one
/// (`dr-syncer.io/source-cluster-uid`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AcceptIdentity {
    /// Only the recorded one (the default): another cluster fails with
    /// [`Error::ClusterIdentityChanged`].
    #[default]
    Recorded,
    /// The cluster with this `kube-system` UID, whatever a DR namespace records.
    Uid(String),
    /// The cluster with UID `current`, where a DR namespace records one of the UIDs it `replaces` (a
    /// RemoteCluster whose pin a person moved: [`crate::api::ClusterIdentity::replaces`]). Another
    /// recorded cluster is still refused.
    Replacing {
        /// The accepted cluster.
        current: String,
        /// The clusters it took over from.
        replaces: Vec<String>,
    },
    /// Whichever cluster the source is now (a person said so, e.g. the CLI's
    /// `--accept-source-cluster`).
    Any,
}

impl AcceptIdentity {
    /// Compare the identity `found` now with the one `recorded` in DR namespace `namespace`.
    ///
    /// # Errors
    /// [`Error::ClusterIdentityChanged`] when both are known, differ, and `found` is not accepted.
    pub fn check(&self, namespace: &str, recorded: Option<&str>, found: Option<&str>) -> Result<()> {
        match (recorded, found) {
            (Some(r), Some(f)) if r != f => match self {
                AcceptIdentity::Any => Ok(()),
                AcceptIdentity::Uid(u) if u == f => Ok(()),
                AcceptIdentity::Replacing { current, replaces }
                    if current == f && replaces.iter().any(|p| p == r) =>
                {
                    Ok(())
                }
                _ => Err(Error::ClusterIdentityChanged {
                    namespace: namespace.to_owned(),
                    recorded: r.to_owned(),
                    found: f.to_owned(),
                }),
            },
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("chain", &self.chain)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// How a report names a source object: `Kind.group/namespace/name`.
fn source_label(resource: &ResourceType, target: &SyncTarget, name: &str) -> String {
    format!("{}/{}/{name}", resource.group_kind(), target.source_namespace)
}

/// A desired object, ready to apply.
struct Desired {
    resource: ResourceType,
    object: DynamicObject,
    key: ObjectKey,
}

impl SyncEngine {
    /// An engine with the built-in transformer chain and 64 parallel applies.
    pub fn new(source: Arc<dyn ResourceSource>, applier: Arc<dyn Applier>) -> Self {
        SyncEngine {
            source,
            applier,
            chain: TransformerChain::builtin(),
            plugins: Plugins::none(),
            concurrency: 64,
            crd_timeout: Duration::from_secs(60),
            keep_activation: false,
            progress: None,
            fail_fast: Vec::new(),
            check_storage_classes: false,
            go_ahead: GoAhead::None,
            ledger: Arc::new(DeletionLedger::new()),
            accepted_source_identity: AcceptIdentity::Recorded,
            boundaries: Boundaries::system_only(),
            only: None,
        }
    }

    /// The namespaces this engine never syncs from or into ([`crate::boundaries`]); by default the
    /// system namespaces (`kube-system`, `kube-public`, `kube-node-lease`).
    pub fn with_boundaries(mut self, boundaries: Boundaries) -> Self {
        self.boundaries = boundaries;
        self
    }

    /// Apply only these objects (their DR keys, as [`ObjectKey`]'s `Display` writes them, e.g.
    /// `ConfigMap/shop/settings`); the others are reported as excluded. A failback's copy back to
    /// production writes only what its reverse diff listed.
    pub fn limited_to(mut self, objects: BTreeSet<String>) -> Self {
        self.only = Some(objects);
        self
    }

    /// Refuse a target whose source or destination namespace is protected.
    ///
    /// # Errors
    /// [`Error::Boundary`].
    pub fn check_boundaries(&self, target: &SyncTarget) -> Result<()> {
        Ok(self
            .boundaries
            .check_pair(&target.source_namespace, &target.destination_namespace)?)
    }

    /// Which source cluster to accept where a DR namespace records another one
    /// (`dr-syncer.io/source-cluster-uid`; the new UID is then recorded). By default such a sync fails
    /// with [`Error::ClusterIdentityChanged`] before writing anything.
    pub fn accepting_source_identity(mut self, accept: AcceptIdentity) -> Self {
        self.accepted_source_identity = accept;
        self
    }

    /// The source cluster accepted ([`SyncEngine::accepting_source_identity`]).
    pub fn accepted_source_identity(&self) -> &AcceptIdentity {
        &self.accepted_source_identity
    }

    /// A person's go-ahead for deletions the brake holds ([`crate::brake`]): the operator's
    /// `dr-syncer.io/allow-deletions` annotation, the CLI's `--allow-deletions`.
    pub fn with_deletion_go_ahead(mut self, go: GoAhead) -> Self {
        self.go_ahead = go;
        self
    }

    /// Count deletions over the brake's window in `ledger` (shared by the syncs of a process, so that
    /// deletions seen a few at a time add up). Without it each engine counts only its own.
    pub fn with_deletion_ledger(mut self, ledger: Arc<DeletionLedger>) -> Self {
        self.ledger = ledger;
        self
    }

    /// Stop applying after the first failure of one of these categories (`failureHandling` `FailFast`):
    /// the objects not applied yet are reported as skipped.
    pub fn with_fail_fast(mut self, categories: Vec<FailureCategory>) -> Self {
        self.fail_fast = categories;
        self
    }

    /// Check that the StorageClasses of PersistentVolumeClaims exist on the destination before creating
    /// the claims; a claim whose class is missing fails with category `StorageClassNotFound`.
    pub fn with_storage_class_check(mut self, on: bool) -> Self {
        self.check_storage_classes = on;
        self
    }

    /// Report progress to `f` ([`Progress::Planned`], then one [`Progress::Applied`] per object).
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// The progress callback, if any.
    pub fn progress(&self) -> Option<&ProgressFn> {
        self.progress.as_ref()
    }

    fn emit(&self, event: Progress) {
        if let Some(f) = &self.progress {
            f(&event);
        }
    }

    /// Treat every destination namespace as active: workloads keep their live replicas, `suspend` and
    /// placement whatever the source says (used to copy DR-side changes back to a quiet source).
    pub fn keeping_destination_activation(mut self) -> Self {
        self.keep_activation = true;
        self
    }

    /// Use this transformer chain instead of [`TransformerChain::builtin`] (e.g. the built-ins plus your own).
    pub fn with_chain(mut self, chain: TransformerChain) -> Self {
        self.chain = chain;
        self
    }

    /// Run these external plugins ([`crate::plugin`]) after the transformer chain: each desired object
    /// goes through them in order; a white-out leaves the object out (and, with `prune`, its DR copy
    /// goes as if the source object were gone); a plugin failure fails that object only. For forward
    /// syncs: a copy back to production (failback) is built without them.
    pub fn with_plugins(mut self, plugins: Plugins) -> Self {
        self.plugins = plugins;
        self
    }

    /// At most `n` applies in flight (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long to wait for a replicated CRD to become Established.
    pub fn with_crd_timeout(mut self, timeout: Duration) -> Self {
        self.crd_timeout = timeout;
        self
    }

    /// The applier (for callers that also need the live DR side, e.g. a cutover).
    pub fn applier(&self) -> &Arc<dyn Applier> {
        &self.applier
    }

    /// The source.
    pub fn source(&self) -> &Arc<dyn ResourceSource> {
        &self.source
    }

    /// Sync `target`: write what differs, report everything.
    ///
    /// # Errors
    /// Only when the sync cannot start or the namespace cannot be prepared (source unreadable, destination
    /// namespace missing with `createNamespace: false` …). Per-object failures are in the report.
    pub async fn sync(&self, target: &SyncTarget) -> Result<SyncReport> {
        let options = ApplyOptions {
            dry_run: false,
            immutable: Arc::new(target.config.immutable.clone()),
            adopt: false,
        };
        self.run(target, options)
            .instrument(info_span!("sync", source = %target.source_namespace, destination = %target.destination_namespace))
            .await
    }

    /// Plan `target`: report what a sync would change, write nothing.
    ///
    /// # Errors
    /// As [`SyncEngine::sync`].
    pub async fn plan(&self, target: &SyncTarget) -> Result<SyncReport> {
        let options = ApplyOptions {
            dry_run: true,
            immutable: Arc::new(target.config.immutable.clone()),
            adopt: false,
        };
        self.run(target, options)
            .instrument(info_span!("plan", source = %target.source_namespace, destination = %target.destination_namespace))
            .await
    }

    async fn run(&self, target: &SyncTarget, mut options: ApplyOptions) -> Result<SyncReport> {
        self.check_boundaries(target)?;
        let started = Instant::now();
        let mut report = SyncReport {
            source_namespace: target.source_namespace.clone(),
            destination_namespace: target.destination_namespace.clone(),
            dry_run: options.dry_run,
            ..Default::default()
        };
        let types: Vec<ResourceType> = target.types.iter().filter(|t| t.namespaced).cloned().collect();

        // 1. Fetch: the source and the live DR namespace; a DR namespace marked active (the DR side is the
        // live site) ends the sync here, before production is read any further and before any write.
        // Otherwise the source's objects and the destination's live objects, read at the same time.
        let (ns_type, ns_key) = (namespace_type(), namespace_key(target));
        let (source_ns, live_ns) = tokio::join!(
            self.source.get(&ns_type, None, &target.source_namespace),
            self.applier.live(&ns_type, &ns_key)
        );
        let live_ns = live_ns?;
        options.adopt = adopts(target, live_ns.as_ref());
        if let Some(held) = self.hold(live_ns.as_ref()) {
            report.destination_active = true;
            warn!(destination = %target.destination_namespace, "{}", held.message);
            report.held = Some(held);
            return Ok(finish(report, started, true));
        }
        let source_ns = source_ns?.ok_or_else(|| {
            Error::Source(
                SourceError::new(
                    format!("namespace {}", target.source_namespace),
                    "not found on the source cluster",
                    false,
                )
                .with_category(FailureCategory::ResourceNotFound),
            )
        })?;
        let scope = SourceScope {
            namespace: Some(target.source_namespace.clone()),
            types: types.clone(),
        };
        let (objects, prepared, identity) = tokio::join!(
            self.source.list(&scope),
            self.applier.prepare(Some(&target.destination_namespace), &types),
            self.source_identity()
        );
        let objects = objects?;
        prepared?;
        let identity = self.check_identity(target, live_ns.as_ref(), identity)?;
        debug!(objects = objects.len(), "listed source");
        // Nothing is written before every read succeeded: first the DR namespace.
        let (active, ns_result) = self
            .ready_namespace(target, &source_ns, live_ns, identity.as_deref(), &options)
            .await?;
        report.destination_active = active;
        report.record("Namespace", ns_key.to_string(), ns_result.action, ns_result.diff);

        // 2.–3. Select and transform (pure).
        let mut source_names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for o in &objects {
            source_names
                .entry(o.resource.group_kind())
                .or_default()
                .insert(o.object.metadata.name.clone().unwrap_or_default());
        }
        let desired = self.select_and_transform(target, active, objects, &mut report);
        let (desired, whited_out) = self.run_plugins(target, desired, active, &mut report).await;
        for (resource, name) in whited_out {
            if let Some(names) = source_names.get_mut(&resource.group_kind()) {
                names.remove(&name);
            }
        }

        // 4. Apply: CRDs, then the objects wave by wave (the namespace is there already). The DR namespace
        // is read again first: a cutover or promote may have marked it while the source was listed.
        if let Some(held) = self.hold(self.applier.live(&ns_type, &ns_key).await?.as_ref()) {
            report.destination_active = true;
            warn!(destination = %target.destination_namespace, "{}", held.message);
            report.held = Some(held);
            return Ok(finish(report, started, true));
        }
        if target.config.sync_crds {
            self.sync_crds(target, &types, &options, &mut report).await;
        }
        self.apply_all(desired, active, &options, &mut report).await;

        // 5. Prune — never from a production namespace that is being deleted (an outage, not a request;
        // its PVC data is not copied either), never into a namespace marked active meanwhile.
        let source = source_state(&source_ns);
        if source.is_gone() {
            report.held = Some(Held::new(
                site::Reason::SourceGone,
                "prune and PVC data copies skipped",
            ));
        }
        if target.config.prune {
            let active = active
                || self
                    .hold(self.applier.live(&ns_type, &ns_key).await?.as_ref())
                    .is_some();
            match site::decide(
                site::Actor::Operator,
                site::Step::Prune,
                &site_with(source, active),
            ) {
                site::Decision::Proceed => {
                    self.prune(target, &types, &source_names, &options, &mut report)
                        .await
                }
                site::Decision::Skip(reason) | site::Decision::Refuse(reason) => {
                    let held = Held::new(reason, "prune skipped");
                    warn!("{}", held.message);
                    report.held = Some(held);
                }
            }
        }
        Ok(finish(report, started, true))
    }

    /// The DR namespace of `target`, made ready: the namespace desired from `source_ns` (and the live
    /// one, `live_ns`, whose activation mark it keeps) applied per `namespaceConfig`. Returns whether the
    /// destination is active (cut over), and the apply.
    async fn ready_namespace(
        &self,
        target: &SyncTarget,
        source_ns: &DynamicObject,
        live_ns: Option<DynamicObject>,
        source_identity: Option<&str>,
        options: &ApplyOptions,
    ) -> Result<(bool, ApplyResult)> {
        // An active DR namespace never gets here (see `hold`); copying back to a quiet production does.
        let active = self.keep_activation;
        let ns = self.desired_namespace(target, source_ns, live_ns.as_ref(), source_identity)?;
        if live_ns.is_none() && !target.config.namespace.create_namespace {
            return Err(Error::InvalidConfig(format!(
                "destination namespace {} does not exist and namespaceConfig.createNamespace is false",
                target.destination_namespace
            )));
        }
        let applied = self
            .applier
            .apply(&namespace_type(), &ns, options.clone())
            .await
            .map_err(Error::Apply)?;
        Ok((active, applied))
    }

    /// The source cluster's identity: its `kube-system` namespace's UID (`Ok(None)` when it has none or
    /// may not be read: nothing to compare).
    async fn source_identity(&self) -> Result<Option<String>> {
        match self.source.get(&namespace_type(), None, "kube-system").await {
            Ok(ns) => Ok(ns.and_then(|n| n.metadata.uid)),
            Err(e) if e.category == FailureCategory::ResourceNotFound || !e.transient => Ok(None),
            Err(e) => Err(Error::Source(e)),
        }
    }

    /// Compare the source's identity with the one the DR namespace records: a different cluster fails
    /// the sync (unless accepted); returns the identity to record. When the DR namespace records one and
    /// the source's cannot be read now, the sync fails too (it cannot tell).
    fn check_identity(
        &self,
        target: &SyncTarget,
        live_ns: Option<&DynamicObject>,
        found: Result<Option<String>>,
    ) -> Result<Option<String>> {
        let recorded = live_ns.and_then(|n| annotation(n, annotations::SOURCE_CLUSTER_UID));
        let found = match (recorded, found) {
            (Some(_), Err(e)) => return Err(e),
            (None, Err(_)) => return Ok(None),
            (_, Ok(f)) => f,
        };
        self.accepted_source_identity
            .check(&target.destination_namespace, recorded, found.as_deref())?;
        // Unknown now: keep what is recorded.
        Ok(found.or_else(|| recorded.map(str::to_owned)))
    }

    /// Whether the site state holds this sync back: a destination namespace marked active (the DR side
    /// is the live site) takes no write from the stale side ([`site::decide`]). A copy back to a quiet
    /// production ([`SyncEngine::keeping_destination_activation`]) writes into production's namespace,
    /// which never carries the mark.
    fn hold(&self, live_ns: Option<&DynamicObject>) -> Option<Held> {
        let destination = site::DestinationState::of_namespace(live_ns.map(|n| &n.metadata));
        let state = site::SiteState {
            source: site::SourceState::Unknown,
            destination,
        };
        match site::decide(site::Actor::Operator, site::Step::SyncObjects, &state) {
            site::Decision::Proceed => None,
            site::Decision::Skip(reason) | site::Decision::Refuse(reason) => {
                Some(Held::new(reason, "nothing synced into the destination namespace"))
            }
        }
    }

    /// Select and transform source objects into desired DR objects (pure); records what is left out and
    /// the source workloads' replica counts in `report`.
    fn select_and_transform(
        &self,
        target: &SyncTarget,
        active: bool,
        objects: Vec<SourceObject>,
        report: &mut SyncReport,
    ) -> Vec<Desired> {
        let filter = ObjectFilter::new(&target.config);
        let mut desired = Vec::new();
        for SourceObject { resource, object } in objects {
            let name = object.metadata.name.clone().unwrap_or_default();
            let label = source_label(&resource, target, &name);
            if let Err(skip) = filter.check(&resource, &object) {
                report.exclude(&resource.group_kind(), label, skip.to_string());
                continue;
            }
            if resource.is("apps", "Deployment") || resource.is("apps", "StatefulSet") {
                report.workloads.push(WorkloadScale {
                    kind: resource.kind.clone(),
                    name: name.clone(),
                    source_replicas: activation::source_replicas(&object),
                });
            }
            let ctx = target.context(&resource, active);
            match self.chain.transform(object, &ctx) {
                Ok(Outcome::Keep(obj)) => {
                    let key = resource.key_of(&obj);
                    if let Some(only) = &self.only
                        && !only.contains(&key.to_string())
                    {
                        report.exclude(
                            &resource.group_kind(),
                            label,
                            "not among the objects to copy".into(),
                        );
                        continue;
                    }
                    desired.push(Desired {
                        resource,
                        object: obj,
                        key,
                    });
                }
                Ok(Outcome::Drop { reason }) => report.exclude(&resource.group_kind(), label, reason),
                Err(e) => report.fail(&resource.group_kind(), label, &Error::Transform(e)),
            }
        }
        desired
    }

    /// The external plugins' stage ([`SyncEngine::with_plugins`]): the objects they keep (patched), and
    /// the type and name of those they white out. Failures and white-outs are reported.
    async fn run_plugins(
        &self,
        target: &SyncTarget,
        desired: Vec<Desired>,
        active: bool,
        report: &mut SyncReport,
    ) -> (Vec<Desired>, Vec<(ResourceType, String)>) {
        if self.plugins.is_empty() || desired.is_empty() {
            return (desired, Vec::new());
        }
        let (meta, objects): (Vec<_>, Vec<_>) = desired
            .into_iter()
            .map(|d| ((d.resource.clone(), d.key), (d.resource, d.object)))
            .unzip();
        let verdicts = self
            .plugins
            .run(
                objects,
                (!active).then_some(crate::activation::is_running as plugin::RunningCheck),
            )
            .instrument(info_span!("plugins", plugins = ?self.plugins.names()))
            .await;
        let (mut kept, mut whited_out) = (Vec::new(), Vec::new());
        for ((resource, key), verdict) in meta.into_iter().zip(verdicts) {
            let label = source_label(&resource, target, &key.name);
            match verdict {
                Ok(plugin::Verdict::Keep(object)) => kept.push(Desired {
                    resource,
                    object,
                    key,
                }),
                Ok(plugin::Verdict::WhiteOut { plugin }) => {
                    report.exclude(
                        &resource.group_kind(),
                        label,
                        format!("whited out by plugin {plugin}"),
                    );
                    whited_out.push((resource, key.name));
                }
                Err(e) => report.fail(&resource.group_kind(), label, &Error::Transform(e)),
            }
        }
        (kept, whited_out)
    }

    /// Apply `desired` in dependency order: waves of tiers ([`crate::order::Tier::wave`]) one after the
    /// other, the objects of a wave in parallel, started in tier order.
    /// After a failure whose category is in [`SyncEngine::with_fail_fast`], nothing more is applied.
    async fn apply_all(
        &self,
        desired: Vec<Desired>,
        active: bool,
        options: &ApplyOptions,
        report: &mut SyncReport,
    ) {
        let desired = if self.check_storage_classes {
            self.check_storage_classes(desired, report).await
        } else {
            desired
        };
        let total = desired.len();
        self.emit(Progress::Planned { total });
        let done = AtomicUsize::new(0);
        let stopped = AtomicBool::new(false);
        const STOPPED: &str =
            "not applied: the sync stopped at an earlier failure (failureHandling FailFast)";
        let mut waves: BTreeMap<u8, Vec<Desired>> = BTreeMap::new();
        for d in desired {
            waves.entry(tier(&d.resource).wave()).or_default().push(d);
        }
        for (wave, mut items) in waves {
            items.sort_by_key(|d| tier(&d.resource));
            let results: Vec<(Desired, Option<Result<ApplyResult>>)> = stream::iter(items)
                .map(|d| {
                    let options = options.clone();
                    let (done, stopped) = (&done, &stopped);
                    async move {
                        if stopped.load(Ordering::Relaxed) {
                            return (d, None);
                        }
                        let r = self.apply_one(&d, active, options).await;
                        if let Err(e) = &r
                            && self.fail_fast.contains(&e.category())
                        {
                            stopped.store(true, Ordering::Relaxed);
                        }
                        if self.progress.is_some() {
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            self.emit(Progress::Applied {
                                done: n,
                                total,
                                object: d.key.to_string(),
                            });
                        }
                        (d, Some(r))
                    }
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            debug!(wave, objects = results.len(), "applied wave");
            for (d, r) in results {
                match r {
                    None => report.skip(&d.key.group_kind, d.key.to_string(), STOPPED.into()),
                    Some(Ok(res)) => {
                        report.record(&d.key.group_kind, d.key.to_string(), res.action, res.diff)
                    }
                    Some(Err(e)) => {
                        warn!(object = %d.key, error = %e, "apply failed");
                        report.fail(&d.key.group_kind, d.key.to_string(), &e);
                    }
                }
            }
        }
    }

    /// PersistentVolumeClaims naming a StorageClass the destination lacks fail (category
    /// `StorageClassNotFound`) instead of being created: a claim's class cannot be changed later, and it
    /// would never be provisioned. A class that cannot be looked up (e.g. no permission) is assumed present.
    async fn check_storage_classes(&self, desired: Vec<Desired>, report: &mut SyncReport) -> Vec<Desired> {
        let sc_type = ResourceType::namespaced("storage.k8s.io", "v1", "StorageClass", "storageclasses")
            .cluster_scoped();
        let mut known: BTreeMap<String, bool> = BTreeMap::new();
        let mut keep = Vec::with_capacity(desired.len());
        for d in desired {
            let class = d
                .resource
                .is("", "PersistentVolumeClaim")
                .then(|| {
                    d.object
                        .data
                        .pointer("/spec/storageClassName")
                        .and_then(|v| v.as_str())
                })
                .flatten()
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            let Some(class) = class else {
                keep.push(d);
                continue;
            };
            if !known.contains_key(&class) {
                let key = ObjectKey {
                    group_kind: sc_type.group_kind(),
                    namespace: None,
                    name: class.clone(),
                };
                let exists = match self.applier.live(&sc_type, &key).await {
                    Ok(found) => found.is_some(),
                    Err(e) => {
                        debug!(class = %class, error = %e, "cannot look up StorageClass; assuming it exists");
                        true
                    }
                };
                known.insert(class.clone(), exists);
            }
            if known[&class] {
                keep.push(d);
            } else {
                let e = ApplyError::new(
                    &d.key,
                    format!(
                        "StorageClass {class} does not exist on the destination cluster: create it there or map it \
                         with pvcConfig.storageClassMappings"
                    ),
                    false,
                )
                .with_category(FailureCategory::StorageClassNotFound);
                report.fail(&d.key.group_kind, d.key.to_string(), &Error::Apply(e));
            }
        }
        keep
    }

    /// Apply just these source changes (continuous replication): the changed objects are selected,
    /// transformed and applied as in a full sync; a deleted object's DR copy is deleted only with `prune`,
    /// only when it carries this mapping's `dr-syncer.io/synced-by`, and never on an active site. When the
    /// destination namespace does not exist, this is a full sync.
    ///
    /// # Errors
    /// As [`SyncEngine::sync`].
    pub async fn sync_changes(&self, target: &SyncTarget, changes: Vec<Change>) -> Result<SyncReport> {
        let options = ApplyOptions {
            dry_run: false,
            immutable: Arc::new(target.config.immutable.clone()),
            adopt: false,
        };
        self.run_changes(target, changes, options)
            .instrument(info_span!("sync_changes", source = %target.source_namespace, destination = %target.destination_namespace))
            .await
    }

    async fn run_changes(
        &self,
        target: &SyncTarget,
        changes: Vec<Change>,
        mut options: ApplyOptions,
    ) -> Result<SyncReport> {
        self.check_boundaries(target)?;
        let started = Instant::now();
        let Some(live_ns) = self
            .applier
            .live(&namespace_type(), &namespace_key(target))
            .await?
        else {
            return self.run(target, options).await;
        };
        options.adopt = adopts(target, Some(&live_ns));
        let mut report = SyncReport {
            source_namespace: target.source_namespace.clone(),
            destination_namespace: target.destination_namespace.clone(),
            ..Default::default()
        };
        if let Some(held) = self.hold(Some(&live_ns)) {
            debug!(destination = %target.destination_namespace, "{}", held.message);
            report.destination_active = true;
            report.held = Some(held);
            return Ok(finish(report, started, false));
        }
        if annotation(&live_ns, annotations::SOURCE_CLUSTER_UID).is_some() {
            let found = self.source_identity().await;
            self.check_identity(target, Some(&live_ns), found)?;
        }
        let active = self.keep_activation;
        report.destination_active = active;
        let (mut applied, mut deleted) = (Vec::new(), Vec::new());
        for change in changes {
            match change {
                Change::Applied(o) if target.types.contains(&o.resource) => applied.push(o),
                Change::Deleted(o) if target.types.contains(&o.resource) => deleted.push(o),
                _ => {}
            }
        }
        let mut desired = self.select_and_transform(target, active, applied, &mut report);
        if !self.plugins.is_empty() && !desired.is_empty() {
            let (desired_after, whited_out) = self.run_plugins(target, desired, active, &mut report).await;
            // Plugins may take a while: the DR namespace is read again before anything is written, as a
            // full sync does (a cutover meanwhile makes it the live site).
            if let Some(held) = self.hold(
                self.applier
                    .live(&namespace_type(), &namespace_key(target))
                    .await?
                    .as_ref(),
            ) {
                report.destination_active = true;
                report.held = Some(held);
                return Ok(finish(report, started, false));
            }
            // With prune, a white-out is, for the DR side, a deletion at the source; without, the DR
            // copy stays (the object is reported as excluded).
            if target.config.prune {
                deleted.extend(whited_out.into_iter().map(|(resource, name)| {
                    let object =
                        DynamicObject::new(&name, &resource.api_resource()).within(&target.source_namespace);
                    SourceObject { resource, object }
                }));
            }
            desired = desired_after;
        }
        self.apply_all(desired, active, &options, &mut report).await;
        // Deletions are mirrored only with prune, and never while production's namespace is being
        // deleted (its objects vanish one by one: an outage, not a request).
        let prune = if target.config.prune && !deleted.is_empty() {
            let source = match self
                .source
                .get(&namespace_type(), None, &target.source_namespace)
                .await?
            {
                Some(ns) => source_state(&ns),
                None => site::SourceState::Missing,
            };
            match site::decide(
                site::Actor::Operator,
                site::Step::Prune,
                &site_with(source, active),
            ) {
                site::Decision::Proceed => Ok(()),
                site::Decision::Skip(r) | site::Decision::Refuse(r) => Err(r),
            }
        } else {
            Ok(())
        };
        if let Err(reason) = &prune {
            report.held = Some(Held::new(*reason, "deletions not mirrored"));
        }
        let mut doomed = Vec::new();
        let removed = if target.config.prune && prune.is_ok() {
            let types: BTreeSet<&ResourceType> = deleted.iter().map(|o| &o.resource).collect();
            self.removed_at_source(types.into_iter()).await
        } else {
            BTreeSet::new()
        };
        for SourceObject { resource, object } in deleted {
            let gk = resource.group_kind();
            let key = ObjectKey {
                group_kind: gk.clone(),
                namespace: Some(target.destination_namespace.clone()),
                name: object.metadata.name.clone().unwrap_or_default(),
            };
            if removed.contains(&gk) {
                report.skip(&gk, key.to_string(), TYPE_REMOVED.into());
                continue;
            }
            if !target.config.prune || prune.is_err() {
                let why = match &prune {
                    Err(reason) => format!("deleted at the source; the DR copy is kept: {reason}"),
                    Ok(()) => "deleted at the source; the DR copy is kept (prune is off)".to_owned(),
                };
                report.skip(&gk, key.to_string(), why);
                continue;
            }
            match self.applier.live(&resource, &key).await {
                Ok(Some(live))
                    if annotation(&live, annotations::SYNCED_BY) == Some(target.synced_by.as_str()) =>
                {
                    doomed.push((resource, key));
                }
                Ok(_) => {}
                Err(e) => report.fail(&gk, key.to_string(), &Error::Apply(e)),
            }
        }
        note_removed_types(removed, &mut report);
        if !doomed.is_empty() {
            // The brake needs what the mapping manages on the DR side (the deletions pending included).
            let mut managed = 0;
            for rt in target.types.iter().filter(|t| t.namespaced) {
                match self
                    .applier
                    .list_managed(rt, Some(&target.destination_namespace), &target.synced_by)
                    .await
                {
                    Ok(m) => managed += m.len(),
                    Err(e) => {
                        // Without the count nothing is deleted: the next batch or full sync tries again.
                        for (rt, key) in doomed.drain(..) {
                            report.fail(&rt.group_kind(), key.to_string(), &Error::Apply(e.clone()));
                        }
                        break;
                    }
                }
            }
            let allowed = self.brake(target, doomed, managed, options.dry_run, &mut report);
            self.delete_all(allowed, &options, &mut report).await;
        }
        Ok(finish(report, started, false))
    }

    async fn apply_one(&self, d: &Desired, active: bool, options: ApplyOptions) -> Result<ApplyResult> {
        let mut object = d.object.clone();
        if active && let Some(live) = self.applier.live(&d.resource, &d.key).await? {
            activation::carry_live_activation(&d.resource, &mut object, &live);
        }
        Ok(self.applier.apply(&d.resource, &object, options).await?)
    }

    /// The DR Namespace: the destination name with the source's labels and annotations as
    /// `namespaceConfig` asks, marked as dr-syncer's. The cutover's `dr-syncer.io/active` mark is kept.
    fn desired_namespace(
        &self,
        target: &SyncTarget,
        source_ns: &DynamicObject,
        live_ns: Option<&DynamicObject>,
        source_identity: Option<&str>,
    ) -> Result<DynamicObject> {
        let cfg = &target.config.namespace;
        let mut labels = BTreeMap::new();
        if cfg.preserve_labels {
            for (k, v) in source_ns.metadata.labels.iter().flatten() {
                if k != "kubernetes.io/metadata.name" {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
        let mut ann = BTreeMap::new();
        if cfg.preserve_annotations {
            for (k, v) in source_ns.metadata.annotations.iter().flatten() {
                if k != annotations::LAST_APPLIED && !k.starts_with("dr-syncer.io/") {
                    ann.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(active) = live_ns.and_then(|ns| annotation(ns, annotations::ACTIVE)) {
            ann.insert(annotations::ACTIVE.into(), active.to_owned());
        }
        // Who created the namespace, recorded by the write that creates it and kept afterwards: only a
        // namespace dr-syncer created is ever deleted by it.
        match live_ns {
            None => {
                ann.insert(annotations::CREATED_BY.into(), target.synced_by.clone());
            }
            Some(live) => {
                if let Some(by) = annotation(live, annotations::CREATED_BY) {
                    ann.insert(annotations::CREATED_BY.into(), by.to_owned());
                }
            }
        }
        ann.insert(annotations::SYNCED_BY.into(), target.synced_by.clone());
        ann.insert(annotations::SOURCE_CLUSTER.into(), target.source_cluster.clone());
        if let Some(uid) = source_identity {
            ann.insert(annotations::SOURCE_CLUSTER_UID.into(), uid.to_owned());
        }
        ann.insert(
            annotations::SOURCE_NAMESPACE.into(),
            target.source_namespace.clone(),
        );
        let mut ns = DynamicObject::new(&target.destination_namespace, &namespace_type().api_resource());
        ns.metadata = ObjectMeta {
            name: Some(target.destination_namespace.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(ann),
            ..Default::default()
        };
        ns.data = json!({});
        Ok(ns)
    }

    /// With `syncCRDs`: replicate the CRDs of the custom resource types in scope, then wait until the DR
    /// API server serves them.
    async fn sync_crds(
        &self,
        target: &SyncTarget,
        types: &[ResourceType],
        options: &ApplyOptions,
        report: &mut SyncReport,
    ) {
        let crd_rt = crd_type();
        for rt in types
            .iter()
            // Built-in groups have no dot; a dotted group is a CRD's or an aggregated API's (the lookup
            // below tells them apart).
            .filter(|t| t.group.contains('.'))
        {
            let name = format!("{}.{}", rt.plural, rt.group);
            let key = ObjectKey {
                group_kind: crd_rt.group_kind(),
                namespace: None,
                name: name.clone(),
            };
            let crd = match self.source.get(&crd_rt, None, &name).await {
                Ok(Some(crd)) => crd,
                Ok(None) => continue, // served by an aggregated API, not a CRD
                Err(e) => {
                    report.fail(&key.group_kind, key.to_string(), &Error::Source(e));
                    continue;
                }
            };
            let ctx = target.context(&crd_rt, false);
            let desired = match Sanitize.transform(crd, &ctx) {
                Ok(Outcome::Keep(c)) => c,
                Ok(Outcome::Drop { .. }) => continue,
                Err(e) => {
                    report.fail(&key.group_kind, key.to_string(), &Error::Transform(e));
                    continue;
                }
            };
            match self.applier.apply(&crd_rt, &desired, options.clone()).await {
                Ok(res) => {
                    report.record(&key.group_kind, key.to_string(), res.action, res.diff);
                    if !options.dry_run
                        && let Err(e) = self.wait_established(&crd_rt, &key).await
                    {
                        report.fail(&key.group_kind, key.to_string(), &e);
                    }
                }
                Err(e) => report.fail(&key.group_kind, key.to_string(), &Error::Apply(e)),
            }
        }
    }

    async fn wait_established(&self, crd_rt: &ResourceType, key: &ObjectKey) -> Result<()> {
        let deadline = Instant::now() + self.crd_timeout;
        loop {
            let live = self.applier.live(crd_rt, key).await?;
            let established = live
                .as_ref()
                .and_then(|c| c.data.pointer("/status/conditions"))
                .and_then(|c| c.as_array())
                .is_some_and(|conds| {
                    conds
                        .iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                });
            if established {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Apply(crate::apply::ApplyError::new(
                    key,
                    format!("not Established after {:?}", self.crd_timeout),
                    true,
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn prune(
        &self,
        target: &SyncTarget,
        types: &[ResourceType],
        source_names: &BTreeMap<String, BTreeSet<String>>,
        options: &ApplyOptions,
        report: &mut SyncReport,
    ) {
        let empty = BTreeSet::new();
        let mut managed_total = 0;
        let mut doomed = Vec::new();
        let removed = self.removed_at_source(types.iter()).await;
        for rt in types {
            let gk = rt.group_kind();
            let managed = match self
                .applier
                .list_managed(rt, Some(&target.destination_namespace), &target.synced_by)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    // Without the full count the brake cannot judge: nothing is pruned this time.
                    report.fail(
                        &gk,
                        format!("{gk}/{}", target.destination_namespace),
                        &Error::Apply(e),
                    );
                    return;
                }
            };
            managed_total += managed.len();
            let names = source_names.get(&gk).unwrap_or(&empty);
            for obj in managed {
                let name = obj.metadata.name.clone().unwrap_or_default();
                if !names.contains(&name) {
                    let key = ObjectKey {
                        group_kind: gk.clone(),
                        namespace: Some(target.destination_namespace.clone()),
                        name,
                    };
                    if removed.contains(&gk) {
                        report.skip(&gk, key.to_string(), TYPE_REMOVED.into());
                    } else {
                        doomed.push((rt.clone(), key));
                    }
                }
            }
        }
        note_removed_types(removed, report);
        let allowed = self.brake(target, doomed, managed_total, options.dry_run, report);
        self.delete_all(allowed, options, report).await;
    }

    /// The types among `types` whose CustomResourceDefinition is being deleted at the source
    /// (`Kind.group`). A CRD that cannot be read counts as not being deleted (a type with no CRD is a
    /// built-in or an aggregated API's; a type no longer served fails the sync's list before this).
    async fn removed_at_source<'a>(&self, types: impl Iterator<Item = &'a ResourceType>) -> BTreeSet<String> {
        let crd_rt = crd_type();
        let mut removed = BTreeSet::new();
        // Built-in groups without a dot have no CRDs.
        for rt in types.filter(|t| t.group.contains('.')) {
            let name = format!("{}.{}", rt.plural, rt.group);
            match self.source.get(&crd_rt, None, &name).await {
                Ok(Some(crd)) if crd.metadata.deletion_timestamp.is_some() => {
                    warn!(crd = %name, "the type's CustomResourceDefinition is being deleted at the source: its DR objects are not pruned");
                    removed.insert(rt.group_kind());
                }
                Ok(_) => {}
                Err(e) => debug!(crd = %name, error = %e, "CustomResourceDefinition not read"),
            }
        }
        removed
    }

    async fn delete_all(
        &self,
        doomed: Vec<(ResourceType, ObjectKey)>,
        options: &ApplyOptions,
        report: &mut SyncReport,
    ) {
        for (rt, key) in doomed {
            let gk = rt.group_kind();
            match self.applier.delete(&rt, &key, options.clone()).await {
                Ok(true) => report.record(&gk, key.to_string(), ApplyAction::Deleted, None),
                Ok(false) => {}
                Err(e) => report.fail(&gk, key.to_string(), &Error::Apply(e)),
            }
        }
    }

    /// The deletion brake ([`crate::brake`]) over `doomed`, out of `managed` DR objects the mapping
    /// manages: all of them go ahead, or (held) none, each reported as skipped and the hold in
    /// [`SyncReport::deletion_hold`].
    fn brake(
        &self,
        target: &SyncTarget,
        doomed: Vec<(ResourceType, ObjectKey)>,
        managed: usize,
        dry_run: bool,
        report: &mut SyncReport,
    ) -> Vec<(ResourceType, ObjectKey)> {
        let brake = target.config.deletion_brake;
        let key = crate::brake::ledger_key(&target.synced_by, &target.destination_namespace);
        let now = Instant::now();
        let recent = self.ledger.recent(&key, brake.window, now);
        match brake.judge(doomed.len(), recent, managed, self.go_ahead) {
            Verdict::Proceed => {
                if !dry_run {
                    self.ledger.record(&key, doomed.len(), now);
                }
                doomed
            }
            Verdict::Approved => {
                info!(deletions = doomed.len(), "mass deletion allowed by a go-ahead");
                if !dry_run {
                    self.ledger.clear(&key);
                }
                report.deletions_allowed = doomed.len();
                doomed
            }
            Verdict::Hold(hold) => {
                warn!(destination = %target.destination_namespace, "{}", hold.message());
                for (rt, key) in doomed {
                    report.skip(
                        &rt.group_kind(),
                        key.to_string(),
                        "deleted at the source; the DR copy is kept: held by the deletion brake".into(),
                    );
                }
                report.deletion_hold = Some(hold);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests;
