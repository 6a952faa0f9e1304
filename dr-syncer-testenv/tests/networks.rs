//! Separated production and DR networks joined by a router (`SimRouter`), node external IPs, the
//! simulated kube-proxy (NodePort with `externalTrafficPolicy: Local`, LoadBalancer with an
//! EndpointSlice), a configurable kubelet root and local-path / hostPath / local PersistentVolumes.
//!
//! Needs root (network namespaces, bind mounts); skipped with a message otherwise.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpListener,
    time::Duration,
};

use dr_syncer_testenv::{
    ControlPlane, apply_yaml, create_namespace, init_tracing,
    kubelet::{Kubelet, Routes, SimNetwork, SimRouter, connect_from, listen_in},
    wait_for,
};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use kube::{Api, api::DeleteParams};

const T: Duration = Duration::from_secs(30);
const C: Duration = Duration::from_secs(2);

/// A production cluster (prod-1, prod-2 with external IPs; network with a default route) and a DR
/// cluster (dr-1; external routes only), on separate networks joined by one router.
struct Clusters {
    prod: ControlPlane,
    dr: ControlPlane,
    prod_k: Kubelet,
    dr_k: Kubelet,
    _nets: (SimNetwork, SimNetwork, SimRouter),
}

async fn separated(name: &str) -> Clusters {
    init_tracing();
    let [prod, dr] = ControlPlane::start_many([&format!("{name}-prod"), &format!("{name}-dr")])
        .await
        .expect("control planes");
    let (prod_net, dr_net) = (SimNetwork::create().unwrap(), SimNetwork::create().unwrap());
    let router = SimRouter::create().expect("router");
    router.join(&prod_net, "10.90.0.1", Routes::Everything).unwrap();
    router.join(&dr_net, "10.91.0.1", Routes::ExternalOnly).unwrap();
    let prod_k = Kubelet::builder(&prod, &prod_net)
        .node("prod-1", "10.90.0.11")
        .node_external_ip("prod-1", "203.0.113.11")
        .node("prod-2", "10.90.0.12")
        .node_external_ip("prod-2", "203.0.113.12")
        .image("busybox", "/bin/sh")
        .start()
        .await
        .expect("prod nodes");
    let dr_k = Kubelet::builder(&dr, &dr_net)
        .node("dr-1", "10.91.0.11")
        .image("busybox", "/bin/sh")
        .start()
        .await
        .expect("dr nodes");
    Clusters {
        prod,
        dr,
        prod_k,
        dr_k,
        _nets: (prod_net, dr_net, router),
    }
}

/// Answer every connection with `greeting` (in a thread, for the rest of the test process).
fn serve(listener: TcpListener, greeting: &'static str) {
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(greeting.as_bytes());
        }
    });
}

