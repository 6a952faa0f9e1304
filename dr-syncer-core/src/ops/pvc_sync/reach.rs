//! Reaching a source agent by the cluster's exposure mode, and the cluster facts the agents' manifests
//! need (the kubelet root): the IO half of [`crate::pvc::exposure`] and [`crate::pvc::host_path`].

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams},
};
use tracing::debug;

use super::{api_err, apply, is_status};
use crate::{
    error::{Error, Result},
    pvc::{
        AgentSettings,
        exposure::{AgentPlace, NodeAddresses},
        host_path::{self, NodeDirectoryVolume},
        manifests,
    },
};

/// `settings` with the kubelet root filled in: the configured one, else discovered from (up to 100 of)
/// the nodes the agents run on; the default when the nodes cannot be read.
///
/// # Errors
/// [`Error::InvalidConfig`] when the nodes use different roots.
pub(super) async fn with_kubelet_root(client: &Client, settings: &AgentSettings) -> Result<AgentSettings> {
    let mut out = settings.clone();
    if out.kubelet_root.is_some() {
        return Ok(out);
    }
    let selector = settings
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut params = ListParams::default().limit(100);
    if !selector.is_empty() {
        params = params.labels(&selector);
    }
    match Api::<Node>::all(client.clone()).list(&params).await {
        Ok(list) => {
            out.kubelet_root =
                Some(host_path::discover_kubelet_root(&list.items).map_err(Error::InvalidConfig)?);
        }
        Err(e) => debug!("reading the nodes for their kubelet root (the default is used): {e}"),
    }
    Ok(out)
}

/// Create or update the agents' NodePort Service when the exposure needs it; remove one left from an
/// earlier mode otherwise (only when it is there: one read per call).
///
/// # Errors
/// [`Error::Kube`] when it cannot be written or removed.
pub(super) async fn sync_node_port_service(client: &Client, settings: &AgentSettings) -> Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), &settings.namespace);
    let name = manifests::agent_node_port_service_name(settings);
    if settings.exposure.needs_node_port_service() {
        return apply(&api, &name, &manifests::agent_node_port_service(settings)).await;
    }
    remove_node_port_service(client, settings).await
}

/// Remove the agents' NodePort Service if there is one (a missing permission to read Services means
/// there is none of ours to remove).
///
/// # Errors
/// [`Error::Kube`] when it is there and cannot be removed.
pub(super) async fn remove_node_port_service(client: &Client, settings: &AgentSettings) -> Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), &settings.namespace);
    let name = manifests::agent_node_port_service_name(settings);
    match api.get_opt(&name).await {
        Ok(Some(_)) => match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(Error::kube(format!("deleting Service {name}"), e)),
        },
        Ok(None) => Ok(()),
        Err(e) if is_status(&e, 403) => Ok(()),
        Err(e) => Err(Error::kube(format!("reading Service {name}"), e)),
    }
}

/// What is known of the agent on `node` for choosing its address: the Node's addresses (when the
/// identity may read Nodes), with the agents' node port ([`node_port`], read by the caller: once per
/// probe, and only in mode `NodePort` for a transfer).
pub(super) async fn agent_place(
    client: &Client,
    node: &str,
    host_ip: Option<String>,
    node_port: Option<u16>,
    load_balancer: Option<String>,
) -> AgentPlace {
    let addresses = match Api::<Node>::all(client.clone()).get_opt(node).await {
        Ok(Some(n)) => NodeAddresses::of(&n),
        Ok(None) => NodeAddresses::default(),
        Err(e) => {
            debug!("reading node {node} for its addresses: {e}");
            NodeAddresses::default()
        }
    };
    AgentPlace {
        node: node.to_string(),
        host_ip,
        addresses,
        node_port,
        load_balancer,
    }
}

/// The node port of the agents' Service, when there is one.
pub(super) async fn node_port(client: &Client, settings: &AgentSettings) -> Option<u16> {
    let api: Api<Service> = Api::namespaced(client.clone(), &settings.namespace);
    let svc = match api
        .get_opt(&manifests::agent_node_port_service_name(settings))
        .await
    {
        Ok(s) => s?,
        Err(e) => {
            debug!("reading the agents' NodePort Service: {e}");
            return None;
        }
    };
    svc.spec?
        .ports?
        .first()
        .and_then(|p| p.node_port)
        .and_then(|p| u16::try_from(p).ok())
}

