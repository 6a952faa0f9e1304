//! Before anything is written: what would break on the DR side ([`preflight`]).

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt, stream};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    core::DynamicObject,
};
use serde::Serialize;
use serde_json::Value;

use crate::kube::{
    Calls, discover,
    dynamic::{api_for, get_one, list_all},
    is_unserved,
};
use crate::{
    Error, Result,
    engine::SyncTarget,
    resource::ResourceType,
    transform::{Outcome, Transformer, TransformerChain},
};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Worth knowing; does not block.
    Warn,
    /// Blocks the drill.
    Fail,
}

/// One preflight check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub status: CheckStatus,
    /// Details.
    pub message: String,
}

/// All checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PreflightReport {
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl PreflightReport {
    /// Whether any check blocks.
    pub fn blocks(&self) -> bool {
        self.checks.iter().any(|c| c.status == CheckStatus::Fail)
    }

    fn add(&mut self, name: impl Into<String>, status: CheckStatus, message: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            status,
            message: message.into(),
        });
    }
}

async fn allowed(
    client: &Client,
    calls: &Calls,
    verb: &str,
    rt: &ResourceType,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(rt.group.clone()),
                resource: Some(rt.plural.clone()),
                verb: Some(verb.into()),
                namespace: ns.map(str::to_owned),
                name: name.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let pp = PostParams::default();
    match calls
        .run("selfsubjectaccessreview", || api.create(&pp, &review))
        .await
    {
        Ok(r) => Ok(r.status.is_some_and(|s| s.allowed)),
        // No access reviews here (not served, or this identity may not ask): try the operation itself.
        Err(e) if is_unserved(&e) || is_forbidden(&e) => probe(client, calls, verb, rt, ns, name).await,
        Err(e) => Err(Error::kube("access review", e)),
    }
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// Whether `verb` on `rt` is allowed, found by trying it without effect: reads list one object; writes are
/// server-side dry runs on a name that does not exist. Authorization comes before everything else in the
/// API server, so any answer but 403 Forbidden means allowed (the 404 or 422 that follows is expected).
async fn probe(
    client: &Client,
    calls: &Calls,
    verb: &str,
    rt: &ResourceType,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<bool> {
    // (A named check probes that object; the writes are dry runs, the patch empty.)
    let probe = name.unwrap_or("dr-syncer-preflight-probe");
    let api = api_for(client, rt, ns);
    let list = ListParams::default().limit(1);
    let create = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let patch = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let empty = Patch::Merge(serde_json::json!({}));
    let delete = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    let mut obj = DynamicObject::new(probe, &rt.api_resource());
    obj.metadata.namespace = ns.map(str::to_owned);
    let result = match verb {
        "get" => calls.run_once(|| api.get(probe)).await.map(drop),
        "list" => calls.run_once(|| api.list_metadata(&list)).await.map(drop),
        "create" => calls.run_once(|| api.create(&create, &obj)).await.map(drop),
        "patch" => calls
            .run_once(|| api.patch(probe, &patch, &empty))
            .await
            .map(drop),
        "delete" => calls.run_once(|| api.delete(probe, &delete)).await.map(drop),
        other => {
            return Err(Error::InvalidConfig(format!(
                "preflight cannot probe the verb {other}"
            )));
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if is_forbidden(&e) => Ok(false),
        Err(kube::Error::Api(_)) => Ok(true),
        Err(e) => Err(Error::kube(format!("probing {verb} {rt}"), e)),
    }
}

/// Which drill step a preflight checks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillStep {
    /// A sync to the DR side (stage, `plan`): read the source, write the DR side.
    Stage,
    /// A stage plus quieting the source workloads.
    Cutover,
    /// Quiet the DR workloads and reactivate the source's; with `sync_back`, also copy the DR side's
    /// objects to the source first.
    Failback {
        /// `--sync-back`.
        sync_back: bool,
    },
}

/// Check what a drill of `target` needs before writing anything: the source namespace; the DR namespace
/// (or permission to create it); StorageClasses the PVCs will ask for on the DR side (after mapping);
/// IngressClasses of Ingresses; CRDs of the custom resources in scope (unless `syncCRDs` copies them); and
/// the permissions of both identities for the planned operations (SelfSubjectAccessReview; where an
/// identity may not ask, each operation is tried as a server-side dry run). A failback
/// checks the namespaces and the permissions it needs (both sides' workloads; with `sync_back`, writing
/// the source).
///
/// # Errors
/// Only when the clusters cannot be asked at all; problems found are checks in the report.
pub async fn preflight(
    source: &Client,
    destination: &Client,
    calls: &Calls,
    target: &SyncTarget,
    step: DrillStep,
) -> Result<PreflightReport> {
    let failback = matches!(step, DrillStep::Failback { .. });
    let mut report = PreflightReport::default();
    let src_ns = target.source_namespace.as_str();
    let dst_ns = target.destination_namespace.as_str();
    let ns_rt = crate::engine::namespace_type();

    // Namespaces.
    let src_exists = get_one(source, calls, &ns_rt, None, src_ns, false)
        .await
        .map_err(|e| Error::kube("get source namespace", e))?
        .is_some();
    report.add(
        "source namespace",
        if src_exists {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        if src_exists {
            format!("{src_ns} exists")
        } else {
            format!("{src_ns} does not exist on the source cluster")
        },
    );
    let dst_exists = get_one(destination, calls, &ns_rt, None, dst_ns, false)
        .await
        .map_err(|e| Error::kube("get destination namespace", e))?
        .is_some();
    if failback && !dst_exists {
        report.add(
            "destination namespace",
            CheckStatus::Fail,
            format!("{dst_ns} does not exist on the DR cluster: nothing to fail back from"),
        );
    } else if dst_exists {
        report.add(
            "destination namespace",
            CheckStatus::Ok,
            format!("{dst_ns} exists"),
        );
    } else if !target.config.namespace.create_namespace {
        report.add(
            "destination namespace",
            CheckStatus::Fail,
            format!("{dst_ns} does not exist and namespaceConfig.createNamespace is false"),
        );
    } else if allowed(destination, calls, "create", &ns_rt, None, None).await? {
        report.add(
            "destination namespace",
            CheckStatus::Ok,
            format!("{dst_ns} will be created"),
        );
    } else {
        report.add(
            "destination namespace",
            CheckStatus::Fail,
            format!("{dst_ns} does not exist and the destination identity may not create namespaces"),
        );
    }

    // Permissions for the planned operations.
    let is_workload = |rt: &ResourceType| {
        matches!(
            rt.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob"
        )
    };
    // (cluster is the source, verb, type, namespace, name): asked all at once, reported in this order.
    type Ask<'a> = (bool, &'a str, &'a ResourceType, Option<&'a str>, Option<&'a str>);
    let mut asks: Vec<Ask<'_>> = Vec::new();
    for rt in &target.types {
        let mut src_verbs = vec!["get", "list"];
        let mut dst_verbs = vec!["get", "list"];
        match step {
            DrillStep::Stage | DrillStep::Cutover => {
                dst_verbs.extend(["create", "patch"]);
                if target.config.prune {
                    dst_verbs.push("delete");
                }
            }
            DrillStep::Failback { sync_back } => {
                if sync_back {
                    src_verbs.extend(["create", "patch"]);
                }
            }
        }
        if is_workload(rt) && step != DrillStep::Stage && !src_verbs.contains(&"patch") {
            src_verbs.push("patch"); // quiet (cutover) or reactivate (failback) the source
        }
        if is_workload(rt) && failback {
            dst_verbs.push("patch"); // quiet the DR side
        }
        asks.extend(src_verbs.into_iter().map(|v| (true, v, rt, Some(src_ns), None)));
        asks.extend(dst_verbs.into_iter().map(|v| (false, v, rt, Some(dst_ns), None)));
    }
    // (The namespaces by name: a least-privilege role grants exactly these.)
    if failback {
        asks.push((false, "patch", &ns_rt, None, Some(dst_ns))); // clear the DR namespace's active mark
    }
    if step != DrillStep::Stage {
        asks.push((true, "patch", &ns_rt, None, Some(src_ns))); // mark production standby, or clear the mark
    }
    let answers: Vec<bool> = stream::iter(&asks)
        .map(|&(on_source, verb, rt, ns, name)| {
            allowed(
                if on_source { source } else { destination },
                calls,
                verb,
                rt,
                ns,
                name,
            )
        })
        .buffered(16)
        .try_collect()
        .await?;
    let missing: Vec<String> = asks
        .iter()
        .zip(answers)
        .filter(|(_, ok)| !ok)
        .map(|((on_source, verb, rt, ns, _), _)| match (on_source, ns) {
            (true, _) => format!("source: {verb} {rt}"),
            (false, Some(_)) => format!("destination: {verb} {rt}"),
            (false, None) => format!("destination: {verb} {rt} (to clear the active mark)"),
        })
        .collect();
    if missing.is_empty() {
        report.add(
            "permissions",
            CheckStatus::Ok,
            "both identities may do what the drill needs",
        );
    } else {
        report.add(
            "permissions",
            CheckStatus::Fail,
            format!("missing: {}", missing.join(", ")),
        );
    }

    if failback {
        return Ok(report); // nothing is created on the DR side
    }

    // Classes and CRDs the DR side must have.
    let dr_types = discover(destination, calls).await?;
    let chain = TransformerChain::builtin();
    let transformed = |rt: &ResourceType, objs: Vec<DynamicObject>| -> Vec<DynamicObject> {
        objs.into_iter()
            .filter_map(|o| match chain.transform(o, &target.context(rt, false)) {
                Ok(Outcome::Keep(o)) => Some(o),
                _ => None,
            })
            .collect()
    };
    let names_on_dr = |rt: ResourceType| async move {
        list_all(destination, calls, &rt, None, None, true)
            .await
            .map(|l| {
                l.into_iter()
                    .filter_map(|o| o.metadata.name)
                    .collect::<BTreeSet<String>>()
            })
            .map_err(|e| Error::kube(format!("list {rt}"), e))
    };
    if let Some(pvc) = target.types.iter().find(|t| t.is("", "PersistentVolumeClaim")) {
        let pvcs = transformed(
            pvc,
            list_all(source, calls, pvc, Some(src_ns), None, false)
                .await
                .map_err(|e| Error::kube("list PVCs", e))?,
        );
        let wanted: BTreeSet<String> = pvcs
            .iter()
            .filter_map(|p| {
                p.data
                    .pointer("/spec/storageClassName")
                    .and_then(Value::as_str)
                    // `""` asks for no class (a statically bound PV): nothing to find on DR.
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
            })
            .collect();
        let sc_rt = ResourceType::namespaced("storage.k8s.io", "v1", "StorageClass", "storageclasses")
            .cluster_scoped();
        let have = names_on_dr(sc_rt).await?;
        let absent: Vec<&String> = wanted.iter().filter(|w| !have.contains(*w)).collect();
        if absent.is_empty() {
            report.add(
                "storage classes",
                CheckStatus::Ok,
                format!("{} PVC(s); classes present on DR", pvcs.len()),
            );
        } else {
            report.add(
                "storage classes",
                CheckStatus::Fail,
                format!(
                    "missing on DR (after storageClassMappings): {}",
                    absent.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    if let Some(ing) = target
        .types
        .iter()
        .find(|t| t.group == "networking.k8s.io" && t.kind == "Ingress")
    {
        let ingresses = list_all(source, calls, ing, Some(src_ns), None, false)
            .await
            .map_err(|e| Error::kube("list ingresses", e))?;
        let wanted: BTreeSet<String> = ingresses
            .iter()
            .filter_map(|i| {
                i.data
                    .pointer("/spec/ingressClassName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        let ic_rt = ResourceType::namespaced("networking.k8s.io", "v1", "IngressClass", "ingressclasses")
            .cluster_scoped();
        let have = names_on_dr(ic_rt).await?;
        let absent: Vec<String> = wanted.into_iter().filter(|w| !have.contains(w)).collect();
        if absent.is_empty() {
            report.add("ingress classes", CheckStatus::Ok, "classes present on DR");
        } else {
            report.add(
                "ingress classes",
                CheckStatus::Fail,
                format!("missing on DR: {}", absent.join(", ")),
            );
        }
    }
    // Every type in scope must be served on DR; a custom resource's CRD can be copied with syncCRDs.
    let absent: Vec<&ResourceType> = target
        .types
        .iter()
        .filter(|t| {
            !dr_types
                .iter()
                .any(|d| d.group == t.group && d.plural == t.plural)
        })
        .collect();
    let crd_backed = if absent.is_empty() {
        Vec::new()
    } else {
        let absent: Vec<ResourceType> = absent.iter().map(|t| (*t).clone()).collect();
        crate::kube::custom_resource_types(source, calls, &absent).await?
    };
    let (copied, missing): (Vec<&ResourceType>, Vec<&ResourceType>) = absent
        .into_iter()
        .partition(|t| target.config.sync_crds && crd_backed.contains(t));
    let names = |ts: &[&ResourceType]| {
        ts.iter()
            .map(|t| t.resource_group())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !missing.is_empty() {
        let hint = if missing.iter().any(|t| crd_backed.contains(t)) {
            "install the CRDs or set syncCRDs"
        } else {
            "the DR API server does not offer them"
        };
        report.add(
            "resource types",
            CheckStatus::Fail,
            format!("not served on DR ({hint}): {}", names(&missing)),
        );
    } else if !copied.is_empty() {
        report.add(
            "resource types",
            CheckStatus::Ok,
            format!("CRDs will be copied (syncCRDs): {}", names(&copied)),
        );
    } else {
        report.add(
            "resource types",
            CheckStatus::Ok,
            format!("all {} served on DR", target.types.len()),
        );
    }
    Ok(report)
}
