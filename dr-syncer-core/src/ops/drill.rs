//! The DR drill on two clusters: stage, cutover and failback ([`Drill`]); and the one-sided steps for the
//! day production is down: [`promote`] (DR side only) and [`fence`] (production only), with [`status`].
//!
//! Every step reads the recorded site state first ([`crate::site`]: `dr-syncer.io/active` on the DR
//! namespace, `dr-syncer.io/standby` on production's) and asks [`crate::site::decide`] what it may write.
//! Every step is idempotent and records its progress in those marks, so a drill interrupted at any point
//! (also by SIGINT/SIGTERM, see [`Drill::with_interrupt`]) is finished by running it again:
//!
//! - **stage**: sync, then copy PVC data; the DR side stays quiet. Refused onto an active DR site.
//! - **cutover**: sync; copy data once while production still runs (pre-copy); quiet production's
//!   workloads, recording their originals on them, and mark its namespace standby; wait until their pods
//!   are gone (everything they wrote is on their volumes); copy the final data delta; mark the DR namespace
//!   active (`activated-by: cutover`); activate every workload dr-syncer put on the DR side for the pair,
//!   whoever synced it (the CLI or a mapping); check that every workload quieted on production now runs
//!   on the DR side (else [`crate::Error::Incomplete`]). The DR mark comes before the activation, so the
//!   operator holds off the DR namespace from then on; a re-run that finds the DR side active already
//!   neither syncs nor copies data over it, it only finishes the switch.
//! - **failback**: report what changed on the DR side since the cutover (a plan of DR → source); quiet
//!   every workload dr-syncer put on the DR side for the pair; wait for their pods; copy the DR side's PVC
//!   data back when asked (only from an active DR site); reactivate production from its recorded originals
//!   (dropping the records); clear the DR mark, then production's standby mark. Refused while production
//!   runs unfenced next to the active DR site (both sites active: `fence` first).
//! - **promote** (no production access): report how fresh the DR copy is (the RPO the promotion accepts),
//!   mark the DR namespace active (`activated-by: promote`) and activate its workloads.
//! - **fence** (no DR access): quiet production's workloads, recording their originals, and mark it standby.
//!
//! Activation writes are JSON merge patches with the field manager `dr-syncer-drill`, separate from the
//! sync's server-side apply. Each step that changes a namespace is recorded as an Event on it.

mod one_side;
mod report;
mod steps;

use std::{collections::BTreeSet, sync::Arc};

use kube::{Client, core::DynamicObject};
use serde_json::Value;
use tokio::sync::watch;

use self::steps::{Side, Steps, Switch, not_running, quieted_by_a_drill};
pub use self::{
    one_side::{NextStep, OneSide, PairStatus, SideStatus, fence, promote, status},
    report::{DataCopy, DrillChange, DrillData, DrillOptions, DrillReport, Freshness},
};
use super::ManagedBy;
use crate::kube::{
    Calls, ClientOptions, KubeApplier, KubeSource,
    site::{self as kube_site, Recorder, workload_types},
};
use crate::{
    Error, Result,
    engine::{Progress, ProgressFn, SyncEngine, SyncReport, SyncTarget},
    resource::ResourceType,
    selection::ObjectFilter,
    site::{self, Actor, Decision, SiteState, Step},
};

pub use crate::kube::DRILL_FIELD_MANAGER;

