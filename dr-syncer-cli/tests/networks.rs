//! PVC data across separated networks: production and DR nodes on networks of their own, joined by a
//! router through which the DR nodes reach only the production nodes' "external" addresses
//! (`dr_syncer_testenv::kubelet::SimRouter`, `Routes::ExternalOnly`): a DR pod cannot route to a
//! production node's InternalIP, as between two VPCs.
//!
//! With the real agent (sshd, rsync) on the simulated nodes and the CLI as a user runs it:
//! - `--agent-exposure NodeInternalIP` stops before any copy (exit 8) with a message naming the mode
//!   that answers;
//! - with no mode, `preflight --migrate-pvc-data` reports the agent reachable at its ExternalIP;
//! - `NodeExternalIP`, `NodePort` (the simulator plays kube-proxy), `LoadBalancer` (and its
//!   load-balancer controller) and an address override (a TCP forwarder on the router, as a tunnel the
//!   platform provides) copy the data, verified on the DR side; the transfer key's `from=` still refuses
//!   a tunnel whose address it was not told;
//! - the production nodes keep their kubelet root where MicroK8s does (discovered from the nodes'
//!   label, and once given with `--kubelet-root`);
//! - a local-path (hostPath) PV is copied end to end; a hostPath PV outside the allowed prefixes is
//!   refused and nothing of it reaches the DR side.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use dr_syncer_testenv::{
    ControlPlane, agent_path, apply_yaml, init_tracing,
    kubelet::{Kubelet, Routes, SimNetwork, SimRouter, connect_from, listen_in},
    read_file, write_file,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Service};
use kube::Api;

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-cli");
const MICROK8S_ROOT: &str = "/var/snap/microk8s/common/var/lib/kubelet";

/// Two PVCs: `data` (a CSI volume of the simulator) and `cache` (a local-path volume: a hostPath PV
/// under /var/local-path-provisioner), used by a pod on the production node.
const APP: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: shop}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: cache, namespace: shop}
spec:
  storageClassName: local-path
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: app
        args: ["-c", "while true; do sleep 1; done"]
        volumeMounts: [{name: data, mountPath: /srv}, {name: cache, mountPath: /cache}]
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: data}}
      - {name: cache, persistentVolumeClaim: {claimName: cache}}
"#;

/// A hostPath PV in a directory no prefix allows, and its claim.
const OUTSIDE: &str = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: outside-pv}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {path: /srv/private-data, type: Directory}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [prod-a]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: leak, namespace: other}
spec:
  storageClassName: ""
  volumeName: outside-pv
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;

struct Run {
    code: i32,
    report: serde_json::Value,
    stderr: String,
}

fn cli(src: &ControlPlane, dst: &ControlPlane, namespace: &str, args: &[&str]) -> Run {
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .arg("--source-kubeconfig")
        .arg(src.kubeconfig())
        .arg("--dest-kubeconfig")
        .arg(dst.kubeconfig())
        .args([
            "--source-namespace",
            namespace,
            "--resource-types",
            "persistentvolumeclaims",
            "--output",
            "json",
            "--yes",
        ])
        .args(if args.contains(&"--data-wait-timeout") {
            &[][..]
        } else {
            &["--data-wait-timeout", "90s"][..]
        })
        .args(args)
        .output()
        .expect("run dr-syncer-cli");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("dr-syncer-cli {} took {:?}", args.join(" "), started.elapsed());
    Run {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned() + &stdout,
    }
}

/// The node directory of a bound claim's hostPath PV, and its node.
async fn host_path_of(cp: &ControlPlane, ns: &str, claim: &str) -> (String, String) {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(cp.client(), ns);
    let pvs: Api<PersistentVolume> = Api::all(cp.client());
    let pv = dr_syncer_testenv::wait_for("the claim bound", Duration::from_secs(30), || async {
        Ok(pvcs
            .get_opt(claim)
            .await?
            .and_then(|c| c.spec.and_then(|s| s.volume_name)))
    })
    .await
    .unwrap();
    let pv = pvs.get(&pv).await.unwrap();
    let spec = pv.spec.unwrap();
    let node = spec
        .node_affinity
        .and_then(|a| a.required)
        .and_then(|r| r.node_selector_terms.into_iter().next())
        .and_then(|t| t.match_expressions.and_then(|e| e.into_iter().next()))
        .and_then(|e| e.values.and_then(|v| v.into_iter().next()))
        .expect("a local-path PV names its node");
    (node, spec.host_path.expect("a hostPath PV").path)
}

/// A TCP forwarder in network namespace `netns`: accepts on `listen` and connects to `to` (a tunnel the
/// platform provides). Runs until the process ends.
fn forwarder(netns: &str, listen: &str, to: &str) {
    let listener = listen_in(netns, listen).expect("listen in the router's namespace");
    let (netns, to) = (netns.to_string(), to.to_string());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = connect_from(&netns, &to, Duration::from_secs(5)) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut into: TcpStream| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown(Shutdown::Write);
                });
            };
            if let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) {
                pipe(client, u2);
                pipe(upstream, c2);
            }
        }
    });
}

