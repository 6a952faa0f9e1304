//! The steps that need only one cluster, for the day production is down: [`promote`] (the DR side goes
//! live without contacting production), [`fence`] (production is quieted once it is reachable again,
//! without contacting the DR side), and [`status`] (either side may be unreachable).

use std::{collections::BTreeSet, sync::Arc};

use chrono::{DateTime, Utc};
use kube::{Client, core::DynamicObject};
use serde::Serialize;
use tokio::sync::watch;

use super::{
    DrillOptions, DrillReport, Freshness, allowed,
    steps::{Side, Steps, Switch, quieted_by_a_drill},
};
use crate::{
    Error, Result, annotations,
    config::SyncConfig,
    engine::ProgressFn,
    kube::{
        Calls, ClientOptions,
        site::{self as kube_site, Recorder, workload_types_in},
    },
    resource::ResourceType,
    selection::ObjectFilter,
    site::{self, ActivatedBy, Actor, DestinationState, SiteState, SourceState, Step},
};

/// One cluster's side of a namespace pair.
#[derive(Clone)]
pub struct OneSide {
    client: Client,
    calls: Calls,
    namespace: String,
    pair_namespace: Option<String>,
    types: Vec<ResourceType>,
    config: Arc<SyncConfig>,
    recorder: Recorder,
    progress: Option<ProgressFn>,
    interrupt: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for OneSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneSide")
            .field("namespace", &self.namespace)
            .field("pair_namespace", &self.pair_namespace)
            .finish_non_exhaustive()
    }
}

impl OneSide {
    /// Namespace `namespace` on `client`; `types` are the resource types in scope (their workload types
    /// are switched; all of them are read for [`Freshness`]); `config` selects production's objects
    /// (fence).
    pub fn new(
        client: Client,
        options: ClientOptions,
        namespace: impl Into<String>,
        types: Vec<ResourceType>,
        config: Arc<SyncConfig>,
    ) -> Self {
        OneSide {
            client,
            calls: options.calls(),
            namespace: namespace.into(),
            pair_namespace: None,
            types,
            config,
            recorder: Recorder::new("dr-syncer", "dr-syncer-core"),
            progress: None,
            interrupt: None,
        }
    }

    /// The other side's namespace. On the DR side (promote), only objects dr-syncer put there for the
    /// pair with this production namespace count; without it, every object dr-syncer put there.
    pub fn with_pair_namespace(mut self, ns: impl Into<String>) -> Self {
        self.pair_namespace = Some(ns.into());
        self
    }

    /// Record the steps as Events from this component and actor.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = recorder;
        self
    }

    /// Report each step to `f`.
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Stop at the next safe point once `interrupt` turns true.
    pub fn with_interrupt(mut self, interrupt: watch::Receiver<bool>) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn steps(&self, dry_run: bool) -> Steps<'_> {
        Steps {
            calls: &self.calls,
            progress: self.progress.as_ref(),
            interrupt: self.interrupt.as_ref(),
            recorder: &self.recorder,
            dry_run,
        }
    }

    fn side(&self, cluster: &'static str) -> Side<'_> {
        Side {
            client: &self.client,
            namespace: &self.namespace,
            cluster,
        }
    }

    fn workloads(&self) -> Vec<ResourceType> {
        workload_types_in(&self.types)
    }

    /// Whether a DR object is dr-syncer's for this pair.
    fn ours(&self, obj: &DynamicObject) -> bool {
        match &self.pair_namespace {
            Some(ns) => site::put_there_for(&obj.metadata, ns),
            None => obj
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::SYNCED_BY))
                .is_some_and(|v| !v.is_empty()),
        }
    }

    /// How fresh the DR copy in this namespace is.
    ///
    /// # Errors
    /// When the objects cannot be listed.
    pub async fn freshness(&self) -> Result<Freshness> {
        let steps = self.steps(true);
        let now = Utc::now();
        let mut newest_sync: Option<DateTime<Utc>> = None;
        let mut oldest_copy: Option<DateTime<Utc>> = None;
        let mut never = Vec::new();
        let parse = |v: Option<&String>| {
            v.and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        for rt in self.types.iter().filter(|t| t.namespaced) {
            for obj in steps.list(&self.client, rt, &self.namespace).await? {
                if !self.ours(&obj) {
                    continue;
                }
                let ann = obj.metadata.annotations.clone().unwrap_or_default();
                if let Some(t) = parse(ann.get(annotations::LAST_SYNCED)) {
                    newest_sync = Some(newest_sync.map_or(t, |n| n.max(t)));
                }
                if rt.is("", "PersistentVolumeClaim") {
                    match parse(ann.get(annotations::LAST_DATA_SYNC)) {
                        Some(t) => oldest_copy = Some(oldest_copy.map_or(t, |o| o.min(t))),
                        None => never.push(obj.metadata.name.clone().unwrap_or_default()),
                    }
                }
            }
        }
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(Freshness {
            last_object_sync: newest_sync.map(stamp),
            last_object_sync_age_seconds: newest_sync.map(|t| (now - t).num_seconds()),
            last_data_copy: oldest_copy.map(stamp),
            last_data_copy_age_seconds: oldest_copy.map(|t| (now - t).num_seconds()),
            never_copied: never,
        })
    }
}

