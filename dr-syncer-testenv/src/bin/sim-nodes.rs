//! `sim-nodes`: simulated nodes (kubelet, scheduler, DaemonSet, Deployment and StatefulSet controllers, PV
//! provisioner; see `dr_syncer_testenv::kubelet`) for control planes started with `scripts/testenv.sh`, so
//! that pods run — the dr-syncer agent with sshd and rsync among them — and PVCs get storage. Used by
//! `scripts/demo.sh` to show PVC data moving; needs root (network namespaces, bind mounts).
//!
//! ```text
//! sim-nodes [--image NAME=BINARY]... [--state FILE] [--separate-networks]
//!           CLUSTER=KUBECONFIG=NODE@IP[/EXTERNAL_IP][,NODE@IP[/EXTERNAL_IP]]...
//! ```
//!
//! Without `--separate-networks` all nodes share one network. With it, each cluster gets a network of
//! its own, joined to one router: the first cluster's (production) with a default route, the others
//! (DR) with routes to the external ranges only (203.0.113.0/24 for node external IPs, 198.51.100.0/24
//! for load balancers), so DR nodes reach production nodes only at their external IPs, which every
//! node of the first cluster must then have (`NODE@IP/EXTERNAL_IP`). The router's address on each
//! network is `.1` of the network's /24 (no node may use it).
//!
//! Each cluster's pod logs go to `pod-logs/` next to its kubeconfig (where `scripts/testenv.sh` points
//! `kapi serve --pod-log-dir`). Once the nodes are up, `--state` gets one line per cluster,
//! `<cluster> <storage directory>` (a PV's data is `<storage directory>/<pv name>`), and "ready" is
//! printed. Runs until SIGTERM or SIGINT, then stops every process it started, unmounts and removes
//! the node namespaces.

use std::{path::PathBuf, process::ExitCode};

use dr_syncer_testenv::{
    client_from_kubeconfig,
    kubelet::{Kubelet, Routes, SimNetwork, SimRouter, unavailable_reason},
};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: sim-nodes [--image NAME=BINARY]... [--state FILE] [--separate-networks] \
                     CLUSTER=KUBECONFIG=NODE@IP[/EXTERNAL_IP][,NODE@IP[/EXTERNAL_IP]]...";

struct Node {
    name: String,
    ip: String,
    external_ip: Option<String>,
}

struct Cluster {
    name: String,
    kubeconfig: PathBuf,
    nodes: Vec<Node>,
}

struct Args {
    images: Vec<(String, PathBuf)>,
    state: Option<PathBuf>,
    separate: bool,
    clusters: Vec<Cluster>,
}

/// `NODE@IP` or `NODE@IP/EXTERNAL_IP`.
fn parse_node(n: &str) -> Result<Node, String> {
    let (name, addrs) = n
        .split_once('@')
        .ok_or(format!("{n}: expected NODE@IP or NODE@IP/EXTERNAL_IP"))?;
    let (ip, external_ip) = match addrs.split_once('/') {
        Some((ip, ext)) => (ip, Some(ext.to_owned())),
        None => (addrs, None),
    };
    for a in std::iter::once(ip).chain(external_ip.as_deref()) {
        a.parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("{n}: {a} is not an IPv4 address"))?;
    }
    Ok(Node {
        name: name.to_owned(),
        ip: ip.to_owned(),
        external_ip,
    })
}

/// The router's address on the /24 of `ip`: `.1`.
fn gateway_of(ip: &str) -> String {
    let mut parts: Vec<&str> = ip.split('.').collect();
    if let Some(last) = parts.last_mut() {
        *last = "1";
    }
    parts.join(".")
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        images: Vec::new(),
        state: None,
        separate: false,
        clusters: Vec::new(),
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--image" => {
                let v = args.next().ok_or("--image needs NAME=BINARY")?;
                let (name, bin) = v
                    .split_once('=')
                    .ok_or(format!("--image {v}: expected NAME=BINARY"))?;
                out.images.push((name.to_owned(), bin.into()));
            }
            "--state" => out.state = Some(args.next().ok_or("--state needs a file")?.into()),
            "--separate-networks" => out.separate = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => {
                let mut parts = arg.splitn(3, '=');
                let (Some(name), Some(kubeconfig), Some(nodes)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!(
                        "{arg}: expected CLUSTER=KUBECONFIG=NODE@IP[/EXTERNAL_IP][,...]\n{USAGE}"
                    ));
                };
                let nodes = nodes.split(',').map(parse_node).collect::<Result<Vec<_>, _>>()?;
                out.clusters.push(Cluster {
                    name: name.to_owned(),
                    kubeconfig: kubeconfig.into(),
                    nodes,
                });
            }
        }
    }
    if out.clusters.is_empty() {
        return Err(USAGE.into());
    }
    if out.separate
        && let Some(first) = out.clusters.first()
    {
        for n in &first.nodes {
            if n.external_ip.is_none() {
                return Err(format!(
                    "--separate-networks: node {} of the first cluster ({}) needs an external IP \
                     (NODE@IP/EXTERNAL_IP, from 203.0.113.0/24): the other clusters reach it only there",
                    n.name, first.name
                ));
            }
        }
        for c in &out.clusters {
            for n in &c.nodes {
                if n.ip == gateway_of(&n.ip) {
                    return Err(format!(
                        "--separate-networks: node {} may not use {}, the router's address",
                        n.name, n.ip
                    ));
                }
            }
        }
    }
    Ok(out)
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(why) = unavailable_reason() {
        return Err(why);
    }
    // From the start: a signal during setup still removes what was set up (by the drops below).
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        r = serve(&args) => r,
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    }
}