fn read_all(mut s: std::net::TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Connect from `netns` to `addr` until it answers (at most `T`); what it said.
async fn dial(netns: &str, addr: &str) -> String {
    let (netns, addr) = (netns.to_owned(), addr.to_owned());
    wait_for(&format!("{addr} reachable from {netns}"), T, || {
        let (netns, addr) = (netns.clone(), addr.clone());
        async move {
            let got = tokio::task::spawn_blocking(move || connect_from(&netns, &addr, C).map(read_all))
                .await
                .unwrap();
            Ok(got.ok().filter(|s| !s.is_empty()))
        }
    })
    .await
    .unwrap()
}

/// Connect from `netns` to `addr` until it fails with `kind` (at most `T`).
async fn refused(netns: &str, addr: &str, kind: ErrorKind) {
    let (netns, addr) = (netns.to_owned(), addr.to_owned());
    wait_for(&format!("{addr} failing with {kind:?} from {netns}"), T, || {
        let (netns, addr) = (netns.clone(), addr.clone());
        async move {
            let r = tokio::task::spawn_blocking(move || connect_from(&netns, &addr, C))
                .await
                .unwrap();
            Ok(r.err().filter(|e| e.kind() == kind).map(|_| ()))
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dr_nodes_reach_production_nodes_only_at_external_ips() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let c = separated("net-reach").await;
    let node: Node = Api::all(c.prod.client()).get("prod-1").await.unwrap();
    let addrs = node.status.unwrap().addresses.unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "10.90.0.11")
    );
    assert!(
        addrs
            .iter()
            .any(|a| a.type_ == "ExternalIP" && a.address == "203.0.113.11")
    );
    assert_eq!(
        c.prod_k.node_external_ip("prod-1").as_deref(),
        Some("203.0.113.11")
    );
    let dr_node: Node = Api::all(c.dr.client()).get("dr-1").await.unwrap();
    assert!(
        !dr_node
            .status
            .unwrap()
            .addresses
            .unwrap()
            .iter()
            .any(|a| a.type_ == "ExternalIP"),
        "no external IP asked for"
    );

    serve(
        listen_in(&c.prod_k.netns("prod-1"), "0.0.0.0:7000").unwrap(),
        "from prod-1",
    );
    let dr1 = c.dr_k.netns("dr-1");
    let prod2 = c.prod_k.netns("prod-2");

    // DR → production: the external IP works, the internal IP has no route.
    let got = tokio::task::spawn_blocking({
        let dr1 = dr1.clone();
        move || connect_from(&dr1, "203.0.113.11:7000", C).map(read_all)
    })
    .await
    .unwrap()
    .expect("external IP reachable from DR");
    assert_eq!(got, "from prod-1");
    let err = connect_from(&dr1, "10.90.0.11:7000", C).expect_err("internal IP must not route");
    assert_eq!(err.kind(), ErrorKind::NetworkUnreachable, "{err}");
    // Nothing listens on the other production node's external IP: refused, but routed.
    let err = connect_from(&dr1, "203.0.113.12:7000", C).expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    // Inside production as before (production cannot dial DR internal addresses either: DR nodes have
    // no route back to production's internal /24).
    let got = tokio::task::spawn_blocking(move || connect_from(&prod2, "10.90.0.11:7000", C).map(read_all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "from prod-1");
}

#[tokio::test]
async fn nodeport_service_with_local_policy_forwards_only_on_endpoint_nodes() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let c = separated("net-nodeport").await;
    let client = c.prod.client();
    let ns = create_namespace(&client, "np").await.unwrap();
    // The "agent": a pod on prod-1 (its process sleeps); the test listens on its port in prod-1's netns.
    serve(
        listen_in(&c.prod_k.netns("prod-1"), "0.0.0.0:7022").unwrap(),
        "agent on prod-1",
    );
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: Pod
metadata: {name: agent, labels: {app: agent}}
spec:
  nodeSelector: {kubernetes.io/hostname: prod-1}
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: [/bin/sh], args: ["-c", "exec sleep 3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: agent}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: agent}
  ports: [{name: ssh, port: 2222, targetPort: 7022}]
"#,
    )
    .await
    .unwrap();
    let svc: Service = Api::namespaced(client.clone(), &ns).get("agent").await.unwrap();
    let node_port = svc.spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("nodePort allocated");
    let dr1 = c.dr_k.netns("dr-1");
    assert_eq!(
        dial(&dr1, &format!("203.0.113.11:{node_port}")).await,
        "agent on prod-1"
    );
    // No local endpoint on prod-2: nothing listens there.
    let err = connect_from(&dr1, &format!("203.0.113.12:{node_port}"), C).expect_err("no endpoint on prod-2");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    // The endpoint goes: so does the listener.
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete("agent", &DeleteParams::default())
        .await
        .unwrap();
    refused(
        &dr1,
        &format!("203.0.113.11:{node_port}"),
        ErrorKind::ConnectionRefused,
    )
    .await;
}

#[tokio::test]
async fn load_balancer_service_gets_an_ingress_ip_that_forwards_to_its_endpoint_slice() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let c = separated("net-lb").await;
    let client = c.prod.client();
    let ns = create_namespace(&client, "lb").await.unwrap();
    serve(
        listen_in(&c.prod_k.netns("prod-2"), "0.0.0.0:7022").unwrap(),
        "agent on prod-2",
    );
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: Service
metadata: {name: transfer}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports: [{name: ssh, port: 2222, targetPort: 7022}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: transfer-1
  labels: {kubernetes.io/service-name: transfer}
addressType: IPv4
endpoints:
- addresses: [10.90.0.12]
  nodeName: prod-2
  conditions: {ready: true}
ports: [{name: ssh, port: 7022, protocol: TCP}]
"#,
    )
    .await
    .unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let ip = wait_for("load-balancer ingress IP", T, || async {
        Ok(api.get("transfer").await?.status.and_then(|s| {
            s.load_balancer
                .and_then(|l| l.ingress)
                .and_then(|i| i.first().and_then(|i| i.ip.clone()))
        }))
    })
    .await
    .unwrap();
    assert!(ip.starts_with("198.51.100."), "{ip}");
    let dr1 = c.dr_k.netns("dr-1");
    assert_eq!(dial(&dr1, &format!("{ip}:2222")).await, "agent on prod-2");
    // Its node port too, on the endpoint's node only.
    let node_port = api.get("transfer").await.unwrap().spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("nodePort");
    assert_eq!(
        dial(&dr1, &format!("203.0.113.12:{node_port}")).await,
        "agent on prod-2"
    );
    // The Service goes: the load balancer's address and listener go.
    api.delete("transfer", &DeleteParams::default()).await.unwrap();
    let dr1c = dr1.clone();
    let addr = format!("{ip}:2222");
    wait_for("load balancer gone", T, || {
        let (dr1, addr) = (dr1c.clone(), addr.clone());
        async move {
            let r = tokio::task::spawn_blocking(move || connect_from(&dr1, &addr, C))
                .await
                .unwrap();
            Ok(r.err().map(|_| ()))
        }
    })
    .await
    .unwrap();
}

async fn wait_log(kubelet: &Kubelet, client: &kube::Client, ns: &str, pod: &str, want: &str) {
    if let Err(e) = wait_for(&format!("{pod} logging {want:?}"), T, || async {
        Ok(kubelet.pod_log(ns, pod, "main").contains(want).then_some(()))
    })
    .await
    {
        let p = Api::<Pod>::namespaced(client.clone(), ns).get_opt(pod).await;
        panic!("{e}: log {:?}; pod {p:#?}", kubelet.pod_log(ns, pod, "main"));
    }
}

#[tokio::test]
async fn kubelet_root_is_configurable_and_seen_through_host_path() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    init_tracing();
    let cp = ControlPlane::start("net-kroot").await.unwrap();
    let net = SimNetwork::create().unwrap();
    let rel = "var/snap/microk8s/common/var/lib/kubelet";
    let kubelet = Kubelet::builder(&cp, &net)
        .node("node-a", "10.90.0.11")
        .kubelet_root(rel)
        .image("busybox", "/bin/sh")
        .start()
        .await
        .unwrap();
    assert_eq!(
        kubelet.kubelet_root("node-a"),
        kubelet.node_root("node-a").join(rel)
    );
    let client = cp.client();
    let ns = create_namespace(&client, "kroot").await.unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [/bin/sh]
    args: ["-c", "echo pvc-data > /data/f; echo written"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
"#,
    )
    .await
    .unwrap();
    wait_log(&kubelet, &client, &ns, "writer", "written").await;
    let writer: Pod = Api::namespaced(client.clone(), &ns).get("writer").await.unwrap();
    let uid = writer.metadata.uid.unwrap();
    let pv = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get("data")
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    let mount = kubelet
        .kubelet_root("node-a")
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~csi")
        .join(&pv)
        .join("mount/f");
    assert_eq!(std::fs::read_to_string(&mount).unwrap(), "pvc-data\n");
    // A DaemonSet-style pod with a hostPath volume on the microk8s kubelet root sees the pods' volumes.
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [/bin/sh]
    args: ["-c", "cat /kubelet/pods/*/volumes/kubernetes.io~csi/*/mount/f"]
    volumeMounts: [{name: kubelet, mountPath: /kubelet, mountPropagation: HostToContainer}]
  volumes: [{name: kubelet, hostPath: {path: /var/snap/microk8s/common/var/lib/kubelet}}]
"#,
    )
    .await
    .unwrap();
    wait_log(&kubelet, &client, &ns, "reader", "pvc-data").await;
}