/// Promote the DR side without contacting production: report how fresh the copy is (the RPO the
/// promotion accepts), mark the DR namespace active (`activated-by: promote`; an existing mark is kept)
/// and activate every workload dr-syncer put there from its recorded originals (CronJobs unsuspended,
/// DaemonSets released). Then nothing syncs into the namespace until a failback; `fence` production once
/// it is reachable.
///
/// # Errors
/// [`Error::Refused`] when the DR namespace does not exist; [`Error::Incomplete`] when a workload that
/// ran on production stays quiet; API errors; [`Error::Timeout`] from `wait`.
pub async fn promote(dr: &OneSide, options: DrillOptions) -> Result<DrillReport> {
    let mut report = DrillReport {
        mode: "promote".into(),
        dry_run: options.dry_run,
        ..Default::default()
    };
    crate::boundaries::Boundaries::system_only().check_namespace("destination", &dr.namespace)?;
    let steps = dr.steps(options.dry_run);
    let side = dr.side("destination");
    let (destination, live) = kube_site::read_destination(&dr.client, &dr.calls, &dr.namespace).await?;
    let state = SiteState {
        source: SourceState::Unknown,
        destination: destination.clone(),
    };
    allowed(
        site::decide(Actor::Promote, Step::ActivateDestination, &state),
        "promote",
        &mut report,
    )?;
    let Some(live) = live else {
        return Err(Error::Refused {
            action: "promote".into(),
            reason: site::Reason::NothingStaged,
        });
    };
    report.freshness = Some(dr.freshness().await?);
    let types = dr.workloads();
    let select = |_: &ResourceType, o: &DynamicObject| dr.ours(o);
    steps.checkpoint("marking the DR namespace active")?;
    if let DestinationState::Active { by, since } = &destination {
        report.notes.push(format!(
            "the DR namespace is active already (activated by {}{}): its mark is kept",
            by.as_str(),
            since
                .as_deref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default()
        ));
    } else {
        steps.step(&mut report, "mark the DR namespace active");
        let patch = kube_site::active_mark(ActivatedBy::Promote, &kube_site::timestamp());
        steps.mark(side, &live, "mark-active", patch, &mut report).await?;
    }
    // A data copy that started before the mark must not go on writing into the live site.
    steps
        .stop_copies(side, options.drain_timeout, &mut report)
        .await?;
    steps.step(&mut report, "activate destination workloads");
    let activated = steps
        .switch(side, &types, &select, Switch::Activate, &mut report)
        .await?;
    let rpo = report
        .freshness
        .as_ref()
        .and_then(|f| f.last_object_sync.clone())
        .map(|t| format!("; newest object change synced at {t}"))
        .unwrap_or_default();
    steps
        .event(
            side,
            false,
            "Promote",
            &format!(
                "promoted without production: namespace marked active, {activated} workload(s) activated{rpo}"
            ),
        )
        .await;
    // Every workload that ran on production (recorded at sync time) must run now.
    if !options.dry_run {
        let still_quiet = quieted_by_a_drill(&steps, side, &types, &select).await?;
        if !still_quiet.is_empty() {
            let message = format!(
                "still quiet on the DR side: {}",
                still_quiet.into_iter().collect::<Vec<_>>().join(", ")
            );
            steps.event(side, true, "PromoteIncomplete", &message).await;
            return Err(Error::Incomplete(message));
        }
    }
    if let (Some(timeout), false) = (options.wait, options.dry_run) {
        steps.wait_ready(side, &BTreeSet::new(), timeout).await?;
        report.waited = true;
    }
    Ok(report)
}

