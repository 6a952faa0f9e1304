//! The writes of drill steps, shared by the two-cluster [`super::Drill`] and the one-sided `promote` and
//! `fence`: switching workloads, setting marks, waiting for pods to go and for workloads to be ready,
//! checking that a cutover left every workload active.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
    core::DynamicObject,
};
use serde_json::Value;
use tokio::sync::watch;
use tracing::info;

use super::{DRILL_FIELD_MANAGER, DrillChange, DrillReport};
use crate::{
    Error, Result, activation,
    engine::{Progress, ProgressFn},
    kube::{
        Calls,
        dynamic::{api_for, list_all},
        selector_string,
        site::Recorder,
    },
    resource::ResourceType,
};

/// Which way workloads are switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Switch {
    /// Scale to 0, suspend, hold off nodes; record the originals.
    Quiet,
    /// Restore from the recorded originals (the DR side: the records stay, a later sync keeps them).
    Activate,
    /// Restore from the recorded originals and drop the records (production: it is itself again).
    Release,
}

/// One cluster of a drill step.
#[derive(Clone, Copy)]
pub(crate) struct Side<'a> {
    pub(crate) client: &'a Client,
    pub(crate) namespace: &'a str,
    /// `source` or `destination`.
    pub(crate) cluster: &'static str,
}

/// What drill steps share: limits, progress, interruption, events, dry run.
#[derive(Clone, Copy)]
pub(crate) struct Steps<'a> {
    pub(crate) calls: &'a Calls,
    pub(crate) progress: Option<&'a ProgressFn>,
    pub(crate) interrupt: Option<&'a watch::Receiver<bool>>,
    pub(crate) recorder: &'a Recorder,
    pub(crate) dry_run: bool,
}

impl<'a> Steps<'a> {
    /// Announce a step and record it in the report.
    pub(crate) fn step(&self, report: &mut DrillReport, name: &str) {
        report.steps.push(name.to_owned());
        if let Some(f) = self.progress {
            f(&Progress::Step { name: name.into() });
        }
    }

    /// Announce a step without recording it.
    pub(crate) fn announce(&self, name: &str) {
        if let Some(f) = self.progress {
            f(&Progress::Step { name: name.into() });
        }
    }