#[tokio::test]
async fn local_path_hostpath_and_local_persistent_volumes() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    init_tracing();
    let cp = ControlPlane::start("net-localpath").await.unwrap();
    let net = SimNetwork::create().unwrap();
    let kubelet = Kubelet::builder(&cp, &net)
        .node("node-a", "10.90.0.11")
        .node("node-b", "10.90.0.12")
        .image("busybox", "/bin/sh")
        .start()
        .await
        .unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "lp").await.unwrap();
    // Seed the static volumes' data on node-b.
    std::fs::create_dir_all(kubelet.host_path("node-b", "/srv/static")).unwrap();
    std::fs::write(kubelet.host_path("node-b", "/srv/static/f"), "static-data\n").unwrap();
    std::fs::create_dir_all(kubelet.host_path("node-b", "/mnt/disk1")).unwrap();
    std::fs::write(kubelet.host_path("node-b", "/mnt/disk1/f"), "local-data\n").unwrap();
    apply_yaml(
        &client,
        None,
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: static-hostpath}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /srv/static}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: static-local}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  local: {path: /mnt/disk1}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-b]}]
"#,
    )
    .await
    .unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: local-path
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: static}
spec:
  storageClassName: ""
  volumeName: static-hostpath
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: local}
spec:
  storageClassName: ""
  volumeName: static-local
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [/bin/sh]
    args: ["-c", "echo lp-data > /data/f; cat /static/f /local/f; echo done"]
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: static, mountPath: /static}
    - {name: local, mountPath: /local}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
  - {name: static, persistentVolumeClaim: {claimName: static}}
  - {name: local, persistentVolumeClaim: {claimName: local}}
