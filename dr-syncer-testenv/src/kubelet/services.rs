//! The simulated kube-proxy and load-balancer controller: NodePort and LoadBalancer Services become
//! TCP forwarders ([`super::proxy`]) in the node namespaces; load balancers get an ingress IP from
//! [`super::network::LOAD_BALANCER_RANGE`], put on the node of their first endpoint.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicU32, Ordering},
};

use k8s_openapi::{
    api::{
        core::v1::{Pod, Service, ServicePort},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use super::{Config, proxy};

/// Load-balancer IPs handed out in this process (unique across simulators sharing a router).
static LB_IPS: AtomicU32 = AtomicU32::new(0);

/// A forwarder: (node netns, listen address, target).
pub(crate) type ProxyKey = (String, SocketAddr, SocketAddr);

/// What the load-balancer controller placed: service uid → (ingress IP, node netns).
#[derive(Debug, Default)]
pub(crate) struct LbState {
    placed: HashMap<String, (String, String)>,
}

/// One ready endpoint of a service port: the node it is on, its IP, the target port.
#[derive(Debug, Clone)]
struct Ep {
    node: String,
    ip: Ipv4Addr,
    port: u16,
}

fn next_lb_ip() -> String {
    let n = LB_IPS.fetch_add(1, Ordering::SeqCst);
    format!("198.51.100.{}", 10 + n % 240)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The target port of `sp` on `pod` (a named target port looked up in its containers' ports).
fn pod_target_port(sp: &ServicePort, pod: &Pod) -> Option<u16> {
    let port = match &sp.target_port {
        None => sp.port,
        Some(IntOrString::Int(p)) => *p,
        Some(IntOrString::String(name)) => name.parse().ok().or_else(|| {
            pod.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port)
            })
        })?,
    };
    u16::try_from(port).ok()
}

/// The ready endpoints of `sp` of service `svc` on this simulator's nodes.
fn endpoints(
    config: &Config,
    svc: &Service,
    sp: &ServicePort,
    pods: &[Pod],
    slices: &[EndpointSlice],
) -> Vec<Ep> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    if !selector.is_empty() {
        for pod in pods {
            if pod.namespace().as_deref() != Some(ns.as_str())
                || pod.metadata.deletion_timestamp.is_some()
                || !selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
                || pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
                || !is_ready(pod)
            {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let Some(info) = config.node(&node) else { continue };
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_else(|| info.ip.clone());
            if let (Ok(ip), Some(port)) = (ip.parse(), pod_target_port(sp, pod)) {
                out.push(Ep { node, ip, port });
            }
        }
        return out;
    }
    for slice in slices {
        if slice.namespace().as_deref() != Some(ns.as_str())
            || slice.labels().get("kubernetes.io/service-name") != Some(&name)
        {
            continue;
        }
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name == sp.name || (p.name.as_deref().unwrap_or("") == sp.name.as_deref().unwrap_or(""))
            })
            .and_then(|p| p.port)
            .or(match &sp.target_port {
                Some(IntOrString::Int(p)) => Some(*p),
                None => Some(sp.port),
                Some(IntOrString::String(_)) => None,
            });
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &ep.addresses {
                let node = ep
                    .node_name
                    .clone()
                    .filter(|n| config.node(n).is_some())
                    .or_else(|| {
                        config
                            .nodes
                            .iter()
                            .find(|n| &n.ip == addr)
                            .map(|n| n.name.clone())
                    });
                if let (Some(node), Ok(ip)) = (node, addr.parse()) {
                    out.push(Ep { node, ip, port });
                }
            }
        }
    }
    out
}

