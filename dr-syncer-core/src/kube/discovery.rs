//! The resource types a server offers (discovery).

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use tracing::warn;

use super::calls::Calls;
use crate::{Error, Result, resource::ResourceType};

/// Every resource type the server serves, in each group's preferred version (subresources excluded).
///
/// # Errors
/// [`Error::Kube`] when discovery fails.
pub async fn discover(client: &Client, calls: &Calls) -> Result<Vec<ResourceType>> {
    let err = |context: &str| {
        let context = context.to_owned();
        move |source| Error::kube(context.clone(), source)
    };
    let core = calls
        .run("discovery /api/v1", || client.list_core_api_resources("v1"))
        .await
        .map_err(err("discovery /api/v1"))?;
    let groups = calls
        .run("discovery /apis", || client.list_api_groups())
        .await
        .map_err(err("discovery /apis"))?;
    let mut out = types_of("", "v1", &core);
    let versions: Vec<(String, String)> = groups
        .groups
        .iter()
        .filter_map(|g| {
            let v = g.preferred_version.as_ref().or(g.versions.first())?;
            Some((g.name.clone(), v.version.clone()))
        })
        .collect();
    // A group that does not answer (an aggregated API whose backend is down, e.g. metrics.k8s.io) is left
    // out with a warning, as kubectl does: its types are then neither synced nor pruned.
    let lists: Vec<Option<(String, String, APIResourceList)>> = stream::iter(versions)
        .map(|(group, version)| async move {
            let gv = format!("{group}/{version}");
            let what = format!("discovery /apis/{gv}");
            match calls.run(&what, || client.list_api_group_resources(&gv)).await {
                Ok(list) => Some((group, version, list)),
                Err(e) => {
                    warn!(group = %gv, error = %e, "API group left out: discovery failed");
                    None
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (group, version, list) in lists.into_iter().flatten() {
        out.extend(types_of(&group, &version, &list));
    }
    out.sort();
    Ok(out)
}

fn types_of(group: &str, version: &str, list: &APIResourceList) -> Vec<ResourceType> {
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| ResourceType {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: r.kind.clone(),
            plural: r.name.clone(),
            singular: r.singular_name.clone(),
            short_names: r.short_names.clone().unwrap_or_default(),
            namespaced: r.namespaced,
            verbs: r.verbs.clone(),
        })
        .collect()
}

/// The namespaced, replicable types of `discovered` that are defined by a CustomResourceDefinition on the
/// server (aggregated APIs such as `metrics.k8s.io` are not; CRDs in `*.k8s.io` groups such as the
/// Gateway API or VolumeSnapshots are).
///
/// # Errors
/// [`Error::Kube`] when the CRDs cannot be listed.
pub async fn custom_resource_types(
    client: &Client,
    calls: &Calls,
    discovered: &[ResourceType],
) -> Result<Vec<ResourceType>> {
    let crds = super::dynamic::list_all(client, calls, &crate::engine::crd_type(), None, None, true)
        .await
        .map_err(|e| Error::kube("listing CustomResourceDefinitions", e))?;
    let names: std::collections::BTreeSet<String> =
        crds.into_iter().filter_map(|c| c.metadata.name).collect();
    Ok(discovered
        .iter()
        .filter(|t| {
            crate::selection::is_replicable(t) && names.contains(&format!("{}.{}", t.plural, t.group))
        })
        .cloned()
        .collect())
}
