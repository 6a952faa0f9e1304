//! The recorded site state on the clusters ([`crate::site`]): reading it, setting and clearing the marks,
//! and recording drill steps as Events on the namespaces they change.
//!
//! Marks are written as JSON merge patches with the drill's field manager ([`DRILL_FIELD_MANAGER`]), apart
//! from the sync's server-side apply, so a sync never takes them over.

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    core::{DynamicObject, ObjectMeta},
};
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::{
    DRILL_FIELD_MANAGER,
    calls::Calls,
    dynamic::{api_for, get_one, list_all},
};
use crate::{
    Error, Result, activation, annotations,
    engine::namespace_type,
    resource::ResourceType,
    site::{ActivatedBy, DestinationState, SiteState, SourceState},
};

/// The workload types whose activation state the drills switch, in the order they are switched.
pub fn workload_types() -> [ResourceType; 4] {
    [
        ResourceType::namespaced("apps", "v1", "Deployment", "deployments"),
        ResourceType::namespaced("apps", "v1", "StatefulSet", "statefulsets"),
        ResourceType::namespaced("apps", "v1", "DaemonSet", "daemonsets"),
        ResourceType::namespaced("batch", "v1", "CronJob", "cronjobs"),
    ]
}

/// Of [`workload_types`], those among `types` (a target's types in scope), and the autoscalers in scope
/// ([`scalers_in`]): what a drill quiets and activates.
pub fn workload_types_in(types: &[ResourceType]) -> Vec<ResourceType> {
    workload_types()
        .into_iter()
        .filter(|w| types.iter().any(|t| t.group == w.group && t.kind == w.kind))
        .chain(scalers_in(types))
        .collect()
}

/// The autoscalers among `types` that would scale a quiet workload up and are paused with it: KEDA
/// ScaledObjects (custom resources, so only when they are in scope).
pub fn scalers_in(types: &[ResourceType]) -> Vec<ResourceType> {
    types
        .iter()
        .filter(|t| t.group == "keda.sh" && t.kind == "ScaledObject")
        .cloned()
        .collect()
}

/// Now, as the marks record it (RFC 3339, seconds).
pub fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A namespace, or `None` when it does not exist.
///
/// # Errors
/// [`Error::Kube`] when it cannot be read.
pub async fn get_namespace(client: &Client, calls: &Calls, ns: &str) -> Result<Option<DynamicObject>> {
    get_one(client, calls, &namespace_type(), None, ns, false)
        .await
        .map_err(|e| Error::kube(format!("reading namespace {ns}"), e))
}