    /// Whether an interruption (SIGINT/SIGTERM) was asked for.
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupt.is_some_and(|rx| *rx.borrow())
    }

    /// Stop here when an interruption was asked for: between steps, where everything recorded so far is
    /// consistent and a re-run resumes.
    pub(crate) fn checkpoint(&self, at: &str) -> Result<()> {
        if self.interrupted() {
            return Err(Error::Interrupted(format!("before {at}")));
        }
        Ok(())
    }

    /// Run `fut`, or stop it when an interruption is asked for.
    pub(crate) async fn interruptible<T>(
        &self,
        at: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(rx) = self.interrupt else {
            return fut.await;
        };
        let mut rx = rx.clone();
        tokio::select! {
            r = fut => r,
            _ = rx.wait_for(|v| *v) => Err(Error::Interrupted(format!("during {at}"))),
        }
    }

    /// Every object of `rt` in `ns` (a type the server does not serve lists as empty).
    pub(crate) async fn list(
        &self,
        client: &Client,
        rt: &ResourceType,
        ns: &str,
    ) -> Result<Vec<DynamicObject>> {
        list_all(client, self.calls, rt, Some(ns), None, true)
            .await
            .map_err(|e| Error::kube(format!("list {rt} in {ns}"), e))
    }

    /// Write one merge patch (field manager [`DRILL_FIELD_MANAGER`]) and record it.
    pub(crate) async fn patch(
        &self,
        side: Side<'_>,
        rt: &ResourceType,
        obj: &DynamicObject,
        action: &str,
        patch: Value,
        report: &mut DrillReport,
    ) -> Result<()> {
        let key = rt.key_of(obj);
        if !self.dry_run {
            let api = api_for(side.client, rt, key.namespace.as_deref());
            let params = PatchParams {
                field_manager: Some(DRILL_FIELD_MANAGER.into()),
                ..Default::default()
            };
            let merge = Patch::Merge(&patch);
            self.calls
                .run(&format!("{action} {key}"), || {
                    api.patch(&key.name, &params, &merge)
                })
                .await
                .map_err(|e| Error::kube(format!("{action} {key} on the {} cluster", side.cluster), e))?;
            info!(object = %key, cluster = side.cluster, action, "drill");
        }
        report.changes.push(DrillChange {
            cluster: side.cluster.into(),
            object: key.to_string(),
            action: action.into(),
            patch,
        });
        Ok(())
    }

    /// Set or clear a mark on `side`'s namespace (`patch` from `crate::kube::site`) and record it.
    pub(crate) async fn mark(
        &self,
        side: Side<'_>,
        namespace: &DynamicObject,
        action: &str,
        patch: Value,
        report: &mut DrillReport,
    ) -> Result<()> {
        self.patch(
            side,
            &crate::engine::namespace_type(),
            namespace,
            action,
            patch,
            report,
        )
        .await
    }

    /// Switch the workloads of `types` on `side` that `select` picks; returns how many were written.
    pub(crate) async fn switch(
        &self,
        side: Side<'_>,
        types: &[ResourceType],
        select: &(dyn Fn(&ResourceType, &DynamicObject) -> bool + Sync),
        switch: Switch,
        report: &mut DrillReport,
    ) -> Result<usize> {
        let mut written = 0;
        for rt in types {
            for obj in self.list(side.client, rt, side.namespace).await? {
                if !select(rt, &obj) {
                    continue;
                }
                let (patch, action) = match switch {
                    Switch::Quiet => (activation::quiet(rt, &obj)?, "quiet"),
                    Switch::Activate => (activation::activate(rt, &obj)?, "activate"),
                    Switch::Release => (activation::release(rt, &obj)?, "activate"),
                };
                if let Some(patch) = patch {
                    self.patch(side, rt, &obj, action, patch, report).await?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    /// The drain step: wait until no pod of the quiet workloads of `types` on `side` is left (see
    /// [`Steps::pods_gone`]), and note in the report what was waited for.
    pub(crate) async fn drain(
        &self,
        side: Side<'_>,
        types: &[ResourceType],
        select: &(dyn Fn(&ResourceType, &DynamicObject) -> bool + Sync),
        timeout: Duration,
        report: &mut DrillReport,
    ) -> Result<()> {
        self.step(
            report,
            &format!("wait until the {} workloads' pods are gone", side.cluster),
        );
        let waited = self.pods_gone(side, types, select, timeout).await?;
        if !waited.is_empty() {
            report.notes.push(format!(
                "waited for {} pod(s) of the quieted {} workloads to stop: {}",
                waited.len(),
                side.cluster,
                waited.join(", ")
            ));
        }
        Ok(())
    }

    /// Mark `side`'s namespace standby, unless it is (or does not exist).
    pub(crate) async fn mark_standby(&self, side: Side<'_>, report: &mut DrillReport) -> Result<()> {
        let Some(ns) = crate::kube::site::get_namespace(side.client, self.calls, side.namespace).await?
        else {
            return Ok(());
        };
        if crate::kube::site::has_mark(&ns.metadata, crate::annotations::STANDBY) {
            return Ok(());
        }
        self.step(report, "mark the source namespace standby");
        let patch = crate::kube::site::standby_mark(&crate::kube::site::timestamp());
        self.mark(side, &ns, "mark-standby", patch, report).await
    }

    /// Wait until no pod of the quiet workloads of `types` on `side` (Deployments, StatefulSets,
    /// DaemonSets that `select` picks, and the running Jobs of quiet CronJobs) is left, terminating ones
    /// included: only then has everything they wrote reached their volumes. Returns the pods waited for.
    async fn pods_gone(
        &self,
        side: Side<'_>,
        types: &[ResourceType],
        select: &(dyn Fn(&ResourceType, &DynamicObject) -> bool + Sync),
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let mut selectors = Vec::new();
        // The running Jobs of quieted CronJobs (a suspended CronJob starts no new Job, but the one running
        // goes on writing): their pods carry `job-name`.
        let mut jobs = Vec::new();
        if let Some(cron) = types.iter().find(|t| t.group == "batch" && t.kind == "CronJob") {
            let quiet: Vec<String> = self
                .list(side.client, cron, side.namespace)
                .await?
                .into_iter()
                .filter(|o| select(cron, o) && !activation::is_running(cron, o))
                .filter_map(|o| o.metadata.name)
                .collect();
            if !quiet.is_empty() {
                let job_rt = ResourceType::namespaced("batch", "v1", "Job", "jobs");
                for job in self.list(side.client, &job_rt, side.namespace).await? {
                    let owned = job
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.kind == "CronJob" && quiet.contains(&r.name));
                    let finished = job
                        .data
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter().any(|c| {
                                (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                            })
                        });
                    if owned
                        && !finished
                        && let Some(name) = job.metadata.name
                    {
                        jobs.push(name);
                    }
                }
            }
        }
        if !jobs.is_empty() {
            selectors.push(format!("job-name in ({})", jobs.join(",")));
        }
        for rt in types.iter().filter(|t| {
            t.group == "apps" && matches!(t.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet")
        }) {
            for obj in self.list(side.client, rt, side.namespace).await? {
                if !select(rt, &obj) || activation::is_running(rt, &obj) {
                    continue;
                }
                let Some(sel) = obj
                    .data
                    .pointer("/spec/selector")
                    .and_then(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok())
                else {
                    continue;
                };
                let s = selector_string(&sel);
                if !s.is_empty() {
                    selectors.push(s);
                }
            }
        }
        if selectors.is_empty() || self.dry_run {
            return Ok(Vec::new());
        }
        let pods: Api<Pod> = Api::namespaced(side.client.clone(), side.namespace);
        let deadline = Instant::now() + timeout;
        let mut seen = BTreeSet::new();
        loop {
            let mut left = Vec::new();
            for s in &selectors {
                let params = ListParams::default().labels(s);
                let list = self
                    .calls
                    .run("list pods", || pods.list(&params))
                    .await
                    .map_err(|e| Error::kube(format!("listing pods in {}", side.namespace), e))?;
                left.extend(list.items.into_iter().filter_map(|p| p.metadata.name));
            }
            left.sort();
            left.dedup();
            if left.is_empty() {
                return Ok(seen.into_iter().collect());
            }
            seen.extend(left.iter().cloned());
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "pods of the quieted workloads in {} on the {} cluster still exist after {timeout:?}: {}",
                    side.namespace,
                    side.cluster,
                    left.join(", ")
                )));
            }
            if self.interrupted() {
                return Err(Error::Interrupted(format!(
                    "while waiting for the pods of {} to stop",
                    side.namespace
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stop every PVC data copy still writing into `side`'s namespace (a copy that started before the
    /// namespace was marked active, e.g. an operator's scheduled one): delete its mover pods, and wait
    /// until no copy lock there is held any more (the copy sees its mover gone and releases it). The
    /// movers stopped are noted in the report.
    pub(crate) async fn stop_copies(
        &self,
        side: Side<'_>,
        timeout: Duration,
        report: &mut DrillReport,
    ) -> Result<()> {
        let stopped = self.stop_movers(side, timeout).await?;
        if !stopped.is_empty() {
            report.notes.push(format!(
                "stopped {} data cop(ies) still writing into the DR side: {}",
                stopped.len(),
                stopped.join(", ")
            ));
        }
        Ok(())
    }

    async fn stop_movers(&self, side: Side<'_>, timeout: Duration) -> Result<Vec<String>> {
        if self.dry_run {
            return Ok(Vec::new());
        }
        let pods: Api<Pod> = Api::namespaced(side.client.clone(), side.namespace);
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(side.client.clone(), side.namespace);
        let movers = ListParams::default().labels(&format!("{}=mover", crate::pvc::ROLE_LABEL));
        let locks = ListParams::default().labels(&format!(
            "app.kubernetes.io/managed-by={}",
            crate::pvc::MANAGED_BY
        ));
        let deadline = Instant::now() + timeout;
        let mut stopped = BTreeSet::new();
        loop {
            let running = self
                .calls
                .run("list mover pods", || pods.list(&movers))
                .await
                .map_err(|e| Error::kube(format!("listing mover pods in {}", side.namespace), e))?;
            for pod in running.items {
                let Some(name) = pod.metadata.name else { continue };
                if pod.metadata.deletion_timestamp.is_none() {
                    match pods.delete(&name, &Default::default()).await {
                        Ok(_) => {
                            info!(pod = %name, namespace = side.namespace, "stopped a data copy into the live site")
                        }
                        Err(e) if crate::kube::is_not_found(&e) => {}
                        Err(e) => return Err(Error::kube(format!("stopping mover pod {name}"), e)),
                    }
                }
                stopped.insert(name);
            }
            let now = k8s_openapi::jiff::Timestamp::now();
            let held: Vec<String> = self
                .calls
                .run("list locks", || leases.list(&locks))
                .await
                .map_err(|e| Error::kube(format!("listing the copy locks in {}", side.namespace), e))?
                .items
                .into_iter()
                .filter(|l| {
                    l.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("dr-syncer-pvc"))
                })
                .filter(|l| {
                    let spec = l.spec.clone().unwrap_or_default();
                    spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty())
                        && match (spec.renew_time, spec.lease_duration_seconds) {
                            (Some(t), Some(d)) => {
                                t.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(d)) > now
                            }
                            _ => false,
                        }
                })
                .filter_map(|l| l.metadata.name)
                .collect();
            if held.is_empty() {
                return Ok(stopped.into_iter().collect());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "data copies into {} on the {} cluster still hold their locks after {timeout:?}: {}",
                    side.namespace,
                    side.cluster,
                    held.join(", ")
                )));
            }
            if self.interrupted() {
                return Err(Error::Interrupted("while stopping data copies".into()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Wait until every Deployment and StatefulSet of `side` has as many ready replicas as it wants. A
    /// workload in `must_run` (`Kind/name`) that wants 0 replicas is not ready: the drill meant it to run.
    pub(crate) async fn wait_ready(
        &self,
        side: Side<'_>,
        must_run: &BTreeSet<String>,
        timeout: Duration,
    ) -> Result<()> {
        self.announce(&format!(
            "wait until the workloads of {} are ready",
            side.namespace
        ));
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for rt in super::workload_types()
                .iter()
                .filter(|t| t.kind == "Deployment" || t.kind == "StatefulSet")
            {
                for obj in self.list(side.client, rt, side.namespace).await? {
                    let name = format!("{}/{}", rt.kind, obj.metadata.name.as_deref().unwrap_or_default());
                    let want = obj
                        .data
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    let ready = obj
                        .data
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if ready < want || (want == 0 && must_run.contains(&name)) {
                        waiting.push(format!("{} ({ready}/{want} ready)", rt.key_of(&obj)));
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "workloads not ready after {timeout:?}: {}",
                    waiting.join(", ")
                )));
            }
            if self.interrupted() {
                return Err(Error::Interrupted(
                    "while waiting for workloads to be ready".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Record a drill step as an Event on `side`'s namespace (not in a dry run).
    pub(crate) async fn event(&self, side: Side<'_>, warning: bool, reason: &str, message: &str) {
        if !self.dry_run {
            self.recorder
                .event(side.client, side.namespace, warning, reason, message)
                .await;
        }
    }
}

/// The quiet workloads of `types` on `side` that `select` picks and that ran before a drill quieted them
/// (their records say so), as `Kind/name`.
pub(crate) async fn quieted_by_a_drill(
    steps: &Steps<'_>,
    side: Side<'_>,
    types: &[ResourceType],
    select: &(dyn Fn(&ResourceType, &DynamicObject) -> bool + Sync),
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for rt in types {
        for obj in steps.list(side.client, rt, side.namespace).await? {
            if select(rt, &obj) && !activation::is_running(rt, &obj) && activation::recorded_active(rt, &obj)
            {
                out.insert(format!(
                    "{}/{}",
                    rt.kind,
                    obj.metadata.name.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    Ok(out)
}

/// Of `wanted` (`Kind/name`), those that do not run on `side` among the objects `select` picks, each with
/// why.
pub(crate) async fn not_running(
    steps: &Steps<'_>,
    side: Side<'_>,
    types: &[ResourceType],
    select: &(dyn Fn(&ResourceType, &DynamicObject) -> bool + Sync),
    wanted: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut found: BTreeMap<String, bool> = BTreeMap::new();
    let mut foreign = BTreeSet::new();
    for rt in types {
        for obj in steps.list(side.client, rt, side.namespace).await? {
            let name = format!("{}/{}", rt.kind, obj.metadata.name.as_deref().unwrap_or_default());
            if !wanted.contains(&name) {
                continue;
            }
            if select(rt, &obj) {
                found.insert(name, activation::is_running(rt, &obj));
            } else {
                foreign.insert(name);
            }
        }
    }
    Ok(wanted
        .iter()
        .filter_map(|w| match found.get(w) {
            Some(true) => None,
            Some(false) => Some(format!("{w} (still quiet on the {} cluster)", side.cluster)),
            None if foreign.contains(w) => Some(format!(
                "{w} (the {} cluster's copy is not dr-syncer's: left alone)",
                side.cluster
            )),
            None => Some(format!("{w} (missing on the {} cluster)", side.cluster)),
        })
        .collect())
}