/// Fence production without contacting the DR side: quiet its workloads (those the configuration
/// selects), recording their originals on them, mark the namespace standby, and wait until their pods are
/// gone. After `promote` + `fence`, `failback` works as after a cutover.
///
/// # Errors
/// [`Error::Refused`] when the namespace does not exist; API errors; [`Error::Timeout`] when the pods do
/// not stop within `drain_timeout`.
pub async fn fence(prod: &OneSide, options: DrillOptions) -> Result<DrillReport> {
    let mut report = DrillReport {
        mode: "fence".into(),
        dry_run: options.dry_run,
        ..Default::default()
    };
    crate::boundaries::Boundaries::system_only().check_namespace("source", &prod.namespace)?;
    let steps = prod.steps(options.dry_run);
    let side = prod.side("source");
    let types = prod.workloads();
    let source = kube_site::read_source(&prod.client, &prod.calls, &prod.namespace, &types).await?;
    let state = SiteState {
        source: source.clone(),
        destination: DestinationState::Unknown,
    };
    allowed(
        site::decide(Actor::Fence, Step::QuietSource, &state),
        "fence",
        &mut report,
    )?;
    let filter = ObjectFilter::new(&prod.config);
    let select = |rt: &ResourceType, o: &DynamicObject| filter.check(rt, o).is_ok();
    steps.step(&mut report, "quiet source workloads");
    let quieted = steps
        .switch(side, &types, &select, Switch::Quiet, &mut report)
        .await?;
    steps.mark_standby(side, &mut report).await?;
    steps
        .event(
            side,
            false,
            "Fence",
            &format!("fenced: {quieted} workload(s) quieted, namespace marked standby"),
        )
        .await;
    steps
        .drain(side, &types, &select, options.drain_timeout, &mut report)
        .await?;
    Ok(report)
}

/// One side of [`PairStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SideStatus {
    /// The namespace.
    pub namespace: String,
    /// `unknown` (not asked or unreachable), `missing`, `terminating`, `live`, `standby` (production);
    /// `missing`, `standby`, `active` (DR).
    pub state: String,
    /// `dr-syncer.io/active-since` or `dr-syncer.io/standby-since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// DR: what marked it active (`cutover`, `promote`, `manual`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated_by: Option<String>,
    /// Workloads that run (`Kind/name`).
    pub running: Vec<String>,
    /// Why the side could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The site state of a pair, how fresh the DR copy is, and what each drill step would do next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairStatus {
    /// Production.
    pub source: SideStatus,
    /// DR.
    pub destination: SideStatus,
    /// Production runs unfenced while the DR side is active.
    pub both_sites_active: bool,
    /// How fresh the DR copy is (when the DR side was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
    /// What `cutover`, `promote`, `fence` and `failback` would do now.
    pub next: Vec<NextStep>,
}

/// What one drill step would do now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NextStep {
    /// `cutover`, `promote`, `fence` or `failback`.
    pub step: String,
    /// What it would do, or why it would refuse.
    pub would: String,
}

fn since(meta: Option<&DynamicObject>, key: &str) -> Option<String> {
    meta.and_then(|n| n.metadata.annotations.as_ref())
        .and_then(|a| a.get(key))
        .cloned()
}

