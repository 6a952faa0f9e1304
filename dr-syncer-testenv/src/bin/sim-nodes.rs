//! `sim-nodes`: simulated nodes (kubelet, scheduler, DaemonSet, Deployment and StatefulSet controllers, PV
//! provisioner; see `dr_syncer_testenv::kubelet`) for control planes started with `scripts/testenv.sh`, so
//! that pods run — the dr-syncer agent with sshd and rsync among them — and PVCs get storage. Used by
//! `scripts/demo.sh` to show PVC data moving; needs root (network namespaces, bind mounts).
//!
//! ```text
//! sim-nodes [--image NAME=BINARY]... [--state FILE] CLUSTER=KUBECONFIG=NODE@IP[,NODE@IP]...
//! ```
//!
//! Each cluster's pod logs go to `pod-logs/` next to its kubeconfig (where `scripts/testenv.sh` points
//! `kapi serve --pod-log-dir`). Once the nodes are up, `--state` gets one line per cluster,
//! `<cluster> <storage directory>` (a PV's data is `<storage directory>/<pv name>`), and "ready" is
//! printed. Runs until SIGTERM or SIGINT, then stops every process it started, unmounts and removes
//! the node namespaces.

use std::{path::PathBuf, process::ExitCode};

use dr_syncer_testenv::{
    client_from_kubeconfig,
    kubelet::{Kubelet, SimNetwork, unavailable_reason},
};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str =
    "usage: sim-nodes [--image NAME=BINARY]... [--state FILE] CLUSTER=KUBECONFIG=NODE@IP[,NODE@IP]...";

struct Cluster {
    name: String,
    kubeconfig: PathBuf,
    nodes: Vec<(String, String)>,
}

struct Args {
    images: Vec<(String, PathBuf)>,
    state: Option<PathBuf>,
    clusters: Vec<Cluster>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        images: Vec::new(),
        state: None,
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
            "-h" | "--help" => return Err(USAGE.into()),
            _ => {
                let mut parts = arg.splitn(3, '=');
                let (Some(name), Some(kubeconfig), Some(nodes)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!(
                        "{arg}: expected CLUSTER=KUBECONFIG=NODE@IP[,NODE@IP]\n{USAGE}"
                    ));
                };
                let nodes = nodes
                    .split(',')
                    .map(|n| {
                        n.split_once('@')
                            .map(|(node, ip)| (node.to_owned(), ip.to_owned()))
                            .ok_or(format!("{n}: expected NODE@IP"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
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
    let network = SimNetwork::create().map_err(|e| e.to_string())?;
    let mut kubelets = Vec::new();
    let mut state = String::new();
    for c in &args.clusters {
        let client = client_from_kubeconfig(&c.kubeconfig)
            .await
            .map_err(|e| format!("{}: {e}", c.name))?;
        let logs = c
            .kubeconfig
            .parent()
            .map(|d| d.join("pod-logs"))
            .unwrap_or_else(|| "pod-logs".into());
        let mut builder = Kubelet::builder_for(client, &c.name, logs, &network);
        for (node, ip) in &c.nodes {
            builder = builder.node(node, ip);
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
    let _keep = (kubelets, network);
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