fn synced(run: &Run, pvcs: &[&str]) {
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.report);
    let data = run.report["data"].as_array().cloned().unwrap_or_default();
    for pvc in pvcs {
        let entry = data
            .iter()
            .find(|d| d["pvc"].as_str().is_some_and(|p| p.ends_with(pvc)) || d["name"] == *pvc)
            .unwrap_or_else(|| panic!("no data entry for {pvc}: {}", run.report));
        assert_eq!(entry["status"], "Synced", "{pvc}: {}", run.report);
    }
}

// Multi-threaded: the simulated nodes run on the runtime while the CLI runs as a blocking child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movers_reach_agents_across_separated_networks_by_the_chosen_exposure() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    init_tracing();
    let agent = agent_path().expect("the agent binary");
    let [src, dst] = ControlPlane::start_many(["net-src", "net-dr"]).await.unwrap();
    let (prod_net, dr_net) = (SimNetwork::create().unwrap(), SimNetwork::create().unwrap());
    let router = SimRouter::create().unwrap();
    router.join(&prod_net, "10.94.0.1", Routes::Everything).unwrap();
    router.join(&dr_net, "10.95.0.1", Routes::ExternalOnly).unwrap();
    let prod = Kubelet::builder(&src, &prod_net)
        .node("prod-a", "10.94.0.11")
        .node_external_ip("prod-a", "203.0.113.11")
        .node_labels("prod-a", &[("microk8s.io/cluster", "true")])
        .kubelet_root(MICROK8S_ROOT)
        .image("dr-syncer-agent", &agent)
        .image("app", "/bin/sh")
        .start()
        .await
        .unwrap();
    let dr = Kubelet::builder(&dst, &dr_net)
        .node("dr-a", "10.95.0.21")
        .image("dr-syncer-agent", &agent)
        .image("app", "/bin/sh")
        .start()
        .await
        .unwrap();
    for cp in [&src, &dst] {
        apply_yaml(
            &cp.client(),
            None,
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local-path}\nprovisioner: rancher.io/local-path\n",
        )
        .await
        .unwrap();
    }
    for ns in ["shop", "other"] {
        apply_yaml(
            &src.client(),
            None,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
        )
        .await
        .unwrap();
    }
    apply_yaml(&src.client(), None, APP).await.unwrap();
    let data = prod
        .bound_volume_dir("shop", "data", Duration::from_secs(30))
        .await
        .unwrap();
    let (cache_node, cache_path) = host_path_of(&src, "shop", "cache").await;
    assert!(
        cache_path.starts_with("/var/local-path-provisioner/"),
        "{cache_path}"
    );
    let cache: PathBuf = prod.host_path(&cache_node, &cache_path);
    write_file(&data, "orders/1.json", "{\"id\":1}");
    write_file(&cache, "thumbs/a.png", "png-a");
    // The pod's volumes are below the MicroK8s kubelet root on this node.
    assert!(
        prod.kubelet_root("prod-a")
            .ends_with(MICROK8S_ROOT.trim_start_matches('/'))
    );

    // 1. InternalIP: the DR side cannot route there. Stopped before anything is copied, naming the
    // mode that answers.
    let run = cli(
        &src,
        &dst,
        "shop",
        &[
            "stage",
            "--migrate-pvc-data",
            "--agent-exposure",
            "NodeInternalIP",
        ],
    );
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(
        run.stderr.contains("10.94.0.11:2222 (NodeInternalIP)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("NodeExternalIP answers at 203.0.113.11:2222")
            && run.stderr.contains("--agent-exposure NodeExternalIP"),
        "{}\n{}\n{}",
        run.stderr,
        src.pod_logs_tail(40),
        dst.pod_logs_tail(40)
    );

    // 2. No mode chosen: the preflight finds the ExternalIP.
    let run = cli(&src, &dst, "shop", &["preflight", "--migrate-pvc-data"]);
    let checks = run.report["checks"].as_array().cloned().unwrap_or_default();
    let path = checks
        .iter()
        .find(|c| c["name"] == "PVC data path")
        .unwrap_or_else(|| panic!("no data path check: {}\n{}", run.report, run.stderr));
    assert_eq!(path["status"], "ok", "{path}");
    assert!(
        path["message"]
            .as_str()
            .is_some_and(|m| m.contains("prod-a at 203.0.113.11:2222 (NodeExternalIP)")),
        "{path}"
    );

    // 3. NodeExternalIP: both volumes copied (the local-path one from its node directory).
    let run = cli(
        &src,
        &dst,
        "shop",
        &[
            "stage",
            "--migrate-pvc-data",
            "--agent-exposure",
            "NodeExternalIP",
        ],
    );
    synced(&run, &["data", "cache"]);
    let dr_data = dr
        .bound_volume_dir("shop", "data", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        read_file(&dr_data, "orders/1.json").as_deref(),
        Some("{\"id\":1}")
    );
    let (dr_cache_node, dr_cache_path) = host_path_of(&dst, "shop", "cache").await;
    let dr_cache = dr.host_path(&dr_cache_node, &dr_cache_path);
    assert_eq!(read_file(&dr_cache, "thumbs/a.png").as_deref(), Some("png-a"));

    // 4. NodePort (a Service of the agents; kube-proxy simulated), the kubelet root given. The
    // simulated kube-proxy is a userspace proxy: the agent sees the node's own address, not the
    // mover's (a real one with externalTrafficPolicy Local keeps it), hence the source address.
    write_file(&data, "orders/2.json", "{\"id\":2}");
    let run = cli(
        &src,
        &dst,
        "shop",
        &[
            "stage",
            "--migrate-pvc-data",
            "--agent-exposure",
            "NodePort",
            "--kubelet-root",
            MICROK8S_ROOT,
            "--mover-source-address",
            "10.94.0.11",
        ],
    );
    synced(&run, &["data", "cache"]);
    assert_eq!(
        read_file(&dr_data, "orders/2.json").as_deref(),
        Some("{\"id\":2}")
    );

    // 4b. LoadBalancer: a load balancer made for each transfer (the simulator's controller gives it an
    // address and routes it to the volume's node), removed afterwards.
    write_file(&data, "orders/lb.json", "{\"lb\":true}");
    let run = cli(
        &src,
        &dst,
        "shop",
        &["stage", "--migrate-pvc-data", "--agent-exposure", "LoadBalancer"],
    );
    synced(&run, &["data", "cache"]);
    assert_eq!(
        read_file(&dr_data, "orders/lb.json").as_deref(),
        Some("{\"lb\":true}")
    );
    let services: Api<Service> = Api::namespaced(src.client(), "dr-syncer-system");
    let left: Vec<String> = services
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert!(left.is_empty(), "Services left: {left:?}");
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(src.client(), "dr-syncer-system");
    assert!(
        slices.list(&Default::default()).await.unwrap().items.is_empty(),
        "EndpointSlices left"
    );

    // 5. An address override: a forwarder on the router (reachable from the DR nodes at their
    // gateway) to the agent; the agent sees the router's address, named as the movers' source.
    forwarder(router.netns(), "10.95.0.1:4022", "10.94.0.11:2222");
    write_file(&data, "orders/3.json", "{\"id\":3}");
    write_file(&cache, "thumbs/b.png", "png-b");
    let run = cli(
        &src,
        &dst,
        "shop",
        &[
            "stage",
            "--migrate-pvc-data",
            "--agent-address",
            "10.95.0.1:4022",
            "--mover-source-address",
            "10.94.0.1",
        ],
    );
    synced(&run, &["data", "cache"]);
    assert_eq!(
        read_file(&dr_data, "orders/3.json").as_deref(),
        Some("{\"id\":3}")
    );
    assert_eq!(read_file(&dr_cache, "thumbs/b.png").as_deref(), Some("png-b"));
    // Without the source address, the same tunnel is refused by the transfer key's from= (the
    // mover waits for its key to be accepted as long as the data wait allows, then fails).
    write_file(&data, "orders/4.json", "{\"id\":4}");
    let run = cli(
        &src,
        &dst,
        "shop",
        &[
            "stage",
            "--migrate-pvc-data",
            "--agent-address",
            "10.95.0.1:4022",
            "--data-wait-timeout",
            "15s",
        ],
    );
    assert_ne!(run.code, 0, "{}\n{}", run.stderr, run.report);
    assert!(
        run.stderr
            .contains("shop/data → shop/data (data: authentication to 10.95.0.1 failed"),
        "{}",
        run.stderr
    );
    assert_eq!(
        read_file(&dr_data, "orders/4.json"),
        None,
        "nothing copied past from="
    );

    // 6. A hostPath PV outside the allowed prefixes: refused, nothing reaches the DR side.
    let private = prod.host_path("prod-a", "/srv/private-data");
    write_file(&private, "secret.txt", "do not copy");
    apply_yaml(&src.client(), None, OUTSIDE).await.unwrap();
    let run = cli(
        &src,
        &dst,
        "other",
        &[
            "stage",
            "--migrate-pvc-data",
            "--agent-exposure",
            "NodeExternalIP",
        ],
    );
    assert_ne!(run.code, 0, "{}\n{}", run.stderr, run.report);
    assert!(
        run.stderr
            .contains("not below a directory the source RemoteCluster allows")
            || run
                .report
                .to_string()
                .contains("not below a directory the source RemoteCluster allows"),
        "{}\n{}",
        run.stderr,
        run.report
    );
    let movers: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(dst.client(), "other");
    let lp = kube::api::ListParams::default().labels("dr-syncer.io/role=mover");
    assert!(
        movers.list(&lp).await.unwrap().items.is_empty(),
        "no mover was started"
    );
    drop((prod, dr, router));
}