"#,
    )
    .await
    .unwrap();
    wait_log(&kubelet, &client, &ns, "app", "done").await;
    let log = kubelet.pod_log(&ns, "app", "main");
    assert!(log.contains("static-data") && log.contains("local-data"), "{log}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let app = pods.get("app").await.unwrap();
    // The local PV's node affinity put the pod on node-b, and the local-path PV followed it there.
    assert_eq!(app.spec.as_ref().unwrap().node_name.as_deref(), Some("node-b"));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for claim in ["data", "static", "local"] {
        let pvc = pvcs.get(claim).await.unwrap();
        assert_eq!(pvc.status.unwrap().phase.as_deref(), Some("Bound"), "{claim}");
    }
    let data = pvcs.get("data").await.unwrap();
    let uid = data.metadata.uid.clone().unwrap();
    let pv_name = data.spec.unwrap().volume_name.unwrap();
    assert_eq!(pv_name, format!("pvc-{uid}"));
    let pv: PersistentVolume = Api::all(client.clone()).get(&pv_name).await.unwrap();
    assert_eq!(pv.status.unwrap().phase.as_deref(), Some("Bound"));
    let spec = pv.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    let hp = spec.host_path.expect("hostPath PV");
    assert_eq!(
        hp.path,
        format!("/var/local-path-provisioner/pvc-{uid}_{ns}_data")
    );
    assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));
    let expr = &spec.node_affinity.unwrap().required.unwrap().node_selector_terms[0]
        .match_expressions
        .clone()
        .unwrap()[0];
    assert_eq!(
        (
            expr.key.as_str(),
            expr.operator.as_str(),
            expr.values.clone().unwrap()
        ),
        ("kubernetes.io/hostname", "In", vec!["node-b".to_owned()])
    );
    // Data in place on the node, not under the pod's volumes; the local PV bind-mounted there.
    assert_eq!(
        std::fs::read_to_string(kubelet.host_path("node-b", &hp.path).join("f")).unwrap(),
        "lp-data\n"
    );
    let vols = kubelet
        .kubelet_root("node-b")
        .join("pods")
        .join(app.metadata.uid.unwrap())
        .join("volumes");
    assert!(!vols.join("kubernetes.io~csi").exists());
    assert_eq!(
        std::fs::read_to_string(vols.join("kubernetes.io~local-volume/static-local/f")).unwrap(),
        "local-data\n"
    );
}