/// Bring the forwarders and load-balancer addresses in line with the Services and their endpoints.
pub(crate) async fn reconcile(
    config: &Config,
    shared: &std::sync::Mutex<super::Shared>,
    state: &mut LbState,
    pods: &[Pod],
) -> crate::Result<()> {
    let client = config.client.clone();
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let slices = match Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            tracing::debug!(error = %e, "simulated kube-proxy: listing EndpointSlices");
            Vec::new()
        }
    };
    let mut wanted: BTreeMap<ProxyKey, bool> = BTreeMap::new(); // false: served by the endpoint itself
    let mut placements: HashMap<String, (String, String)> = HashMap::new();
    for svc in &services {
        let Some(spec) = &svc.spec else { continue };
        if svc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let is_lb = spec.type_.as_deref() == Some("LoadBalancer");
        let local = spec.external_traffic_policy.as_deref() == Some("Local");
        let uid = svc.uid().unwrap_or_default();
        let mut lb_ip = None;
        if is_lb {
            let current = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .and_then(|i| i.first())
                .and_then(|i| i.ip.clone());
            let ip = match current {
                Some(ip) => ip,
                None => {
                    let ip = state
                        .placed
                        .get(&uid)
                        .map(|(ip, _)| ip.clone())
                        .unwrap_or_else(next_lb_ip);
                    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
                    Api::<Service>::namespaced(client.clone(), &svc.namespace().unwrap_or_default())
                        .patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                        .await?;
                    ip
                }
            };
            lb_ip = ip.parse::<Ipv4Addr>().ok();
        }
        for sp in spec.ports.iter().flatten() {
            if sp.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            let eps = endpoints(config, svc, sp, pods, slices.as_slice());
            let Some(first) = eps.first() else { continue };
            if let Some(node_port) = sp
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
            {
                let nodes: Vec<String> = if local {
                    eps.iter().map(|e| e.node.clone()).collect()
                } else {
                    config.nodes.iter().map(|n| n.name.clone()).collect()
                };
                for node in nodes {
                    let ep = eps.iter().find(|e| e.node == node).unwrap_or(first);
                    let Some(netns) = config.netns.get(&node) else {
                        continue;
                    };
                    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), node_port);
                    let target = SocketAddr::new(IpAddr::V4(ep.ip), ep.port);
                    wanted.insert((netns.clone(), listen, target), true);
                }
            }
            if let (Some(ip), Ok(port)) = (lb_ip, u16::try_from(sp.port)) {
                let Some(netns) = config.netns.get(&first.node) else {
                    continue;
                };
                placements.insert(uid.clone(), (ip.to_string(), netns.clone()));
                let listen = SocketAddr::new(IpAddr::V4(ip), port);
                let target = SocketAddr::new(IpAddr::V4(first.ip), first.port);
                // An endpoint on that node listening on the same port on all addresses serves the load
                // balancer's address itself; a listener of ours would take the port from it.
                let direct = port == first.port
                    && config
                        .node(&first.node)
                        .is_some_and(|n| n.ip == first.ip.to_string());
                wanted.insert((netns.clone(), listen, target), !direct);
            }
        }
    }
    // Load-balancer addresses: moved or gone ones removed, new ones added.
    let old: Vec<(String, (String, String))> = state
        .placed
        .iter()
        .filter(|(uid, p)| placements.get(*uid) != Some(p))
        .map(|(u, p)| (u.clone(), p.clone()))
        .collect();
    let Some(network) = config.network() else {
        return Ok(()); // shutting down
    };
    for (uid, (ip, netns)) in old {
        network.remove_address(&netns, &ip);
        state.placed.remove(&uid);
    }
    for (uid, (ip, netns)) in placements {
        if state.placed.contains_key(&uid) {
            continue;
        }
        let node_ip = config
            .netns
            .iter()
            .find(|(_, ns)| **ns == netns)
            .and_then(|(node, _)| config.node(node))
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        match network.add_address(&netns, &node_ip, &ip) {
            Ok(()) => {
                state.placed.insert(uid, (ip, netns));
            }
            Err(e) => tracing::warn!(%ip, error = %e, "simulated load balancer: adding its address"),
        }
    }
    // Forwarders.
    let Ok(mut shared) = shared.lock() else {
        return Ok(());
    };
    shared.proxies.retain(|k, _| wanted.contains_key(k));
    for (key, forward) in wanted {
        if shared.proxies.contains_key(&key) {
            continue;
        }
        if !forward {
            shared.proxies.insert(key, None);
            continue;
        }
        let (netns, listen, target) = &key;
        match proxy::start(netns, *listen, *target) {
            Ok(p) => {
                tracing::debug!(%netns, %listen, %target, "simulated kube-proxy: forwarding");
                shared.proxies.insert(key, Some(p));
            }
            Err(e) => tracing::warn!(%netns, %listen, error = %e, "simulated kube-proxy: listening"),
        }
    }
    Ok(())
}