/// Start the nodes, announce them, and run until the future is dropped (which stops everything).
async fn serve(args: &Args) -> Result<(), String> {
    let shared = SimNetwork::create().map_err(|e| e.to_string())?;
    let router = if args.separate {
        Some(SimRouter::create().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut networks = Vec::new();
    let mut kubelets = Vec::new();
    let mut state = String::new();
    for (i, c) in args.clusters.iter().enumerate() {
        let network = match &router {
            Some(router) => {
                let net = SimNetwork::create().map_err(|e| e.to_string())?;
                let gateway = c.nodes.first().map(|n| gateway_of(&n.ip)).unwrap_or_default();
                let routes = if i == 0 {
                    Routes::Everything
                } else {
                    Routes::ExternalOnly
                };
                router
                    .join(&net, &gateway, routes)
                    .map_err(|e| format!("{}: {e}", c.name))?;
                networks.push(net.clone());
                net
            }
            None => shared.clone(),
        };
        let client = client_from_kubeconfig(&c.kubeconfig)
            .await
            .map_err(|e| format!("{}: {e}", c.name))?;
        let logs = c
            .kubeconfig
            .parent()
            .map(|d| d.join("pod-logs"))
            .unwrap_or_else(|| "pod-logs".into());
        let mut builder = Kubelet::builder_for(client, &c.name, logs, &network);
        for n in &c.nodes {
            builder = builder.node(&n.name, &n.ip);
            if let Some(ext) = &n.external_ip {
                builder = builder.node_external_ip(&n.name, ext);
            }
        }
        for (image, binary) in &args.images {
            builder = builder.image(image, binary);
        }
        let kubelet = builder.start().await.map_err(|e| format!("{}: {e}", c.name))?;
        state.push_str(&format!("{} {}\n", c.name, kubelet.storage_dir().display()));
        kubelets.push(kubelet);
    }
    if let Some(path) = &args.state {
        // Complete or absent for whoever waits for it: written aside, then renamed into place.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &state)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("ready");
    // Until a signal drops this future: dropping the simulators and the network stops the pods'
    // processes and removes their mounts and namespaces.
    let _keep = (kubelets, networks, shared, router);
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    dr_syncer_testenv::init_tracing();
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim-nodes: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, String> {
        parse(a.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn nodes_with_external_ips() {
        let a = args(&[
            "--separate-networks",
            "prod=k1=p1@10.90.0.11/203.0.113.11",
            "dr=k2=d1@10.91.0.11",
        ])
        .expect("valid");
        assert!(a.separate);
        let n = &a.clusters[0].nodes[0];
        assert_eq!((n.name.as_str(), n.ip.as_str()), ("p1", "10.90.0.11"));
        assert_eq!(n.external_ip.as_deref(), Some("203.0.113.11"));
        assert_eq!(a.clusters[1].nodes[0].external_ip, None);
        assert_eq!(gateway_of("10.91.0.11"), "10.91.0.1");
    }

    #[test]
    fn separate_networks_need_production_external_ips() {
        let e = args(&[
            "--separate-networks",
            "prod=k1=p1@10.90.0.11",
            "dr=k2=d1@10.91.0.11",
        ])
        .err()
        .expect("error");
        assert!(e.contains("p1") && e.contains("external IP"), "{e}");
        // Without separation, plain NODE@IP as before.
        assert!(args(&["prod=k1=p1@10.90.0.11,p2@10.90.0.12"]).is_ok());
        assert!(args(&["prod=k1=p1@nonsense"]).is_err());
    }
}