/// A drill between two clusters for one namespace pair.
#[derive(Clone)]
pub struct Drill {
    source: Client,
    destination: Client,
    calls: Calls,
    engine: SyncEngine,
    target: SyncTarget,
    data: DrillData,
    recorder: Recorder,
    interrupt: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for Drill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drill")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

async fn sync_or_plan(engine: &SyncEngine, target: &SyncTarget, dry_run: bool) -> Result<SyncReport> {
    if dry_run {
        engine.plan(target).await
    } else {
        engine.sync(target).await
    }
}

/// The failed objects of a report, for an error message.
fn failures(report: &SyncReport) -> String {
    report
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.object, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a changed field of a reverse plan is dr-syncer's own (bookkeeping annotations, activation
/// state) rather than a change made on the DR side.
fn is_bookkeeping(path: &str, new: Option<&str>) -> bool {
    if path.starts_with("/metadata/annotations/dr-syncer.io~1") {
        return true;
    }
    if path == "/metadata/annotations" {
        return new
            .and_then(|v| serde_json::from_str::<serde_json::Map<String, Value>>(v).ok())
            .is_some_and(|m| m.keys().all(|k| k.starts_with("dr-syncer.io/")));
    }
    matches!(
        path,
        "/spec/replicas" | "/spec/suspend" | "/spec/template/spec/nodeSelector"
    ) || path.starts_with("/spec/template/spec/nodeSelector/")
}

/// The refusal of `action` when `decision` refuses; `Ok(true)` to proceed, `Ok(false)` to skip (with a
/// note in the report).
fn allowed(decision: Decision, action: &str, report: &mut DrillReport) -> Result<bool> {
    match decision {
        Decision::Proceed => Ok(true),
        Decision::Skip(reason) => {
            report.notes.push(format!("{action} skipped: {reason}"));
            Ok(false)
        }
        Decision::Refuse(reason) => Err(Error::Refused {
            action: action.to_owned(),
            reason,
        }),
    }
}

impl Drill {
    /// A drill syncing `target` from `source` to `destination`.
    pub fn new(source: Client, destination: Client, options: ClientOptions, target: SyncTarget) -> Self {
        let calls = options.calls();
        let engine = SyncEngine::new(
            Arc::new(KubeSource::new(source.clone(), calls.clone())),
            Arc::new(KubeApplier::new(destination.clone(), calls.clone())),
        );
        Drill {
            source,
            destination,
            calls,
            engine,
            target,
            data: DrillData::default(),
            recorder: Recorder::new("dr-syncer", "dr-syncer-core"),
            interrupt: None,
        }
    }

    /// Copy PVC data too: after the stage sync, before activating the DR side at cutover (after the
    /// source is quiet), and before reactivating the source at failback (after the DR side is quiet).
    pub fn with_data(mut self, data: DrillData) -> Self {
        self.data = data;
        self
    }

    /// Report progress to `f`: the syncs' [`Progress`] and one [`Progress::Step`] per drill step.
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.engine = self.engine.with_progress(f);
        self
    }

    /// Use this transformer chain on the forward syncs (e.g. the built-ins plus your own); a failback's
    /// copy back to production keeps its own (none of the DR-side rewrites).
    pub fn with_chain(mut self, chain: crate::transform::TransformerChain) -> Self {
        self.engine = self.engine.with_chain(chain);
        self
    }

    /// Run these transformer plugins on the forward syncs (stage, and the syncs of cutover); never on a
    /// failback's copy back to production.
    pub fn with_plugins(mut self, plugins: crate::plugin::Plugins) -> Self {
        self.engine = self.engine.with_plugins(plugins);
        self
    }

    /// Accept a source cluster other than the one the DR namespace records (the CLI's
    /// `--accept-source-cluster`).
    pub fn accepting_source_identity(mut self, accept: crate::engine::AcceptIdentity) -> Self {
        self.engine = self.engine.accepting_source_identity(accept);
        self
    }

    /// A go-ahead for deletions the deletion brake holds (the CLI's `--allow-deletions`).
    pub fn with_deletion_go_ahead(mut self, go: crate::brake::GoAhead) -> Self {
        self.engine = self.engine.with_deletion_go_ahead(go);
        self
    }

    /// Record the steps as Events from this component and actor.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = recorder;
        self
    }