/// Read the state of a pair from whichever sides are given and reachable.
pub async fn status(source: Option<&OneSide>, destination: Option<&OneSide>) -> PairStatus {
    let mut out = PairStatus::default();
    let mut state = SiteState::default();
    if let Some(s) = source {
        out.source.namespace = s.namespace.clone();
        let read = async {
            let ns = kube_site::get_namespace(&s.client, &s.calls, &s.namespace).await?;
            let state = kube_site::read_source(&s.client, &s.calls, &s.namespace, &s.workloads()).await?;
            Ok::<_, Error>((ns, state))
        };
        match read.await {
            Ok((ns, src)) => {
                out.source.since = since(ns.as_ref(), annotations::STANDBY_SINCE);
                out.source.state = match &src {
                    SourceState::Missing => "missing",
                    SourceState::Terminating => "terminating",
                    SourceState::Live { standby: true, .. } => "standby",
                    _ => "live",
                }
                .into();
                if let SourceState::Live { running, .. } = &src {
                    out.source.running = running.clone();
                }
                state.source = src;
            }
            Err(e) => {
                out.source.state = "unknown".into();
                out.source.error = Some(e.to_string());
            }
        }
    } else {
        out.source.state = "unknown".into();
    }
    if let Some(d) = destination {
        out.destination.namespace = d.namespace.clone();
        match kube_site::read_destination(&d.client, &d.calls, &d.namespace).await {
            Ok((dst, _)) => {
                out.destination.state = match &dst {
                    DestinationState::Missing => "missing",
                    DestinationState::Active { .. } => "active",
                    _ => "standby",
                }
                .into();
                if let DestinationState::Active { since, by } = &dst {
                    out.destination.since = since.clone();
                    out.destination.activated_by = Some(by.as_str().into());
                }
                if dst != DestinationState::Missing {
                    let select = |_: &ResourceType, o: &DynamicObject| d.ours(o);
                    let steps = d.steps(true);
                    for rt in d.workloads() {
                        if let Ok(objects) = steps.list(&d.client, &rt, &d.namespace).await {
                            for o in objects.iter().filter(|o| select(&rt, o)) {
                                if crate::activation::is_running(&rt, o) {
                                    out.destination.running.push(format!(
                                        "{}/{}",
                                        rt.kind,
                                        o.metadata.name.as_deref().unwrap_or_default()
                                    ));
                                }
                            }
                        }
                    }
                    out.freshness = d.freshness().await.ok();
                }
                state.destination = dst;
            }
            Err(e) => {
                out.destination.state = "unknown".into();
                out.destination.error = Some(e.to_string());
            }
        }
    } else {
        out.destination.state = "unknown".into();
    }
    out.both_sites_active = state.both_active();
    out.next = next_steps(&state);
    out
}

/// What each step would do in `state`.
fn next_steps(state: &SiteState) -> Vec<NextStep> {
    let say = |step: &str, would: String| NextStep {
        step: step.into(),
        would,
    };
    let refusal = |d: site::Decision| match d {
        site::Decision::Refuse(r) => Some(format!("refuse: {r}")),
        _ => None,
    };
    let active = state.destination.is_active();
    let cutover = refusal(site::decide(Actor::Cutover, Step::QuietSource, state)).unwrap_or_else(|| {
        if active {
            "finish a cutover: no sync and no data copy over the live DR side; quiet production if needed and \
             activate the DR workloads"
                .into()
        } else {
            "sync, copy PVC data (with --migrate-pvc-data), quiet production and mark it standby, mark the DR \
             namespace active and activate its workloads"
                .into()
        }
    });
    let promote =
        refusal(site::decide(Actor::Promote, Step::ActivateDestination, state)).unwrap_or_else(|| {
            if active {
                "keep the active mark and activate any DR workload still quiet".into()
            } else {
                "mark the DR namespace active and activate its workloads, without contacting production"
                    .into()
            }
        });
    let fence = refusal(site::decide(Actor::Fence, Step::QuietSource, state)).unwrap_or_else(|| {
        if state.source.is_standby() {
            "nothing new: production is standby already (workloads still running are quieted)".into()
        } else {
            "quiet production's workloads and mark it standby, without contacting the DR side".into()
        }
    });
    let failback = match site::decide(Actor::Failback, Step::QuietDestination, state) {
        site::Decision::Refuse(r) => format!("refuse: {r}"),
        site::Decision::Skip(r) => format!("nothing to do: {r}"),
        site::Decision::Proceed => {
            let copy = match site::decide(Actor::Failback, Step::ReverseCopy, state) {
                site::Decision::Proceed => ", copy PVC data back (with --reverse-migrate-pvc-data)",
                _ => "",
            };
            format!("quiet the DR workloads{copy}, reactivate production and clear the marks")
        }
    };
    vec![
        say("cutover", cutover),
        say("promote", promote),
        say("fence", fence),
        say("failback", failback),
    ]
}
