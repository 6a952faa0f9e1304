//! What interrupted CLI runs left behind: every object a run creates (temporary agents, their key Secrets
//! and grants, mount and mover pods with their Secrets, PVC locks) carries the label
//! [`crate::annotations::CLI_RUN`] with the run's id, so it can be found and removed afterwards.

use kube::{Client, api::DeleteParams, core::DynamicObject};
use serde::Serialize;

use super::{
    calls::{Calls, is_not_found},
    dynamic::{api_for, list_all},
};
use crate::{Error, Result, annotations::CLI_RUN, resource::ResourceType};

/// One object a CLI run left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leftover {
    /// The run's id.
    pub run: String,
    /// `Kind` of the object.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// The kinds a run creates, in the order they are removed (the agents first, so they stop serving).
fn kinds() -> [ResourceType; 7] {
    [
        ResourceType::namespaced("apps", "v1", "DaemonSet", "daemonsets"),
        // The agents' NodePort Service and a transfer's load balancer (exposure modes).
        ResourceType::namespaced("", "v1", "Service", "services"),
        ResourceType::namespaced("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
        ResourceType::namespaced("", "v1", "Pod", "pods"),
        ResourceType::namespaced("", "v1", "ConfigMap", "configmaps"),
        ResourceType::namespaced("", "v1", "Secret", "secrets"),
        ResourceType::namespaced("coordination.k8s.io", "v1", "Lease", "leases"),
    ]
}

/// Objects of CLI runs on a cluster (all namespaces), of one run or of every run.
///
/// # Errors
/// [`Error::Kube`] when a kind cannot be listed.
pub async fn find_leftovers(client: &Client, calls: &Calls, run: Option<&str>) -> Result<Vec<Leftover>> {
    let selector = match run {
        Some(r) => format!("{CLI_RUN}={r}"),
        None => CLI_RUN.to_owned(),
    };
    let mut out = Vec::new();
    for rt in &kinds() {
        // No namespace: across all of them.
        let objects: Vec<DynamicObject> = match list_all(client, calls, rt, None, Some(&selector), true).await
        {
            Ok(o) => o,
            // Services and EndpointSlices exist only where an exposure mode made them: an identity
            // that may not list them made none.
            Err(e)
                if matches!(rt.plural.as_str(), "services" | "endpointslices")
                    && matches!(&e, kube::Error::Api(s) if s.code == 403) =>
            {
                Vec::new()
            }
            Err(e) => return Err(Error::kube(format!("listing {rt} of dr-syncer-cli runs"), e)),
        };
        for o in objects {
            out.push(Leftover {
                run: o
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CLI_RUN))
                    .cloned()
                    .unwrap_or_default(),
                kind: rt.kind.clone(),
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                name: o.metadata.name.clone().unwrap_or_default(),
                created: o.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            });
        }
    }
    Ok(out)
}

/// Delete `leftovers` (already gone: fine). Returns how many were deleted.
///
/// # Errors
/// [`Error::Kube`] naming the first object that could not be deleted.
pub async fn remove_leftovers(client: &Client, calls: &Calls, leftovers: &[Leftover]) -> Result<usize> {
    let mut deleted = 0;
    for rt in kinds() {
        for l in leftovers.iter().filter(|l| l.kind == rt.kind) {
            let api = api_for(client, &rt, Some(&l.namespace));
            let params = DeleteParams::background();
            match calls
                .run(&format!("delete {} {}/{}", l.kind, l.namespace, l.name), || {
                    api.delete(&l.name, &params)
                })
                .await
            {
                Ok(_) => deleted += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(Error::kube(
                        format!("deleting {} {}/{}", l.kind, l.namespace, l.name),
                        e,
                    ));
                }
            }
        }
    }
    Ok(deleted)
}