    /// Stop at the next safe point once `interrupt` turns true (between steps; a data copy or a wait in
    /// progress is abandoned): the step returns [`Error::Interrupted`] and a re-run resumes.
    pub fn with_interrupt(mut self, interrupt: watch::Receiver<bool>) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// The sync engine (source → DR).
    pub fn engine(&self) -> &SyncEngine {
        &self.engine
    }

    /// The source and destination clients.
    pub fn clients(&self) -> (&Client, &Client) {
        (&self.source, &self.destination)
    }

    /// The target.
    pub fn target(&self) -> &SyncTarget {
        &self.target
    }

    /// Check what the drill needs before writing anything (see [`super::preflight()`]).
    ///
    /// # Errors
    /// When the clusters cannot be asked at all.
    pub async fn preflight(&self, step: super::DrillStep) -> Result<super::PreflightReport> {
        super::preflight(&self.source, &self.destination, &self.calls, &self.target, step).await
    }

    fn steps(&self, dry_run: bool) -> Steps<'_> {
        Steps {
            calls: &self.calls,
            progress: self.engine.progress(),
            interrupt: self.interrupt.as_ref(),
            recorder: &self.recorder,
            dry_run,
        }
    }

    fn source_side(&self) -> Side<'_> {
        Side {
            client: &self.source,
            namespace: &self.target.source_namespace,
            cluster: "source",
        }
    }

    fn destination_side(&self) -> Side<'_> {
        Side {
            client: &self.destination,
            namespace: &self.target.destination_namespace,
            cluster: "destination",
        }
    }

    /// Workload types in scope: those of the target that a drill activates.
    fn workloads_in_scope(&self) -> Vec<ResourceType> {
        kube_site::workload_types_in(&self.target.types)
    }

    /// The site state of the pair, as it is now.
    ///
    /// # Errors
    /// [`Error::Kube`] naming the side that cannot be read (a drill needs both).
    pub async fn site(&self) -> Result<SiteState> {
        // Never a system namespace, on either side.
        self.engine.check_boundaries(&self.target)?;
        // Only the cluster the DR namespace was filled from is its production.
        kube_site::verify_source_identity(
            &self.source,
            &self.destination,
            &self.calls,
            &self.target.destination_namespace,
            self.engine.accepted_source_identity(),
        )
        .await?;
        kube_site::read_both(
            (&self.source, &self.target.source_namespace),
            (&self.destination, &self.target.destination_namespace),
            &self.calls,
            &workload_types(),
        )
        .await
    }

    /// Stage: sync with the DR side quiet (plan only with `dry_run`), then copy PVC data.
    ///
    /// # Errors
    /// [`Error::Refused`] onto an active DR site; otherwise as [`SyncEngine::sync`].
    pub async fn stage(&self, dry_run: bool) -> Result<DrillReport> {
        let mut report = DrillReport {
            mode: "stage".into(),
            dry_run,
            ..Default::default()
        };
        let state = self.site().await?;
        allowed(
            site::decide(Actor::Stage, Step::SyncObjects, &state),
            "stage",
            &mut report,
        )?;
        let sync = sync_or_plan(&self.engine, &self.target, dry_run).await?;
        if sync.destination_active {
            // Marked active by someone else since the state was read: nothing was written, and no data
            // goes over it either.
            return Err(Error::Refused {
                action: "stage".into(),
                reason: site::Reason::DestinationActive,
            });
        }
        report.sync = Some(sync);
        report.steps.push("sync".into());
        if report.sync.as_ref().is_some_and(SyncReport::is_success)
            && allowed(
                site::decide(Actor::Stage, Step::CopyData, &state),
                "PVC data copy",
                &mut report,
            )?
        {
            self.copy_data(false, "stage", &mut report, dry_run).await?;
        }
        // Recorded when it changed something (a stage that finds everything in sync writes nothing).
        let copied = report.data.iter().filter(|d| d.status == "Synced").count();
        if let Some(sync) = report
            .sync
            .as_ref()
            .filter(|s| s.totals().writes() > 0 || s.totals().failed > 0 || copied > 0)
        {
            let t = sync.totals();
            self.steps(dry_run)
                .event(
                    self.destination_side(),
                    !sync.is_success(),
                    "Stage",
                    &format!(
                        "staged from {}/{}: {} created, {} updated, {} unchanged, {} failed; {copied} PVC(s) copied",
                        self.target.source_cluster,
                        self.target.source_namespace,
                        t.created + t.recreated,
                        t.updated,
                        t.unchanged,
                        t.failed
                    ),
                )
                .await;
        }
        Ok(report)
    }

    /// Cutover (see the module docs).
    ///
    /// # Errors
    /// When the sync cannot run, a workload cannot be patched, the source's pods do not stop within
    /// `drain_timeout`, a workload quieted on production is not active on the DR side afterwards
    /// ([`Error::Incomplete`]), or `wait` times out. Re-running finishes an interrupted cutover.
    pub async fn cutover(&self, options: DrillOptions) -> Result<DrillReport> {
        let mut report = DrillReport {
            mode: "cutover".into(),
            dry_run: options.dry_run,
            ..Default::default()
        };
        let steps = self.steps(options.dry_run);
        let state = self.site().await?;
        allowed(
            site::decide(Actor::Cutover, Step::QuietSource, &state),
            "cutover",
            &mut report,
        )?;
        let (src, dst) = (self.source_side(), self.destination_side());
        let types = self.workloads_in_scope();
        let filter = ObjectFilter::new(&self.target.config);
        let on_source = |rt: &ResourceType, o: &DynamicObject| filter.check(rt, o).is_ok();
        let source_ns = self.target.source_namespace.clone();
        let on_destination =
            |_: &ResourceType, o: &DynamicObject| site::put_there_for(&o.metadata, &source_ns);

        // 0. Sync and pre-copy, unless the DR side is live already (a re-run: nothing goes over it).
        if allowed(
            site::decide(Actor::Cutover, Step::SyncObjects, &state),
            "sync",
            &mut report,
        )? {
            let sync = sync_or_plan(&self.engine, &self.target, options.dry_run).await?;
            if !sync.is_success() {
                return Err(Error::Incomplete(format!(
                    "cutover stopped before touching any workload: the sync failed for {}",
                    failures(&sync)
                )));
            }
            if sync.destination_active {
                // Marked active by someone else meanwhile: no data goes over it; a re-run finishes.
                return Err(Error::Refused {
                    action: "cutover (the DR side became active during it; run it again to finish)".into(),
                    reason: site::Reason::DestinationActive,
                });
            }
            report.sync = Some(sync);
            report.steps.push("sync".into());
            if self.data.pre_copy {
                steps.checkpoint("the pre-copy")?;
                self.copy_data(false, "pre-copy", &mut report, options.dry_run)
                    .await?;
            }
        }
        // 1. Quiet production, recording its originals on it, and mark it standby.
        steps.checkpoint("quieting the source")?;
        steps.step(&mut report, "quiet source workloads");
        let quieted = steps
            .switch(src, &types, &on_source, Switch::Quiet, &mut report)
            .await?;
        steps.mark_standby(src, &mut report).await?;
        steps
            .event(
                src,
                false,
                "Cutover",
                &format!("cutover to the DR site: {quieted} workload(s) quieted, namespace marked standby"),
            )
            .await;
        // 2. Wait until their pods are gone: everything they wrote is on their volumes.
        steps.checkpoint("waiting for the source's pods")?;
        steps
            .drain(src, &types, &on_source, options.drain_timeout, &mut report)
            .await?;
        // 3. The final data delta, with nothing writing on the source any more.
        if allowed(
            site::decide(Actor::Cutover, Step::CopyData, &state),
            "final data copy",
            &mut report,
        )? {
            steps.checkpoint("the final data copy")?;
            self.copy_data(false, "final delta", &mut report, options.dry_run)
                .await?;
        }
        // 4. Mark the DR namespace active: from here on no sync writes into it.
        steps.checkpoint("activating the DR side")?;
        self.mark_active(&steps, site::ActivatedBy::Cutover, &mut report)
            .await?;
        // A data copy that started before the mark (an operator's) must not go on writing into the
        // live site: its movers are stopped.
        steps.stop_copies(dst, options.drain_timeout, &mut report).await?;
        // 5. Activate every workload dr-syncer put there for the pair, from the recorded originals.
        steps.step(&mut report, "activate destination workloads");
        let activated = steps
            .switch(dst, &types, &on_destination, Switch::Activate, &mut report)
            .await?;
        steps
            .event(
                dst,
                false,
                "Cutover",
                &format!(
                    "cutover from {}/{}: namespace marked active, {activated} workload(s) activated",
                    self.target.source_cluster, self.target.source_namespace
                ),
            )
            .await;
        // 6. Every workload quieted on production must now run on the DR side.
        let must_run = quieted_by_a_drill(&steps, src, &types, &on_source).await?;
        if !options.dry_run {
            let missing = not_running(&steps, dst, &types, &on_destination, &must_run).await?;
            if !missing.is_empty() {
                let message = format!(
                    "quieted on production but not active on the DR side: {}",
                    missing.join(", ")
                );
                steps.event(dst, true, "CutoverIncomplete", &message).await;
                return Err(Error::Incomplete(message));
            }
        }
        if let (Some(timeout), false) = (options.wait, options.dry_run) {
            steps.wait_ready(dst, &must_run, timeout).await?;
            report.waited = true;
        }
        Ok(report)
    }

    /// Failback (see the module docs).
    ///
    /// # Errors
    /// [`Error::Refused`] while both sites are active or when there is no DR side; when a workload cannot
    /// be patched or `wait` times out. Re-running finishes an interrupted failback.
    pub async fn failback(&self, options: DrillOptions) -> Result<DrillReport> {
        let mut report = DrillReport {
            mode: "failback".into(),
            dry_run: options.dry_run,
            ..Default::default()
        };
        let steps = self.steps(options.dry_run);
        let state = self.site().await?;
        if !allowed(
            site::decide(Actor::Failback, Step::QuietDestination, &state),
            "failback",
            &mut report,
        )? {
            return Ok(report);
        }
        let (src, dst) = (self.source_side(), self.destination_side());
        let source_ns = self.target.source_namespace.clone();
        let on_destination =
            |_: &ResourceType, o: &DynamicObject| site::put_there_for(&o.metadata, &source_ns);
        // Production's workloads a drill holds quiet (their originals recorded on them), whatever the
        // types or filters of the run that quieted them.
        let held = |rt: &ResourceType, o: &DynamicObject| {
            !crate::activation::is_running(rt, o) && crate::activation::recorded_active(rt, o)
        };
        let mut all_workloads = workload_types().to_vec();
        all_workloads.extend(kube_site::scalers_in(&self.target.types));
        let must_run = quieted_by_a_drill(&steps, src, &all_workloads, &held).await?;

        steps.announce("compare the DR side with the source (reverse diff)");
        let reverse_diff = self.reverse_diff().await?;
        // Exactly the objects the reverse diff lists as changed on the DR side.
        let listed: BTreeSet<String> = reverse_diff
            .changes
            .iter()
            .filter(|c| {
                matches!(
                    c.action,
                    crate::apply::ApplyAction::Created | crate::apply::ApplyAction::Updated
                )
            })
            .map(|c| c.object.clone())
            .collect();
        report.reverse_diff = Some(reverse_diff);
        if options.sync_back {
            let (engine, target) = self.reverse();
            let engine = engine.keeping_destination_activation().limited_to(listed);
            steps.announce("copy DR-side changes back to the source");
            let copied = sync_or_plan(&engine, &target, options.dry_run).await?;
            if !copied.is_success() {
                return Err(Error::Incomplete(format!(
                    "failback stopped before touching any workload: copying DR changes back failed for {}",
                    failures(&copied)
                )));
            }
            report.sync_back = Some(copied);
        }
        // 1. Quiet the DR side: everything dr-syncer put there for the pair, whoever synced it.
        steps.checkpoint("quieting the DR side")?;
        // (Every workload kind, whatever the types of this run: nothing of the pair stays active on DR.)
        steps.step(&mut report, "quiet destination workloads");
        let quieted = steps
            .switch(dst, &all_workloads, &on_destination, Switch::Quiet, &mut report)
            .await?;
        steps
            .event(
                dst,
                false,
                "Failback",
                &format!("failback: {quieted} workload(s) quieted"),
            )
            .await;
        // 2. Wait until the DR pods are gone: nothing writes on the DR side any more, and the two sites
        // never run at once.
        steps.checkpoint("waiting for the DR side's pods")?;
        steps
            .drain(
                dst,
                &all_workloads,
                &on_destination,
                options.drain_timeout,
                &mut report,
            )
            .await?;
        // 3. Copy the DR side's data back (only from a live DR site, into a production nothing uses).
        if self.data.reverse.is_some()
            && allowed(
                site::decide(Actor::Failback, Step::ReverseCopy, &state),
                "copying PVC data back",
                &mut report,
            )?
        {
            steps.checkpoint("copying data back")?;
            self.copy_data(true, "reverse", &mut report, options.dry_run)
                .await?;
        }
        // 4. Reactivate production from its recorded originals (the records go).
        steps.checkpoint("reactivating the source")?;
        steps.step(&mut report, "activate source workloads");
        let reactivated = steps
            .switch(src, &all_workloads, &held, Switch::Release, &mut report)
            .await?;
        if !options.dry_run {
            let any = |_: &ResourceType, _: &DynamicObject| true;
            let left = not_running(&steps, src, &all_workloads, &any, &must_run).await?;
            if !left.is_empty() {
                let message = format!("quieted on production and not running again: {}", left.join(", "));
                steps.event(src, true, "FailbackIncomplete", &message).await;
                return Err(Error::Incomplete(message));
            }
        }
        // 5. Clear the marks: the DR side's first, so both are never active and unfenced at once.
        self.clear_active(&steps, &mut report).await?;
        self.clear_standby(&steps, &mut report).await?;
        steps
            .event(
                src,
                false,
                "Failback",
                &format!(
                    "failback from the DR site: {reactivated} workload(s) reactivated, standby mark cleared"
                ),
            )
            .await;
        if let (Some(timeout), false) = (options.wait, options.dry_run) {
            steps.wait_ready(src, &must_run, timeout).await?;
            report.waited = true;
        }
        Ok(report)
    }

    async fn clear_standby(&self, steps: &Steps<'_>, report: &mut DrillReport) -> Result<()> {
        let side = self.source_side();
        let Some(ns) = kube_site::get_namespace(side.client, &self.calls, side.namespace).await? else {
            return Ok(());
        };
        if !kube_site::has_any_mark(
            &ns.metadata,
            &[crate::annotations::STANDBY, crate::annotations::STANDBY_SINCE],
        ) {
            return Ok(());
        }
        steps.step(report, "clear the source namespace's standby mark");
        steps
            .mark(
                side,
                &ns,
                "clear-standby",
                kube_site::clear_standby_mark(),
                report,
            )
            .await
    }

    async fn mark_active(
        &self,
        steps: &Steps<'_>,
        by: site::ActivatedBy,
        report: &mut DrillReport,
    ) -> Result<()> {
        let side = self.destination_side();
        steps.step(report, "mark the DR namespace active");
        let ns = kube_site::get_namespace(side.client, &self.calls, side.namespace).await?;
        let Some(ns) = ns else {
            if steps.dry_run {
                return Ok(()); // a dry run of a first cutover: the sync would have created it
            }
            return Err(Error::InvalidConfig(format!(
                "destination namespace {} does not exist",
                side.namespace
            )));
        };
        if kube_site::has_mark(&ns.metadata, crate::annotations::ACTIVE) {
            return Ok(());
        }
        let patch = kube_site::active_mark(by, &kube_site::timestamp());
        steps.mark(side, &ns, "mark-active", patch, report).await
    }

    async fn clear_active(&self, steps: &Steps<'_>, report: &mut DrillReport) -> Result<()> {
        let side = self.destination_side();
        steps.step(report, "clear the DR namespace's active mark");
        let Some(ns) = kube_site::get_namespace(side.client, &self.calls, side.namespace).await? else {
            return Ok(());
        };
        if !kube_site::has_any_mark(
            &ns.metadata,
            &[
                crate::annotations::ACTIVE,
                crate::annotations::ACTIVE_SINCE,
                crate::annotations::ACTIVATED_BY,
            ],
        ) {
            return Ok(());
        }
        steps
            .mark(side, &ns, "clear-active", kube_site::clear_active_mark(), report)
            .await?;
        steps
            .event(
                side,
                false,
                "Failback",
                "failback: active mark cleared, the DR side is a standby again",
            )
            .await;
        Ok(())
    }

    /// Copy the data of the PVCs that exist on both sides and that dr-syncer put on the DR side for the
    /// pair; an error names every PVC that failed.
    async fn copy_data(
        &self,
        reverse: bool,
        label: &str,
        report: &mut DrillReport,
        dry_run: bool,
    ) -> Result<()> {
        let mover = if reverse {
            &self.data.reverse
        } else {
            &self.data.forward
        };
        let Some(mover) = mover else {
            return Ok(());
        };
        let steps = self.steps(dry_run);
        steps.step(report, &format!("copy PVC data ({label})"));
        if dry_run {
            return Ok(());
        }
        let (from, to) = if reverse {
            (self.destination_side(), self.source_side())
        } else {
            (self.source_side(), self.destination_side())
        };
        let marked = if reverse {
            super::SyncedSide::Sending
        } else {
            super::SyncedSide::Receiving
        };
        let pairs = super::synced_pvc_pairs(
            from.client,
            from.namespace,
            to.client,
            to.namespace,
            ManagedBy::Pair(&self.target.source_namespace),
            marked,
        )
        .await?;
        let progress = self.engine.progress().cloned();
        let on = move |pair: &super::PvcPair, stage: &super::PvcSyncStage| {
            if let Some(f) = &progress {
                f(&Progress::Data {
                    pvc: pair.to_string(),
                    stage: stage.clone(),
                });
            }
        };
        let results = steps
            .interruptible(&format!("the PVC data copy ({label})"), async {
                Ok(mover.sync_all(pairs, self.data.concurrency.max(1), &on).await)
            })
            .await?;
        let mut failed = Vec::new();
        for r in results {
            let mut copy = DataCopy {
                step: label.to_string(),
                pvc: r.pair.to_string(),
                node: r.node.clone(),
                duration_seconds: r.duration.as_secs_f64(),
                ..DataCopy::default()
            };
            match r.outcome {
                super::PvcSyncOutcome::Synced(stats) => {
                    copy.status = "Synced".into();
                    copy.bytes_sent = stats.bytes_sent;
                    copy.files_transferred = stats.files_transferred;
                    copy.files_deleted = stats.files_deleted;
                }
                super::PvcSyncOutcome::Skipped(reason) => {
                    copy.status = "Skipped".into();
                    failed.push(format!("{} ({reason})", r.pair));
                    copy.error = Some(reason);
                }
                super::PvcSyncOutcome::Failed(e) => {
                    copy.status = "Failed".into();
                    failed.push(format!("{} ({e})", r.pair));
                    copy.error_kind = Some(e.kind().to_string());
                    copy.error = Some(e.to_string());
                }
            }
            report.data.push(copy);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Data(crate::data::DataMoverError::Failed {
                message: format!("PVC data copy ({label}) failed for {}", failed.join(", ")),
                transient: true,
            }))
        }
    }

    /// What changed on the DR side since the cutover: a plan of DR → source without the DR-side
    /// transformations (nothing is quieted, nothing renamed), for the same types.
    ///
    /// # Errors
    /// As [`SyncEngine::plan`].
    pub async fn reverse_diff(&self) -> Result<SyncReport> {
        let (reverse, target) = self.reverse();
        let mut report = reverse.plan(&target).await?;
        // Leave out what is not a change made on the DR side: dr-syncer's own bookkeeping annotations and
        // the activation state (replicas, suspend, DaemonSet placement) that the drill itself switches.
        let mut kinds_unchanged = Vec::new();
        report.changes.retain_mut(|change| {
            let Some(diff) = change.diff.as_mut() else {
                return true;
            };
            let before = diff.changes.len();
            diff.changes
                .retain(|f| !is_bookkeeping(&f.path, f.new.as_deref()));
            if diff.changes.is_empty() && before > 0 && change.action == crate::apply::ApplyAction::Updated {
                kinds_unchanged.push(change.object.split('/').next().unwrap_or_default().to_owned());
                return false;
            }
            true
        });
        for gk in kinds_unchanged {
            if let Some(k) = report.kinds.get_mut(&gk) {
                k.updated = k.updated.saturating_sub(1);
                k.unchanged += 1;
            }
        }
        Ok(report)
    }

    /// The engine and target of DR → source, without the DR-side transformations (nothing quieted,
    /// renamed or remapped), for the same types.
    fn reverse(&self) -> (SyncEngine, SyncTarget) {
        let mut reverse = SyncEngine::new(
            Arc::new(KubeSource::new(self.destination.clone(), self.calls.clone())),
            Arc::new(KubeApplier::new(self.source.clone(), self.calls.clone())),
        );
        if let Some(f) = self.engine.progress() {
            reverse = reverse.with_progress(f.clone());
        }
        let mut config = (*self.target.config).clone();
        config.scale_to_zero = false;
        config.prune = false;
        config.storage_class_mappings.clear();
        config.access_mode_mappings.clear();
        config.ingress.transform_hosts = false;
        config.rules.clear();
        config.plugins.clear();
        // Production's objects carry no dr-syncer marker: the copy back takes them over (a failback
        // writes only what its reverse diff listed, see `failback`).
        config.adopt_existing = Some(true);
        let target = SyncTarget {
            source_cluster: self.target.destination_cluster.clone(),
            destination_cluster: self.target.source_cluster.clone(),
            source_namespace: self.target.destination_namespace.clone(),
            destination_namespace: self.target.source_namespace.clone(),
            synced_by: self.target.synced_by.clone(),
            types: self.target.types.clone(),
            config: Arc::new(config),
        };
        (reverse, target)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::is_bookkeeping;

    #[rstest]
    #[case("/metadata/annotations/dr-syncer.io~1synced-by", Some("\"cli/shop\""), true)]
    #[case(
        "/metadata/annotations",
        Some(r#"{"dr-syncer.io/synced-by":"cli/shop","dr-syncer.io/desired-hash":"1"}"#),
        true
    )]
    #[case(
        "/metadata/annotations",
        Some(r#"{"dr-syncer.io/synced-by":"cli/shop","team":"web"}"#),
        false
    )]
    #[case("/spec/replicas", Some("3"), true)]
    #[case("/spec/template/spec/nodeSelector/dr-syncer.io~1quiet", None, true)]
    #[case("/data/CURRENCY", Some("\"USD\""), false)]
    #[case("/metadata/labels/team", Some("\"web\""), false)]
    fn bookkeeping(#[case] path: &str, #[case] new: Option<&str>, #[case] expected: bool) {
        assert_eq!(is_bookkeeping(path, new), expected);
    }
}