/// A cluster's identity: the UID of its `kube-system` namespace (names and addresses are not
/// identities). `Ok(None)` when it has none or this identity may not read it.
///
/// # Errors
/// [`Error::Kube`] when the cluster cannot be reached (not when it refuses the read).
pub async fn cluster_identity(client: &Client, calls: &Calls) -> Result<Option<String>> {
    match get_namespace(client, calls, "kube-system").await {
        Ok(ns) => Ok(ns.and_then(|n| n.metadata.uid)),
        Err(Error::Kube { source, .. }) if matches!(*source, kube::Error::Api(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Check that the source cluster is the one DR namespace `dr_ns` was filled from (its
/// `dr-syncer.io/source-cluster-uid`), as `accept` allows. Nothing to compare (no record, an identity
/// that cannot be read) passes.
///
/// # Errors
/// [`Error::ClusterIdentityChanged`] on a mismatch; [`Error::Kube`] when a cluster cannot be reached.
pub async fn verify_source_identity(
    source: &Client,
    destination: &Client,
    calls: &Calls,
    dr_ns: &str,
    accept: &crate::engine::AcceptIdentity,
) -> Result<()> {
    let live = get_namespace(destination, calls, dr_ns).await?;
    let Some(recorded) = live
        .as_ref()
        .and_then(|n| n.metadata.annotations.as_ref())
        .and_then(|a| a.get(annotations::SOURCE_CLUSTER_UID))
    else {
        return Ok(());
    };
    let found = cluster_identity(source, calls).await?;
    accept.check(dr_ns, Some(recorded), found.as_deref())
}

/// The state of a DR namespace, and the namespace.
///
/// # Errors
/// [`Error::Kube`] when it cannot be read.
pub async fn read_destination(
    client: &Client,
    calls: &Calls,
    ns: &str,
) -> Result<(DestinationState, Option<DynamicObject>)> {
    let live = get_namespace(client, calls, ns).await?;
    Ok((
        DestinationState::of_namespace(live.as_ref().map(|n| &n.metadata)),
        live,
    ))
}

/// The state of a production namespace, with its running workloads of the given types (`Kind/name`).
///
/// # Errors
/// [`Error::Kube`] when the namespace or a workload list cannot be read.
pub async fn read_source(
    client: &Client,
    calls: &Calls,
    ns: &str,
    workloads: &[ResourceType],
) -> Result<SourceState> {
    let Some(live) = get_namespace(client, calls, ns).await? else {
        return Ok(SourceState::Missing);
    };
    if crate::site::is_terminating(&live) {
        return Ok(SourceState::Terminating);
    }
    let (mut running, mut held) = (Vec::new(), Vec::new());
    for rt in workloads {
        let objects = list_all(client, calls, rt, Some(ns), None, true)
            .await
            .map_err(|e| Error::kube(format!("listing {rt} in {ns}"), e))?;
        for obj in &objects {
            let name = format!("{}/{}", rt.kind, obj.metadata.name.as_deref().unwrap_or_default());
            if activation::is_running(rt, obj) {
                running.push(name);
            } else if activation::recorded_active(rt, obj) {
                held.push(name);
            }
        }
    }
    Ok(SourceState::Live {
        standby: has_mark(&live.metadata, annotations::STANDBY),
        running,
        held,
    })
}

/// Whether a namespace carries the mark `key: "true"`.
pub fn has_mark(meta: &ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| v == "true")
}

/// Whether a namespace carries any of these annotations, whatever their value.
pub fn has_any_mark(meta: &ObjectMeta, keys: &[&str]) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| keys.iter().any(|k| a.contains_key(*k)))
}

/// Read both sides' state for a drill that needs both: an error names the side that cannot be read.
///
/// # Errors
/// [`Error::Kube`] when a side cannot be read.
pub async fn read_both(
    source: (&Client, &str),
    destination: (&Client, &str),
    calls: &Calls,
    workloads: &[ResourceType],
) -> Result<SiteState> {
    let (src, dst) = tokio::join!(
        read_source(source.0, calls, source.1, workloads),
        read_destination(destination.0, calls, destination.1)
    );
    Ok(SiteState {
        source: src?,
        destination: dst?.0,
    })
}

/// Whether two clients talk to the same cluster: the same API server URL; or the namespace `namespace`
/// (when both can read it) is one object (the same UID) behind two addresses; or, failing that, the same
/// `kube-system` UID. `Ok(None)` when it cannot be told (neither may read those namespaces): the caller
/// decides (a drill refuses to write then).
///
/// # Errors
/// [`Error::Kube`] when a cluster cannot be reached at all (not when it refuses a read).
pub async fn same_cluster(
    a: (&Client, &str),
    b: (&Client, &str),
    namespace: &str,
    calls: &Calls,
) -> Result<Option<bool>> {
    let norm = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
    if norm(a.1) == norm(b.1) {
        return Ok(Some(true));
    }
    // A refused read is "cannot compare"; an unreachable cluster is an error.
    let uid = |c: &Client, ns: &str| {
        let (c, ns) = (c.clone(), ns.to_owned());
        async move {
            match get_namespace(&c, calls, &ns).await {
                Ok(n) => Ok(Some(n.and_then(|n| n.metadata.uid))),
                Err(Error::Kube { source, .. }) if matches!(*source, kube::Error::Api(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    let (na, nb) = tokio::join!(uid(a.0, namespace), uid(b.0, namespace));
    let (na, nb) = (na?, nb?);
    if let (Some(Some(x)), Some(Some(y))) = (&na, &nb) {
        return Ok(Some(x == y));
    }
    let (ka, kb) = tokio::join!(uid(a.0, "kube-system"), uid(b.0, "kube-system"));
    Ok(match (ka?, kb?) {
        (Some(Some(x)), Some(Some(y))) => Some(x == y),
        // The namespace exists on one side and not on the other: two clusters.
        _ if matches!(
            (&na, &nb),
            (Some(Some(_)), Some(None)) | (Some(None), Some(Some(_)))
        ) =>
        {
            Some(false)
        }
        _ => None,
    })
}

/// The operator mapping that syncs a pair, as its DR namespace records it (`dr-syncer.io/synced-by`
/// `<namespace>/<mapping>` and `dr-syncer.io/source-namespace` of the pair). A CLI drill on that pair
/// writes under the mapping's name, so the mapping's prune keeps track of every object; `None` when no
/// mapping syncs the pair (or the namespace does not exist yet).
///
/// # Errors
/// [`Error::Kube`] when the namespace cannot be read.
pub async fn pair_writer(
    client: &Client,
    calls: &Calls,
    destination_namespace: &str,
    source_namespace: &str,
) -> Result<Option<String>> {
    let Some(ns) = get_namespace(client, calls, destination_namespace).await? else {
        return Ok(None);
    };
    let get = |k: &str| ns.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    Ok(get(annotations::SYNCED_BY).filter(|w| {
        !w.is_empty()
            && !w.starts_with("cli/")
            && get(annotations::SOURCE_NAMESPACE).as_deref() == Some(source_namespace)
    }))
}

/// The merge patch that marks a DR namespace active.
pub fn active_mark(by: ActivatedBy, since: &str) -> Value {
    json!({"metadata": {"annotations": {
        annotations::ACTIVE: "true",
        annotations::ACTIVE_SINCE: since,
        annotations::ACTIVATED_BY: by.as_str(),
    }}})
}

/// The merge patch that clears a DR namespace's active mark.
pub fn clear_active_mark() -> Value {
    json!({"metadata": {"annotations": {
        annotations::ACTIVE: null,
        annotations::ACTIVE_SINCE: null,
        annotations::ACTIVATED_BY: null,
    }}})
}

/// The merge patch that marks a production namespace standby.
pub fn standby_mark(since: &str) -> Value {
    json!({"metadata": {"annotations": {
        annotations::STANDBY: "true",
        annotations::STANDBY_SINCE: since,
    }}})
}

/// The merge patch that clears a production namespace's standby mark.
pub fn clear_standby_mark() -> Value {
    json!({"metadata": {"annotations": {
        annotations::STANDBY: null,
        annotations::STANDBY_SINCE: null,
    }}})
}

/// Patch a namespace's annotations (a merge patch from one of the `*_mark` functions) with the drill's
/// field manager.
///
/// # Errors
/// [`Error::Kube`] when the write fails (a missing namespace is an error too).
pub async fn patch_namespace(client: &Client, calls: &Calls, ns: &str, patch: &Value) -> Result<()> {
    let api = api_for(client, &namespace_type(), None);
    let params = PatchParams {
        field_manager: Some(DRILL_FIELD_MANAGER.into()),
        ..Default::default()
    };
    let merge = Patch::Merge(patch);
    calls
        .run(&format!("patch namespace {ns}"), || {
            api.patch(ns, &params, &merge)
        })
        .await
        .map_err(|e| Error::kube(format!("marking namespace {ns}"), e))?;
    Ok(())
}

/// Who takes a drill step, for the Events that record it.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// The reporting component (`dr-syncer-cli`, `dr-syncer-operator`).
    pub component: String,
    /// Who ran it (e.g. `alice@laptop`), shown in the message.
    pub actor: String,
}

impl Recorder {
    /// A recorder for `component` run by `actor`.
    pub fn new(component: impl Into<String>, actor: impl Into<String>) -> Self {
        Recorder {
            component: component.into(),
            actor: actor.into(),
        }
    }

    /// Record an Event on namespace `ns` (best effort: a failure is logged, never fails the drill).
    pub async fn event(&self, client: &Client, ns: &str, warning: bool, reason: &str, message: &str) {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{ns}.dr-syncer-")),
                namespace: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            // In the namespace itself (listed with it, deleted with it). The API server's validation of a
            // core/v1 Event wants the involved object's namespace to match the Event's.
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Namespace".into()),
                name: Some(ns.to_owned()),
                namespace: Some(ns.to_owned()),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(format!("{message} (by {} via {})", self.actor, self.component)),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.actor.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), ns);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => debug!(namespace = ns, reason, "event recorded"),
            Err(e) => warn!(namespace = ns, reason, error = %e, "could not record an event"),
        }
    }
}