/// Exposure `LoadBalancer`: create the transfer's Service and EndpointSlice (the agent pod `agent_ip` on
/// `node`) and wait for the load balancer's address.
///
/// # Errors
/// [`Error::Kube`] when they cannot be written, [`Error::Timeout`] when no address comes within
/// `timeout`.
pub(super) async fn open_load_balancer(
    client: &Client,
    settings: &AgentSettings,
    name_for: &str,
    node: &str,
    agent_ip: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<String> {
    let (service, slice) = manifests::transfer_load_balancer(settings, name_for, node, agent_ip);
    let name = manifests::transfer_load_balancer_name(name_for);
    let services: Api<Service> = Api::namespaced(client.clone(), &settings.namespace);
    apply(&services, &name, &service).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &settings.namespace);
    apply(&slices, &name, &slice).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let svc = services
            .get(&name)
            .await
            .map_err(api_err(format!("reading Service {name}")))?;
        let ingress = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .and_then(|i| i.into_iter().find_map(|i| i.ip.or(i.hostname)));
        if let Some(address) = ingress {
            return Ok(address);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "the load balancer {}/{name} for the agent on node {node} got no address within {timeout:?} \
                 (does the source cluster have a load-balancer controller?)",
                settings.namespace
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Remove a transfer's load balancer (Service and EndpointSlice).
pub(super) async fn close_load_balancer(client: &Client, settings: &AgentSettings, name_for: &str) {
    let name = manifests::transfer_load_balancer_name(name_for);
    let services: Api<Service> = Api::namespaced(client.clone(), &settings.namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &settings.namespace);
    for result in [
        super::delete_if_present(&services, &name, &format!("Service {name}")).await,
        super::delete_if_present(&slices, &name, &format!("EndpointSlice {name}")).await,
    ] {
        if let Err(e) = result {
            tracing::warn!("cleaning up: {e}");
        }
    }
}

/// The node directory of PV `pv` when it is a `hostPath` volume (`None` for other volumes, and when the
/// PV cannot be read: it is then treated as a volume mounted under the kubelet root).
pub(super) async fn node_directory(client: &Client, pv: &str) -> Option<NodeDirectoryVolume> {
    match Api::<PersistentVolume>::all(client.clone()).get_opt(pv).await {
        Ok(Some(v)) => host_path::node_directory(&v),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(
                "reading PV {pv} (to tell a hostPath volume; the source identity needs get on \
                 persistentvolumes): {e}; treating it as a volume mounted under the kubelet root"
            );
            None
        }
    }
}

/// Remove every transfer load balancer of these agents (Services and EndpointSlices labelled for them
/// with role `transfer`): what a process that stopped mid-transfer left. A missing permission to list
/// them means none were made.
///
/// # Errors
/// [`Error::Kube`] when one cannot be listed or removed for another reason.
pub(super) async fn remove_transfer_load_balancers(client: &Client, settings: &AgentSettings) -> Result<()> {
    let selector = format!(
        "app.kubernetes.io/name={},{}=transfer",
        settings.name,
        crate::pvc::ROLE_LABEL
    );
    let params = ListParams::default().labels(&selector);
    let services: Api<Service> = Api::namespaced(client.clone(), &settings.namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &settings.namespace);
    let names = |list: std::result::Result<Vec<Option<String>>, kube::Error>| match list {
        Ok(n) => Ok(n.into_iter().flatten().collect::<Vec<String>>()),
        Err(e) if is_status(&e, 403) => Ok(Vec::new()),
        Err(e) => Err(Error::kube("listing the transfer load balancers", e)),
    };
    let svc_names = names(
        services
            .list(&params)
            .await
            .map(|l| l.items.into_iter().map(|s| s.metadata.name).collect()),
    )?;
    let slice_names = names(
        slices
            .list(&params)
            .await
            .map(|l| l.items.into_iter().map(|s| s.metadata.name).collect()),
    )?;
    for n in svc_names {
        super::delete_if_present(&services, &n, &format!("Service {n}")).await?;
    }
    for n in slice_names {
        super::delete_if_present(&slices, &n, &format!("EndpointSlice {n}")).await?;
    }
    Ok(())
}
