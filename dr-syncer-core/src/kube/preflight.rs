//! Before anything is written: what would break on the DR side ([`preflight`]).

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::{Api, Client, api::PostParams, core::DynamicObject};
use serde::Serialize;
use serde_json::Value;

use super::{
    calls::Calls,
    discover,
    source::{get_one, list_all},
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
) -> Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(rt.group.clone()),
                resource: Some(rt.plural.clone()),
                verb: Some(verb.into()),
                namespace: ns.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let pp = PostParams::default();
    let r = calls
        .run("selfsubjectaccessreview", || api.create(&pp, &review))
        .await
        .map_err(|e| Error::kube("access review", e))?;
    Ok(r.status.is_some_and(|s| s.allowed))
}

/// Check what a drill of `target` needs before writing anything: the source namespace; the DR namespace
/// (or permission to create it); StorageClasses the PVCs will ask for on the DR side (after mapping);
/// IngressClasses of Ingresses; CRDs of the custom resources in scope (unless `syncCRDs` copies them); and
/// the permissions of both identities for the planned operations (SelfSubjectAccessReview).
///
/// # Errors
/// Only when the clusters cannot be asked at all; problems found are checks in the report.
pub async fn preflight(
    source: &Client,
    destination: &Client,
    calls: &Calls,
    target: &SyncTarget,
    cutover: bool,
) -> Result<PreflightReport> {
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
    if dst_exists {
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
    } else if allowed(destination, calls, "create", &ns_rt, None).await? {
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
    let mut missing = Vec::new();
    for rt in &target.types {
        for verb in ["get", "list"] {
            if !allowed(source, calls, verb, rt, Some(src_ns)).await? {
                missing.push(format!("source: {verb} {rt}"));
            }
        }
        let mut verbs = vec!["get", "list", "create", "patch"];
        if target.config.prune {
            verbs.push("delete");
        }
        for verb in verbs {
            if !allowed(destination, calls, verb, rt, Some(dst_ns)).await? {
                missing.push(format!("destination: {verb} {rt}"));
            }
        }
        if cutover
            && matches!(
                rt.kind.as_str(),
                "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob"
            )
            && !allowed(source, calls, "patch", rt, Some(src_ns)).await?
        {
            missing.push(format!("source: patch {rt} (to quiet it)"));
        }
    }
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
    let custom: Vec<&ResourceType> = target
        .types
        .iter()
        .filter(|t| t.group.contains('.') && !t.group.ends_with(".k8s.io"))
        .collect();
    if !custom.is_empty() {
        let absent: Vec<String> = custom
            .iter()
            .filter(|t| {
                !dr_types
                    .iter()
                    .any(|d| d.group == t.group && d.plural == t.plural)
            })
            .map(|t| t.resource_group())
            .collect();
        if absent.is_empty() {
            report.add("custom resource definitions", CheckStatus::Ok, "served on DR");
        } else if target.config.sync_crds {
            report.add(
                "custom resource definitions",
                CheckStatus::Ok,
                format!("will be copied (syncCRDs): {}", absent.join(", ")),
            );
        } else {
            report.add(
                "custom resource definitions",
                CheckStatus::Fail,
                format!(
                    "not served on DR (install the CRDs or set syncCRDs): {}",
                    absent.join(", ")
                ),
            );
        }
    }
    Ok(report)
}
